//! Pull mode, for bridges behind NAT: long-poll the relay for sends of
//! this phone_id, commit each through the API's own validation, then
//! acknowledge. Commit before ack: a job whose ack is lost is delivered
//! again and recognised by its `relay_message_id`, so it is sent once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::poll_size::PollSize;
use super::pull_ack::{Acked, acknowledge};
use super::unknown_phone;
use super::{Deps, RelayError};
use crate::api::dto::SendRequest;
use crate::api::error::{ApiError, STORE_REFUSED};
use crate::api::{commit_send, parse_json_body};
use crate::logging::Throttle;

/// Passes in a row a job the store cannot commit holds back its
/// recipient's later jobs; after that it is taken to be refused for good.
/// About eight minutes with the default backoff when nothing else comes,
/// a second or two in the tests. A job the store refuses outright
/// (`store_refused`, a constraint or a bug) is then rejected to the relay,
/// once the store has committed other jobs since its first refusal.
const HOLD_BACK_PASSES: u32 = 10;

/// How often each cause of a job left out of the ack is logged again
/// while it lasts: the relay hands such a job back with every poll.
const LEFT_OUT_LOG_EVERY: Duration = Duration::from_secs(60);
/// How long jobs are left with a relay `pair` moved the bridge away from
/// before it is polled again (the daemon ends the link meanwhile).
const MOVED_AWAY_WAIT_MS: u64 = 1000;

/// One acknowledgement in the ack body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ack {
    pub relay_message_id: String,
    /// `accepted` or `rejected`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The job had been accepted before (a redelivery).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AckError>,
}

/// Why a polled job is left out of the ack (the relay will hand it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTaken {
    /// No string `relay_message_id`: an ack names jobs by it, so there is
    /// no way to accept or reject this one. It comes back with every poll.
    NoRelayId,
    /// The store could not commit it; it may once the store recovers.
    Store {
        relay_message_id: String,
        code: &'static str,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AckError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub async fn run(deps: Deps) {
    if !unknown_phone::is_known(&deps) {
        // Every job polled would be validated against the endpoints and
        // rejected to the relay as `unknown_phone_id`, for good: the
        // mistake is the link's, not the jobs', so they stay with the
        // relay until it is put right.
        unknown_phone::wait_for_a_known_phone(&deps, "sends stay with the relay, not polled").await;
        tracing::info!("relay pull loop stopped");
        return;
    }
    // The move to this link's relay, if it is one, recorded first: the
    // jobs taken from now on are its messages, and until then the record
    // names the old relay (this link would take itself for one `pair`
    // moved away from).
    if deps
        .relay_messages_after(MOVED_AWAY_WAIT_MS)
        .await
        .is_none()
    {
        tracing::info!("relay pull loop stopped");
        return;
    }
    tracing::info!("relay pull loop started");
    let config = &deps.settings.config;
    let wait = config.poll_timeout_seconds;
    // The request may take the whole wait plus the usual request time.
    let timeout = Duration::from_secs(wait + config.request_timeout_seconds);
    let mut failures = 0u32;
    let mut refused_acks = 0u32;
    let mut refused_entries_log = Throttle::new(LEFT_OUT_LOG_EVERY);
    let mut left_out = LeftOut::default();
    let mut repeats = Repeats::default();
    // Jobs the store could not commit: in how many passes in a row, and
    // `committed` when they were first refused.
    let mut failing: HashMap<String, Failing> = HashMap::new();
    // New jobs committed so far, counted as each commits: one refused
    // while this grows is refused for its own sake, not the store's.
    let mut committed: u64 = 0;
    let mut asked = PollSize::new(config.poll_max_jobs);
    // Whether `pair` moved the bridge to another relay, said once.
    let mut moved_away = false;
    loop {
        let polled_at = tokio::time::Instant::now();
        let body = json!({
            "phone_id": deps.settings.phone_id,
            "wait_seconds": wait,
            "max": asked.jobs(),
        });
        let polled = tokio::select! {
            _ = deps.shutdown.cancelled() => break,
            polled = deps.client.poll(&config.paths.poll, &body, timeout) => polled,
        };
        let jobs = match polled.and_then(|answer| jobs_of(&config.paths.poll, answer)) {
            Ok(jobs) => {
                failures = 0;
                deps.link.reached().await;
                asked.answered(jobs.len());
                jobs
            }
            // The relay answered; the jobs come in smaller answers.
            Err(RelayError::TooLarge { limit, .. }) if asked.halve() => {
                tracing::warn!(
                    limit,
                    jobs = asked.jobs(),
                    "the relay's answer to a poll is larger than the bridge reads; asking for fewer jobs"
                );
                continue;
            }
            Err(e) => {
                if let RelayError::TooLarge { limit, .. } = &e {
                    tracing::error!(
                        limit,
                        "the relay's oldest job alone is larger than the bridge reads; it stays with the relay, and so do the jobs behind it"
                    );
                }
                deps.link.failed(&e).await;
                failures = failures.saturating_add(1);
                if !deps.sleep_ms(deps.backoff_ms(failures, &e)).await {
                    break;
                }
                continue;
            }
        };
        // A relay that answers at once with nothing new (no jobs, instead
        // of holding the poll open; or only jobs already acknowledged) would
        // otherwise be asked again in a tight loop.
        let floor_ms = || {
            let floor = Duration::from_millis(config.retry_initial_ms);
            floor.saturating_sub(polled_at.elapsed()).as_millis() as u64
        };
        if !jobs.is_empty() && !super::reported_relay::still_this_links(&deps).await {
            // `pair` moved the bridge to another relay while this link
            // runs: the messages accepted from now on are the new relay's
            // (their status events go to it), so the old relay's jobs
            // stay with it, not taken nor acknowledged. The daemon ends
            // this link once it reads the new pairing.
            if !moved_away {
                tracing::info!("paired with another relay: this link takes no more jobs");
                moved_away = true;
            }
            if !deps.sleep_ms(MOVED_AWAY_WAIT_MS).await {
                break;
            }
            continue;
        }
        if jobs.is_empty() {
            let left = floor_ms();
            if left > 0 && !deps.sleep_ms(left).await {
                break;
            }
            continue;
        }
        let mut acks = Vec::with_capacity(jobs.len());
        left_out.new_pass();
        // The relay hands jobs out oldest first, and the outbox sends a
        // recipient's messages in commit order: a job taken after one to
        // the same recipient that the store could not commit would
        // overtake it. Those are left out too, and come back behind it;
        // other recipients' jobs are taken. A job the store still refuses
        // after `HOLD_BACK_PASSES` passes is taken to be refused for good
        // (a constraint, a bug), and no longer holds its recipient back:
        // otherwise its jobs, handed out first every time, could fill
        // every poll and hold every send back.
        let mut held_recipients = HashSet::new();
        let mut failing_now = HashMap::new();
        for job in jobs {
            let to = job["to"].as_str().map(|to| to.trim().to_string());
            if to.as_ref().is_some_and(|to| held_recipients.contains(to)) {
                continue;
            }
            match take(&deps, job).await {
                // Counted at once: a job refused later in this pass must
                // not see it as committed since its refusal.
                Ok(ack) => {
                    committed += u64::from(commits_new(&ack));
                    acks.push(ack);
                }
                Err(NotTaken::Store {
                    relay_message_id,
                    code,
                }) => {
                    let now = Failing::after(failing.get(&relay_message_id), code, committed);
                    if now.refused_for_good(committed) {
                        tracing::error!(%relay_message_id, code, passes = now.passes,
                            "the store refuses a polled job while it commits others; rejecting it to the relay");
                        acks.push(store_refused_ack(relay_message_id));
                        continue;
                    }
                    let passes = now.passes;
                    failing_now.insert(relay_message_id.clone(), now);
                    left_out.note(NotTaken::Store {
                        relay_message_id,
                        code,
                    });
                    if passes > HOLD_BACK_PASSES {
                        continue;
                    }
                    match to {
                        Some(to) => {
                            held_recipients.insert(to);
                        }
                        // No recipient to hold back: hold back the rest.
                        None => break,
                    }
                }
                Err(not_taken) => left_out.note(not_taken),
            }
        }
        failing = failing_now;
        let nothing_new = acks
            .iter()
            .all(|ack| ack.duplicate || ack.result == "rejected");
        if !acks.is_empty() {
            let refusal = match acknowledge(&deps, &acks, &mut refused_entries_log).await {
                Acked::Stopped => break,
                Acked::Taken => {
                    refused_acks = 0;
                    None
                }
                Acked::Refused(e) => {
                    refused_acks = refused_acks.saturating_add(1);
                    Some(e)
                }
                // As for a job the store refused: a pass that took new
                // jobs waits only the first step, so the entries refused
                // do not hold the others up for minutes.
                Acked::Partly(e) => {
                    refused_acks = if nothing_new {
                        refused_acks.saturating_add(1)
                    } else {
                        1
                    };
                    Some(e)
                }
            };
            // The relay hands the jobs whose ack it refused out again, and
            // they are taken as the repeats they are: back off rather than
            // poll, find them and be refused again at once.
            if let Some(e) = refusal
                && !deps.sleep_ms(deps.backoff_ms(refused_acks, &e)).await
            {
                break;
            }
        }
        repeats.note(&acks);
        let pause_ms = left_out.pause_ms(&deps, !nothing_new).unwrap_or(0);
        let pause_ms = if nothing_new {
            pause_ms.max(floor_ms())
        } else {
            pause_ms
        };
        if pause_ms > 0 && !deps.sleep_ms(pause_ms).await {
            break;
        }
    }
    tracing::info!("relay pull loop stopped");
}

/// A polled job the store could not commit, pass after pass.
#[derive(Debug, Clone, Copy)]
struct Failing {
    /// Passes in a row it was refused in.
    passes: u32,
    /// The code of those refusals: a refusal of another kind starts the
    /// count again, so a job a full disk held back for ten passes is not
    /// rejected at its first outright refusal.
    code: &'static str,
    /// New jobs committed before the first of those refusals.
    committed_before: u64,
}

impl Failing {
    /// The job's count after one more pass refused it with `code`, given
    /// the count before (`seen`) and the jobs `committed` so far.
    fn after(seen: Option<&Failing>, code: &'static str, committed: u64) -> Failing {
        match seen {
            Some(seen) if seen.code == code => Failing {
                passes: seen.passes + 1,
                ..*seen
            },
            _ => Failing {
                passes: 1,
                code,
                committed_before: committed,
            },
        }
    }

    /// Refused for good, to be rejected to the relay: the store refused it
    /// outright (not "out for a while") for more than `HOLD_BACK_PASSES`
    /// passes while committing other jobs (`committed` so far), so the
    /// trouble is this job's, and left out it would come back with every
    /// poll for ever. A store that refuses every job is the store's
    /// trouble: its jobs stay with the relay until it is mended.
    fn refused_for_good(&self, committed: u64) -> bool {
        self.code == STORE_REFUSED
            && self.passes > HOLD_BACK_PASSES
            && committed > self.committed_before
    }
}

/// Whether `ack` is of a job this pass committed (accepted, not a repeat).
fn commits_new(ack: &Ack) -> bool {
    ack.result == "accepted" && !ack.duplicate
}

/// The rejection of a job refused for good, with the code the API answers.
fn store_refused_ack(relay_message_id: String) -> Ack {
    let refused = ApiError::store_refused();
    rejection(relay_message_id, refused.code, refused.message, None)
}

/// The ack that rejects a job, with what the bridge API would have answered.
fn rejection(relay_message_id: String, code: &str, message: String, field: Option<String>) -> Ack {
    Ack {
        relay_message_id,
        result: "rejected",
        message_id: None,
        duplicate: false,
        error: Some(AckError {
            code: code.to_string(),
            message,
            field,
        }),
    }
}

/// The jobs of a poll's answer. An answer without a `jobs` list (a 2xx
/// with an empty or non-JSON body) is a failed poll, not "no jobs": that
/// would poll again at once.
fn jobs_of(path: &str, mut answer: Value) -> Result<Vec<Value>, RelayError> {
    match answer.get_mut("jobs").map(Value::take) {
        Some(Value::Array(jobs)) => Ok(jobs),
        _ => Err(RelayError::BadAnswer {
            path: path.to_string(),
            reason: "no \"jobs\" list in the answer to a poll".into(),
        }),
    }
}

/// Passes that took only jobs the bridge already had: a lost ack explains
/// one, but a relay that goes on handing back what it was told was taken
/// (a wrong `relay.paths.ack` behind a proxy that answers 200, a relay
/// bug) is worth a line in the log, once a minute.
struct Repeats {
    in_a_row: u32,
    log: Throttle,
}

impl Default for Repeats {
    fn default() -> Self {
        Self {
            in_a_row: 0,
            log: Throttle::new(LEFT_OUT_LOG_EVERY),
        }
    }
}

impl Repeats {
    /// Called with each pass's acks.
    fn note(&mut self, acks: &[Ack]) {
        if acks.is_empty() || !acks.iter().all(|ack| ack.duplicate) {
            self.in_a_row = 0;
            return;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.in_a_row < 2 {
            return;
        }
        if let Some(unlogged) = self.log.allow(Instant::now()) {
            tracing::warn!(
                jobs = acks.len(),
                passes_since_last_logged = unlogged,
                "the relay handed out again only jobs it had been told were taken; is relay.paths.ack right?"
            );
        }
    }
}

/// The jobs a pass left out of its ack: logged once a minute per cause,
/// and how long to wait before polling again.
struct LeftOut {
    no_relay_id: bool,
    store_trouble: bool,
    /// Passes in a row that the store could not commit a job of.
    store_failures: u32,
    no_relay_id_log: Throttle,
    store_log: Throttle,
}

impl Default for LeftOut {
    fn default() -> Self {
        Self {
            no_relay_id: false,
            store_trouble: false,
            store_failures: 0,
            no_relay_id_log: Throttle::new(LEFT_OUT_LOG_EVERY),
            store_log: Throttle::new(LEFT_OUT_LOG_EVERY),
        }
    }
}

impl LeftOut {
    fn new_pass(&mut self) {
        self.no_relay_id = false;
        self.store_trouble = false;
    }

    fn note(&mut self, not_taken: NotTaken) {
        match not_taken {
            NotTaken::NoRelayId => {
                self.no_relay_id = true;
                if let Some(unlogged) = self.no_relay_id_log.allow(Instant::now()) {
                    tracing::warn!(
                        jobs_since_last_logged = unlogged,
                        "the relay sent a job without a relay_message_id; it cannot be acknowledged, so the relay will send it again"
                    );
                }
            }
            NotTaken::Store {
                relay_message_id,
                code,
            } => {
                self.store_trouble = true;
                if let Some(unlogged) = self.store_log.allow(Instant::now()) {
                    tracing::error!(%relay_message_id, code, jobs_since_last_logged = unlogged,
                        "cannot commit a polled job; the relay will deliver it again");
                }
            }
        }
    }

    /// How long to wait before the next poll, if at all. The relay hands a
    /// job left out of the ack back at once, so polling again now would
    /// only spin. While the store fails, back off as after a failed poll.
    /// A job without an id comes back however long the wait: pause only
    /// the first step, so the jobs behind it are not held up for minutes.
    /// `took_new`: the pass committed a new job, so the store works and
    /// what it refused is that job's own trouble: the others' are not held
    /// up by a growing backoff, only paused as after a first failure.
    fn pause_ms(&mut self, deps: &Deps, took_new: bool) -> Option<u64> {
        if self.store_trouble {
            self.store_failures = if took_new {
                1
            } else {
                self.store_failures.saturating_add(1)
            };
            return Some(deps.retry_delay_ms(self.store_failures));
        }
        self.store_failures = 0;
        self.no_relay_id.then(|| deps.retry_delay_ms(1))
    }
}

/// Commit one job into its ack, or say why it cannot be acknowledged now
/// (logged by the caller).
pub async fn take(deps: &Deps, job: Value) -> Result<Ack, NotTaken> {
    let Some(relay_message_id) = job["relay_message_id"].as_str().map(str::to_string) else {
        return Err(NotTaken::NoRelayId);
    };
    let rejected = |code: &str, message: String, field: Option<String>| {
        rejection(relay_message_id.clone(), code, message, field)
    };
    let raw = serde_json::to_vec(&job).unwrap_or_default();
    let request: SendRequest = match parse_json_body(&raw) {
        Ok(request) => request,
        Err(e) => return Ok(rejected(e.code, e.message, e.field)),
    };
    if request.phone_id != deps.settings.phone_id {
        return Ok(rejected(
            "forbidden",
            format!(
                "this bridge is paired as phone_id {:?}",
                deps.settings.phone_id
            ),
            Some("phone_id".into()),
        ));
    }
    match commit_send(&deps.state, None, None, request, &raw, None).await {
        Ok(committed) => Ok(Ack {
            relay_message_id,
            result: "accepted",
            message_id: Some(committed.id),
            duplicate: committed.replayed,
            error: None,
        }),
        Err(e) if e.status.is_server_error() => Err(NotTaken::Store {
            relay_message_id,
            code: e.code,
        }),
        Err(e) => {
            tracing::info!(%relay_message_id, code = e.code, field = ?e.field, "polled job rejected: {}", e.message);
            Ok(rejected(e.code, e.message, e.field))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count after `codes`, one pass each, with a job committed by
    /// another pass between every two.
    fn after(codes: &[&'static str]) -> (Failing, u64) {
        let mut failing = None;
        let mut committed = 0;
        for code in codes {
            failing = Some(Failing::after(failing.as_ref(), code, committed));
            committed += 1;
        }
        (failing.expect("at least one pass"), committed)
    }

    #[test]
    fn a_job_refused_outright_past_the_passes_while_others_commit_is_refused_for_good() {
        let codes = vec![STORE_REFUSED; HOLD_BACK_PASSES as usize + 1];
        let (failing, committed) = after(&codes);
        assert!(failing.refused_for_good(committed));
        let (failing, committed) = after(&codes[1..]);
        assert!(!failing.refused_for_good(committed), "not past the passes");
    }

    /// Held back by a store out for a while (a full disk) for all the
    /// passes, then refused outright once: the count of outright refusals
    /// starts at that one.
    #[test]
    fn passes_of_another_refusal_do_not_count_towards_refused_for_good() {
        let mut codes = vec!["store_unavailable"; HOLD_BACK_PASSES as usize + 1];
        codes.push(STORE_REFUSED);
        let (failing, committed) = after(&codes);
        assert_eq!(failing.passes, 1);
        assert!(!failing.refused_for_good(committed));
    }

    #[test]
    fn a_job_refused_while_nothing_else_commits_is_not_refused_for_good() {
        let codes = vec![STORE_REFUSED; HOLD_BACK_PASSES as usize + 5];
        let (failing, _) = after(&codes);
        assert!(!failing.refused_for_good(failing.committed_before));
    }
}
