//! Test support: a scriptable in-process channel and a daemon harness that
//! runs the real daemon (real SQLite file, real HTTP) on 127.0.0.1:0.
#![allow(dead_code)]

pub mod file_size;
pub mod run_as;
pub mod test_channel;

use std::sync::Arc;
use std::time::Duration;

use phonerelay::clock::now_ms;
use phonerelay::config::load_from_str;
use phonerelay::daemon::{self, RunningDaemon};
use phonerelay::keys;
use phonerelay::store::{Scope, SqliteStore, Store};
use phonerelay_channel::Channel;
use serde_json::Value;
use tempfile::TempDir;

#[allow(unused_imports)] // not every test binary uses it
pub use run_as::RunAs;
#[allow(unused_imports)] // not every test binary uses it
pub use test_channel::TestChannel;

/// Settings that keep tests fast: short retries, a quick expiry sweep.
pub const FAST_OUTBOX: &str = r#"
[outbox]
retry_initial_ms = 40
retry_max_ms = 200
expiry_sweep_seconds = 1
lease_seconds = 30
send_timeout_seconds = 10
"#;

pub struct TestDaemon {
    pub daemon: Option<RunningDaemon>,
    pub base: String,
    pub dir: TempDir,
    pub admin_key: String,
    pub http: reqwest::Client,
    config_text: String,
}

pub fn config_text(dir: &TempDir, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_seconds = 1\n\n[storage]\nstate_dir = \"{}\"\n\n{extra}",
        dir.path().join("state").display()
    )
}

/// How long the polling waits give a state to show before they fail the
/// test: on a loaded two-core CI machine, 10 s was tight.
pub const WAIT: Duration = Duration::from_secs(30);

impl TestDaemon {
    /// `/api/v1/relay` once `done` holds for it, or panic after [`WAIT`].
    pub async fn wait_link(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (code, link) = self.get("/api/v1/relay", &self.admin_key).await;
            assert_eq!(code, 200, "{link}");
            if done(&link) {
                return link;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the link never showed {what}: {link}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Start a daemon on a fresh state dir with `extra` config and channels.
    pub async fn start(extra: &str, channels: Vec<Arc<dyn Channel>>) -> TestDaemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config_text(&dir, extra);
        Self::start_in(dir, text, channels).await
    }

    pub async fn start_in(
        dir: TempDir,
        text: String,
        channels: Vec<Arc<dyn Channel>>,
    ) -> TestDaemon {
        let loaded = load_from_str(
            &text,
            &dir.path().join("test.toml"),
            dir.path().to_path_buf(),
        )
        .expect("test config parses");
        let daemon = daemon::start(loaded, channels)
            .await
            .expect("daemon starts");
        let base = format!("http://{}", daemon.addr);
        let admin_key = create_key(&*daemon.store, vec![Scope::Admin], None).await;
        TestDaemon {
            daemon: Some(daemon),
            base,
            dir,
            admin_key,
            http: reqwest::Client::new(),
            config_text: text,
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.daemon.as_ref().expect("running").store.clone()
    }

    /// Graceful stop, as on SIGTERM. How it ended is left to the tests
    /// that look at it ([`Self::try_stop`]).
    pub async fn stop(&mut self) {
        let _ = self.try_stop().await;
    }

    /// Graceful stop, as on SIGTERM: an error (exit code 1) if a task
    /// panicked while stopping.
    pub async fn try_stop(&mut self) -> Result<(), phonerelay::exit::ExitError> {
        match self.daemon.take() {
            Some(daemon) => daemon.stop().await,
            None => Ok(()),
        }
    }

    /// Stop and start again on the same state dir with new channels.
    pub async fn restart(mut self, channels: Vec<Arc<dyn Channel>>) -> TestDaemon {
        self.stop().await;
        let text = self.config_text.clone();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let mut next = Self::start_in(dir, text, channels).await;
        next.admin_key = std::mem::take(&mut self.admin_key);
        next
    }

    /// As [`Self::restart`], the config's own part now `extra`: an
    /// operator's edit between two runs.
    pub async fn restart_with(
        mut self,
        extra: &str,
        channels: Vec<Arc<dyn Channel>>,
    ) -> TestDaemon {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let text = config_text(&dir, extra);
        let mut next = Self::start_in(dir, text, channels).await;
        next.admin_key = std::mem::take(&mut self.admin_key);
        next
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("state").join("phonerelay.sqlite3")
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request");
        into_parts(response).await
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        into_parts(response).await
    }

    /// The Prometheus text of `/metrics` (no key needed).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("metrics text")
    }

    /// Poll a message until `done` holds for its JSON, or panic after [`WAIT`].
    pub async fn wait_message(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (code, body) = self
                .get(&format!("/api/v1/messages/{id}"), &self.admin_key)
                .await;
            assert_eq!(code, 200, "{body}");
            if done(&body) {
                return body;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("message {id} never reached the expected state: {body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST a send, assert it was accepted, return its id.
    pub async fn queue(&self, body: &Value) -> String {
        let (code, accepted) = self.post("/api/v1/messages", &self.admin_key, body).await;
        assert_eq!(code, 202, "{accepted}");
        accepted["id"].as_str().unwrap().to_string()
    }

    /// Queue an SMS with `text` to `to` through endpoint `m1`; its id.
    pub async fn queue_sms(&self, to: &str, text: &str) -> String {
        self.queue(&send_body("m1", "sms", to, text)).await
    }

    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_message(id, |m| m["status"] == status).await
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown.cancel();
        }
    }
}

pub async fn into_parts(response: reqwest::Response) -> (u16, Value) {
    let code = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, body)
}

pub async fn create_key(store: &dyn Store, scopes: Vec<Scope>, phone_id: Option<&str>) -> String {
    let issued = keys::issue("test", scopes, phone_id.map(str::to_string), now_ms());
    store.create_key(issued.record).await.expect("key stored");
    issued.clear
}

/// Open a second handle on a daemon's database, as another process would.
pub fn open_store(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(path).expect("store opens")
}

/// An SMS for phone_id `m1` as the API would commit it, for tests that
/// write to the store directly.
pub fn new_outbound(text: &str, now_ms: i64) -> phonerelay::store::NewOutbound {
    phonerelay::store::NewOutbound {
        api_key_id: None,
        idempotency_key: None,
        request_hash: "h".into(),
        exact_request_hash: "h".into(),
        phone_id: "m1".into(),
        channel: phonerelay_channel::ChannelKind::Sms,
        to: "+15551230001".into(),
        text: text.into(),
        subject: None,
        source: None,
        attachments: vec![],
        reply_to: None,
        reply_to_external_id: None,
        options: None,
        priority: 1,
        created_at_ms: now_ms,
        expires_at_ms: now_ms + 3_600_000,
        claimed_until_ms: None,
    }
}

/// Commit `message` to `store`; the id the store gave it.
pub async fn accept_new(
    store: &dyn phonerelay::store::Store,
    message: phonerelay::store::NewOutbound,
) -> String {
    match store.accept_outbound(message).await.unwrap() {
        phonerelay::store::AcceptOutcome::Created { id } => id,
        other => panic!("not created: {other:?}"),
    }
}

/// Claim every due message of SMS endpoint `m1` with a lease of
/// `lease_ms`, as its dispatcher would.
pub async fn claim_all(
    store: &dyn Store,
    now_ms: i64,
    lease_ms: i64,
) -> Vec<phonerelay::store::OutboundRecord> {
    store
        .claim_outbound(phonerelay::store::ClaimRequest {
            channel: phonerelay_channel::ChannelKind::Sms,
            phone_id: "m1".into(),
            limit: 100,
            now_ms,
            lease_ms,
            skip_recipients: Vec::new(),
        })
        .await
        .expect("claim")
}

/// The statuses of a message's history, oldest first.
pub fn history_statuses(message: &Value) -> Vec<String> {
    message["history"]
        .as_array()
        .expect("a history array")
        .iter()
        .map(|h| h["status"].as_str().expect("a status").to_string())
        .collect()
}

/// The seed's own body shape.
pub fn send_body(phone_id: &str, channel: &str, to: &str, text: &str) -> Value {
    serde_json::json!({"phone_id": phone_id, "channel": channel, "to": to, "text": text})
}

/// The bridge of the relay tests: a daemon with `channel`, the fast outbox,
/// the `[relay]` section `relay` and its key file holding `relay_key`.
pub async fn start_bridge(
    relay: &str,
    relay_key: &str,
    channel: &Arc<test_channel::TestChannel>,
) -> TestDaemon {
    start_bridge_with(relay, relay_key, vec![channel.clone()]).await
}

/// [`start_bridge`] with several endpoints.
pub async fn start_bridge_with(
    relay: &str,
    relay_key: &str,
    channels: Vec<Arc<dyn Channel>>,
) -> TestDaemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("relay.key"), relay_key).unwrap();
    let text = config_text(&dir, &format!("{FAST_OUTBOX}{relay}"));
    TestDaemon::start_in(dir, text, channels).await
}
