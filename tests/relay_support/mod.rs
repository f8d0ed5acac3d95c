//! An emulated pChat relay for the relay-link tests: an axum server on
//! 127.0.0.1 that checks the bearer key, records every request, serves
//! pull jobs until acknowledged, and can be made to fail, refuse, be slow
//! or go away and come back on the same port.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use phonerelay_channel::{ChannelEvent, ChannelKind, InboundMessage};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const RELAY_KEY: &str = "relay-secret-key-0123456789abcdef";
pub const PHONE_ID: &str = "ph1";

/// One POST to the relay's messages path.
#[derive(Debug, Clone)]
pub struct Received {
    pub idempotency_key: Option<String>,
    pub body: Value,
}

/// One file taken at the relay's media path.
#[derive(Debug, Clone)]
pub struct Upload {
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    /// `X-Filename`, percent-decoded.
    pub filename: Option<String>,
    pub phone_id: Option<String>,
    /// `Content-Length` and `Transfer-Encoding` as they came.
    pub content_length: Option<String>,
    pub transfer_encoding: Option<String>,
    pub bytes: Vec<u8>,
    /// The URL the relay answered with.
    pub url: String,
}

#[derive(Default)]
pub struct Recorded {
    /// Every accepted message POST (relay-side idempotency applied).
    pub messages: Vec<Received>,
    /// Every messages POST, including refused and repeated ones.
    pub message_attempts: u32,
    /// The body of each of those POSTs, in order.
    pub message_attempt_bodies: Vec<Value>,
    /// The Idempotency-Key of each of those POSTs, in order.
    pub message_attempt_keys: Vec<Option<String>>,
    pub status_events: Vec<Value>,
    pub heartbeats: Vec<Value>,
    pub acks: Vec<Value>,
    pub hellos: Vec<Value>,
    pub polls: u32,
    /// Which routes were refused by `fail_all` or a bad key, in order.
    pub refused: Vec<&'static str>,
    /// Messages POSTs that passed auth, repeats included.
    pub message_posts_taken: u32,
    /// Jobs served to polls and not yet acknowledged.
    pub jobs: VecDeque<Value>,
    /// Answer every request with this status (relay broken).
    pub fail_all: Option<u16>,
    /// With `fail_all`: the refusal repeats the bearer key it was sent
    /// (as some servers do), and carries this `Retry-After`.
    pub echo_key: bool,
    pub fail_retry_after: Option<String>,
    /// Answer this many status requests with 503 first.
    pub fail_status_times: u32,
    /// The phone_id polls must carry, when not [`PHONE_ID`]: a link
    /// configured for another phone.
    pub poll_phone_id: Option<String>,
    /// Answer a poll with no jobs at once instead of holding it open.
    pub short_polls: bool,
    /// Refuse every ack with this status, keeping the jobs: they are
    /// handed out again at the next poll.
    pub refuse_acks: Option<u16>,
    /// Refuse (413) any ack with more entries than this, keeping its
    /// jobs: a relay whose body limit is below a full poll's ack.
    pub ack_max_entries: Option<usize>,
    /// Refuse (422) any ack with an entry for this relay id, keeping its
    /// jobs: a job the relay will not have acknowledged.
    pub refuse_ack_of: Option<String>,
    /// Refuse (422) any status batch with an event for this relay id: a
    /// message the relay no longer knows.
    pub refuse_status_for: Option<String>,
    /// Refuse (422) every status batch, whatever it holds: a relay that
    /// changed under the bridge. Counted in `status_refusals`.
    pub refuse_all_status: bool,
    /// Refuse (422) any status batch with an event for a relay id that
    /// starts with this: messages the relay no longer knows, many of them.
    pub refuse_status_prefix: Option<String>,
    /// Refuse (422) every status batch until one comes whose events all
    /// lie past those refused so far, and take that and everything after
    /// it: a relay that comes back just as the bridge sends the events
    /// past a batch it kept as a probe.
    pub refuse_status_until_probe: bool,
    /// The last event_id refused while `refuse_status_until_probe`.
    pub status_refused_up_to: Option<i64>,
    pub status_refusals_of_forgotten: u32,
    pub status_refusals: u32,
    /// The most events one batch refused by `refuse_all_status` held.
    pub largest_refused_status_batch: usize,
    /// Answer this many ack requests with 200 but forget them (the relay
    /// crashed before saving): the jobs are delivered again.
    pub lose_ack_times: u32,
    /// Refuse messages whose text contains "REJECT" with 422.
    pub reject_marked: bool,
    /// Answer a repeat of an Idempotency-Key whose first POST was refused
    /// as marked with that refusal again, whatever `reject_marked` says
    /// by then: a relay that answers a repeat as it answered the first.
    pub repeat_refusals: bool,
    /// The keys of messages refused as marked.
    pub refused_keys: Vec<String>,
    pub delay_ms: u64,
    /// Answer every request taken with `200` and the plain-text body `OK`
    /// instead of JSON (any 2xx is a success, the protocol says), polls
    /// too (which then carry no jobs).
    pub plain_ok: bool,
    /// Answer a messages POST this late after recording it: the relay has
    /// it, the bridge does not know yet.
    pub answer_delay_ms: u64,
    /// Hold the answer to every messages POST taken (after recording it)
    /// until the test sets this back to false: the relay has it, the
    /// bridge does not know yet, for as long as the test needs, however
    /// slow the machine.
    pub hold_answers: bool,
    /// Answer messages POSTs (after auth) with this 3xx and a Location to
    /// `/elsewhere`, a page that answers 200 to anything, without taking
    /// them: a relay moved, or a URL that lands on a login page.
    pub redirect_messages: Option<u16>,
    /// Requests `/elsewhere` got (a redirect followed), any method.
    pub elsewhere_hits: u32,
    /// Never answer messages POSTs (after auth) and take nothing: a relay
    /// that black-holes requests.
    pub black_hole_messages: bool,
    /// Answer messages whose text contains "HOLD" with this status,
    /// without taking them.
    pub hold_marked: Option<u16>,
    /// Every file taken at the media path (relay-side idempotency
    /// applied: a repeat of an Idempotency-Key is answered with the first
    /// file's URL and not kept again).
    pub uploads: Vec<Upload>,
    /// Media POSTs that passed auth, repeats and failures included.
    pub upload_attempts: u32,
    /// Answer this many media POSTs (after auth) with 503 first.
    pub fail_media_times: u32,
    /// Refuse every media POST (after auth) with this status.
    pub refuse_media: Option<u16>,
    /// Take this long over each media POST (after auth) before keeping
    /// the file: a relay, or a way to it, too slow for the upload's
    /// timeout.
    pub slow_media_ms: u64,
}

pub struct EmulatedRelay {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<Recorded>>,
    stop: Option<CancellationToken>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatedRelay {
    pub async fn start() -> EmulatedRelay {
        let state = Arc::new(Mutex::new(Recorded {
            reject_marked: true,
            ..Recorded::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut relay = EmulatedRelay {
            addr,
            state,
            stop: None,
            task: None,
        };
        relay.serve(listener);
        relay
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bridge's `[relay]` section for this relay ([`relay_config`]).
    pub fn bridge_config(&self, mode: &str, default_to: Option<&str>) -> String {
        relay_config(&self.url(), mode, default_to)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/api/v1/messages", post(messages))
            .route("/api/v1/bridge/hello", post(hello))
            .route("/api/v1/bridge/poll", post(poll))
            .route("/api/v1/bridge/ack", post(ack))
            .route("/api/v1/bridge/status", post(status))
            .route("/api/v1/bridge/heartbeat", post(heartbeat))
            .route("/api/v1/bridge/media", post(media))
            .route("/elsewhere", axum::routing::any(elsewhere))
            .with_state(self.state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        }));
        self.stop = Some(stop);
    }

    /// Go away: connections are refused until `up()`.
    pub async fn down(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Come back on the same port.
    pub async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn messages(&self) -> Vec<Received> {
        self.with(|s| s.messages.clone())
    }

    /// The texts of the messages the relay took, in the order it took them.
    pub fn message_texts(&self) -> Vec<String> {
        self.with(|s| {
            s.messages
                .iter()
                .map(|m| m.body["text"].as_str().unwrap_or_default().to_string())
                .collect()
        })
    }

    pub fn status_events(&self) -> Vec<Value> {
        self.with(|s| s.status_events.clone())
    }

    /// Wait until `done` holds for the recorded state, or panic after 15 s.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Recorded) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.with(|s| done(s)) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let summary = self.with(|s| {
                    format!(
                        "messages={:?} status={:?} acks={:?} jobs={:?}",
                        s.messages.iter().map(|m| &m.body).collect::<Vec<_>>(),
                        s.status_events,
                        s.acks,
                        s.jobs
                    )
                });
                panic!("the relay never saw {what}: {summary}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EmulatedRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }
}

type Shared = State<Arc<Mutex<Recorded>>>;

fn error(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// A request taken: `json` with `status`, or `200 OK` in plain text when
/// the relay answers so (`Recorded::plain_ok`).
fn taken(plain_ok: bool, status: StatusCode, json: Value) -> Response {
    if plain_ok {
        return (StatusCode::OK, "OK").into_response();
    }
    (status, Json(json)).into_response()
}

/// Auth, the broken switch and the delay, common to every route.
async fn gate(
    state: &Arc<Mutex<Recorded>>,
    headers: &HeaderMap,
    route: &'static str,
) -> Option<Response> {
    let delay = state.lock().unwrap().delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let (fail_all, echo_key, retry_after) = {
        let s = state.lock().unwrap();
        (s.fail_all, s.echo_key, s.fail_retry_after.clone())
    };
    if let Some(status) = fail_all {
        state.lock().unwrap().refused.push(route);
        let message = match (echo_key, presented) {
            (true, Some(key)) => format!("key {key} refused"),
            _ => "emulated failure".to_string(),
        };
        let mut refusal = error(status, "relay_broken", &message);
        if let Some(seconds) = retry_after {
            refusal
                .headers_mut()
                .insert("retry-after", seconds.parse().unwrap());
        }
        return Some(refusal);
    }
    if presented != Some(RELAY_KEY) {
        state.lock().unwrap().refused.push(route);
        return Some(error(401, "unauthorized", "bad bearer key"));
    }
    None
}

async fn hello(State(state): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(refused) = gate(&state, &headers, "hello").await {
        return refused;
    }
    state.lock().unwrap().hellos.push(body.clone());
    if body["phone_id"] != PHONE_ID {
        return error(404, "unknown_phone_id", "no such phone");
    }
    taken(
        state.lock().unwrap().plain_ok,
        StatusCode::OK,
        json!({"phone_id": PHONE_ID, "relay": "emulated"}),
    )
}

async fn messages(State(state): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    {
        let mut s = state.lock().unwrap();
        s.message_attempts += 1;
        s.message_attempt_bodies.push(body.clone());
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
        s.message_attempt_keys.push(key.map(str::to_string));
    }
    if let Some(refused) = gate(&state, &headers, "messages").await {
        return refused;
    }
    let (redirect, black_hole, hold) = {
        let s = state.lock().unwrap();
        (s.redirect_messages, s.black_hole_messages, s.hold_marked)
    };
    if let Some(status) = redirect {
        return (
            StatusCode::from_u16(status).unwrap(),
            [(axum::http::header::LOCATION, "/elsewhere")],
        )
            .into_response();
    }
    if black_hole {
        // Dropped, unanswered, when the bridge gives up or the relay stops.
        return std::future::pending().await;
    }
    let marked = body["text"].as_str().is_some_and(|t| t.contains("HOLD"));
    if let (Some(status), true) = (hold, marked) {
        return error(status, "held", "emulated refusal of a marked message");
    }
    let Some((id, answer_delay_ms)) = record_message(&state, &headers, body) else {
        return error(422, "invalid_to", "no such pChat user");
    };
    if answer_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(answer_delay_ms)).await;
    }
    while state.lock().unwrap().hold_answers {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    taken(
        state.lock().unwrap().plain_ok,
        StatusCode::ACCEPTED,
        json!({"id": id}),
    )
}

/// Where `redirect_messages` points: any page that answers 200.
async fn elsewhere(State(state): Shared) -> Response {
    state.lock().unwrap().elsewhere_hits += 1;
    (StatusCode::OK, "<html>a web page</html>").into_response()
}

/// Take a message (relay-side idempotency applied): its pChat id and how
/// long to wait before answering; `None` if it is refused as marked.
fn record_message(
    state: &Arc<Mutex<Recorded>>,
    headers: &HeaderMap,
    body: Value,
) -> Option<(String, u64)> {
    let mut s = state.lock().unwrap();
    s.message_posts_taken += 1;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let refused_before = key.as_ref().is_some_and(|k| s.refused_keys.contains(k));
    if s.repeat_refusals && refused_before {
        return None;
    }
    if s.reject_marked && body["text"].as_str().is_some_and(|t| t.contains("REJECT")) {
        s.refused_keys.extend(key);
        return None;
    }
    let seen = key.is_some() && s.messages.iter().any(|m| m.idempotency_key == key);
    if !seen {
        s.messages.push(Received {
            idempotency_key: key,
            body,
        });
    }
    Some((format!("pc-{}", s.messages.len()), s.answer_delay_ms))
}

async fn poll(State(state): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(refused) = gate(&state, &headers, "poll").await {
        return refused;
    }
    {
        let mut s = state.lock().unwrap();
        let expected = s.poll_phone_id.clone().unwrap_or_else(|| PHONE_ID.into());
        assert_eq!(body["phone_id"], expected.as_str());
        if s.plain_ok {
            s.polls += 1;
            return taken(true, StatusCode::OK, json!({}));
        }
        if s.short_polls && s.jobs.is_empty() {
            s.polls += 1;
            return Json(json!({"jobs": []})).into_response();
        }
    }
    // Long poll: answer as soon as there are jobs, or after a short wait.
    for _ in 0..10 {
        {
            let mut s = state.lock().unwrap();
            if !s.jobs.is_empty() {
                s.polls += 1;
                // At most `max`, oldest first, as the protocol has it.
                let max = body["max"].as_u64().map_or(usize::MAX, |m| m as usize);
                let jobs: Vec<Value> = s.jobs.iter().take(max).cloned().collect();
                return Json(json!({"jobs": jobs})).into_response();
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    state.lock().unwrap().polls += 1;
    Json(json!({"jobs": []})).into_response()
}

async fn ack(State(state): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(refused) = gate(&state, &headers, "ack").await {
        return refused;
    }
    let mut s = state.lock().unwrap();
    s.acks.push(body.clone());
    if let Some(status) = s.refuse_acks {
        return error(status, "conflict", "this job was withdrawn");
    }
    let entries = body["acks"].as_array().cloned().unwrap_or_default();
    if s.ack_max_entries.is_some_and(|max| entries.len() > max) {
        return error(413, "payload_too_large", "request body too large");
    }
    if let Some(id) = &s.refuse_ack_of
        && entries.iter().any(|a| a["relay_message_id"] == id.as_str())
    {
        return error(422, "unknown_job", "no such job");
    }
    if s.lose_ack_times > 0 {
        s.lose_ack_times -= 1;
        return taken(s.plain_ok, StatusCode::OK, json!({"ok": true}));
    }
    for a in body["acks"].as_array().cloned().unwrap_or_default() {
        s.jobs
            .retain(|j| j["relay_message_id"] != a["relay_message_id"]);
    }
    taken(s.plain_ok, StatusCode::OK, json!({"ok": true}))
}

async fn status(State(state): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(refused) = gate(&state, &headers, "status").await {
        return refused;
    }
    let mut s = state.lock().unwrap();
    if s.fail_status_times > 0 {
        s.fail_status_times -= 1;
        return error(503, "unavailable", "try later");
    }
    let events = body["events"].as_array().cloned().unwrap_or_default();
    if s.refuse_all_status {
        s.status_refusals += 1;
        s.largest_refused_status_batch = s.largest_refused_status_batch.max(events.len());
        return error(422, "unsupported_event", "not an event this relay reads");
    }
    if s.refuse_status_until_probe {
        let ids = || events.iter().filter_map(|e| e["event_id"].as_i64());
        let probe = s
            .status_refused_up_to
            .is_some_and(|up_to| ids().all(|id| id > up_to));
        if !probe {
            s.status_refused_up_to = ids().max().max(s.status_refused_up_to);
            return error(422, "unsupported_event", "not an event this relay reads");
        }
        s.refuse_status_until_probe = false;
    }
    let forgotten = |e: &Value| {
        s.refuse_status_prefix.as_ref().is_some_and(|prefix| {
            e["relay_message_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix.as_str()))
        })
    };
    if events.iter().any(forgotten) {
        s.status_refusals_of_forgotten += 1;
        return error(422, "unknown_message", "no such relay message");
    }
    if let Some(unknown) = &s.refuse_status_for
        && events.iter().any(|e| e["relay_message_id"] == *unknown)
    {
        return error(422, "unknown_message", "no such relay message");
    }
    for event in events {
        // The relay drops repeats by event_id, as the protocol says.
        if !s
            .status_events
            .iter()
            .any(|e| e["event_id"] == event["event_id"])
        {
            s.status_events.push(event);
        }
    }
    taken(s.plain_ok, StatusCode::OK, json!({"ok": true}))
}

async fn heartbeat(State(state): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(refused) = gate(&state, &headers, "heartbeat").await {
        return refused;
    }
    let mut s = state.lock().unwrap();
    s.heartbeats.push(body);
    taken(s.plain_ok, StatusCode::OK, json!({"ok": true}))
}

/// `POST {media}`: a file as raw bytes; answered `201 {"url"}`.
async fn media(State(state): Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = gate(&state, &headers, "media").await {
        return refused;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let slow_ms = {
        let mut s = state.lock().unwrap();
        s.upload_attempts += 1;
        s.slow_media_ms
    };
    if slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    }
    let mut s = state.lock().unwrap();
    if s.fail_media_times > 0 {
        s.fail_media_times -= 1;
        return error(503, "unavailable", "try later");
    }
    if let Some(status) = s.refuse_media {
        return error(status, "file_refused", "emulated refusal of a file");
    }
    if s.plain_ok {
        return taken(true, StatusCode::OK, Value::Null);
    }
    let key = header("idempotency-key");
    if let Some(first) = s
        .uploads
        .iter()
        .find(|u| key.is_some() && u.idempotency_key == key)
    {
        return (StatusCode::CREATED, Json(json!({"url": first.url}))).into_response();
    }
    let url = format!("https://relay.test/files/{}", s.uploads.len() + 1);
    s.uploads.push(Upload {
        idempotency_key: key,
        content_type: header("content-type"),
        filename: header("x-filename").map(|f| percent_decode(&f)),
        phone_id: header("x-phone-id"),
        content_length: header("content-length"),
        transfer_encoding: header("transfer-encoding"),
        bytes: body.to_vec(),
        url: url.clone(),
    });
    (StatusCode::CREATED, Json(json!({"url": url}))).into_response()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `[relay]` settings that keep the tests fast.
pub fn relay_config(url: &str, mode: &str, default_to: Option<&str>) -> String {
    let routing = default_to
        .map(|to| format!("\n[relay.routing]\ndefault_to = \"{to}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
[relay]
url = "{url}"
phone_id = "{PHONE_ID}"
mode = "{mode}"
key_file = "relay.key"
heartbeat_seconds = 1
status_interval_ms = 30
retry_initial_ms = 40
retry_max_ms = 250
poll_timeout_seconds = 1
request_timeout_seconds = 3
{routing}"#
    )
}

/// A WhatsApp message from `from` as the bridge's channel hands it in.
pub fn wa_inbound(from: &str, external_id: &str, text: &str, reply_to: &[String]) -> ChannelEvent {
    ChannelEvent::Inbound(InboundMessage {
        channel: ChannelKind::Wa,
        phone_id: PHONE_ID.into(),
        from: from.into(),
        text: text.into(),
        subject: None,
        attachments: Vec::new(),
        external_id: external_id.into(),
        reply_to: reply_to.to_vec(),
        received_at_ms: phonerelay::clock::now_ms(),
        meta: Default::default(),
    })
}

/// The record of which relay the bridge's messages are for, as `pair`
/// commits it (`relay::reported_relay`), naming `url`.
pub async fn record_relay(store: &dyn phonerelay::store::Store, url: &str) {
    let record = serde_json::json!({"url": url, "after_seq": 0}).to_string();
    store
        .save_cursor(
            phonerelay::relay::settings::SCOPE,
            phonerelay::relay::reported_relay::CURSOR,
            &record,
        )
        .await
        .unwrap();
}
