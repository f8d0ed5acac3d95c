//! Sizes and ages for people: `phonerelay status` and the service's
//! STATUS line.

use crate::store::DiskUsage;

/// `database 1.2 MiB + WAL 4.0 MiB, 12.3 GiB free`, with `+ 3 files
/// 2.0 MiB of 1.0 GiB` (their total cap, if any) after the WAL once
/// received files are kept.
pub fn storage_summary(usage: &DiskUsage) -> String {
    let mut out = format!(
        "database {} + WAL {}",
        human_bytes(usage.database_bytes),
        human_bytes(usage.wal_bytes)
    );
    match usage.media_files {
        0 => {}
        1 => out.push_str(&format!(" + 1 file {}", human_bytes(usage.media_bytes))),
        n => out.push_str(&format!(" + {n} files {}", human_bytes(usage.media_bytes))),
    }
    if usage.media_files > 0 && usage.media_max_total_bytes > 0 {
        out.push_str(&format!(" of {}", human_bytes(usage.media_max_total_bytes)));
    }
    if let Some(free) = usage.free_bytes {
        out.push_str(&format!(", {} free", human_bytes(free)));
    }
    out
}

/// Bytes in binary units with one decimal: `512 B`, `4.0 MiB`, `12.3 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A wait in its largest whole unit: `45s`, `12m`, `3h`, `2d`.
pub fn age(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_their_largest_whole_unit() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (86_399, "23h"),
            (2 * 86_400 + 5, "2d"),
        ];
        for (seconds, text) in cases {
            assert_eq!(age(seconds), text);
        }
    }

    #[test]
    fn sizes_read_in_binary_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (4 * 1024 * 1024, "4.0 MiB"),
            (13_207_024_435, "12.3 GiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_bytes(bytes), text);
        }
    }

    #[test]
    fn the_summary_leaves_out_free_space_it_could_not_read() {
        let mut usage = DiskUsage {
            database_bytes: 2048 * 1024,
            wal_bytes: 512,
            media_files: 0,
            media_bytes: 0,
            free_bytes: None,
            ..DiskUsage::default()
        };
        assert_eq!(storage_summary(&usage), "database 2.0 MiB + WAL 512 B");
        usage.free_bytes = Some(3 << 30);
        assert_eq!(
            storage_summary(&usage),
            "database 2.0 MiB + WAL 512 B, 3.0 GiB free"
        );
    }

    #[test]
    fn the_summary_counts_kept_files_once_there_are_some() {
        let mut usage = DiskUsage {
            database_bytes: 2048 * 1024,
            wal_bytes: 512,
            media_files: 1,
            media_bytes: 3 << 20,
            free_bytes: None,
            ..DiskUsage::default()
        };
        assert_eq!(
            storage_summary(&usage),
            "database 2.0 MiB + WAL 512 B + 1 file 3.0 MiB"
        );
        usage.media_files = 12;
        assert_eq!(
            storage_summary(&usage),
            "database 2.0 MiB + WAL 512 B + 12 files 3.0 MiB"
        );
        usage.media_max_total_bytes = 1 << 30;
        assert_eq!(
            storage_summary(&usage),
            "database 2.0 MiB + WAL 512 B + 12 files 3.0 MiB of 1.0 GiB"
        );
    }
}
