//! The open-file limit the daemon runs under. Each HTTP connection takes a
//! file descriptor, and so do the store's files, the modems' ports and the
//! relay link's connections; a shell's soft limit is often 1,024. At start
//! the soft limit is raised to the hard one, as Go's runtime and nginx's
//! `worker_rlimit_nofile` do, and a limit that still leaves too few for
//! `server.max_connections` is named in the log before it bites.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but HTTP connections and the files they
/// stream: the store's database, WAL and shared-memory files for each
/// connection (the writer's, and at most `store::sqlite::pool::MAX_OPEN`
/// readers: 99 in all), serial ports, the relay link and its uploads, logs.
pub const RESERVED: u64 = 256;

/// Descriptors one HTTP connection may hold: its socket, and a kept media
/// file it streams (`GET /api/v1/media/{id}`).
pub const PER_CONNECTION: u64 = 2;

/// Raise the soft open-file limit to the hard one; returns the soft limit
/// in force afterwards (`None` when unlimited).
pub fn raise_to_hard_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Why `open_files` is too low for `max_connections`, if it is.
pub fn shortfall(open_files: Option<u64>, max_connections: u64) -> Option<String> {
    let open_files = open_files?;
    // Saturating: `serve` asks before the config is checked, and a value
    // past any range must reach the check's keyed error, not overflow.
    let needed = PER_CONNECTION
        .saturating_mul(max_connections)
        .saturating_add(RESERVED);
    (open_files < needed).then(|| {
        format!(
            "the open-file limit is {open_files}, below the {needed} that \
             server.max_connections = {max_connections} needs ({PER_CONNECTION} each, for the \
             socket and a file it streams, plus {RESERVED} for the store, modems and relay \
             link): raise LimitNOFILE (systemd) or ulimit -n, or lower server.max_connections"
        )
    })
}

/// At start: raise the limit, and warn if it is still short.
pub fn prepare(max_connections: u64) {
    let open_files = raise_to_hard_limit();
    if let Some(why) = shortfall(open_files, max_connections) {
        tracing::warn!("{why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_past_any_range_is_short_without_overflowing() {
        let why = shortfall(Some(1024), u64::MAX).expect("short");
        assert!(why.contains(&u64::MAX.to_string()), "{why}");
    }

    #[test]
    fn a_limit_with_room_for_the_connections_and_the_reserve_is_enough() {
        assert_eq!(shortfall(Some(2 * 1024 + RESERVED), 1024), None);
        assert!(
            shortfall(Some(1024 + RESERVED), 1024).is_some(),
            "no room for the files the connections stream"
        );
        assert_eq!(shortfall(None, 65_536), None, "unlimited");
    }

    #[test]
    fn a_short_limit_names_both_numbers_and_the_remedies() {
        let why = shortfall(Some(1024), 1024).expect("short");
        assert!(why.contains("1024"), "{why}");
        assert!(why.contains(&(2 * 1024 + RESERVED).to_string()), "{why}");
        assert!(why.contains("LimitNOFILE"), "{why}");
        assert!(why.contains("server.max_connections"), "{why}");
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let after = raise_to_hard_limit();
        assert_eq!(after, getrlimit(Resource::Nofile).maximum);
    }
}
