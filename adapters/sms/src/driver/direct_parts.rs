//! Messages the modem hands over directly (`+CMT`) are stored nowhere: the
//! modem forgets each once it is written to the port. So each is kept in a
//! record in the store (a cursor) from the moment it is read until its
//! message is committed, and a part waiting for the rest of its message, or
//! a message whose commit failed, outlives a restart. Every sweep takes up
//! what the record holds and the inbox does not: the record is to direct
//! deliveries what the SIM's memory is to stored ones.

use phonerelay_sms_pdu::Deliver;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::Driver;
use super::conn::{Conn, ConnError};
use super::inbound::{DirectPart, Inbox, Ready};
use crate::codec::{self, Incoming};

/// The record's cursor: `key=PDU` entries, comma-separated.
pub const DIRECT_PARTS_CURSOR: &str = "sms-direct-parts";

/// What names a PDU in the record: 96 bits of SHA-256 over its hex, so
/// the same delivery handed over twice is one entry.
pub fn direct_key(pdu: &str) -> String {
    let digest = Sha256::digest(pdu.to_ascii_uppercase().as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// The record's entries, as (key, PDU hex).
pub fn entries(value: &str) -> Vec<(&str, &str)> {
    value
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .collect()
}

/// The record with `pdu` kept under `key` (once).
pub fn with_entry(value: &str, key: &str, pdu: &str) -> String {
    let mut all = entries(value);
    if !all.iter().any(|(k, _)| *k == key) {
        all.push((key, pdu));
    }
    join(&all)
}

/// The record without the entries under `keys`; empty when none is left.
pub fn without_keys(value: &str, keys: &[String]) -> String {
    let mut all = entries(value);
    all.retain(|(k, _)| !keys.iter().any(|gone| gone == k));
    join(&all)
}

fn join(entries: &[(&str, &str)]) -> String {
    let joined: Vec<String> = entries.iter().map(|(k, p)| format!("{k}={p}")).collect();
    joined.join(",")
}

/// What a `+CMT` handed over (or taken up again from the record) is.
enum Direct {
    /// A message, or a part of one, for a person.
    Deliver(Box<Deliver>),
    /// Nothing more to do: discarded, a copy of a part committed, or
    /// undecodable and kept in the store as it came.
    Settled,
    /// Undecodable, and the store refused it: kept in the record like a
    /// message whose commit failed, the modem having no copy of it.
    UndecodableUnkept,
}

impl Driver {
    /// A part the modem handed over directly: into assembly, kept in the
    /// record first if it is a part of a long message (it waits for the
    /// rest); its message if it is complete now. A single part is kept only
    /// if its commit fails ([`Self::keep_direct`]): one write, not three.
    pub(super) async fn take_direct(
        &self,
        pdu: &str,
        inbox: &mut Inbox,
        now_ms: u64,
    ) -> Option<Ready> {
        let key = direct_key(pdu);
        let mut part = DirectPart {
            key,
            pdu: pdu.to_string(),
            kept: false,
        };
        let deliver = match self.direct_deliver(pdu, inbox, true).await {
            Direct::Deliver(deliver) => deliver,
            Direct::Settled => return None,
            Direct::UndecodableUnkept => {
                self.keep_direct(std::slice::from_mut(&mut part), inbox)
                    .await;
                return None;
            }
        };
        if inbox.holds_direct(&part.key) {
            return None;
        }
        if deliver.concat().is_some_and(|c| c.total > 1)
            && !self
                .long_direct_part_is_new(&deliver, &mut part, inbox, now_ms)
                .await
        {
            return None;
        }
        inbox.add_direct(part, *deliver, now_ms)
    }

    /// Whether `part`, of a long message, belongs to none committed
    /// already, asked as a stored part is ([`Self::part_of_committed`]):
    /// what memory knows is not enough, since after a restart the parts
    /// committed lately may not have been read yet, and a message whose
    /// slots were not all freed is named only by its committed-parts
    /// record. Kept in the record unless it is a known copy. One that
    /// cannot be told yet stays there and out of assembly, judged again
    /// at the next expiry check (or sweep): held, it would never be asked
    /// about again, and its timeout would commit it alone, a second,
    /// partial message. Until it is judged no message in assembly times
    /// out, since the one it belongs to would be committed without it.
    async fn long_direct_part_is_new(
        &self,
        deliver: &Deliver,
        part: &mut DirectPart,
        inbox: &mut Inbox,
        now_ms: u64,
    ) -> bool {
        let new = match self.part_of_committed(deliver, inbox, now_ms).await {
            Ok(true) => {
                tracing::info!("copy of a part already committed; dropped");
                return false;
            }
            Ok(false) => true,
            Err(e) => {
                tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                    "cannot tell whether a direct part's message was committed; kept to be judged again");
                inbox.direct_unjudged = true;
                false
            }
        };
        self.keep_direct(std::slice::from_mut(part), inbox).await;
        new
    }

    /// What `pdu` is: a message for a person that is not a part of one
    /// committed lately, or nothing more to do (discarded, a copy, or
    /// undecodable and kept as it came; said and counted), or undecodable
    /// and not kept, the store refusing it. `first` is whether it was just
    /// handed over rather than taken up again from the record.
    async fn direct_deliver(&self, pdu: &str, inbox: &Inbox, first: bool) -> Direct {
        let deliver = match codec::decode_incoming(pdu) {
            Ok(Incoming::Deliver(deliver)) => deliver,
            Ok(_) => return self.undecodable_cmt(pdu, "not an SMS-DELIVER", first).await,
            Err(e) => return self.undecodable_cmt(pdu, &e.to_string(), first).await,
        };
        if let codec::Disposition::Discard(kind) = codec::disposition(&deliver) {
            self.discarded(kind, None);
            return Direct::Settled;
        }
        let from = self.sender(&deliver.originator);
        if inbox.committed_lately(&from, &deliver) {
            tracing::info!("copy of a part already committed; dropped");
            return Direct::Settled;
        }
        Direct::Deliver(deliver)
    }

    /// An undecodable `+CMT`, committed as it came if the store takes it.
    /// A line that is not hex cannot go into the record, whose entries it
    /// could break: lost if the store refuses it, and counted so.
    async fn undecodable_cmt(&self, pdu: &str, reason: &str, first: bool) -> Direct {
        if !pdu.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.undecodable_direct("+CMT", pdu, reason).await;
            return Direct::Settled;
        }
        if self
            .undecodable_direct_kept("+CMT", pdu, reason, first)
            .await
        {
            Direct::Settled
        } else {
            Direct::UndecodableUnkept
        }
    }

    /// Add `parts` not kept yet to the record, and mark them kept. If the
    /// record cannot be written, they wait in `inbox` to be written by a
    /// later sweep, which takes them up meanwhile: lost only if the daemon
    /// stops first, and said so.
    pub(super) async fn keep_direct(&self, parts: &mut [DirectPart], inbox: &mut Inbox) {
        let new: Vec<&mut DirectPart> = parts.iter_mut().filter(|p| !p.kept).collect();
        if new.is_empty() {
            return;
        }
        let kept = self
            .update_record(|before| {
                new.iter().fold(before.to_string(), |value, p| {
                    with_entry(&value, &p.key, &p.pdu)
                })
            })
            .await;
        if let Err(e) = kept {
            tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                "cannot keep a message the modem handed over directly; held in memory, and lost if the daemon stops before it is committed");
            for p in &new {
                inbox.unsaved_direct.insert(p.key.clone(), p.pdu.clone());
            }
        }
        for p in new {
            p.kept = true;
        }
    }

    /// Write the record as `change` makes it of what the store holds (an
    /// empty record when none is kept), if that changes it.
    pub(super) async fn update_record(
        &self,
        change: impl FnOnce(&str) -> String,
    ) -> Result<(), phonerelay_channel::SinkError> {
        let before = self
            .sink
            .load_cursor(DIRECT_PARTS_CURSOR)
            .await?
            .unwrap_or_default();
        let after = change(&before);
        if after != before {
            self.sink.save_cursor(DIRECT_PARTS_CURSOR, &after).await?;
        }
        Ok(())
    }

    /// Take `parts` off the record (and out of memory): their message is
    /// committed. Left on the record, the next sweep commits the message
    /// again, which the store drops as the duplicate it is.
    pub(super) async fn forget_direct(&self, parts: &[DirectPart], inbox: &mut Inbox) {
        let keys: Vec<String> = parts
            .iter()
            .filter(|p| p.kept)
            .map(|p| p.key.clone())
            .collect();
        self.forget_direct_keys(&keys, inbox).await;
    }

    async fn forget_direct_keys(&self, keys: &[String], inbox: &mut Inbox) {
        if keys.is_empty() {
            return;
        }
        for key in keys {
            inbox.unsaved_direct.remove(key);
        }
        let forgotten = self
            .update_record(|before| without_keys(before, keys))
            .await;
        if let Err(e) = forgotten {
            tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                "cannot take a committed message off the record of direct deliveries; the next sweep drops it");
        }
    }

    /// Into assembly again what the record (and memory, while the record
    /// cannot be written) holds and the inbox does not: parts kept before
    /// a restart, and messages whose commit failed. A part of a message
    /// committed already (known so in memory, or from that message's
    /// committed-parts record, which a crash before the record of direct
    /// parts was cleared leaves) only leaves the record; one whose
    /// committed-parts record cannot be read waits there for the next sweep.
    pub(super) async fn retake_direct(
        &self,
        conn: &mut Conn,
        inbox: &mut Inbox,
        epoch: Instant,
    ) -> Result<(), ConnError> {
        // Those held in memory only: to the record first, if it can be
        // written now (else they stay in memory).
        let mut unsaved: Vec<DirectPart> = std::mem::take(&mut inbox.unsaved_direct)
            .into_iter()
            .map(|(key, pdu)| DirectPart {
                key,
                pdu,
                kept: false,
            })
            .collect();
        self.keep_direct(&mut unsaved, inbox).await;
        // What could not be judged now; unknown, so as before, while the
        // record cannot be read.
        let mut unjudged = false;
        let record = match self.sink.load_cursor(DIRECT_PARTS_CURSOR).await {
            Ok(value) => value.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                    "cannot read the record of direct deliveries; tried again at the next sweep");
                unjudged = inbox.direct_unjudged;
                String::new()
            }
        };
        let mut waiting: Vec<(String, String)> = entries(&record)
            .into_iter()
            .map(|(k, p)| (k.to_string(), p.to_string()))
            .collect();
        for (key, pdu) in &inbox.unsaved_direct {
            if !waiting.iter().any(|(k, _)| k == key) {
                waiting.push((key.clone(), pdu.clone()));
            }
        }
        let mut done = Vec::new();
        for (key, pdu) in waiting {
            if inbox.holds_direct(&key) {
                continue;
            }
            let deliver = match self.direct_deliver(&pdu, inbox, false).await {
                Direct::Deliver(deliver) => deliver,
                Direct::Settled => {
                    done.push(key);
                    continue;
                }
                // Still refused: left where it is, for the next sweep.
                Direct::UndecodableUnkept => continue,
            };
            let now = epoch.elapsed().as_millis() as u64;
            match self.part_of_committed(&deliver, inbox, now).await {
                Ok(true) => {
                    done.push(key);
                    continue;
                }
                Ok(false) => {}
                // Left in the record and out of assembly: held, it would
                // never be asked about again, and its timeout would commit
                // it alone, a second, partial message.
                Err(e) => {
                    tracing::warn!(phone_id = %self.config.phone_id, error = %e,
                        "cannot tell whether a direct part's message was committed; left to be judged again");
                    unjudged = true;
                    continue;
                }
            }
            let part = DirectPart {
                key,
                pdu,
                kept: true,
            };
            let now = epoch.elapsed().as_millis() as u64;
            if let Some(ready) = inbox.add_direct(part, *deliver, now) {
                self.commit_inbound(conn, ready, inbox, now).await?;
            }
        }
        inbox.direct_unjudged = unjudged;
        self.forget_direct_keys(&done, inbox).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_kept_once_and_taken_off_alone() {
        let a = direct_key("0011AA");
        let b = direct_key("0022BB");
        assert_eq!(a, direct_key("0011aa"), "the key ignores the hex's case");
        assert_ne!(a, b);
        let one = with_entry("", &a, "0011AA");
        assert_eq!(with_entry(&one, &a, "0011AA"), one);
        let two = with_entry(&one, &b, "0022BB");
        assert_eq!(
            entries(&two),
            [(a.as_str(), "0011AA"), (b.as_str(), "0022BB")]
        );
        assert_eq!(
            without_keys(&two, std::slice::from_ref(&a)),
            with_entry("", &b, "0022BB")
        );
        assert_eq!(without_keys(&two, &[a, b]), "");
    }
}
