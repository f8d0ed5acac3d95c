//! Pull mode against the size limits of either side: acks a relay
//! refuses whole are sent again in halves, so every job gets acknowledged
//! but those refused alone; a poll answer larger than the bridge reads
//! has the next polls ask for fewer jobs. And a link `pair` moved away
//! from takes no more jobs.

mod common;
mod relay_support;

use std::time::Duration;

use common::TestChannel;
use phonerelay_channel::ChannelKind;
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY};
use serde_json::{Value, json};

/// Jobs `{prefix}-1`… `{prefix}-{n}` on the relay, each to a number of
/// its own.
fn add_jobs(relay: &EmulatedRelay, prefix: &str, n: usize) {
    relay.with(|s| {
        for i in 1..=n {
            s.jobs
                .push_back(json!({"relay_message_id": format!("{prefix}-{i}"),
                "phone_id": PHONE_ID, "channel": "wa",
                "to": format!("+1555123{i:04}"), "text": format!("{prefix} {i}")}));
        }
    });
}

/// A relay whose body limit is below the ack of one poll (413 for more
/// than five entries) holding twelve jobs: the ack goes in halves and
/// every job is committed once and acknowledged. (Refused whole, the same
/// twelve came back at every poll, their ack refused every time.)
#[tokio::test]
async fn an_ack_too_large_for_the_relay_goes_in_halves() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.ack_max_entries = Some(5));
    add_jobs(&relay, "big", 12);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    relay
        .wait_for("every job acknowledged", |s| s.jobs.is_empty())
        .await;
    wa.wait_sent(12).await;
    assert_eq!(wa.sent().len(), 12, "each sent once");
}

/// The relay refuses the ack of one job alone: the others of its ack are
/// acknowledged, and the one refused, handed out at every poll, is left
/// out with the backoff of a refused ack, not polled for in a tight loop.
#[tokio::test]
async fn an_entry_refused_alone_is_left_out_and_the_rest_acknowledged() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_ack_of = Some("one-3".into()));
    add_jobs(&relay, "one", 6);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    relay
        .wait_for("every job acknowledged but one-3", |s| {
            s.jobs.len() == 1 && s.jobs[0]["relay_message_id"] == "one-3"
        })
        .await;
    wa.wait_sent(6).await;
    relay.wait_for("a few passes", |s| s.polls >= 4).await;
    // Backing off 40 ms doubling to 250 ms: a handful of polls a second.
    let before = relay.with(|s| s.polls);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = relay.with(|s| s.polls) - before;
    assert!((1..=12).contains(&polls), "{polls} polls in a second");
    assert_eq!(wa.sent().len(), 6, "each sent once");
}

/// A relay that refuses every ack, whatever it holds, refuses acks, not
/// these jobs: after a few entries refused alone with none taken, the
/// rest of the ack is not split down to single entries (nineteen
/// requests for these ten jobs at every pass; nine with the stop).
#[tokio::test]
async fn a_relay_refusing_every_ack_is_not_asked_once_per_entry_at_every_pass() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_acks = Some(422));
    add_jobs(&relay, "all", 10);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    wa.wait_sent(10).await;
    relay.wait_for("three passes", |s| s.polls >= 3).await;
    let (acks, polls) = relay.with(|s| (s.acks.len(), s.polls));
    assert!(acks <= 9 * polls as usize, "{acks} acks in {polls} polls");
    assert_eq!(relay.with(|s| s.jobs.len()), 10, "none acknowledged");
    assert_eq!(wa.sent().len(), 10, "each sent once");
}

/// Six jobs of 6 MiB each: one answer with all of them is larger than the
/// bridge reads (32 MiB). The polls ask for fewer until the answers fit,
/// each job is answered (rejected with its code: far larger than a send
/// may be), and a small job behind them goes through once the ask is
/// whole again. (Taken for an empty answer, every poll failed and the same
/// jobs came back each time: nothing was ever taken again.)
#[tokio::test]
async fn a_poll_answer_larger_than_the_bridge_reads_has_it_ask_for_fewer_jobs() {
    let relay = EmulatedRelay::start().await;
    let huge = "x".repeat(6 << 20);
    relay.with(|s| {
        for i in 1..=6 {
            s.jobs
                .push_back(json!({"relay_message_id": format!("huge-{i}"),
                "phone_id": PHONE_ID, "channel": "wa",
                "to": format!("+1555123{i:04}"), "text": huge}));
        }
    });
    add_jobs(&relay, "small", 1);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    // Not `wait_for`, whose failure would print the 36 MiB of jobs.
    let all_acknowledged = async {
        while !relay.with(|s| s.jobs.is_empty()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let left = tokio::time::timeout(Duration::from_secs(60), all_acknowledged).await;
    assert!(
        left.is_ok(),
        "jobs left with the relay: {:?}",
        relay.with(|s| s
            .jobs
            .iter()
            .map(|j| j["relay_message_id"].clone())
            .collect::<Vec<_>>())
    );
    let entries: Vec<Value> = relay.with(|s| {
        s.acks
            .iter()
            .flat_map(|ack| ack["acks"].as_array().cloned().unwrap_or_default())
            .collect()
    });
    for i in 1..=6 {
        let id = format!("huge-{i}");
        let entry = entries
            .iter()
            .find(|e| e["relay_message_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not acknowledged: {entries:?}"));
        assert_eq!(entry["result"], "rejected", "{entry}");
        assert!(entry["error"]["code"].is_string(), "{entry}");
    }
    let small = entries
        .iter()
        .find(|e| e["relay_message_id"] == "small-1")
        .expect("the small job acknowledged");
    assert_eq!(small["result"], "accepted", "{small}");
    wa.wait_sent(1).await;
}

/// `pair` moved the bridge to another relay while the link to this one
/// runs: the messages accepted from then on are the new relay's (their
/// status events go to it), so this relay's jobs stay with it, neither
/// taken nor acknowledged, until the daemon ends the link (here, until the
/// record names this relay again, when they are taken).
#[tokio::test]
async fn a_link_pair_moved_away_from_takes_no_more_jobs() {
    let relay = EmulatedRelay::start().await;
    add_jobs(&relay, "before", 1);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&relay.bridge_config("pull", None), RELAY_KEY, &wa).await;
    relay
        .wait_for("the first job taken", |s| s.jobs.is_empty())
        .await;
    wa.wait_sent(1).await;

    relay_support::record_relay(&*bridge.store(), "https://another-relay.example").await;
    add_jobs(&relay, "after", 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        relay.with(|s| s.jobs.len()),
        2,
        "taken from a relay moved away from"
    );
    assert_eq!(wa.sent().len(), 1);

    relay_support::record_relay(&*bridge.store(), &relay.url()).await;
    relay
        .wait_for("the jobs that waited", |s| s.jobs.is_empty())
        .await;
    wa.wait_sent(3).await;
}
