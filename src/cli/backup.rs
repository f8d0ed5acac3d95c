//! `phonerelay backup FILE`: a consistent copy of the store, taken while
//! the daemon runs (see `store::sqlite::backup`).

use std::path::PathBuf;

use clap::Args;

use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::store::sqlite::backup::backup;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy; must not exist yet.
    #[arg(value_name = "FILE")]
    pub output: PathBuf,
}

pub async fn run(loaded: &LoadedConfig, args: &BackupArgs) -> Result<(), ExitError> {
    if args.output.exists() {
        return Err(ExitError::Config(format!(
            "{} already exists; a backup never overwrites a file",
            args.output.display()
        )));
    }
    let db = loaded.database_path();
    let output = args.output.clone();
    let summary = tokio::task::spawn_blocking(move || backup(&db, &output))
        .await
        .map_err(|e| ExitError::Runtime(format!("backup task failed: {e}")))?
        .map_err(|e| ExitError::Runtime(format!("backup failed: {e}")))?;
    println!(
        "backed up {} to {}: {} outbound and {} inbound messages, schema version {}, {} KiB",
        loaded.database_path().display(),
        args.output.display(),
        summary.outbound,
        summary.inbound,
        summary.schema_version,
        summary.bytes.div_ceil(1024)
    );
    Ok(())
}
