//! The `phonerelay` command line.

#[macro_use]
pub(crate) mod stdout;
mod backup;
mod check;
mod check_pairing;
mod check_relay;
mod client;
mod dead_letters;
mod echo_off;
mod keys;
mod messages;
pub mod pair;
mod pdu;
mod refusal;
mod send;
mod shown_once;
mod status;
pub(crate) mod terminal;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
                      empty: the local key.

Exit status:
  0  done
  1  a failure at run time: the daemon not running or not answering, its
     store, the network; trying again later may work
  2  the config or the command line is wrong, as is a request the daemon
     refuses with an HTTP 4xx other than 401 and 403
  3  a remote party refused us: the daemon the API key (revoked, without
     the scope, bound to another phone_id: HTTP 401 or 403), or the relay
     the key `pair` was given
  a Ctrl-C or SIGTERM at `pair`'s key prompt ends it by that signal
  (130 or 143 in a shell), a Ctrl-\\ by 131"
)]
pub struct Cli {
    /// Config file [default: $PHONERELAY_CONFIG, then /etc/phonerelay/phonerelay.toml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Longest wait for the running daemon's answer, for send, status
    /// and messages (the commands that wait on it; the others ignore it),
    /// also taken after them [default: $PHONERELAY_TIMEOUT, then 30]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

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
    Messages(messages::MessagesArgs),
    /// Pair with the pChat relay (the relay's key on stdin or --key-file).
    Pair(pair::PairArgs),
    /// Remove the relay pairing and revoke the relay's bridge key.
    Unpair,
    /// Inbound messages not forwarded to the relay: list dead letters, retry
    /// them; list what arrived and could not be read.
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

/// The config, or why not: exit 2 (not restarted: the operator must put
/// it right), but a read that failed for now (an I/O error at boot), exit
/// 1, which the service manager retries.
pub fn load_config(cli: &Cli) -> Result<LoadedConfig, ExitError> {
    let path = config::find_config_path(cli.config.as_deref());
    config::load_from_path(&path).map_err(|e| match e {
        config::ConfigError::Read { for_now: true, .. } => ExitError::Runtime(e.to_string()),
        e => ExitError::Config(e.to_string()),
    })
}

/// `--timeout` as the commands that wait on the daemon take it, after
/// their name (`status --timeout 5`); only they show it in their help,
/// where a global flag showed under every command, `serve` and `keys`
/// too, which ignore it. Global within them: `messages list --timeout 5`.
#[derive(Debug, Args)]
pub struct DaemonWait {
    /// Longest wait for the running daemon's answer: a daemon that is
    /// stopped, hung or at its server.max_connections is reported instead
    /// of waited on for good [default: $PHONERELAY_TIMEOUT, then 30]
    #[arg(long, global = true, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
}

/// A client for the running daemon the config names, waiting as long as
/// the command's `--timeout`, else the one before the command says.
fn daemon_client(cli: &Cli, wait: &DaemonWait) -> Result<client::LocalClient, ExitError> {
    let env = std::env::var(TIMEOUT_ENV).ok();
    let seconds = timeout_seconds(wait.timeout.or(cli.timeout), env.as_deref())?;
    client::LocalClient::new(&load_config(cli)?, std::time::Duration::from_secs(seconds))
}

const TIMEOUT_ENV: &str = "PHONERELAY_TIMEOUT";

/// `--timeout`, else `PHONERELAY_TIMEOUT`, else the default. Read here, for
/// the commands that wait on the daemon, not by clap for every command: a
/// bad or empty value in the environment must not stop `serve` (which a
/// unit refusing to restart on exit 2 would leave down) or `keys`. Empty
/// is unset, as for the other variables.
fn timeout_seconds(flag: Option<u64>, env: Option<&str>) -> Result<u64, ExitError> {
    if let Some(seconds) = flag {
        return Ok(seconds);
    }
    match env.map(str::trim).filter(|value| !value.is_empty()) {
        None => Ok(client::DEFAULT_TIMEOUT_SECONDS),
        Some(value) => match value.parse::<u64>() {
            Ok(seconds) if seconds >= 1 => Ok(seconds),
            _ => Err(ExitError::Config(format!(
                "{TIMEOUT_ENV}: must be a whole number of seconds, at least 1"
            ))),
        },
    }
}

/// Why a command's report could not be written to standard output, if it
/// could not (`stdout.rs`): the command then ends with exit 1.
pub fn report_failure() -> Option<&'static str> {
    stdout::failure()
}

pub async fn run(cli: Cli) -> Result<(), ExitError> {
    match &cli.command {
        Command::Serve => {
            let loaded = load_config(&cli)?;
            crate::logging::init(&loaded.config.log);
            crate::daemon::serve(loaded).await
        }
        Command::Check => check::run(&cli),
        Command::Send(args) => send::run(&daemon_client(&cli, &args.wait)?, args).await,
        Command::Status(args) => status::run(&daemon_client(&cli, &args.wait)?, args).await,
        Command::Keys(command) => keys::run(&load_config(&cli)?, command).await,
        Command::Messages(args) => {
            let client = daemon_client(&cli, &args.wait)?;
            messages::run(&client, &args.command, cli.config.as_deref()).await
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn timeout_of(args: &[&str]) -> Option<u64> {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let wait = match &cli.command {
            Command::Send(args) => args.wait.timeout,
            Command::Status(args) => args.wait.timeout,
            Command::Messages(args) => args.wait.timeout,
            _ => None,
        };
        wait.or(cli.timeout)
    }

    #[test]
    fn the_timeout_is_taken_before_or_after_the_commands_that_wait_on_the_daemon() {
        for args in [
            &["phonerelay", "--timeout", "5", "status"][..],
            &["phonerelay", "status", "--timeout", "5"],
            &["phonerelay", "messages", "--timeout", "5", "list"],
            &["phonerelay", "messages", "list", "--timeout", "5"],
            &["phonerelay", "messages", "show", "m1", "--timeout", "5"],
            &[
                "phonerelay",
                "send",
                "--timeout",
                "5",
                "--channel",
                "sms",
                "--to",
                "+1555",
                "--text",
                "hi",
            ],
        ] {
            assert_eq!(timeout_of(args), Some(5), "{args:?}");
        }
        // After the command's name, the command's own wins.
        assert_eq!(
            timeout_of(&["phonerelay", "--timeout", "5", "status", "--timeout", "7"]),
            Some(7)
        );
        for args in [
            &["phonerelay", "status", "--timeout", "0"][..],
            &["phonerelay", "serve", "--timeout", "5"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn only_the_commands_that_wait_on_the_daemon_show_the_timeout() {
        let mut cli = Cli::command();
        cli.build();
        let help = |path: &[&str]| {
            let mut command = cli.clone();
            for name in path {
                command = command.find_subcommand(name).expect(name).clone();
            }
            command.render_long_help().to_string()
        };
        for waits in [
            &["send"][..],
            &["status"],
            &["messages", "list"],
            &["messages", "show"],
        ] {
            assert!(help(waits).contains("--timeout"), "{waits:?}");
        }
        for ignores in [
            &["serve"][..],
            &["check"],
            &["keys", "revoke"],
            &["pair"],
            &["backup"],
            &["pdu", "encode"],
        ] {
            assert!(!help(ignores).contains("--timeout"), "{ignores:?}");
        }
        // The main help names the commands that use it.
        assert!(help(&[]).contains("for send, status and messages"));
    }

    #[test]
    fn the_timeout_comes_from_the_flag_then_the_environment_then_the_default() {
        assert_eq!(timeout_seconds(Some(5), Some("7")).unwrap(), 5);
        assert_eq!(timeout_seconds(None, Some(" 7\r\n")).unwrap(), 7);
        for unset in [None, Some(""), Some("  ")] {
            assert_eq!(
                timeout_seconds(None, unset).unwrap(),
                client::DEFAULT_TIMEOUT_SECONDS
            );
        }
        for bad in ["0", "5s", "-1"] {
            let error = timeout_seconds(None, Some(bad)).unwrap_err();
            assert_eq!(error.code(), 2, "{bad}");
            assert!(error.to_string().contains(TIMEOUT_ENV), "{error}");
        }
    }
}
