//! A daemon that reaches its file size limit (`LimitFSIZE=` in a systemd
//! unit) behaves as on a full disk: it stays up, refuses sends with 503
//! and says the store is unavailable, and takes writes again once the limit
//! is raised, without a restart.

mod support;

use std::time::{Duration, Instant};

use support::process::*;

fn send(http: &reqwest::blocking::Client, base: &str, key: &str, n: usize) -> u16 {
    post_sms(http, base, key, &format!("message {n}"), None)
        .unwrap()
        .status()
        .as_u16()
}

fn ready(http: &reqwest::blocking::Client, base: &str) -> (u16, serde_json::Value) {
    let response = http.get(format!("{base}/ready")).send().unwrap();
    let code = response.status().as_u16();
    (code, response.json().unwrap())
}

#[test]
fn a_daemon_past_its_file_size_limit_refuses_sends_and_recovers() {
    let Simulated {
        dir: _dir,
        port,
        config,
    } = Simulated::new();
    let key = create_key_cli(&config);
    // 1 MiB: the database and its first writes fit; a few dozen messages
    // later the write-ahead log does not.
    let mut daemon = DaemonProcess::start_with_file_size_limit(&config, port, 1 << 20);
    let http = reqwest::blocking::Client::new();

    let mut accepted = 0;
    let refused = loop {
        assert!(accepted < 2_000, "the store never reached the limit");
        match send(&http, &daemon.base, &key, accepted) {
            202 => accepted += 1,
            code => break code,
        }
    };
    assert_eq!(refused, 503, "after {accepted} accepted");
    assert!(accepted > 0);
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );
    let health = http.get(format!("{}/health", daemon.base)).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // Readiness says what the last write found. The room left at the end
    // of the write-ahead log may still take a smaller write (a probe, an
    // outcome, a group that happens to be small) after a larger one was
    // refused, so it can say "ok" for a moment; as the writes go on and
    // fill that room, it says "unavailable". The test makes those writes
    // itself: the daemon's own (claims, outcomes) may pause for a while
    // after a refused write, and a quiet store keeps the last answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, report) = ready(&http, &daemon.base);
        if (code, report["store"].as_str()) == (503, Some("unavailable")) {
            break;
        }
        assert!(Instant::now() < deadline, "still ready: {report}");
        match send(&http, &daemon.base, &key, accepted) {
            202 => accepted += 1,
            code => assert_eq!(code, 503, "after {accepted} accepted"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The operator raises the limit; no restart.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = daemon.child.id() as libc::pid_t;
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &unlimited, std::ptr::null_mut()) },
        0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&http, &daemon.base).0 != 200 {
        assert!(Instant::now() < deadline, "the store never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(send(&http, &daemon.base, &key, accepted), 202);
}
