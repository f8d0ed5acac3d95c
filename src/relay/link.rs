//! When the relay was last reached and the last error, kept in memory and
//! in the store (so `phonerelay pair --status` and the status API see it).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::client::RelayError;
use super::settings::{LINK, SCOPE};
use crate::clock::now_ms;
use crate::store::{Store, StoreResult};

/// Store the "last reached" time at most this often.
const PERSIST_EVERY_MS: i64 = 5_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    pub last_reached_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// The relay answered 401/403: the key must be renewed (`pair`).
    #[serde(default)]
    pub key_rejected: bool,
}

/// The link's last known state; the default (never reached, no error)
/// if none was saved or it cannot be parsed, an error if the store cannot
/// be read.
pub async fn load(store: &dyn Store) -> StoreResult<LinkState> {
    let saved = store.load_cursor(SCOPE, LINK).await?;
    Ok(saved
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

pub struct Link {
    store: Arc<dyn Store>,
    state: Mutex<Tracked>,
    /// The number of the newest snapshot written, held while one is: the
    /// tasks' snapshots are written one at a time, and one older than the
    /// last written is dropped, so a slow write cannot put back a state a
    /// newer one has overtaken (an error after the relay answered again).
    written: tokio::sync::Mutex<u64>,
}

/// The link's state as this run knows it.
struct Tracked {
    state: LinkState,
    /// When the state was last stored.
    persisted_at_ms: i64,
    /// The trouble ([`RelayError::trouble`]) this run last logged, until
    /// the relay is reached: not the stored error, so one that outlived a
    /// restart is logged again; not its text, which names the request's
    /// path, so the link's tasks failing alike log it once between them.
    logged: Option<String>,
    /// Snapshots taken so far: each is numbered in the order taken.
    snapshots: u64,
    /// Why the forwarder holds inbound back though the relay answers (it
    /// refuses every message, [`Link::hold_inbound`]): the link's error
    /// while it lasts, which a request the relay takes (a heartbeat) does
    /// not clear.
    held: Option<String>,
}

impl Tracked {
    fn snapshot(&mut self) -> (u64, LinkState) {
        self.snapshots += 1;
        (self.snapshots, self.state.clone())
    }
}

impl Link {
    /// The link as it was last stored: a restart during an outage must
    /// not forget when the relay was last reached. A state the store
    /// cannot read is taken as unknown (the default) and overwritten.
    pub async fn open(store: Arc<dyn Store>) -> Self {
        let state = load(&*store).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the relay link's last state; starting afresh");
            LinkState::default()
        });
        Self {
            store,
            state: Mutex::new(Tracked {
                state,
                persisted_at_ms: 0,
                logged: None,
                snapshots: 0,
                held: None,
            }),
            written: tokio::sync::Mutex::new(0),
        }
    }

    pub async fn reached(&self) {
        let now = now_ms();
        let snapshot = {
            let mut guard = self.state.lock().expect("link lock");
            // While inbound is held, its reason stays the link's error.
            let standing = guard.held.clone();
            let was_failing = guard.state.last_error != standing;
            guard.state.last_reached_ms = Some(now);
            guard.state.key_rejected = false;
            guard.logged = None;
            if was_failing {
                if standing.is_none() {
                    tracing::info!("the relay is reachable again");
                }
                guard.state.last_error = standing;
                guard.state.last_error_at_ms = guard.state.last_error.as_ref().map(|_| now);
            }
            if !was_failing && now - guard.persisted_at_ms < PERSIST_EVERY_MS {
                return;
            }
            guard.persisted_at_ms = now;
            guard.snapshot()
        };
        self.persist(snapshot).await;
    }

    pub async fn failed(&self, error: &RelayError) {
        let message = error.to_string();
        let trouble = error.trouble();
        let snapshot = {
            let mut guard = self.state.lock().expect("link lock");
            if guard.logged.as_deref() == Some(trouble.as_str()) {
                return;
            }
            if error.is_key_rejected() {
                tracing::error!(
                    "the relay rejected the bridge's key ({message}); run `phonerelay pair` again"
                );
            } else {
                tracing::warn!("relay request failed: {message}");
            }
            guard.logged = Some(trouble);
            guard.state.last_error = Some(message);
            guard.state.last_error_at_ms = Some(now_ms());
            guard.state.key_rejected = error.is_key_rejected();
            guard.snapshot()
        };
        self.persist(snapshot).await;
    }

    /// The forwarder holds inbound back because the relay refuses every
    /// message (`Some(why)`, shown as the link's error until it is lifted)
    /// or no longer does (`None`, clearing that error).
    pub async fn hold_inbound(&self, why: Option<String>) {
        let snapshot = {
            let mut guard = self.state.lock().expect("link lock");
            if guard.held == why {
                return;
            }
            match &why {
                Some(held) => {
                    guard.state.last_error = Some(held.clone());
                    guard.state.last_error_at_ms = Some(now_ms());
                }
                None if guard.state.last_error == guard.held => {
                    guard.state.last_error = None;
                    guard.state.last_error_at_ms = None;
                }
                None => {}
            }
            guard.held = why;
            guard.snapshot()
        };
        self.persist(snapshot).await;
    }

    async fn persist(&self, (number, state): (u64, LinkState)) {
        let mut written = self.written.lock().await;
        if *written > number {
            return;
        }
        *written = number;
        if let Ok(text) = serde_json::to_string(&state)
            && let Err(e) = self.store.save_cursor(SCOPE, LINK, &text).await
        {
            tracing::warn!(error = %e, "cannot record the relay link state");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex as StdMutex, mpsc};
    use std::time::Duration;

    use super::*;
    use crate::store::SqliteStore;
    use crate::store::testing::{Faults, Faulty};

    fn unreachable_at(path: &str) -> RelayError {
        RelayError::Unreachable {
            url: format!("https://relay.example{path}"),
            reason: "connection refused".into(),
        }
    }

    /// A restart while the relay is down: the new run's first failure
    /// keeps when the relay was last reached, which `pair --status` and
    /// the status API show.
    #[tokio::test]
    async fn a_failure_after_a_restart_keeps_when_the_relay_was_last_reached() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        Link::open(store.clone()).await.reached().await;
        let reached = load(&*store).await.unwrap().last_reached_ms;
        assert!(reached.is_some());

        let restarted = Link::open(store.clone()).await;
        restarted
            .failed(&unreachable_at("/api/v1/bridge/heartbeat"))
            .await;
        let stored = load(&*store).await.unwrap();
        assert_eq!(stored.last_reached_ms, reached);
        assert!(stored.last_error.is_some(), "{stored:?}");
    }

    /// The heartbeat and the forwarder meet the same outage, each on its
    /// own path: one error, logged and stored once, not again at each
    /// turn of theirs.
    #[tokio::test]
    async fn the_same_trouble_on_another_path_is_the_same_error() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap());
        let link = Link::open(store.clone()).await;
        let heartbeat = unreachable_at("/api/v1/bridge/heartbeat");
        link.failed(&heartbeat).await;
        link.failed(&unreachable_at("/api/v1/messages")).await;
        let stored = load(&*store).await.unwrap();
        assert_eq!(stored.last_error, Some(heartbeat.to_string()));
    }

    /// Holds the first save of the link state until the test lets it go,
    /// saying when it is held.
    struct HoldFirstSave {
        held: StdMutex<Option<mpsc::Sender<()>>>,
        release: StdMutex<Option<mpsc::Receiver<()>>>,
    }

    impl Faults for HoldFirstSave {
        fn save_cursor(&self, name: &str) -> StoreResult<()> {
            let held = self.held.lock().unwrap().take();
            if let (LINK, Some(held)) = (name, held) {
                held.send(()).unwrap();
                let release = self.release.lock().unwrap().take().unwrap();
                release.recv().unwrap();
            }
            Ok(())
        }
    }

    /// A failure's write is slow; the relay answers a task meanwhile: the
    /// stored state is the newer one (reached, no error), not the failure
    /// landing last over it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_write_of_an_older_state_does_not_overwrite_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let faults = HoldFirstSave {
            held: StdMutex::new(Some(held_tx)),
            release: StdMutex::new(Some(release_rx)),
        };
        let store: Arc<dyn Store> = Arc::new(Faulty::with(sqlite, faults));
        let link = Arc::new(Link::open(store.clone()).await);

        let failing = tokio::spawn({
            let link = link.clone();
            async move { link.failed(&unreachable_at("/api/v1/messages")).await }
        });
        tokio::task::spawn_blocking(move || held_rx.recv().unwrap())
            .await
            .unwrap();
        let mut reaching = tokio::spawn({
            let link = link.clone();
            async move { link.reached().await }
        });
        // Time for the newer write to land first where nothing orders the
        // writes; where they are ordered it waits for the older one, and
        // the test goes on when the time is up.
        let waited = tokio::time::timeout(Duration::from_millis(300), &mut reaching).await;
        release_tx.send(()).unwrap();
        failing.await.unwrap();
        match waited {
            Ok(reached) => reached.unwrap(),
            Err(_) => reaching.await.unwrap(),
        }

        let stored = load(&*store).await.unwrap();
        assert!(stored.last_reached_ms.is_some(), "{stored:?}");
        assert_eq!(stored.last_error, None);
    }
}
