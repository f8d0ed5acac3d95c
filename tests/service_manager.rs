//! The daemon under a service manager speaking the sd_notify protocol, as
//! systemd runs it (`Type=notify`, `WatchdogSec=`): the test binds the
//! notification socket and reads what the real binary sends on it.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::process::*;

/// The watchdog interval the tests give: pings come every quarter of it
/// (0.5 s), each only if the status report behind it answered within that
/// quarter. Long enough that a report waiting behind a commit's fsync on a
/// loaded machine still answers in time; the windows below are counted in
/// these beats.
const WATCHDOG_USEC: &str = "2000000";

/// The socket systemd would listen on, and what arrives on it.
struct ServiceManager {
    socket: UnixDatagram,
    path: PathBuf,
}

impl ServiceManager {
    fn bind(dir: &Path) -> ServiceManager {
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        ServiceManager { socket, path }
    }

    fn start_daemon(&self, config: &Path, port: u16) -> DaemonProcess {
        let path = self.path.to_str().unwrap();
        DaemonProcess::start_with_env(
            config,
            port,
            &[("NOTIFY_SOCKET", path), ("WATCHDOG_USEC", WATCHDOG_USEC)],
        )
    }

    /// The next message, or `None` after `wait`.
    fn next(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Messages until one contains `wanted`; panics after `seconds`.
    fn until(&self, wanted: &str, seconds: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {wanted:?} in {seen:?}");
            if let Some(message) = self.next(left) {
                let done = message.lines().any(|l| l == wanted);
                seen.push(message);
                if done {
                    return seen;
                }
            }
        }
    }

    /// How many watchdog pings arrive within `window`.
    fn pings_within(&self, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        let mut pings = 0;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(m) if m.lines().any(|l| l == "WATCHDOG=1") => pings += 1,
                Some(_) => {}
                None => break,
            }
        }
        pings
    }
}

#[test]
fn start_up_time_then_ready_status_watchdog_and_stopping() {
    let Simulated { dir, port, config } = Simulated::new();
    let manager = ServiceManager::bind(dir.path());
    let daemon = manager.start_daemon(&config, port);

    let before_ready = manager.until("READY=1", 20);
    let first = &before_ready[0];
    assert!(
        first.contains("EXTEND_TIMEOUT_USEC=60000000") && first.contains("STATUS=starting"),
        "more start-up time is asked for first: {first}"
    );
    let ready = before_ready.last().unwrap();
    let status = ready.lines().find(|l| l.starts_with("STATUS=")).unwrap();
    assert!(
        status.contains(&format!("listening on 127.0.0.1:{port}"))
            && status.contains("store ok (")
            && status.contains(" free)")
            && status.contains("sms/sim-1"),
        "{status}"
    );
    // READY means the API answers.
    let health = reqwest::blocking::get(format!("{}/health", daemon.base)).unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // Every 0.5 s (a quarter of the interval): about six in 3 s.
    let pings = manager.pings_within(Duration::from_secs(3));
    assert!((2..=9).contains(&pings), "{pings} watchdog pings in 3 s");

    let pid = daemon.child.id();
    let stopping = std::thread::spawn(move || daemon.terminate());
    let seen = manager.until("STOPPING=1", 10);
    assert!(
        seen.last().unwrap().contains("STATUS=stopping"),
        "{seen:?} (pid {pid})"
    );
    assert_eq!(stopping.join().unwrap().code(), Some(0));
}

/// A stop that waits for a send in flight (a slow network) goes on feeding
/// the watchdog, and its status says it is stopping, not listening.
#[test]
fn while_a_send_in_flight_holds_the_stop_the_status_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = simulated_modem_config_with(dir.path(), port, "network_delay_ms = 3000\n");
    let key = create_key_cli(&config);
    let manager = ServiceManager::bind(dir.path());
    let daemon = manager.start_daemon(&config, port);
    manager.until("READY=1", 20);
    let http = reqwest::blocking::Client::new();
    let accepted: serde_json::Value = post_sms(&http, &daemon.base, &key, "slow", None)
        .unwrap()
        .json()
        .unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    // On the wire: the modem takes 3 s (six beats) to have it accepted.
    wait_for_message(&http, &daemon, &key, &id, 20, |m| m["status"] == "sending");
    let stopping = std::thread::spawn(move || daemon.terminate());
    manager.until("STOPPING=1", 10);
    let mut during = Vec::new();
    // Until the daemon is gone: silent for four beats.
    while let Some(message) = manager.next(Duration::from_secs(2)) {
        during.push(message);
    }
    assert_eq!(stopping.join().unwrap().code(), Some(0));
    assert!(
        during.iter().any(|m| m.contains("WATCHDOG=1")),
        "the watchdog was not fed during the stop: {during:?}"
    );
    assert!(
        !during.iter().any(|m| m.contains("listening")),
        "{during:?}"
    );
}

#[test]
fn the_watchdog_is_not_fed_while_the_store_writer_does_not_answer() {
    let Simulated { dir, port, config } = Simulated::new();
    let manager = ServiceManager::bind(dir.path());
    let daemon = manager.start_daemon(&config, port);
    manager.until("READY=1", 20);
    assert!(manager.pings_within(Duration::from_secs(3)) >= 2);

    // Another process takes the database's write lock and keeps it: the
    // daemon's writer thread waits for it, as it would if it hung.
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // A ping may be on its way from a report begun before the lock (one
    // beat and its answer window). The writer waits for the lock up to its
    // busy timeout (10 s), longer than both windows.
    manager.pings_within(Duration::from_secs(1));
    let starved = manager.pings_within(Duration::from_secs(3));
    assert_eq!(starved, 0, "the watchdog was fed while the writer waited");

    blocker.execute_batch("ROLLBACK").unwrap();
    let resumed = manager.pings_within(Duration::from_secs(3));
    assert!(resumed >= 2, "{resumed} pings once the lock was gone");
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// Without a watchdog the status is reported every 15 s; a modem that
/// comes up just after READY (here the simulated one, within
/// milliseconds) shows in STATUS within about a second, not 15 s later.
#[test]
fn an_endpoint_that_comes_up_shows_in_the_status_at_once() {
    let Simulated { dir, port, config } = Simulated::new();
    let manager = ServiceManager::bind(dir.path());
    let path = manager.path.to_str().unwrap().to_string();
    let daemon = DaemonProcess::start_with_env(&config, port, &[("NOTIFY_SOCKET", &path)]);
    manager.until("READY=1", 20);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the modem never showed as up: {seen:?}");
        let Some(message) = manager.next(left) else {
            continue;
        };
        if message.contains("sms/sim-1 up") {
            break;
        }
        seen.push(message);
    }
    assert_eq!(daemon.terminate().code(), Some(0));
}
