//! The `phonerelay` command line.

mod backup;
mod check;
mod client;
mod keys;
mod messages;
pub mod pair;
mod pdu;
mod send;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, LoadedConfig};
use crate::exit::ExitError;

#[derive(Debug, Parser)]
#[command(
    name = "phonerelay",
    version,
    about = "Bridge a pChat relay to SMS (this build ships the SMS adapter only)",
    long_about = None,
    after_help = "\
Environment:
  PHONERELAY_API_KEY  An API key (as `phonerelay keys create` prints) that
                      send, status and messages use instead of the local key
                      in the state dir (cli.key); its scopes and phone_id
                      binding then limit what they may do and see. Unset or
                      empty: the local key."
)]
pub struct Cli {
    /// Config file [default: $PHONERELAY_CONFIG, then /etc/phonerelay/phonerelay.toml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Longest wait for the running daemon's answer (send, status,
    /// messages): a daemon that is stopped, hung or at its
    /// server.max_connections is reported instead of waited on for good.
    #[arg(long, global = true, value_name = "SECONDS", env = "PHONERELAY_TIMEOUT",
          default_value_t = client::DEFAULT_TIMEOUT_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM/SIGINT.
    Serve,
    /// Validate the config without side effects and print it, secrets masked.
    Check,
    /// Queue a message through the local daemon's API.
    Send(send::SendArgs),
    /// Endpoints, their health, queue depth and recent failures.
    Status(status::StatusArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List, show and cancel outbound messages.
    #[command(subcommand)]
    Messages(messages::MessagesCommand),
    /// Pair with the pChat relay (the relay's key on stdin or --key-file).
    Pair(pair::PairArgs),
    /// Remove the relay pairing and revoke the relay's bridge key.
    Unpair,
    /// Inbound messages not forwarded to the relay: list dead letters, retry them.
    #[command(subcommand)]
    Inbound(pair::InboundCommand),
    /// Copy the store to FILE, consistently, while the daemon runs.
    Backup(backup::BackupArgs),
    /// Put a backup in place as the store; the daemon must be stopped.
    Restore(backup::RestoreArgs),
    /// Decode or encode SMS PDUs (for debugging a modem).
    #[command(subcommand)]
    Pdu(pdu::PduCommand),
    /// Run a simulated modem on a pseudo-terminal, steered over a control socket.
    ModemSim(phonerelay_sms::sim::ModemSimArgs),
}

pub fn load_config(cli: &Cli) -> Result<LoadedConfig, ExitError> {
    let path = config::find_config_path(cli.config.as_deref());
    config::load_from_path(&path).map_err(|e| ExitError::Config(e.to_string()))
}

/// A client for the running daemon the config names.
fn daemon_client(cli: &Cli) -> Result<client::LocalClient, ExitError> {
    let timeout = std::time::Duration::from_secs(cli.timeout);
    client::LocalClient::new(&load_config(cli)?, timeout)
}

pub async fn run(cli: Cli) -> Result<(), ExitError> {
    match &cli.command {
        Command::Serve => {
            let loaded = load_config(&cli)?;
            crate::logging::init(&loaded.config.log);
            crate::daemon::serve(loaded).await
        }
        Command::Check => check::run(&cli),
        Command::Send(args) => send::run(&daemon_client(&cli)?, args).await,
        Command::Status(args) => status::run(&daemon_client(&cli)?, args).await,
        Command::Keys(command) => keys::run(&load_config(&cli)?, command).await,
        Command::Messages(command) => {
            messages::run(&daemon_client(&cli)?, command, cli.config.as_deref()).await
        }
        Command::Pair(args) => pair::pair(&load_config(&cli)?, args).await,
        Command::Unpair => pair::unpair(&load_config(&cli)?).await,
        Command::Inbound(command) => pair::inbound(&load_config(&cli)?, command).await,
        Command::Backup(args) => backup::run(&load_config(&cli)?, args).await,
        Command::Restore(args) => backup::run_restore(&load_config(&cli)?, args).await,
        Command::Pdu(command) => pdu::run(command),
        Command::ModemSim(args) => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            let on_signal = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                on_signal.cancel();
            });
            phonerelay_sms::sim::run_modem_sim_cli(args.clone(), shutdown)
                .await
                .map_err(|e| {
                    let message = format!("modem simulator: {e}");
                    // A flag no run can take (a control address off
                    // loopback) is a usage error, as clap's own are.
                    if e.kind() == std::io::ErrorKind::InvalidInput {
                        ExitError::Config(message)
                    } else {
                        ExitError::Runtime(message)
                    }
                })
        }
    }
}
