//! Schema migrations, applied in order at start-up; `PRAGMA user_version`
//! records how many have run. Never edit a released migration: add one.

use crate::store::{StoreError, StoreResult};
use rusqlite::Connection;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: outbox, inbound, keys, cursors.
    r#"
    CREATE TABLE outbound (
        seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
        id                    TEXT NOT NULL UNIQUE,
        api_key_id            TEXT,
        idempotency_key       TEXT,
        request_hash          TEXT NOT NULL,
        phone_id              TEXT NOT NULL,
        channel               TEXT NOT NULL,
        recipient             TEXT NOT NULL,
        body                  TEXT NOT NULL,
        subject               TEXT,
        source                TEXT,
        attachments           TEXT NOT NULL DEFAULT '[]',
        reply_to              TEXT,
        reply_to_external_id  TEXT,
        priority              INTEGER NOT NULL,
        status                TEXT NOT NULL,
        attempts              INTEGER NOT NULL DEFAULT 0,
        created_at            INTEGER NOT NULL,
        updated_at            INTEGER NOT NULL,
        expires_at            INTEGER NOT NULL,
        next_attempt_at       INTEGER NOT NULL,
        lease_until           INTEGER,
        error_code            TEXT,
        error_message         TEXT
    );
    CREATE UNIQUE INDEX outbound_idempotency
        ON outbound (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX outbound_claim
        ON outbound (channel, phone_id, status, priority DESC, seq);
    CREATE INDEX outbound_status_updated ON outbound (status, updated_at);

    CREATE TABLE outbound_events (
        event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        status     TEXT NOT NULL,
        at         INTEGER NOT NULL,
        code       TEXT,
        reason     TEXT
    );
    CREATE INDEX outbound_events_message ON outbound_events (message_id, event_id);

    CREATE TABLE outbound_parts (
        channel     TEXT NOT NULL,
        phone_id    TEXT NOT NULL,
        external_id TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        part        INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'sent',
        PRIMARY KEY (channel, phone_id, external_id)
    );
    CREATE INDEX outbound_parts_message ON outbound_parts (message_id, part);

    CREATE TABLE inbound (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        channel      TEXT NOT NULL,
        phone_id     TEXT NOT NULL,
        external_id  TEXT NOT NULL,
        sender       TEXT NOT NULL,
        body         TEXT NOT NULL,
        subject      TEXT,
        attachments  TEXT NOT NULL DEFAULT '[]',
        reply_to     TEXT NOT NULL DEFAULT '[]',
        received_at  INTEGER NOT NULL,
        committed_at INTEGER NOT NULL,
        UNIQUE (channel, phone_id, external_id)
    );

    CREATE TABLE api_keys (
        key_id      TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        secret_hash BLOB NOT NULL,
        scopes      TEXT NOT NULL,
        phone_id    TEXT,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );

    CREATE TABLE cursors (
        scope TEXT NOT NULL,
        name  TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (scope, name)
    );
    "#,
    // 2: the relay link: relay message ids, inbound forwarding state,
    // conversations for reply routing.
    r#"
    ALTER TABLE outbound ADD COLUMN relay_message_id TEXT;
    CREATE UNIQUE INDEX outbound_relay_message
        ON outbound (relay_message_id) WHERE relay_message_id IS NOT NULL;

    ALTER TABLE inbound ADD COLUMN relay_state TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE inbound ADD COLUMN relay_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inbound ADD COLUMN relay_next_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inbound ADD COLUMN relay_to TEXT;
    ALTER TABLE inbound ADD COLUMN relay_route TEXT;
    ALTER TABLE inbound ADD COLUMN relay_error_code TEXT;
    ALTER TABLE inbound ADD COLUMN relay_error TEXT;
    ALTER TABLE inbound ADD COLUMN relay_updated_at INTEGER;
    CREATE INDEX inbound_relay_pending ON inbound (seq) WHERE relay_state = 'pending';
    CREATE INDEX inbound_relay_state ON inbound (relay_state, seq);

    CREATE TABLE conversations (
        channel     TEXT NOT NULL,
        phone_id    TEXT NOT NULL,
        external    TEXT NOT NULL,
        pchat_to    TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        last_at     INTEGER NOT NULL,
        PRIMARY KEY (channel, phone_id, external)
    );
    CREATE TABLE conversation_keys (
        channel     TEXT NOT NULL,
        phone_id    TEXT NOT NULL,
        thread_key  TEXT NOT NULL,
        external    TEXT NOT NULL,
        pchat_to    TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (channel, phone_id, thread_key)
    );
    CREATE INDEX conversation_keys_created ON conversation_keys (created_at);
    CREATE INDEX conversations_last_at ON conversations (last_at);
    "#,
    // 3: delivery reports that arrive before the send's outcome is
    // recorded (a fast network: the report can beat the dispatcher's
    // commit); applied when the outcome names their external id.
    r#"
    CREATE TABLE outbound_early_status (
        channel     TEXT NOT NULL,
        phone_id    TEXT NOT NULL,
        external_id TEXT NOT NULL,
        status      TEXT NOT NULL,
        code        TEXT,
        reason      TEXT,
        at          INTEGER NOT NULL
    );
    CREATE INDEX outbound_early_status_key
        ON outbound_early_status (channel, phone_id, external_id);
    CREATE INDEX outbound_early_status_at ON outbound_early_status (at);
    "#,
    // 4: the history's first entry (queued, at created_at) is no longer a
    // row: `outbound::get` derives it. Drop the rows accepts wrote, which
    // are the only `queued` events without a code (a requeue always has
    // one), so no history shows it twice.
    r#"
    DELETE FROM outbound_events WHERE status = 'queued' AND code IS NULL;
    "#,
    // 5: fewer index writes per message. The claim index holds only live
    // messages and the status-time index only ended ones, so a message
    // enters the one at accept and moves to the other once, instead of
    // every status change rewriting both; a part is one B-tree row, not a
    // row plus its primary-key index. A query reaches a partial index only
    // if it repeats the index's WHERE term word for word: `live!()` and
    // `ended!()` in `outbound.rs` are those terms.
    r#"
    DROP INDEX outbound_claim;
    CREATE INDEX outbound_claim
        ON outbound (channel, phone_id, status, priority DESC, seq)
        WHERE status IN ('queued', 'sending');
    DROP INDEX outbound_status_updated;
    CREATE INDEX outbound_ended ON outbound (status, updated_at)
        WHERE status IN ('sent', 'delivered', 'read', 'failed', 'expired', 'cancelled');

    CREATE TABLE outbound_parts_v5 (
        channel     TEXT NOT NULL,
        phone_id    TEXT NOT NULL,
        external_id TEXT NOT NULL,
        message_id  TEXT NOT NULL,
        part        INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'sent',
        PRIMARY KEY (channel, phone_id, external_id)
    ) WITHOUT ROWID;
    INSERT INTO outbound_parts_v5 (channel, phone_id, external_id, message_id, part, status)
        SELECT channel, phone_id, external_id, message_id, part, status FROM outbound_parts;
    DROP TABLE outbound_parts;
    ALTER TABLE outbound_parts_v5 RENAME TO outbound_parts;
    CREATE INDEX outbound_parts_message ON outbound_parts (message_id, part);
    "#,
    // 6: a claim writes no `sending` event. The message keeps the start of
    // its current attempt (`attempt_at`), and the event that ends the
    // attempt (sent, failed, requeued, expired) carries it; the history
    // shows it as the `sending` entry before that event. Older `sending`
    // rows stay and read as before (their outcome events have no
    // `attempt_at`, so nothing shows twice).
    r#"
    ALTER TABLE outbound ADD COLUMN attempt_at INTEGER;
    ALTER TABLE outbound_events ADD COLUMN attempt_at INTEGER;
    "#,
    // 7: the ended index says "not live" instead of listing the six ended
    // statuses. SQLite tests an IN list of more than two constants against
    // a temporary B-tree that it builds afresh each time the statement
    // runs; as the partial index's WHERE term, that happened in every
    // INSERT and every status UPDATE of the outbox, on the writer thread
    // (docs/performance.md, "Fifth pass"). A list of two is tested by
    // plain comparisons. The statuses are the same set: every status that
    // is not queued or sending has ended.
    r#"
    DROP INDEX outbound_ended;
    CREATE INDEX outbound_ended ON outbound (status, updated_at)
        WHERE status NOT IN ('queued', 'sending');
    "#,
    // 8: per-message adapter state is named `message/<id>/<topic>` (the
    // channel crate's `message_cursor`), so the daemon can delete it once
    // the message has ended. The one such cursor so far was the SMS
    // adapter's `sms-parts:<id>` (10 characters before the id).
    r#"
    UPDATE cursors SET name = 'message/' || substr(name, 11) || '/sms-parts'
        WHERE substr(name, 1, 10) = 'sms-parts:';
    "#,
    // 9: two B-trees fewer per accepted message. A new message's id names
    // its `seq` (`store::message_id`), so the table finds it by rowid and
    // the unique index on `id` goes; `seq` no longer counts up through
    // `sqlite_sequence` (AUTOINCREMENT rewrote that table's row on every
    // accept) but comes from the clock. Messages accepted before keep their
    // small seqs and random ids, found through the partial
    // `outbound_id_before_v9` (its term is `message_id::LEGACY_SEQ_LIMIT`).
    // A column constraint cannot be dropped in place, so the table is
    // copied, with its columns in the same order.
    r#"
    CREATE TABLE outbound_v9 (
        seq                   INTEGER PRIMARY KEY,
        id                    TEXT NOT NULL,
        api_key_id            TEXT,
        idempotency_key       TEXT,
        request_hash          TEXT NOT NULL,
        phone_id              TEXT NOT NULL,
        channel               TEXT NOT NULL,
        recipient             TEXT NOT NULL,
        body                  TEXT NOT NULL,
        subject               TEXT,
        source                TEXT,
        attachments           TEXT NOT NULL DEFAULT '[]',
        reply_to              TEXT,
        reply_to_external_id  TEXT,
        priority              INTEGER NOT NULL,
        status                TEXT NOT NULL,
        attempts              INTEGER NOT NULL DEFAULT 0,
        created_at            INTEGER NOT NULL,
        updated_at            INTEGER NOT NULL,
        expires_at            INTEGER NOT NULL,
        next_attempt_at       INTEGER NOT NULL,
        lease_until           INTEGER,
        error_code            TEXT,
        error_message         TEXT,
        relay_message_id      TEXT,
        attempt_at            INTEGER
    );
    INSERT INTO outbound_v9 SELECT seq, id, api_key_id, idempotency_key, request_hash,
        phone_id, channel, recipient, body, subject, source, attachments, reply_to,
        reply_to_external_id, priority, status, attempts, created_at, updated_at, expires_at,
        next_attempt_at, lease_until, error_code, error_message, relay_message_id, attempt_at
        FROM outbound;
    DROP TABLE outbound;
    ALTER TABLE outbound_v9 RENAME TO outbound;
    CREATE UNIQUE INDEX outbound_idempotency
        ON outbound (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX outbound_claim
        ON outbound (channel, phone_id, status, priority DESC, seq)
        WHERE status IN ('queued', 'sending');
    CREATE INDEX outbound_ended ON outbound (status, updated_at)
        WHERE status NOT IN ('queued', 'sending');
    CREATE UNIQUE INDEX outbound_relay_message
        ON outbound (relay_message_id) WHERE relay_message_id IS NOT NULL;
    CREATE UNIQUE INDEX outbound_id_before_v9 ON outbound (id) WHERE seq < 4294967296;
    "#,
    // 10: a send's channel-specific options (a JSON object), if it has any.
    r#"
    ALTER TABLE outbound ADD COLUMN options TEXT;
    "#,
    // 11: files received with inbound messages (`EventSink::save_media`),
    // kept in `media/<id>` beside the store. `relay_url` is the relay's
    // copy once uploaded, to the relay whose base URL is `relay_base` (a
    // re-pair to another relay uploads again); `inbound_id` the message that carries the file,
    // once committed, so the file goes when that message is pruned.
    r#"
    CREATE TABLE media (
        id           TEXT PRIMARY KEY,
        channel      TEXT NOT NULL,
        phone_id     TEXT NOT NULL,
        content_type TEXT,
        filename     TEXT,
        size         INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        relay_url    TEXT,
        inbound_id   TEXT,
        relay_base   TEXT
    );
    "#,
    // 12: what a channel knows of an inbound message's sender and chat
    // beyond its address (`InboundMessage::meta`), as a JSON object; NULL
    // for none.
    r#"
    ALTER TABLE inbound ADD COLUMN meta TEXT;
    "#,
    // 13: an early report is forgotten a day after it was kept, by this
    // bridge's clock (`kept_at`), not by the time the report carries (an
    // SMSC's discharge time, which may be days old after an outage, or
    // ahead): one report with a stray time no longer purges the others.
    // When those already kept came is not known: they get a day from now.
    r#"
    ALTER TABLE outbound_early_status ADD COLUMN kept_at INTEGER NOT NULL DEFAULT 0;
    UPDATE outbound_early_status SET kept_at = CAST(unixepoch('subsec') * 1000 AS INTEGER);
    DROP INDEX outbound_early_status_at;
    CREATE INDEX outbound_early_status_kept ON outbound_early_status (kept_at);
    "#,
    // 14: how many parts of a message's send got an id that a part of
    // another message already had. Such a part stays with that message
    // (`outbound::ADD_PART`), so no report can confirm it for this one,
    // which is then never delivered or read by reports. Messages sent
    // before count none: such a part moved to the later message then, and
    // which message lost one is not recorded.
    r#"
    ALTER TABLE outbound ADD COLUMN parts_held_elsewhere INTEGER NOT NULL DEFAULT 0;
    "#,
    // 15: retention finds old inbound by its commit time, through an index
    // of a state's rows in `committed_at` order (`retention::PRUNE_INBOUND`).
    // It looked at each state's oldest rows by seq and deleted those old
    // enough: rows committed while the clock ran ahead, then stepped back,
    // are oldest by seq but not due, and while a batch of them stayed
    // nothing behind them in their state was ever deleted.
    r#"
    CREATE INDEX inbound_relay_state_committed ON inbound (relay_state, committed_at);
    "#,
    // 16: when a message may first have reached its recipient
    // (`went_out_at`, an event time of `clock::event_ms`): the end of its
    // first attempt that counted, written as that attempt goes back to the
    // queue for a retry, or as a dead process's claim is requeued. Reply
    // routing times the message's conversation from it, and holds a reply
    // from its recipient while it waits for its retry
    // (`routing::SEND_UNSETTLED`). The partial index holds only live
    // messages with such an attempt behind them, a handful, so that read,
    // made for each reply, costs a few rows however long the queue. A
    // message already waiting for a retry gets the time it last went back
    // to the queue (`updated_at`, by the wall clock: the best kept).
    r#"
    ALTER TABLE outbound ADD COLUMN went_out_at INTEGER;
    UPDATE outbound SET went_out_at = updated_at WHERE status = 'queued' AND attempts > 0;
    CREATE INDEX outbound_went_out ON outbound (channel, phone_id, went_out_at)
        WHERE status IN ('queued', 'sending') AND went_out_at IS NOT NULL;
    "#,
    // 17: the body of an inbound message's POST to the relay, fixed (with
    // `relay_to` and `relay_route`) before the first POST, and the relay
    // (its URL) it was made for. Every repeat, under the same
    // Idempotency-Key, sends it as it is: routed again after a restart, or
    // its files uploaded again, the message could have gone to another
    // pChat user, or with other files, under the key of the first.
    // Cleared once the message is delivered.
    r#"
    ALTER TABLE inbound ADD COLUMN relay_body TEXT;
    ALTER TABLE inbound ADD COLUMN relay_body_url TEXT;
    "#,
    // 18: a kept file's row whose file the start-up sweep did not find (a
    // store restored from a backup, which holds no files): its bytes no
    // longer count against `storage.max_media_total_bytes`, and pruning
    // the row gives none back. Its `size` stays what the file had.
    r#"
    ALTER TABLE media ADD COLUMN file_gone INTEGER NOT NULL DEFAULT 0;
    "#,
    // 19: what an adapter received and could not read (an SMS PDU its
    // codec cannot decode), kept as it came for a human, so that its
    // upstream copy may go (a SIM slot freed) instead of filling it. One
    // row per endpoint and content (`raw_sha256`): read again after a
    // crash before the upstream was acknowledged, it is not kept twice.
    // Pruned as inbound messages are, by `committed_at`.
    r#"
    CREATE TABLE inbound_unreadable (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        channel      TEXT NOT NULL,
        phone_id     TEXT NOT NULL,
        raw_sha256   BLOB NOT NULL,
        raw          BLOB NOT NULL,
        origin       TEXT NOT NULL,
        reason       TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        committed_at INTEGER NOT NULL,
        UNIQUE (channel, phone_id, raw_sha256)
    );
    CREATE INDEX inbound_unreadable_committed ON inbound_unreadable (committed_at);
    "#,
    // 20: a kept file's failed uploads to the relay whose base URL is
    // `upload_failed_base` (timeouts, 5xx), and the code of the last: after
    // `relay.upload_give_up_after` of them its message goes without it.
    // Kept with the file, so a restart does not start the count again; a
    // failure at another relay (a re-pair) does.
    r#"
    ALTER TABLE media ADD COLUMN upload_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE media ADD COLUMN upload_failed_base TEXT;
    ALTER TABLE media ADD COLUMN upload_error TEXT;
    "#,
    // 21: the status a message was committed with (`sending` when handed
    // straight to an idle dispatcher, else `queued`), which its 202 said:
    // a repeat of the request (its Idempotency-Key or relay message id)
    // answers the same. NULL for messages accepted before, read as
    // `queued`, the answer their repeats always had.
    r#"
    ALTER TABLE outbound ADD COLUMN accepted_status TEXT;
    "#,
    // 22: how often an operator sent an inbound message on by hand
    // (`phonerelay inbound retry`): each such retry goes under an
    // Idempotency-Key of its own, as a relay answers a repeat of a key as
    // it did the first time, and would refuse the retry again.
    r#"
    ALTER TABLE inbound ADD COLUMN relay_manual_retries INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// Refuse a database a newer PhoneRelay has migrated past this binary's
/// schema (`StoreError::Incompatible`): this one would run on tables it
/// does not know, and write rows the newer one may read wrong. A version
/// that cannot be read is the store's error as any read's (an I/O error
/// that may pass), not a refusal: taken for one, the daemon exited as for
/// a config error, which systemd does not restart.
pub fn check_not_newer(conn: &Connection, path: &std::path::Path) -> StoreResult<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Incompatible(format!(
            "{} has schema version {version}, newer than this phonerelay's {}: run the version that wrote it (or a newer one)",
            path.display(),
            MIGRATIONS.len()
        )));
    }
    Ok(())
}

/// Bring the database to the newest schema in one transaction.
///
/// The version is read again inside that transaction, which takes the
/// write lock as it begins (IMMEDIATE): two processes may open an old
/// store at once (the daemon starting, and `phonerelay keys create`, which
/// migrates too). Read before it, both would see the old version, and the
/// second, waiting for the first to commit, would then replay its
/// migrations and fail ("duplicate column name"). Read inside it, the
/// second sees what the first did and runs only what is still missing.
/// A store already current is not write-locked at all.
///
/// The migrations run with `temp_store=FILE`, and the connection's setting
/// (MEMORY, from [`configure`]) is put back after them: with MEMORY, the
/// sort of a CREATE INDEX or a table copy (migration 9) over a large table
/// is held whole in RAM, which on a small box invites the OOM killer;
/// with FILE, SQLite's sorter spills to temporary files past its cache.
/// Those go where SQLite puts them by default (`SQLITE_TMPDIR`, `TMPDIR`,
/// then `/var/tmp`, `/usr/tmp`, `/tmp`), not into the state dir: SQLite
/// sets its temporary directory only for the whole process (the
/// deprecated `temp_store_directory` pragma, not thread-safe to change
/// while other connections work, or the environment, read once), not per
/// connection. `/var/tmp` comes before `/tmp`, which is often a tmpfs (RAM
/// again); it is on disk, and under the shipped unit (`PrivateTmp=yes`)
/// a private, writable one despite `ProtectSystem=strict`. The files are
/// unlinked as they are opened, so nothing is left behind.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    apply(conn, MIGRATIONS)
}

/// [`migrate`], with `migrations` as the whole list.
fn apply(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    if user_version(conn)? >= migrations.len() {
        return Ok(());
    }
    let temp_store: i64 = conn.query_row("PRAGMA temp_store", [], |row| row.get(0))?;
    conn.pragma_update(None, "temp_store", "FILE")?;
    let migrated = apply_in_transaction(conn, migrations);
    let restored = conn.pragma_update(None, "temp_store", temp_store);
    migrated.and(restored)
}

fn apply_in_transaction(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version = user_version(&tx)?;
    if version >= migrations.len() {
        return Ok(());
    }
    for migration in &migrations[version..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", migrations.len())?;
    tx.commit()
}

/// The schema version of the store at `path`, read without writing or
/// migrating anything; 0 for a store not made yet.
pub fn version_of(path: &std::path::Path) -> rusqlite::Result<usize> {
    if !path.exists() {
        return Ok(0);
    }
    // Read-write but never creating: a read-only connection cannot open a
    // WAL database whose shared-memory file is not there.
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    user_version(&conn)
}

pub fn user_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// The size the WAL file is cut back to when it restarts after a
/// checkpoint. Normally it stays near the auto-checkpoint's 1,000 pages
/// (4 MiB); while a long read (a backup, a big listing) keeps checkpoints
/// from finishing it grows with every write, and SQLite keeps the file at
/// its largest for reuse: on a small box, disk lost until the daemon
/// restarts. Above this, the restart truncates it.
pub const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Connection settings every connection shares. `synchronous=FULL` makes a
/// committed message survive power loss, at the price of an fsync per
/// commit, which the group-commit writer amortises.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
    // Temporary files in memory. Statement journals, and the per-job
    // savepoints the writer uses when it redoes a batch that had a failing
    // write, keep a sub-journal; once it outgrows 64 KiB (a large claim
    // does) it spills to a temporary file, and every later write of that
    // transaction puts the pages it touches there (when every job had its
    // own savepoint, that was most of the writer's write syscalls under
    // load). The sub-journal only serves rollbacks inside an open
    // transaction; crash recovery uses the WAL, so durability is unchanged.
    // Migrations, whose sorts may be as large as a table, run with FILE
    // instead (`migrate`).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// A new store file at `path` as the first `version` migrations left it.
pub fn create_at_version(path: &std::path::Path, version: usize) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    let tx = conn.transaction()?;
    for migration in &MIGRATIONS[..version] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()
}

/// A database as the first `version` migrations left it.
#[cfg(test)]
pub fn at_version(version: usize) -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    let tx = conn.transaction().unwrap();
    for migration in &MIGRATIONS[..version] {
        tx.execute_batch(migration).unwrap();
    }
    tx.pragma_update(None, "user_version", version).unwrap();
    tx.commit().unwrap();
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a newer schema is a refusal; a version that cannot be read is
    /// the store's error as any read's, here a file that is no database.
    #[test]
    fn only_a_newer_schema_is_incompatible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let conn = at_version(MIGRATIONS.len());
        assert!(check_not_newer(&conn, &path).is_ok());
        conn.pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        let newer = check_not_newer(&conn, &path);
        assert!(
            matches!(newer, Err(StoreError::Incompatible(_))),
            "{newer:?}"
        );
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let unreadable = check_not_newer(&Connection::open(&path).unwrap(), &path);
        assert!(
            matches!(unreadable, Err(StoreError::Unavailable(_))),
            "{unreadable:?}"
        );
    }

    #[test]
    fn migration_5_keeps_every_part_and_its_status() {
        let mut conn = at_version(4);
        conn.execute_batch(
            "INSERT INTO outbound_parts (channel, phone_id, external_id, message_id, part, status)
             VALUES ('sms', 'm1', '17', 'msg-a', 0, 'delivered'),
                    ('sms', 'm1', '18', 'msg-a', 1, 'sent')",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let parts: Vec<(String, String, i64, String)> = conn
            .prepare(
                "SELECT external_id, message_id, part, status FROM outbound_parts
                 WHERE channel = 'sms' AND phone_id = 'm1' ORDER BY part",
            )
            .unwrap()
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            parts,
            [
                ("17".into(), "msg-a".into(), 0, "delivered".into()),
                ("18".into(), "msg-a".into(), 1, "sent".into()),
            ]
        );
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'outbound_parts'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    }

    #[test]
    fn after_migration_7_the_ended_index_holds_every_ended_message_and_no_live_one() {
        let mut conn = at_version(6);
        for (n, status) in crate::store::OutboundStatus::ALL.iter().enumerate() {
            conn.execute(
                "INSERT INTO outbound (id, request_hash, phone_id, channel, recipient, body,
                    priority, status, created_at, updated_at, expires_at, next_attempt_at)
                 VALUES (?1, 'h', 'm1', 'sms', '+15551230001', 'hi', 0, ?2, 1, ?3, 9, 1)",
                rusqlite::params![format!("msg-{n}"), status.as_str(), n as i64],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let through_index: Vec<String> = conn
            .prepare(
                "SELECT status FROM outbound INDEXED BY outbound_ended
                 WHERE status NOT IN ('queued', 'sending') ORDER BY updated_at",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            through_index,
            [
                "sent",
                "delivered",
                "read",
                "failed",
                "expired",
                "cancelled"
            ]
        );
    }

    #[test]
    fn migration_8_renames_the_sms_parts_cursors_and_nothing_else() {
        let mut conn = at_version(7);
        conn.execute_batch(
            "INSERT INTO cursors (scope, name, value) VALUES
                ('sms:m1', 'sms-parts:0194f0c2-7a4e-7000-8000-000000000001', '0 17 x'),
                ('tg:bot', 'offset', '42')",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let names: Vec<(String, String, String)> = conn
            .prepare("SELECT scope, name, value FROM cursors ORDER BY scope")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let renamed =
            phonerelay_channel::message_cursor("0194f0c2-7a4e-7000-8000-000000000001", "sms-parts");
        assert_eq!(
            names,
            [
                ("sms:m1".into(), renamed, "0 17 x".into()),
                ("tg:bot".into(), "offset".into(), "42".into()),
            ]
        );
    }

    #[test]
    fn migration_11_adds_the_media_table_and_keeps_what_was_there() {
        let mut conn = at_version(10);
        conn.execute_batch(
            "INSERT INTO inbound (id, channel, phone_id, external_id, sender, body,
                received_at, committed_at)
             VALUES ('in-1', 'wa', 'p1', 'x-1', '+15551230001', 'hi', 1, 2)",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        conn.execute_batch(
            "INSERT INTO media (id, channel, phone_id, content_type, filename, size, sha256,
                created_at)
             VALUES ('m-1', 'wa', 'p1', 'image/png', 'a.png', 3, 'abc', 5)",
        )
        .unwrap();
        let row: (String, Option<String>, Option<String>, i64) = conn
            .query_row(
                "SELECT m.id, m.relay_url, m.inbound_id, (SELECT COUNT(*) FROM inbound)
                 FROM media m",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap();
        assert_eq!(row, ("m-1".into(), None, None, 1));
        let duplicate = conn.execute(
            "INSERT INTO media (id, channel, phone_id, size, sha256, created_at)
             VALUES ('m-1', 'wa', 'p1', 1, 'x', 6)",
            [],
        );
        assert!(duplicate.is_err(), "the id is the primary key");
    }

    #[test]
    fn migration_13_gives_the_early_reports_kept_a_day_from_the_upgrade() {
        let mut conn = at_version(12);
        // Stamped long ago, and a day ahead, by the upstream's clock.
        let now = crate::clock::now_ms();
        conn.execute(
            "INSERT INTO outbound_early_status
                (channel, phone_id, external_id, status, code, reason, at)
             VALUES ('sms', 'm1', 'mr-1', 'delivered', NULL, NULL, 1234),
                    ('sms', 'm1', 'mr-2', 'delivered', NULL, NULL, ?1)",
            [now + 86_400_000],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let kept: Vec<i64> = conn
            .prepare("SELECT kept_at FROM outbound_early_status")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let after = crate::clock::now_ms();
        assert_eq!(kept.len(), 2);
        for kept_at in kept {
            assert!(
                (now - 1000..=after).contains(&kept_at),
                "{kept_at} not in {now}..={after}"
            );
        }
    }

    #[test]
    fn migration_14_counts_no_part_held_elsewhere_for_the_messages_already_sent() {
        let mut conn = at_version(13);
        conn.execute_batch(
            "INSERT INTO outbound (seq, id, request_hash, phone_id, channel, recipient, body,
                priority, status, created_at, updated_at, expires_at, next_attempt_at)
             VALUES (4294967296, 'a', 'h', 'm1', 'sms', '+15551230001', 'a', 1, 'sent', 1, 2,
                3600001, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let row: (String, String, i64) = conn
            .query_row(
                "SELECT id, status, parts_held_elsewhere FROM outbound",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, ("a".into(), "sent".into(), 0));
    }

    /// A message waiting for its retry at the upgrade may have gone out
    /// in part: it gets when it went back to the queue. One never tried,
    /// one under way (requeued at the start, which dates it) and one ended
    /// get nothing.
    #[test]
    fn migration_16_dates_the_messages_waiting_for_a_retry_and_no_other() {
        let mut conn = at_version(15);
        conn.execute_batch(
            "INSERT INTO outbound (seq, id, request_hash, phone_id, channel, recipient, body,
                priority, status, attempts, created_at, updated_at, expires_at, next_attempt_at)
             VALUES (4294967296, 'retry', 'h', 'm1', 'sms', '+1', 'a', 1, 'queued', 1, 1, 20,
                        3600001, 30),
                    (4294967297, 'new', 'h', 'm1', 'sms', '+1', 'a', 1, 'queued', 0, 1, 21,
                        3600001, 0),
                    (4294967298, 'claimed', 'h', 'm1', 'sms', '+1', 'a', 1, 'sending', 1, 1, 22,
                        3600001, 0),
                    (4294967299, 'ended', 'h', 'm1', 'sms', '+1', 'a', 1, 'failed', 2, 1, 23,
                        3600001, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(String, Option<i64>)> = conn
            .prepare("SELECT id, went_out_at FROM outbound ORDER BY seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let dated = |id: &str, at: Option<i64>| (id.to_string(), at);
        assert_eq!(
            rows,
            [
                dated("retry", Some(20)),
                dated("new", None),
                dated("claimed", None),
                dated("ended", None)
            ]
        );
    }

    #[test]
    fn migration_4_drops_the_accept_events_and_keeps_requeues() {
        let mut conn = at_version(3);
        conn.execute_batch(
            "INSERT INTO outbound_events (message_id, status, at, code, reason) VALUES
                ('m', 'queued', 1, NULL, NULL),
                ('m', 'sending', 2, NULL, NULL),
                ('m', 'queued', 3, 'requeued', 'the daemon stopped while sending'),
                ('m', 'sent', 4, NULL, NULL)",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let left: Vec<(String, Option<String>)> = conn
            .prepare("SELECT status, code FROM outbound_events ORDER BY event_id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            ("sending", None),
            ("queued", Some("requeued")),
            ("sent", None),
        ]
        .map(|(s, c): (&str, Option<&str>)| (s.to_string(), c.map(str::to_string)));
        assert_eq!(left, expected.to_vec());
    }

    /// A migration's sorts (CREATE INDEX, a table copy) spill to files, not
    /// RAM: it runs with `temp_store=FILE` (1), and the connection has
    /// MEMORY (2) again for its normal work afterwards, also when a
    /// migration fails.
    #[test]
    fn migrations_run_with_temporary_files_and_the_connection_keeps_memory_after() {
        let temp_store = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA temp_store", [], |row| row.get(0))
                .unwrap()
        };
        let mut conn = Connection::open_in_memory().unwrap();
        configure(&conn).unwrap();
        assert_eq!(temp_store(&conn), 2);
        let seen = "CREATE TABLE seen AS SELECT temp_store FROM pragma_temp_store";
        apply(&mut conn, &[seen]).unwrap();
        let during: i64 = conn
            .query_row("SELECT temp_store FROM seen", [], |row| row.get(0))
            .unwrap();
        assert_eq!(during, 1, "FILE while migrating");
        assert_eq!(temp_store(&conn), 2, "MEMORY after");

        let failing = [seen, "CREATE TABLE broken (", "SELECT 1"];
        assert!(apply(&mut conn, &failing).is_err());
        assert_eq!(temp_store(&conn), 2, "MEMORY after a failed migration");

        // The real migrations, from nothing: the store opens with MEMORY.
        let mut conn = Connection::open_in_memory().unwrap();
        configure(&conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(temp_store(&conn), 2);
    }

    /// Waits for the write lock counted: each connection's first try
    /// counts (`tries` is 0), then it sleeps and tries again, as
    /// `busy_timeout` would.
    static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn count_waits(tries: i32) -> bool {
        if tries == 0 {
            WAITING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        tries < 2000
    }

    /// A store on disk as the first `version` migrations left it.
    fn file_at_version(path: &std::path::Path, version: usize) {
        create_at_version(path, version).unwrap();
    }

    /// Two processes open an old store at once (the daemon starting, and
    /// `phonerelay keys create`): both see it old, and both migrate it, one
    /// after the other; the second finds it done and replays nothing. Made
    /// certain by a third connection holding the write lock until both
    /// are waiting for it.
    #[test]
    fn two_connections_migrating_one_old_store_at_once_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        file_at_version(&path, MIGRATIONS.len() - 1);
        let holder = Connection::open(&path).unwrap();
        configure(&holder).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let migrating: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || -> rusqlite::Result<()> {
                    let mut conn = Connection::open(&path)?;
                    configure(&conn)?;
                    conn.busy_handler(Some(count_waits))?;
                    migrate(&mut conn)
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while WAITING.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            assert!(std::time::Instant::now() < deadline, "no migration waited");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        holder.execute_batch("ROLLBACK").unwrap();
        for migration in migrating {
            migration.join().unwrap().unwrap();
        }
        let version: usize = holder
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }
}
