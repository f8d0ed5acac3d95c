//! Telling the service manager how the daemon is doing, over the sd_notify
//! protocol (`Type=notify` in `systemd/phonerelay.service`): more start-up
//! time while the store opens (migrations can take a while on a big one),
//! READY once the API listens, a one-line STATUS for `systemctl status`,
//! WATCHDOG pings while the runtime and the store writer answer, STOPPING
//! at the signal. Without `$NOTIFY_SOCKET` (not started by systemd) it all
//! does nothing.

use std::net::SocketAddr;
use std::sync::mpsc;
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
            loop {
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

/// READY, then STATUS and WATCHDOG until `done`. A watchdog ping goes out
/// only when the status report, which runs a transaction on the store's
/// writer thread, came back within a quarter of the watchdog interval
/// ([`watchdog_beat`]) from a writer still there ([`feeds_watchdog`]): a
/// hung or dead writer, or a hung runtime, makes systemd restart the
/// daemon. STATUS says what the store answered, after `stopping` that the
/// daemon is stopping rather than listening (the watchdog is still fed
/// while in-flight sends finish).
pub async fn run(
    state: AppState,
    addr: SocketAddr,
    stopping: CancellationToken,
    done: CancellationToken,
) {
    if !under_service_manager() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    // On a fixed beat, so a slow report does not push the next one late.
    let (every, answer_within) = watchdog_beat(watchdog);
    let listening = format!("listening on {addr}");
    let doing = || {
        if stopping.is_cancelled() {
            "stopping".to_string()
        } else {
            listening.clone()
        }
    };
    let first = report(&state).await.one_line();
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("{listening}; {first}")),
    ]);
    let mut beat = tokio::time::interval(every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    let mut silent_since = None;
    let mut glance = tokio::time::interval(ENDPOINTS_GLANCE_EVERY);
    glance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut endpoints_seen = endpoint_states(&state);
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = beat.tick() => {}
            _ = glance.tick() => {
                let now = endpoint_states(&state);
                if now == endpoints_seen {
                    continue;
                }
                // A new state: the status says so now, without waiting for
                // the beat (the watchdog keeps its own rhythm).
                endpoints_seen = now;
                if let Ok(report) = tokio::time::timeout(answer_within, report(&state)).await {
                    notify(&[NotifyState::Status(&format!("{}; {}", doing(), report.one_line()))]);
                }
                continue;
            }
        }
        endpoints_seen = endpoint_states(&state);
        match tokio::time::timeout(answer_within, report(&state)).await {
            Ok(report) => {
                silent_since = None;
                let store_ok = report.store == "ok";
                // Asked again only when the report found the store failing.
                let writer_gone = !store_ok
                    && matches!(
                        state.store.ping().await,
                        Err(crate::store::StoreError::Closed)
                    );
                let status = format!("{}; {}", doing(), report.one_line());
                let mut states = vec![NotifyState::Status(&status)];
                if watchdog.is_some() && feeds_watchdog(store_ok, writer_gone) {
                    states.push(NotifyState::Watchdog);
                } else if writer_gone {
                    tracing::error!("the store's writer has stopped; the watchdog is not fed");
                }
                notify(&states);
            }
            Err(_) => {
                let since =
                    *silent_since.get_or_insert_with(|| std::time::Instant::now() - answer_within);
                let status = format!(
                    "{}; the store has not answered for {} s",
                    doing(),
                    since.elapsed().as_secs()
                );
                tracing::error!(
                    "the store did not answer within {} ms; the watchdog is not fed",
                    answer_within.as_millis()
                );
                notify(&[NotifyState::Status(&status)]);
            }
        }
    }
}

/// Each endpoint's state and whether it can send, which is what the
/// status line says of it.
fn endpoint_states(state: &AppState) -> Vec<(phonerelay_channel::HealthState, bool)> {
    state
        .endpoints
        .iter()
        .map(|(_, endpoint)| (endpoint.channel.health().state, endpoint.channel.can_send()))
        .collect()
}

/// The signal came: the daemon is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
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
