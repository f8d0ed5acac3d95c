//! `phonerelay backup` against a running daemon that is taking sends, and
//! `phonerelay restore` of that copy after a crash, as an operator would.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::process::*;

/// Send an SMS; its id, or `None` if the daemon could not be reached.
fn send(http: &reqwest::blocking::Client, base: &str, key: &str, text: &str) -> Option<String> {
    let response = post_sms(http, base, key, text, None).ok()?;
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().unwrap();
    Some(body["id"].as_str().unwrap().to_string())
}

#[test]
fn a_backup_taken_under_load_restores_after_a_crash_into_a_working_daemon() {
    let Simulated { dir, port, config } = Simulated::new();
    let key = create_key_cli(&config);
    // Revoked after the backup: it must stay revoked after the restore.
    let doomed = create_key_cli(&config);
    let daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let before: Vec<String> = (0..30)
        .map(|i| send(&http, &daemon.base, &key, &format!("before {i}")).unwrap())
        .collect();

    // Sends go on while the copy is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (stop, base, key) = (stop.clone(), daemon.base.clone(), key.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let mut sent = 0;
            while !stop.load(Ordering::SeqCst) {
                send(&http, &base, &key, &format!("during {sent}")).unwrap();
                sent += 1;
            }
            sent
        })
    };
    let copy = dir.path().join("backup.sqlite3");
    let out = run(&[
        "backup",
        "--config",
        config.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::SeqCst);
    let during = sender.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("backed up"), "{stdout}");
    // Said plainly: the received files are not in the copy.
    assert!(
        stdout.contains("media/ in the state dir) are not in a backup"),
        "{stdout}"
    );
    assert!(during > 0, "no send ran beside the backup");

    // A second backup to the same file is refused and leaves it alone.
    let bytes = std::fs::read(&copy).unwrap();
    let again = run(&[
        "backup",
        "--config",
        config.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&copy).unwrap(), bytes);

    // Key changes after the backup: one revoked, one made.
    let doomed_id = doomed.split('_').nth(1).unwrap();
    let revoked = run(&[
        "keys",
        "revoke",
        "--config",
        config.to_str().unwrap(),
        doomed_id,
    ]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let fresh = create_key_cli(&config);

    // A message accepted after the backup, then a crash (its log stays).
    let later = send(&http, &daemon.base, &key, "after the backup").unwrap();
    let restore = || {
        run(&[
            "restore",
            "--config",
            config.to_str().unwrap(),
            copy.to_str().unwrap(),
        ])
    };
    let refused = restore();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is serving the store"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    daemon.crash();
    let out = restore();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the replaced store is kept as"), "{stdout}");
    assert!(
        stdout.contains("1 made after the backup kept, 1 revoked after it still revoked"),
        "{stdout}"
    );
    assert!(!stdout.contains("revoke them again"), "{stdout}");
    // The hint says what may go out twice: a send the replaced store had
    // under way goes on from where the copy had reached.
    assert!(
        stdout.contains("had sent or ended since the backup")
            && stdout.contains("parts of it, twice"),
        "{stdout}"
    );

    let restored = DaemonProcess::start(&config, port);
    let status = |id: &str| {
        http.get(format!("{}/api/v1/messages/{id}", restored.base))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for id in &before {
        assert_eq!(status(id), 200, "{id} is not in the copy");
    }
    assert_eq!(status(&later), 404, "the store was not replaced");
    assert!(send(&http, &restored.base, &key, "after the restore").is_some());
    assert!(
        send(
            &http,
            &restored.base,
            &fresh,
            "with a key made after the backup"
        )
        .is_some()
    );
    let refused = post_sms(&http, &restored.base, &doomed, "revoked", None).unwrap();
    assert_eq!(refused.status().as_u16(), 401, "a revoked key works again");
    assert_eq!(restored.terminate().code(), Some(0));
}

/// An inbound message on wa/ph-a with the file `media_id`.
fn inbound_with(external_id: &str, media_id: &str) -> phonerelay_channel::InboundMessage {
    phonerelay_channel::InboundMessage {
        channel: phonerelay_channel::ChannelKind::Wa,
        phone_id: "ph-a".into(),
        from: "+15551230001".into(),
        text: "see attached".into(),
        subject: None,
        attachments: vec![phonerelay_channel::Attachment {
            url: format!("/api/v1/media/{media_id}"),
            content_type: None,
            filename: None,
            size: None,
        }],
        external_id: external_id.into(),
        reply_to: vec![],
        received_at_ms: phonerelay::clock::now_ms(),
        meta: Default::default(),
    }
}

/// A file received with an inbound message, kept and committed; its id.
async fn receive_file(db: &std::path::Path, external_id: &str, bytes: &[u8]) -> String {
    use phonerelay::store::{MediaSaved, NewMedia, Store};
    let store = phonerelay::store::SqliteStore::open(db).unwrap();
    let now = phonerelay::clock::now_ms();
    let new = NewMedia {
        channel: phonerelay_channel::ChannelKind::Wa,
        phone_id: "ph-a".into(),
        content_type: None,
        filename: None,
        bytes: bytes.to_vec(),
    };
    let MediaSaved::Saved(record) = store.save_media(new, now).await.unwrap() else {
        panic!("not saved");
    };
    let message = inbound_with(external_id, &record.id);
    store.commit_inbound(message, now).await.unwrap();
    record.id
}

/// The files of the store a restore replaces are not the restored store's:
/// the next start's sweep would delete them. The restore moves them into a
/// folder beside the replaced store, so putting that store back can bring
/// them back.
#[tokio::test]
async fn a_restore_keeps_the_replaced_store_s_files_aside_from_the_start_up_sweep() {
    use phonerelay::store::Store;
    use phonerelay::store::sqlite::backup::{backup, restore};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phonerelay.sqlite3");
    let first = receive_file(&db, "in-1", b"before the backup").await;
    let copy = dir.path().join("copy.sqlite3");
    backup(&db, &copy).unwrap();
    let second = receive_file(&db, "in-2", b"after the backup").await;
    restore(&copy, &db, ".before-restore-7").unwrap();
    let store = phonerelay::store::SqliteStore::open(&db).unwrap();
    store.sweep_media_files().await.unwrap();
    let media = dir.path().join("media");
    let aside = dir.path().join("media.before-restore-7");
    assert_eq!(
        std::fs::read(media.join(&first)).unwrap(),
        b"before the backup"
    );
    assert_eq!(
        std::fs::read(aside.join(&second)).unwrap(),
        b"after the backup",
        "the replaced store's file was swept"
    );
    assert!(
        !aside.join(&first).exists(),
        "the restored store's file moved"
    );
}

/// A restore's file that is missing (or under a file), a folder, or
/// cannot be looked for (here a name too long, as one in a folder the user
/// may not enter is for one not root: the tests may run as root): each
/// said as what it is, the last a run-time failure (exit 1), not a mistake
/// in the command (exit 2); nothing is replaced.
#[test]
fn a_restore_says_why_its_file_cannot_be_read() {
    let Simulated { dir, config, .. } = Simulated::new();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "").unwrap();
    for (backup, code, said) in [
        (dir.path().join("missing.sqlite3"), 2, "no such file"),
        (a_file.join("copy.sqlite3"), 2, "no such file"),
        (dir.path().to_path_buf(), 2, "not a file"),
        (dir.path().join("n".repeat(300)), 1, "cannot look for"),
    ] {
        let out = run(&[
            "restore",
            "--config",
            config.to_str().unwrap(),
            backup.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}: {stderr}",
            backup.display()
        );
        assert!(stderr.contains(said), "{}: {stderr}", backup.display());
    }
}
