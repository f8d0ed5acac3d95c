//! A stop whose last send outcomes the store will not take (a full disk
//! through the hard stop and past the recorder's deadline) fails (exit
//! code 1), naming the messages a restart sends again, instead of a clean
//! exit that hid them.
//!
//! Alone in its test binary: it limits the size of every file the whole
//! process writes (`RLIMIT_FSIZE`), which would break any test running
//! beside it.

mod common;

use common::file_size::WritesRefused;
use common::test_channel::Step;
use common::*;
use phonerelay_channel::ChannelKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cannot_record_an_outcome_fails_naming_its_message() {
    let channel = TestChannel::new(ChannelKind::Sms, "m1");
    // On its way until the hard stop cuts it short (a second's grace).
    channel.script(vec![Step::Hang]);
    let mut d = TestDaemon::start("", vec![channel.clone()]).await;
    let called = channel.send_called.notified();
    tokio::pin!(called);
    called.as_mut().enable();
    let id = d.queue_sms("+15551230001", "cut short").await;
    called.await;

    let full_disk = WritesRefused::now();
    let stopped = d.try_stop().await;
    drop(full_disk);
    let error = stopped.expect_err("the stop fails");
    assert_eq!(error.code(), 1, "{error}");
    assert!(error.to_string().contains(&id), "{error}");
}
