//! Wiring: open the store, build the endpoints, start the API, the
//! dispatchers and the receive loops, and stop them all on one signal
//! (as mini-redis does: one token, every loop selects on it, then wait).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use phonerelay_channel::{AttachmentFetcher, Channel, ChannelContext};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::channels::BuildError;
use crate::clock::now_ms;
use crate::config::{LoadedConfig, validate_with};
use crate::daemon_tasks::{TaskEnd, Tasks};
use crate::endpoints::Endpoints;
use crate::exit::ExitError;
use crate::inbound::StoreSink;
use crate::local_key;
use crate::metrics::Metrics;
use crate::outbox::{self, DispatchContext};
use crate::service_manager;
use crate::store::{SqliteStore, Store, StoreError};

/// How long a stop waits for the daemon's tasks once the hard stop has
/// fired (the grace is over, or cut short). Every task is meant to end
/// within it: sends still in flight are released to the queue at the hard
/// stop, and an SMS driver waits at most `STOP_SETTLE` (12 s) more for an
/// answer a modem still owes. A task still running then is named and left,
/// and the stop fails (exit 1): `shutdown_grace_seconds` plus this, plus
/// the store's last commits, stays well inside systemd's `TimeoutStopSec`
/// (45 s in `systemd/phonerelay.service`, for the default 20 s grace),
/// whose SIGKILL would otherwise end a stop with the unit failed and
/// whatever the tasks had yet to record lost.
pub const STOP_BOUND: Duration = Duration::from_secs(15);

/// How long the stop waits for the service manager's notifier to end
/// after the daemon stopped.
const NOTIFIER_STOP_BOUND: Duration = Duration::from_secs(2);

/// A started daemon. Cancel `shutdown` and await `wait()` to stop it.
pub struct RunningDaemon {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub store: Arc<dyn Store>,
    /// What the API handlers see; the service manager's status uses it.
    pub state: AppState,
    /// Ring to make the relay link read its settings again now (SIGHUP).
    pub relay_reload: Arc<tokio::sync::Notify>,
    hard_stop: CancellationToken,
    grace: Duration,
    tasks: Tasks,
    /// This daemon's claim on its state dir: `None` once the stop handed
    /// it on (`stop_keeping_claim`).
    claim: Option<StateDirClaim>,
    /// Whether the stop gave up on tasks still running at its bound.
    gave_up_on_tasks: bool,
}

/// What keeps another daemon, a `restore` or a store-migrating CLI off
/// this daemon's state dir, given up when dropped: to be dropped only once
/// nothing of the daemon can write any more (its tasks ended, its store
/// closed).
pub struct StateDirClaim {
    /// The local socket's file, removed when this is dropped: before the
    /// lock (fields drop in the order they are declared), so that no CLI
    /// sees the lock held and no socket while this daemon stops.
    _socket_file: Option<crate::local_socket::SocketFile>,
    _lock: crate::instance_lock::InstanceLock,
}

impl RunningDaemon {
    /// Wait until one of the daemon's tasks ends. Every one of them runs
    /// until shutdown, so while the daemon runs this is a failure: a
    /// dispatcher, a receive loop or the API gone.
    pub async fn task_ended(&mut self) -> TaskEnd {
        match self.tasks.next_end().await {
            Some(end) => end,
            None => std::future::pending().await,
        }
    }

    /// Stop: refuse new requests, let in-flight sends finish for the grace
    /// period, then release what is left to the queue; wait for every task,
    /// for at most [`STOP_BOUND`] after that release.
    /// A task that panicked on the way is an error (exit 1) naming the
    /// first: it did not finish its stop, and a clean exit would hide
    /// that from the service manager and the operator. So are tasks still
    /// running at the bound, named in the error and the journal.
    pub async fn stop(self) -> Result<(), ExitError> {
        self.stop_unless(std::future::pending()).await
    }

    /// As [`Self::stop`], but the grace ends early once `cut_short`
    /// completes (a second SIGTERM or Ctrl-C: the operator will not wait
    /// for a slow network). Sends still in flight then go back to the
    /// queue, as at the end of the grace, so nothing is lost.
    pub async fn stop_unless(
        self,
        cut_short: impl std::future::Future<Output = ()>,
    ) -> Result<(), ExitError> {
        let (stopped, claim) = self.stop_keeping_claim(cut_short).await;
        drop(claim);
        stopped
    }

    /// As [`Self::stop_unless`], handing the state dir's claim back for
    /// the caller to give up once nothing of the daemon writes any more
    /// (the store's last handle dropped). `None` when the stop gave up on
    /// tasks still running: those may still send or write, so the claim
    /// is kept until the process ends, not given to a second daemon or a
    /// `restore` a moment before the exit.
    pub async fn stop_keeping_claim(
        mut self,
        cut_short: impl std::future::Future<Output = ()>,
    ) -> (Result<(), ExitError>, Option<StateDirClaim>) {
        let stopped = self.stop_inner(cut_short).await;
        let claim = self.claim.take();
        if self.gave_up_on_tasks {
            std::mem::forget(claim);
            return (stopped, None);
        }
        (stopped, claim)
    }

    async fn stop_inner(
        &mut self,
        cut_short: impl std::future::Future<Output = ()>,
    ) -> Result<(), ExitError> {
        self.shutdown.cancel();
        let grace = tokio::time::sleep(self.grace);
        // Armed at the hard stop.
        let bound = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace, cut_short, bound);
        let mut panicked = None;
        let mut bounded = false;
        loop {
            if !bounded && self.hard_stop.is_cancelled() {
                bounded = true;
                bound
                    .as_mut()
                    .reset(tokio::time::Instant::now() + STOP_BOUND);
            }
            tokio::select! {
                next = self.tasks.next_end() => match next {
                    None => break,
                    Some(end @ TaskEnd { panic: Some(_), .. }) => {
                        tracing::error!("{end} while the daemon stopped");
                        panicked.get_or_insert(end);
                    }
                    Some(_) => {}
                },
                _ = &mut grace, if !self.hard_stop.is_cancelled() => {
                    tracing::warn!("grace period over; releasing in-flight sends to the queue");
                    self.hard_stop.cancel();
                }
                _ = &mut cut_short, if !self.hard_stop.is_cancelled() => {
                    tracing::warn!(
                        "asked again to stop; releasing in-flight sends to the queue now"
                    );
                    self.hard_stop.cancel();
                }
                _ = &mut bound, if bounded => {
                    let running = self.tasks.running().join(", ");
                    tracing::error!(still_running = %running, bound_seconds = STOP_BOUND.as_secs(),
                        "tasks still running after the hard stop; giving up on them (exit code 1)");
                    self.gave_up_on_tasks = true;
                    return Err(ExitError::Runtime(format!(
                        "still running {} s after the hard stop: {running}",
                        STOP_BOUND.as_secs()
                    )));
                }
            }
        }
        if let Some(end) = panicked {
            return Err(ExitError::Runtime(format!(
                "{end} while the daemon stopped"
            )));
        }
        // Sends whose outcome the store would not take: their messages are
        // still `sending`, and the next start sends them again. Exit 1, so
        // the service manager and the operator know, and which they are.
        let unrecorded: Vec<String> = (self.state.endpoints.iter())
            .flat_map(|(_, endpoint)| endpoint.unrecorded.ids())
            .collect();
        if !unrecorded.is_empty() {
            tracing::error!(count = unrecorded.len(), ids = %unrecorded.join(", "),
                "send outcomes not recorded; the next start sends these messages again (exit code 1)");
        }
        // A commit of unknown outcome while the daemon stopped (the watch
        // on the writer ends with the stop): exit 1 all the same, so the
        // service manager and the operator know the restart has something
        // to settle.
        if let Some(why) = self.store.is_broken() {
            return Err(ExitError::Runtime(format!(
                "the store stopped writing {why}"
            )));
        }
        if unrecorded.is_empty() {
            return Ok(());
        }
        Err(ExitError::Runtime(format!(
            "{} send outcome(s) not recorded, sent again at the next start: {}",
            unrecorded.len(),
            named(&unrecorded)
        )))
    }
}

/// Validate, open and start everything; returns once the API listens.
/// `extra` endpoints are added to the configured ones (tests use this).
pub async fn start(
    loaded: LoadedConfig,
    extra: Vec<Arc<dyn Channel>>,
) -> Result<RunningDaemon, ExitError> {
    let extra_phone_ids: Vec<String> = extra.iter().map(|c| c.phone_id().to_string()).collect();
    let (absent, issues): (Vec<_>, Vec<_>) = validate_with(&loaded, &extra_phone_ids)
        .into_iter()
        .partition(|issue| issue.absent_for_now);
    for issue in &absent {
        // A modem not plugged in yet (or still switching modes after boot)
        // is waited for, as one unplugged while the daemon runs is.
        tracing::warn!("{issue}; starting anyway, waiting for it");
    }
    if !issues.is_empty() {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        return Err(ExitError::Config(lines.join("\n")));
    }
    let mut channels = crate::channels::build(&loaded).map_err(|e| match e {
        BuildError::Config(issues) => ExitError::Config(
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        // A state dir that fails under a file an endpoint needs may pass
        // (a full disk): exit 1, so the service manager restarts.
        BuildError::Io(why) => ExitError::Runtime(why),
    })?;
    channels.extend(extra);
    let endpoints = Arc::new(Endpoints::new(channels).map_err(ExitError::Config)?);
    // One fetcher for every endpoint: it refuses what is not public
    // (`src/fetch`), so no adapter fetches a URL itself.
    let fetcher: Arc<dyn AttachmentFetcher> = Arc::new(
        crate::fetch::HttpFetcher::new(&loaded.config.attachments).map_err(ExitError::Runtime)?,
    );

    let lock = crate::instance_lock::acquire(&loaded.state_dir())?;
    // The local socket as soon as the lock is held, and its file kept until
    // the lock is let go (`local_socket.rs`): a CLI call while the store
    // opens waits on it, and never takes this daemon for one without a
    // socket. Declared after the lock, so dropped before it on an early
    // return. Before the TCP port as well: whoever sees the port accept
    // (a script, `phonerelay status` right after a start) finds the socket
    // there too, not a stale one from a killed run that nobody answers.
    let (local, socket_file) = match crate::local_socket::bind(&loaded.state_dir()) {
        Some((listener, file)) => (Some(listener), Some(file)),
        None => (None, None),
    };
    let db = loaded.database_path();
    let commit_delay = Duration::from_millis(loaded.config.storage.commit_delay_ms);
    // On the blocking pool: the open migrates the schema (minutes for a
    // large store) and waits for a store another process holds. Run on a
    // worker, it kept the runtime's only worker (one core, a cgroup of one
    // CPU) from hearing a stop signal until it ended.
    let opened = tokio::task::spawn_blocking({
        let db = db.clone();
        move || SqliteStore::open_with_commit_delay(&db, commit_delay)
    })
    .await
    .map_err(|e| ExitError::Runtime(format!("the store's open failed: {e}")))?;
    let store: Arc<dyn Store> = Arc::new(
        opened
            .map_err(|e| match e {
                // A restart would meet the same store: not restarted (exit 2).
                StoreError::Incompatible(why) => ExitError::Config(why),
                e => ExitError::Runtime(format!("cannot open the store {}: {e}", db.display())),
            })?
            .with_max_media_bytes(loaded.config.storage.max_media_bytes)
            .with_media_room(crate::store::MediaRoom {
                max_total_bytes: loaded.config.storage.max_media_total_bytes,
                min_free_bytes: loaded.config.storage.media_min_free_bytes,
            }),
    );
    rebase_written_ahead(&*store).await?;
    let abandoned = store
        .requeue_abandoned(now_ms(), loaded.config.outbox.max_attempts)
        .await
        .map_err(|e| ExitError::Runtime(e.to_string()))?;
    if abandoned.requeued > 0 {
        tracing::warn!(
            requeued = abandoned.requeued,
            "messages left in 'sending' by the last run are queued again"
        );
    }
    if abandoned.failed > 0 {
        tracing::warn!(
            failed = abandoned.failed,
            "messages left in 'sending' by the last run had no attempts left; failed (retries_exhausted)"
        );
    }
    sweep_media_files(&*store).await;
    local_key::ensure(&*store, &loaded.state_dir())
        .await
        .map_err(ExitError::Runtime)?;
    // Before the API takes a send: one the new relay pushes is its own.
    crate::relay::reported_relay::record_a_move_at_start(&loaded, &*store).await;

    let listen = &loaded.config.server.listen;
    // On an error the socket's file goes with `socket_file`: nobody will
    // answer on it.
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| ExitError::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ExitError::Runtime(e.to_string()))?;

    let config = Arc::new(loaded);
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let mut tasks = Tasks::default();

    let state = AppState::new(api::Shared {
        store: store.clone(),
        endpoints: endpoints.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        inbound_bell: Arc::new(tokio::sync::Notify::new()),
        webhook_bodies: api::WebhookBodies::new(config.config.server.max_webhook_body_bytes),
    });
    let app = api::router(state.clone());
    let stop = api::serve::Stop {
        graceful: shutdown.clone(),
        hard: hard_stop.clone(),
    };
    let limits = api::serve::Limits {
        request_timeout: Duration::from_secs(config.config.server.request_timeout_seconds),
        max_connections: config.config.server.max_connections as usize,
        serving: "server.listen",
    };
    if let Some(local) = local {
        let local_stop = api::serve::Stop {
            graceful: shutdown.clone(),
            hard: hard_stop.clone(),
        };
        let local_limits = api::serve::Limits {
            max_connections: crate::local_socket::MAX_CONNECTIONS,
            serving: "the local socket",
            ..limits
        };
        tasks.spawn(
            "the local socket's API",
            api::serve::serve(local, app.clone(), local_limits, local_stop),
        );
    }
    tasks.spawn("the API", api::serve::serve(listener, app, limits, stop));

    let dispatch = DispatchContext {
        store: store.clone(),
        metrics: metrics.clone(),
        outbox: Arc::new(config.config.outbox.clone()),
        shutdown: shutdown.clone(),
        hard_stop: hard_stop.clone(),
    };
    let inbound_bell = state.inbound_bell.clone();
    // Channels stop after the dispatchers: a send finishing in the grace
    // period still needs its modem (or connection). Each dispatcher holds
    // a sender; once all are gone, or at the hard stop, channels stop.
    let channels_stop = CancellationToken::new();
    let (dispatcher_alive, mut dispatchers_gone) = tokio::sync::mpsc::channel::<()>(1);
    for ((kind, phone_id), endpoint) in endpoints.iter() {
        let sink = StoreSink::new(store.clone(), metrics.clone(), *kind, phone_id.clone())
            .with_inbound_bell(inbound_bell.clone());
        let context = ChannelContext {
            sink: Arc::new(sink),
            fetcher: fetcher.clone(),
            shutdown: channels_stop.clone(),
        };
        // Before its dispatcher can hand it a send (`Channel::attach`).
        endpoint.channel.attach(&context);
        let alive = dispatcher_alive.clone();
        let dispatcher = outbox::run_endpoint(endpoint.clone(), dispatch.clone());
        tasks.spawn(format!("the {kind}/{phone_id} dispatcher"), async move {
            dispatcher.await;
            drop(alive);
        });
        let channel = endpoint.channel.clone();
        tasks.spawn(format!("the {kind}/{phone_id} channel"), async move {
            channel.run(context).await
        });
    }
    drop(dispatcher_alive);
    let (graceful, hard) = (shutdown.clone(), hard_stop.clone());
    tasks.spawn("the channels' stop", async move {
        graceful.cancelled().await;
        tokio::select! {
            _ = dispatchers_gone.recv() => {}
            _ = hard.cancelled() => {}
        }
        channels_stop.cancel();
    });
    // A commit whose outcome is unknown (or a connection stuck in a
    // transaction) stops the writer for good: the
    // daemon stops (exit 1), and the store's recovery at the next start
    // settles what that commit kept, as PostgreSQL does after a failed
    // fsync.
    let (watched, stopping) = (store.clone(), shutdown.clone());
    tasks.spawn("the store's writer", async move {
        tokio::select! {
            why = watched.broken() => {
                tracing::error!("the store stopped writing {why}");
            }
            _ = stopping.cancelled() => {}
        }
    });
    tasks.spawn(
        "the retention sweep",
        crate::retention::run(
            store.clone(),
            config.clone(),
            Duration::from_secs(crate::config::RETENTION_SWEEP_SECONDS),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "the expiry sweep",
        outbox::run_expiry_sweeper(
            store.clone(),
            Duration::from_secs(config.config.outbox.expiry_sweep_seconds),
            shutdown.clone(),
        ),
    );
    let relay_reload = Arc::new(tokio::sync::Notify::new());
    tasks.spawn(
        "the relay link",
        crate::relay::supervise(
            state.clone(),
            inbound_bell,
            relay_reload.clone(),
            shutdown.clone(),
        ),
    );

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        %addr,
        store = %db.display(),
        endpoints = endpoints.iter().count(),
        "phonerelay is up"
    );
    Ok(RunningDaemon {
        addr,
        shutdown,
        store,
        state,
        relay_reload,
        hard_stop,
        grace: Duration::from_secs(config.config.server.shutdown_grace_seconds),
        tasks,
        claim: Some(StateDirClaim {
            _socket_file: socket_file,
            _lock: lock,
        }),
        gave_up_on_tasks: false,
    })
}

/// The first few of `ids`, and how many more: an error message stays
/// one readable line (the journal has them all).
fn named(ids: &[String]) -> String {
    const NAMED: usize = 10;
    let first = ids[..ids.len().min(NAMED)].join(", ");
    match ids.len().checked_sub(NAMED) {
        Some(more) if more > 0 => format!("{first} and {more} more"),
        _ => first,
    }
}

/// Before claims left by the last run are queued again (which writes them
/// as of now): messages written by a clock since stepped back (it ran fast
/// in the last run, or was set back while the daemon was down) wait from
/// now for what was left of their waits, not the step longer. A store that
/// cannot do it cannot write at all: the start fails as the requeue would.
async fn rebase_written_ahead(store: &dyn Store) -> Result<(), ExitError> {
    let rebased = store
        .rebase_written_ahead(now_ms())
        .await
        .map_err(|e| ExitError::Runtime(e.to_string()))?;
    if rebased > 0 {
        tracing::warn!(
            rebased,
            "messages were written by a clock ahead of this one (stepped back since); \
             their waits and ttls count from now"
        );
    }
    Ok(())
}

/// Before any channel runs (so no file is being saved), and under the
/// instance lock: remove the files a crash left without a row, and say so
/// if rows have lost their files (a store restored from a backup, which
/// holds no files); their room is given back. A sweep that fails is logged and the daemon starts:
/// a stray file costs only disk.
async fn sweep_media_files(store: &dyn Store) {
    match store.sweep_media_files().await {
        Ok(sweep) => {
            if sweep.orphans_removed > 0 {
                tracing::info!(
                    removed = sweep.orphans_removed,
                    "media files without a row (left by a crash) removed"
                );
            }
            if sweep.rows_without_file > 0 {
                tracing::warn!(
                    rows = sweep.rows_without_file,
                    "kept media have lost their files (a store restored from a backup, \
                     which holds no files?); they are answered 410 media_gone, and \
                     forwarded without them unless the relay has its copy; their \
                     bytes no longer count against storage.max_media_total_bytes"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot sweep the media folder"),
    }
}

/// Run until SIGTERM or SIGINT, then stop gracefully. SIGHUP makes the
/// relay link read its settings again (`systemctl reload`), and warns if
/// the config file was edited, which only a restart applies.
pub async fn serve(loaded: LoadedConfig) -> Result<(), ExitError> {
    serve_with(loaded, Vec::new()).await
}

/// As [`serve`], with `extra` endpoints added to the configured ones, as
/// [`start`] takes them (tests use this).
pub async fn serve_with(
    loaded: LoadedConfig,
    extra: Vec<Arc<dyn Channel>>,
) -> Result<(), ExitError> {
    let starting = service_manager::Starting::begin();
    // Before anything else: a SIGTERM that comes while the daemon starts
    // (right after it said it is up, say) is kept and stops it cleanly
    // once it runs, instead of ending the process with the default action.
    let mut signals = Signals::install();
    crate::fd_limit::prepare(loaded.config.server.max_connections);
    // On a task of its own, with the stop signals heard meanwhile: a start
    // can take long (a migration of a large store, a store locked by
    // another process, a disk that stopped answering), and a stop held
    // until it ends kept `systemctl stop` waiting for all of it, the
    // start-up extensions stretching the service manager's stop timeout.
    let mut started = tokio::spawn(start(loaded, extra));
    let daemon = tokio::select! {
        // A start that ended as the signal came runs, and is stopped below
        // by the signal still pending.
        biased;
        started = &mut started => match started {
            Ok(started) => started?,
            Err(e) => return Err(ExitError::Runtime(format!("the start failed: {e}"))),
        },
        () = signals.wait_for_stop(None) => {
            drop(starting);
            // Cancelled at its next wait; a store write it has under way
            // is a transaction, undone if the process ends in it.
            started.abort();
            tracing::warn!("stop signal while starting: stopped before the daemon ran");
            return Ok(());
        }
    };
    drop(starting);
    // Fed until the daemon has stopped: systemd may still be waiting on
    // the watchdog while in-flight sends finish.
    let stopping = service_manager::Stopping::default();
    let notified = CancellationToken::new();
    let notifier = tokio::spawn(service_manager::run(
        daemon.state.clone(),
        daemon.addr,
        stopping.clone(),
        notified.clone(),
    ));
    let mut daemon = daemon;
    let reload = Reload {
        relay: daemon.relay_reload.clone(),
        config: daemon.state.config.clone(),
    };
    let failed = tokio::select! {
        _ = signals.wait_for_stop(Some(&reload)) => None,
        end = daemon.task_ended() => Some(end),
    };
    stopping.begin();
    match &failed {
        None => tracing::info!("shutting down: no new requests, finishing in-flight sends"),
        // Exit 1 so that the service manager starts a whole daemon again.
        Some(end) => tracing::error!("{end} while the daemon ran; stopping (exit code 1)"),
    }
    // A second SIGTERM or SIGINT cuts the grace short; SIGHUP is of no
    // use any more (the relay link is stopping).
    let (stopped, claim) = daemon.stop_keeping_claim(signals.wait_for_stop(None)).await;
    notified.cancel();
    // Bounded: a report under way may be stuck on the same disk that held
    // the stop (a read of the store), and the exit must not wait for it.
    if tokio::time::timeout(NOTIFIER_STOP_BOUND, notifier)
        .await
        .is_err()
    {
        tracing::warn!("the service manager's last report did not end; exiting without it");
        // It holds the store: the claim goes with the process.
        std::mem::forget(claim);
    } else {
        // The notifier's was the store's last handle: closed now.
        drop(claim);
    }
    tracing::info!("stopped");
    match failed {
        // A task that panicked while stopping: exit 1 as well.
        None => stopped,
        Some(end) => Err(ExitError::Runtime(format!("{end} while the daemon ran"))),
    }
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind, name| {
            signal(kind).unwrap_or_else(|e| panic!("installing a {name} handler: {e}"))
        };
        Signals {
            term: install(SignalKind::terminate(), "SIGTERM"),
            interrupt: install(SignalKind::interrupt(), "SIGINT"),
            hup: install(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// Until SIGTERM or SIGINT; a SIGHUP meanwhile does `reload`, if any.
    /// A stop signal during a reload ends it: the reload reads the config
    /// file, which a mount that stopped answering may never return, and a
    /// stop held behind it would end in the service manager's SIGKILL.
    async fn wait_for_stop(&mut self, reload: Option<&Reload>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hup.recv() => {
                    let Some(reload) = reload else { continue };
                    tokio::select! {
                        _ = reload.run() => {}
                        _ = self.term.recv() => return,
                        _ = self.interrupt.recv() => return,
                    }
                }
            }
        }
    }
}

/// What SIGHUP does while the daemon runs.
struct Reload {
    relay: Arc<tokio::sync::Notify>,
    config: Arc<LoadedConfig>,
}

impl Reload {
    /// Ring the relay link to read its pairing and key again. The config
    /// file is not read again (its values are wired into every task), so
    /// an edit the operator hoped to apply is named instead of ignored,
    /// and one a restart would refuse is said to be so now, not found by
    /// the next restart (a watchdog's, a task's end), which exits 2 and
    /// stays down.
    async fn run(&self) {
        // First: a read of the config file below that hangs (a mount that
        // stopped answering) must not keep the link from a new pairing.
        self.relay.notify_one();
        let path = &self.config.path;
        match self.config.digest.differs_from_file(path).await {
            Ok(false) => {}
            Ok(true) => match refused_at_restart(path.clone()).await {
                None => tracing::warn!(
                    path = %path.display(),
                    "the config file changed since start; restart to apply it \
                     (reload re-reads only the relay pairing and key)"
                ),
                Some(why) => tracing::error!(
                    path = %path.display(),
                    "the config file changed since start, and a restart would refuse it \
                     (exit 2, not restarted): {why}; put it right (phonerelay check) \
                     before the daemon restarts"
                ),
            },
            // Gone, or no longer readable by this user: a restart would
            // refuse it as well (exit 2), unless the read failed for now.
            Err(e) => match refused_at_restart(path.clone()).await {
                Some(why) => tracing::error!(
                    path = %path.display(),
                    "the config file cannot be read, and a restart would refuse it \
                     (exit 2, not restarted): {why}; put it right (phonerelay check) \
                     before the daemon restarts"
                ),
                None => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot read the config file to tell whether it changed since start \
                     (reload re-reads only the relay pairing and key)"
                ),
            },
        }
        tracing::info!("SIGHUP: reading the relay settings again");
    }
}

/// Why a start on the config file at `path` would refuse it, as `serve`
/// checks it: none if it would start (a modem not there yet is waited
/// for, no refusal).
async fn refused_at_restart(path: std::path::PathBuf) -> Option<String> {
    let checked = tokio::task::spawn_blocking(move || {
        let loaded = match crate::config::load_from_path(&path) {
            Ok(loaded) => loaded,
            // A read that failed for now is no refusal (a start meeting
            // it exits 1, and is started again).
            Err(crate::config::ConfigError::Read { for_now: true, .. }) => return None,
            Err(e) => return Some(e.to_string()),
        };
        let refused: Vec<String> = validate_with(&loaded, &[])
            .into_iter()
            .filter(|issue| !issue.absent_for_now)
            .map(|issue| issue.to_string())
            .collect();
        (!refused.is_empty()).then(|| refused.join("; "))
    })
    .await;
    checked.unwrap_or_else(|e| Some(format!("the check failed: {e}")))
}
