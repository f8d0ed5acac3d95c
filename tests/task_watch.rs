//! A daemon task that ends while the daemon runs is noticed: `serve` stops
//! the daemon with exit code 1 on it, so the service manager starts a whole
//! one again rather than leave, say, a queue without its dispatcher.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use phonerelay_channel::ChannelKind;
use tokio::sync::Notify;

#[tokio::test]
async fn a_task_that_panics_while_the_daemon_runs_is_reported_by_name() {
    // Its receive loop panics when told to.
    let breaks = Arc::new(Notify::new());
    let told = breaks.clone();
    let channel = RunAs::new(TestChannel::new(ChannelKind::Sms, "m1"), move |ctx| {
        let told = told.clone();
        async move {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {}
                _ = told.notified() => panic!("the receive loop broke"),
            }
        }
    });
    let mut d = TestDaemon::start(FAST_OUTBOX, vec![channel]).await;
    let daemon = d.daemon.as_mut().unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), daemon.task_ended()).await;
    assert!(quiet.is_err(), "a task ended on its own: {quiet:?}");

    breaks.notify_one();
    let ended = tokio::time::timeout(Duration::from_secs(5), daemon.task_ended())
        .await
        .expect("the panic is noticed");
    assert_eq!(
        ended.to_string(),
        "the sms/m1 channel panicked: the receive loop broke"
    );
    // The rest still stops cleanly.
    tokio::time::timeout(Duration::from_secs(10), d.stop())
        .await
        .expect("the daemon stops");
}

/// A panic during the stop is no clean stop either: the stop fails with
/// exit code 1, naming the task, as `serve` then exits.
#[tokio::test]
async fn a_task_that_panics_while_the_daemon_stops_fails_the_stop() {
    // Its receive loop panics on its way out.
    let channel = RunAs::new(TestChannel::new(ChannelKind::Sms, "m1"), |ctx| async move {
        ctx.shutdown.cancelled().await;
        panic!("the receive loop broke");
    });
    let mut d = TestDaemon::start(FAST_OUTBOX, vec![channel]).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), d.try_stop())
        .await
        .expect("the daemon stops");
    let error = stopped.expect_err("the panic fails the stop");
    assert_eq!(error.code(), 1);
    assert_eq!(
        error.to_string(),
        "the sms/m1 channel panicked: the receive loop broke while the daemon stopped"
    );
}

/// A task that does not end at the hard stop (a receive loop stuck on a
/// modem that never answers) does not hold the stop for ever: after
/// `STOP_BOUND` it is named and left, and the stop fails (exit 1), well
/// before systemd's `TimeoutStopSec` would SIGKILL the daemon with the
/// unit failed. (The stop waited for it with no bound.)
#[tokio::test]
async fn a_task_still_running_after_the_hard_stop_is_named_and_the_stop_fails_within_the_bound() {
    // Its receive loop ignores the stop.
    let channel = RunAs::new(TestChannel::new(ChannelKind::Sms, "m1"), |_ctx| {
        std::future::pending::<()>()
    });
    let mut d = TestDaemon::start(FAST_OUTBOX, vec![channel]).await;
    // The grace (1 s), then the bound, with some slack.
    let limit = Duration::from_secs(1) + phonerelay::daemon::STOP_BOUND + Duration::from_secs(3);
    let stopped = tokio::time::timeout(limit, d.try_stop())
        .await
        .expect("the stop ends within the grace and the bound");
    let error = stopped.expect_err("a task left running fails the stop");
    assert_eq!(error.code(), 1);
    assert_eq!(
        error.to_string(),
        format!(
            "still running {} s after the hard stop: the sms/m1 channel",
            phonerelay::daemon::STOP_BOUND.as_secs()
        )
    );
    // The task left may still write or send: the state dir stays this
    // daemon's until its process ends, not a second daemon's or a
    // `restore`'s a moment before the exit.
    let state_dir = d.dir.path().join("state");
    assert!(
        phonerelay::instance_lock::acquire(&state_dir).is_err(),
        "the state dir was given up with a task still running"
    );
}

/// A clean stop gives the state dir up, for the next daemon.
#[tokio::test]
async fn a_clean_stop_gives_the_state_dir_up() {
    let mut d =
        TestDaemon::start(FAST_OUTBOX, vec![TestChannel::new(ChannelKind::Sms, "m1")]).await;
    d.try_stop().await.unwrap();
    let state_dir = d.dir.path().join("state");
    assert!(phonerelay::instance_lock::acquire(&state_dir).is_ok());
}
