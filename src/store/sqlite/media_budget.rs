//! The room kept files may take: `storage.max_media_total_bytes` in all,
//! and never the last `storage.media_min_free_bytes` of the store's disk.
//! Files are optional; a full disk stops every commit, and with it every
//! message. A file is given its room before anything of it is written.
//!
//! The total is a running one: the sum of the rows' sizes (those whose
//! file the start-up sweep found gone left out), read once when
//! the store opens, then kept up to date as files are reserved, kept,
//! given up and pruned. A `SUM` per file would be cheap too (one row per
//! file), but a read of the committed rows cannot see the saves under way,
//! which have not committed yet: two racing saves would each pass a cap
//! they pass together. Here each reserves its bytes under one lock before
//! it writes, so the cap is never passed.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::MediaRefusal;

/// `storage.max_media_total_bytes` (0: no total cap) and
/// `storage.media_min_free_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRoom {
    pub max_total_bytes: u64,
    pub min_free_bytes: u64,
}

impl Default for MediaRoom {
    fn default() -> Self {
        Self {
            max_total_bytes: crate::config::DEFAULT_MAX_MEDIA_TOTAL_BYTES,
            min_free_bytes: crate::config::DEFAULT_MEDIA_MIN_FREE_BYTES,
        }
    }
}

/// What the budget holds now, for the status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRoomState {
    pub room: MediaRoom,
    /// Set while new files are refused: the last one offered was, and one
    /// of its size would be again now.
    pub refusing: Option<MediaRefusal>,
}

#[derive(Debug, Default)]
struct Tally {
    /// The committed rows' bytes and those reserved by saves under way.
    total: u64,
    /// Reserved by saves under way: their files may not be on disk yet,
    /// so a free-space reading does not show them. Taken off it. A file
    /// written but not yet committed is counted twice so, which refuses
    /// early by at most the files under way, never late.
    in_flight: u64,
    /// The size of the last file offered, while it was refused.
    last_refused: Option<u64>,
}

#[derive(Debug)]
pub struct MediaBudget {
    room: MediaRoom,
    tally: Mutex<Tally>,
}

/// Why `size` more bytes do not fit, given what is kept and reserved and
/// the free space read (`None`: unreadable, and so not held against the
/// file; the total cap still bounds the files).
fn refusal(room: MediaRoom, tally: &Tally, size: u64, free: Option<u64>) -> Option<MediaRefusal> {
    if room.max_total_bytes != 0 && tally.total.saturating_add(size) > room.max_total_bytes {
        return Some(MediaRefusal::TotalCap);
    }
    let free = free?;
    let left = free
        .saturating_sub(tally.in_flight)
        .checked_sub(size)
        .filter(|left| *left >= room.min_free_bytes);
    left.is_none().then_some(MediaRefusal::LowDisk)
}

impl MediaBudget {
    /// A budget whose committed files take `kept_bytes` (their rows' sum).
    pub fn new(room: MediaRoom, kept_bytes: u64) -> Self {
        Self {
            room,
            tally: Mutex::new(Tally {
                total: kept_bytes,
                ..Tally::default()
            }),
        }
    }

    /// This budget's files under other limits (the config's, given after
    /// the store opened).
    pub fn with_room(&self, room: MediaRoom) -> Self {
        Self::new(room, self.tally().total)
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        // A panic under the lock leaves plain counts: still usable.
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for a file of `size` bytes, with `free()` bytes free on the
    /// store's filesystem: reserved until the returned guard is kept or
    /// dropped, or why there is none. The free space is read under the
    /// lock: a reading taken before another save settled would not show
    /// that save's file, which is no longer taken off it as under way.
    pub fn reserve(
        self: &Arc<Self>,
        size: u64,
        free: impl FnOnce() -> Option<u64>,
    ) -> Result<Reservation, MediaRefusal> {
        let mut tally = self.tally();
        if let Some(reason) = refusal(self.room, &tally, size, free()) {
            tally.last_refused = Some(size);
            return Err(reason);
        }
        tally.last_refused = None;
        tally.total = tally.total.saturating_add(size);
        tally.in_flight = tally.in_flight.saturating_add(size);
        Ok(Reservation {
            budget: self.clone(),
            size,
            kept: false,
        })
    }

    /// Files whose rows were deleted (pruned) give their room back.
    pub fn release(&self, bytes: u64) {
        let mut tally = self.tally();
        tally.total = tally.total.saturating_sub(bytes);
    }

    /// Files found again that a sweep had found gone (put back by hand)
    /// take their room once more, fitting or not: they are on the disk.
    pub fn count_found_again(&self, bytes: u64) {
        let mut tally = self.tally();
        tally.total = tally.total.saturating_add(bytes);
    }

    /// The room and whether new files are refused, with `free` bytes free.
    pub fn state(&self, free: Option<u64>) -> MediaRoomState {
        let tally = self.tally();
        let refusing = tally
            .last_refused
            .and_then(|size| refusal(self.room, &tally, size, free));
        MediaRoomState {
            room: self.room,
            refusing,
        }
    }

    fn settle(&self, size: u64, kept: bool) {
        let mut tally = self.tally();
        tally.in_flight = tally.in_flight.saturating_sub(size);
        if !kept {
            tally.total = tally.total.saturating_sub(size);
        }
    }
}

/// Room held for one file being saved: given back when dropped, unless
/// the file was kept.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MediaBudget>,
    size: u64,
    kept: bool,
}

impl Reservation {
    /// The file's row committed (or may have): its bytes stay counted.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.settle(self.size, self.kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn budget(max_total_bytes: u64, min_free_bytes: u64, kept: u64) -> Arc<MediaBudget> {
        let room = MediaRoom {
            max_total_bytes,
            min_free_bytes,
        };
        Arc::new(MediaBudget::new(room, kept))
    }

    #[test]
    fn a_file_that_would_pass_the_total_cap_is_refused_and_one_that_fits_is_not() {
        let budget = budget(100, 0, 60);
        let free = Some(GIB);
        assert_eq!(
            budget.reserve(41, || free).unwrap_err(),
            MediaRefusal::TotalCap
        );
        budget.reserve(40, || free).unwrap().keep();
        assert_eq!(
            budget.reserve(1, || free).unwrap_err(),
            MediaRefusal::TotalCap
        );
    }

    #[test]
    fn no_total_cap_is_kept_when_it_is_0() {
        let budget = budget(0, 0, u64::MAX - 1);
        budget.reserve(1, || Some(GIB)).unwrap().keep();
    }

    #[test]
    fn a_file_that_would_leave_less_than_the_floor_free_is_refused() {
        let budget = budget(0, 100, 0);
        assert_eq!(
            budget.reserve(51, || Some(150)).unwrap_err(),
            MediaRefusal::LowDisk
        );
        assert_eq!(
            budget.reserve(1, || Some(99)).unwrap_err(),
            MediaRefusal::LowDisk
        );
        budget.reserve(50, || Some(150)).unwrap().keep();
        // Unreadable free space is not held against a file.
        budget.reserve(50, || None).unwrap().keep();
    }

    /// Two saves under way at once: the second sees the first's bytes,
    /// against the cap and against the free space its file has not taken
    /// yet.
    #[test]
    fn saves_under_way_count_against_both_limits() {
        let capped = budget(100, 0, 0);
        let first = capped.reserve(60, || Some(GIB)).unwrap();
        assert_eq!(
            capped.reserve(60, || Some(GIB)).unwrap_err(),
            MediaRefusal::TotalCap
        );
        drop(first);
        let again = capped.reserve(60, || Some(GIB)).unwrap();

        let floored = budget(0, 100, 0);
        let first = floored.reserve(60, || Some(200)).unwrap();
        assert_eq!(
            floored.reserve(60, || Some(200)).unwrap_err(),
            MediaRefusal::LowDisk
        );
        first.keep();
        drop(again);
    }

    /// Read before the lock, the free space could miss the file of a save
    /// that settled in between (no longer taken off it as under way, not
    /// yet shown by the reading): both could pass the floor.
    #[test]
    fn the_free_space_is_read_under_the_lock() {
        let budget = budget(0, 100, 0);
        let mut locked = None;
        budget
            .reserve(1, || {
                locked = Some(budget.tally.try_lock().is_err());
                Some(GIB)
            })
            .unwrap()
            .keep();
        assert_eq!(locked, Some(true));
    }

    #[test]
    fn a_file_given_up_frees_its_room_and_a_pruned_one_too() {
        let budget = budget(100, 0, 0);
        drop(budget.reserve(100, || None).unwrap());
        budget.reserve(100, || None).unwrap().keep();
        assert!(budget.reserve(1, || None).is_err());
        budget.release(30);
        budget.reserve(30, || None).unwrap().keep();
    }

    #[test]
    fn files_are_refused_while_the_last_one_offered_would_be_refused_again() {
        let budget = budget(100, 0, 90);
        assert_eq!(budget.state(None).refusing, None);
        budget.reserve(20, || None).unwrap_err();
        assert_eq!(budget.state(None).refusing, Some(MediaRefusal::TotalCap));
        // Room freed (retention): a file of that size fits again.
        budget.release(20);
        assert_eq!(budget.state(None).refusing, None);
        budget.reserve(80, || None).unwrap_err();
        // A smaller file was kept after it: files are taken again.
        budget.reserve(5, || None).unwrap().keep();
        assert_eq!(budget.state(None).refusing, None);
    }
}
