use std::path::{Path, PathBuf};

use super::defaults::{CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH};
use super::digest::ConfigDigest;
use super::model::Config;

/// A parsed config and the directory its relative paths are resolved from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub path: PathBuf,
    pub base_dir: PathBuf,
    /// The bytes read, as a digest: a reload compares the file with it.
    pub digest: ConfigDigest,
}

impl LoadedConfig {
    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.config.storage.state_dir)
    }

    pub fn database_path(&self) -> PathBuf {
        self.state_dir().join("phonerelay.sqlite3")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: String,
        /// The read failed for now (an I/O error, too many open files), not
        /// for what the path is: another start may read it.
        for_now: bool,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{}", .issues.join("\n"))]
    Invalid { issues: Vec<String> },
}

/// Whether a read of the config that failed with `kind` may work when
/// tried again: not for a path that is missing, not allowed, not a file,
/// or not text, which only the operator puts right.
pub fn read_failed_for_now(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    !matches!(
        kind,
        NotFound | PermissionDenied | IsADirectory | NotADirectory | InvalidData | InvalidInput
    )
}

/// `--config`, then `$PHONERELAY_CONFIG`, then the production path.
pub fn find_config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(path) = cli {
        return path.to_path_buf();
    }
    match std::env::var_os(CONFIG_ENV_VAR) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

pub fn load_from_path(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
        for_now: read_failed_for_now(e.kind()),
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base_dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    load_from_str(&text, &absolute, base_dir)
}

pub fn load_from_str(
    text: &str,
    path: &Path,
    base_dir: PathBuf,
) -> Result<LoadedConfig, ConfigError> {
    let parse_error = |key: Option<String>, e: &toml::de::Error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: describe_toml_error(key, e, text),
    };
    let document = toml::Deserializer::parse(text).map_err(|e| parse_error(None, &e))?;
    let config: Config = serde_path_to_error::deserialize(document).map_err(|e| {
        let key = e.path().to_string();
        parse_error(Some(key), e.inner())
    })?;
    Ok(LoadedConfig {
        config,
        path: path.to_path_buf(),
        base_dir,
        digest: ConfigDigest::of(text.as_bytes()),
    })
}

/// For tests: a config whose state dir is `state` under `dir` (made
/// here), with `tail` after its `[storage]` table.
#[cfg(test)]
pub fn in_dir_with_state(dir: &Path, tail: &str) -> LoadedConfig {
    let loaded = load_from_str(
        &format!("[storage]\nstate_dir = \"state\"\n\n{tail}"),
        &dir.join("phonerelay.toml"),
        dir.into(),
    )
    .expect("a test config");
    std::fs::create_dir_all(loaded.state_dir()).expect("the state dir");
    loaded
}

/// The key a value was being read for (`server.listen`), toml's reason,
/// and the line, so an operator finds it.
fn describe_toml_error(key: Option<String>, error: &toml::de::Error, text: &str) -> String {
    let mut described = match key {
        // serde_path_to_error's "." is the document itself: no key to name.
        Some(key) if key != "." => format!("{key}: "),
        _ => String::new(),
    };
    if described.is_empty()
        && let Some(duplicate) = error
            .span()
            .and_then(|span| duplicate_key(error, text, span))
    {
        described = format!("{duplicate}: ");
    }
    described.push_str(error.message().trim());
    if let Some(span) = error.span() {
        described.push_str(&format!(" (line {})", line_of(text, span.start)));
    }
    described
}

/// For a key given twice, which toml finds while it parses (before any key
/// is known to serde): the key at `span` with the table it is in, and the
/// entry of an array of tables it is in (`channels.sms.modems[1].pin`), so
/// the error names it as every other does. A table defined twice (its
/// header's line holds the span) is named by its header.
fn duplicate_key(
    error: &toml::de::Error,
    text: &str,
    span: std::ops::Range<usize>,
) -> Option<String> {
    if !error.message().contains("duplicate key") {
        return None;
    }
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if let Some(table) = header(line) {
        return Some(with_entry_index(&table, &text[..line_start]));
    }
    let key = text.get(span.clone())?.trim().trim_matches('"');
    if key.is_empty() || key.contains('\n') {
        return None;
    }
    let table = text[..span.start].lines().rev().find_map(header);
    Some(match table {
        Some(table) if !table.is_empty() => {
            with_entry_index(&format!("{table}.{key}"), &text[..span.start])
        }
        _ => key.to_string(),
    })
}

/// The table a header line names (`[server]`, `[[channels.sms.modems]]`),
/// without its brackets.
fn header(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_start_matches('[').trim().to_string())
}

/// `name` with the index of the entry of each array of tables it is under,
/// as counted by the `[[…]]` headers in `before`:
/// `channels.sms.modems.pin` after two `[[channels.sms.modems]]` is
/// `channels.sms.modems[1].pin`.
fn with_entry_index(name: &str, before: &str) -> String {
    let mut arrays: Vec<(String, usize)> = Vec::new();
    for line in before.lines() {
        let line = line.trim();
        let Some(array) = line
            .strip_prefix("[[")
            .and_then(|rest| rest.split("]]").next())
        else {
            continue;
        };
        let array = array.trim().to_string();
        match arrays.iter_mut().find(|(known, _)| *known == array) {
            Some((_, count)) => *count += 1,
            None => arrays.push((array, 1)),
        }
    }
    let under = arrays
        .iter()
        .filter(|(array, _)| name == array || name.starts_with(&format!("{array}.")))
        .max_by_key(|(array, _)| array.len());
    match under {
        Some((array, count)) => format!("{array}[{}]{}", count - 1, &name[array.len()..]),
        None => name.to_string(),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_named_with_its_table() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n";
        let error = load_from_str(text, Path::new("t.toml"), ".".into())
            .unwrap_err()
            .to_string();
        assert!(error.contains("server.listen: "), "{error}");
        assert!(error.contains("duplicate key"), "{error}");
        let text = "[[channels.sms.modems]]\nphone_id = \"m\"\nphone_id = \"n\"\n";
        let error = load_from_str(text, Path::new("t.toml"), ".".into())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("channels.sms.modems[0].phone_id: "),
            "{error}"
        );
        // In the second entry: its index, as every other error has it.
        let text = "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\n\
                    [[channels.sms.modems]]\nphone_id = \"n\"\nphone_id = \"o\"\n";
        let error = load_from_str(text, Path::new("t.toml"), ".".into())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("channels.sms.modems[1].phone_id: "),
            "{error}"
        );
        // A table given with a dotted key, then again by its header.
        let text = "[[channels.sms.modems]]\nphone_id = \"m\"\nsim.pin = \"1\"\n\
                    [channels.sms.modems.sim]\n";
        let error = load_from_str(text, Path::new("t.toml"), ".".into())
            .unwrap_err()
            .to_string();
        assert!(!error.contains(".."), "{error}");
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_named_but_not_shown() {
        // `pin_file` and `relay.key_file` too: a PIN or a key typed there
        // by mistake is as secret.
        let places = [
            (
                "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\npin",
                "channels.sms.modems[0].pin: ",
            ),
            (
                "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\npin_file",
                "channels.sms.modems[0].pin_file: ",
            ),
            ("[relay]\nkey_file", "relay.key_file: "),
        ];
        for (key, named) in places {
            for value in ["1234", "12.34", "true", "[1234]", "{ code = 1234 }"] {
                let text = format!("{key} = {value}\n");
                let error = load_from_str(&text, Path::new("t.toml"), ".".into())
                    .unwrap_err()
                    .to_string();
                assert!(error.contains(named), "{value}: {error}");
                for shown in ["1234", "12.34", "true"] {
                    assert!(!error.contains(shown), "{value}: {error}");
                }
            }
        }
    }

    /// A config the operator must put right (missing, a directory, not
    /// text) is not a read that failed for now; an I/O error is.
    #[test]
    fn a_read_fails_for_now_only_when_another_try_may_work() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("binary.toml");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        for path in [
            dir.path().join("missing.toml"),
            dir.path().to_path_buf(),
            binary,
        ] {
            match load_from_path(&path) {
                Err(ConfigError::Read {
                    for_now, reason, ..
                }) => {
                    assert!(!for_now, "{}: {reason}", path.display())
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        for kind in [
            std::io::ErrorKind::Other,
            std::io::ErrorKind::Interrupted,
            std::io::ErrorKind::TimedOut,
        ] {
            assert!(read_failed_for_now(kind), "{kind:?}");
        }
    }
}
