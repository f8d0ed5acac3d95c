//! `server.request_timeout_seconds` bounds how long a client takes to send
//! its body, and nothing after: a send whose commit is slow is answered with
//! the commit's outcome, never a timeout for a message that is then sent.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use phonerelay::api::WEBHOOK_BODIES_AT_ONCE;
use phonerelay_channel::ChannelKind;
use serde_json::{Value, json};
use support::store_tables::hold_write_lock;
use tempfile::TempDir;

/// A daemon whose request timeout is one second.
async fn start_with_one_second_timeout(channel: std::sync::Arc<TestChannel>) -> TestDaemon {
    start_with_request_timeout(channel, 1).await
}

async fn start_with_request_timeout(
    channel: std::sync::Arc<TestChannel>,
    seconds: u64,
) -> TestDaemon {
    let dir = tempfile::tempdir().unwrap();
    let text = config_with_timeout(&dir, seconds);
    TestDaemon::start_in(dir, text, vec![channel]).await
}

fn config_with_timeout(dir: &TempDir, seconds: u64) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_seconds = 1\n\
         request_timeout_seconds = {seconds}\n\n\
         [storage]\nstate_dir = \"{}\"\n\n{FAST_OUTBOX}",
        dir.path().join("state").display()
    )
}

/// A connection that has sent the start of a request's headers and no more.
fn half_sent_headers(d: &TestDaemon) -> TcpStream {
    let addr = d.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"POST /api/v1/messages HTTP/1.1\r\nHost: test\r\n")
        .unwrap();
    stream
}

/// Send `head` and `body_start` on a raw connection, then wait for the
/// answer without sending the rest; returns the status line and the body.
fn half_sent_request(addr: &str, head: &str, body_start: &str) -> (String, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body_start.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The daemon answers and closes: the rest of the body will never come.
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to a half-sent body: {e}"),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && serde_json::from_str::<Value>(body).is_ok()
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status_line = head.lines().next().unwrap_or("").to_string();
    (
        status_line,
        serde_json::from_str(body).expect("a JSON body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_request_timeout_gets_408_and_stores_nothing() {
    let sms = TestChannel::new(ChannelKind::Sms, "phone-1");
    let d = start_with_one_second_timeout(sms.clone()).await;
    let addr = d.base.trim_start_matches("http://").to_string();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        d.admin_key
    );
    let started = Instant::now();
    let (status, body) =
        tokio::task::spawn_blocking(move || half_sent_request(&addr, &head, r#"{"phone_id":"#))
            .await
            .unwrap();
    let waited = started.elapsed();
    assert!(status.starts_with("HTTP/1.1 408"), "{status}: {body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}"
    );
    let (_, page) = d.get("/api/v1/messages", &d.admin_key).await;
    assert_eq!(
        page["messages"],
        json!([]),
        "a half-sent body stored something"
    );
    assert_eq!(sms.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_slower_than_the_request_timeout_is_answered_with_its_outcome() {
    let sms = TestChannel::new(ChannelKind::Sms, "phone-1");
    let d = start_with_one_second_timeout(sms.clone()).await;
    // Another process holds the database's write lock for 2.5 s: the
    // daemon's commit waits for it (busy timeout), longer than the request
    // timeout.
    let holder = hold_write_lock(d.db_path(), Duration::from_millis(2500));
    let started = Instant::now();
    let (status, body) = d
        .post(
            "/api/v1/messages",
            &d.admin_key,
            &send_body("phone-1", "sms", "+15551230001", "slow disk"),
        )
        .await;
    let waited = started.elapsed();
    holder.join().unwrap();
    assert_eq!(status, 202, "{body}");
    assert!(
        waited >= Duration::from_millis(2000),
        "the commit did not wait for the lock: {waited:?}"
    );
    let id = body["id"].as_str().unwrap().to_string();
    let message = d.wait_status(&id, "sent").await;
    assert_eq!(message["text"], "slow disk");
    assert_eq!(sms.sent().len(), 1, "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_gets_its_own_size_limit_and_the_timeout_of_a_send() {
    let tg = TestChannel::new(ChannelKind::Tg, "bot-1");
    let d = start_with_one_second_timeout(tg.clone()).await;
    let hook = format!("{}/webhooks/tg/bot-1/hook", d.base);

    // A whole body is committed before the 200.
    let pushed = json!({"from": "12345", "text": "pushed reply", "id": "up-1"});
    let response = d.http.post(&hook).json(&pushed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (_, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    assert_eq!(page["messages"][0]["text"], "pushed reply", "{page}");

    // Larger than any send may be (an upstream's batch): taken.
    let batch = json!({"from": "12345", "text": "y".repeat(1_000_000), "id": "up-2"});
    let response = d.http.post(&hook).json(&batch).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (_, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    assert_eq!(
        page["messages"][0]["text"].as_str().unwrap().len(),
        1_000_000
    );

    // Past its own limit: our error shape, not the framework's plain text.
    let huge = "x".repeat(5 * 1024 * 1024);
    let response = d.http.post(&hook).body(huge).send().await.unwrap();
    let (status, body) = into_parts(response).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_webhook_body_bytes"),
        "{body}"
    );

    // Too slow: 408 in our shape, and nothing committed.
    let addr = d.base.trim_start_matches("http://").to_string();
    let head = "POST /webhooks/tg/bot-1/hook HTTP/1.1\r\nHost: test\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        .to_string();
    let (status, body) =
        tokio::task::spawn_blocking(move || half_sent_request(&addr, &head, r#"{"from":"#))
            .await
            .unwrap();
    assert!(status.starts_with("HTTP/1.1 408"), "{status}: {body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    let (_, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    let ids: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["up-2", "up-1"], "nothing more committed");
}

/// Webhook paths are public: bodies of the largest size, sent slowly on
/// many connections, may hold only so much memory at once. Past that room
/// an upstream is told to come back (503 `webhook_busy`, `Retry-After`)
/// and nothing of its request is committed; once the slow bodies' reads
/// end, their room is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_bodies_are_read_only_within_their_room() {
    let tg = TestChannel::new(ChannelKind::Tg, "bot-1");
    let d = start_with_request_timeout(tg.clone(), 30).await;
    let addr = d.base.trim_start_matches("http://").to_string();
    let largest = phonerelay::config::DEFAULT_MAX_WEBHOOK_BODY_BYTES;
    // Each sends all of a largest body but its last 100 bytes, and waits.
    // Written off the runtime: a blocked worker would hold up the daemon.
    let slow: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..WEBHOOK_BODIES_AT_ONCE)
            .map(|_| {
                let mut stream = TcpStream::connect(&addr).unwrap();
                let head = format!(
                    "POST /webhooks/tg/bot-1/hook HTTP/1.1\r\nHost: test\r\n\
                     Content-Type: application/json\r\nContent-Length: {largest}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&vec![b' '; largest - 100]).unwrap();
                stream
            })
            .collect()
    })
    .await
    .unwrap();
    let hook = format!("{}/webhooks/tg/bot-1/hook", d.base);
    let reply = |id: &str| json!({"from": "12345", "text": "x".repeat(8192), "id": id});
    // Until the daemon has taken in the slow bodies (the kernel may hold
    // them a while), which /metrics shows.
    let held = WEBHOOK_BODIES_AT_ONCE * (largest - 100);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = d
            .http
            .get(format!("{}/metrics", d.base))
            .send()
            .await
            .unwrap();
        let text = metrics.text().await.unwrap();
        if text.contains(&format!("phonerelay_webhook_body_bytes {held}\n")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow bodies were not taken in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = d
        .http
        .post(&hook)
        .json(&reply("turned-away"))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.headers()["retry-after"], "5");
    let (status, body) = into_parts(busy).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "webhook_busy", "{body}");
    let (_, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    assert_eq!(
        page["messages"],
        json!([]),
        "a turned-away body was committed"
    );

    // The slow senders give up: their room comes back.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = d
            .http
            .post(&hook)
            .json(&reply("after"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the room never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, page) = d.get("/api/v1/inbound", &d.admin_key).await;
    assert_eq!(page["messages"][0]["external_id"], "after", "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let d = start_with_one_second_timeout(TestChannel::new(ChannelKind::Sms, "phone-1")).await;
    let mut stream = half_sent_headers(&d);
    let started = Instant::now();
    let read = tokio::task::spawn_blocking(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1024];
        stream.read(&mut buf)
    })
    .await
    .unwrap();
    let waited = started.elapsed();
    // Closed by the daemon (end of stream), not left open until our own
    // 10 s read timeout.
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?} after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_up_shutdown() {
    // The header timeout is far away: only the shutdown grace (1 s) can end
    // this connection.
    let mut d =
        start_with_request_timeout(TestChannel::new(ChannelKind::Sms, "phone-1"), 600).await;
    let _stream = half_sent_headers(&d);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), d.stop())
        .await
        .expect("the daemon stops while a client is half-way through a request");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_flight_at_shutdown_is_answered_before_the_daemon_stops() {
    let sms = TestChannel::new(ChannelKind::Sms, "phone-1");
    // A grace of 5 s: the lock held below and the commit's fsync after it
    // end well inside it on a loaded machine.
    let dir = tempfile::tempdir().unwrap();
    let text = config_with_timeout(&dir, 30)
        .replace("shutdown_grace_seconds = 1", "shutdown_grace_seconds = 5");
    let mut d = TestDaemon::start_in(dir, text, vec![sms.clone()]).await;
    // The commit waits 2 s for another connection's write lock: the stop
    // begins while it waits, and the answer comes well before the grace ends.
    let holder = hold_write_lock(d.db_path(), Duration::from_secs(2));
    let request = d
        .http
        .post(format!("{}/api/v1/messages", d.base))
        .bearer_auth(&d.admin_key)
        .json(&send_body("phone-1", "sms", "+15551230001", "in flight"))
        .send();
    let in_flight = tokio::spawn(request);
    // Stop once the request is inside the daemon, waiting on the lock (no
    // event tells when it got there; 700 ms leaves the lock 1.3 s more).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let db = d.db_path();
    d.stop().await;
    holder.join().unwrap();
    let response = in_flight.await.unwrap().expect("answered, not cut off");
    let (status, body) = into_parts(response).await;
    assert_eq!(status, 202, "{body}");
    // Committed: the message is in the store the daemon left behind.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let id = body["id"].as_str().unwrap();
    let text: String = conn
        .query_row("SELECT body FROM outbound WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(text, "in flight");
}

/// A webhook request to a path that is no endpoint's is answered 404 at
/// once, before its body is read: a large body sent slowly there would
/// otherwise hold its memory for the whole request timeout, with no key
/// asked. (The daemon's timeout here is 30 s; the client waits 10.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_no_endpoint_is_refused_before_its_body_is_read() {
    let tg = TestChannel::new(ChannelKind::Tg, "bot-1");
    let d = start_with_request_timeout(tg, 30).await;
    for path in [
        "/webhooks/tg/no-such-bot/hook",
        "/webhooks/tg/bot-1/not-its-path",
        "/webhooks/wa",
    ] {
        let addr = d.base.trim_start_matches("http://").to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: 4194304\r\n\r\n"
        );
        let (status, body) =
            tokio::task::spawn_blocking(move || half_sent_request(&addr, &head, r#"{"from":"#))
                .await
                .unwrap();
        assert!(
            status.starts_with("HTTP/1.1 404"),
            "{path}: {status}: {body}"
        );
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}
