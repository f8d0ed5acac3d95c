use std::net::SocketAddr;

use phonerelay_channel::{ChannelKind, ConfigIssue};

use super::load::LoadedConfig;

/// Check the whole config without side effects; an empty list means valid.
pub fn validate(loaded: &LoadedConfig) -> Vec<ConfigIssue> {
    let config = &loaded.config;
    let mut issues = Vec::new();
    if config.server.listen.parse::<SocketAddr>().is_err() {
        issues.push(ConfigIssue::new(
            "server.listen",
            "not an IP:port address (e.g. 127.0.0.1:8686)",
        ));
    }
    if config.server.max_body_bytes < 1024 {
        issues.push(ConfigIssue::new(
            "server.max_body_bytes",
            "must be at least 1024",
        ));
    }
    positive(
        &mut issues,
        "server.request_timeout_seconds",
        config.server.request_timeout_seconds,
    );

    let outbox = &config.outbox;
    positive(
        &mut issues,
        "outbox.default_ttl_seconds",
        outbox.default_ttl_seconds,
    );
    positive(&mut issues, "outbox.lease_seconds", outbox.lease_seconds);
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
            "must be shorter than outbox.lease_seconds, or a slow send would be claimed twice",
        ));
    }
    for (name, limit) in &outbox.limits {
        let key = format!("outbox.limits.{name}");
        if name.parse::<ChannelKind>().is_err() && !configured_phone_ids(loaded).contains(name) {
            issues.push(ConfigIssue::new(
                &key,
                "is neither a channel name nor a configured phone_id",
            ));
        }
        if limit.concurrency == 0 {
            issues.push(ConfigIssue::new(
                format!("{key}.concurrency"),
                "must be at least 1",
            ));
        }
        if !(limit.per_second.is_finite() && limit.per_second > 0.0) {
            issues.push(ConfigIssue::new(
                format!("{key}.per_second"),
                "must be above 0",
            ));
        }
        if limit.burst == 0 {
            issues.push(ConfigIssue::new(
                format!("{key}.burst"),
                "must be at least 1",
            ));
        }
    }
    if config
        .log
        .level
        .parse::<tracing_subscriber::EnvFilter>()
        .is_err()
    {
        issues.push(ConfigIssue::new("log.level", "not a valid tracing filter"));
    }
    issues.extend(crate::channels::validate(loaded));
    issues
}

fn positive(issues: &mut Vec<ConfigIssue>, key: &str, value: u64) {
    if value == 0 {
        issues.push(ConfigIssue::new(key, "must be above 0"));
    }
}

fn configured_phone_ids(loaded: &LoadedConfig) -> Vec<String> {
    crate::channels::configured_phone_ids(loaded)
}
