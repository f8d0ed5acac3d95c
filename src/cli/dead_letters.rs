//! `phonerelay inbound retry --all`: every dead letter its filters match
//! back in the queue at once, after a relay's bad spell refused many.

use std::time::Duration;

use clap::Args;
use phonerelay_channel::ChannelKind;

use crate::clock::{now_ms, parse_rfc3339};
use crate::exit::ExitError;
use crate::store::{DeadLetterFilter, Store};

/// Up to this many requeued ids are printed; past it only their count,
/// which a terminal can take in.
const IDS_SHOWN_UP_TO: usize = 20;

/// What `--all` takes: every dead letter, or those the filters given
/// match. Judged by clap, so a wrong one is a usage error naming its flag
/// (exit 2) before the store is opened. Each conflicts with an id rather
/// than requires `--all`: clap counts a flag's default (false) as given.
#[derive(Debug, Args)]
pub struct DeadFilters {
    /// With --all: only dead letters with this error code, as `inbound
    /// dead` shows it (relay_http_422, no_route)
    #[arg(long, conflicts_with = "id", value_parser = parse_code)]
    pub code: Option<String>,
    /// With --all: only dead letters made since this long ago (30m, 12h,
    /// 7d) or this RFC 3339 time (2026-11-28T14:00:00Z): when the relay
    /// refused them, not when they came
    #[arg(long, value_name = "DURATION_OR_RFC3339", conflicts_with = "id", value_parser = parse_since)]
    pub since: Option<Since>,
    /// With --all: only dead letters that came on this channel
    #[arg(long, conflicts_with = "id", value_parser = super::messages::listed_channels())]
    pub channel: Option<String>,
}

/// `--since` as given: a time, or how long before the command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    AtMs(i64),
}

impl Since {
    fn as_ms(self, now_ms: i64) -> i64 {
        match self {
            Since::Ago(ago) => {
                now_ms.saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
            }
            Since::AtMs(at) => at,
        }
    }
}

/// An error code as the forwarder records them (`DeadLetterFilter::is_error_code`).
fn parse_code(code: &str) -> Result<String, String> {
    if DeadLetterFilter::is_error_code(code) {
        Ok(code.to_string())
    } else {
        Err(
            "not an error code as `inbound dead` shows them (lower-case letters, digits and _, \
             like relay_http_422 or no_route)"
                .into(),
        )
    }
}

fn parse_since(text: &str) -> Result<Since, String> {
    if let Some(at) = parse_rfc3339(text) {
        return Ok(Since::AtMs(at));
    }
    parse_duration(text).map(Since::Ago).ok_or_else(|| {
        "neither a duration (a whole number and s, m, h or d: 30m, 12h, 7d) nor an RFC 3339 \
         time (2026-11-28T14:00:00Z)"
            .into()
    })
}

/// `30m`, `12h`, `7d`: one whole number and one unit.
fn parse_duration(text: &str) -> Option<Duration> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

impl DeadFilters {
    fn filter(&self, now_ms: i64) -> DeadLetterFilter {
        DeadLetterFilter {
            code: self.code.clone(),
            since_ms: self.since.map(|since| since.as_ms(now_ms)),
            // Only the names clap let through, all of them channels.
            channel: self
                .channel
                .as_deref()
                .and_then(|c| c.parse::<ChannelKind>().ok()),
            phone_id: None,
        }
    }
}

/// Requeue every dead letter `filters` match, in one store transaction,
/// and say which (or how many). None matching is no failure: exit 0.
pub async fn retry_all(store: &dyn Store, filters: &DeadFilters) -> Result<(), ExitError> {
    let now = now_ms();
    let requeued = store
        .retry_dead_relay_inbound(filters.filter(now), now)
        .await
        .map_err(|e| ExitError::Runtime(e.to_string()))?;
    out!("{}", report(&requeued));
    Ok(())
}

fn report(requeued: &[String]) -> String {
    let n = requeued.len();
    if n == 0 {
        return "no dead letters matched\n".into();
    }
    let mut text = String::new();
    if n <= IDS_SHOWN_UP_TO {
        for id in requeued {
            text.push_str(&format!("{id} queued for the relay again\n"));
        }
    }
    let letters = if n == 1 {
        "dead letter"
    } else {
        "dead letters"
    };
    text.push_str(&format!("{n} {letters} queued for the relay again\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_an_rfc3339_time() {
        assert_eq!(
            parse_since("30m"),
            Ok(Since::Ago(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse_since("7d"),
            Ok(Since::Ago(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(Since::AtMs(1000)));
        for bad in [
            "",
            "30",
            "m",
            "1h30m",
            "-5m",
            "5 m",
            "5y",
            "99999999999999999999d",
            "yesterday",
        ] {
            assert!(parse_since(bad).is_err(), "{bad:?} taken");
        }
        assert_eq!(Since::Ago(Duration::from_secs(2)).as_ms(10_000), 8_000);
    }

    #[test]
    fn code_takes_what_the_forwarder_records() {
        for good in ["relay_http_422", "no_route", "relay_unreachable"] {
            assert_eq!(parse_code(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "Relay_HTTP_422",
            "422",
            "relay http",
            "relay-http-422",
            "é",
        ] {
            assert!(parse_code(bad).is_err(), "{bad:?} taken");
        }
    }

    #[test]
    fn many_requeued_are_counted_not_listed() {
        assert_eq!(report(&[]), "no dead letters matched\n");
        assert_eq!(
            report(&["a".into()]),
            "a queued for the relay again\n1 dead letter queued for the relay again\n"
        );
        let many: Vec<String> = (0..=IDS_SHOWN_UP_TO).map(|i| i.to_string()).collect();
        let counted = format!("{} dead letters queued for the relay again\n", many.len());
        assert_eq!(report(&many), counted);
    }
}
