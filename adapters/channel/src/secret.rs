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

/// A secret file's path as an error (or `check`'s effective config) shows
/// it. A file name of digits alone is most likely the secret itself (a SIM
/// PIN) typed into the `*_file` key instead of the secret's own, and so is
/// a long one of letters and digits with no dot (an API key, the relay's
/// key): the name is not shown, only how long it is, as the secret's value
/// never is.
pub fn shown_secret_path(path: &Path) -> String {
    let folder = || path.parent().map(|p| p.join("")).unwrap_or_default();
    match path.file_name().and_then(|name| name.to_str()) {
        Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) => format!(
            "{}<{} digits, not shown: a PIN given as the file's name?>",
            folder().display(),
            name.len()
        ),
        Some(name) if looks_like_a_key(name) => format!(
            "{}<{} characters, not shown: a key given as the file's name?>",
            folder().display(),
            name.len()
        ),
        _ => path.display().to_string(),
    }
}

/// A file name that reads as a token rather than a name: 16 characters or
/// more, letters, digits, `-` and `_` only, both letters and digits, and
/// no dot (`relay.key`, `pin.txt` are names; `rk_live_8f3a91c2d4e5` is
/// not).
fn looks_like_a_key(name: &str) -> bool {
    name.len() >= 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.bytes().any(|b| b.is_ascii_digit())
        && name.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A `*_file` key's path as the effective config shows it
/// ([`shown_secret_path`]).
pub fn serialize_secret_file<S: serde::Serializer>(
    path: &Option<PathBuf>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serializer.serialize_some(&shown_secret_path(path)),
        None => serializer.serialize_none(),
    }
}

/// A `*_file` key's path, deserialized as a [`Secret`] is: a value of
/// another type (a PIN typed as a number into `pin_file`) is refused
/// without being quoted, as serde's own refusal would.
pub fn deserialize_secret_file<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    let path = Secret::deserialize(deserializer)?;
    Ok(Some(PathBuf::from(path.expose())))
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
    EnvNotUnicode {
        key: String,
        var: String,
    },
    /// Set, but to nothing (after the line end a file or an
    /// `EnvironmentFile` leaves): a secret that is empty is a mistake, and
    /// would only be refused upstream later.
    Empty {
        key: String,
        /// Where it came from: the variable or the file.
        from: String,
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
                format!("cannot read {}: {reason}", shown_secret_path(&path)),
            ),
            SecretError::Env { key, var } => {
                ConfigIssue::new(key, format!("environment variable {var} is not set"))
            }
            SecretError::EnvNotUnicode { key, var } => ConfigIssue::new(
                key,
                format!("environment variable {var} is not valid UTF-8"),
            ),
            SecretError::Empty { key, from } => ConfigIssue::new(key, format!("{from} is empty")),
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
    /// Resolve to the clear value. `Ok(None)` when neither is set. A
    /// value from a file or a variable loses the line end it may carry
    /// (`echo`, an editor, an `EnvironmentFile` with CRLF lines), which is
    /// never part of a secret; one that is then empty is an error.
    pub fn resolve_optional(&self) -> Result<Option<Secret>, SecretError> {
        let (value, from) = match (self.inline, self.file) {
            (Some(_), Some(_)) => {
                return Err(SecretError::Both {
                    key: self.key.into(),
                });
            }
            (Some(inline), None) => match self.resolve_inline(inline)? {
                Inline::Literal(secret) => return Ok(Some(secret)),
                Inline::Env { var, value } => (value, format!("environment variable {var}")),
            },
            (None, Some(path)) => {
                let raw = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                    key: self.key.into(),
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                (raw, format!("file {}", shown_secret_path(path)))
            }
            (None, None) => return Ok(None),
        };
        let value = value.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            // Named as a file that cannot be read is: the key to fix.
            let key = match self.file {
                Some(_) => format!("{}_file", self.key),
                None => self.key.into(),
            };
            return Err(SecretError::Empty { key, from });
        }
        Ok(Some(Secret(value.to_string())))
    }

    pub fn resolve(&self) -> Result<Secret, SecretError> {
        self.resolve_optional()?
            .ok_or_else(|| SecretError::Missing {
                key: self.key.into(),
            })
    }

    fn resolve_inline(&self, inline: &Secret) -> Result<Inline, SecretError> {
        let value = inline.expose();
        let Some(var) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
            return Ok(Inline::Literal(inline.clone()));
        };
        match std::env::var(var) {
            Ok(value) => Ok(Inline::Env {
                var: var.into(),
                value,
            }),
            Err(std::env::VarError::NotPresent) => Err(SecretError::Env {
                key: self.key.into(),
                var: var.into(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode {
                key: self.key.into(),
                var: var.into(),
            }),
        }
    }
}

/// What an inline secret said: itself, or a variable's value.
enum Inline {
    Literal(Secret),
    Env { var: String, value: String },
}

/// The variable systemd sets, for a unit with `LoadCredential=` or
/// `SetCredential=`, to the folder holding that service's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Where a `*_file` key's file is. An absolute path is taken as it is. A
/// relative one is a credential's name when the service has a credentials
/// folder (`credentials_dir`, from `$CREDENTIALS_DIRECTORY`) holding a file
/// of that name; otherwise it is relative to `base_dir`, the config file's
/// folder. So `pin_file = "sim-pin"` with `LoadCredential=sim-pin:/etc/phonerelay/sim-pin`
/// reads the credential under systemd whatever the unit is called, and
/// the file it comes from when `phonerelay check` runs outside the unit.
pub fn secret_file_path(file: &Path, base_dir: &Path, credentials_dir: Option<&Path>) -> PathBuf {
    if file.is_relative()
        && let Some(credential) = credentials_dir.map(|dir| dir.join(file))
        && credential.is_file()
    {
        return credential;
    }
    base_dir.join(file)
}

/// This process's credentials folder, if systemd gave it one.
pub fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os(CREDENTIALS_DIRECTORY)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
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

    #[test]
    fn an_empty_file_or_variable_is_an_error_naming_where_it_came_from() {
        let dir = std::env::temp_dir().join(format!("secret-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "\r\n").unwrap();
        let from_file = SecretSource {
            key: "token",
            inline: None,
            file: Some(&path),
        };
        let issue = from_file.resolve().unwrap_err().into_issue().to_string();
        assert!(
            issue.contains("is empty") && issue.contains("file "),
            "{issue}"
        );
        // The variable's name is this test's own: no other test sets it.
        let var = "PHONERELAY_TEST_SECRET_EMPTY_OR_CRLF";
        let inline = Secret::new(format!("${{{var}}}"));
        let from_env = SecretSource {
            key: "token",
            inline: Some(&inline),
            file: None,
        };
        // SAFETY: no other thread of this test binary reads or writes this
        // variable.
        unsafe { std::env::set_var(var, "") };
        let issue = from_env.resolve().unwrap_err().into_issue().to_string();
        assert!(
            issue.contains(&format!("environment variable {var} is empty")),
            "{issue}"
        );
        // An EnvironmentFile with CRLF lines leaves the \r on the value.
        unsafe { std::env::set_var(var, "abc\r") };
        assert_eq!(from_env.resolve().unwrap().expose(), "abc");
        unsafe { std::env::remove_var(var) };
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_relative_file_is_a_credential_when_the_credentials_folder_holds_it() {
        let root = std::env::temp_dir().join(format!("secret-cred-{}", std::process::id()));
        let (config_dir, credentials) = (root.join("etc"), root.join("run-credentials"));
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::create_dir_all(&credentials).unwrap();
        std::fs::write(credentials.join("sim-pin"), "1234").unwrap();
        let name = Path::new("sim-pin");
        assert_eq!(
            secret_file_path(name, &config_dir, Some(&credentials)),
            credentials.join("sim-pin")
        );
        // Outside the unit (no folder), or a name the folder lacks: the
        // config file's folder.
        assert_eq!(
            secret_file_path(name, &config_dir, None),
            config_dir.join("sim-pin")
        );
        assert_eq!(
            secret_file_path(Path::new("other"), &config_dir, Some(&credentials)),
            config_dir.join("other")
        );
        // An absolute path is never looked up elsewhere.
        let absolute = root.join("elsewhere/sim-pin");
        assert_eq!(
            secret_file_path(&absolute, &config_dir, Some(&credentials)),
            absolute
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
