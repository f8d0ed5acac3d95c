//! Files that come with inbound messages: kept by the bridge through the
//! channel's sink, served at `GET /api/v1/media/{id}` to keys that may see
//! them, refused over the size limit, swept when a crash left a file
//! without its row, and deleted with their message.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use phonerelay::clock::now_ms;
use phonerelay::store::{MediaSaved, NewMedia, Scope, SqliteStore, Store};
use phonerelay_channel::{Attachment, ChannelEvent, ChannelKind, InboundMessage, MediaUpload};

const PICTURE: &[u8] = b"\x89PNG\r\n\x1a\n not really a picture \x00\xff";

fn upload(bytes: &[u8], content_type: Option<&str>, filename: Option<&str>) -> MediaUpload {
    MediaUpload {
        content_type: content_type.map(str::to_string),
        filename: filename.map(str::to_string),
        bytes: bytes.to_vec(),
    }
}

fn inbound(phone_id: &str, external_id: &str, attachments: Vec<Attachment>) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Wa,
        phone_id: phone_id.into(),
        from: "+15551230001".into(),
        text: "see attached".into(),
        subject: None,
        attachments,
        external_id: external_id.into(),
        reply_to: vec![],
        received_at_ms: now_ms(),
        meta: Default::default(),
    }
}

fn media_id(attachment: &Attachment) -> &str {
    attachment
        .url
        .strip_prefix("/api/v1/media/")
        .expect("a bridge media path")
}

fn media_dir(d: &TestDaemon) -> PathBuf {
    d.dir.path().join("state").join("media")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn media_rows(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM media", [], |row| row.get(0))
        .unwrap()
}

/// GET a media path with `key`: status, headers and the raw body.
async fn fetch(
    d: &TestDaemon,
    path: &str,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = d.http.get(format!("{}{path}", d.base));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn error_code(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON error");
    json["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_file_saved_through_the_sink_is_served_with_its_bytes_and_headers() {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    let d = TestDaemon::start(FAST_OUTBOX, vec![wa.clone()]).await;
    let sink = wa.sink().await;
    let named = sink
        .save_media(upload(PICTURE, Some("image/png"), Some("Grüße an Ann.png")))
        .await
        .unwrap();
    assert!(named.url.starts_with("/api/v1/media/"), "{named:?}");
    assert_eq!(named.content_type.as_deref(), Some("image/png"));
    assert_eq!(named.filename.as_deref(), Some("Grüße an Ann.png"));
    assert_eq!(named.size, Some(PICTURE.len() as u64));
    let bare = sink.save_media(upload(b"raw", None, None)).await.unwrap();
    sink.deliver(ChannelEvent::Inbound(inbound(
        "ph-a",
        "x-1",
        vec![named.clone(), bare.clone()],
    )))
    .await
    .unwrap();

    // The inbound message lists both by their bridge paths.
    let (code, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    assert_eq!(code, 200, "{page}");
    let listed = &page["messages"][0]["attachments"];
    assert_eq!(listed[0]["url"], named.url.as_str(), "{page}");
    assert_eq!(listed[1]["url"], bare.url.as_str(), "{page}");

    let reader = create_key(&*d.store(), vec![Scope::Read], None).await;
    let (code, headers, bytes) = fetch(&d, &named.url, Some(&reader)).await;
    assert_eq!(code, 200);
    assert_eq!(bytes, PICTURE);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(
        headers["content-length"],
        PICTURE.len().to_string().as_str()
    );
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20an%20Ann.png"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");

    let (code, headers, bytes) = fetch(&d, &bare.url, Some(&reader)).await;
    assert_eq!(code, 200);
    assert_eq!(bytes, b"raw");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-disposition"], "attachment");
}

/// The files kept count in the status's storage and in `/metrics`, so an
/// operator sees what received files take on the disk.
#[tokio::test]
async fn kept_files_are_counted_in_the_status_and_the_metrics() {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    let d = TestDaemon::start(FAST_OUTBOX, vec![wa.clone()]).await;
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(status["storage"]["media_files"], 0, "{status}");
    assert_eq!(status["storage"]["media_bytes"], 0, "{status}");
    let sink = wa.sink().await;
    for bytes in [PICTURE, b"raw bytes".as_slice()] {
        sink.save_media(upload(bytes, None, None)).await.unwrap();
    }
    let total = PICTURE.len() + b"raw bytes".len();
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(status["storage"]["media_files"], 2, "{status}");
    assert_eq!(status["storage"]["media_bytes"], total, "{status}");
    let lines = [
        format!("phonerelay_store_bytes{{file=\"media\"}} {total}"),
        "phonerelay_store_media_files 2".to_string(),
    ];
    let metrics = d.metrics_text().await;
    for line in &lines {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }

    // The files cannot be counted now (the table is gone from under the
    // daemon): the gauges keep their values rather than fall to zero,
    // which would clear a disk alert just then.
    let db = d.dir.path().join("state").join("phonerelay.sqlite3");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE media RENAME TO media_away")
        .unwrap();
    let metrics = d.metrics_text().await;
    for line in &lines {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
}

/// A daemon with one endpoint (`ph-a`) that has kept a picture.
async fn daemon_with_a_picture() -> (TestDaemon, Attachment) {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    let d = TestDaemon::start(FAST_OUTBOX, vec![wa.clone()]).await;
    let saved = wa
        .sink()
        .await
        .save_media(upload(PICTURE, None, None))
        .await
        .unwrap();
    (d, saved)
}

/// A kept file that cannot be opened (a link that loops in its place:
/// root reads any file whatever its mode) is a 500 naming the file's
/// failure, not the store's 503 that asks to try again.
#[tokio::test]
async fn a_kept_file_that_cannot_be_read_is_named_so() {
    let (d, saved) = daemon_with_a_picture().await;
    let file = media_dir(&d).join(media_id(&saved));
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&file, &file).unwrap();
    let (code, headers, body) = fetch(&d, &saved.url, Some(&d.admin_key)).await;
    assert_eq!(
        (code, error_code(&body).as_str()),
        (500, "media_unreadable")
    );
    assert!(headers.get("retry-after").is_none(), "{headers:?}");
}

#[tokio::test]
async fn only_a_read_key_of_the_file_s_phone_gets_it_and_others_learn_nothing() {
    let a = TestChannel::new(ChannelKind::Wa, "ph-a");
    let b = TestChannel::new(ChannelKind::Wa, "ph-b");
    let d = TestDaemon::start(FAST_OUTBOX, vec![a.clone(), b.clone()]).await;
    let saved = a
        .sink()
        .await
        .save_media(upload(PICTURE, Some("image/png"), Some("a.png")))
        .await
        .unwrap();
    let store = d.store();
    let path = saved.url.as_str();

    let (code, headers, body) = fetch(&d, path, None).await;
    assert_eq!((code, error_code(&body).as_str()), (401, "unauthorized"));
    assert_eq!(headers["www-authenticate"], "Bearer");

    let sender = create_key(&*store, vec![Scope::Send], None).await;
    let (code, _, body) = fetch(&d, path, Some(&sender)).await;
    assert_eq!((code, error_code(&body).as_str()), (403, "forbidden"));

    let own_phone = create_key(&*store, vec![Scope::Read], Some("ph-a")).await;
    let (code, _, bytes) = fetch(&d, path, Some(&own_phone)).await;
    assert_eq!((code, bytes.as_slice()), (200, PICTURE));

    // Another phone's file is answered exactly as one that does not exist.
    let other_phone = create_key(&*store, vec![Scope::Read], Some("ph-b")).await;
    let (code, _, hidden) = fetch(&d, path, Some(&other_phone)).await;
    assert_eq!(code, 404);
    let unknown = "/api/v1/media/0194f0c2-7a4e-7000-8000-000000000001";
    let (code, _, missing) = fetch(&d, unknown, Some(&other_phone)).await;
    assert_eq!(code, 404);
    assert_eq!(hidden, missing);
    assert_eq!(error_code(&missing), "not_found");

    // Nothing reaches outside the media folder.
    let reader = create_key(&*store, vec![Scope::Read], None).await;
    for sneaky in [
        "/api/v1/media/..%2Fphonerelay.sqlite3",
        "/api/v1/media/%2E%2E",
        "/api/v1/media/cli.key",
    ] {
        let (code, _, body) = fetch(&d, sneaky, Some(&reader)).await;
        assert_eq!(
            (code, error_code(&body).as_str()),
            (404, "not_found"),
            "{sneaky}"
        );
    }
}

#[tokio::test]
async fn a_file_over_the_limit_is_refused_and_nothing_of_it_is_written() {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    let d = TestDaemon::start(
        &format!("max_media_bytes = 10\n{FAST_OUTBOX}"),
        vec![wa.clone()],
    )
    .await;
    let sink = wa.sink().await;
    let refused = sink
        .save_media(upload(&[7; 11], Some("image/png"), Some("big.png")))
        .await
        .unwrap_err();
    assert!(!refused.is_transient(), "{refused}");
    assert!(refused.message.contains("max_media_bytes"), "{refused}");
    assert_eq!(files_in(&media_dir(&d)), Vec::<String>::new());
    assert_eq!(media_rows(&d.db_path()), 0);

    let kept = sink.save_media(upload(&[7; 10], None, None)).await.unwrap();
    assert_eq!(files_in(&media_dir(&d)), [media_id(&kept)]);
    assert_eq!(media_rows(&d.db_path()), 1);
}

#[tokio::test]
async fn a_bridge_told_to_keep_no_files_refuses_every_one() {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    let d = TestDaemon::start(
        &format!("max_media_bytes = 0\n{FAST_OUTBOX}"),
        vec![wa.clone()],
    )
    .await;
    let refused = wa
        .sink()
        .await
        .save_media(upload(b"x", None, None))
        .await
        .unwrap_err();
    assert!(!refused.is_transient(), "{refused}");
    assert!(refused.message.contains("keeps no files"), "{refused}");
    assert_eq!(files_in(&media_dir(&d)), Vec::<String>::new());
}

/// A store put back from a backup has rows whose files it does not have:
/// those are answered 410, not served short.
#[tokio::test]
async fn a_row_whose_file_is_gone_is_answered_410() {
    let (d, saved) = daemon_with_a_picture().await;
    std::fs::remove_file(media_dir(&d).join(media_id(&saved))).unwrap();
    let (code, _, body) = fetch(&d, &saved.url, Some(&d.admin_key)).await;
    assert_eq!((code, error_code(&body).as_str()), (410, "media_gone"));
}

/// A crash between writing a file and committing its row leaves a file no
/// row names (or a half-written temporary one): the next start removes it
/// and keeps every file that has its row.
#[tokio::test]
async fn files_without_a_row_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let kept = {
        let store = open_store(&db);
        saved_id(&store, b"kept", now_ms()).await
    };
    let media = dir.path().join("state").join("media");
    let orphan = "0194f0c2-7a4e-7000-8000-0000000000aa";
    std::fs::write(media.join(orphan), b"no row").unwrap();
    std::fs::write(media.join(format!(".partial-{orphan}")), b"half").unwrap();

    let text = config_text(&dir, FAST_OUTBOX);
    let d = TestDaemon::start_in(dir, text, vec![]).await;
    assert_eq!(files_in(&media_dir(&d)), std::slice::from_ref(&kept));
    let (code, _, bytes) = fetch(&d, &format!("/api/v1/media/{kept}"), Some(&d.admin_key)).await;
    assert_eq!((code, bytes.as_slice()), (200, b"kept".as_slice()));
}

/// Keep `bytes` for endpoint wa/ph-a at `now`; the file's id.
async fn saved_id(store: &SqliteStore, bytes: &[u8], now: i64) -> String {
    let new = NewMedia {
        channel: ChannelKind::Wa,
        phone_id: "ph-a".into(),
        content_type: None,
        filename: None,
        bytes: bytes.to_vec(),
    };
    match store.save_media(new, now).await.unwrap() {
        MediaSaved::Saved(record) => record.id,
        other => panic!("not saved: {other:?}"),
    }
}

fn attachment_for(id: &str) -> Attachment {
    Attachment {
        url: format!("/api/v1/media/{id}"),
        content_type: None,
        filename: None,
        size: None,
    }
}

/// Retention: a file goes with the message that carries it, and a file no
/// message took goes after a day; the rest stay, rows and files alike.
#[tokio::test]
async fn the_retention_sweep_deletes_files_with_their_message_and_those_no_message_took() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let now = now_ms();
    let [of_old, unclaimed_old, unclaimed_new, of_new] = {
        let store = open_store(&db);
        let mut ids = Vec::new();
        for name in ["of old", "unclaimed old", "unclaimed new", "of new"] {
            ids.push(saved_id(&store, name.as_bytes(), now).await);
        }
        for (external_id, id) in [("old-1", &ids[0]), ("new-1", &ids[3])] {
            let message = inbound("ph-a", external_id, vec![attachment_for(id)]);
            store.commit_inbound(message, now).await.unwrap();
        }
        <[String; 4]>::try_from(ids).unwrap()
    };
    let conn = rusqlite::Connection::open(&db).unwrap();
    let long_ago = now - 100 * 24 * 3600 * 1000;
    conn.execute(
        "UPDATE inbound SET committed_at = ?1 WHERE external_id = 'old-1'",
        [long_ago],
    )
    .unwrap();
    conn.execute(
        "UPDATE media SET created_at = ?1 WHERE id = ?2",
        rusqlite::params![now - 25 * 3600 * 1000, unclaimed_old],
    )
    .unwrap();
    drop(conn);

    // No relay named: the old inbound goes with age at the first sweep.
    let text = config_text(&dir, &format!("retention_days = 90\n{FAST_OUTBOX}"));
    let d = TestDaemon::start_in(dir, text, vec![]).await;
    let store = d.store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.get_media(&of_old).await.unwrap().is_some()
        || store.get_media(&unclaimed_old).await.unwrap().is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep left files it should have taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut left = vec![unclaimed_new.clone(), of_new.clone()];
    left.sort();
    // The files go just after the rows' commit.
    while files_in(&media_dir(&d)) != left {
        assert!(
            tokio::time::Instant::now() < deadline,
            "files left: {:?}",
            files_in(&media_dir(&d))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in [&unclaimed_new, &of_new] {
        assert!(store.get_media(id).await.unwrap().is_some(), "{id}");
    }
    let (code, _, _) = fetch(&d, &format!("/api/v1/media/{of_old}"), Some(&d.admin_key)).await;
    assert_eq!(code, 404);
}

/// A message commits with the files it names only if they are its own
/// endpoint's: another endpoint's file stays unclaimed (and goes in a day).
#[tokio::test]
async fn a_message_takes_only_its_own_endpoint_s_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("phonerelay.sqlite3"));
    let now = now_ms();
    let id = saved_id(&store, b"of ph-a", now).await;
    let foreign = inbound("ph-b", "b-1", vec![attachment_for(&id)]);
    let foreign = store.commit_inbound(foreign, now).await.unwrap();
    assert_eq!(
        store.get_media(&id).await.unwrap().unwrap().inbound_id,
        None
    );
    let own = inbound("ph-a", "a-1", vec![attachment_for(&id)]);
    let own = store.commit_inbound(own, now).await.unwrap();
    assert_ne!(own.id, foreign.id);
    let record = store.get_media(&id).await.unwrap().unwrap();
    assert_eq!(record.inbound_id.as_deref(), Some(own.id.as_str()));
    // Its message is there, so the sweep keeps it, however old.
    assert_eq!(store.prune_media(now + 1, 100).await.unwrap(), 0);
    assert!(store.get_media(&id).await.unwrap().is_some());
}

/// The file is written before its row commits: a file that cannot be
/// written (here the media folder's name is taken by a file) leaves no row
/// behind, and the error says the store may take it later.
#[tokio::test]
async fn no_row_is_committed_for_a_file_that_could_not_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let store = open_store(&db);
    std::fs::write(dir.path().join("media"), b"in the way").unwrap();
    let new = NewMedia {
        channel: ChannelKind::Wa,
        phone_id: "ph-a".into(),
        content_type: None,
        filename: None,
        bytes: b"cannot land".to_vec(),
    };
    let e = store.save_media(new, now_ms()).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(media_rows(&db), 0);
}

/// A caller that goes away while its file is being written (a webhook's
/// client that hung up during the sync of a large file) does not cut the
/// save in half: the file gets its row, so retention sees it, instead of
/// lying on disk unseen until the next start.
#[tokio::test]
async fn a_save_whose_caller_went_away_still_commits_the_file_s_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let store = open_store(&db);
    let new = NewMedia {
        channel: ChannelKind::Wa,
        phone_id: "ph-a".into(),
        content_type: None,
        filename: None,
        bytes: vec![7; 16 << 20],
    };
    // Dropped while writing: polled once (the write goes to a blocking
    // thread, so that poll waits), then given up. A timeout of 1 ms let a
    // fast machine with a file system that does not sync finish first.
    let dropped = tokio::time::timeout(Duration::ZERO, store.save_media(new, now_ms())).await;
    assert!(
        dropped.is_err(),
        "the save finished before its caller went away"
    );

    let media = dir.path().join("media");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while media_rows(&db) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let files = files_in(&media);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(media_rows(&db), 1, "the file {files:?} has no row");
    let id = &files[0];
    assert!(store.get_media(id).await.unwrap().is_some());
}
