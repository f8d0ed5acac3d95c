use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::ConfigIssue;

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

/// Reads a string only. A value of another type (`pin = 1234`) is refused
/// naming its type but never its value: serde's own message quotes the
/// value ("invalid type: integer `1234`"), and the config loader prints
/// that message to the terminal and the journal.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, not `deserialize_string`: asked for a string, a
        // format may refuse another type itself, quoting the value (serde_json
        // does); handed the value, the visitor refuses it unquoted.
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: de::Error>(&self, kind: &'static str) -> Result<Secret, E> {
        Err(E::invalid_type(de::Unexpected::Other(kind), self))
    }
}

impl<'de> de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (the value is not shown)")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret(value))
    }

    // Every scalar whose default refusal would quote the value. Sequences,
    // maps, unit and none are refused by serde's defaults, which name only
    // the type; smaller integers and f32 arrive through these.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        self.refuse("boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        self.refuse("integer")
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        self.refuse("integer")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        self.refuse("integer")
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        self.refuse("integer")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        self.refuse("float")
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        self.refuse("bytes")
    }
}

/// Why a secret could not be resolved. Never holds the secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    Both {
        key: String,
    },
    Missing {
        key: String,
    },
    File {
        key: String,
        path: PathBuf,
        reason: String,
    },
    Env {
        key: String,
        var: String,
    },
}

impl SecretError {
    /// The key to fix (`pin`, or `pin_file` for a file that cannot be read)
    /// and the reason without that key, so a caller that nests the issue
    /// under its section (`channels.sms.modems[0]`) names the key once.
    pub fn into_issue(self) -> ConfigIssue {
        match self {
            SecretError::Both { key } => {
                ConfigIssue::new(&key, format!("set either {key} or {key}_file, not both"))
            }
            SecretError::Missing { key } => ConfigIssue::new(
                &key,
                format!("missing (set {key}, {key}_file, or {key} = \"${{ENV_VAR}}\")"),
            ),
            SecretError::File { key, path, reason } => ConfigIssue::new(
                format!("{key}_file"),
                format!("cannot read {}: {reason}", path.display()),
            ),
            SecretError::Env { key, var } => {
                ConfigIssue::new(key, format!("environment variable {var} is not set"))
            }
        }
    }
}

/// `key: reason`, as [`SecretError::into_issue`] words it.
impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.clone().into_issue().fmt(f)
    }
}

impl std::error::Error for SecretError {}

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
    fn a_value_of_the_wrong_type_is_refused_without_showing_it() {
        for wrong in [
            "1234",
            "-1234",
            "12.34",
            "true",
            "[1234]",
            "{\"pin\": 1234}",
        ] {
            let error = serde_json::from_str::<Secret>(wrong)
                .unwrap_err()
                .to_string();
            assert!(error.contains("the value is not shown"), "{wrong}: {error}");
            for shown in ["1234", "12.34", "true"] {
                assert!(!error.contains(shown), "{wrong}: {error}");
            }
        }
        let read: Secret = serde_json::from_str("\"1234\"").unwrap();
        assert_eq!(read.expose(), "1234");
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
