use clap::Subcommand;

use crate::clock::{now_ms, rfc3339};
use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::keys;
use crate::store::{Scope, SqliteStore, Store};

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
    Revoke { key: String },
}

fn open(loaded: &LoadedConfig) -> Result<SqliteStore, ExitError> {
    let db = loaded.database_path();
    SqliteStore::open(&db)
        .map_err(|e| ExitError::Runtime(format!("cannot open the store {}: {e}", db.display())))
}

pub async fn run(loaded: &LoadedConfig, command: &KeysCommand) -> Result<(), ExitError> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            phone_id,
        } => {
            if name.trim().is_empty() {
                return Err(ExitError::Config("--name must not be empty".into()));
            }
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
            let store = open(loaded)?;
            let issued = keys::issue(name, scopes, phone_id.clone(), now_ms());
            let key_id = issued.record.key_id.clone();
            store
                .create_key(issued.record)
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            eprintln!("created key {key_id} ({name}); it is shown once, store it now:");
            println!("{}", issued.clear);
            Ok(())
        }
        KeysCommand::List => {
            let store = open(loaded)?;
            let keys = store
                .list_keys()
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            println!(
                "{:<18} {:<16} {:<18} {:<14} {:<26} STATE",
                "KEY_ID", "NAME", "SCOPES", "PHONE_ID", "CREATED"
            );
            for k in keys {
                let scopes: Vec<String> = k.scopes.iter().map(ToString::to_string).collect();
                let state = match k.revoked_at_ms {
                    Some(at) => format!("revoked {}", rfc3339(at)),
                    None => "active".into(),
                };
                println!(
                    "{:<18} {:<16} {:<18} {:<14} {:<26} {state}",
                    k.key_id,
                    k.name,
                    scopes.join(","),
                    k.phone_id.as_deref().unwrap_or("any"),
                    rfc3339(k.created_at_ms),
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { key } => {
            let store = open(loaded)?;
            let revoked = store
                .revoke_key(key, now_ms())
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            if revoked {
                println!("revoked {key}");
                Ok(())
            } else {
                Err(ExitError::Config(format!(
                    "no active key with id or (unique) name {key:?}"
                )))
            }
        }
    }
}
