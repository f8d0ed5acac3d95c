//! Logs go to stderr (journald picks them up under systemd, each line
//! with its priority: `journal.rs`). `RUST_LOG` overrides `log.level`.

mod journal;

use std::time::{Duration, Instant};

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let destination = if journal::stderr_is_journal() {
        Destination::Journal
    } else {
        Destination::Plain {
            colours: colors_wanted(),
        }
    };
    let _ = subscriber(filter, config.format, destination, std::io::stderr).try_init();
}

/// The line that says why the process ends with an error, for stderr: at
/// error priority under journald (unprefixed it was stored at info, and
/// `journalctl -p warning` hid why the daemon stopped or never started).
pub fn fatal_line(message: &dyn std::fmt::Display) -> String {
    fatal_line_for(message, journal::stderr_is_journal())
}

/// [`fatal_line`], to the journal or not. Each line of a message of
/// several (one per config issue) gets the priority: journald reads the
/// stream a line at a time, and an unprefixed line was stored at info.
fn fatal_line_for(message: &dyn std::fmt::Display, to_journal: bool) -> String {
    let prefix = if to_journal {
        journal::priority_prefix(tracing::Level::ERROR)
    } else {
        ""
    };
    format!("{prefix}phonerelay: {message}").replace('\n', &format!("\n{prefix}"))
}

/// Where the lines go, which decides their shape.
#[derive(Debug, Clone, Copy)]
enum Destination {
    /// journald's stream: each line with its priority, no time of ours
    /// (the journal stamps every entry), no colours.
    Journal,
    /// A terminal, a file, a pipe: each line with its time.
    Plain { colours: bool },
}

/// Lines in `format` for `destination`, written to `writer`.
fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    destination: Destination,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match (format, destination) {
        (LogFormat::Text, Destination::Plain { colours }) => {
            Box::new(builder.with_ansi(colours).finish())
        }
        (LogFormat::Json, Destination::Plain { .. }) => Box::new(builder.json().finish()),
        (LogFormat::Text, Destination::Journal) => Box::new(
            builder
                .with_ansi(false)
                .event_format(journal::Prioritised {
                    inner: tracing_subscriber::fmt::format()
                        .without_time()
                        .with_level(false)
                        .with_ansi(false),
                    name_level: true,
                })
                .finish(),
        ),
        // A shipper reading the journal gets the same records as one
        // reading a file, their `timestamp` too, behind the priority.
        (LogFormat::Json, Destination::Journal) => Box::new(
            builder
                .json()
                .event_format(journal::Prioritised {
                    inner: tracing_subscriber::fmt::format().json(),
                    name_level: false,
                })
                .finish(),
        ),
    }
}

/// Whether `level` is a filter `init` will take as meant. `EnvFilter`
/// reads a bare word that is no level name as a target ("warning": all
/// events of a target called `warning`), so a misspelt level parses and
/// silences every log line. Here each directive with `=` must end in a
/// level, and one without must be a level (`info`, `warn`, ...) or a
/// target that is plainly one: this program's (`phonerelay...`) or a
/// module path (`a::b`), as a filter may name to see all of it.
pub fn is_valid_filter(level: &str) -> bool {
    use tracing_subscriber::filter::LevelFilter;
    let is_level = |word: &str| {
        // `LevelFilter` takes "" for `error`; here it is a slip (`info,`).
        !word.is_empty() && word.parse::<LevelFilter>().is_ok()
    };
    let directives_make_sense = level.split(',').all(|directive| {
        let directive = directive.trim();
        match directive.rsplit_once('=') {
            Some((_, level)) => is_level(level.trim()),
            None => {
                is_level(directive)
                    || directive.starts_with("phonerelay")
                    || directive.contains("::")
            }
        }
    });
    directives_make_sense && level.parse::<EnvFilter>().is_ok()
}

/// Colours only for a person at a terminal: under systemd stderr is the
/// journal, where escape codes show as `^[[2m` or make `journalctl` call
/// the line "blob data"; and never when `NO_COLOR` is set (no-color.org).
fn colors_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A [`Throttle`] for a line written from calls that share no state (a
/// handler runs per request, a loop starts again with each link), kept in
/// a `static` beside the line. One process is one daemon, so the
/// throttle is the process's.
pub struct SharedThrottle(std::sync::Mutex<Throttle>);

impl SharedThrottle {
    pub const fn new(every: Duration) -> Self {
        Self(std::sync::Mutex::new(Throttle::new(every)))
    }

    /// [`Throttle::allow`] now.
    pub fn allow(&self) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(Instant::now())
    }
}

/// How often a failure that repeats while something stays broken is
/// logged again, with the count of those held back (docs/architecture.md,
/// "Logs during an outage").
pub const REPEATED_FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Lets a line that would repeat with every request through at most once
/// per `every`, and counts the ones it held back. Pure: time is passed in.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(lines held back since the last one)` if a line may be written
    /// at `now`; `None` if it is held back (and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Under journald every line of a message of several (one per config
    /// issue) has the error priority: `journalctl -p warning` showed the
    /// first issue only.
    #[test]
    fn every_line_of_a_fatal_message_has_its_priority_in_the_journal() {
        let many = "a: wrong\nb: wrong too";
        let prefix = journal::priority_prefix(tracing::Level::ERROR);
        let line = fatal_line_for(&many, true);
        assert!(line.lines().count() == 2, "{line}");
        assert!(line.lines().all(|l| l.starts_with(prefix)), "{line:?}");
        assert_eq!(
            fatal_line_for(&many, false),
            "phonerelay: a: wrong\nb: wrong too"
        );
    }

    /// A writer that keeps what the subscriber writes, for the test.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Kept {
        type Writer = Kept;
        fn make_writer(&'w self) -> Kept {
            self.clone()
        }
    }

    /// The lines one event of each level makes.
    fn lines(format: LogFormat, destination: Destination) -> Vec<String> {
        let kept = Kept::default();
        let subscriber = subscriber(EnvFilter::new("trace"), format, destination, kept.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("broken");
            tracing::warn!("odd");
            tracing::info!("fine");
            tracing::debug!("detail");
            tracing::trace!("more detail");
        });
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn under_journald_a_line_starts_with_its_priority_and_level_and_has_no_time() {
        let lines = lines(LogFormat::Text, Destination::Journal);
        let starts = [
            "<3>ERROR ",
            "<4>WARN ",
            "<6>INFO ",
            "<7>DEBUG ",
            "<7>TRACE ",
        ];
        assert_eq!(lines.len(), starts.len(), "{lines:?}");
        for (line, start) in lines.iter().zip(starts) {
            // The target comes right after the level: no time between.
            let rest = line.strip_prefix(start).unwrap_or_else(|| panic!("{line}"));
            assert!(rest.starts_with("phonerelay::logging::tests: "), "{line}");
            assert!(!line.contains('\x1b'), "{line}");
        }
    }

    #[test]
    fn json_under_journald_is_a_record_behind_its_priority() {
        let lines = lines(LogFormat::Json, Destination::Journal);
        let record: serde_json::Value =
            serde_json::from_str(lines[0].strip_prefix("<3>").expect("<3>")).unwrap();
        assert_eq!(record["level"], "ERROR");
        assert_eq!(record["fields"]["message"], "broken");
        assert!(lines[1].starts_with("<4>{"), "{}", lines[1]);
    }

    #[test]
    fn elsewhere_a_line_starts_with_its_time_and_has_no_priority() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let lines = lines(format, Destination::Plain { colours: false });
            assert_eq!(lines.len(), 5, "{lines:?}");
            for line in lines {
                assert!(!line.starts_with('<'), "{line}");
                let year = if line.starts_with('{') {
                    line.split("\"timestamp\":\"")
                        .nth(1)
                        .unwrap_or("")
                        .to_string()
                } else {
                    line.clone()
                };
                assert!(year.starts_with("20"), "no time: {line}");
            }
        }
    }

    #[test]
    fn a_filter_is_valid_only_if_every_directive_names_a_level() {
        for good in [
            "info",
            "WARN",
            "off",
            "warn,phonerelay=debug",
            "phonerelay::relay=trace",
            // Bare targets, all of their events: taken before this check.
            "phonerelay",
            "info,phonerelay_sms",
            "hyper::proto",
        ] {
            assert!(is_valid_filter(good), "{good}");
        }
        for bad in [
            "warning",
            "verbose",
            "",
            "info,",
            "phonerelay=loud",
            "info,debugg",
        ] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn a_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(60));
        assert_eq!(throttle.allow(start), Some(0));
        for s in 1..60 {
            assert_eq!(throttle.allow(start + Duration::from_secs(s)), None);
        }
        assert_eq!(throttle.allow(start + Duration::from_secs(60)), Some(59));
        assert_eq!(throttle.allow(start + Duration::from_secs(61)), None);
        assert_eq!(throttle.allow(start + Duration::from_secs(200)), Some(1));
    }
}
