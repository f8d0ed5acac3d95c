use clap::Subcommand;
use reqwest::Method;

use super::client::LocalClient;
use crate::api::dto::{MessagePage, MessageView};
use crate::exit::ExitError;

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Outbound messages, newest first.
    List {
        /// Only messages in this status (queued, sending, sent, delivered,
        /// read, failed, expired, cancelled)
        #[arg(long)]
        status: Option<String>,
        /// Only messages on this channel (sms, wa, tg, email, notify)
        #[arg(long)]
        channel: Option<String>,
        /// How many to show (1 to 500)
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One message with its status history, as JSON.
    Show { id: String },
    /// Cancel a message that is still queued.
    Cancel { id: String },
}

pub async fn run(client: &LocalClient, command: &MessagesCommand) -> Result<(), ExitError> {
    match command {
        MessagesCommand::List {
            status,
            channel,
            limit,
        } => {
            let mut query = format!("/api/v1/messages?limit={limit}");
            if let Some(s) = status {
                query.push_str(&format!("&status={s}"));
            }
            if let Some(c) = channel {
                query.push_str(&format!("&channel={c}"));
            }
            let page: MessagePage = client.call(Method::GET, &query, None::<&()>).await?;
            println!(
                "{:<37} {:<6} {:<12} {:<20} {:<10} {:>3}  ERROR",
                "ID", "CHAN", "PHONE_ID", "TO", "STATUS", "TRY"
            );
            for m in page.messages {
                let error = m
                    .error
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_default();
                println!(
                    "{:<37} {:<6} {:<12} {:<20} {:<10} {:>3}  {error}",
                    m.id,
                    m.channel,
                    m.phone_id,
                    m.to,
                    m.status.as_str(),
                    m.attempts
                );
            }
            Ok(())
        }
        MessagesCommand::Show { id } => {
            let message: MessageView = client
                .call(Method::GET, &format!("/api/v1/messages/{id}"), None::<&()>)
                .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&message).unwrap_or_default()
            );
            Ok(())
        }
        MessagesCommand::Cancel { id } => {
            let message: MessageView = client
                .call(
                    Method::POST,
                    &format!("/api/v1/messages/{id}/cancel"),
                    None::<&()>,
                )
                .await?;
            println!("{} {}", message.id, message.status.as_str());
            Ok(())
        }
    }
}
