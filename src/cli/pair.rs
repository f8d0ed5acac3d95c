//! `phonerelay pair`, `pair --status`, `unpair` and `inbound` (dead
//! letters). They work on the state dir directly, daemon running or not,
//! but not while a restore replaces the store (`store_lock.rs`).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use phonerelay_channel::{ChannelKind, validate_address};

use crate::clock::{now_ms, rfc3339};
use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::relay::pairing;
use crate::store::{InboundFilter, ManualRetry, RelayInboundState, Store};

// With the store lock held shared: no restore replaces the store while
// these commands write to it (see `keys::open`). Only `pair` makes a
// store where there is none.
use super::keys::{open, open_or_create};

#[derive(Debug, Args)]
pub struct PairArgs {
    /// The relay's base URL, e.g. https://relay.example.com
    #[arg(long, value_name = "URL", required_unless_present = "status")]
    pub relay: Option<String>,
    /// The relay's id for this phone/bridge
    #[arg(long, value_name = "ID", required_unless_present = "status")]
    pub phone_id: Option<String>,
    /// Read the relay-issued key from this file instead of stdin
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Pair even though no configured endpoint has this phone_id (the
    /// modem's config is written later); the relay's sends are refused
    /// until one has
    #[arg(long)]
    pub force: bool,
    /// Show the pairing and when the relay was last reached
    #[arg(long, conflicts_with_all = ["relay", "phone_id", "key_file", "force"])]
    pub status: bool,
}

#[derive(Debug, Subcommand)]
pub enum InboundCommand {
    /// List inbound messages the relay refused for good or that had no route.
    Dead {
        /// How many to list, newest first (clamped to 1 to 500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Queue an inbound message for the relay again: a dead letter, to the
    /// pChat address it had (one that had no route is routed afresh, so a
    /// default_to set since takes it), or one set aside for another phone
    /// (other_phone), which is forwarded if the link then carries its
    /// phone and set aside again if not. With --all, every dead letter
    /// the filters match, in one transaction.
    // One of the two, so a bare `retry` names both in its usage error.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "all"])))]
    Retry {
        /// The message's id, as `inbound dead` lists it
        id: Option<String>,
        /// Send it to this pChat address instead (origin.route "manual"),
        /// whatever address it had or routing would find; one set aside
        /// for another phone goes too, through the link's phone. Not with
        /// --all: many senders' letters are not meant for one address
        #[arg(long, value_name = "PCHAT_ADDRESS", conflicts_with = "all")]
        to: Option<String>,
        /// Every dead letter (not those set aside for another phone),
        /// or those --code, --since and --channel match; each goes as a
        /// retry by its id without --to would
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filters: super::dead_letters::DeadFilters,
    },
    /// List what arrived and could not be read (an SMS PDU the codec
    /// cannot decode), kept as it came: id, time, endpoint, where it came
    /// from, why, and its bytes in hex (`phonerelay pdu decode HEX` says
    /// what it makes of an SMS one).
    Unreadable {
        /// How many to list, newest first (clamped to 1 to 500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only this endpoint's
        #[arg(long)]
        phone_id: Option<String>,
    },
}

/// The key from `--key-file` or one line of stdin; never from argv.
async fn read_key(args: &PairArgs) -> Result<String, ExitError> {
    let text = match &args.key_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| ExitError::Config(format!("cannot read {}: {e}", path.display())))?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                read_key_from_terminal().await?
            } else {
                let mut all = String::new();
                stdin
                    .lock()
                    .read_to_string(&mut all)
                    .map_err(|e| ExitError::Runtime(format!("cannot read stdin: {e}")))?;
                all
            }
        }
    };
    Ok(text.trim().to_string())
}

/// One line typed or pasted on the terminal, not echoed. A Ctrl-C (or
/// Ctrl-\, or a SIGTERM) while it is awaited ends the command with the
/// terminal's echo put back: killed by the signal, it left the shell after
/// it typing blind.
async fn read_key_from_terminal() -> Result<String, ExitError> {
    use tokio::signal::unix::{SignalKind, signal};
    let watch = |kind| {
        signal(kind).map_err(|e| ExitError::Runtime(format!("cannot watch for signals: {e}")))
    };
    let mut interrupt = watch(SignalKind::interrupt())?;
    let mut quit = watch(SignalKind::quit())?;
    let mut terminate = watch(SignalKind::terminate())?;
    let quiet = super::echo_off::EchoOff::on(std::io::stdin());
    eprintln!(
        "paste the key the relay issued for this phone{}, then Enter:",
        if quiet.is_quiet() {
            " (it is not shown)"
        } else {
            ""
        }
    );
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    let read = tokio::select! {
        read = read => Ok(read),
        _ = interrupt.recv() => Err(libc::SIGINT),
        _ = quit.recv() => Err(libc::SIGQUIT),
        _ = terminate.recv() => Err(libc::SIGTERM),
    };
    drop(quiet);
    // The Enter was not echoed either.
    eprintln!();
    // SAFETY: SIG_DFL installs no handler. These end the command again,
    // as they did before the prompt, not only this wait.
    for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    match read {
        Err(signal) => Err(ExitError::Interrupted {
            signal,
            message: "interrupted: nothing was paired".into(),
        }),
        Ok(Ok(Ok(line))) => Ok(line),
        Ok(Ok(Err(e))) => Err(ExitError::Runtime(format!("cannot read stdin: {e}"))),
        Ok(Err(e)) => Err(ExitError::Runtime(format!("cannot read stdin: {e}"))),
    }
}

/// A `relay.url` in the config naming another relay than `--relay`
/// would keep the link off once paired (the relay key is never sent to a
/// relay that did not issue it), so such a pairing is refused before the
/// relay is asked or the state dir touched.
fn same_relay_as_configured(loaded: &LoadedConfig, url: &str) -> Result<(), ExitError> {
    match &loaded.config.relay.url {
        Some(configured) if !crate::relay::relay_url::same_relay(configured, url) => {
            let configured = crate::relay::shown_url(configured);
            Err(ExitError::Config(format!(
                "relay.url in the config names {configured}, not {}: the link would stay off, \
                 as the relay key is never sent to a relay that did not issue it; pair with \
                 --relay {configured}, or remove relay.url from the config",
                crate::relay::shown_url(url)
            )))
        }
        _ => Ok(()),
    }
}

pub async fn pair(loaded: &LoadedConfig, args: &PairArgs) -> Result<(), ExitError> {
    if args.status {
        let store = open(loaded)?;
        out!("{}", pairing::status(loaded, &*store).await?);
        return Ok(());
    }
    let (Some(url), Some(phone_id)) = (&args.relay, &args.phone_id) else {
        return Err(ExitError::Config(
            "give --relay URL and --phone-id ID".into(),
        ));
    };
    relay_section_valid(loaded)?;
    let key = read_key(args).await?;
    pairing::validate_inputs(url, phone_id, &key)?;
    same_relay_as_configured(loaded, url)?;
    if !args.force {
        endpoint_has_phone_id(loaded, phone_id)?;
    }
    // Said before the key goes to the relay.
    if crate::relay::relay_url::plain_http_off_this_host(url) {
        let warning = crate::relay::relay_url::plain_http_warning(&crate::relay::shown_url(url));
        eprintln!("warning: {warning}");
    }
    // Check with the relay before touching the state dir.
    let store = open_or_create(loaded)?;
    let outcome = pairing::pair(loaded, &*store, url, phone_id, &key).await?;
    eprintln!(
        "paired with {url} as phone_id {phone_id}; the relay key is in {} (mode 600)",
        phonerelay_channel::shown_secret_path(&outcome.key_file)
    );
    // The link runs as the config's phone_id, whatever this pairing says:
    // the relay would get this pairing's key for another phone.
    if let Some(configured) = &loaded.config.relay.phone_id
        && configured != phone_id
    {
        eprintln!(
            "note: relay.phone_id in the config ({configured:?}) overrides this pairing's \
             phone_id: the link runs as {configured:?}"
        );
    }
    // Only with --force: the bridge key is bound to the phone_id, and every
    // send the relay pushes with it is refused until an endpoint with that
    // phone_id exists.
    if !crate::channels::configured_phone_ids(loaded).contains(phone_id) {
        eprintln!(
            "note: no endpoint with phone_id {phone_id:?} is configured in {}; \
             the relay's sends are refused until one is",
            loaded.path.display()
        );
    }
    eprintln!(
        "bridge key {} created for the relay to push sends with (scopes send,read; phone_id {phone_id}).",
        outcome.bridge_key_id
    );
    eprintln!("it is shown once; enter it on the relay now:");
    if let Err(e) = super::shown_once::print_secret(&outcome.bridge_key) {
        // Nobody got it: not left active for whoever might find it.
        let revoked = store
            .revoke_key(&outcome.bridge_key_id, crate::clock::now_ms())
            .await
            .map_or_else(
                |r| format!("could not be revoked ({r})"),
                |_| "is revoked".into(),
            );
        return Err(ExitError::Runtime(format!(
            "the pairing is recorded, but its bridge key could not be written to standard \
             output ({e}) and {revoked}: run `phonerelay pair` again for a new one"
        )));
    }
    eprintln!(
        "a running daemon starts using this pairing within {} s (at once on SIGHUP, e.g. `systemctl reload phonerelay`).",
        loaded.config.relay.settings_poll_seconds
    );
    Ok(())
}

/// The bridge key `pair` issues is bound to the phone_id, and the daemon
/// routes a send by it: with no endpoint of that phone_id, every send the
/// relay pushes is refused (422 unknown_phone_id) and every pulled job
/// rejected, so such a pairing is refused unless `--force` says the
/// endpoint is still to come.
fn endpoint_has_phone_id(loaded: &LoadedConfig, phone_id: &str) -> Result<(), ExitError> {
    let configured = crate::channels::configured_phone_ids(loaded);
    if configured.iter().any(|id| id == phone_id) {
        return Ok(());
    }
    let known = super::check_relay::quoted_list(&configured);
    Err(ExitError::Config(format!(
        "no endpoint with phone_id {phone_id:?} is configured in {} (configured phone_ids: \
         {known}): the relay's sends for it would be refused (422 unknown_phone_id). Give --phone-id the phone_id of \
         an endpoint, or set that modem's phone_id = {phone_id:?} first, or pair with --force \
         if its config is still to be written; nothing was changed",
        loaded.path.display()
    )))
}

/// The config's `[relay]` as the daemon would take it: a pairing under a
/// `[relay]` it refuses (a `relay.url` with a password in it, which `pair`
/// would otherwise print) is made for a daemon that will not start. Only
/// that section: the others' host checks (a `${SIM_PIN}`, a credential)
/// may need the service's environment, which a shell lacks.
fn relay_section_valid(loaded: &LoadedConfig) -> Result<(), ExitError> {
    let issues: Vec<String> = crate::config::validate(loaded)
        .into_iter()
        .filter(|issue| issue.key.starts_with("relay.") && !issue.absent_for_now)
        .map(|issue| issue.to_string())
        .collect();
    if issues.is_empty() {
        return Ok(());
    }
    Err(ExitError::Config(format!(
        "{}\n{} problem(s) in [relay] of {}: the daemon would not start on it; \
         nothing was changed",
        issues.join("\n"),
        issues.len(),
        loaded.path.display()
    )))
}

pub async fn unpair(loaded: &LoadedConfig) -> Result<(), ExitError> {
    let store = open(loaded)?;
    out!("{}", pairing::unpair(loaded, &*store).await?);
    Ok(())
}

pub async fn inbound(loaded: &LoadedConfig, command: &InboundCommand) -> Result<(), ExitError> {
    let store = open(loaded)?;
    match command {
        InboundCommand::Dead { limit } => {
            let dead = store
                .list_relay_inbound(RelayInboundState::Dead, None, None, (*limit).clamp(1, 500))
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            if dead.is_empty() {
                outln!("no dead letters");
            }
            for r in dead {
                outln!("{}", dead_letter_line(&r));
            }
            Ok(())
        }
        InboundCommand::Unreadable { limit, phone_id } => {
            let filter = InboundFilter {
                phone_id: phone_id.clone(),
                limit: (*limit).clamp(1, 500),
                ..Default::default()
            };
            let kept = store
                .list_unreadable(filter)
                .await
                .map_err(|e| ExitError::Runtime(e.to_string()))?;
            if kept.is_empty() {
                outln!("no unreadable inbound");
            }
            for r in kept {
                outln!(
                    "{}  {}  {}/{}  {}  {}  {}",
                    r.id,
                    rfc3339(r.committed_at_ms),
                    r.channel,
                    r.phone_id,
                    r.origin,
                    r.reason,
                    hex::encode_upper(&r.raw),
                );
            }
            Ok(())
        }
        InboundCommand::Retry {
            id: Some(id), to, ..
        } => retry_one(&*store, id, to.as_deref()).await,
        // clap lets no other through: without an id, --all was given.
        InboundCommand::Retry {
            id: None, filters, ..
        } => super::dead_letters::retry_all(&*store, filters).await,
    }
}

/// A dead letter as `inbound dead` lists it. Its sender and the relay's
/// words are others': one line each, no control character of theirs
/// reaching the terminal.
fn dead_letter_line(r: &crate::store::RelayInbound) -> String {
    use super::terminal::one_line;
    // Both times: `retry --all --since` goes by when it died, which may
    // be long after it came (a relay's bad spell).
    format!(
        "{}  came {}  died {}  {}:{}  {}  {}: {}",
        r.inbound.id,
        rfc3339(r.inbound.committed_at_ms),
        r.updated_at_ms.map_or_else(|| "-".into(), rfc3339),
        r.inbound.channel,
        one_line(&r.inbound.from),
        one_line(r.to.as_deref().unwrap_or("-")),
        one_line(r.error_code.as_deref().unwrap_or("-")),
        one_line(r.error.as_deref().unwrap_or("")),
    )
}

/// `inbound retry ID [--to ADDRESS]`.
async fn retry_one(store: &dyn Store, id: &str, to: Option<&str>) -> Result<(), ExitError> {
    if let Some(to) = to {
        // The API's check of a pChat address, before anything
        // is changed.
        validate_address(ChannelKind::Pchat, to)
            .map_err(|e| ExitError::Config(format!("invalid_field: {} (field to)", e.message)))?;
    }
    match store
        .retry_relay_inbound(id, now_ms(), to)
        .await
        .map_err(|e| ExitError::Runtime(e.to_string()))?
    {
        ManualRetry::Requeued(_) => {
            match to {
                Some(to) => outln!("{id} queued for the relay again, to {to}"),
                None => outln!("{id} queued for the relay again"),
            }
            Ok(())
        }
        ManualRetry::NotFound => Err(ExitError::Config(format!("no inbound message {id}"))),
        ManualRetry::NotDead(state) => Err(ExitError::Config(format!(
            "{id} is {}; only dead letters and messages set aside (other_phone) \
             can be retried",
            state.as_str()
        ))),
    }
}
