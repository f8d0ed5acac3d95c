use std::net::SocketAddr;

use phonerelay_channel::{ChannelKind, ConfigIssue};

use super::defaults::{
    MAX_ATTACHMENT_MAX_BYTES, MAX_BURST, MAX_BURST_REFILL_SECONDS, MAX_COMMIT_DELAY_MS,
    MAX_CONCURRENCY, MAX_LEASE_SECONDS, MAX_MAX_CONNECTIONS, MAX_MAX_MEDIA_BYTES,
    MAX_MEDIA_MIN_FREE_BYTES, MAX_PER_SECOND, MAX_RETENTION_DAYS, MAX_SHUTDOWN_GRACE_SECONDS,
    MAX_TIMEOUT_SECONDS, MAX_TTL_LIMIT_SECONDS, MIN_PER_SECOND,
};
use super::load::LoadedConfig;

/// The room kept files may take: a total cap smaller than one file would
/// refuse files `max_media_bytes` lets through, and a floor past any disk
/// would refuse every file.
fn media_room(issues: &mut Vec<ConfigIssue>, storage: &super::StorageConfig) {
    let total = storage.max_media_total_bytes;
    if total != 0 && total < storage.max_media_bytes {
        issues.push(ConfigIssue::new(
            "storage.max_media_total_bytes",
            format!(
                "must be 0 (no total cap) or at least storage.max_media_bytes ({})",
                storage.max_media_bytes
            ),
        ));
    }
    if storage.media_min_free_bytes > MAX_MEDIA_MIN_FREE_BYTES {
        issues.push(ConfigIssue::new(
            "storage.media_min_free_bytes",
            format!("must be at most {MAX_MEDIA_MIN_FREE_BYTES} (1 PiB)"),
        ));
    }
}

/// Check the whole config without side effects; an empty list means valid.
pub fn validate(loaded: &LoadedConfig) -> Vec<ConfigIssue> {
    validate_with(loaded, &[])
}

/// As [`validate`], knowing of endpoints added outside the config file
/// (the daemon's embedders and tests add channels in code).
pub fn validate_with(loaded: &LoadedConfig, extra_phone_ids: &[String]) -> Vec<ConfigIssue> {
    let config = &loaded.config;
    let mut issues = Vec::new();
    if config.server.listen.parse::<SocketAddr>().is_err() {
        issues.push(ConfigIssue::new(
            "server.listen",
            "not an IP:port address (e.g. 127.0.0.1:8686)",
        ));
    }
    for (key, bytes) in [
        ("server.max_body_bytes", config.server.max_body_bytes),
        (
            "server.max_webhook_body_bytes",
            config.server.max_webhook_body_bytes,
        ),
    ] {
        if bytes < 1024 {
            issues.push(ConfigIssue::new(key, "must be at least 1024"));
        }
    }
    positive(
        &mut issues,
        "server.request_timeout_seconds",
        config.server.request_timeout_seconds,
    );
    if config.server.shutdown_grace_seconds > MAX_SHUTDOWN_GRACE_SECONDS {
        issues.push(ConfigIssue::new(
            "server.shutdown_grace_seconds",
            format!("must be at most {MAX_SHUTDOWN_GRACE_SECONDS}"),
        ));
    }
    if !(1..=MAX_MAX_CONNECTIONS).contains(&config.server.max_connections) {
        issues.push(ConfigIssue::new(
            "server.max_connections",
            format!("must be from 1 to {MAX_MAX_CONNECTIONS}"),
        ));
    }

    // Read as written, from the config file's folder: a path that cannot
    // be what was meant is refused, not made (`config_path_issue`).
    if let Some(why) = phonerelay_channel::config_path_issue(&config.storage.state_dir) {
        issues.push(ConfigIssue::new("storage.state_dir", why));
    }
    if let Some(file) = &config.relay.key_file
        && let Some(why) = phonerelay_channel::config_path_issue(file)
    {
        issues.push(ConfigIssue::new("relay.key_file", why));
    }
    if config.storage.retention_days > MAX_RETENTION_DAYS {
        issues.push(ConfigIssue::new(
            "storage.retention_days",
            format!("must be at most {MAX_RETENTION_DAYS} (0 keeps everything)"),
        ));
    }
    if config.storage.commit_delay_ms > MAX_COMMIT_DELAY_MS {
        issues.push(ConfigIssue::new(
            "storage.commit_delay_ms",
            format!("must be at most {MAX_COMMIT_DELAY_MS}"),
        ));
    }
    if config.storage.max_media_bytes > MAX_MAX_MEDIA_BYTES {
        issues.push(ConfigIssue::new(
            "storage.max_media_bytes",
            format!("must be at most {MAX_MAX_MEDIA_BYTES} (256 MiB; 0 keeps no files)"),
        ));
    }
    media_room(&mut issues, &config.storage);

    let attachments = &config.attachments;
    if !(1..=MAX_ATTACHMENT_MAX_BYTES).contains(&attachments.max_bytes) {
        issues.push(ConfigIssue::new(
            "attachments.max_bytes",
            format!("must be from 1 to {MAX_ATTACHMENT_MAX_BYTES} (256 MiB)"),
        ));
    }
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&attachments.timeout_seconds) {
        issues.push(ConfigIssue::new(
            "attachments.timeout_seconds",
            format!("must be from 1 to {MAX_TIMEOUT_SECONDS}"),
        ));
    }

    let outbox = &config.outbox;
    positive(
        &mut issues,
        "outbox.default_ttl_seconds",
        outbox.default_ttl_seconds,
    );
    positive(&mut issues, "outbox.lease_seconds", outbox.lease_seconds);
    if outbox.lease_seconds > MAX_LEASE_SECONDS {
        issues.push(ConfigIssue::new(
            "outbox.lease_seconds",
            format!("must be at most {MAX_LEASE_SECONDS} (a day)"),
        ));
    }
    positive(
        &mut issues,
        "outbox.send_timeout_seconds",
        outbox.send_timeout_seconds,
    );
    positive(
        &mut issues,
        "outbox.expiry_sweep_seconds",
        outbox.expiry_sweep_seconds,
    );
    positive(
        &mut issues,
        "outbox.retry_initial_ms",
        outbox.retry_initial_ms,
    );
    if outbox.max_attempts == 0 {
        issues.push(ConfigIssue::new(
            "outbox.max_attempts",
            "must be at least 1",
        ));
    }
    if outbox.max_ttl_seconds > MAX_TTL_LIMIT_SECONDS {
        issues.push(ConfigIssue::new(
            "outbox.max_ttl_seconds",
            format!("must be at most {MAX_TTL_LIMIT_SECONDS} (a year)"),
        ));
    }
    if outbox.default_ttl_seconds > outbox.max_ttl_seconds {
        issues.push(ConfigIssue::new(
            "outbox.default_ttl_seconds",
            "is larger than outbox.max_ttl_seconds",
        ));
    }
    if outbox.retry_max_ms < outbox.retry_initial_ms {
        issues.push(ConfigIssue::new(
            "outbox.retry_max_ms",
            "is smaller than outbox.retry_initial_ms",
        ));
    }
    if outbox.send_timeout_seconds >= outbox.lease_seconds {
        issues.push(ConfigIssue::new(
            "outbox.send_timeout_seconds",
            "must be shorter than outbox.lease_seconds: a lease outlasts the send it covers",
        ));
    }
    for (name, limit) in &outbox.limits {
        let key = format!("outbox.limits.{name}");
        let known_phone =
            configured_phone_ids(loaded).contains(name) || extra_phone_ids.contains(name);
        match name.parse::<ChannelKind>() {
            // The relay itself: no endpoint is of its kind, and the limit
            // would apply to nothing.
            Ok(ChannelKind::Pchat) if !known_phone => issues.push(ConfigIssue::new(
                &key,
                "pchat is the relay, not an endpoint: nothing is sent on it here, so no limit \
                 applies to it",
            )),
            Ok(_) => {}
            Err(_) if !known_phone => issues.push(ConfigIssue::new(
                &key,
                "is neither a channel name nor a configured phone_id",
            )),
            Err(_) => {}
        }
        if let Some(concurrency) = limit.concurrency
            && !(1..=MAX_CONCURRENCY).contains(&concurrency)
        {
            issues.push(ConfigIssue::new(
                format!("{key}.concurrency"),
                format!("must be from 1 to {MAX_CONCURRENCY}"),
            ));
        }
        // Also refuses NaN, which no range contains.
        if !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&limit.per_second) {
            issues.push(ConfigIssue::new(
                format!("{key}.per_second"),
                format!("must be from {MIN_PER_SECOND} to {MAX_PER_SECOND}"),
            ));
        }
        // Measured against a rate that is one (a wrong rate is said above).
        let rate_valid = (MIN_PER_SECOND..=MAX_PER_SECOND).contains(&limit.per_second);
        let refill_seconds = f64::from(limit.burst.saturating_sub(1)) / limit.per_second;
        let refills = !rate_valid || refill_seconds <= MAX_BURST_REFILL_SECONDS;
        if !(1..=MAX_BURST).contains(&limit.burst) || !refills {
            issues.push(ConfigIssue::new(
                format!("{key}.burst"),
                format!(
                    "must be from 1 to {MAX_BURST}, and refill within {MAX_BURST_REFILL_SECONDS} s \
                     at per_second (burst - 1 at most per_second times that)"
                ),
            ));
        }
    }
    if !crate::logging::is_valid_filter(&config.log.level) {
        issues.push(ConfigIssue::new(
            "log.level",
            "must be a level (error, warn, info, debug, trace, off) or directives \
             such as \"info,phonerelay::relay=debug\"",
        ));
    }
    issues.extend(crate::channels::validate(loaded));
    validate_relay(&config.relay, &mut issues);
    check_ceilings(config, &mut issues);
    issues
}

/// Durations the daemon adds to clock readings or multiplies into
/// milliseconds have a ceiling, so a value meant in other units (or a
/// typo) is refused here rather than overflow at run time. The keys with
/// a ceiling of their own (`lease_seconds`, `max_ttl_seconds`,
/// `retention_days`...) are checked where they are.
fn check_ceilings(config: &super::model::Config, issues: &mut Vec<ConfigIssue>) {
    use super::defaults::{
        MAX_INTERVAL_MS, MAX_INTERVAL_SECONDS, MAX_RETENTION_DAYS, MAX_TIMEOUT_SECONDS,
    };
    let (server, outbox, relay) = (&config.server, &config.outbox, &config.relay);
    for (key, value, max, unit) in [
        (
            "server.request_timeout_seconds",
            server.request_timeout_seconds,
            MAX_TIMEOUT_SECONDS,
            "an hour",
        ),
        (
            "outbox.expiry_sweep_seconds",
            outbox.expiry_sweep_seconds,
            MAX_INTERVAL_SECONDS,
            "a day",
        ),
        (
            "outbox.retry_initial_ms",
            outbox.retry_initial_ms,
            MAX_INTERVAL_MS,
            "a day",
        ),
        (
            "outbox.retry_max_ms",
            outbox.retry_max_ms,
            MAX_INTERVAL_MS,
            "a day",
        ),
        (
            "relay.poll_timeout_seconds",
            relay.poll_timeout_seconds,
            MAX_TIMEOUT_SECONDS,
            "an hour",
        ),
        (
            "relay.request_timeout_seconds",
            relay.request_timeout_seconds,
            MAX_TIMEOUT_SECONDS,
            "an hour",
        ),
        (
            "relay.heartbeat_seconds",
            relay.heartbeat_seconds,
            MAX_INTERVAL_SECONDS,
            "a day",
        ),
        (
            "relay.settings_poll_seconds",
            relay.settings_poll_seconds,
            MAX_INTERVAL_SECONDS,
            "a day",
        ),
        (
            "relay.status_interval_ms",
            relay.status_interval_ms,
            MAX_INTERVAL_MS,
            "a day",
        ),
        (
            "relay.retry_initial_ms",
            relay.retry_initial_ms,
            MAX_INTERVAL_MS,
            "a day",
        ),
        (
            "relay.retry_max_ms",
            relay.retry_max_ms,
            MAX_INTERVAL_MS,
            "a day",
        ),
        (
            "relay.routing.conversation_ttl_days",
            relay.routing.conversation_ttl_days,
            MAX_RETENTION_DAYS,
            "a hundred years",
        ),
        (
            "relay.routing.unsettled_wait_seconds",
            relay.routing.unsettled_wait_seconds,
            MAX_INTERVAL_SECONDS,
            "a day",
        ),
    ] {
        if value > max {
            issues.push(ConfigIssue::new(
                key,
                format!("must be at most {max} ({unit})"),
            ));
        }
    }
}

/// `relay.upload_give_up_after`: at least one failed upload (0 would
/// leave every file out untried), and not so many that it never comes.
fn validate_upload_give_up_after(value: u32, issues: &mut Vec<ConfigIssue>) {
    use super::defaults::MAX_RELAY_UPLOAD_GIVE_UP_AFTER;
    if !(1..=MAX_RELAY_UPLOAD_GIVE_UP_AFTER).contains(&value) {
        issues.push(ConfigIssue::new(
            "relay.upload_give_up_after",
            format!("must be from 1 to {MAX_RELAY_UPLOAD_GIVE_UP_AFTER} (failed uploads)"),
        ));
    }
}

/// Whether `url` can be a relay's base URL (`relay.url`, `pair --relay`):
/// parsed as the client will use it, so a port out of range or a missing
/// host fails when it is given, not at every request of the link. The
/// request paths are appended to it, so it carries no query or fragment.
/// Nor a user or password: the URL is printed (`check`, the link's log
/// lines, `pair`) and stored with the pairing, and the bridge authenticates
/// with the relay key anyway.
pub fn is_relay_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some_and(|h| !h.is_empty())
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
    }) && !url.contains(char::is_whitespace)
}

fn validate_relay(relay: &super::model::RelayConfig, issues: &mut Vec<ConfigIssue>) {
    if let Some(url) = &relay.url
        && !is_relay_url(url)
    {
        issues.push(ConfigIssue::new(
            "relay.url",
            "must be an http:// or https:// URL with a host and no user, password, query or fragment",
        ));
    }
    if let Some(phone_id) = &relay.phone_id
        && (phone_id.trim().is_empty() || phone_id.len() > 128)
    {
        issues.push(ConfigIssue::new(
            "relay.phone_id",
            "must be 1 to 128 characters",
        ));
    }
    let paths = &relay.paths;
    for (name, path) in [
        ("messages", &paths.messages),
        ("hello", &paths.hello),
        ("poll", &paths.poll),
        ("ack", &paths.ack),
        ("status", &paths.status),
        ("heartbeat", &paths.heartbeat),
        ("media", &paths.media),
    ] {
        // No query or fragment: the URL a request goes to is printed in
        // the link's errors, logs and stored reasons, so a `?token=` here
        // would put a secret there (the relay key is the credential).
        if !path.starts_with('/')
            || path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
        {
            issues.push(ConfigIssue::new(
                format!("relay.paths.{name}"),
                "must be a path starting with /, with no query or fragment",
            ));
        }
    }
    positive(
        issues,
        "relay.poll_timeout_seconds",
        relay.poll_timeout_seconds,
    );
    positive(issues, "relay.poll_max_jobs", relay.poll_max_jobs.into());
    if relay.poll_max_jobs > crate::config::defaults::MAX_RELAY_POLL_MAX_JOBS {
        issues.push(ConfigIssue::new(
            "relay.poll_max_jobs",
            format!(
                "must be at most {}",
                crate::config::defaults::MAX_RELAY_POLL_MAX_JOBS
            ),
        ));
    }
    positive(
        issues,
        "relay.request_timeout_seconds",
        relay.request_timeout_seconds,
    );
    positive(issues, "relay.heartbeat_seconds", relay.heartbeat_seconds);
    positive(
        issues,
        "relay.settings_poll_seconds",
        relay.settings_poll_seconds,
    );
    positive(issues, "relay.status_interval_ms", relay.status_interval_ms);
    positive(issues, "relay.retry_initial_ms", relay.retry_initial_ms);
    if relay.retry_max_ms < relay.retry_initial_ms {
        issues.push(ConfigIssue::new(
            "relay.retry_max_ms",
            "is smaller than relay.retry_initial_ms",
        ));
    }
    validate_upload_give_up_after(relay.upload_give_up_after, issues);
    if let Some(to) = &relay.routing.default_to
        && let Err(e) = phonerelay_channel::validate_address(ChannelKind::Pchat, to)
    {
        issues.push(ConfigIssue::new(
            "relay.routing.default_to",
            format!("not a pChat address: {e}"),
        ));
    }
    positive(
        issues,
        "relay.routing.conversation_ttl_days",
        relay.routing.conversation_ttl_days,
    );
}

fn positive(issues: &mut Vec<ConfigIssue>, key: &str, value: u64) {
    if value == 0 {
        issues.push(ConfigIssue::new(key, "must be above 0"));
    }
}

fn configured_phone_ids(loaded: &LoadedConfig) -> Vec<String> {
    crate::channels::configured_phone_ids(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from_str;

    fn issues(text: &str) -> Vec<String> {
        let loaded =
            load_from_str(text, std::path::Path::new("t.toml"), ".".into()).expect("parses");
        validate(&loaded).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn shutdown_grace_is_bounded() {
        for good in [0, 20, 60, 300] {
            assert!(
                issues(&format!("[server]\nshutdown_grace_seconds = {good}\n")).is_empty(),
                "{good}"
            );
        }
        let found = issues("[server]\nshutdown_grace_seconds = 301\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("server.shutdown_grace_seconds: must be at most 300"),
            "{found:?}"
        );
    }

    #[test]
    fn an_endpoint_s_concurrency_must_be_from_1_to_10000() {
        for good in [1, 10_000] {
            let found = issues(&format!("[outbox.limits.sms]\nconcurrency = {good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        for bad in [0, 10_001, 600_000_000] {
            let found = issues(&format!("[outbox.limits.sms]\nconcurrency = {bad}\n"));
            assert_eq!(
                found,
                ["outbox.limits.sms.concurrency: must be from 1 to 10000"],
                "{bad}"
            );
        }
    }

    #[test]
    fn upload_give_up_after_must_be_from_1_to_100000() {
        for good in [1, 20, 100_000] {
            let found = issues(&format!("[relay]\nupload_give_up_after = {good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        for bad in [0, 100_001] {
            let found = issues(&format!("[relay]\nupload_give_up_after = {bad}\n"));
            assert_eq!(
                found,
                ["relay.upload_give_up_after: must be from 1 to 100000 (failed uploads)"],
                "{bad}"
            );
        }
    }

    #[test]
    fn max_connections_must_be_from_1_to_65536() {
        for good in [1, 1024, 65_536] {
            let found = issues(&format!("[server]\nmax_connections = {good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        for bad in [0, 65_537] {
            let found = issues(&format!("[server]\nmax_connections = {bad}\n"));
            assert_eq!(
                found,
                ["server.max_connections: must be from 1 to 65536"],
                "{bad}"
            );
        }
    }

    #[test]
    fn max_media_bytes_is_at_most_256_mib_and_0_is_allowed() {
        for good in [0, 1, 26_214_400, 268_435_456] {
            let found = issues(&format!("[storage]\nmax_media_bytes = {good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        let found = issues("[storage]\nmax_media_bytes = 268435457\n");
        assert_eq!(
            found,
            ["storage.max_media_bytes: must be at most 268435456 (256 MiB; 0 keeps no files)"]
        );
    }

    #[test]
    fn the_media_total_cap_is_0_or_at_least_one_file() {
        for good in [
            "max_media_total_bytes = 0",
            "max_media_total_bytes = 26214400",
            "max_media_bytes = 0\nmax_media_total_bytes = 1",
        ] {
            let found = issues(&format!("[storage]\n{good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        let found = issues("[storage]\nmax_media_total_bytes = 26214399\n");
        assert_eq!(
            found,
            [
                "storage.max_media_total_bytes: must be 0 (no total cap) or at least \
                 storage.max_media_bytes (26214400)"
            ]
        );
    }

    #[test]
    fn the_media_free_space_floor_is_at_most_a_petabyte() {
        for good in [0, 268_435_456, 1u64 << 50] {
            let found = issues(&format!("[storage]\nmedia_min_free_bytes = {good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        let found = issues(&format!(
            "[storage]\nmedia_min_free_bytes = {}\n",
            (1u64 << 50) + 1
        ));
        assert_eq!(
            found,
            ["storage.media_min_free_bytes: must be at most 1125899906842624 (1 PiB)"]
        );
    }

    #[test]
    fn attachment_limits_are_checked() {
        for good in [
            "max_bytes = 1",
            "max_bytes = 268435456",
            "timeout_seconds = 1",
            "timeout_seconds = 3600",
            "allow_private_hosts = true",
        ] {
            let found = issues(&format!("[attachments]\n{good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        for (bad, issue) in [
            (
                "max_bytes = 0",
                "attachments.max_bytes: must be from 1 to 268435456 (256 MiB)",
            ),
            (
                "max_bytes = 268435457",
                "attachments.max_bytes: must be from 1 to 268435456 (256 MiB)",
            ),
            (
                "timeout_seconds = 0",
                "attachments.timeout_seconds: must be from 1 to 3600",
            ),
            (
                "timeout_seconds = 3601",
                "attachments.timeout_seconds: must be from 1 to 3600",
            ),
        ] {
            let found = issues(&format!("[attachments]\n{bad}\n"));
            assert_eq!(found, [issue], "{bad}");
        }
    }

    #[test]
    fn lease_seconds_is_at_most_a_day() {
        for good in ["lease_seconds = 86400", "lease_seconds = 121"] {
            let found = issues(&format!("[outbox]\n{good}\n"));
            assert!(found.is_empty(), "{good}: {found:?}");
        }
        for bad in [86_401_u64, 10_000_000_000_000_000] {
            let found = issues(&format!("[outbox]\nlease_seconds = {bad}\n"));
            assert_eq!(
                found,
                ["outbox.lease_seconds: must be at most 86400 (a day)"],
                "{bad}"
            );
        }
    }

    #[test]
    fn per_second_is_within_a_rate_the_limiter_can_hold() {
        // The channel table and a per-phone override are checked alike.
        let modem = "[[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"sim\"\n";
        for name in ["sms", "m1"] {
            for good in ["0.000001", "1.0", "1000000.0"] {
                let found = issues(&format!(
                    "[outbox.limits.{name}]\nper_second = {good}\n{modem}"
                ));
                assert!(found.is_empty(), "{name} {good}: {found:?}");
            }
            for bad in [
                "1e12",
                "1000000.5",
                "1e-7",
                "5e-324",
                "0.0",
                "-1.0",
                "inf",
                "nan",
            ] {
                let found = issues(&format!(
                    "[outbox.limits.{name}]\nper_second = {bad}\n{modem}"
                ));
                assert_eq!(
                    found,
                    [format!(
                        "outbox.limits.{name}.per_second: must be from 0.000001 to 1000000"
                    )],
                    "{name} {bad}"
                );
            }
        }
    }

    #[test]
    fn per_second_bounds_give_periods_the_limiter_takes() {
        // As the dispatcher (outbox/worker.rs) builds its quota, with the
        // largest burst taken (a panic here in a test build is what an
        // unbounded burst did at the dispatcher's start).
        for per_second in [MIN_PER_SECOND, MAX_PER_SECOND] {
            let period = std::time::Duration::from_secs_f64(1.0 / per_second);
            let quota = governor::Quota::with_period(period);
            assert!(quota.is_some(), "{per_second}");
            // The largest burst validation takes at this rate.
            let largest = (1.0 + per_second * MAX_BURST_REFILL_SECONDS).min(f64::from(MAX_BURST));
            let burst = std::num::NonZeroU32::new(largest as u32).unwrap();
            let limiter = governor::RateLimiter::direct(quota.unwrap().allow_burst(burst));
            assert!(limiter.check().is_ok(), "{per_second}");
        }
        let burst = |per_second: &str, burst: u32| {
            issues(&format!(
                "[outbox.limits.sms]\nper_second = {per_second}\nburst = {burst}\n"
            ))
            .len()
        };
        assert_eq!(burst("1.0", 0), 1);
        assert_eq!(burst("1000000.0", MAX_BURST + 1), 1);
        assert_eq!(burst("1000000.0", MAX_BURST), 0);
        assert_eq!(burst("0.000001", 1001), 0);
        assert_eq!(burst("0.000001", 18448), 1, "wrapped the limiter");
    }

    /// A limit table for pchat, the relay, would apply to nothing.
    #[test]
    fn a_limit_for_the_relay_itself_is_refused() {
        let found = issues("[outbox.limits.pchat]\nburst = 1\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].to_string().starts_with("outbox.limits.pchat:"),
            "{found:?}"
        );
    }

    #[test]
    fn relay_defaults_are_valid_and_bad_values_are_named() {
        assert!(issues("[relay]\nurl = \"https://relay.example\"\n").is_empty());
        for good in ["http://a", "https://relay.example:8443/prefix"] {
            assert!(
                issues(&format!("[relay]\nurl = \"{good}\"\n")).is_empty(),
                "{good}"
            );
        }
        for bad in [
            "https://relay.example.com:99999",
            "https://",
            "https://:443",
            "https://relay.example/?x=1",
            "relay.example",
            "https://bridge:s3cret@relay.example",
            "https://bridge@relay.example",
        ] {
            let found = issues(&format!("[relay]\nurl = \"{bad}\"\n"));
            assert!(
                found.iter().any(|i| i.contains("relay.url")),
                "{bad}: {found:?}"
            );
            // The issue names the key, never the value (a password).
            assert!(!found.iter().any(|i| i.contains("s3cret")), "{found:?}");
        }
        let found = issues(
            "[relay]\nurl = \"ftp://x\"\nretry_initial_ms = 10\nretry_max_ms = 5\n\
             [relay.paths]\npoll = \"bridge/poll\"\n[relay.routing]\nconversation_ttl_days = 0\n",
        )
        .join("\n");
        for key in [
            "relay.url",
            "relay.paths.poll",
            "relay.retry_max_ms",
            "relay.routing.conversation_ttl_days",
        ] {
            assert!(found.contains(key), "{key} missing from {found}");
        }
    }

    /// A misspelt level would pass as a target name and silence the log.
    #[test]
    fn a_log_level_that_is_no_level_is_refused() {
        for bad in ["warning", "verbose"] {
            let found = issues(&format!("[log]\nlevel = \"{bad}\"\n"));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(found[0].starts_with("log.level: "), "{found:?}");
        }
        assert!(issues("[log]\nlevel = \"warn,phonerelay::relay=debug\"\n").is_empty());
    }

    /// A query would carry a token into every error and log line that
    /// prints the request's URL; the value is never echoed.
    #[test]
    fn a_relay_path_with_a_query_or_fragment_is_refused_without_echoing_it() {
        for bad in [
            "/api/v1/bridge/poll?token=s3cret",
            "/api/v1/bridge/poll#s3cret",
        ] {
            let found = issues(&format!("[relay.paths]\npoll = \"{bad}\"\n"));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(found[0].starts_with("relay.paths.poll: "), "{found:?}");
            assert!(!found[0].contains("s3cret"), "{found:?}");
        }
        assert!(issues("[relay.paths]\npoll = \"/bridge/poll\"\n").is_empty());
    }

    #[test]
    fn durations_added_to_clock_readings_have_a_ceiling() {
        let found = issues(
            "[server]\nrequest_timeout_seconds = 18446744073709551615\n\
             [outbox]\nretry_initial_ms = 9223372036854775808\n\
             retry_max_ms = 9223372036854775808\n\
             [relay]\npoll_timeout_seconds = 3601\nrequest_timeout_seconds = 18446744073709551615\n\
             poll_max_jobs = 1001\n\
             [relay.routing]\nconversation_ttl_days = 36501\n",
        )
        .join("\n");
        for key in [
            "server.request_timeout_seconds: must be at most 3600 (an hour)",
            "outbox.retry_initial_ms: must be at most 86400000 (a day)",
            "outbox.retry_max_ms: must be at most 86400000 (a day)",
            "relay.poll_timeout_seconds: must be at most 3600 (an hour)",
            "relay.request_timeout_seconds: must be at most 3600",
            "relay.routing.conversation_ttl_days: must be at most 36500",
            "relay.poll_max_jobs: must be at most 1000",
        ] {
            assert!(found.contains(key), "{key} missing from {found}");
        }
        // The ceilings themselves are allowed.
        let at_ceiling = issues(
            "[server]\nrequest_timeout_seconds = 3600\n\
             [outbox]\nretry_initial_ms = 86400000\nretry_max_ms = 86400000\n\
             [relay]\npoll_timeout_seconds = 3600\nheartbeat_seconds = 86400\n\
             poll_max_jobs = 1000\n",
        );
        assert!(at_ceiling.is_empty(), "{at_ceiling:?}");
    }

    #[test]
    fn unknown_relay_keys_are_rejected() {
        let parsed = load_from_str(
            "[relay]\nurll = \"x\"\n",
            std::path::Path::new("t.toml"),
            ".".into(),
        );
        assert!(parsed.is_err());
    }
}
