//! The cursors that say a long message's parts were committed: its
//! committed-parts record (`inbound::CommittedParts`), kept while its
//! slots are freed, and the parts committed lately
//! (`inbound::RECENT_PARTS_CURSOR`), kept for a day after. Either is
//! written with its message in one transaction
//! (`EventSink::deliver_inbound_with_cursors`): written apart, a crash or a
//! failed write between the two left the message committed and its parts
//! unnamed, and a part read again came out as a second, partial message.
//!
//! A new value is made from the old one, read first. Nothing writes these
//! cursors between that read and the write: only this driver does, and
//! one driver task owns a modem and its inbound.

use phonerelay_channel::{CursorWrite, SinkError};

use super::{Driver, inbound, unix_now_ms};

impl Driver {
    /// `parts`' committed-parts record with their fingerprints added, to
    /// be written with their message. Another message's there (a crash
    /// left them, and the 8-bit reference came round again) stay.
    pub(super) async fn committed_parts_kept(
        &self,
        parts: &inbound::CommittedParts,
    ) -> Result<CursorWrite, SinkError> {
        let before = self.sink.load_cursor(&parts.name).await?;
        let after =
            inbound::with_fingerprints(&before.unwrap_or_default(), &parts.fingerprints, true);
        Ok(CursorWrite::new(&parts.name, after))
    }

    /// Take `parts`' fingerprints off their committed-parts record, once
    /// their slots are all freed; another message's stay.
    pub(super) async fn forget_committed_parts(
        &self,
        parts: &inbound::CommittedParts,
    ) -> Result<(), SinkError> {
        let before = self
            .sink
            .load_cursor(&parts.name)
            .await?
            .unwrap_or_default();
        let after = inbound::with_fingerprints(&before, &parts.fingerprints, false);
        if after != before {
            self.sink.save_cursor(&parts.name, &after).await?;
        }
        Ok(())
    }

    /// The parts committed lately with `parts` added as committed now.
    pub(super) async fn recent_parts_noted(
        &self,
        parts: &inbound::CommittedParts,
    ) -> Result<CursorWrite, SinkError> {
        let before = self
            .sink
            .load_cursor(inbound::RECENT_PARTS_CURSOR)
            .await?
            .unwrap_or_default();
        let after = inbound::recent_with(&before, &parts.fingerprints, unix_now_ms());
        Ok(CursorWrite::new(inbound::RECENT_PARTS_CURSOR, after))
    }

    /// Note `parts` as committed lately, on their own: for a message
    /// committed earlier, whose slots are all freed now.
    pub(super) async fn note_recent_parts(
        &self,
        parts: &inbound::CommittedParts,
    ) -> Result<(), SinkError> {
        let noted = self.recent_parts_noted(parts).await?;
        self.sink.save_cursor(&noted.name, &noted.value).await
    }
}
