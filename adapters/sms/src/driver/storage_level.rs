//! How full the modem's message storage is. Undecodable PDUs and outbox
//! copies are left on it for a human, so over months it can fill up; a
//! full memory stores nothing more, the network holds new messages (and
//! drops them once their validity runs out), and inbound stops without a
//! word from the modem. The level is read after each sweep (one
//! `AT+CPMS?`), the first right after start-up, and when the modem says
//! on its own that its memory is full; the health says when it is. A
//! failed read keeps the last reading; a message the driver deletes from
//! the memory clears what said it full.

use phonerelay_sms_at::responses::{self, MemoryUsage};

use super::Driver;
use super::conn::{Answer, Conn, ConnError};
use super::slot::Memory;

/// TS 27.005 `+CMS ERROR: 322`, memory full. The AT table calls it
/// permanent (the command fails again until room is made), but what must
/// change is the modem's memory, not the message: a send it refuses before
/// any part went out holds the queue (the adapter pauses the endpoint, no
/// attempt spent), and the health says what to do.
pub(crate) const CMS_MEMORY_FULL: u16 = 322;

/// The receive memory's fill level in an answer to `AT+CPMS?`.
fn storage_level(answer: &Answer) -> Option<MemoryUsage> {
    if !answer.is_ok() {
        return None;
    }
    responses::parse_cpms_received(answer.line("+CPMS:")?).ok()
}

impl Driver {
    /// `AT+CPMS?`: the receive memory's fill level now. One short command,
    /// after each sweep (which is when deletes, ours or a human's, show).
    pub(super) async fn read_storage_level(&self, conn: &mut Conn) -> Result<(), ConnError> {
        let answer = conn.run(self.cmd("AT+CPMS?")).await?;
        self.note_storage_level(storage_level(&answer));
        Ok(())
    }

    /// A reading of the receive memory: `None` when it could not be read,
    /// which keeps the last reading: a memory read full stays said full
    /// through a failed read, rather than the health going up while
    /// nothing was freed. A reading with room outweighs what was said of a
    /// full memory before it.
    pub(super) fn note_storage_level(&self, usage: Option<MemoryUsage>) {
        let Some(usage) = usage else { return };
        let (was_full, now_full) = self.with_status_change(|s| {
            if !usage.is_full() {
                s.storage_full_said = None;
            }
            s.message_storage = Some(usage);
        });
        self.say_storage_change(was_full, now_full);
    }

    /// The driver deleted a message from `mem`: one slot of it is free
    /// now, whatever the modem's indication or a `+CMS ERROR: 322` said,
    /// and the last reading of it counts one used slot fewer. Needed
    /// because the vendor indications have no word for room again, and a
    /// modem whose `AT+CPMS?` cannot be read would otherwise stay said
    /// full until a restart. A delete is the one proof of room the driver
    /// sees itself (a send stores nothing, so its success says nothing of
    /// the memory); a memory that fills again at once is said full again
    /// by its next reading or indication. The status report memory holds
    /// no received message: room in it is not room for them.
    pub(super) fn room_made(&self, mem: Memory) {
        if mem == Memory::REPORTS {
            return;
        }
        let (was_full, now_full) = self.with_status_change(|s| {
            s.storage_full_said = None;
            let read_here = s
                .message_storage
                .as_mut()
                .filter(|u| u.mem.as_deref().is_none_or(|m| m == mem.as_str()));
            if let Some(usage) = read_here {
                usage.used = usage.used.saturating_sub(1);
            }
        });
        self.say_storage_change(was_full, now_full);
    }

    /// The modem said on its own that its memory is full (or has room
    /// again): read the level, which may show it, or another memory than
    /// the one received messages go to. A full one stays said until a
    /// reading shows room, should the reading fail.
    pub(super) async fn memory_full_indicated(
        &self,
        conn: &mut Conn,
        full: bool,
    ) -> Result<(), ConnError> {
        self.storage_full_said(full.then(|| "the modem's own indication".to_string()));
        self.read_storage_level(conn).await
    }

    /// Something other than a reading told of a full memory (`Some`), or
    /// of room again (`None`).
    pub(super) fn storage_full_said(&self, said: Option<String>) {
        let (was_full, now_full) = self.with_status_change(|s| s.storage_full_said = said);
        self.say_storage_change(was_full, now_full);
    }

    /// Run `change` on the status; whether the storage was full before it
    /// and is after.
    fn with_status_change(
        &self,
        change: impl FnOnce(&mut super::status::ModemStatus),
    ) -> (bool, bool) {
        let mut transition = (false, false);
        self.set_status(|s| {
            let before = s.storage_full();
            change(s);
            transition = (before, s.storage_full());
        });
        transition
    }

    /// Once when the storage fills up, once when it has room again: the
    /// health says it meanwhile.
    fn say_storage_change(&self, was_full: bool, now_full: bool) {
        let phone_id = &self.config.phone_id;
        match (was_full, now_full) {
            (false, true) => {
                let summary = self
                    .status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .storage_full_summary();
                tracing::warn!(%phone_id, %summary, "modem message storage full; inbound SMS wait at the network")
            }
            (true, false) => {
                tracing::info!(%phone_id, "modem message storage has room again")
            }
            _ => {}
        }
    }
}
