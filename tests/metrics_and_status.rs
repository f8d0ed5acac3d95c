//! What `/metrics`, `/api/v1/status` and `/api/v1/relay` say when things
//! change under them: the format a scraper is told, series that must go
//! when what they measured goes, gauges kept while the store cannot be
//! read, a phone-bound key's readiness, and a relay link that is off.

mod common;
mod support;

use common::test_channel::Step;
use common::*;
use phonerelay::relay::settings::{self, Pairing};
use phonerelay::store::Scope;
use phonerelay_channel::{ChannelHealth, ChannelKind, SendError};

/// The lines of `/metrics` that start with `prefix`.
async fn series(d: &TestDaemon, prefix: &str) -> Vec<String> {
    d.metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn metrics_are_served_as_the_openmetrics_text_they_are() {
    let d = TestDaemon::start(FAST_OUTBOX, vec![]).await;
    let response = d
        .http
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Read as the classic text format, `# TYPE x counter` with samples
    // `x_total` loses the counter's type.
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // OpenMetrics' HELP text takes no bare `"` or `\` (only `\\`, `\n`
    // and `\"`): a strict parser refuses the whole exposition for one.
    for help in body.lines().filter(|l| l.starts_with("# HELP ")) {
        let mut chars = help.chars();
        while let Some(c) = chars.next() {
            assert_ne!(c, '"', "a bare quote in {help}");
            if c == '\\' {
                assert!(
                    matches!(chars.next(), Some('\\' | 'n' | '"')),
                    "a bare backslash in {help}"
                );
            }
        }
    }
}

/// Hide (rename) or restore the `outbound` table: the daemon's next read
/// of the queue fails.
fn set_outbound_hidden(db: &std::path::Path, hidden: bool) {
    support::store_tables::set_table_hidden(db, "outbound", hidden);
}

#[tokio::test]
async fn queue_gauges_keep_their_values_while_the_queue_cannot_be_read() {
    let sms = TestChannel::new(ChannelKind::Sms, "m1");
    // Down, so the message stays queued.
    sms.set_health(ChannelHealth::down("modem unplugged"));
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    d.queue_sms("+15551230001", "held").await;
    let queued = "phonerelay_queue_messages{channel=\"sms\",phone_id=\"m1\",status=\"queued\"}";
    assert_eq!(series(&d, queued).await, [format!("{queued} 1")]);

    set_outbound_hidden(&d.db_path(), true);
    let unread = series(&d, queued).await;
    set_outbound_hidden(&d.db_path(), false);
    // Not 0: an alert on the queue must not clear because it went unread.
    assert_eq!(unread, [format!("{queued} 1")]);
}

#[tokio::test]
async fn the_status_says_unknown_not_zero_while_the_queue_cannot_be_read() {
    let sms = TestChannel::new(ChannelKind::Sms, "m1");
    // Degraded is still ready: only the store can make it not ready here.
    sms.set_health(ChannelHealth::degraded("weak signal"));
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let id = d.queue_sms("+15551230001", "sent").await;
    d.wait_status(&id, "sent").await;
    let (_, before) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(before["status"], "ready", "{before}");

    set_outbound_hidden(&d.db_path(), true);
    let (code, unread) = d.get("/api/v1/status", &d.admin_key).await;
    let (ready_code, ready) = d.get("/ready", "").await;
    set_outbound_hidden(&d.db_path(), false);
    assert_eq!(code, 200);
    assert_eq!(unread["store"], "unavailable", "{unread}");
    assert_eq!(unread["status"], "not_ready", "{unread}");
    let endpoint = &unread["endpoints"][0];
    for count in ["queued", "sending", "sent_last_hour", "failed_last_hour"] {
        assert!(endpoint[count].is_null(), "{count}: {unread}");
    }
    assert!(endpoint.get("oldest_queued_seconds").is_none(), "{unread}");
    assert_eq!((ready_code, &ready["store"]), (503, &"unavailable".into()));

    let (_, read) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(read["store"], "ok", "{read}");
    assert_eq!(read["endpoints"][0]["queued"], 0, "{read}");
    assert_eq!(read["endpoints"][0]["sent_last_hour"], 1, "{read}");
}

/// Sends that fail for now, retried (no message failed for good yet):
/// the status counts the attempts and says the last one's reason, while
/// the count of failed messages stays 0. A send that went out afterwards
/// does not clear them: they happened in the hour.
#[tokio::test]
async fn attempts_that_failed_for_now_are_counted_in_the_status() {
    let sms = TestChannel::new(ChannelKind::Sms, "m1");
    sms.script(vec![
        Step::Fail(SendError::transient("cms_500", "unknown error")),
        Step::Fail(SendError::transient("cms_500", "unknown error")),
    ]);
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let id = d.queue_sms("+15551230001", "third time").await;
    d.wait_status(&id, "sent").await;
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    let endpoint = &status["endpoints"][0];
    assert_eq!(endpoint["failed_last_hour"], 0, "{status}");
    assert_eq!(endpoint["failed_attempts_last_hour"], 2, "{status}");
    assert_eq!(endpoint["last_failure"]["code"], "cms_500", "{status}");
    assert_eq!(
        endpoint["last_failure"]["message"], "unknown error",
        "{status}"
    );
}

/// A modem connected but off the network reports itself degraded and
/// holds its queue: not ready, since nothing it is given goes out. Back on
/// the network, ready again.
#[tokio::test]
async fn an_endpoint_that_cannot_send_is_not_ready_whatever_its_health_says() {
    let sms = TestChannel::new(ChannelKind::Sms, "m1");
    sms.set_health(ChannelHealth::degraded("not registered on the network"));
    sms.set_can_send(false);
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let (code, ready) = d.get("/ready", "").await;
    assert_eq!(
        (code, &ready["status"]),
        (503, &"not_ready".into()),
        "{ready}"
    );
    assert_eq!(ready["endpoints"][0]["can_send"], false, "{ready}");

    sms.set_can_send(true);
    let (code, ready) = d.get("/ready", "").await;
    assert_eq!((code, &ready["status"]), (200, &"ready".into()), "{ready}");
}

/// The latency histograms have a bucket at the accept target (10 ms) and
/// one past the default send timeout, so both can be read off them.
#[tokio::test]
async fn latency_buckets_mark_the_accept_target_and_the_send_timeout() {
    use phonerelay::config::DEFAULT_SEND_TIMEOUT_SECONDS;
    let sms = TestChannel::new(ChannelKind::Sms, "m1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let id = d.queue_sms("+15551230001", "timed").await;
    d.wait_status(&id, "sent").await;
    let accept = series(&d, "phonerelay_accept_duration_seconds_bucket{le=\"0.01\"}").await;
    assert_eq!(accept.len(), 1, "{accept:?}");
    let past_timeout = phonerelay::metrics::LATENCY_BUCKETS
        .iter()
        .find(|b| **b >= DEFAULT_SEND_TIMEOUT_SECONDS as f64)
        .expect("a bucket at or past the send timeout");
    let le = format!("le=\"{past_timeout:?}\"");
    let sends = d.metrics_text().await;
    assert!(
        sends
            .lines()
            .any(|l| l.starts_with("phonerelay_send_duration_seconds_bucket") && l.contains(&le)),
        "{le} missing"
    );
}

#[tokio::test]
async fn a_quantity_the_endpoint_no_longer_reports_is_no_longer_exported() {
    let sms = TestChannel::new(ChannelKind::Sms, "m1");
    sms.set_health(ChannelHealth::up("registered").with_measure("signal_dbm", -71));
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    let signal = "phonerelay_endpoint_detail{channel=\"sms\",phone_id=\"m1\",name=\"signal_dbm\"}";
    assert_eq!(series(&d, signal).await, [format!("{signal} -71")]);

    // The modem reports no signal now: no value, not the last one.
    sms.set_health(ChannelHealth::up("registered"));
    assert_eq!(series(&d, signal).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_phone_bound_key_s_status_is_judged_on_its_phone_s_endpoints_only() {
    let a = TestChannel::new(ChannelKind::Sms, "phone-a");
    let b = TestChannel::new(ChannelKind::Sms, "phone-b");
    a.set_health(ChannelHealth::down("modem unplugged"));
    let d = TestDaemon::start(FAST_OUTBOX, vec![a.clone(), b.clone()]).await;
    let bound = create_key(&*d.store(), vec![Scope::Read], Some("phone-b")).await;

    let (code, status) = d.get("/api/v1/status", &bound).await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["endpoints"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["status"], "ready", "{status}");

    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(status["status"], "not_ready", "{status}");
}

const PHONE_ID: &str = "ph1";
/// Nothing listens there: a link that ran would fail at once.
const RELAY_URL: &str = "http://127.0.0.1:9";

#[tokio::test]
async fn a_relay_named_without_its_key_is_not_running_and_not_up() {
    // No key file: the link stays off.
    let relay = format!("[relay]\nurl = \"{RELAY_URL}\"\nphone_id = \"{PHONE_ID}\"\n");
    let d = TestDaemon::start(&format!("{FAST_OUTBOX}{relay}"), vec![]).await;

    let up = "phonerelay_relay_up{";
    assert_eq!(
        series(&d, up).await,
        [format!("{up}phone_id=\"{PHONE_ID}\"}} 0")]
    );
    let (code, link) = d.get("/api/v1/relay", &d.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert_eq!(link["state"], "not_running", "{link}");
    assert!(
        link["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no relay key")),
        "{link}"
    );
    let (_, status) = d.get("/api/v1/status", &d.admin_key).await;
    assert_eq!(status["relay"]["state"], "not_running", "{status}");
}

/// A pairing an older build saved with a password in its URL runs no
/// link (`settings::resolve`), and `/api/v1/relay`, which names the relay
/// all the same, shows it with the user and password masked.
#[tokio::test]
async fn a_password_in_a_paired_url_is_not_shown_by_the_api() {
    let d = TestDaemon::start(FAST_OUTBOX, vec![]).await;
    let key = "relay-secret-key-0123456789abcdef";
    std::fs::write(d.dir.path().join("state").join("relay.key"), key).unwrap();
    let pairing = Pairing {
        url: "https://bridge:s3cret@relay.invalid".into(),
        phone_id: PHONE_ID.into(),
        bridge_key_id: "k".into(),
        paired_at_ms: 1,
        key_sha256: Some(settings::key_fingerprint(key)),
    };
    settings::save_pairing(&*d.store(), Some(&pairing))
        .await
        .unwrap();
    let (code, link) = d.get("/api/v1/relay", &d.admin_key).await;
    assert_eq!(code, 200, "{link}");
    assert_eq!(link["state"], "not_running", "{link}");
    assert_eq!(link["url"], "https://****@relay.invalid", "{link}");
    assert!(!link.to_string().contains("s3cret"), "{link}");
}

#[tokio::test]
async fn unpairing_removes_the_relay_series() {
    let d = TestDaemon::start(FAST_OUTBOX, vec![]).await;
    let key = "relay-secret-key-0123456789abcdef";
    let key_file = d.dir.path().join("state").join("relay.key");
    std::fs::write(&key_file, key).unwrap();
    let pairing = Pairing {
        url: RELAY_URL.into(),
        phone_id: PHONE_ID.into(),
        bridge_key_id: "k".into(),
        paired_at_ms: 1,
        key_sha256: Some(settings::key_fingerprint(key)),
    };
    settings::save_pairing(&*d.store(), Some(&pairing))
        .await
        .unwrap();
    let relay_series = "phonerelay_relay_";
    assert_eq!(
        series(&d, relay_series).await.len(),
        4,
        "up, pending, oldest, dead"
    );

    // As `phonerelay unpair` leaves it.
    settings::save_pairing(&*d.store(), None).await.unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let (code, _) = d.get("/api/v1/relay", &d.admin_key).await;
    assert_eq!(code, 404);
    assert_eq!(series(&d, relay_series).await, Vec::<String>::new());
}
