//! Conversations for reply routing: who in pChat wrote to which external
//! address, and the keys (external message ids, thread ids) a reply may
//! carry. Recorded in the transaction that records the send.

use phonerelay_channel::{ChannelKind, SendReceipt};
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::*;

/// One spelling per external address, so a reply finds the conversation:
/// e-mail addresses compare without case and without a display name.
pub fn normalize(channel: ChannelKind, address: &str) -> String {
    let address = address.trim();
    match channel {
        ChannelKind::Email => {
            let bare = match (address.rfind('<'), address.rfind('>')) {
                (Some(open), Some(close)) if open < close => &address[open + 1..close],
                _ => address,
            };
            bare.trim().to_ascii_lowercase()
        }
        _ => address.to_string(),
    }
}

/// Where a sent message went and who in pChat sent it, as the outcome
/// reads it from the message's row.
pub struct SentTo {
    pub channel: String,
    pub phone_id: String,
    pub recipient: String,
    pub source: Option<String>,
}

/// After a send succeeded: if a pChat user (`source`) sent it, remember
/// the conversation and every key a reply could name.
pub fn record_sent(
    conn: &Connection,
    message_id: &str,
    sent: &SentTo,
    receipt: &SendReceipt,
    now_ms: i64,
) -> StoreResult<()> {
    let Some(source) = &sent.source else {
        return Ok(());
    };
    let Ok(channel) = sent.channel.parse::<ChannelKind>() else {
        return Ok(());
    };
    let (phone_id, recipient) = (&sent.phone_id, &sent.recipient);
    let external = normalize(channel, recipient);
    conn.prepare_cached(
        "INSERT INTO conversations (channel, phone_id, external, pchat_to, message_id, last_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (channel, phone_id, external) DO UPDATE SET
            pchat_to = excluded.pchat_to, message_id = excluded.message_id,
            last_at = excluded.last_at",
    )?
    .execute(params![
        channel.as_str(),
        phone_id,
        external,
        source,
        message_id,
        now_ms
    ])?;
    for key in receipt.external_ids.iter().chain(&receipt.thread_keys) {
        conn.prepare_cached(
            "INSERT INTO conversation_keys
                (channel, phone_id, thread_key, external, pchat_to, message_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (channel, phone_id, thread_key) DO UPDATE SET
                external = excluded.external, pchat_to = excluded.pchat_to,
                message_id = excluded.message_id, created_at = excluded.created_at",
        )?
        .execute(params![
            channel.as_str(),
            phone_id,
            key.trim(),
            external,
            source,
            message_id,
            now_ms
        ])?;
    }
    Ok(())
}

/// The most exact match: a reply key, then the sender's latest
/// conversation on this endpoint.
pub fn route(conn: &Connection, q: &RouteQuery) -> StoreResult<Option<RouteMatch>> {
    for key in &q.reply_to {
        let to: Option<String> = conn
            .prepare_cached(
                "SELECT pchat_to FROM conversation_keys
                 WHERE channel = ?1 AND phone_id = ?2 AND thread_key = ?3 AND created_at >= ?4",
            )?
            .query_row(
                params![q.channel.as_str(), q.phone_id, key.trim(), q.since_ms],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(to) = to {
            return Ok(Some(RouteMatch { to, route: "reply" }));
        }
    }
    let to: Option<String> = conn
        .prepare_cached(
            "SELECT pchat_to FROM conversations
             WHERE channel = ?1 AND phone_id = ?2 AND external = ?3 AND last_at >= ?4",
        )?
        .query_row(
            params![
                q.channel.as_str(),
                q.phone_id,
                normalize(q.channel, &q.from),
                q.since_ms
            ],
            |row| row.get(0),
        )
        .optional()?;
    Ok(to.map(|to| RouteMatch {
        to,
        route: "recent",
    }))
}

pub fn prune(conn: &Connection, before_ms: i64) -> StoreResult<usize> {
    let keys = conn.execute(
        "DELETE FROM conversation_keys WHERE created_at < ?1",
        [before_ms],
    )?;
    let conversations =
        conn.execute("DELETE FROM conversations WHERE last_at < ?1", [before_ms])?;
    Ok(keys + conversations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_compare_bare_and_lowercase() {
        assert_eq!(
            normalize(ChannelKind::Email, "Ann <Ann@Example.COM>"),
            "ann@example.com"
        );
        assert_eq!(normalize(ChannelKind::Wa, " +15551230001 "), "+15551230001");
    }
}
