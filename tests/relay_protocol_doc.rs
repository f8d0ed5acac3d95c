//! The configuration block of `docs/relay-protocol.md` lists every
//! `[relay]` key the config takes (`RelayConfig`), and no other.

use std::collections::BTreeSet;
use std::path::PathBuf;

use phonerelay::config::{Config, RelayConfig, RoutingConfig};
use toml::{Table, Value};

const PROTOCOL: &str = include_str!("../docs/relay-protocol.md");

/// The ```toml block under "## Configuration", its commented-out keys
/// (`# key_file = ...`, optional keys without a default) written in.
fn documented_block() -> String {
    let section = PROTOCOL
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a Configuration section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a toml block");
    block
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_key_line(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_key_line(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

/// `relay.paths.hello`-style names of every leaf of `table`.
fn keys(table: &Table, prefix: &str, found: &mut BTreeSet<String>) {
    for (key, value) in table {
        match value {
            Value::Table(inner) => keys(inner, &format!("{prefix}{key}."), found),
            _ => {
                found.insert(format!("{prefix}{key}"));
            }
        }
    }
}

/// Every key `RelayConfig` has: its defaults, with the optional keys
/// (absent by default, so not serialised) given a value.
fn config_keys() -> BTreeSet<String> {
    let every = RelayConfig {
        url: Some("https://relay.example.com".into()),
        phone_id: Some("ph_7f3a".into()),
        key_file: Some(PathBuf::from("relay.key")),
        routing: RoutingConfig {
            default_to: Some("operator".into()),
            ..RoutingConfig::default()
        },
        ..RelayConfig::default()
    };
    let table = Value::try_from(every).expect("serialises");
    let mut found = BTreeSet::new();
    keys(table.as_table().expect("a table"), "relay.", &mut found);
    found
}

#[test]
fn the_protocol_s_configuration_block_lists_every_relay_key() {
    let block = documented_block();
    // Unknown keys are refused: every key the block shows is one.
    let _: Config = toml::from_str(&block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    let mut documented = BTreeSet::new();
    let table: Table = toml::from_str(&block).expect("a table");
    keys(&table, "", &mut documented);
    let missing: Vec<_> = config_keys().difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "docs/relay-protocol.md's configuration block leaves out {missing:?}"
    );
}
