//! Prometheus metrics. One registry per daemon (no globals), so tests can
//! run several daemons in one process.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub accepted: Family<Labels, Counter>,
    pub handed_over: Family<Labels, Counter>,
    pub rejected: Family<Labels, Counter>,
    pub sends: Family<Labels, Counter>,
    pub deferred: Family<Labels, Counter>,
    pub send_seconds: Family<Labels, Histogram>,
    pub accept_seconds: Histogram,
    pub inbound: Family<Labels, Counter>,
    pub media_refused: Family<Labels, Counter>,
    pub queue: Family<Labels, Gauge>,
    pub queue_oldest_seconds: Family<Labels, Gauge>,
    pub endpoint_up: Family<Labels, Gauge>,
    pub endpoint_can_send: Family<Labels, Gauge>,
    pub endpoint_paused_seconds: Family<Labels, Gauge>,
    pub outcomes_unrecorded: Family<Labels, Gauge>,
    pub inbound_unreadable: Family<Labels, Gauge>,
    pub endpoint_detail: Family<Labels, Gauge>,
    pub store_up: Gauge,
    pub store_bytes: Family<Labels, Gauge>,
    pub store_free_bytes: Gauge,
    pub store_media_files: Gauge,
    pub webhook_body_bytes: Gauge,
    pub relay_up: Family<Labels, Gauge>,
    pub relay_inbound_pending: Family<Labels, Gauge>,
    pub relay_inbound_dead: Family<Labels, Gauge>,
    pub relay_inbound_oldest_seconds: Family<Labels, Gauge>,
    pub relay_status_skipped: Family<Labels, Counter>,
    pub relay_status_held: Family<Labels, Gauge>,
    pub relay_uploads_given_up: Family<Labels, Counter>,
}

/// Bucket bounds in seconds: 1-2.5-5 steps, with one at 10 ms (the accept
/// latency target, so the share under it can be read off) and ones past
/// `outbox.send_timeout_seconds`' default of 120 s (so a send that timed
/// out is told from a slow one).
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("phonerelay");
        let accepted = Family::<Labels, Counter>::default();
        let handed_over = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        let sends = Family::<Labels, Counter>::default();
        let deferred = Family::<Labels, Counter>::default();
        let send_seconds = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let accept_seconds = latency_histogram();
        let inbound = Family::<Labels, Counter>::default();
        let media_refused = Family::<Labels, Counter>::default();
        let queue = Family::<Labels, Gauge>::default();
        let queue_oldest_seconds = Family::<Labels, Gauge>::default();
        let endpoint_up = Family::<Labels, Gauge>::default();
        let endpoint_can_send = Family::<Labels, Gauge>::default();
        let endpoint_paused_seconds = Family::<Labels, Gauge>::default();
        let outcomes_unrecorded = Family::<Labels, Gauge>::default();
        let inbound_unreadable = Family::<Labels, Gauge>::default();
        let endpoint_detail = Family::<Labels, Gauge>::default();
        let store_up = Gauge::default();
        let store_bytes = Family::<Labels, Gauge>::default();
        let store_free_bytes = Gauge::default();
        let store_media_files = Gauge::default();
        let webhook_body_bytes = Gauge::default();
        let relay_up = Family::<Labels, Gauge>::default();
        let relay_inbound_pending = Family::<Labels, Gauge>::default();
        let relay_inbound_dead = Family::<Labels, Gauge>::default();
        let relay_inbound_oldest_seconds = Family::<Labels, Gauge>::default();
        let relay_status_skipped = Family::<Labels, Counter>::default();
        let relay_status_held = Family::<Labels, Gauge>::default();
        let relay_uploads_given_up = Family::<Labels, Counter>::default();
        registry.register(
            "accepted",
            "Messages accepted into the outbox",
            accepted.clone(),
        );
        registry.register(
            "handed_over",
            "Accepted messages handed straight to an idle dispatcher, without a claim",
            handed_over.clone(),
        );
        registry.register(
            "rejected",
            "Send requests rejected, by error code",
            rejected.clone(),
        );
        registry.register(
            "sends",
            "Send attempts by channel and outcome",
            sends.clone(),
        );
        registry.register(
            "deferred",
            "Claimed messages put back in the queue without a send attempt, by channel and \
             reason: rate_limited (the per-recipient limit), recipient_waiting (an earlier \
             message to the same recipient waits for its retry), shutdown, endpoint_down (the \
             endpoint could not send at all), refused (the remote refused the send for now: a \
             rate limit, congestion), paused (the endpoint pauses after a refusal)",
            deferred.clone(),
        );
        registry.register(
            "send_duration_seconds",
            "Time an adapter took for one send attempt",
            send_seconds.clone(),
        );
        registry.register(
            "accept_duration_seconds",
            "Time from request to committed accept for POST /api/v1/messages",
            accept_seconds.clone(),
        );
        registry.register(
            "inbound",
            "Inbound messages committed, by channel",
            inbound.clone(),
        );
        registry.register(
            "media_refused",
            "Received files not kept (their messages arrive without them), by reason: \
             too_large (over storage.max_media_bytes, or a bridge that keeps none), total_cap \
             (the kept files would pass storage.max_media_total_bytes), low_disk (it would \
             leave less than storage.media_min_free_bytes free)",
            media_refused.clone(),
        );
        registry.register(
            "queue_messages",
            "Outbox messages by endpoint and live status",
            queue.clone(),
        );
        registry.register(
            "queue_oldest_seconds",
            "Age of the oldest queued message per endpoint, since its accept; 0 when none",
            queue_oldest_seconds.clone(),
        );
        registry.register(
            "endpoint_up",
            "1 when the endpoint reports up or degraded, 0 when down",
            endpoint_up.clone(),
        );
        registry.register(
            "endpoint_can_send",
            "1 when the endpoint takes sends; 0 while its queue is held (a modem unplugged \
             or off the network), spending no attempts",
            endpoint_can_send.clone(),
        );
        registry.register(
            "endpoint_paused_seconds",
            "Seconds left in the pause the remote's last refusal began (a rate limit, a \
             congested network): no send starts on the endpoint meanwhile; 0 when not paused",
            endpoint_paused_seconds.clone(),
        );
        registry.register(
            "outcomes_unrecorded",
            "Sends whose outcome the store would not take: their messages stay sending (a \
             restart sends them again, and the relay holds their recipients' replies) while \
             the dispatcher tries again; see the journal for the message ids",
            outcomes_unrecorded.clone(),
        );
        registry.register(
            "inbound_unreadable",
            "Items received that the endpoint could not read (an SMS PDU the codec cannot \
             decode), kept in the store as they came: see GET /api/v1/inbound/unreadable",
            inbound_unreadable.clone(),
        );
        registry.register(
            "endpoint_detail",
            "Quantities an endpoint reports about its health, by name (signal_dbm, ...)",
            endpoint_detail.clone(),
        );
        registry.register(
            "store_up",
            "1 when the store takes writes, 0 while they fail (a full disk, an I/O error)",
            store_up.clone(),
        );
        registry.register(
            "store_bytes",
            "Size of the store's files (database, wal, media: the received files kept)",
            store_bytes.clone(),
        );
        registry.register(
            "store_free_bytes",
            "Space free to the daemon on the store's filesystem",
            store_free_bytes.clone(),
        );
        registry.register(
            "store_media_files",
            "Files received with inbound messages and kept (their bytes: store_bytes with file media)",
            store_media_files.clone(),
        );
        registry.register(
            "webhook_body_bytes",
            "Bytes of webhook request bodies held in memory now; at 16 times \
             server.max_webhook_body_bytes more are answered 503 webhook_busy",
            webhook_body_bytes.clone(),
        );
        // Labelled with the bridge's phone_id at the relay, and so absent
        // on a bridge with no relay configured or paired.
        registry.register(
            "relay_up",
            "1 when the last request to the relay went through, 0 after an error or a refused key \
             and while the link is not running (no relay key, or not the paired one)",
            relay_up.clone(),
        );
        registry.register(
            "relay_inbound_pending",
            "Inbound messages committed and waiting to reach the relay",
            relay_inbound_pending.clone(),
        );
        registry.register(
            "relay_inbound_dead",
            "Inbound messages the relay refused for good or that had no route (dead letters)",
            relay_inbound_dead.clone(),
        );
        registry.register(
            "relay_inbound_oldest_seconds",
            "How long the oldest inbound message waiting for the relay has waited; 0 when none waits",
            relay_inbound_oldest_seconds.clone(),
        );
        registry.register(
            "relay_status_skipped",
            "Status events the relay refused on their own (while taking others) and so skipped",
            relay_status_skipped.clone(),
        );
        registry.register(
            "relay_status_held",
            "1 while the relay refuses every status event it is sent, which are kept and tried \
             again (for twelve rounds of backoff): none reaches it meanwhile",
            relay_status_held.clone(),
        );
        registry.register(
            "relay_uploads_given_up",
            "Files of inbound messages given up on after relay.upload_give_up_after failed \
             uploads (timeouts, 5xx): their messages went without them, the files named in \
             origin.not_uploaded_attachments and still kept by the bridge",
            relay_uploads_given_up.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            accepted,
            handed_over,
            rejected,
            sends,
            deferred,
            send_seconds,
            accept_seconds,
            inbound,
            media_refused,
            queue,
            queue_oldest_seconds,
            endpoint_up,
            endpoint_can_send,
            endpoint_paused_seconds,
            outcomes_unrecorded,
            inbound_unreadable,
            endpoint_detail,
            store_up,
            store_bytes,
            store_free_bytes,
            store_media_files,
            webhook_body_bytes,
            relay_up,
            relay_inbound_pending,
            relay_inbound_dead,
            relay_inbound_oldest_seconds,
            relay_status_skipped,
            relay_status_held,
            relay_uploads_given_up,
        }
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What [`Metrics::render`] writes: the OpenMetrics 1.0 text of
/// `prometheus_client` (counters typed `counter` with `_total` samples, a
/// closing `# EOF`). Served as the classic `text/plain; version=0.0.4`,
/// a scraper parses it as that format and loses the counters' type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    /// Run `update` while no [`Self::render`] is under way, so series
    /// cleared and set again (to drop those no longer true) are never
    /// scraped half done.
    pub fn while_not_rendering<T>(&self, update: impl FnOnce(&Self) -> T) -> T {
        let _registry = self.registry.lock().expect("metrics registry lock");
        update(self)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}
