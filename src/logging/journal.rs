//! Lines for journald's stream reader. Under systemd stderr is a stream
//! to journald, which takes a leading `<N>` (sd-daemon(3)) as the line's
//! syslog priority and stamps each entry itself: without the prefix
//! every line is stored at info priority, so `journalctl -p err` finds no
//! error, and a timestamp of our own is written twice.

use std::ffi::OsStr;
use std::fmt::{self, Write};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is the stream systemd connected to journald: it sets
/// `JOURNAL_STREAM` to that stream's `device:inode` (systemd.exec(5)). The
/// variable alone is not enough, as a child started from a service
/// inherits it with stderr sent elsewhere (a pipe, a file).
pub(super) fn stderr_is_journal() -> bool {
    is_journal_stream(
        std::env::var_os("JOURNAL_STREAM").as_deref(),
        stderr_identity(),
    )
}

/// Whether `journal_stream` (`JOURNAL_STREAM`'s value) names `stderr`,
/// the `(device, inode)` of the process's standard error.
fn is_journal_stream(journal_stream: Option<&OsStr>, stderr: Option<(u64, u64)>) -> bool {
    let named = journal_stream
        .and_then(OsStr::to_str)
        .and_then(|value| value.split_once(':'))
        .and_then(|(device, inode)| Some((device.parse().ok()?, inode.parse().ok()?)));
    named.is_some() && named == stderr
}

/// The `(device, inode)` of standard error, from `fstat` on a copy of it.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// The sd-daemon(3) prefix journald reads as a line's priority. Trace
/// goes with debug: syslog has nothing below it.
pub(super) fn priority_prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// `inner`'s lines, each with its event's priority prefix: journald reads
/// a stream line by line, so a line after a newline in a message needs
/// one too, or it is stored at info priority. With `name_level`, the
/// level's name (`WARN`) follows the first prefix, for `inner` formats
/// without it (the text format, whose padded level would begin the
/// journal's message with a space).
pub(super) struct Prioritised<F> {
    pub inner: F,
    pub name_level: bool,
}

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let mut lines = PrefixedLines {
            out: &mut writer,
            prefix: priority_prefix(level),
            at_line_start: true,
        };
        if self.name_level {
            write!(lines, "{level} ")?;
        }
        self.inner.format_event(ctx, Writer::new(&mut lines), event)
    }
}

/// Writes `prefix` before the first character of every line.
struct PrefixedLines<'w, W> {
    out: &'w mut W,
    prefix: &'static str,
    at_line_start: bool,
}

impl<W: Write> Write for PrefixedLines<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for line in text.split_inclusive('\n') {
            if self.at_line_start {
                self.out.write_str(self.prefix)?;
            }
            self.out.write_str(line)?;
            self.at_line_start = line.ends_with('\n');
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_the_journal_only_when_journal_stream_names_its_device_and_inode() {
        let stderr = Some((64769, 123456));
        let set = |value: &str| is_journal_stream(Some(OsStr::new(value)), stderr);
        assert!(set("64769:123456"));
        // Unset: not under systemd, or run by hand from a service's shell.
        assert!(!is_journal_stream(None, stderr));
        // Inherited by a process whose stderr goes elsewhere.
        assert!(!set("64769:654321"));
        assert!(!set("1:123456"));
        for malformed in ["", "64769", "64769:", ":123456", "x:y", "64769:123456:7"] {
            assert!(!set(malformed), "{malformed:?}");
        }
        // Standard error closed: nothing to compare.
        assert!(!is_journal_stream(Some(OsStr::new("64769:123456")), None));
    }

    #[test]
    fn each_level_has_its_syslog_priority() {
        assert_eq!(priority_prefix(Level::ERROR), "<3>");
        assert_eq!(priority_prefix(Level::WARN), "<4>");
        assert_eq!(priority_prefix(Level::INFO), "<6>");
        assert_eq!(priority_prefix(Level::DEBUG), "<7>");
        assert_eq!(priority_prefix(Level::TRACE), "<7>");
    }

    #[test]
    fn every_line_of_a_text_gets_the_prefix() {
        let mut out = String::new();
        let mut lines = PrefixedLines {
            out: &mut out,
            prefix: "<3>",
            at_line_start: true,
        };
        lines.write_str("first\nsec").unwrap();
        lines.write_str("ond\n").unwrap();
        lines.write_str("\nlast\n").unwrap();
        assert_eq!(out, "<3>first\n<3>second\n<3>\n<3>last\n");
    }
}
