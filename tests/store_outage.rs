//! The store stops taking writes (a full disk) while a send is on its way,
//! then comes back: the send is recorded once it can be, and not sent a
//! second time; a send offered meanwhile is refused and nothing is kept;
//! readiness says the store is unavailable until writes work again.
//!
//! Alone in its test binary: it limits the size of every file the whole
//! process writes (`RLIMIT_FSIZE`), which would break any test running
//! beside it.

mod common;

use std::time::Duration;

use common::file_size::WritesRefused;
use common::test_channel::Step;
use common::*;
use phonerelay_channel::ChannelKind;

/// What `/ready` and `/metrics` say of the store.
async fn assert_store_reported(d: &TestDaemon, up: bool) {
    let (code, ready) = d.get("/ready", "").await;
    let expected = if up {
        (200, "ok")
    } else {
        (503, "unavailable")
    };
    assert_eq!(
        (code, ready["store"].as_str().unwrap()),
        expected,
        "{ready}"
    );
    let metrics = d.metrics_text().await;
    let gauge = format!("phonerelay_store_up {}", up as u8);
    assert!(metrics.contains(&gauge), "{metrics}");
}

/// A lease short enough that a send whose outcome was lost would be sent
/// again within the test.
const SHORT_LEASE: &str = r#"
[outbox]
retry_initial_ms = 40
retry_max_ms = 200
lease_seconds = 3
send_timeout_seconds = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_finished_while_the_store_is_down_is_recorded_once_it_is_back() {
    let channel = TestChannel::new(ChannelKind::Sms, "m1");
    channel.script(vec![Step::Hang]);
    let d = TestDaemon::start(SHORT_LEASE, vec![channel.clone()]).await;
    let called = channel.send_called.notified();
    tokio::pin!(called);
    called.as_mut().enable();
    let id = d.queue_sms("+15551230001", "first").await;
    called.await;

    let full_disk = WritesRefused::now();
    let response = d
        .http
        .post(format!("{}/api/v1/messages", d.base))
        .bearer_auth(&d.admin_key)
        .json(&send_body("m1", "sms", "+15551230002", "refused"))
        .send()
        .await
        .unwrap();
    // The client is told when to try again.
    let retry_after = response.headers().get("retry-after").cloned();
    assert_eq!(retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("5"));
    let (code, refused) = into_parts(response).await;
    assert_eq!(code, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "store_unavailable");
    // Readiness says so too (a transaction that writes nothing would still
    // succeed on a full disk).
    assert_store_reported(&d, false).await;
    // The first send succeeds on the channel while its outcome cannot be
    // written; give the recorder time to fail at it.
    // (Until it is seen: the send may not be waiting for it yet.)
    while channel.sent().is_empty() {
        channel.release();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, during) = d.get(&format!("/api/v1/messages/{id}"), &d.admin_key).await;
    assert_eq!(during["status"], "sending", "{during}");
    drop(full_disk);
    assert_store_reported(&d, true).await;

    let sent = d.wait_status(&id, "sent").await;
    assert_eq!(
        history_statuses(&sent),
        ["queued", "sending", "sent"],
        "{sent:#}"
    );
    // Longer than the lease: an outcome that had been given up would have
    // let the lease send the message again by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(channel.calls(), 1, "sent once");
    assert_eq!(channel.sent().len(), 1);

    // Nothing of the refused send was kept, and the store takes writes
    // again without a restart.
    let (_, page) = d.get("/api/v1/messages", &d.admin_key).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{page}");
    d.queue_sms("+15551230002", "after").await;
    channel.wait_sent(2).await;
}
