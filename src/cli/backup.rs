//! `phonerelay backup FILE`: a consistent copy of the store, taken while
//! the daemon runs; `phonerelay restore FILE`: that copy back in place,
//! with the daemon stopped (see `store::sqlite::backup`).
//!
//! The copy is the database alone, not the files kept for inbound
//! messages (`media/` in the state dir): they can be large, and once
//! forwarded the relay has them (the copy keeps the relay's URL of each).
//! Both commands say so, so that no one takes the copy for all of it.

use std::path::PathBuf;

use clap::Args;

use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::store::sqlite::backup::{
    EventsFrom, LeftBehind, PairingFrom, Restored, backup, restore,
};

/// What a restored store's daemon does with the copy's outbox: it sends
/// what the copy has queued or sending (requeued at start) but what the
/// replaced store had ended since the backup (`fates`); of a send still
/// under way there it knows nothing.
const RESTART_HINT: &str = "start the daemon: it sends the messages the copy has queued or sending, \
     but those a readable replaced store had sent or ended since the backup; one still under way \
     there (a retry, a long SMS part-sent) goes on from where the copy had reached, so its \
     recipient may get it, or parts of it, twice";

/// What neither a backup nor a restore carries.
const MEDIA_NOT_INCLUDED: &str = "files received with inbound messages (media/ in the state dir) \
     are not in a backup; one the state dir no longer has is answered 410 media_gone";

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
    let backed_up = tokio::task::spawn_blocking(move || backup(&db, &output))
        .await
        .map_err(|e| ExitError::Runtime(format!("backup task failed: {e}")))?
        .map_err(|e| ExitError::Runtime(format!("backup failed: {e}")))?;
    let summary = &backed_up.summary;
    outln!(
        "backed up {} to {}: {} outbound and {} inbound messages, schema version {}, {} KiB",
        loaded.database_path().display(),
        args.output.display(),
        summary.outbound,
        summary.inbound,
        summary.schema_version,
        summary.bytes.div_ceil(1024)
    );
    outln!("{MEDIA_NOT_INCLUDED}");
    warn(&backed_up.warnings);
    Ok(())
}

fn warn(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A copy made by `phonerelay backup`.
    #[arg(value_name = "FILE")]
    pub backup: PathBuf,
}

pub async fn run_restore(loaded: &LoadedConfig, args: &RestoreArgs) -> Result<(), ExitError> {
    match std::fs::metadata(&args.backup) {
        Ok(found) if found.is_file() => {}
        Ok(_) => {
            return Err(ExitError::Config(format!(
                "{}: not a file",
                args.backup.display()
            )));
        }
        // A path through a file is no path at all: a slip in the command.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(ExitError::Config(format!(
                "{}: no such file",
                args.backup.display()
            )));
        }
        // There, maybe, but not for this user (a folder it may not
        // enter): a run-time failure, not a mistake in the command.
        Err(e) => {
            return Err(ExitError::Runtime(format!(
                "cannot look for {}: {e}",
                args.backup.display()
            )));
        }
    }
    let db = loaded.database_path();
    crate::private_files::create_dir(&loaded.state_dir()).map_err(|e| {
        ExitError::Runtime(format!(
            "cannot create {}: {e}",
            loaded.state_dir().display()
        ))
    })?;
    // Held until the restore is over: no daemon can start on the store
    // while it is being replaced (systemd restarting a failed unit, say).
    let _lock = crate::instance_lock::acquire_for_command(&loaded.state_dir())
        .map_err(|e| ExitError::Runtime(format!("restore failed: {e}")))?;
    let suffix = format!(".before-restore-{}", crate::clock::now_ms() / 1000);
    let (copy, target, state_dir) = (args.backup.clone(), db.clone(), loaded.state_dir());
    let restored = tokio::task::spawn_blocking(move || {
        // Held from before the replaced store's keys are read until the
        // copy is in place: a `keys revoke` (or `pair`, `unpair`,
        // `inbound`) run meanwhile would write to a store that is being
        // replaced, and what it wrote would be lost. Those commands hold
        // it shared while they have the store open; this waits a few
        // seconds for them (here, off the async runtime), then refuses.
        let _store_lock = crate::store_lock::exclusive(&state_dir)?;
        restore(&copy, &target, &suffix).map_err(ExitError::Runtime)
    })
    .await
    .map_err(|e| ExitError::Runtime(format!("restore task failed: {e}")))?
    .map_err(|e| ExitError::Runtime(format!("restore failed: {e}")))?;
    outln!(
        "restored {} as {}: {} outbound and {} inbound messages, schema version {}",
        args.backup.display(),
        db.display(),
        restored.summary.outbound,
        restored.summary.inbound,
        restored.summary.schema_version
    );
    for kept in &restored.kept {
        outln!("the replaced store is kept as {}", kept.display());
    }
    print_carried(&restored);
    print_left_behind(&restored);
    outln!("{MEDIA_NOT_INCLUDED}");
    warn(&restored.warnings);
    outln!("{RESTART_HINT}");
    Ok(())
}

/// What the restored store took from the replaced one; never a key, only
/// counts.
fn print_carried(restored: &Restored) {
    if let Some(keys) = &restored.carried.keys {
        outln!(
            "API keys as the replaced store has them: {} made after the backup kept, \
             {} revoked after it still revoked",
            keys.added,
            keys.revoked
        );
    }
    if let EventsFrom::Clock { floor, why } = &restored.carried.events {
        outln!(
            "the replaced store's last status event is not known ({why}): event ids go on \
             after {floor} (the clock in microseconds), past any the relay may have"
        );
    }
    if restored.carried.keys.is_none() {
        outln!(
            "no replaced store could be read: API keys are as the backup has them, so \
             keys revoked since it was taken are active again: revoke them again \
             (phonerelay keys list)"
        );
    }
    outln!("{}", pairing_said(&restored.carried.pairing));
    if let Some(fates) = &restored.carried.fates
        && fates.sends_ended + fates.replies_forwarded > 0
    {
        outln!(
            "taken as the replaced store has them: {} sends it sent or ended after the backup \
             (not sent again), {} replies the relay took after it (not forwarded again)",
            fates.sends_ended,
            fates.replies_forwarded
        );
    }
    if let Some(fates) = &restored.carried.fates
        && fates.sends_pruned + fates.replies_pruned > 0
    {
        outln!(
            "deleted as the replaced store had deleted them (ended there, then past \
             storage.retention_days): {} sends (not sent again), {} replies (not forwarded again)",
            fates.sends_pruned,
            fates.replies_pruned
        );
    }
    if let Some(media) = &restored.media {
        outln!(
            "{} received files the restored store has no row for are kept in {}, \
             to go back with the replaced store",
            media.files,
            media.dir.display()
        );
    }
}

/// What only the replaced store holds: messages committed after the
/// backup, replies the SIM no longer has among them. None is taken over;
/// each kind is named with its count and the file that keeps it, on the
/// error stream as a warning, so that no loss goes without a word.
fn print_left_behind(restored: &Restored) {
    if let Some(said) = left_behind_said(restored.kept.first(), &restored.carried.left_behind) {
        eprintln!("warning: {said}");
    }
}

/// What [`print_left_behind`] says of `left`, with the replaced store
/// kept as `kept` (none said without a replaced store).
fn left_behind_said(kept: Option<&PathBuf>, left: &Option<LeftBehind>) -> Option<String> {
    let kept = kept?.display();
    let Some(left) = left else {
        return Some(format!(
            "what the replaced store holds that the backup does not could not be read; \
             messages committed after the backup are only in {kept}"
        ));
    };
    if *left == LeftBehind::default() {
        return None;
    }
    Some(format!(
        "committed after the backup and not in the restored store, kept only in {kept}: \
         {} received messages ({} of them never taken by the relay), {} received messages that \
         could not be decoded, {} accepted sends not yet sent",
        left.inbound, left.inbound_not_forwarded, left.unreadable, left.outbound_unsent
    ))
}

/// Where the restored store's relay pairing came from. The relay key file
/// beside the store is not in a backup and a restore leaves it as it is:
/// a pairing not carried over may not be the one that file is for.
fn pairing_said(pairing: &PairingFrom) -> &'static str {
    match pairing {
        PairingFrom::Replaced { paired: true } => {
            "the relay pairing and link state as the replaced store has them, for the relay key \
             file beside it"
        }
        PairingFrom::Replaced { paired: false } => {
            "no relay pairing, as the replaced store had none"
        }
        PairingFrom::BackupOverNew => {
            "the relay pairing is the backup's: the replaced store is not the one the backup was \
             made of and was never paired; check that the relay key file in the state dir is the \
             one it was made with (phonerelay pair --status), or pair again"
        }
        PairingFrom::Backup => {
            "the relay pairing was not carried over (no replaced store could be read): it is the \
             backup's, which may not be for the relay key file in the state dir: check it with \
             phonerelay pair --status, and pair again if the relay or its key changed since the \
             backup"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pairing_not_carried_over_is_said() {
        let said = pairing_said(&PairingFrom::Backup);
        assert!(said.contains("not carried over"), "{said}");
        assert!(said.contains("pair again"), "{said}");
    }

    #[test]
    fn what_only_the_replaced_store_holds_is_said_with_its_file() {
        let kept = PathBuf::from("state/phonerelay.sqlite3.before-restore-1");
        let left = LeftBehind {
            inbound: 3,
            inbound_not_forwarded: 2,
            unreadable: 1,
            outbound_unsent: 4,
        };
        let said = left_behind_said(Some(&kept), &Some(left)).unwrap();
        assert!(
            said.contains("kept only in state/phonerelay.sqlite3.before-restore-1: 3 received"),
            "{said}"
        );
        assert!(
            said.contains("3 received messages (2 of them never taken by the relay)"),
            "{said}"
        );
        assert!(
            said.contains("1 received messages that could not be decoded"),
            "{said}"
        );
        assert!(said.contains("4 accepted sends not yet sent"), "{said}");
        assert_eq!(
            left_behind_said(Some(&kept), &Some(LeftBehind::default())),
            None
        );
        let unknown = left_behind_said(Some(&kept), &None).unwrap();
        assert!(unknown.contains("could not be read; messages"), "{unknown}");
        assert_eq!(left_behind_said(None, &None), None, "no replaced store");
    }
}
