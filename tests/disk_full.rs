//! A daemon whose disk fills up, for real: its state directory is a small
//! tmpfs, mounted in a mount namespace of the daemon's own (unshare(1), as
//! root or in a user namespace), so a write past the end fails with
//! `ENOSPC`, which SQLite reports as `SQLITE_FULL`. (`file_size_limit.rs`
//! gets there through `EFBIG`, which SQLite reports as an I/O error.)
//!
//! While the disk is full the daemon stays up, refuses sends with 503 and
//! says the store is unavailable; a send that was on its way finishes and
//! is recorded once there is room again, and its delivery report and a
//! reply, which could not be committed, wait on the SIM until a sweep
//! reads them again. Then it takes sends without a restart, and every
//! message it accepted is sent exactly once (the simulated network, in a
//! process of its own, counts them).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::process::*;

/// Room on the state filesystem: the store and its first writes fit.
const STATE_FS_SIZE: &str = "4m";

/// How long the simulated network takes to accept a part.
const NETWORK_DELAY_MS: u64 = 1_500;

/// The daemon, started as `unshare` runs it: mount the tmpfs over
/// `state`, make a key there, then become `phonerelay serve` (the same
/// process, so `child.id()` is the daemon's pid).
struct FullDiskDaemon {
    child: Child,
    base: String,
    key: String,
    state: PathBuf,
}

impl FullDiskDaemon {
    fn start(dir: &Path, config: &Path, port: u16) -> FullDiskDaemon {
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let key_file = dir.join("key");
        let script = r#"set -e
mount -t tmpfs -o size="$1" tmpfs "$2"
"$3" keys create --config "$4" --name t > "$5"
exec "$3" serve --config "$4""#;
        // A mount namespace is enough for root with CAP_SYS_ADMIN; without
        // it (or not as root), a user namespace of its own, where the caller
        // is root, may still mount a tmpfs. The first way that comes up is
        // used.
        let ways: [&[&str]; 2] = [&["--mount"], &["--user", "--map-root-user", "--mount"]];
        let mut failures = Vec::new();
        for way in ways {
            let mut child = Command::new("unshare")
                .args(way)
                .args(["sh", "-c", script, "sh", STATE_FS_SIZE])
                .arg(&state)
                .arg(env!("CARGO_BIN_EXE_phonerelay"))
                .arg(config)
                .arg(&key_file)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("unshare runs");
            let deadline = Instant::now() + Duration::from_secs(20);
            let listening = loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    failures.push(format!("unshare {}: {status}", way.join(" ")));
                    break false;
                }
                assert!(
                    Instant::now() < deadline,
                    "the daemon never listened on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            if listening {
                return Self::started(child, port, &key_file, state);
            }
        }
        panic!("could not run the daemon on a tmpfs of its own: {failures:?}");
    }

    fn started(child: Child, port: u16, key_file: &Path, state: PathBuf) -> FullDiskDaemon {
        let key = std::fs::read_to_string(key_file)
            .unwrap()
            .trim()
            .to_string();
        FullDiskDaemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            key,
            state,
        }
    }

    /// A path on the daemon's state filesystem, as seen from outside its
    /// mount namespace.
    fn on_state_fs(&self, name: &str) -> PathBuf {
        let inside = self.state.join(name);
        let relative = inside.strip_prefix("/").unwrap();
        Path::new(&format!("/proc/{}/root", self.child.id())).join(relative)
    }
}

impl Drop for FullDiskDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write `path` until the filesystem has no room left; its size.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0x5a_u8; 64 * 1024];
    let mut written = 0;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
    written
}

fn send(http: &reqwest::blocking::Client, d: &FullDiskDaemon, text: &str) -> (u16, String) {
    let response = post_sms(http, &d.base, &d.key, text, None).unwrap();
    let code = response.status().as_u16();
    let body: serde_json::Value = response.json().unwrap();
    let id = body["id"].as_str().unwrap_or_default().to_string();
    if code != 202 {
        assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    }
    (code, id)
}

fn store_ready(http: &reqwest::blocking::Client, d: &FullDiskDaemon) -> (u16, String) {
    let response = http.get(format!("{}/ready", d.base)).send().unwrap();
    let code = response.status().as_u16();
    let report: serde_json::Value = response.json().unwrap();
    (
        code,
        report["store"].as_str().unwrap_or_default().to_string(),
    )
}

/// `GET path` with the daemon's key, as JSON.
fn get(http: &reqwest::blocking::Client, d: &FullDiskDaemon, path: &str) -> serde_json::Value {
    http.get(format!("{}{path}", d.base))
        .bearer_auth(&d.key)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn status(http: &reqwest::blocking::Client, d: &FullDiskDaemon, id: &str) -> String {
    let message = get(http, d, &format!("/api/v1/messages/{id}"));
    message["status"].as_str().unwrap_or_default().to_string()
}

fn inbound_texts(http: &reqwest::blocking::Client, d: &FullDiskDaemon) -> Vec<String> {
    let page = get(http, d, "/api/v1/inbound?limit=100");
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_refuses_sends_keeps_what_it_took_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // Each part takes the network a while, so the disk fills mid-send.
    let sim = ModemSimProcess::start(
        &dir.path().join("modem"),
        &["--network-delay-ms", &NETWORK_DELAY_MS.to_string()],
    );
    let port = free_port();
    let config = modem_config(
        dir.path(),
        port,
        &sim.link,
        "reconnect_max_backoff_seconds = 1\nsweep_interval_seconds = 1\n",
    );
    let mut daemon = FullDiskDaemon::start(dir.path(), &config, port);
    let http = reqwest::blocking::Client::new();

    let first = "before the disk filled".to_string();
    let (code, before) = send(&http, &daemon, &first);
    assert_eq!(code, 202);
    wait_for("the first message to be on its way", || {
        status(&http, &daemon, &before) == "sending"
    });
    let filler = daemon.on_state_fs("filler");
    assert!(fill(&filler) > 0, "the state filesystem had room to fill");

    // The write-ahead log may still have room at its end for a few
    // commits; past it, no send is taken.
    let mut accepted = vec![(before.clone(), first.clone())];
    let mut refused = Vec::new();
    for n in 0..2_000 {
        let text = format!("while full {n}");
        match send(&http, &daemon, &text) {
            (202, id) => accepted.push((id, text)),
            (code, _) => {
                assert_eq!(code, 503);
                refused.push(text);
                if refused.len() == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 3, "no send was refused on a full disk");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );
    // A quiet store keeps its last answer, and a probe that finds a little
    // room left in the write-ahead log clears the failure: the test makes
    // the writes that fill that room itself while it waits, since the
    // daemon's own may pause past the deadline (as in file_size_limit).
    let mut n = 0;
    wait_for("/ready to say the store is unavailable", || {
        if store_ready(&http, &daemon) == (503, "unavailable".to_string()) {
            return true;
        }
        let text = format!("while waiting for unavailable {n}");
        n += 1;
        if let (202, id) = send(&http, &daemon, &text) {
            accepted.push((id, text));
        }
        false
    });

    // The network takes the send that was on its way and answers after
    // its delay; the outcome cannot be written yet, and is not lost.
    wait_for("the network to take the first message", || {
        sim.sent_texts().contains(&first)
    });
    std::thread::sleep(Duration::from_millis(NETWORK_DELAY_MS + 1_000));
    assert_eq!(status(&http, &daemon, &before), "sending");
    assert_eq!(store_ready(&http, &daemon).0, 503);

    // A reply comes in while nothing can be committed: it stays on the SIM.
    let answer = sim.control("inject +15551230001 a reply while the disk is full");
    assert!(answer.last().unwrap().starts_with("ok"), "{answer:?}");
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(inbound_texts(&http, &daemon).is_empty());
    assert!(
        !sim.control("stored").last().unwrap().contains("messages=0"),
        "the reply was deleted from the SIM before it was committed"
    );

    // The operator makes room; no restart.
    std::fs::remove_file(&filler).unwrap();
    wait_for("/ready to say the store is back", || {
        store_ready(&http, &daemon).0 == 200
    });
    let last = "after room was made".to_string();
    let (code, after) = send(&http, &daemon, &last);
    assert_eq!(code, 202);
    accepted.push((after, last));

    // Every accepted message is sent, and none twice; no refused one is.
    for (id, _) in &accepted {
        wait_for(&format!("message {id} to be sent"), || {
            matches!(status(&http, &daemon, id).as_str(), "sent" | "delivered")
        });
    }
    // The first message's delivery report came while the disk was full and
    // stayed on the modem; a sweep reads it again.
    wait_for("the first message's delivery report", || {
        status(&http, &daemon, &before) == "delivered"
    });
    // The reply comes in once, and leaves the SIM.
    wait_for("the reply to come in", || {
        !inbound_texts(&http, &daemon).is_empty()
    });
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        inbound_texts(&http, &daemon),
        ["a reply while the disk is full"]
    );
    wait_for("the reply to leave the SIM", || {
        sim.control("stored").last().unwrap().contains("messages=0")
    });
    let mut sent = sim.sent_texts();
    sent.sort();
    let mut expected: Vec<String> = accepted.into_iter().map(|(_, text)| text).collect();
    expected.sort();
    assert_eq!(sent, expected, "each accepted message once, no refused one");
    assert!(refused.iter().all(|text| !sent.contains(text)));
}
