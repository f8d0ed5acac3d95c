use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string (API key, bot token, password, PIN). Its `Debug` and
/// `Display` never show the value, so it cannot leak through logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear value, for the one place that must send it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Serialises masked: printing an effective config never reveals a secret.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("****")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("{key}: set either {key} or {key}_file, not both")]
    Both { key: String },
    #[error("{key}: missing (set {key}, {key}_file, or {key} = \"${{ENV_VAR}}\")")]
    Missing { key: String },
    #[error("{key}_file: cannot read {path}: {reason}")]
    File {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: environment variable {var} is not set")]
    Env { key: String, var: String },
}

/// Where a secret comes from in a config file: inline (possibly `${VAR}`
/// naming an environment variable) or a `*_file` key, as systemd's
/// `LoadCredential=` provides.
#[derive(Debug, Clone, Copy)]
pub struct SecretSource<'a> {
    /// The config key, for error messages (`channels.wa.access_token`).
    pub key: &'a str,
    pub inline: Option<&'a Secret>,
    pub file: Option<&'a Path>,
}

impl SecretSource<'_> {
    /// Resolve to the clear value. `Ok(None)` when neither is set.
    pub fn resolve_optional(&self) -> Result<Option<Secret>, SecretError> {
        match (self.inline, self.file) {
            (Some(_), Some(_)) => Err(SecretError::Both {
                key: self.key.into(),
            }),
            (Some(inline), None) => self.resolve_inline(inline).map(Some),
            (None, Some(path)) => {
                let raw = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                    key: self.key.into(),
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                // Files written by editors and `echo` end in a newline that is
                // never part of the secret.
                Ok(Some(Secret(raw.trim_end_matches(['\n', '\r']).to_string())))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn resolve(&self) -> Result<Secret, SecretError> {
        self.resolve_optional()?
            .ok_or_else(|| SecretError::Missing {
                key: self.key.into(),
            })
    }

    fn resolve_inline(&self, inline: &Secret) -> Result<Secret, SecretError> {
        let value = inline.expose();
        match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            Some(var) => std::env::var(var)
                .map(Secret)
                .map_err(|_| SecretError::Env {
                    key: self.key.into(),
                    var: var.into(),
                }),
            None => Ok(inline.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

    #[test]
    fn file_and_env() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "abc\n").unwrap();
        let from_file = SecretSource {
            key: "token",
            inline: None,
            file: Some(&path),
        };
        assert_eq!(from_file.resolve().unwrap().expose(), "abc");

        let both = SecretSource {
            key: "token",
            inline: Some(&Secret::new("x")),
            file: Some(&path),
        };
        assert!(matches!(both.resolve(), Err(SecretError::Both { .. })));

        let unset = Secret::new("${PHONERELAY_TEST_SURELY_UNSET_VAR}");
        let env = SecretSource {
            key: "token",
            inline: Some(&unset),
            file: None,
        };
        assert!(matches!(env.resolve(), Err(SecretError::Env { .. })));

        let none = SecretSource {
            key: "token",
            inline: None,
            file: None,
        };
        assert!(matches!(none.resolve(), Err(SecretError::Missing { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
