//! The test helpers that run `modem-sim` as a process give up on a
//! simulator that never answers, naming what they waited for, instead
//! of hanging the test that uses them.

mod support;

use std::time::Duration;

use support::process::*;

/// Long enough for the helper to return; a helper without a deadline
/// never would.
const BOUND: Duration = Duration::from_secs(10);

/// What `run` panicked with, within [`BOUND`].
fn panic_of(run: impl FnOnce() + Send + 'static) -> String {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
        let _ = done.send(outcome);
    });
    let outcome = result
        .recv_timeout(BOUND)
        .expect("the helper hung past its deadline");
    let payload = outcome.expect_err("the helper returned an answer");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_control_port_that_never_answers_fails_naming_the_command() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let said = panic_of(move || {
        control_answer(&address, "sent", Duration::from_millis(200));
    });
    assert!(
        said.contains("modem-sim's answer to `sent` did not end within"),
        "{said}"
    );
    drop(silent);
}

#[test]
fn a_simulator_that_never_prints_its_address_fails_or_one_that_ends() {
    let mut quiet = std::process::Command::new("sleep")
        .arg("30")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = quiet.stdout.take().unwrap();
    let said = control_address(stdout, Duration::from_millis(200)).unwrap_err();
    assert!(
        said.contains("printed no `control:` address within"),
        "{said}"
    );
    let _ = quiet.kill();
    let _ = quiet.wait();
    let said = control_address(std::io::empty(), BOUND).unwrap_err();
    assert!(said.contains("ended before it printed"), "{said}");
}
