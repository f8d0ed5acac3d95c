//! A clean stop (SIGTERM) closes the store: its writer finishes, the WAL is
//! checkpointed into the database and removed, so what is left on disk is
//! one self-contained file an operator may copy once the service is down.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::process::*;

#[test]
fn a_clean_stop_leaves_the_store_in_one_file() {
    let Simulated { dir, port, config } = Simulated::new();
    let key = create_key_cli(&config);
    let daemon = DaemonProcess::start(&config, port);
    let http = reqwest::blocking::Client::new();
    let accepted: serde_json::Value = post_sms(&http, &daemon.base, &key, "kept", None)
        .unwrap()
        .json()
        .unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    let state = dir.path().join("state");
    let wal = state.join("phonerelay.sqlite3-wal");
    // Sent, and so written through the WAL, which is there while running.
    wait_for_message(&http, &daemon, &key, &id, 20, |m| {
        ["sent", "delivered"].contains(&m["status"].as_str().unwrap_or(""))
    });
    assert!(wal.exists(), "a running store writes through its WAL");

    assert_eq!(daemon.terminate().code(), Some(0));
    assert!(!wal.exists(), "the WAL is checkpointed and removed at stop");
    // The database file alone has the message: opened read-only, so
    // SQLite cannot recover anything from a WAL that is not there.
    let db = rusqlite::Connection::open_with_flags(
        state.join("phonerelay.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let body: String = db
        .query_row("SELECT body FROM outbound WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(body, "kept");
}

/// A daemon whose modem `sim-1` is a `ModemSimProcess` (its own process,
/// so what went out is still known after the daemon exits) taking
/// `network_delay_ms` for each part, with `grace_seconds` to stop in and
/// `concurrency` sends at a time.
struct OnModemSim {
    _dir: tempfile::TempDir,
    sim: ModemSimProcess,
    port: u16,
    config: PathBuf,
    key: String,
    http: reqwest::blocking::Client,
}

impl OnModemSim {
    fn new(network_delay_ms: u64, grace_seconds: u64, concurrency: usize) -> OnModemSim {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("modem");
        let delay = network_delay_ms.to_string();
        let sim = ModemSimProcess::start(&link, &["--network-delay-ms", &delay]);
        let port = free_port();
        let config = daemon_config(
            dir.path(),
            port,
            &format!("shutdown_grace_seconds = {grace_seconds}\n"),
            &format!(
                "[outbox.limits.sms]\nconcurrency = {concurrency}\nper_second = 1000.0\n\
                 burst = 1000\n\
                 [[channels.sms.modems]]\nphone_id = \"sim-1\"\ndevice = \"{}\"\n",
                link.display()
            ),
        );
        let key = create_key_cli(&config);
        OnModemSim {
            _dir: dir,
            sim,
            port,
            config,
            key,
            http: reqwest::blocking::Client::new(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self._dir.path().join("state")
    }

    fn start(&self) -> DaemonProcess {
        DaemonProcess::start(&self.config, self.port)
    }

    /// An SMS from `sim-1`, accepted; its id.
    fn send(&self, daemon: &DaemonProcess, to: &str, text: &str) -> String {
        let body =
            serde_json::json!({"phone_id": "sim-1", "channel": "sms", "to": to, "text": text});
        let response = self
            .http
            .post(format!("{}/api/v1/messages", daemon.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let accepted: serde_json::Value = response.json().unwrap();
        accepted["id"].as_str().unwrap().to_string()
    }

    /// `texts`, one to each of as many recipients; their ids.
    fn send_each(&self, daemon: &DaemonProcess, texts: &[String]) -> Vec<String> {
        let to = |n: usize| format!("+155512300{n:02}");
        texts
            .iter()
            .enumerate()
            .map(|(n, text)| self.send(daemon, &to(n), text))
            .collect()
    }

    /// Once every message of `ids` is sent (or delivered).
    fn wait_sent(&self, daemon: &DaemonProcess, ids: &[String]) {
        for id in ids {
            wait_for_message(&self.http, daemon, &self.key, id, 30, |m| {
                m["status"] == "sent" || m["status"] == "delivered"
            });
        }
    }

    /// SIGTERM, and once it has been acted on (the API stops listening),
    /// SIGTERM again; `cut` runs between the second signal's sending and
    /// the exit, whose status comes back.
    fn terminate_twice(&self, mut daemon: DaemonProcess, cut: impl FnOnce()) -> i32 {
        daemon.signal_term();
        wait_until("the API stopped listening after SIGTERM", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
        daemon.signal_term();
        cut();
        // Bounded, so that a daemon that does not stop fails the test
        // instead of hanging it.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "still running 90 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `parts` lines of the simulator: one per part the network
    /// accepted ("<to> mr=<n> ref=<r> seq=<s>/<total>").
    fn accepted_parts(&self) -> Vec<String> {
        self.sim
            .control("parts")
            .into_iter()
            .filter(|l| !l.starts_with("ok"))
            .collect()
    }
}

/// Poll `check` until it holds; panics after 20 s naming `what`.
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "waited in vain: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM while sends wait their turn at the modem (one on the wire, the
/// rest queued for the serial port): the modem keeps running through the
/// grace period, so every claimed send goes out before the daemon exits,
/// and none is sent again after the restart.
#[test]
fn claimed_sends_go_out_in_the_grace_period_at_a_clean_stop() {
    const SENDS: usize = 4;
    let rig = OnModemSim::new(300, 20, SENDS);
    let daemon = rig.start();
    let texts: Vec<String> = (0..SENDS).map(|n| format!("in the grace {n}")).collect();
    rig.send_each(&daemon, &texts);
    // Stop while the first is on the wire and the others wait for it.
    wait_until("a send went out", || !rig.sim.sent_texts().is_empty());
    assert!(
        rig.sim.sent_texts().len() < SENDS,
        "all sent before the stop"
    );
    assert_eq!(daemon.terminate().code(), Some(0));
    let mut sent = rig.sim.sent_texts();
    sent.sort();
    assert_eq!(
        sent, texts,
        "every claimed send went out, once, before the exit"
    );

    let daemon = rig.start();
    let listed = all_pages(&rig.http, &daemon.base, &rig.key, "/api/v1/messages");
    assert_eq!(listed.len(), SENDS);
    assert!(
        listed
            .iter()
            .all(|m| m["status"] == "sent" || m["status"] == "delivered"),
        "{listed:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rig.sim.sent_texts().len(), SENDS, "nothing sent again");
}

/// A second SIGTERM while the stop waits for slow sends cuts the grace
/// short: the send on the wire finishes (the modem is not cut off in the
/// middle of a command, so its part is recorded), the ones waiting for
/// the modem go back to the queue, and the daemon exits 0 long before the
/// grace would have let it. After the restart each message is sent, and
/// none twice.
#[test]
fn a_second_sigterm_cuts_the_grace_short_and_sends_nothing_twice() {
    const SENDS: usize = 4;
    // Each send takes 10 s at the modem, one at a time: a full grace stop
    // would wait some 40 s; the grace allows 120.
    let rig = OnModemSim::new(10_000, 120, SENDS);
    let daemon = rig.start();
    let texts: Vec<String> = (0..SENDS).map(|n| format!("cut short {n}")).collect();
    let ids = rig.send_each(&daemon, &texts);
    for id in &ids {
        wait_for_message(&rig.http, &daemon, &rig.key, id, 20, |m| {
            m["status"] == "sending"
        });
    }
    let cut_at = std::cell::Cell::new(Instant::now());
    let code = rig.terminate_twice(daemon, || cut_at.set(Instant::now()));
    assert_eq!(code, 0);
    assert!(
        cut_at.get().elapsed() < Duration::from_secs(20),
        "still running 20 s after the second SIGTERM"
    );
    assert!(
        rig.sim.sent_texts().len() < SENDS,
        "every send finished before the exit: nothing was cut short"
    );

    rig.sim.control("delay 0");
    let daemon = rig.start();
    rig.wait_sent(&daemon, &ids);
    std::thread::sleep(Duration::from_millis(300));
    let mut sent = rig.sim.sent_texts();
    sent.sort();
    assert_eq!(sent, texts, "each message went out once");
}

/// A stop cut short while a long message goes out part by part: the part
/// on the wire is finished, no further one starts, and after the restart
/// the rest go out, each part once.
#[test]
fn a_long_message_stops_between_parts_when_the_stop_is_cut_short() {
    let rig = OnModemSim::new(1500, 120, 1);
    let daemon = rig.start();
    // Six parts of 153 characters.
    let id = rig.send(&daemon, "+15551230001", &"0123456789".repeat(85));
    wait_until("a part went out", || !rig.accepted_parts().is_empty());
    let at_cut = std::cell::Cell::new(0);
    let code = rig.terminate_twice(daemon, || at_cut.set(rig.accepted_parts().len()));
    assert_eq!(code, 0);
    let (at_cut, at_exit) = (at_cut.get(), rig.accepted_parts().len());
    assert!(
        at_exit <= at_cut + 1,
        "parts started after the stop was cut short: {at_cut} then {at_exit}"
    );
    assert!(at_exit < 6, "the whole message went out before the exit");

    rig.sim.control("delay 0");
    let daemon = rig.start();
    rig.wait_sent(&daemon, &[id]);
    let mut seqs: Vec<String> = rig
        .accepted_parts()
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        [
            "seq=1/6", "seq=2/6", "seq=3/6", "seq=4/6", "seq=5/6", "seq=6/6"
        ],
        "each part once"
    );
}

/// SIGTERM while the network never answers a part (its PDU written, the
/// modem waiting): at the end of the grace the message goes back to the
/// queue, the modem's driver gives up the answer within 12 s and
/// starts no resync, and the daemon exits cleanly within the grace and
/// `STOP_BOUND`, well inside systemd's `TimeoutStopSec=45`. (The driver
/// waited the 60 s of `send_timeout_ms`, then 21 probes of 3 s, and the
/// stop waited for it without bound: systemd's SIGKILL ended it.)
#[test]
fn a_stop_during_a_send_the_network_never_answers_ends_within_the_bound() {
    let rig = OnModemSim::new(3_600_000, 1, 1);
    let mut daemon = rig.start();
    let id = rig.send(&daemon, "+15551230001", "never answered");
    wait_until("the part's PDU was written", || {
        !rig.accepted_parts().is_empty()
    });
    let terminated = Instant::now();
    daemon.signal_term();
    // The grace (1 s) and the bound (15 s), with slack for a loaded
    // machine: the test is that it ends, well before systemd's SIGKILL.
    let deadline = terminated + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "still running {:?} after SIGTERM",
            terminated.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, 0, "a clean stop, no task left running");
    // Back in the queue, for the next start to send.
    let db = rusqlite::Connection::open_with_flags(
        rig.state_dir().join("phonerelay.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let status: String = db
        .query_row("SELECT status FROM outbound WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(status, "queued");
}

/// A stop signal while the daemon starts is heard then, not once the start
/// ends: here the store is locked by another process, and the start waits
/// for it (up to its 10 s busy timeout). The daemon exits 0 at once; it
/// held the signal until the start gave up, then exited 1, and under
/// systemd its start-up extensions kept `systemctl stop` waiting as long.
///
/// Also with the runtime's one worker (one core), a store of the schema
/// before this one's, whose migration waits for the lock inside the
/// store's open: run on that worker, the open kept it from hearing the
/// signal until the open gave up.
#[test]
fn a_stop_signal_while_starting_ends_the_daemon_at_once() {
    a_stop_signal_while_starting_ends_it(false);
    a_stop_signal_while_starting_ends_it(true);
}

fn a_stop_signal_while_starting_ends_it(one_worker_migrating: bool) {
    let Simulated { dir, config, .. } = Simulated::new();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = state.join("phonerelay.sqlite3");
    let holder = if one_worker_migrating {
        use phonerelay::store::sqlite::{SCHEMA_VERSION, create_at_schema_version};
        create_at_schema_version(&db, SCHEMA_VERSION - 1).unwrap();
        let holder = rusqlite::Connection::open(&db).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        holder
    } else {
        drop(phonerelay::store::SqliteStore::open(&db).unwrap());
        let holder = rusqlite::Connection::open(&db).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        holder
    };
    let workers = if one_worker_migrating { "1" } else { "2" };

    let log = dir.path().join("daemon.log");
    let mut child = bin()
        .env("RUST_LOG", "info")
        .env("TOKIO_WORKER_THREADS", workers)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Into the start: its lock taken and its local socket bound, the
    // store next, where its first write waits.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.join(phonerelay::local_socket::FILE_NAME).exists() {
        assert!(
            Instant::now() < deadline,
            "the start never reached the store"
        );
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(exit.code(), Some(0), "{said}");
    assert!(
        said.contains("stop signal while starting: stopped"),
        "{said}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
}
