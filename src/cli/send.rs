use clap::Args;
use clap::builder::NonEmptyStringValueParser;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::client::LocalClient;
use crate::api::dto::Accepted;
use crate::api::system::StatusReport;
use crate::exit::ExitError;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// sms, the one adapter this build ships (the protocol also names wa,
    /// tg, email and notify, which have no adapter yet)
    #[arg(long)]
    pub channel: String,
    /// Recipient; for sms an E.164 number such as +15551230001
    #[arg(long)]
    pub to: String,
    /// The message's text, not empty (this command sends no attachments
    /// or options)
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub text: String,
    /// The configured endpoint (its phone_id, e.g. a modem's) that sends;
    /// may be left out when the channel has only one
    #[arg(long)]
    pub phone_id: Option<String>,
    /// One line of at most 998 characters, for channels that carry one;
    /// SMS does not send it
    #[arg(long)]
    pub subject: Option<String>,
    /// How long the message may wait to be sent before it expires, 1 to
    /// outbox.max_ttl_seconds [default: outbox.default_ttl_seconds]
    #[arg(long)]
    pub ttl_seconds: Option<u64>,
    /// low, normal or high
    #[arg(long)]
    pub priority: Option<String>,
    /// The send's Idempotency-Key: a repeat with the same key (and the same
    /// message) is answered as the first and sends nothing more [default: a
    /// new one each run, named in the error if the answer did not come]
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub wait: super::DaemonWait,
}

pub async fn run(client: &LocalClient, args: &SendArgs) -> Result<(), ExitError> {
    let phone_id = match &args.phone_id {
        Some(id) => id.clone(),
        None => only_endpoint(client, &args.channel).await?,
    };
    let mut body = json!({
        "phone_id": phone_id,
        "channel": args.channel,
        "to": args.to,
        "text": args.text,
    });
    for (key, value) in [
        ("subject", args.subject.clone().map(Into::into)),
        ("ttl_seconds", args.ttl_seconds.map(Into::into)),
        ("priority", args.priority.clone().map(Into::into)),
    ] {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let accepted: Accepted = client
        .call_keyed(Method::POST, "/api/v1/messages", &body, &key, |e| {
            repeat_safely(e, &key)
        })
        .await?;
    outln!("{} {}", accepted.id, accepted.status);
    Ok(())
}

/// A send that failed at run time (no answer in time, an answer cut off,
/// a store whose commit's outcome is unknown) may still have been
/// accepted: the daemon finishes a commit its client gave up on. The
/// error says how to try again without sending the message twice.
fn repeat_safely(error: ExitError, key: &str) -> ExitError {
    match error {
        ExitError::Runtime(why) => ExitError::Runtime(format!(
            "{why}\nif the message was accepted before that, a repeat with \
             --idempotency-key {key} sends it no second time"
        )),
        other => other,
    }
}

/// The one endpoint of `channel`, found in the daemon's status.
async fn only_endpoint(client: &LocalClient, channel: &str) -> Result<String, ExitError> {
    let status: StatusReport = match client.try_get("/api/v1/status").await? {
        Ok(status) => status,
        // A key without the read scope may still send: it only cannot
        // look the endpoint up.
        Err(refusal) if refusal.status == StatusCode::FORBIDDEN => {
            return Err(ExitError::Config(format!(
                "this API key cannot read the daemon's status to find the {channel} endpoint: \
                 pass --phone-id"
            )));
        }
        Err(refusal) => return Err(refusal.into()),
    };
    let ids: Vec<String> = status
        .endpoints
        .into_iter()
        .filter(|e| e.channel == channel)
        .map(|e| e.phone_id)
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ExitError::Config(no_endpoint(client, channel))),
        many => Err(ExitError::Config(format!(
            "several {channel} endpoints ({}); choose one with --phone-id",
            many.join(", ")
        ))),
    }
}

/// Why no endpoint was found. The local key sees every endpoint; a key
/// from `PHONERELAY_API_KEY` may be bound to one phone_id and see only
/// that phone's, so the daemon may well have one it does not see.
fn no_endpoint(client: &LocalClient, channel: &str) -> String {
    if client.key_from_env() {
        format!(
            "this API key sees no {channel} endpoint (a key bound to a phone_id sees only \
             that phone's); pass --phone-id"
        )
    } else {
        format!("no {channel} endpoint is configured")
    }
}
