//! The outbox's hot and periodic statements must reach the partial indexes
//! of migrations 5 and 7, and the status counts must read index ranges. SQLite uses a partial index only when the query repeats
//! the index's WHERE term word for word, and a miss is silent: the query
//! still answers, by scanning every message ever kept. These tests read
//! each statement's plan.

use rusqlite::Connection;

use super::{outbound, relay, retention, routing, schema, sent_ids};

/// Column `column` of each row of `explain sql`, on a fresh database at
/// the newest schema.
fn explain(explain: &str, sql: &str, column: usize) -> Vec<String> {
    let mut conn = Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    let mut stmt = conn.prepare(&format!("{explain} {sql}")).unwrap();
    let count = stmt.parameter_count();
    let params: Vec<i64> = vec![0; count];
    stmt.query_map(rusqlite::params_from_iter(params), |row| row.get(column))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The steps of the query plan of `sql`.
fn plan(sql: &str) -> Vec<String> {
    explain("EXPLAIN QUERY PLAN", sql, 3)
}

/// The plan reads `outbound` through `index`, and every other read of it
/// is by rowid: nothing walks the whole table.
fn assert_reaches(sql: &str, index: &str) {
    let steps = plan(sql);
    let on_outbound: Vec<&String> = steps
        .iter()
        .filter(|s| s.contains(" outbound ") || s.ends_with(" outbound"))
        .collect();
    assert!(
        on_outbound
            .iter()
            .any(|s| s.contains(&format!("INDEX {index}"))),
        "no step uses {index}: {steps:?}"
    );
    for step in on_outbound {
        assert!(
            step.contains(&format!("INDEX {index}")) || step.contains("INTEGER PRIMARY KEY"),
            "`{step}` reads outbound another way; whole plan: {steps:?}"
        );
    }
}

#[test]
fn the_claim_and_the_queue_reads_use_the_live_index() {
    assert_reaches(outbound::CLAIM_DUE, "outbound_claim");
    assert_reaches(outbound::CLAIM_DUE_SKIPPING, "outbound_claim");
    assert_reaches(outbound::NEXT_DUE_SKIPPING, "outbound_claim");
    assert_reaches(outbound::EXPIRE_ENDPOINT, "outbound_claim");
    assert_reaches(outbound::EXPIRE_DUE, "outbound_claim");
    assert_reaches(outbound::ABANDONED, "outbound_claim");
    assert_reaches(outbound::NEXT_DUE, "outbound_claim");
    assert_reaches(outbound::QUEUED_FOR_LATER, "outbound_claim");
    // At each report for no recorded send, for each kept over a day.
    assert_reaches(outbound::OLDEST_LIVE, "outbound_claim");
}

/// Asked for each reply without a route yet, and again while it waits:
/// the endpoint's `sending` rows through the claim index, and those an
/// attempt may have put out through theirs, up to the reply's arrival;
/// never the endpoint's whole queue.
#[test]
fn the_unsettled_sends_are_read_through_two_small_partial_indexes() {
    let steps = plan(routing::SEND_UNSETTLED);
    let uses = |index: &str| steps.iter().any(|s| s.contains(index));
    assert!(
        uses("INDEX outbound_claim (channel=? AND phone_id=? AND status=?)"),
        "{steps:?}"
    );
    assert!(
        uses(
            "INDEX outbound_went_out (channel=? AND phone_id=? AND went_out_at>? AND went_out_at<?)"
        ),
        "{steps:?}"
    );
    assert_reaches(routing::SEND_UNSETTLED, "outbound_");
    // At each retention sweep: one end of the pending inbound's range.
    let steps = plan(routing::OLDEST_PENDING);
    assert!(
        steps
            .iter()
            .any(|s| s.contains("inbound_relay_state_committed (relay_state=?)")),
        "{steps:?}"
    );
    // Read when the store opens: the few rows of that index.
    let steps = plan(routing::LATEST_EVENT);
    assert!(
        steps.iter().any(|s| s.contains("INDEX outbound_went_out")),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|s| s.starts_with("SCAN outbound ")),
        "{steps:?}"
    );
}

#[test]
fn the_status_counts_and_retention_use_the_partial_indexes() {
    let steps = plan(outbound::STATS);
    assert!(
        steps.iter().any(|s| s.contains("INDEX outbound_claim")),
        "{steps:?}"
    );
    // The window of each ended status, not a walk of every ended message.
    assert!(
        steps
            .iter()
            .any(|s| s.contains("INDEX outbound_ended (status=? AND updated_at>?)")),
        "{steps:?}"
    );
    assert_reaches(outbound::STATS, "outbound_");
    assert_reaches(retention::PRUNE_ENDED, "outbound_ended");
    // A range of one status up to the cut-off, not a walk of them all.
    assert!(
        plan(retention::PRUNE_ENDED)
            .iter()
            .any(|s| s.contains("outbound_ended (status=? AND updated_at<?)")),
        "{:?}",
        plan(retention::PRUNE_ENDED)
    );
}

/// A state at a time, a range of its rows up to the cut-off through the
/// commit-time index: neither a walk of the state's rows that are not due
/// nor a sort of every old inbound row for each batch.
#[test]
fn the_inbound_prune_reads_a_range_of_the_commit_time_index() {
    let steps = plan(retention::PRUNE_INBOUND);
    let by_age = |s: &String| {
        s.contains(
            "COVERING INDEX inbound_relay_state_committed (relay_state=? AND committed_at<?)",
        )
    };
    assert!(steps.iter().any(by_age), "{steps:?}");
    let scans = |s: &String| s.starts_with("SCAN inbound");
    assert!(!steps.iter().any(scans), "{steps:?}");
    let sorts = |s: &String| s.contains("TEMP B-TREE");
    assert!(!steps.iter().any(sorts), "{steps:?}");
}

/// A message accepted before migration 9 is found by its id through the
/// partial index of those ids, not by walking the table; the index's term
/// is the seq limit that `message_id` draws.
#[test]
fn a_message_from_before_migration_9_is_found_through_its_id_index() {
    assert_reaches(outbound::LEGACY_ID, "outbound_id_before_v9");
    let limit = crate::store::message_id::LEGACY_SEQ_LIMIT.to_string();
    assert!(
        outbound::LEGACY_ID.contains(&limit),
        "{}",
        outbound::LEGACY_ID
    );
    assert!(schema::MIGRATIONS[8].contains(&limit));
}

/// How many temporary B-trees the bytecode of `sql` opens.
fn temporary_btrees(sql: &str) -> usize {
    explain("EXPLAIN", sql, 1)
        .iter()
        .filter(|op| *op == "OpenEphemeral")
        .count()
}

/// Every accept, claim and status change evaluates the partial indexes'
/// WHERE terms; an IN list of more than two constants there made SQLite
/// build a temporary B-tree on each run, on the writer thread (migration
/// 7). The status change's read and event build none either (RETURNING
/// would buffer its rows in one), nor do the claim's reads and its update
/// by rowid (one `UPDATE … IN (…) RETURNING` built four).
#[test]
fn the_accept_the_claim_and_the_status_change_build_no_temporary_btree() {
    for sql in [
        outbound::ACCEPT,
        outbound::CURRENT,
        outbound::EVENT,
        outbound::SET_STATUS,
        outbound::CLAIM_DUE,
        outbound::CLAIM_ONE,
    ] {
        assert_eq!(temporary_btrees(sql), 0, "{sql}");
    }
}

#[test]
fn the_relay_inbound_counts_read_a_range_of_the_state_index() {
    let steps = plan(relay::COUNTS);
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("SEARCH inbound USING COVERING INDEX inbound_relay_state")),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|s| s.starts_with("SCAN inbound")),
        "{steps:?}"
    );
}

/// An SMS adapter asks after a restart which ids of a family are taken:
/// a range of the parts table's key, not a walk of every part ever sent.
#[test]
fn the_sent_ids_of_a_family_are_a_range_of_the_parts_key() {
    let steps = plan(sent_ids::FAMILY);
    assert!(
        steps.iter().any(|s| s.starts_with(
            "SEARCH outbound_parts USING PRIMARY KEY (channel=? AND phone_id=? AND external_id>? AND external_id<?)"
        )),
        "{steps:?}"
    );
    assert!(!steps.iter().any(|s| s.starts_with("SCAN")), "{steps:?}");
}
