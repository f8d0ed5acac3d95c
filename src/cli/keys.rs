use clap::Subcommand;

use crate::clock::{now_ms, rfc3339};
use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::instance_lock;
use crate::keys;
use crate::store::sqlite::{SCHEMA_VERSION, schema_version_of};
use crate::store::{Scope, SqliteStore, Store, StoreError};
use crate::store_lock::{self, StoreLock};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once; only its hash is kept.
    Create {
        /// A name to recognise the key by (e.g. relay)
        #[arg(long)]
        name: String,
        /// Comma-separated: send, read, admin
        #[arg(long, value_delimiter = ',', default_value = "send,read")]
        scopes: Vec<String>,
        /// Limit the key to one phone_id
        #[arg(long)]
        phone_id: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id or by name.
    Revoke {
        /// The key's id, or its name while one active key has it (`keys
        /// list` shows both)
        key: String,
    },
}

/// `--name` as it is stored: trimmed (a name kept with a space around it
/// could not be revoked by the name typed), one line of printable text,
/// and not the daemon's own local key's, which a restart replaces,
/// revoking every active key of that name.
fn checked_name(name: &str) -> Result<&str, ExitError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ExitError::Config("--name must not be empty".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(ExitError::Config(
            "--name must not hold control characters (line ends, escapes)".into(),
        ));
    }
    if name == crate::local_key::LOCAL_KEY_NAME {
        return Err(ExitError::Config(format!(
            "--name {name:?} is the local CLI key's, which the daemon issues itself; choose another"
        )));
    }
    Ok(name)
}

/// The ids of the active keys named `name`.
async fn active_named(store: &SqliteStore, name: &str) -> Result<Vec<String>, ExitError> {
    Ok(store
        .list_keys()
        .await
        .map_err(|e| ExitError::Runtime(e.to_string()))?
        .into_iter()
        .filter(|k| k.name == name && k.revoked_at_ms.is_none())
        .map(|k| k.key_id)
        .collect())
}

/// The store as `keys`, `pair`, `unpair` and `inbound` open it, beside
/// the daemon: with the store lock held shared (`store_lock.rs`), so that
/// no restore replaces the store while they write to it, which would lose
/// what they wrote (a revoked key working again). The store is closed
/// before the lock is let go: fields drop in the order they are declared.
pub(super) struct OpenStore {
    store: SqliteStore,
    _lock: StoreLock,
}

impl std::ops::Deref for OpenStore {
    type Target = SqliteStore;

    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

/// Open the store of `loaded`, taking the store lock first; refused while
/// a restore is replacing the store.
///
/// A store at an older schema than this binary's is migrated only when no
/// daemon is serving it. After a package upgrade and before the daemon
/// restarts, the daemon running is the old binary: migrated under it, it
/// would go on writing a schema it does not know (`check_not_newer` is
/// asked only when a store is opened), and a long migration (a table
/// copy) would hold the write lock past its busy timeout. So the command
/// refuses and changes nothing; the daemon's restart migrates. With no
/// daemon, the instance lock is held while the store is migrated, so that
/// none starts on it meanwhile (one that tries refuses, and its service
/// manager starts it again).
///
/// Only a store that is there: on a state dir with none (a mistyped
/// `storage.state_dir`), a command that reads or changes what is in it
/// would make an empty one and report it empty ("no dead letters", "not
/// paired"), a false all-clear. It is refused instead, and nothing is
/// made; [`open_or_create`] is for the commands that put the first
/// things in a store.
pub(super) fn open(loaded: &LoadedConfig) -> Result<OpenStore, ExitError> {
    let db = loaded.database_path();
    match db.try_exists() {
        Ok(true) => open_or_create(loaded),
        Ok(false) => Err(ExitError::Runtime(format!(
            "no store at {}: is storage.state_dir in {} right? (a store is made by the \
             daemon's first start, `phonerelay keys create` or `phonerelay pair`)",
            db.display(),
            loaded.path.display()
        ))),
        Err(e) => Err(ExitError::Runtime(format!(
            "cannot open the store {}: {e}",
            db.display()
        ))),
    }
}

/// As [`open`], making the state dir and the store if there are none:
/// for `keys create` and `pair`, which may come before the daemon's first
/// start.
pub(super) fn open_or_create(loaded: &LoadedConfig) -> Result<OpenStore, ExitError> {
    let lock = store_lock::shared(&loaded.state_dir())?;
    let db = loaded.database_path();
    let cannot_open =
        |e: StoreError| ExitError::Runtime(format!("cannot open the store {}: {e}", db.display()));
    let found = schema_version_of(&db).map_err(cannot_open)?;
    let _no_daemon = if found < SCHEMA_VERSION {
        match instance_lock::try_acquire(&loaded.state_dir())? {
            Some(no_daemon) => Some(no_daemon),
            None => {
                return Err(ExitError::Runtime(format!(
                    "the store is at schema {found}, this phonerelay needs {SCHEMA_VERSION}: \
                     restart the daemon (systemctl restart phonerelay) so it upgrades the \
                     store first ({} is in use by a running phonerelay; nothing was changed)",
                    db.display()
                )));
            }
        }
    } else {
        None
    };
    let store = SqliteStore::open(&db).map_err(cannot_open)?;
    Ok(OpenStore { store, _lock: lock })
}

pub async fn run(loaded: &LoadedConfig, command: &KeysCommand) -> Result<(), ExitError> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            phone_id,
        } => {
            let name = checked_name(name)?;
            let phone_id = match phone_id.as_deref().map(str::trim) {
                Some("") => {
                    return Err(ExitError::Config(
                        "--phone-id must not be empty (leave it out for a key of every phone)"
                            .into(),
                    ));
                }
                other => other.map(str::to_string),
            };
            let scopes = scopes
                .iter()
                .map(|s| s.trim().parse::<Scope>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ExitError::Config(format!("--scopes: {e}")))?;
            if scopes.is_empty() {
                return Err(ExitError::Config(
                    "--scopes: give at least one scope".into(),
                ));
            }
            if let Some(phone_id) = &phone_id
                && !crate::channels::configured_phone_ids(loaded).contains(phone_id)
            {
                eprintln!(
                    "note: no endpoint with phone_id {phone_id:?} is configured in {}; \
                     the key can send only once one is",
                    loaded.path.display()
                );
            }
            let store = open_or_create(loaded)?;
            let same_name = active_named(&store, name).await?;
            if !same_name.is_empty() {
                eprintln!(
                    "note: {} other active key(s) are named {name:?} ({}); revoke by id, not by name",
                    same_name.len(),
                    same_name.join(", ")
                );
            }
            let issued = keys::issue(name, scopes, phone_id, now_ms());
            let key_id = issued.record.key_id.clone();
            store
                .create_key(issued.record)
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            eprintln!("created key {key_id} ({name}); it is shown once, store it now:");
            if let Err(e) = super::shown_once::print_secret(&issued.clear) {
                // Nobody got it: an active key nobody holds is revoked.
                let revoked = store.revoke_key(&key_id, now_ms()).await;
                return Err(ExitError::Runtime(match revoked {
                    Ok(_) => format!(
                        "cannot write the key to standard output: {e}; key {key_id} is \
                         revoked again, create it anew"
                    ),
                    Err(r) => format!(
                        "cannot write the key to standard output: {e}; nor revoke it ({r}): \
                         revoke key {key_id}"
                    ),
                }));
            }
            Ok(())
        }
        KeysCommand::List => {
            let store = open(loaded)?;
            let keys = store
                .list_keys()
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            outln!(
                "{:<18} {:<16} {:<18} {:<14} {:<26} STATE",
                "KEY_ID",
                "NAME",
                "SCOPES",
                "PHONE_ID",
                "CREATED"
            );
            for k in keys {
                let scopes: Vec<String> = k.scopes.iter().map(ToString::to_string).collect();
                let state = match k.revoked_at_ms {
                    Some(at) => format!("revoked {}", rfc3339(at)),
                    None => "active".into(),
                };
                outln!(
                    "{:<18} {:<16} {:<18} {:<14} {:<26} {state}",
                    k.key_id,
                    // One line: a name stored before names were checked.
                    super::terminal::one_line(&k.name),
                    scopes.join(","),
                    k.phone_id.as_deref().unwrap_or("any"),
                    rfc3339(k.created_at_ms),
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { key } => {
            let store = open(loaded)?;
            // By id or by name: the local key's is said either way.
            let local = store
                .list_keys()
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?
                .iter()
                .any(|k| {
                    k.name == crate::local_key::LOCAL_KEY_NAME
                        && k.revoked_at_ms.is_none()
                        && (k.key_id == *key || k.name == *key)
                });
            let revoked = store
                .revoke_key(key, now_ms())
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            if revoked {
                outln!("revoked {key}");
                if local {
                    eprintln!(
                        "note: that was the local CLI key: status, send and messages are refused \
                         until the daemon restarts and issues a new one"
                    );
                }
                return Ok(());
            }
            let same_name = active_named(&store, key).await?;
            if same_name.len() > 1 {
                return Err(ExitError::Config(format!(
                    "{} active keys are named {key:?} ({}); revoke one by its id",
                    same_name.len(),
                    same_name.join(", ")
                )));
            }
            Err(ExitError::Config(format!(
                "no active key with id or name {key:?}"
            )))
        }
    }
}
