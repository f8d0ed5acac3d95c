//! The running channel endpoints, keyed by (channel, phone_id).

use std::collections::BTreeMap;
use std::sync::Arc;

use phonerelay_channel::{Channel, ChannelKind};
use tokio::sync::Notify;

use crate::outbox::{BackInQueue, Intake, Pause, Unrecorded};

pub type EndpointKey = (ChannelKind, String);

/// One endpoint and the bell its dispatcher waits on.
pub struct Endpoint {
    pub channel: Arc<dyn Channel>,
    /// Rung when a message for this endpoint is committed, so the dispatcher
    /// claims it at once instead of polling.
    pub wake: Arc<Notify>,
    /// Where accepted messages are handed straight to the dispatcher while
    /// it has a free slot and nothing waiting.
    pub intake: Arc<Intake>,
    /// Set when a send came back refused for now (`RateLimited`) or
    /// `Unavailable`: the dispatcher starts no send until it is over, so
    /// a remote's limit is not hammered, and an adapter whose `can_send`
    /// still says yes does not have the queue claimed and put back in a
    /// tight loop.
    pub pause: Pause,
    /// Its messages that went back to the queue and have not been taken
    /// again: a recipient's later message waits behind them.
    pub back_in_queue: Arc<BackInQueue>,
    /// Its sends whose outcome the store would not take.
    pub unrecorded: Arc<Unrecorded>,
    /// Its failed attempts in the last hour, for the status.
    pub failures: Arc<crate::outbox::recent_failures::RecentFailures>,
}

impl Endpoint {
    /// `record`, which waited in the queue, was cancelled: its recipient's
    /// later messages, held behind it, go now. No slot is handed out
    /// before a claim has taken them (a message handed over meanwhile
    /// would go first), so the intake hears of it before the hold ends.
    pub fn queued_message_cancelled(&self, record: &crate::store::OutboundRecord) {
        self.intake.hold_ends_outside_a_claim();
        self.back_in_queue.cancelled(record);
        // And after: a claim that started between the two found the
        // recipient still held, passed its messages over, and would
        // vouch for the queue.
        self.intake.hold_ends_outside_a_claim();
        self.wake.notify_one();
    }
}

#[derive(Default)]
pub struct Endpoints {
    by_key: BTreeMap<EndpointKey, Arc<Endpoint>>,
}

impl Endpoints {
    /// Fails on a second endpoint with the same (channel, phone_id).
    pub fn new(channels: Vec<Arc<dyn Channel>>) -> Result<Self, String> {
        let mut by_key = BTreeMap::new();
        for channel in channels {
            let key = (channel.kind(), channel.phone_id().to_string());
            if by_key.contains_key(&key) {
                return Err(format!("two {} endpoints have phone_id {:?}", key.0, key.1));
            }
            by_key.insert(
                key,
                Arc::new(Endpoint {
                    channel,
                    wake: Arc::default(),
                    intake: Arc::default(),
                    pause: Pause::default(),
                    back_in_queue: Arc::default(),
                    unrecorded: Arc::default(),
                    failures: Arc::default(),
                }),
            );
        }
        Ok(Self { by_key })
    }

    pub fn get(&self, channel: ChannelKind, phone_id: &str) -> Option<&Arc<Endpoint>> {
        self.by_key.get(&(channel, phone_id.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&EndpointKey, &Arc<Endpoint>)> {
        self.by_key.iter()
    }

    pub fn has_phone_id(&self, phone_id: &str) -> bool {
        self.by_key.keys().any(|(_, id)| id == phone_id)
    }

    pub fn wake(&self, channel: ChannelKind, phone_id: &str) {
        if let Some(endpoint) = self.get(channel, phone_id) {
            endpoint.wake.notify_one();
        }
    }
}
