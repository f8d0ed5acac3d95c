use super::check_pairing::PairingFinding;
use super::{Cli, load_config};
use crate::config::{
    LAST_COMMITS_SECONDS, LoadedConfig, SHIPPED_UNIT_TIMEOUT_STOP_SECONDS, validate,
};
use crate::exit::ExitError;

/// Print every problem (key and reason), or the effective config with
/// secrets masked. Reads the config, the files it names and the store's
/// pairing (`check_pairing`); writes nothing.
pub fn run(cli: &Cli) -> Result<(), ExitError> {
    let loaded = load_config(cli)?;
    let (pairing_note, pairing_issue) = match super::check_pairing::stored_pairing_finding(&loaded)
    {
        Some(PairingFinding::Note(note)) => (Some(note), None),
        Some(PairingFinding::Issue(issue)) => (None, Some(issue)),
        None => (None, None),
    };
    let notes = [
        longer_stop_than_the_shipped_unit(&loaded),
        super::check_relay::push_to_a_loopback_listen(&loaded),
        super::check_relay::plain_http_relay(&loaded),
        pairing_note,
    ];
    for note in notes.into_iter().flatten() {
        eprintln!("{note}");
    }
    let mut issues = validate(&loaded);
    issues.extend(super::check_relay::relay_phone_id_without_endpoint(&loaded));
    issues.extend(pairing_issue);
    issues.extend(crate::channels::pin_record_key_issue(&loaded));
    if !issues.is_empty() {
        for issue in &issues {
            eprintln!("{issue}");
        }
        return Err(ExitError::Config(format!(
            "{} problem(s) in {}",
            issues.len(),
            loaded.path.display()
        )));
    }
    let effective = toml::to_string_pretty(&loaded.config)
        .map_err(|e| ExitError::Runtime(format!("cannot print the config: {e}")))?;
    outln!(
        "# {} is valid; effective config (secrets masked):",
        loaded.path.display()
    );
    outln!(
        "# relative paths resolve against {}",
        loaded.base_dir.display()
    );
    out!("{effective}");
    Ok(())
}

/// A note, not an error (the unit may have been given a longer
/// `TimeoutStopSec` already): a grace whose stop may outlast the shipped
/// unit's `TimeoutStopSec`, whose SIGKILL would cut it short.
fn longer_stop_than_the_shipped_unit(loaded: &LoadedConfig) -> Option<String> {
    let grace = loaded.config.server.shutdown_grace_seconds;
    let bound = crate::daemon::STOP_BOUND.as_secs();
    let longest = grace
        .saturating_add(bound)
        .saturating_add(LAST_COMMITS_SECONDS);
    (longest > SHIPPED_UNIT_TIMEOUT_STOP_SECONDS).then(|| {
        format!(
            "note: server.shutdown_grace_seconds = {grace}: a stop may take {longest} s (the \
             grace, {bound} s for the tasks to end, {LAST_COMMITS_SECONDS} s for the store's \
             last commits), more than the shipped systemd unit's \
             TimeoutStopSec={SHIPPED_UNIT_TIMEOUT_STOP_SECONDS}, whose SIGKILL would cut it \
             short: give the unit TimeoutStopSec={longest} or more (systemctl edit phonerelay)"
        )
    })
}
