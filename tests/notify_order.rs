//! READY never reaches the service manager after STOPPING: a daemon whose
//! task ends at once begins to stop while its first status report, which
//! READY waits for, still runs. systemd would take a READY after STOPPING
//! for a start that succeeded. The test binds the notification socket and
//! runs `serve` in this process, so it is alone in its binary: it sets
//! `NOTIFY_SOCKET` for the whole process.

mod common;

use std::os::unix::net::UnixDatagram;

use common::*;
use phonerelay::config::load_from_str;
use phonerelay_channel::ChannelKind;

/// Every datagram waiting on `socket`.
fn received(socket: &UnixDatagram) -> Vec<String> {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut told = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        told.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    told
}

#[test]
fn no_ready_after_stopping_when_a_task_ends_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    // SAFETY: the only test of this binary, and no other thread of it
    // runs yet.
    unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
    let text = config_text(&dir, FAST_OUTBOX);
    let loaded = load_from_str(
        &text,
        &dir.path().join("test.toml"),
        dir.path().to_path_buf(),
    )
    .expect("test config parses");
    // Its receive loop returns at once.
    let channel = RunAs::new(TestChannel::new(ChannelKind::Sms, "m1"), |_| async {});
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let served = runtime.block_on(phonerelay::daemon::serve_with(loaded, vec![channel]));
    let error = served.expect_err("a task that ended is a failure");
    assert_eq!(error.code(), 1, "{error}");

    let told = received(&socket);
    let says = |message: &String, line: &str| message.lines().any(|l| l == line);
    let stopping = told
        .iter()
        .position(|m| says(m, "STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1 in {told:?}"));
    assert!(
        !told[stopping..].iter().any(|m| says(m, "READY=1")),
        "READY=1 after STOPPING=1: {told:?}"
    );
}
