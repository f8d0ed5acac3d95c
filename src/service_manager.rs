//! Telling the service manager how the daemon is doing, over the sd_notify
//! protocol (`Type=notify` in `systemd/phonerelay.service`): more start-up
//! time while the store opens (migrations can take a while on a big one),
//! READY once the API listens, a one-line STATUS for `systemctl status`,
//! WATCHDOG pings while the runtime and the store writer answer, STOPPING
//! at the signal. Without `$NOTIFY_SOCKET` (not started by systemd) it all
//! does nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::api::system::report;

/// Start-up time asked for at a time while the store opens, and how often
/// it is asked for again (systemd's `TimeoutStartSec=` would otherwise end
/// a long migration, and the restart would begin it again).
const STARTUP_EXTENSION: Duration = Duration::from_secs(60);
const STARTUP_EXTENSION_EVERY: Duration = Duration::from_secs(20);

/// How long a start is given in all: past it no more time is asked for,
/// and `TimeoutStartSec=` ends a start that hangs (a disk that stopped
/// answering) for the service manager to try again, instead of a unit left
/// starting for good. A migration of the largest store measured takes
/// minutes (docs/performance.md).
const STARTUP_EXTENSION_MAX: Duration = Duration::from_secs(3600);

/// How often STATUS is refreshed when no watchdog asks for more often.
const STATUS_EVERY: Duration = Duration::from_secs(15);
/// How often the endpoints' states are looked at between two reports: a
/// modem that comes up (or goes down) shows in STATUS within this, not at
/// the next report (in memory, so cheap).
const ENDPOINTS_GLANCE_EVERY: Duration = Duration::from_secs(1);

fn under_service_manager() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Keeps asking for more start-up time until dropped. A thread of its own,
/// not a task: opening the store blocks the thread that does it.
pub struct Starting {
    stop: Option<mpsc::Sender<()>>,
}

impl Starting {
    pub fn begin() -> Starting {
        if !under_service_manager() {
            return Starting { stop: None };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let usec = STARTUP_EXTENSION.as_micros() as u32;
            let until = std::time::Instant::now() + STARTUP_EXTENSION_MAX;
            while std::time::Instant::now() < until {
                notify(&[
                    NotifyState::ExtendTimeoutUsec(usec),
                    NotifyState::Status("starting: opening the store"),
                ]);
                // Ends on drop (disconnected) as on a message.
                if stopped.recv_timeout(STARTUP_EXTENSION_EVERY)
                    != Err(mpsc::RecvTimeoutError::Timeout)
                {
                    return;
                }
            }
            tracing::warn!(
                "still starting after {} minutes: no more start-up time is asked for",
                STARTUP_EXTENSION_MAX.as_secs() / 60
            );
        });
        Starting { stop: Some(stop) }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The beat of STATUS and watchdog pings, and how long a status report may
/// take to count as an answer, for a watchdog interval of `watchdog`: a
/// quarter of it each, so one slow report (a stalled fsync, a CLI holding
/// the write lock) delays a ping by at most a beat, and only a writer or
/// runtime that stays silent for most of the interval gets the daemon
/// restarted. (At half, one slow report let the next ping come a whole
/// interval after the last.)
fn watchdog_beat(watchdog: Option<Duration>) -> (Duration, Duration) {
    let every = watchdog.map_or(STATUS_EVERY, |w| (w / 4).min(STATUS_EVERY));
    (every, every)
}

/// Whether a status report that came back in time feeds the watchdog. A
/// store that answers with an error (a full disk) does, since a restart
/// would not mend it; one whose writer is gone (its thread ended, so every
/// write fails at once) does not, since a restart does.
fn feeds_watchdog(store_ok: bool, writer_gone: bool) -> bool {
    store_ok || !writer_gone
}

/// What the notifier reads: the daemon's state in the daemon, a script in
/// the tests, which drive [`Notifier`] under paused time to check that
/// the watchdog is fed however the reports and the endpoints behave.
trait Watched {
    /// The status report, which runs a transaction on the store's writer.
    async fn report(&self) -> Report;
    /// Whether the store's writer is gone (its thread ended): asked only
    /// when a report found the store failing.
    async fn writer_gone(&self) -> bool;
    /// Whether the store's writer ran a transaction now: what proves the
    /// daemon alive when the report, whose reads wait behind everyone
    /// else's (clients asking `/ready` by the hundred), comes late.
    async fn writer_answers(&self) -> bool;
    /// Each endpoint's state and whether it can send, which is what the
    /// status line says of it (in memory, so cheap).
    fn endpoints(&self) -> Vec<(phonerelay_channel::HealthState, bool)>;
}

/// A status report as the notifier uses it.
struct Report {
    line: String,
    store_ok: bool,
}

impl Watched for AppState {
    async fn report(&self) -> Report {
        let report = report(self).await;
        Report {
            line: report.one_line(),
            store_ok: report.store == "ok",
        }
    }

    async fn writer_answers(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    async fn writer_gone(&self) -> bool {
        matches!(
            self.store.ping().await,
            Err(crate::store::StoreError::Closed)
        )
    }

    fn endpoints(&self) -> Vec<(phonerelay_channel::HealthState, bool)> {
        self.endpoints
            .iter()
            .map(|(_, endpoint)| (endpoint.channel.health().state, endpoint.channel.can_send()))
            .collect()
    }
}

/// READY (not once the daemon has begun to stop, [`Stopping`]), then
/// STATUS and WATCHDOG until `done`. A watchdog ping goes out
/// only when the status report, which runs a transaction on the store's
/// writer thread, came back within a quarter of the watchdog interval
/// ([`watchdog_beat`]) from a writer still there ([`feeds_watchdog`]): a
/// hung or dead writer, or a hung runtime, makes systemd restart the
/// daemon. STATUS says what the store answered, after `stopping` that the
/// daemon is stopping rather than listening (the watchdog is still fed
/// while in-flight sends finish).
pub async fn run(state: AppState, addr: SocketAddr, stopping: Stopping, done: CancellationToken) {
    if !under_service_manager() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let notifier = Notifier::new(&state, notify, addr, watchdog, &stopping);
    notifier.run(&done).await;
}

/// The notifier's loop and what it keeps between two reports. `tell` is
/// [`notify`] in the daemon, a list in the tests.
struct Notifier<'a, W, T> {
    watched: &'a W,
    tell: T,
    listening: String,
    watchdog: bool,
    /// The beat of STATUS and WATCHDOG.
    every: Duration,
    /// How long a report may take to feed the watchdog.
    answer_within: Duration,
    stopping: &'a Stopping,
    /// Since when the store has not answered in time, if it has not.
    silent_since: Option<tokio::time::Instant>,
}

impl<'a, W: Watched, T: Fn(&[NotifyState])> Notifier<'a, W, T> {
    fn new(
        watched: &'a W,
        tell: T,
        addr: SocketAddr,
        watchdog: Option<Duration>,
        stopping: &'a Stopping,
    ) -> Self {
        let (every, answer_within) = watchdog_beat(watchdog);
        Notifier {
            watched,
            tell,
            listening: format!("listening on {addr}"),
            watchdog: watchdog.is_some(),
            every,
            answer_within,
            stopping,
            silent_since: None,
        }
    }

    async fn run(mut self, done: &CancellationToken) {
        // Untimed: READY waits for a store that answers. The daemon may
        // have begun to stop meanwhile; then READY is not sent at all.
        let first = self.watched.report().await.line;
        let status = format!("{}; {first}", self.listening);
        self.stopping.ready(&self.tell, &status);
        // On a fixed beat, so a slow report does not push the next one late.
        let mut beat = tokio::time::interval(self.every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        let mut glance = tokio::time::interval(ENDPOINTS_GLANCE_EVERY);
        glance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut endpoints_seen = self.watched.endpoints();
        loop {
            tokio::select! {
                // The beat before the glance: with endpoints that keep
                // changing and slow reports, both are due after every
                // report, and a glance that won each time would keep the
                // beat's ping from ever going out.
                biased;
                _ = done.cancelled() => return,
                _ = beat.tick() => {}
                // A new state: the status says so now, without waiting for
                // the beat.
                _ = glance.tick() => if self.watched.endpoints() == endpoints_seen {
                    continue;
                },
            }
            endpoints_seen = self.watched.endpoints();
            self.refresh().await;
        }
    }

    /// STATUS from a new report, with a watchdog ping when it came back in
    /// time from a writer still there, whether the beat or a glance asked
    /// for it: a glance's report holds the writer as long as the beat's,
    /// so it answers for the writer and the runtime as well.
    ///
    /// The writer is asked alongside: a report that comes late (its reads
    /// queued behind a flood of `/ready`) from a daemon whose writer
    /// answered in time still feeds the watchdog, and only the status
    /// says the report is late. Otherwise overload got a working daemon
    /// killed (SIGABRT, no clean stop), again at every restart while the
    /// flood lasted.
    async fn refresh(&mut self) {
        let (report, writer) = tokio::join!(
            tokio::time::timeout(self.answer_within, self.watched.report()),
            tokio::time::timeout(self.answer_within, self.watched.writer_answers()),
        );
        match report {
            Ok(report) => self.answered(report).await,
            Err(_) => self.silent(matches!(writer, Ok(true))),
        }
    }

    async fn answered(&mut self, report: Report) {
        self.silent_since = None;
        // Asked again only when the report found the store failing.
        let writer_gone = !report.store_ok && self.watched.writer_gone().await;
        let status = format!("{}; {}", self.doing(), report.line);
        let mut states = vec![NotifyState::Status(&status)];
        if self.watchdog && feeds_watchdog(report.store_ok, writer_gone) {
            states.push(NotifyState::Watchdog);
        } else if writer_gone {
            tracing::error!("the store's writer has stopped; the watchdog is not fed");
        }
        (self.tell)(&states);
    }

    /// The report did not come in time; `writer_answered`: the writer ran
    /// a transaction in time all the same.
    fn silent(&mut self, writer_answered: bool) {
        if writer_answered {
            self.silent_since = None;
            let status = format!(
                "{}; the status report is late (the store's reads are busy)",
                self.doing()
            );
            let mut states = vec![NotifyState::Status(&status)];
            if self.watchdog {
                states.push(NotifyState::Watchdog);
            }
            (self.tell)(&states);
            return;
        }
        let answer_within = self.answer_within;
        let since = *self
            .silent_since
            .get_or_insert_with(|| tokio::time::Instant::now() - answer_within);
        let status = format!(
            "{}; the store has not answered for {} s",
            self.doing(),
            since.elapsed().as_secs()
        );
        // At every beat while it lasts: with no watchdog set (a run by
        // hand, or a unit without WatchdogSec) nothing ends it.
        static LOG: crate::logging::SharedThrottle =
            crate::logging::SharedThrottle::new(crate::logging::REPEATED_FAILURE_LOG_EVERY);
        if let Some(unlogged) = LOG.allow() {
            tracing::error!(
                beats_since_last_logged = unlogged,
                "the store did not answer within {} ms; the watchdog is not fed",
                answer_within.as_millis()
            );
        }
        (self.tell)(&[NotifyState::Status(&status)]);
    }

    fn doing(&self) -> &str {
        if self.stopping.has_begun() {
            "stopping"
        } else {
            &self.listening
        }
    }
}

/// Whether the daemon has begun to stop, as the service manager was told.
/// READY and STOPPING go out under one lock, and READY only before
/// STOPPING: a daemon that begins to stop while its first report runs (a
/// task that ended at once) must not say READY after STOPPING, which
/// systemd would take for a start that succeeded, not a stop.
#[derive(Clone, Default)]
pub struct Stopping(Arc<Mutex<bool>>);

impl Stopping {
    /// The signal came (or a task ended): the daemon is stopping.
    pub fn begin(&self) {
        self.begin_telling(notify);
    }

    fn begin_telling(&self, tell: impl Fn(&[NotifyState])) {
        let mut begun = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *begun = true;
        tell(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn has_begun(&self) -> bool {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// READY with `status`, unless the daemon has begun to stop.
    fn ready(&self, tell: impl Fn(&[NotifyState]), status: &str) {
        let begun = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !*begun {
            tell(&[NotifyState::Ready, NotifyState::Status(status)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two reports in a row that do not answer in time still leave a ping
    /// within the interval; a third does not.
    #[test]
    fn one_or_two_slow_reports_do_not_starve_the_watchdog() {
        let interval = Duration::from_secs(30);
        let (every, answer_within) = watchdog_beat(Some(interval));
        // The last ping came at a beat; each slow report spends up to
        // `answer_within` after its beat, and the next begins at once.
        let ping_after = |slow: u32| every + (answer_within * slow).max(every * slow);
        assert!(ping_after(1) < interval, "{:?}", ping_after(1));
        assert!(ping_after(2) < interval, "{:?}", ping_after(2));
        assert!(ping_after(3) >= interval, "{:?}", ping_after(3));
        assert_eq!(watchdog_beat(None).0, STATUS_EVERY);
    }

    /// Reports that take `report_takes` each, from endpoints whose states
    /// change every 500 ms.
    struct SlowAndBusy {
        report_takes: Duration,
        /// How long the writer's own transaction takes.
        writer_takes: Duration,
        since: tokio::time::Instant,
    }

    impl Watched for SlowAndBusy {
        async fn report(&self) -> Report {
            tokio::time::sleep(self.report_takes).await;
            Report {
                line: "ready; store ok".into(),
                store_ok: true,
            }
        }

        async fn writer_gone(&self) -> bool {
            false
        }

        async fn writer_answers(&self) -> bool {
            tokio::time::sleep(self.writer_takes).await;
            true
        }

        fn endpoints(&self) -> Vec<(phonerelay_channel::HealthState, bool)> {
            // As many endpoints as half-seconds gone: a new state each time.
            let changes = self.since.elapsed().as_millis() / 500;
            vec![(phonerelay_channel::HealthState::Up, true); changes as usize]
        }
    }

    /// What the notifier told, with when.
    type Told = std::sync::Arc<std::sync::Mutex<Vec<(tokio::time::Instant, String)>>>;

    /// A `tell` that keeps what it is told in `told`.
    fn telling(told: &Told) -> impl Fn(&[NotifyState]) + use<> {
        let list = told.clone();
        move |states: &[NotifyState]| {
            let now = tokio::time::Instant::now();
            let mut list = list.lock().unwrap();
            list.extend(states.iter().map(|state| (now, state.to_string())));
        }
    }

    /// The loop for `minutes` under paused time, with a 30 s watchdog;
    /// the daemon begins to stop after `stops_after`, if given.
    async fn notifications(
        watched: &SlowAndBusy,
        minutes: u64,
        stops_after: Option<Duration>,
    ) -> Told {
        let told = Told::default();
        let addr = "127.0.0.1:8080".parse().unwrap();
        let (stopping, done) = (Stopping::default(), CancellationToken::new());
        let watchdog = Some(Duration::from_secs(30));
        let notifier = Notifier::new(watched, telling(&told), addr, watchdog, &stopping);
        let stop = async {
            if let Some(after) = stops_after {
                tokio::time::sleep(after).await;
                stopping.begin_telling(telling(&told));
            }
            tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
            done.cancel();
        };
        tokio::join!(notifier.run(&done), stop);
        told
    }

    /// Reports that take 6 s of the 7.5 s they may, from endpoints that
    /// keep changing: every glance finds a change, so a glance and the
    /// beat are both due after each report. The watchdog is still fed
    /// well within its interval, from the time READY went out.
    #[tokio::test(start_paused = true)]
    async fn glances_at_changing_endpoints_do_not_starve_the_watchdog() {
        let watched = SlowAndBusy {
            report_takes: Duration::from_secs(6),
            writer_takes: Duration::from_secs(6),
            since: tokio::time::Instant::now(),
        };
        let told = notifications(&watched, 30, None).await;
        let end = tokio::time::Instant::now();
        let told = told.lock().unwrap();
        let ready = told.iter().find(|(_, s)| s == "READY=1").unwrap().0;
        let pings: Vec<_> = told
            .iter()
            .filter(|(_, s)| s == "WATCHDOG=1")
            .map(|(at, _)| *at)
            .collect();
        let gaps = std::iter::once(ready)
            .chain(pings.iter().copied())
            .chain(std::iter::once(end))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect::<Vec<_>>();
        let longest = gaps.iter().max().copied().unwrap_or_default();
        assert!(pings.len() > 100, "{} pings in 30 minutes", pings.len());
        assert!(
            longest < Duration::from_secs(30),
            "the watchdog went {longest:?} without a ping"
        );
    }

    /// The daemon begins to stop while the first report, which READY
    /// waits for, still runs: READY is not sent after STOPPING, and the
    /// watchdog is still fed.
    #[tokio::test(start_paused = true)]
    async fn no_ready_once_stopping_began() {
        let watched = SlowAndBusy {
            report_takes: Duration::from_secs(2),
            writer_takes: Duration::from_secs(2),
            since: tokio::time::Instant::now(),
        };
        let told = notifications(&watched, 1, Some(Duration::from_secs(1))).await;
        let told: Vec<String> = told
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        let stopping = told.iter().position(|s| s == "STOPPING=1").unwrap();
        assert!(
            !told[stopping..].contains(&"READY=1".to_string()),
            "{told:?}"
        );
        assert!(
            told[stopping..].contains(&"WATCHDOG=1".to_string()),
            "{told:?}"
        );
    }

    /// The reports come late every time (their reads queued behind a
    /// flood of `/ready`), the writer answers at once: the watchdog is fed
    /// within its interval all along, and the status says the report is
    /// late. With the writer as slow, it is not fed at all.
    #[tokio::test(start_paused = true)]
    async fn late_reports_from_a_writer_that_answers_still_feed_the_watchdog() {
        for writer_takes in [Duration::ZERO, Duration::from_secs(20)] {
            let watched = SlowAndBusy {
                report_takes: Duration::from_secs(20),
                writer_takes,
                since: tokio::time::Instant::now(),
            };
            let told = notifications(&watched, 10, None).await;
            let told = told.lock().unwrap();
            let pings: Vec<_> = told
                .iter()
                .filter(|(_, s)| s == "WATCHDOG=1")
                .map(|(at, _)| *at)
                .collect();
            if writer_takes.is_zero() {
                let longest = pings
                    .windows(2)
                    .map(|pair| pair[1] - pair[0])
                    .max()
                    .unwrap_or_default();
                assert!(pings.len() > 20, "{} pings in 10 minutes", pings.len());
                assert!(
                    longest < Duration::from_secs(30),
                    "{longest:?} without a ping"
                );
                assert!(
                    told.iter()
                        .any(|(_, s)| s.contains("the status report is late")),
                    "{told:?}"
                );
            } else {
                assert!(pings.is_empty(), "fed by a writer that did not answer");
            }
        }
    }

    #[test]
    fn a_failing_store_feeds_the_watchdog_and_a_gone_writer_does_not() {
        assert!(feeds_watchdog(true, false));
        assert!(
            feeds_watchdog(false, false),
            "a full disk: a restart would not mend it"
        );
        assert!(
            !feeds_watchdog(false, true),
            "a writer gone: a restart mends it"
        );
    }
}
