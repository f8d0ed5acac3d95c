//! Logs go to stderr (journald picks them up under systemd). `RUST_LOG`
//! overrides `log.level`.

use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colors_wanted())
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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
    use super::*;

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
