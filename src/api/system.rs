//! Liveness, readiness, metrics and the status summary.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use phonerelay_channel::{ChannelKind, HealthState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::human::{age, human_bytes};
use super::paging::query_error;
use super::state::AppState;
use crate::clock::{now_ms, rfc3339};
use crate::logging::{REPEATED_FAILURE_LOG_EVERY, SharedThrottle};
use crate::metrics::labels;
use crate::store::{DiskUsage, EndpointStats, MediaRefusal, Scope};

/// "Failures in the last hour" in `phonerelay status`.
const RECENT_WINDOW_MS: i64 = 3600 * 1000;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[utoipa::path(get, path = "/health", tag = "system",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointStatus {
    pub channel: String,
    pub phone_id: String,
    /// `up`, `degraded` or `down`.
    pub state: String,
    pub summary: String,
    pub details: std::collections::BTreeMap<String, String>,
    /// Whether the endpoint takes sends now. While false (a modem
    /// unplugged or off the network) its queue is held: nothing is
    /// claimed and no attempt is spent until it is back.
    #[serde(default = "can_send_by_default")]
    pub can_send: bool,
    /// Present while the endpoint pauses after the remote refused a send
    /// for now (a rate limit, a congested network): no send starts until
    /// `until`, and no attempt is spent meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<EndpointPause>,
    /// Messages waiting to be sent. This and the three counts below are
    /// `null` when the store could not count them (the report's `store` then
    /// says `unavailable`): unknown, not 0.
    #[serde(default)]
    pub queued: Option<u64>,
    /// How long the oldest queued message has waited since it was
    /// accepted; absent when nothing is queued or the count is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_seconds: Option<u64>,
    #[serde(default)]
    pub sending: Option<u64>,
    /// Messages whose sending attempt was in the last hour and that went
    /// out (sent, delivered or read since): a report for an older send
    /// does not count.
    #[serde(default)]
    pub sent_last_hour: Option<u64>,
    /// Messages that failed for good in the last hour.
    #[serde(default)]
    pub failed_last_hour: Option<u64>,
    /// Attempts that failed in the last hour, those retried included:
    /// while every send fails for now, no message has failed yet. Counted
    /// since the daemon started. Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts_last_hour: u64,
    /// The last failed attempt within the hour, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailureView>,
    /// Sends whose outcome the store would not take: their messages stay
    /// `sending` (a restart sends them again) while the dispatcher tries
    /// again. The journal names them. Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub outcomes_unrecorded: u64,
    /// Items received on this endpoint that it could not read (an SMS PDU
    /// its codec cannot decode), kept in the store as they came: listed by
    /// `/api/v1/inbound/unreadable`. Absent when none, or when the store
    /// could not count them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable_inbound: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An endpoint's last failed attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LastFailureView {
    /// The channel's error code (`cms_500`, `send_timeout`).
    pub code: String,
    pub message: String,
    /// RFC 3339 UTC.
    pub at: String,
    pub seconds_ago: u64,
}

/// Why and how long an endpoint pauses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndpointPause {
    /// RFC 3339 UTC.
    pub until: String,
    pub seconds_left: u64,
    /// The remote's refusal, as the message's history has it (`http_429`,
    /// `cms_42`).
    pub code: String,
    pub message: String,
}

impl EndpointPause {
    fn of(endpoint: &crate::endpoints::Endpoint, now_ms: i64) -> Option<Self> {
        let (left, refusal) = endpoint.pause.refusal(now_ms)?;
        Some(Self {
            until: rfc3339(now_ms + left.as_millis() as i64),
            seconds_left: left.as_secs_f64().ceil() as u64,
            code: refusal.code,
            message: refusal.message,
        })
    }
}

/// A report from a daemon that predates `can_send` held no queue.
fn can_send_by_default() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    /// `ready` when the store is ok and every endpoint is up or degraded
    /// and can send.
    pub status: String,
    /// `ok`, or `unavailable` when the store did not answer or could not
    /// read the queue.
    pub store: String,
    pub version: String,
    pub endpoints: Vec<EndpointStatus>,
    /// The relay link with its dead-letter count; absent when no relay is
    /// configured or paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<super::relay::RelayLinkView>,
    /// The store's size on disk and the space left beside it; not shown
    /// to a key bound to a phone_id (it is every phone's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<DiskUsage>,
    /// Present while new received files are refused for want of room
    /// (`total_cap`: the kept files are at `storage.max_media_total_bytes`;
    /// `low_disk`: the disk is at `storage.media_min_free_bytes`). Their
    /// messages still arrive, without them: degraded, not a reason for
    /// `not_ready`. Shown to every caller, `/ready` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_refused: Option<MediaRefusal>,
}

impl StatusReport {
    /// `ready` when the store is ok and no endpoint of the report is down:
    /// judged on the endpoints the report holds, so a report cut down to
    /// one phone's is not made not ready by another phone's endpoint.
    fn readiness(&self) -> String {
        // An endpoint that cannot send (a modem off the network) holds its
        // queue however its health reads: not ready. One paused after a
        // refusal is: it sends again by itself when the pause ends.
        let all_up = self.store == "ok"
            && self
                .endpoints
                .iter()
                .all(|e| e.state != "down" && e.can_send);
        if all_up { "ready" } else { "not_ready" }.into()
    }

    /// The report in one line, as `systemctl status` shows a service's
    /// STATUS: readiness, the store, each endpoint's state and queue, and
    /// the relay's backlog.
    pub fn one_line(&self) -> String {
        let mut parts = vec![format!("{}; store {}", self.status, self.store)];
        if let Some(free) = self.storage.and_then(|s| s.free_bytes) {
            parts[0].push_str(&format!(" ({} free)", human_bytes(free)));
        }
        if let Some(reason) = self.media_refused {
            parts[0].push_str(&format!("; {}", media_refused_note(reason)));
        }
        for e in &self.endpoints {
            let oldest = e
                .oldest_queued_seconds
                .map_or(String::new(), |s| format!(" (oldest {})", age(s)));
            let held = match (e.can_send, &e.paused) {
                (false, _) => " (queue held)",
                (true, Some(_)) => " (paused)",
                (true, None) => "",
            };
            let unrecorded = match e.outcomes_unrecorded {
                0 => String::new(),
                n => format!(", {n} send outcomes not recorded"),
            };
            let attempts = match e.failed_attempts_last_hour {
                0 => String::new(),
                n => format!(" ({n} failed attempts)"),
            };
            parts.push(match (e.queued, e.failed_last_hour) {
                (Some(queued), Some(failed)) => format!(
                    "{}/{} {}{held}: {queued} queued{oldest}, {failed} failed in the last hour{attempts}{unrecorded}",
                    e.channel, e.phone_id, e.state
                ),
                _ => format!(
                    "{}/{} {}{held}: queue unreadable{unrecorded}",
                    e.channel, e.phone_id, e.state
                ),
            });
        }
        if let Some(relay) = &self.relay {
            use super::relay::{LINK_NOT_RUNNING, LINK_RUNNING};
            let reached = match relay.state.as_str() {
                LINK_RUNNING if relay.reachable() => "ok",
                LINK_RUNNING => "failing",
                LINK_NOT_RUNNING => "not running",
                _ => "state unknown",
            };
            parts.push(format!(
                "relay {reached}: {} pending, {} dead",
                count_or_unknown(relay.inbound_pending),
                count_or_unknown(relay.inbound_dead)
            ));
        }
        parts.join("; ")
    }
}

/// Why new received files are refused, for people.
pub fn media_refused_note(reason: MediaRefusal) -> &'static str {
    match reason {
        MediaRefusal::TotalCap => {
            "received files refused: the kept files are at storage.max_media_total_bytes"
        }
        MediaRefusal::LowDisk => {
            "received files refused: the disk is at storage.media_min_free_bytes free"
        }
    }
}

/// A count for people: the number, or `?` when it could not be read.
pub fn count_or_unknown(count: Option<u64>) -> String {
    count.map_or_else(|| "?".into(), |n| n.to_string())
}

/// The stats of one endpoint, if the store had any.
fn stats_of<'a>(
    stats: &'a [EndpointStats],
    channel: ChannelKind,
    phone_id: &str,
) -> Option<&'a EndpointStats> {
    stats
        .iter()
        .find(|s| s.channel == channel && s.phone_id == phone_id)
}

/// Seconds since the oldest queued message of `stats` was accepted.
fn queue_age_seconds(stats: &EndpointStats, now_ms: i64) -> Option<u64> {
    let at = stats.oldest_queued_at_ms?;
    Some(((now_ms - at).max(0) / 1000) as u64)
}

/// How many unreadable inbound items each endpoint has kept; none when
/// the store is out or cannot count them (a report is not failed for it).
async fn unreadable_counts(state: &AppState, store_ok: bool) -> Vec<(ChannelKind, String, u64)> {
    if !store_ok {
        return Vec::new();
    }
    state.store.unreadable_counts().await.unwrap_or_else(|e| {
        static LOG: SharedThrottle = SharedThrottle::new(REPEATED_FAILURE_LOG_EVERY);
        if let Some(unlogged) = LOG.allow() {
            tracing::warn!(error = %e, reports_since_last_logged = unlogged,
                "cannot count the unreadable inbound items for the status report");
        }
        Vec::new()
    })
}

/// The status report, as `/api/v1/status` and the service manager get it.
pub(crate) async fn report(state: &AppState) -> StatusReport {
    let now = now_ms();
    // Counted only if the store answers; a count it could not read is
    // reported unknown, not as an empty queue.
    let stats = match state.store.ping().await {
        Ok(()) => match state.store.queue_stats(now - RECENT_WINDOW_MS).await {
            Ok(stats) => Some(stats),
            Err(e) => {
                // Asked at every watchdog beat, `/ready` and status call.
                static LOG: SharedThrottle = SharedThrottle::new(REPEATED_FAILURE_LOG_EVERY);
                if let Some(unlogged) = LOG.allow() {
                    tracing::warn!(error = %e, reports_since_last_logged = unlogged,
                        "cannot read the queue for the status report");
                }
                None
            }
        },
        Err(_) => None,
    };
    let store_ok = stats.is_some();
    let unreadable = unreadable_counts(state, store_ok).await;
    let endpoints = state
        .endpoints
        .iter()
        .map(|((kind, phone_id), endpoint)| {
            let health = endpoint.channel.health();
            // Inner None: no row, so nothing queued; outer None: unknown.
            let s = stats
                .as_deref()
                .map(|stats| stats_of(stats, *kind, phone_id));
            let count = |of: fn(&EndpointStats) -> u64| s.map(|s| s.map_or(0, of));
            EndpointStatus {
                channel: kind.to_string(),
                phone_id: phone_id.clone(),
                state: serde_json::to_value(health.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                summary: health.summary,
                details: health.details,
                can_send: endpoint.channel.can_send(),
                paused: EndpointPause::of(endpoint, now),
                queued: count(|s| s.queued),
                oldest_queued_seconds: s.flatten().and_then(|s| queue_age_seconds(s, now)),
                sending: count(|s| s.sending),
                sent_last_hour: count(|s| s.sent_recently),
                failed_last_hour: count(|s| s.failed_recently),
                failed_attempts_last_hour: endpoint.failures.in_last_hour(now),
                last_failure: endpoint.failures.last_within_the_hour(now).map(|last| {
                    LastFailureView {
                        code: last.code,
                        message: last.message,
                        at: rfc3339(last.at_ms),
                        seconds_ago: u64::try_from((now - last.at_ms) / 1000).unwrap_or(0),
                    }
                }),
                outcomes_unrecorded: endpoint.unrecorded.len() as u64,
                unreadable_inbound: unreadable
                    .iter()
                    .find(|(c, p, _)| c == kind && p == phone_id)
                    .map_or(0, |(_, _, n)| *n),
            }
        })
        .collect();
    let storage = state.store.disk_usage().await;
    let mut report = StatusReport {
        status: String::new(),
        store: if store_ok { "ok" } else { "unavailable" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        endpoints,
        // Unknown while the pairing cannot be read: the store's own
        // status says why.
        relay: super::relay::link_view(state).await.unwrap_or(None),
        storage,
        media_refused: storage.and_then(|s| s.media_refused),
    };
    report.status = report.readiness();
    report
}

#[utoipa::path(get, path = "/ready", tag = "system",
    responses(
        (status = 200, description = "Store and every endpoint are up (or degraded) and can send", body = StatusReport),
        (status = 503, description = "Something is down; the body says what", body = StatusReport),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut report = report(&state).await;
    // Unauthenticated: say what is down, but not the queue contents.
    for endpoint in &mut report.endpoints {
        endpoint.details.clear();
    }
    report.relay = None;
    report.storage = None;
    let code = if report.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}

/// `/api/v1/status` takes no query parameters. One given (a `phone_id`
/// filter, say) is refused as the lists refuse one they do not know: a
/// caller that believed it filtered would read every phone's report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParameters {}

#[utoipa::path(get, path = "/api/v1/status", tag = "system",
    responses(
        (status = 200, description = "Endpoints, health, queue depth, recent failures", body = StatusReport),
        (status = 400, description = "A query parameter was given; this endpoint takes none", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<NoParameters>, QueryRejection>,
) -> Result<Json<StatusReport>, ApiError> {
    caller.require(Scope::Read)?;
    query.map_err(query_error)?;
    let mut report = report(&state).await;
    // The kept files, here and in /metrics only: not worth a read of the
    // store on every health check. Left at 0 if the store cannot say.
    if let (Some(storage), Ok((files, bytes))) =
        (report.storage.as_mut(), state.store.media_usage().await)
    {
        storage.media_files = files;
        storage.media_bytes = bytes;
    }
    // A key bound to a phone_id sees that phone's endpoints and link only,
    // as it sees only that phone's messages.
    if let Some(phone_id) = caller.phone_scope() {
        // The store's size and its kept files are every phone's: watching
        // them grow would tell this key when another phone gets messages.
        report.storage = None;
        report.endpoints.retain(|e| e.phone_id == phone_id);
        report.relay = report.relay.filter(|r| r.phone_id == phone_id);
        report.status = report.readiness();
    }
    Ok(Json(report))
}

#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "OpenMetrics 1.0 text format",
        content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let store_up = state.store.ping().await.is_ok();
    state.metrics.store_up.set(store_up as i64);
    let held = state.webhook_bodies.held_bytes();
    state.metrics.webhook_body_bytes.set(held as i64);
    if let Some(usage) = state.store.disk_usage().await {
        set_disk_gauges(&state, &usage);
    }
    // Kept at their last values when the store cannot count the files, as
    // the queue's are: zeros would clear a disk alert just then.
    if let Ok((files, bytes)) = state.store.media_usage().await {
        set_media_gauges(&state, files, bytes);
    }
    // A relay known only from a pairing that cannot be read now: its
    // gauges keep their values (`set_relay_gauges` says the same of one
    // whose state is unknown).
    if let Ok(view) = super::relay::link_view(&state).await {
        set_relay_gauges(&state, view.as_ref());
    }
    let now = now_ms();
    let stats = state.store.queue_stats(now - RECENT_WINDOW_MS).await;
    // Unread, the queue gauges keep their last values: zeros would clear
    // an alert on the queue just when the store cannot be read.
    if let Err(e) = &stats {
        // Asked at every scrape.
        static LOG: SharedThrottle = SharedThrottle::new(REPEATED_FAILURE_LOG_EVERY);
        if let Some(unlogged) = LOG.allow() {
            tracing::warn!(error = %e, scrapes_since_last_logged = unlogged,
                "cannot read the queue for /metrics; its gauges keep their last values");
        }
    }
    // Unread, they keep their last values, as the queue's do.
    let unreadable = state.store.unreadable_counts().await.ok();
    let mut details = Vec::new();
    // Every configured endpoint, found in the stats or not: one whose
    // queue emptied an hour ago has no row there, and reads 0.
    for ((kind, phone_id), endpoint) in state.endpoints.iter() {
        let series = [("channel", kind.as_str()), ("phone_id", phone_id.as_str())];
        if let Ok(stats) = &stats {
            set_queue_gauges(&state, &series, stats_of(stats, *kind, phone_id), now);
        }
        let health = endpoint.channel.health();
        let up = health.state != HealthState::Down;
        state
            .metrics
            .endpoint_up
            .get_or_create(&labels(&series))
            .set(up as i64);
        state
            .metrics
            .endpoint_can_send
            .get_or_create(&labels(&series))
            .set(endpoint.channel.can_send() as i64);
        state
            .metrics
            .outcomes_unrecorded
            .get_or_create(&labels(&series))
            .set(endpoint.unrecorded.len() as i64);
        if let Some(counts) = &unreadable {
            let kept = counts
                .iter()
                .find(|(c, p, _)| c == kind && p == phone_id)
                .map_or(0, |(_, _, n)| *n);
            state
                .metrics
                .inbound_unreadable
                .get_or_create(&labels(&series))
                .set(i64::try_from(kept).unwrap_or(i64::MAX));
        }
        let paused = EndpointPause::of(endpoint, now).map_or(0, |p| p.seconds_left);
        state
            .metrics
            .endpoint_paused_seconds
            .get_or_create(&labels(&series))
            .set(paused as i64);
        // Signal strength and the like, for alerting on a weak modem.
        for (name, value) in health.measures {
            details.push((labels(&[series[0], series[1], ("name", &name)]), value));
        }
    }
    // Cleared and set again: a quantity an endpoint no longer reports (a
    // modem with no signal) must not keep its last value.
    state.metrics.while_not_rendering(|metrics| {
        metrics.endpoint_detail.clear();
        for (series, value) in &details {
            metrics.endpoint_detail.get_or_create(series).set(*value);
        }
    });
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// The relay gauges of the link as it is now only: none after `unpair`,
/// none left under the phone_id of an earlier pairing. While the pairing
/// cannot be read, whether a link runs is unknown: they keep their values.
fn set_relay_gauges(state: &AppState, relay: Option<&super::relay::RelayLinkView>) {
    if relay.is_some_and(|r| r.state == super::relay::LINK_UNKNOWN) {
        return;
    }
    state.metrics.while_not_rendering(|metrics| {
        let families = [
            &metrics.relay_up,
            &metrics.relay_inbound_pending,
            &metrics.relay_inbound_dead,
            &metrics.relay_inbound_oldest_seconds,
        ];
        for family in families {
            family.clear();
        }
        let Some(relay) = relay else { return };
        let series = labels(&[("phone_id", &relay.phone_id)]);
        // Counts that could not be read come with the state `unknown`,
        // which returned above; 0 is never made up for them.
        // None waiting is 0 seconds: an alert on the age clears.
        let oldest = relay
            .inbound_pending
            .map(|_| relay.inbound_oldest_seconds.unwrap_or(0));
        let values = [
            Some(relay.reachable() as u64),
            relay.inbound_pending,
            relay.inbound_dead,
            oldest,
        ];
        for (family, value) in families.into_iter().zip(values) {
            if let Some(value) = value {
                family.get_or_create(&series).set(value as i64);
            }
        }
    });
}

fn set_disk_gauges(state: &AppState, usage: &DiskUsage) {
    let files = [("database", usage.database_bytes), ("wal", usage.wal_bytes)];
    for (file, bytes) in files {
        set_store_bytes(state, file, bytes);
    }
    if let Some(free) = usage.free_bytes {
        state.metrics.store_free_bytes.set(free as i64);
    }
}

fn set_media_gauges(state: &AppState, files: u64, bytes: u64) {
    set_store_bytes(state, "media", bytes);
    state.metrics.store_media_files.set(files as i64);
}

fn set_store_bytes(state: &AppState, file: &str, bytes: u64) {
    state
        .metrics
        .store_bytes
        .get_or_create(&labels(&[("file", file)]))
        .set(bytes as i64);
}

/// Queued and sending counts and the queue's age of the endpoint that
/// `series` names; zeros when `stats` has nothing of it.
fn set_queue_gauges(
    state: &AppState,
    series: &[(&str, &str); 2],
    stats: Option<&EndpointStats>,
    now_ms: i64,
) {
    for (status, value) in [
        ("queued", stats.map_or(0, |s| s.queued)),
        ("sending", stats.map_or(0, |s| s.sending)),
    ] {
        state
            .metrics
            .queue
            .get_or_create(&labels(&[series[0], series[1], ("status", status)]))
            .set(value as i64);
    }
    let age = stats.and_then(|s| queue_age_seconds(s, now_ms));
    state
        .metrics
        .queue_oldest_seconds
        .get_or_create(&labels(series))
        .set(age.unwrap_or(0) as i64);
}
