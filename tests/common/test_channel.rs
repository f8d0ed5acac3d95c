//! A channel living in the test code: records what it is asked to send,
//! answers from a script, can hang, and can inject inbound events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use phonerelay_channel::*;
use tokio::sync::Notify;

pub enum Step {
    Ok,
    Fail(SendError),
    /// Wait until `release()` is called, then succeed.
    Hang,
    /// Panic, as a buggy adapter would.
    Panic,
}

pub struct TestChannel {
    kind: ChannelKind,
    phone_id: String,
    script: Mutex<VecDeque<Step>>,
    thread_keys: Mutex<VecDeque<Vec<String>>>,
    sent: Mutex<Vec<OutboundMessage>>,
    calls: Mutex<u32>,
    released: Notify,
    sink: Mutex<Option<Arc<dyn EventSink>>>,
    sink_ready: Notify,
    health: Mutex<ChannelHealth>,
    /// What `can_send` says when set; otherwise the trait's default (not
    /// down).
    can_send: Mutex<Option<bool>>,
    /// What `send_limits` says when set; otherwise the kind's defaults.
    send_limits: Mutex<Option<SendLimits>>,
    /// Characters `check_recipient` refuses in an address (an ntfy topic
    /// takes no `.`); none when empty.
    refused_in_recipient: Mutex<String>,
    /// Whether `attach` came, and how many sends came before it.
    attached: Mutex<bool>,
    sends_before_attach: Mutex<u32>,
    /// The app whose requests this endpoint takes on its channel's shared
    /// webhook (the `x-test-app` header stands for a signature), if it
    /// shares it.
    shared_app: Mutex<Option<String>>,
    /// Answer webhook events 503 without committing them, as on a store
    /// failure.
    refuse_webhooks: Mutex<bool>,
    pub send_called: Notify,
}

impl TestChannel {
    pub fn new(kind: ChannelKind, phone_id: &str) -> Arc<Self> {
        Arc::new(Self {
            kind,
            phone_id: phone_id.into(),
            script: Mutex::new(VecDeque::new()),
            thread_keys: Mutex::new(VecDeque::new()),
            sent: Mutex::new(Vec::new()),
            calls: Mutex::new(0),
            released: Notify::new(),
            sink: Mutex::new(None),
            sink_ready: Notify::new(),
            health: Mutex::new(ChannelHealth::up("test channel")),
            can_send: Mutex::new(None),
            send_limits: Mutex::new(None),
            refused_in_recipient: Mutex::new(String::new()),
            attached: Mutex::new(false),
            sends_before_attach: Mutex::new(0),
            shared_app: Mutex::new(None),
            refuse_webhooks: Mutex::new(false),
            send_called: Notify::new(),
        })
    }

    /// Answers for the next sends, in order; after the script, sends succeed.
    pub fn script(&self, steps: Vec<Step>) {
        self.script.lock().unwrap().extend(steps);
    }

    /// Thread keys (e-mail Message-IDs...) the next successful sends report
    /// in their receipts, one list per send, in order; then none.
    pub fn thread_keys(&self, keys: Vec<Vec<String>>) {
        self.thread_keys.lock().unwrap().extend(keys);
    }

    pub fn release(&self) {
        self.released.notify_waiters();
    }

    pub fn set_health(&self, health: ChannelHealth) {
        *self.health.lock().unwrap() = health;
    }

    /// Make `can_send` answer `can`, whatever the health says (a modem
    /// connected but off the network: degraded, and holding its queue).
    pub fn set_can_send(&self, can: bool) {
        *self.can_send.lock().unwrap() = Some(can);
    }

    /// Make `send_limits` answer `limits`, as an adapter whose upstream
    /// allows less than its kind's defaults would.
    pub fn set_send_limits(&self, limits: SendLimits) {
        *self.send_limits.lock().unwrap() = Some(limits);
    }

    /// Refuse recipients with any of `chars` in them, as an adapter whose
    /// service takes less than the kind's syntax would.
    pub fn refuse_in_recipient(&self, chars: &str) {
        *self.refused_in_recipient.lock().unwrap() = chars.into();
    }

    /// Take part in the channel's shared webhook for requests of `app`.
    pub fn share_webhook(&self, app: &str) {
        *self.shared_app.lock().unwrap() = Some(app.into());
    }

    /// Answer webhook events 503 without committing them while `refuse`.
    pub fn refuse_webhooks(&self, refuse: bool) {
        *self.refuse_webhooks.lock().unwrap() = refuse;
    }

    /// How many sends came before `attach` (the daemon's contract: none).
    pub fn sends_before_attach(&self) -> u32 {
        *self.sends_before_attach.lock().unwrap()
    }

    /// Messages whose send succeeded, in order.
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.sent.lock().unwrap().clone()
    }

    /// How many times `send` was called (successful or not).
    pub fn calls(&self) -> u32 {
        *self.calls.lock().unwrap()
    }

    /// Wait until `send` has been called `n` times.
    pub async fn wait_calls(&self, n: u32) {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        while self.calls() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} calls",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_sent(&self, n: usize) -> Vec<OutboundMessage> {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} sent",
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn sink(&self) -> Arc<dyn EventSink> {
        loop {
            let ready = self.sink_ready.notified();
            if let Some(sink) = self.sink.lock().unwrap().clone() {
                return sink;
            }
            ready.await;
        }
    }

    pub async fn inject(&self, event: ChannelEvent) -> Result<(), SinkError> {
        self.sink().await.deliver(event).await
    }

    pub fn external_id(message: &OutboundMessage) -> String {
        format!("ext-{}", message.id)
    }
}

#[async_trait]
impl Channel for TestChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn phone_id(&self) -> &str {
        &self.phone_id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, SendError> {
        *self.calls.lock().unwrap() += 1;
        if !*self.attached.lock().unwrap() {
            *self.sends_before_attach.lock().unwrap() += 1;
        }
        self.send_called.notify_waiters();
        let step = self.script.lock().unwrap().pop_front().unwrap_or(Step::Ok);
        match step {
            Step::Ok => {}
            Step::Fail(e) => return Err(e),
            Step::Hang => self.released.notified().await,
            Step::Panic => panic!("the test channel panics as asked"),
        }
        self.sent.lock().unwrap().push(message.clone());
        let mut receipt = SendReceipt::single(Self::external_id(message));
        receipt.thread_keys = self
            .thread_keys
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_default();
        Ok(receipt)
    }

    async fn run(&self, ctx: ChannelContext) {
        *self.sink.lock().unwrap() = Some(ctx.sink.clone());
        self.sink_ready.notify_waiters();
        ctx.shutdown.cancelled().await;
    }

    fn health(&self) -> ChannelHealth {
        self.health.lock().unwrap().clone()
    }

    /// Takes one option, `template` (a string), as a WhatsApp adapter would
    /// take its template's name; anything else is named in the refusal.
    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        let map = options.as_object().ok_or("options must be an object")?;
        for (key, value) in map {
            if key != "template" || !value.is_string() {
                return Err(format!(
                    "the test channel takes only \"template\" (a string), not {key:?}"
                ));
            }
        }
        Ok(())
    }

    fn attach(&self, _ctx: &ChannelContext) {
        *self.attached.lock().unwrap() = true;
    }

    fn send_limits(&self) -> SendLimits {
        let set = *self.send_limits.lock().unwrap();
        set.unwrap_or(SendLimits::of(self.kind))
    }

    fn check_recipient(&self, to: &str) -> Result<(), String> {
        let refused = self.refused_in_recipient.lock().unwrap();
        match to.chars().find(|c| refused.contains(*c)) {
            Some(c) => Err(format!("this service takes no {c:?} in an address")),
            None => Ok(()),
        }
    }

    fn can_send(&self) -> bool {
        let set = *self.can_send.lock().unwrap();
        set.unwrap_or_else(|| self.health().state != phonerelay_channel::HealthState::Down)
    }

    /// `/hook` takes `{"from","text","id"}` as an upstream would push a
    /// reply, and answers 200 only once it is committed.
    fn webhook_paths(&self) -> Vec<String> {
        vec!["/hook".into()]
    }

    async fn handle_webhook(
        &self,
        request: WebhookRequest,
        sink: Arc<dyn EventSink>,
    ) -> WebhookResponse {
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return WebhookResponse::text(400, "not JSON");
        };
        self.commit(&[body], sink).await
    }

    fn shares_channel_webhook(&self) -> bool {
        self.shared_app.lock().unwrap().is_some()
    }

    /// `{"entries":[{"phone_id","from","text","id"}, ...]}` from the app
    /// named in `x-test-app`, as a WhatsApp app's callback carries events
    /// of several numbers: this endpoint commits the entries of its own
    /// phone_id.
    async fn handle_shared_webhook(
        &self,
        request: WebhookRequest,
        sink: Arc<dyn EventSink>,
    ) -> SharedWebhookAnswer {
        let app = self.shared_app.lock().unwrap().clone();
        if app.is_none() || request.header("x-test-app") != app.as_deref() {
            return SharedWebhookAnswer::NotMine;
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return SharedWebhookAnswer::Answered(WebhookResponse::text(400, "not JSON"));
        };
        let mine: Vec<serde_json::Value> = body["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["phone_id"] == self.phone_id.as_str())
            .cloned()
            .collect();
        if mine.is_empty() {
            return SharedWebhookAnswer::NotMine;
        }
        SharedWebhookAnswer::Answered(self.commit(&mine, sink).await)
    }
}

impl TestChannel {
    /// Commit `{"from","text","id"}` entries as inbound messages; 200 once
    /// all are committed.
    async fn commit(
        &self,
        entries: &[serde_json::Value],
        sink: Arc<dyn EventSink>,
    ) -> WebhookResponse {
        if *self.refuse_webhooks.lock().unwrap() {
            return WebhookResponse::text(503, "the store is out (as asked)");
        }
        for entry in entries {
            let field = |name: &str| entry[name].as_str().unwrap_or_default().to_string();
            let message = InboundMessage {
                channel: self.kind,
                phone_id: self.phone_id.clone(),
                from: field("from"),
                text: field("text"),
                subject: None,
                attachments: vec![],
                external_id: field("id"),
                reply_to: vec![],
                received_at_ms: 0,
                meta: Default::default(),
            };
            if let Err(e) = sink.deliver(ChannelEvent::Inbound(message)).await {
                return WebhookResponse::text(503, e.to_string());
            }
        }
        WebhookResponse::text(200, "ok")
    }
}
