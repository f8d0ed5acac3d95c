//! The room received files may take: a total cap
//! (`storage.max_media_total_bytes`) and free space they never take
//! (`storage.media_min_free_bytes`), so optional files cannot fill the
//! disk the store commits messages on. A file without room is refused as
//! one over the size limit is: nothing of it written, the adapter told
//! `Rejected`.

mod common;

use std::path::Path;

use common::*;
use phonerelay::clock::now_ms;
use phonerelay::store::{
    MediaContent, MediaRefusal, MediaRoom, MediaSaved, MediaSweep, NewMedia, SqliteStore, Store,
};
use phonerelay_channel::{ChannelKind, MediaUpload};

const GIB: u64 = 1 << 30;

fn upload(bytes: &[u8]) -> MediaUpload {
    MediaUpload {
        content_type: None,
        filename: None,
        bytes: bytes.to_vec(),
    }
}

fn new_media(bytes: &[u8]) -> NewMedia {
    NewMedia {
        channel: ChannelKind::Wa,
        phone_id: "ph-a".into(),
        content_type: None,
        filename: None,
        bytes: bytes.to_vec(),
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

fn media_rows(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM media", [], |row| row.get(0))
        .unwrap()
}

fn store_with_room(db: &Path, max_total_bytes: u64, min_free_bytes: u64) -> SqliteStore {
    open_store(db).with_media_room(MediaRoom {
        max_total_bytes,
        min_free_bytes,
    })
}

/// The space free beside the store at `db`, as the store reads it.
async fn free_beside(db: &Path) -> u64 {
    let store = open_store(db);
    let usage = store.disk_usage().await.expect("a local store");
    usage.free_bytes.expect("free space readable here")
}

#[tokio::test]
async fn a_file_that_would_pass_the_total_cap_is_refused_and_nothing_of_it_is_written() {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    let d = TestDaemon::start(
        &format!("max_media_bytes = 10\nmax_media_total_bytes = 25\n{FAST_OUTBOX}"),
        vec![wa.clone()],
    )
    .await;
    let sink = wa.sink().await;
    let media = d.dir.path().join("state").join("media");
    for _ in 0..2 {
        sink.save_media(upload(&[7; 10])).await.unwrap();
    }
    let refused = sink.save_media(upload(&[7; 6])).await.unwrap_err();
    assert!(!refused.is_transient(), "{refused}");
    assert!(
        refused.message.contains("max_media_total_bytes"),
        "{refused}"
    );
    assert_eq!(files_in(&media), 2, "no file of it");
    assert_eq!(media_rows(&d.db_path()), 2, "no row of it");
    let metrics = d.metrics_text().await;
    let line = "phonerelay_media_refused_total{reason=\"total_cap\"} 1";
    assert!(metrics.lines().any(|l| l == line), "{metrics}");

    // A file within the cap is still kept.
    sink.save_media(upload(&[7; 5])).await.unwrap();
    assert_eq!(files_in(&media), 3);
    assert_eq!(media_rows(&d.db_path()), 3);
}

/// The total is the rows' sum, read when the store opens: files kept by
/// an earlier run count against the cap.
#[tokio::test]
async fn files_kept_before_a_restart_count_against_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    {
        let store = store_with_room(&db, 20, 0);
        let saved = store.save_media(new_media(&[1; 15]), now_ms()).await;
        assert!(matches!(saved, Ok(MediaSaved::Saved(_))), "{saved:?}");
    }
    let store = store_with_room(&db, 20, 0);
    let refused = store.save_media(new_media(&[1; 6]), now_ms()).await;
    assert_eq!(
        refused.unwrap(),
        MediaSaved::NoRoom {
            size: 6,
            reason: MediaRefusal::TotalCap
        }
    );
    assert_eq!(media_rows(&db), 1);
}

/// Two saves under way at once may not both pass a cap they pass
/// together: the room is taken before either file is written.
#[tokio::test]
async fn two_racing_saves_cannot_both_pass_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let store = store_with_room(&db, 15, 0);
    let (a, b) = tokio::join!(
        store.save_media(new_media(&[1; 10]), now_ms()),
        store.save_media(new_media(&[2; 10]), now_ms()),
    );
    let mut outcomes = [a.unwrap(), b.unwrap()].map(|saved| match saved {
        MediaSaved::Saved(_) => "saved",
        MediaSaved::NoRoom {
            reason: MediaRefusal::TotalCap,
            ..
        } => "total_cap",
        other => panic!("{other:?}"),
    });
    outcomes.sort();
    assert_eq!(outcomes, ["saved", "total_cap"]);
    assert_eq!(media_rows(&db), 1);
    assert_eq!(files_in(&dir.path().join("media")), 1);
}

/// Retention gives the room of the files it deletes back.
#[tokio::test]
async fn files_pruned_give_their_room_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let store = store_with_room(&db, 10, 0);
    let saved_at = now_ms();
    store
        .save_media(new_media(&[1; 10]), saved_at)
        .await
        .unwrap();
    assert!(matches!(
        store.save_media(new_media(&[1; 10]), now_ms()).await,
        Ok(MediaSaved::NoRoom { .. })
    ));
    // No message took it: pruned once it is older than the cut-off.
    assert_eq!(store.prune_media(saved_at + 1, 100).await.unwrap(), 1);
    let saved = store.save_media(new_media(&[1; 10]), now_ms()).await;
    assert!(matches!(saved, Ok(MediaSaved::Saved(_))), "{saved:?}");
}

/// Saved at `at_ms`, under the cap; the row's id.
async fn saved_id(store: &SqliteStore, bytes: &[u8], at_ms: i64) -> String {
    match store.save_media(new_media(bytes), at_ms).await.unwrap() {
        MediaSaved::Saved(record) => record.id,
        other => panic!("not saved: {other:?}"),
    }
}

/// The store at `db` opened again, and its media folder swept, as the
/// daemon's start does before any channel runs.
async fn reopened_and_swept(db: &Path, max_total_bytes: u64) -> (SqliteStore, MediaSweep) {
    let store = store_with_room(db, max_total_bytes, 0);
    let sweep = store.sweep_media_files().await.unwrap();
    (store, sweep)
}

fn refused_as_over_the_cap(saved: MediaSaved) -> bool {
    matches!(
        saved,
        MediaSaved::NoRoom {
            reason: MediaRefusal::TotalCap,
            ..
        }
    )
}

/// Files gone from media/ (a store restored from a backup, which holds
/// no files; files removed by hand) no longer count against the cap once
/// the start-up sweep has seen them gone. Their rows stay, answered as
/// gone, and pruning them later gives no room back a second time.
#[tokio::test]
async fn files_gone_from_the_folder_give_their_room_back_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (db, media) = (
        dir.path().join("phonerelay.sqlite3"),
        dir.path().join("media"),
    );
    let cap = 20;
    let saved_at = now_ms() - 60_000;
    let lost = {
        let store = store_with_room(&db, cap, 0);
        let lost = [
            saved_id(&store, &[1; 10], saved_at).await,
            saved_id(&store, &[2; 10], saved_at).await,
        ];
        assert!(refused_as_over_the_cap(
            store.save_media(new_media(&[3]), now_ms()).await.unwrap()
        ));
        lost
    };
    std::fs::remove_dir_all(&media).unwrap();

    let (store, sweep) = reopened_and_swept(&db, cap).await;
    assert_eq!(sweep.rows_without_file, 2);
    assert_eq!(store.media_usage().await.unwrap(), (0, 0));
    saved_id(&store, &[4; 20], now_ms()).await;
    match store.open_media(&lost[0]).await.unwrap() {
        MediaContent::Gone(record) => assert_eq!(record.size, 10, "the row says what it had"),
        _ => panic!("not answered as gone"),
    }

    // Retention deletes the rows of the lost files: no room comes back,
    // the file of the cap's size still fills it.
    assert_eq!(store.prune_media(saved_at + 1, 100).await.unwrap(), 2);
    assert!(refused_as_over_the_cap(
        store.save_media(new_media(&[5]), now_ms()).await.unwrap()
    ));
    assert_eq!(media_rows(&db), 1);
}

/// A file put back after a start that found it gone counts again.
#[tokio::test]
async fn a_file_put_back_counts_against_the_cap_again_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (db, media) = (
        dir.path().join("phonerelay.sqlite3"),
        dir.path().join("media"),
    );
    let aside = dir.path().join("aside");
    let id = {
        let store = store_with_room(&db, 10, 0);
        saved_id(&store, &[1; 10], now_ms()).await
    };
    std::fs::rename(&media, &aside).unwrap();
    let (store, sweep) = reopened_and_swept(&db, 10).await;
    assert_eq!(sweep.rows_without_file, 1);
    drop(store);

    std::fs::rename(&aside, &media).unwrap();
    let (store, sweep) = reopened_and_swept(&db, 10).await;
    assert_eq!(sweep.rows_without_file, 0);
    assert!(matches!(
        store.open_media(&id).await.unwrap(),
        MediaContent::Found(..)
    ));
    assert!(refused_as_over_the_cap(
        store.save_media(new_media(&[2]), now_ms()).await.unwrap()
    ));
}

/// The floor against the real disk: one above the space free now refuses
/// a file, nothing of it written; one at half of it keeps it. Half, not
/// a fixed margin below: on a disk with less than the margin free that
/// would be no floor at all, and the kept half would not test one.
#[tokio::test]
async fn a_file_that_would_leave_less_than_the_floor_free_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let free = free_beside(&db).await;
    {
        let store = store_with_room(&db, 0, free + GIB);
        let refused = store.save_media(new_media(b"photo"), now_ms()).await;
        assert_eq!(
            refused.unwrap(),
            MediaSaved::NoRoom {
                size: 5,
                reason: MediaRefusal::LowDisk
            }
        );
        assert_eq!(media_rows(&db), 0);
        assert_eq!(files_in(&dir.path().join("media")), 0);
    }
    let floor = free / 2;
    assert!(
        floor > 0,
        "a disk with room for a floor below its free space"
    );
    let store = store_with_room(&db, 0, floor);
    let saved = store.save_media(new_media(b"photo"), now_ms()).await;
    assert!(matches!(saved, Ok(MediaSaved::Saved(_))), "{saved:?}");
}

/// Through the sink, as an adapter meets it: `Rejected`, naming the key,
/// counted by its reason.
#[tokio::test]
async fn the_sink_rejects_a_file_below_the_floor_naming_the_key() {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    // A petabyte: more than any disk this runs on has free.
    let d = TestDaemon::start(
        &format!("media_min_free_bytes = 1125899906842624\n{FAST_OUTBOX}"),
        vec![wa.clone()],
    )
    .await;
    let refused = wa
        .sink()
        .await
        .save_media(upload(b"voice"))
        .await
        .unwrap_err();
    assert!(!refused.is_transient(), "{refused}");
    assert!(
        refused.message.contains("media_min_free_bytes"),
        "{refused}"
    );
    assert_eq!(media_rows(&d.db_path()), 0);
    let metrics = d.metrics_text().await;
    let line = "phonerelay_media_refused_total{reason=\"low_disk\"} 1";
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
}

/// The status report shows the kept files against their cap and the
/// floor, and says while new files are refused: degraded, still ready
/// (messages arrive, without their files), and said on `/ready` too.
#[tokio::test]
async fn the_status_says_while_files_are_refused_and_stays_ready() {
    let wa = TestChannel::new(ChannelKind::Wa, "ph-a");
    let d = TestDaemon::start(
        &format!(
            "max_media_bytes = 10\nmax_media_total_bytes = 15\n\
             media_min_free_bytes = 4096\n{FAST_OUTBOX}"
        ),
        vec![wa.clone()],
    )
    .await;
    let sink = wa.sink().await;
    sink.save_media(upload(&[7; 10])).await.unwrap();
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    let storage = &status["storage"];
    assert_eq!(storage["media_bytes"], 10, "{status}");
    assert_eq!(storage["media_max_total_bytes"], 15, "{status}");
    assert_eq!(storage["media_min_free_bytes"], 4096, "{status}");
    assert!(status.get("media_refused").is_none(), "{status}");

    sink.save_media(upload(&[7; 6])).await.unwrap_err();
    let (code, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(code, 200);
    assert_eq!(status["media_refused"], "total_cap", "{status}");
    assert_eq!(status["storage"]["media_refused"], "total_cap", "{status}");
    assert_eq!(status["status"], "ready", "{status}");
    let ready = d
        .http
        .get(format!("{}/ready", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["media_refused"], "total_cap", "{ready}");
    assert!(ready.get("storage").is_none(), "{ready}");

    // A smaller file fits and is kept: files are taken again.
    sink.save_media(upload(&[7; 5])).await.unwrap();
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert!(status.get("media_refused").is_none(), "{status}");
}
