use clap::builder::{PossibleValuesParser, RangedI64ValueParser};
use clap::{Args, Subcommand};
use phonerelay_channel::ChannelKind;
use reqwest::Method;

use super::client::LocalClient;
use crate::api::MAX_PAGE;
use crate::api::dto::{MessagePage, MessageView};
use crate::exit::ExitError;
use crate::store::OutboundStatus;

#[derive(Debug, Args)]
pub struct MessagesArgs {
    #[command(flatten)]
    pub wait: super::DaemonWait,
    #[command(subcommand)]
    pub command: MessagesCommand,
}

// The list's filters are judged here, by the API's own lists and bounds,
// so that a wrong one is a usage error (exit 2) whether the daemon runs
// or not, and the possible values are in --help.
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Outbound messages, newest first.
    List {
        /// Only messages in this status
        #[arg(long, value_parser = known_statuses())]
        status: Option<String>,
        /// Only messages on this channel
        #[arg(long, value_parser = listed_channels())]
        channel: Option<String>,
        #[arg(long, default_value_t = 20, value_parser = page_limit(), help = limit_help())]
        limit: u32,
        /// Where to go on: the cursor a page before ended with
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One message with its status history, as JSON.
    Show {
        /// The message's id, as `send` or `messages list` prints it
        id: String,
    },
    /// Cancel a message that is still queued.
    Cancel {
        /// The message's id, as `send` or `messages list` prints it
        id: String,
    },
}

/// `config` is the `--config` given, if any: the next page's command
/// repeats it, so that pasting it reads the same daemon.
pub async fn run(
    client: &LocalClient,
    command: &MessagesCommand,
    config: Option<&std::path::Path>,
) -> Result<(), ExitError> {
    match command {
        MessagesCommand::List {
            status,
            channel,
            limit,
            cursor,
        } => {
            let limit = limit.to_string();
            let filters = [
                ("status", status.as_deref()),
                ("channel", channel.as_deref()),
                ("limit", Some(limit.as_str())),
            ];
            list(client, &filters, cursor.as_deref(), config).await
        }
        MessagesCommand::Show { id } => {
            let message: MessageView = client
                .call(Method::GET, &message_path(id, "")?, None::<&()>)
                .await?;
            outln!(
                "{}",
                serde_json::to_string_pretty(&message).unwrap_or_default()
            );
            Ok(())
        }
        MessagesCommand::Cancel { id } => {
            let message: Cancelled = client
                .call(Method::POST, &message_path(id, "/cancel")?, None::<&()>)
                .await?;
            outln!("{} {}", message.id, message.status.as_str());
            Ok(())
        }
    }
}

/// What the CLI reads of a cancel's answer: the whole message to a key
/// that may read, only its id and status to one that may only send
/// (`CancelAnswer`); both have these two.
#[derive(serde::Deserialize)]
struct Cancelled {
    id: String,
    status: OutboundStatus,
}

/// `--status`: the statuses the API knows.
fn known_statuses() -> PossibleValuesParser {
    PossibleValuesParser::new(OutboundStatus::ALL.map(OutboundStatus::as_str))
}

/// `--channel`: the channels the API lists, those the bridge sends on
/// (`api::messages::parse_channel`), and so receives on.
pub(super) fn listed_channels() -> PossibleValuesParser {
    PossibleValuesParser::new(ChannelKind::DELIVERABLE.map(ChannelKind::as_str))
}

/// `--limit`: a page size the API takes.
fn page_limit() -> RangedI64ValueParser<u32> {
    RangedI64ValueParser::new().range(1..=i64::from(MAX_PAGE))
}

fn limit_help() -> String {
    format!("How many to show (1 to {MAX_PAGE})")
}

/// One page of the messages `filters` select, from `cursor` on.
async fn list(
    client: &LocalClient,
    filters: &[(&str, Option<&str>)],
    cursor: Option<&str>,
    config: Option<&std::path::Path>,
) -> Result<(), ExitError> {
    let query: Vec<(&str, &str)> = given(filters)
        .chain(cursor.map(|c| ("cursor", c)))
        .collect();
    let page: MessagePage = client.get_query("/api/v1/messages", &query).await?;
    print_page(&page);
    // A full page says nothing of what comes after it: say how to see
    // the rest, with the same filters.
    if let Some(next) = &page.next_cursor {
        outln!("more: {}", next_page_command(config, filters, next));
    }
    Ok(())
}

/// The filters that were given, as query parameters.
fn given<'a>(
    filters: &'a [(&'a str, Option<&'a str>)],
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    filters
        .iter()
        .filter_map(|(name, value)| Some((*name, (*value)?)))
}

fn print_page(page: &MessagePage) {
    outln!(
        "{:<37} {:<6} {:<12} {:<20} {:<10} {:>3}  ERROR",
        "ID",
        "CHAN",
        "PHONE_ID",
        "TO",
        "STATUS",
        "TRY"
    );
    for m in &page.messages {
        // A channel's or a remote's words: one line, no control characters.
        let error = m
            .error
            .as_ref()
            .map(|e| super::terminal::one_line(&format!("{}: {}", e.code, e.message)))
            .unwrap_or_default();
        outln!(
            "{:<37} {:<6} {:<12} {:<20} {:<10} {:>3}  {error}",
            m.id,
            m.channel,
            m.phone_id,
            m.to,
            m.status.as_str(),
            m.attempts
        );
    }
}

/// The command that lists the page after this one: these `filters` and
/// `cursor`, each value quoted for a shell where it needs it.
fn next_page_command(
    config: Option<&std::path::Path>,
    filters: &[(&str, Option<&str>)],
    cursor: &str,
) -> String {
    let mut command = String::from("phonerelay messages list");
    let config = config.map(|path| ("config", path.to_string_lossy()));
    let config = config.as_ref().map(|(name, path)| (*name, path.as_ref()));
    for (name, value) in config
        .into_iter()
        .chain(given(filters))
        .chain([("cursor", cursor)])
    {
        command.push_str(&format!(" --{name} {}", shell_quoted(value)));
    }
    command
}

/// The API path of message `id` and `tail`: the id is one path segment
/// whatever it holds (`/`, `?` and the like are escaped), so an odd id
/// cannot name another route. `.` and `..` would, escaped or not (the URL
/// resolves them: `messages cancel ..` posted to `/api/v1/cancel`), and
/// no message has them.
fn message_path(id: &str, tail: &str) -> Result<String, ExitError> {
    if matches!(id, "." | "..") {
        return Err(ExitError::Config(format!("no message has the id {id:?}")));
    }
    Ok(format!(
        "/api/v1/messages/{}{tail}",
        crate::media::percent_encode(id)
    ))
}

fn shell_quoted(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/+=@".contains(&b));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_is_one_path_segment_whatever_it_holds() {
        assert_eq!(
            message_path("01a2-b3", "/cancel").unwrap(),
            "/api/v1/messages/01a2-b3/cancel"
        );
        assert_eq!(
            message_path("../inbound/x/retry?", "/cancel").unwrap(),
            "/api/v1/messages/..%2Finbound%2Fx%2Fretry%3F/cancel"
        );
        // What the URL makes of it: still a message's path.
        for id in ["..x", "a..", "...", ".a"] {
            let path = message_path(id, "/cancel").unwrap();
            let url = reqwest::Url::parse(&format!("http://127.0.0.1{path}")).unwrap();
            assert!(url.path().starts_with("/api/v1/messages/"), "{id}: {url}");
            assert!(url.path().ends_with("/cancel"), "{id}: {url}");
        }
        for id in [".", ".."] {
            let refused = message_path(id, "/cancel").unwrap_err();
            assert_eq!(refused.code(), 2);
            assert!(
                refused.to_string().contains("no message has the id"),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_next_page_command_keeps_the_filters_and_quotes_what_needs_it() {
        let filters = [
            ("status", Some("it's")),
            ("channel", None),
            ("limit", Some("5")),
        ];
        assert_eq!(
            next_page_command(None, &filters, "c42"),
            r"phonerelay messages list --status 'it'\''s' --limit 5 --cursor c42"
        );
        // The --config given is repeated, so the command reads the same daemon.
        assert_eq!(
            next_page_command(Some(std::path::Path::new("/srv/pr.toml")), &filters, "c42"),
            r"phonerelay messages list --config /srv/pr.toml --status 'it'\''s' --limit 5 --cursor c42"
        );
    }
}
