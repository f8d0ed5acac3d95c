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
    assert_eq!(restored.terminate().code(), Some(0));
}
