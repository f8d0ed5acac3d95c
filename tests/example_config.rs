//! `config/phonerelay.toml` says every key is shown with its default
//! except the values marked "# example": held to that here, key by key.

use std::collections::BTreeSet;

use phonerelay::config::{Config, LimitConfig};
use phonerelay_sms::{ModemConfig, SimSettings};
use toml::{Table, Value};

const EXAMPLE: &str = include_str!("../config/phonerelay.toml");
const EXAMPLE_MARK: &str = "# example";

fn to_value(value: impl serde::Serialize) -> Value {
    Value::try_from(value).expect("serialises")
}

/// The code's defaults, shaped like `example`: its limit tables and modems
/// (whose phone_id and device are required, so taken from the example)
/// filled in with their defaults.
fn defaults_for(example: &Table) -> Table {
    let mut defaults = to_value(Config::default())
        .as_table()
        .expect("a table")
        .clone();
    let limits = example["outbox"]["limits"].as_table().expect("limits");
    let default_limits: Table = limits
        .keys()
        .map(|name| (name.clone(), to_value(LimitConfig::default())))
        .collect();
    defaults["outbox"]
        .as_table_mut()
        .unwrap()
        .insert("limits".into(), Value::Table(default_limits));

    let modems = example["channels"]["sms"]["modems"]
        .as_array()
        .expect("modems");
    let default_modems: Vec<Value> = modems
        .iter()
        .map(|modem| {
            let mut default = ModemConfig::new(
                modem["phone_id"].as_str().unwrap(),
                modem["device"].as_str().unwrap(),
            );
            if modem.get("sim").is_some() {
                default.sim = Some(SimSettings::default());
            }
            to_value(default)
        })
        .collect();
    let mut sms = Table::new();
    sms.insert("modems".into(), Value::Array(default_modems));
    let mut channels = Table::new();
    channels.insert("sms".into(), Value::Table(sms));
    defaults.insert("channels".into(), Value::Table(channels));
    defaults
}

/// Every key of `example` (`outbox.limits.sms.burst`,
/// `channels.sms.modems[1].sim.echo`) whose value is not in `defaults`.
fn not_default(example: &Table, defaults: &Table, prefix: &str, found: &mut BTreeSet<String>) {
    let empty = Table::new();
    for (key, value) in example {
        let default = defaults.get(key);
        match value {
            Value::Table(table) => {
                let default = default.and_then(Value::as_table).unwrap_or(&empty);
                not_default(table, default, &format!("{prefix}{key}."), found);
            }
            Value::Array(entries) if entries.iter().all(Value::is_table) => {
                for (i, entry) in entries.iter().enumerate() {
                    let default = default
                        .and_then(|d| d.get(i))
                        .and_then(Value::as_table)
                        .unwrap_or(&empty);
                    let entry = entry.as_table().unwrap();
                    not_default(entry, default, &format!("{prefix}{key}[{i}]."), found);
                }
            }
            _ if default != Some(value) => {
                found.insert(format!("{prefix}{key}"));
            }
            _ => {}
        }
    }
}

/// The keys whose line carries the example mark, named as [`not_default`]
/// names them.
fn marked_as_examples(text: &str) -> BTreeSet<String> {
    let mut marked = BTreeSet::new();
    let mut section = String::new();
    // The last `[[array]]` and its entry's index, for `[array.sub]` headers.
    let mut array: Option<(String, usize)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let index = match &array {
                Some((last, index)) if last == name => index + 1,
                _ => 0,
            };
            section = format!("{name}[{index}]");
            array = Some((name.to_string(), index));
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = match &array {
                Some((array, index)) if name.starts_with(&format!("{array}.")) => {
                    format!("{array}[{index}]{}", &name[array.len()..])
                }
                _ => name.to_string(),
            };
        } else if !line.starts_with('#')
            && let Some((key, _)) = line.split_once('=')
            && line.contains(EXAMPLE_MARK)
        {
            marked.insert(format!("{section}.{}", key.trim()));
        }
    }
    marked
}

#[test]
fn the_example_config_shows_the_defaults_except_where_marked() {
    // The commented-out simulated modem as well, once uncommented.
    for text in [EXAMPLE.to_string(), with_the_sim_uncommented(EXAMPLE)] {
        let example: Table = text.parse().expect("the example parses");
        let mut found = BTreeSet::new();
        not_default(&example, &defaults_for(&example), "", &mut found);
        assert_eq!(
            found,
            marked_as_examples(&text),
            "left: not the default; right: marked \"{EXAMPLE_MARK}\""
        );
    }
}

/// `text` with the commented-out config lines made live, as the example
/// tells an operator who wants its simulated modem: one `#` off each line
/// that is `#` alone or `#` followed by a key, a table header or a `#`.
/// A comment (`# ` and text) stays one.
fn with_the_sim_uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if rest.is_empty()
                    || rest.starts_with(['#', '['])
                    || rest.starts_with(|c: char| c.is_ascii_lowercase()) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The devices of the example's modems.
fn devices(text: &str) -> Vec<String> {
    let example: Table = text.parse().expect("the example parses");
    example["channels"]["sms"]["modems"]
        .as_array()
        .expect("modems")
        .iter()
        .map(|modem| modem["device"].as_str().unwrap().to_string())
        .collect()
}

/// The example is what `systemd/README.md` installs in production: a
/// simulated modem there would take any unbound key's sends and mark them
/// delivered while they go nowhere. It stays documented, commented out
/// (config/quickstart.toml runs one).
#[test]
fn the_example_config_runs_no_simulated_modem() {
    let live = devices(EXAMPLE);
    assert!(!live.is_empty());
    assert!(
        !live.iter().any(|device| device == "sim"),
        "an active device = \"sim\": {live:?}"
    );
    let documented = devices(&with_the_sim_uncommented(EXAMPLE));
    assert_eq!(
        documented.iter().filter(|device| *device == "sim").count(),
        1,
        "{documented:?}"
    );
}
