//! The link to the pChat relay (see `docs/relay-protocol.md`):
//!
//! - [`forwarder`]: inbound messages, committed locally, are POSTed to the
//!   relay as pChat messages, in order per conversation, with backoff,
//!   their files uploaded first ([`media_upload`]);
//! - [`pull`]: in pull mode, sends are long-polled from the relay,
//!   committed through the API's validation, then acknowledged
//!   ([`pull_ack`], in halves when the relay refuses the whole);
//! - [`status_reporter`]: status changes of relay sends, in log order;
//! - [`heartbeat`]: the bridge and its endpoints are alive;
//! - [`pairing`]: `phonerelay pair`, `pair --status`, `unpair`.
//!
//! Every loop selects on the daemon's shutdown token and stops with it.

pub mod client;
pub mod forwarder;
pub mod heartbeat;
pub mod link;
pub mod media_upload;
pub mod pairing;
mod pairing_install;
mod pairing_remove;
mod poll_size;
pub mod pull;
pub mod pull_ack;
mod refusals;
pub mod relay_url;
pub mod reported_relay;
pub mod routing;
pub mod settings;
pub mod shown_url;
pub mod status_reporter;
pub mod unknown_phone;

pub use reported_relay::CURSOR as REPORTED_RELAY_CURSOR;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::RelayMode;
use crate::daemon_tasks::{TaskEnd, Tasks};

pub use client::{RelayClient, RelayError};
pub use link::Link;
pub use settings::{Pairing, RelaySettings, Unresolved};
pub use shown_url::shown_url;

/// Run the relay link while a relay is configured or paired, and restart
/// it when that changes (a new pairing, `unpair`, a new key): the settings
/// are read again every `relay.settings_poll_seconds` and on `reload`
/// (SIGHUP). Returns on shutdown once the link's tasks have stopped.
pub async fn supervise(
    state: AppState,
    inbound_bell: Arc<Notify>,
    reload: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut slot = LinkSlot::default();
    let mut last_problem: Option<Unresolved> = None;
    let poll = Duration::from_secs(state.config.config.relay.settings_poll_seconds);
    // A link task that panicked on its way out while the daemon stops.
    let mut stop_panic = None;
    loop {
        let resolved = settings::resolve(&state.config, &*state.store).await;
        let problem = resolved.as_ref().err().cloned();
        let followed = match resolved {
            Ok(wanted) => slot.follow(wanted, &state, &inbound_bell, &shutdown).await,
            Err(Unresolved::Incomplete(_)) => {
                slot.follow(None, &state, &inbound_bell, &shutdown).await
            }
            // A store that cannot be read now says nothing about the
            // pairing: the link runs on (or stays off) until it can.
            Err(Unresolved::Store(_) | Unresolved::KeyUnreadable(_)) => Ok(()),
        };
        // The old link's task failed as it stopped for new settings: as
        // for one failing while it runs, the daemon is told.
        if let Err(panicked) = followed {
            link_failed(
                panicked,
                "while the relay link stopped for new settings",
                shutdown.is_cancelled(),
            );
            return;
        }
        if problem != last_problem {
            match &problem {
                Some(unread @ (Unresolved::Store(_) | Unresolved::KeyUnreadable(_))) => {
                    tracing::warn!("{unread}; the relay link stays as it is")
                }
                Some(incomplete) => tracing::warn!("the relay link is off: {incomplete}"),
                None => {}
            }
        }
        last_problem = problem;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = reload.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            // Every link task runs until the link stops: one that ended is
            // a failure (a panic), which the daemon's task watch is told
            // of by this task ending in turn.
            ended = slot.task_ended() => {
                // Its tasks also end when the daemon stops (the link's
                // token is a child of `shutdown`): no failure then, unless
                // one panicked on its way out.
                if shutdown.is_cancelled() {
                    stop_panic = ended.panic.is_some().then_some(ended);
                    break;
                }
                let also = slot.stop().await;
                if let Some(also) = also {
                    tracing::error!("{ended} while the relay link ran");
                    link_failed(also, "while the relay link stopped", shutdown.is_cancelled());
                } else {
                    link_failed(ended, "while the relay link ran", shutdown.is_cancelled());
                }
                return;
            }
        }
    }
    // The link's token is a child of `shutdown`: its tasks are stopping.
    let rest = slot.stop().await;
    match (&stop_panic, rest) {
        (Some(_), Some(also)) => tracing::error!("{also} while the relay link stopped"),
        (None, rest) => stop_panic = rest,
        (Some(_), None) => {}
    }
    raise_if_panicked(stop_panic);
}

/// A link task that panicked while the daemon stopped cut short what it
/// was doing (a forward, a status report): this task fails in turn, so
/// the daemon's stop reports it and exits 1 rather than 0.
/// A link task failed (`end`, `when` says when). While the daemon runs
/// the supervisor then returns, which the daemon's task watch takes for a
/// failure. Once the daemon stops (the stop may have begun meanwhile), it
/// counts only panics as failures: a panic is raised as one.
fn link_failed(end: TaskEnd, when: &str, daemon_stopping: bool) {
    if daemon_stopping && end.panic.is_some() {
        raise(end);
    }
    tracing::error!("{end} {when}");
}

fn raise_if_panicked(end: Option<TaskEnd>) {
    if let Some(end) = end {
        raise(end);
    }
}

fn raise(end: TaskEnd) -> ! {
    std::panic::resume_unwind(Box::new(format!("{end} while the relay link stopped")))
}

/// The link that runs, if any, and the settings the HTTP client refused
/// (logged once, not tried again unchanged).
#[derive(Default)]
struct LinkSlot {
    running: Option<RunningLink>,
    refused: Option<[u8; 32]>,
}

impl LinkSlot {
    /// Run the link `wanted` describes (`None`: no link), restarting it if
    /// it is not the one running. Err: a task of the old link panicked as
    /// it stopped (no new link is started).
    async fn follow(
        &mut self,
        wanted: Option<RelaySettings>,
        state: &AppState,
        inbound_bell: &Arc<Notify>,
        shutdown: &CancellationToken,
    ) -> Result<(), TaskEnd> {
        let fingerprint = wanted.as_ref().map(fingerprint);
        if fingerprint == self.running.as_ref().map(|link| link.fingerprint) {
            return Ok(());
        }
        if let Some(link) = self.running.take() {
            tracing::info!("relay settings changed: stopping the relay link");
            if let Some(panicked) = link.stop().await {
                return Err(panicked);
            }
        }
        let (Some(settings), Some(fingerprint)) = (wanted, fingerprint) else {
            return Ok(());
        };
        if self.refused == Some(fingerprint) {
            return Ok(());
        }
        self.running = start(state, settings, fingerprint, inbound_bell, shutdown).await;
        self.refused = self.running.is_none().then_some(fingerprint);
        Ok(())
    }

    /// The next of the running link's tasks to end; never without a link.
    async fn task_ended(&mut self) -> TaskEnd {
        match self.running.as_mut() {
            Some(link) => match link.tasks.next_end().await {
                Some(end) => end,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Stop the running link, if any; the first of its tasks that
    /// panicked on its way out.
    async fn stop(self) -> Option<TaskEnd> {
        match self.running {
            Some(link) => link.stop().await,
            None => None,
        }
    }
}

/// Which relay with which key, from which pairing: a change of any of
/// them restarts the link (a `pair` again with the same relay and key
/// too, which clears the refusals in a row it keeps in memory). Hashed, so
/// the key is not kept twice in the clear.
fn fingerprint(settings: &RelaySettings) -> [u8; 32] {
    let mut hash = Sha256::new();
    let paired_at = settings
        .paired_at_ms
        .map(|at| at.to_string())
        .unwrap_or_default();
    for part in [
        settings.url.as_str(),
        settings.phone_id.as_str(),
        settings.key.expose(),
        paired_at.as_str(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

struct RunningLink {
    fingerprint: [u8; 32],
    stop: CancellationToken,
    tasks: Tasks,
}

impl RunningLink {
    /// Stop the link's tasks (the heartbeat says `stopping`) and wait for
    /// every one. A task that ends now has done its job, unless it
    /// panicked: then the first that did, the others logged.
    async fn stop(mut self) -> Option<TaskEnd> {
        self.stop.cancel();
        let mut panicked: Option<TaskEnd> = None;
        while let Some(end) = self.tasks.next_end().await {
            if end.panic.is_none() {
                continue;
            }
            match panicked {
                None => panicked = Some(end),
                Some(_) => tracing::error!("{end} while the relay link stopped"),
            }
        }
        panicked
    }
}

async fn start(
    state: &AppState,
    settings: RelaySettings,
    fingerprint: [u8; 32],
    inbound_bell: &Arc<Notify>,
    shutdown: &CancellationToken,
) -> Option<RunningLink> {
    let settings = Arc::new(settings);
    let client = match RelayClient::new(&settings) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            tracing::error!("the relay link is off: {e}");
            return None;
        }
    };
    tracing::info!(url = %settings.url, phone_id = %settings.phone_id,
        mode = ?settings.config.mode, "relay link starting");
    if relay_url::plain_http_off_this_host(&settings.url) {
        tracing::warn!(
            "{}",
            relay_url::plain_http_warning(&shown_url(&settings.url))
        );
    }
    let stop = shutdown.child_token();
    let deps = Deps {
        state: state.clone(),
        settings: settings.clone(),
        client,
        link: Arc::new(Link::open(state.store.clone()).await),
        shutdown: stop.clone(),
        relay_messages_after: Arc::default(),
    };
    let mut tasks = Tasks::default();
    tasks.spawn(
        "the relay forwarder",
        forwarder::run(deps.clone(), inbound_bell.clone()),
    );
    tasks.spawn(
        "the relay status reporter",
        status_reporter::run(deps.clone()),
    );
    tasks.spawn("the relay heartbeat", heartbeat::run(deps.clone()));
    if settings.config.mode == RelayMode::Pull {
        tasks.spawn("the relay poll", pull::run(deps));
    }
    Some(RunningLink {
        fingerprint,
        stop,
        tasks,
    })
}

/// What every relay task holds.
#[derive(Clone)]
pub struct Deps {
    pub state: AppState,
    pub settings: Arc<RelaySettings>,
    pub client: Arc<RelayClient>,
    pub link: Arc<Link>,
    pub shutdown: CancellationToken,
    /// The outbound seq after which messages are this link's relay's,
    /// decided once per link (`reported_relay`) and shared by the tasks
    /// that ask: the status events and reply routing must draw the line
    /// between the old relay's messages and this one's at one place.
    pub relay_messages_after: Arc<tokio::sync::OnceCell<i64>>,
}

impl Deps {
    /// See [`Deps::relay_messages_after`]: read or recorded at the first
    /// ask, retried every `retry_ms` (at least a second) while the store
    /// does not answer. `None` if shut down first.
    pub async fn relay_messages_after(&self, retry_ms: u64) -> Option<i64> {
        let decided = self
            .relay_messages_after
            .get_or_try_init(|| async {
                reported_relay::messages_after(self, retry_ms)
                    .await
                    .ok_or(())
            })
            .await;
        decided.ok().copied()
    }

    /// Wait `ms`, or less if shutting down; false when shut down.
    pub async fn sleep_ms(&self, ms: u64) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(std::time::Duration::from_millis(ms)) => true,
        }
    }

    /// POST `body` to `path` until the relay takes it (2xx) or refuses it
    /// for good (`Some(error)`, logged by the caller); `None` when shut
    /// down first. Transient failures are retried with backoff.
    pub async fn post_until_taken(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Option<Result<(), RelayError>> {
        let mut failures = 0u32;
        loop {
            let sent = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                sent = self.client.post(path, body, None, None) => sent,
            };
            match sent {
                Ok(_) => {
                    self.link.reached().await;
                    return Some(Ok(()));
                }
                Err(e) if e.is_permanent() => return Some(Err(e)),
                Err(e) => {
                    self.link.failed(&e).await;
                    failures = failures.saturating_add(1);
                    if !self.sleep_ms(self.backoff_ms(failures, &e)).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Backoff after `failures` failed tries in a row, honouring a
    /// Retry-After the relay sent.
    pub fn backoff_ms(&self, failures: u32, error: &RelayError) -> u64 {
        let asked = error.retry_after().map_or(0, |d| d.as_millis() as u64);
        self.retry_delay_ms(failures)
            .max(asked.min(self.settings.config.retry_max_ms))
    }

    /// Whether a stored due time is still ahead of `now_ms`. Due times are
    /// wall-clock, as they outlive the process; one further ahead than any
    /// backoff can reach (`retry_max_ms`) was set before the clock stepped
    /// back (an NTP correction), and is due now, not once the clock has
    /// made up the step.
    pub fn still_waits(&self, due_ms: i64, now_ms: i64) -> bool {
        let longest = i64::try_from(self.settings.config.retry_max_ms).unwrap_or(i64::MAX);
        let ahead = due_ms.saturating_sub(now_ms);
        ahead > 0 && ahead <= longest
    }

    /// Backoff after `failures` failed tries in a row, when the relay
    /// asked for nothing (the trouble is on the bridge's side): from
    /// `retry_initial_ms`, doubling to `retry_max_ms`, with jitter.
    pub fn retry_delay_ms(&self, failures: u32) -> u64 {
        let config = &self.settings.config;
        crate::outbox::retry_delay_ms(failures, config.retry_initial_ms, config.retry_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A link whose forwarder and status reporter both panic on the way
    /// out: its stop names the first, logs the second.
    #[tokio::test]
    async fn a_link_task_that_panics_while_the_link_stops_is_reported_and_the_rest_logged() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let stop = CancellationToken::new();
        let mut tasks = Tasks::default();
        for (name, delay_ms) in [
            ("the relay forwarder", 0),
            ("the relay status reporter", 50),
        ] {
            let stopping = stop.clone();
            tasks.spawn(name, async move {
                stopping.cancelled().await;
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                panic!("a bug on the way out");
            });
        }
        let stopping = stop.clone();
        tasks.spawn(
            "the relay heartbeat",
            async move { stopping.cancelled().await },
        );
        let link = RunningLink {
            fingerprint: [0; 32],
            stop,
            tasks,
        };
        let panicked = link.stop().await.expect("a task panicked");
        assert_eq!(
            panicked.to_string(),
            "the relay forwarder panicked: a bug on the way out"
        );
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            logged.contains(
                "the relay status reporter panicked: a bug on the way out while the relay link stopped"
            ),
            "{logged}"
        );
    }

    /// The supervisor fails in turn, so the daemon's task watch sees a
    /// panic (its stop then exits 1), naming the link task.
    #[tokio::test]
    async fn a_link_task_s_panic_on_the_way_out_fails_the_supervisor_s_task() {
        let mut tasks = Tasks::default();
        tasks.spawn("the relay link", async {
            raise_if_panicked(Some(TaskEnd {
                name: "the relay forwarder".into(),
                panic: Some("a bug on the way out".into()),
            }))
        });
        let end = tasks.next_end().await.unwrap();
        assert_eq!(
            end.to_string(),
            "the relay link panicked: the relay forwarder panicked: a bug on the way out \
             while the relay link stopped"
        );
        let mut tasks = Tasks::default();
        tasks.spawn("the relay link", async { raise_if_panicked(None) });
        assert_eq!(tasks.next_end().await.unwrap().panic, None);
    }

    /// A link task that fails while the link restarts for new settings,
    /// or while the link is stopped after another failed, as the daemon
    /// begins to stop: the stop counts only panics, so it is raised.
    #[tokio::test]
    async fn a_link_failure_found_as_the_daemon_stops_stays_a_panic() {
        let panicked = || TaskEnd {
            name: "the relay forwarder".into(),
            panic: Some("a bug".into()),
        };
        let mut tasks = Tasks::default();
        tasks.spawn("the relay link", async move {
            link_failed(
                panicked(),
                "while the relay link stopped for new settings",
                true,
            )
        });
        assert!(tasks.next_end().await.unwrap().panic.is_some());
        // While the daemon runs the supervisor returns instead (logged).
        tasks.spawn("the relay link", async move {
            link_failed(
                panicked(),
                "while the relay link stopped for new settings",
                false,
            )
        });
        assert_eq!(tasks.next_end().await.unwrap().panic, None);
    }
}
