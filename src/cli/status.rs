use clap::Args;
use reqwest::Method;

use super::client::LocalClient;
use crate::api::human::{age, storage_summary};
use crate::api::system::{StatusReport, count_or_unknown, media_refused_note};
use crate::exit::ExitError;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the raw JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub wait: super::DaemonWait,
}

pub async fn run(client: &LocalClient, args: &StatusArgs) -> Result<(), ExitError> {
    let report: StatusReport = client
        .call(Method::GET, "/api/v1/status", None::<&()>)
        .await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        out!("{}", render(&report));
    }
    if report.status == "ready" {
        Ok(())
    } else {
        Err(ExitError::Runtime(not_ready(&report, args.json)))
    }
}

/// Why the daemon is not ready, pointing where the output says more: the
/// store when it is the cause (or one of them), and the endpoints when
/// one is down. With `--json` no table was printed: point into the JSON.
fn not_ready(report: &StatusReport, json: bool) -> String {
    let store = (report.store != "ok").then(|| format!("the store is {}", report.store));
    if !json {
        let cause = store.map_or(String::new(), |store| format!("{store}; "));
        return format!("not ready: {cause}see the table above");
    }
    let endpoint_down = report.endpoints.iter().any(|e| e.state == "down");
    match (store, endpoint_down) {
        (Some(store), false) => format!("not ready: {store}; see \"store\" in the JSON above"),
        (Some(store), true) => {
            format!("not ready: {store}; see \"store\" and \"endpoints\" in the JSON above")
        }
        (None, _) => "not ready: see \"endpoints\" in the JSON above".into(),
    }
}

/// A count, or `?` where the store could not count.
fn count(n: Option<u64>) -> String {
    n.map_or("?".into(), |n| n.to_string())
}

/// The at-a-glance table: one line per endpoint.
/// The status as `phonerelay status` prints it. Much of it is others'
/// words (a modem's answer, a remote's refusal, the relay's error): no
/// control character of theirs reaches the terminal.
pub fn render(report: &StatusReport) -> String {
    super::terminal::without_controls(&render_raw(report))
}

fn render_raw(report: &StatusReport) -> String {
    let mut out = format!(
        "phonerelay {}  {}  store: {}",
        report.version, report.status, report.store
    );
    if let Some(storage) = &report.storage {
        out.push_str(&format!(" ({})", storage_summary(storage)));
    }
    if let Some(reason) = report.media_refused {
        out.push_str(&format!("\n{}", media_refused_note(reason)));
    }
    out.push_str("\n\n");
    let header = [
        "CHANNEL",
        "PHONE_ID",
        "STATE",
        "QUEUED",
        "OLDEST",
        "SENDING",
        "SENT/1h",
        "FAILED/1h",
        "DETAIL",
    ];
    let mut rows: Vec<[String; 9]> = vec![header.map(String::from)];
    for e in &report.endpoints {
        // Each of others' words made one line: a line end in a modem's
        // answer or a relay's error would forge a row of this table.
        let summary = super::terminal::one_line(&e.summary);
        let mut detail = match (e.can_send, &e.paused) {
            (false, _) => format!("queue held: {summary}"),
            (true, Some(p)) => format!(
                "paused {} ({}: {}): {summary}",
                age(p.seconds_left),
                super::terminal::one_line(&p.code),
                super::terminal::one_line(&p.message),
            ),
            (true, None) => summary,
        };
        if let Some(last) = &e.last_failure {
            // Before the health's words: why nothing goes out, while the
            // endpoint itself reads up.
            detail = format!(
                "{} attempts failed in the last hour, the last {} ago ({}: {}): {detail}",
                e.failed_attempts_last_hour,
                age(last.seconds_ago),
                super::terminal::one_line(&last.code),
                super::terminal::one_line(&last.message)
            );
        }
        if e.outcomes_unrecorded > 0 {
            // First: it outweighs the rest (see the journal for the ids).
            detail = format!(
                "{} send outcomes not recorded (see the journal): {detail}",
                e.outcomes_unrecorded
            );
        }
        if e.unreadable_inbound > 0 {
            detail.push_str(&format!(
                "  {} unreadable inbound kept (see `phonerelay inbound unreadable`)",
                e.unreadable_inbound
            ));
        }
        for (k, v) in &e.details {
            detail.push_str(&format!("  {k}={}", super::terminal::one_line(v)));
        }
        rows.push([
            e.channel.clone(),
            e.phone_id.clone(),
            e.state.clone(),
            count(e.queued),
            e.oldest_queued_seconds.map_or("-".into(), age),
            count(e.sending),
            count(e.sent_last_hour),
            count(e.failed_last_hour),
            detail,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if report.endpoints.is_empty() {
        out.push_str("(no endpoints configured)\n");
    }
    if let Some(relay) = &report.relay {
        // How long the oldest has waited: a count alone reads the same
        // for a reply held a minute and one held for days.
        let oldest = relay
            .inbound_oldest_seconds
            .map(|seconds| format!(" (oldest {})", age(seconds)))
            .unwrap_or_default();
        out.push_str(&format!(
            "\nrelay {} ({}, phone_id {})  last reached: {}  inbound pending: {}{oldest}  dead letters: {}\n",
            relay.url,
            relay.mode,
            relay.phone_id,
            relay.last_reached.as_deref().unwrap_or("never"),
            count_or_unknown(relay.inbound_pending),
            count_or_unknown(relay.inbound_dead),
        ));
        if relay.state != crate::api::relay::LINK_RUNNING {
            // Before the last error: that one may be an earlier link's.
            let why = relay
                .reason
                .as_deref()
                .map_or("no reason given".into(), super::terminal::one_line);
            out.push_str(&format!(
                "relay link {}: {why}\n",
                relay.state.replace('_', " ")
            ));
        }
        if let Some(error) = &relay.last_error {
            out.push_str(&format!(
                "relay last error: {}\n",
                super::terminal::one_line(error)
            ));
        }
        if relay.inbound_dead.is_some_and(|dead| dead > 0) {
            out.push_str(
                "see `phonerelay inbound dead`; retry with `phonerelay inbound retry ID`\n",
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::system::{EndpointPause, EndpointStatus};

    fn report(can_send: bool) -> StatusReport {
        StatusReport {
            status: "ready".into(),
            store: "ok".into(),
            version: "0.1.0".into(),
            endpoints: vec![EndpointStatus {
                channel: "sms".into(),
                phone_id: "m1".into(),
                state: "degraded".into(),
                summary: "not registered on the network".into(),
                details: Default::default(),
                can_send,
                paused: None,
                queued: Some(3),
                oldest_queued_seconds: Some(90),
                sending: Some(0),
                sent_last_hour: Some(0),
                failed_last_hour: Some(0),
                failed_attempts_last_hour: 0,
                last_failure: None,
                outcomes_unrecorded: 0,
                unreadable_inbound: 0,
            }],
            relay: None,
            storage: None,
            media_refused: None,
        }
    }

    /// A modem's words in the status (its summary, a detail) carry no
    /// control character to the terminal: an escape sequence in them
    /// would clear the screen or write over a line.
    #[test]
    fn others_words_reach_the_terminal_without_control_characters() {
        let mut steered = report(true);
        steered.endpoints[0].summary = "up\u{1b}[2J\u{1b}]0;owned\u{7}".into();
        steered.endpoints[0]
            .details
            .insert("last_error".into(), "+CMS ERROR\r\u{1b}[1A".into());
        let table = render(&steered);
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(table.contains("up [2J ]0;owned"), "{table:?}");
    }

    /// A line end in others' words (a modem's summary, a relay's error)
    /// forges no line of the table: each stays on its own row.
    #[test]
    fn others_words_forge_no_line() {
        let mut forged = report(true);
        forged.endpoints[0].summary = "up\nsms  fake-1  up".into();
        forged.endpoints[0]
            .details
            .insert("last_error".into(), "x\n\nrelay link running".into());
        forged.endpoints[0].paused = Some(EndpointPause {
            code: "rate\nlimited".into(),
            message: "wait\nsms  fake-2  up".into(),
            seconds_left: 5,
            until: "2026-11-29T12:00:00Z".into(),
        });
        forged.relay = Some(
            serde_json::from_value(serde_json::json!({
                "url": "https://relay.example",
                "phone_id": "m1",
                "mode": "push",
                "last_reached": null,
                "last_error": "refused\nrelay link running\nsms  fake-3  up",
                "key_rejected": false,
                "state": "not_running",
                "reason": "no key\nrelay link running",
            }))
            .unwrap(),
        );
        let table = render(&forged);
        assert_eq!(
            table.lines().filter(|l| l.starts_with("sms")).count(),
            1,
            "{table}"
        );
        assert!(
            !table.lines().any(|l| l.starts_with("relay link running")),
            "{table}"
        );
    }

    /// An endpoint whose queue is held says so where the eye goes: the
    /// table's DETAIL and the service manager's one-line STATUS.
    #[test]
    fn a_held_queue_is_named_in_the_table_and_the_status_line() {
        let held = report(false);
        assert!(
            render(&held).contains("queue held: not registered on the network"),
            "{}",
            render(&held)
        );
        assert!(
            held.one_line()
                .contains("sms/m1 degraded (queue held): 3 queued"),
            "{}",
            held.one_line()
        );
        let sending = report(true);
        assert!(!render(&sending).contains("held"));
        assert!(!sending.one_line().contains("held"));
        assert!(!render(&sending).contains("paused"));
        assert!(!sending.one_line().contains("paused"));
    }

    /// Send outcomes the store would not take are named in the table and
    /// the status line; the JSON leaves the count out while there is none.
    #[test]
    fn unrecorded_send_outcomes_are_named_in_the_table_and_the_status_line() {
        let mut stuck = report(true);
        stuck.endpoints[0].outcomes_unrecorded = 2;
        let table = render(&stuck);
        assert!(
            table.contains("2 send outcomes not recorded (see the journal)"),
            "{table}"
        );
        assert!(
            stuck.one_line().contains("2 send outcomes not recorded"),
            "{}",
            stuck.one_line()
        );
        let clear = report(true);
        assert!(!render(&clear).contains("not recorded"));
        assert!(!clear.one_line().contains("not recorded"));
        let json = serde_json::to_value(&clear).unwrap();
        assert!(
            json["endpoints"][0].get("outcomes_unrecorded").is_none(),
            "{json}"
        );
    }

    /// Attempts that failed in the last hour are said with the last one's
    /// reason, though no message has failed for good yet (it retries);
    /// the JSON leaves them out while there are none.
    #[test]
    fn failed_attempts_are_named_in_the_table_and_the_status_line() {
        let mut failing = report(true);
        failing.endpoints[0].failed_attempts_last_hour = 7;
        failing.endpoints[0].last_failure = Some(crate::api::system::LastFailureView {
            code: "cms_500".into(),
            message: "unknown\nerror".into(),
            at: "2026-11-29T06:00:00Z".into(),
            seconds_ago: 125,
        });
        let table = render(&failing);
        assert!(
            table.contains(
                "7 attempts failed in the last hour, the last 2m ago (cms_500: unknown error)"
            ),
            "{table}"
        );
        assert!(
            failing
                .one_line()
                .contains("0 failed in the last hour (7 failed attempts)"),
            "{}",
            failing.one_line()
        );
        let clear = report(true);
        assert!(!render(&clear).contains("attempts failed"));
        let json = serde_json::to_value(&clear).unwrap();
        assert!(
            json["endpoints"][0]
                .get("failed_attempts_last_hour")
                .is_none(),
            "{json}"
        );
    }

    /// Unreadable inbound items kept are counted in the table, with where
    /// to see them; the JSON leaves the count out while there is none.
    #[test]
    fn kept_unreadable_inbound_is_counted_in_the_table() {
        let mut kept = report(true);
        kept.endpoints[0].unreadable_inbound = 2;
        let table = render(&kept);
        assert!(
            table.contains("2 unreadable inbound kept (see `phonerelay inbound unreadable`)"),
            "{table}"
        );
        let clear = report(true);
        assert!(!render(&clear).contains("unreadable"));
        let json = serde_json::to_value(&clear).unwrap();
        assert!(
            json["endpoints"][0].get("unreadable_inbound").is_none(),
            "{json}"
        );
    }

    /// New received files refused for want of room are named in the
    /// table and the status line, with the key that says how much room.
    #[test]
    fn refused_received_files_are_named_in_the_table_and_the_status_line() {
        let mut full = report(true);
        full.media_refused = Some(crate::store::MediaRefusal::LowDisk);
        let note = "received files refused: the disk is at storage.media_min_free_bytes free";
        assert!(render(&full).contains(note), "{}", render(&full));
        assert!(full.one_line().contains(note), "{}", full.one_line());
        full.media_refused = Some(crate::store::MediaRefusal::TotalCap);
        assert!(
            full.one_line().contains("storage.max_media_total_bytes"),
            "{}",
            full.one_line()
        );
        let clear = report(true);
        assert!(!render(&clear).contains("refused"));
        assert!(!clear.one_line().contains("refused"));
    }

    /// A relay named but without its link running says so, and why.
    #[test]
    fn a_relay_link_that_does_not_run_is_named_with_its_reason() {
        let mut named = report(true);
        named.relay = Some(crate::api::relay::RelayLinkView {
            url: "https://relay.example".into(),
            phone_id: "m1".into(),
            mode: "push".into(),
            last_reached: None,
            last_error: None,
            key_rejected: false,
            inbound_pending: Some(2),
            inbound_dead: Some(0),
            inbound_oldest_seconds: Some(3 * 3600 + 5),
            state: crate::api::relay::LINK_NOT_RUNNING.into(),
            reason: Some("relay key file relay.key is missing".into()),
        });
        let table = render(&named);
        assert!(
            table.contains("relay link not running: relay key file relay.key is missing"),
            "{table}"
        );
        assert!(
            table.contains("inbound pending: 2 (oldest 3h)  dead letters: 0"),
            "{table}"
        );
        named.relay.as_mut().unwrap().state = crate::api::relay::LINK_RUNNING.into();
        assert!(!render(&named).contains("relay link"), "{}", render(&named));

        // Counts the store could not read are unknown in both, not 0.
        let relay = named.relay.as_mut().unwrap();
        relay.state = crate::api::relay::LINK_UNKNOWN.into();
        (relay.inbound_pending, relay.inbound_dead) = (None, None);
        relay.inbound_oldest_seconds = None;
        let table = render(&named);
        assert!(
            table.contains("inbound pending: ?  dead letters: ?"),
            "{table}"
        );
        assert!(
            named
                .one_line()
                .contains("relay state unknown: ? pending, ? dead"),
            "{}",
            named.one_line()
        );
    }

    /// So does one that pauses after a refusal, with how long and why.
    #[test]
    fn a_paused_endpoint_says_how_long_and_why() {
        let mut paused = report(true);
        paused.endpoints[0].paused = Some(EndpointPause {
            until: "2026-11-27T05:00:00.000Z".into(),
            seconds_left: 125,
            code: "cms_42".into(),
            message: "Congestion".into(),
        });
        let table = render(&paused);
        assert!(
            table.contains("paused 2m (cms_42: Congestion): not registered"),
            "{table}"
        );
        assert!(
            paused
                .one_line()
                .contains("sms/m1 degraded (paused): 3 queued"),
            "{}",
            paused.one_line()
        );
    }

    /// A report not ready because of its store names the store, in the
    /// table's words and the JSON's; one not ready because of an endpoint
    /// points at the endpoints.
    #[test]
    fn not_ready_names_the_store_when_it_is_the_cause() {
        let mut store_out = report(true);
        store_out.store = "unavailable".into();
        assert_eq!(
            not_ready(&store_out, true),
            "not ready: the store is unavailable; see \"store\" in the JSON above"
        );
        assert_eq!(
            not_ready(&store_out, false),
            "not ready: the store is unavailable; see the table above"
        );
        store_out.endpoints[0].state = "down".into();
        assert!(
            not_ready(&store_out, true).contains("\"store\" and \"endpoints\""),
            "{}",
            not_ready(&store_out, true)
        );
        let mut endpoint_down = report(true);
        endpoint_down.endpoints[0].state = "down".into();
        assert_eq!(
            not_ready(&endpoint_down, true),
            "not ready: see \"endpoints\" in the JSON above"
        );
    }

    /// Counts the store could not read show as unknown, never as 0.
    #[test]
    fn counts_the_store_could_not_read_are_shown_unknown() {
        let mut unread = report(true);
        let e = &mut unread.endpoints[0];
        (e.queued, e.sending, e.sent_last_hour, e.failed_last_hour) = (None, None, None, None);
        e.oldest_queued_seconds = None;
        let table = render(&unread);
        let row = table.lines().find(|l| l.starts_with("sms")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[3..8], ["?", "-", "?", "?", "?"], "{table}");
        assert!(
            unread
                .one_line()
                .contains("sms/m1 degraded: queue unreadable"),
            "{}",
            unread.one_line()
        );
        assert!(!unread.one_line().contains("0 queued"));
    }
}
