//! Turning a send request into a message to commit, or the first problem
//! with it. Pure apart from looking up `reply_to`.

use axum::http::StatusCode;
use phonerelay_channel::{ChannelKind, validate_address};

use super::dto::{Priority, SendRequest};
use super::error::ApiError;
use super::state::AppState;

pub const MAX_SUBJECT_CHARS: usize = 998;
/// The API's own cap on attachments, whatever the channel (the document's
/// `maxItems`); an endpoint's `send_limits` may allow fewer.
pub const MAX_ATTACHMENTS: usize = 10;
/// Counted in characters, as the document's `maxLength` counts them.
pub const MAX_ATTACHMENT_URL_CHARS: usize = 2048;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Largest `options` object, as compact JSON.
pub const MAX_OPTIONS_BYTES: usize = 16 * 1024;

pub struct ValidSend {
    pub channel: ChannelKind,
    pub ttl_ms: i64,
    pub priority: i64,
}

pub fn validate(req: &SendRequest, state: &AppState) -> Result<ValidSend, ApiError> {
    let channel: ChannelKind = req.channel.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_channel",
            format!(
                "unknown channel {:?}; the channels are sms, wa, tg, email, notify and pchat \
                 (an endpoint of each that the config sets up)",
                req.channel
            ),
        )
        .field("channel")
    })?;
    if channel == ChannelKind::Pchat {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_channel",
            "pchat messages are delivered by the relay, not by the bridge",
        )
        .field("channel"));
    }
    let Some(endpoint) = state.endpoints.get(channel, &req.phone_id) else {
        let message = if state.endpoints.has_phone_id(&req.phone_id) {
            format!(
                "phone_id {:?} has no {channel} channel configured",
                req.phone_id
            )
        } else {
            format!("unknown phone_id {:?}", req.phone_id)
        };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_phone_id",
            message,
        )
        .field("phone_id"));
    };
    validate_address(channel, &req.to).map_err(|e| ApiError::invalid("to", e.message))?;
    // What this endpoint's service takes beyond the kind's syntax: its
    // adapter says (`Channel::check_recipient`).
    endpoint
        .channel
        .check_recipient(&req.to)
        .map_err(|why| ApiError::invalid("to", why))?;
    let chars = req.text.chars().count();
    // A send with options may carry no text (a WhatsApp template is its
    // own text); its channel judges the options below. An empty options
    // object stands for nothing. Text of white space alone says nothing
    // either: a recipient would get a blank message.
    let has_options = req
        .options
        .as_ref()
        .is_some_and(|o| o.as_object().is_none_or(|map| !map.is_empty()));
    if req.text.trim().is_empty() && req.attachments.is_empty() && !has_options {
        return Err(ApiError::invalid(
            "text",
            "text is empty (or white space only) and there are no attachments or options",
        ));
    }
    // Control characters but tab and line breaks are no text a person
    // reads: a NUL cuts the message short on some phones, an escape
    // steers a terminal that shows it.
    if let Some(control) = req
        .text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(ApiError::invalid(
            "text",
            format!(
                "text holds a control character (U+{:04X}); only tab and line breaks are taken",
                control as u32
            ),
        ));
    }
    if let Some(subject) = &req.subject
        && (subject.chars().count() > MAX_SUBJECT_CHARS || subject.contains(['\r', '\n']))
    {
        return Err(ApiError::invalid(
            "subject",
            format!("a subject is one line of at most {MAX_SUBJECT_CHARS} characters"),
        ));
    }
    if let Some(source) = &req.source {
        validate_address(ChannelKind::Pchat, source)
            .map_err(|e| ApiError::invalid("source", e.message))?;
    }
    if req.attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::invalid(
            "attachments",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    for (i, attachment) in req.attachments.iter().enumerate() {
        let url = &attachment.url;
        // The prefix first (the OpenAPI document's pattern says as much),
        // then a URL that parses with a host: `https://` alone, or one
        // with spaces, is refused here rather than failing at the fetch.
        let parses = reqwest::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || !parses
            || url.chars().count() > MAX_ATTACHMENT_URL_CHARS
        {
            return Err(ApiError::invalid(
                &format!("attachments[{i}].url"),
                format!("must be an http(s) URL of at most {MAX_ATTACHMENT_URL_CHARS} characters"),
            ));
        }
    }
    // What this endpoint's channel can carry: its adapter says
    // (`Channel::send_limits`), so a channel with other limits needs no
    // change here.
    if let Some((field, why)) =
        endpoint
            .channel
            .send_limits()
            .check(channel, chars, req.attachments.len())
    {
        return Err(ApiError::invalid(field, why));
    }
    // What the fetcher would refuse at every try, known now (after what
    // the channel takes: an SMS takes no file at all): a user name or
    // password (sent as credentials, kept in clear), a host no request can
    // name, a literal address it does not fetch from.
    let allow_private_hosts = state.config.config.attachments.allow_private_hosts;
    for (i, attachment) in req.attachments.iter().enumerate() {
        let Ok(parsed) = reqwest::Url::parse(&attachment.url) else {
            continue;
        };
        if let Some(why) = crate::fetch::url_refusal(&parsed, |ip| {
            crate::fetch::check_address(ip, allow_private_hosts).map_err(str::to_string)
        }) {
            return Err(ApiError::invalid(&format!("attachments[{i}].url"), why));
        }
    }
    endpoint
        .channel
        .check_text(&req.text)
        .map_err(|why| ApiError::invalid("text", why))?;
    if let Some(options) = &req.options {
        check_options(options, &*endpoint.channel)?;
    }
    let outbox = &state.config.config.outbox;
    let ttl_seconds = req.ttl_seconds.unwrap_or(outbox.default_ttl_seconds);
    if ttl_seconds == 0 || ttl_seconds > outbox.max_ttl_seconds {
        return Err(ApiError::invalid(
            "ttl_seconds",
            format!("must be 1 to {} seconds", outbox.max_ttl_seconds),
        ));
    }
    Ok(ValidSend {
        channel,
        ttl_ms: ttl_seconds as i64 * 1000,
        priority: req.priority.unwrap_or(Priority::Normal).rank(),
    })
}

/// A send's `options`: an object, not too large, that its endpoint's
/// channel takes (`Channel::check_options`).
fn check_options(
    options: &serde_json::Value,
    channel: &dyn phonerelay_channel::Channel,
) -> Result<(), ApiError> {
    if !options.is_object() {
        return Err(ApiError::invalid("options", "must be a JSON object"));
    }
    if serde_json::to_vec(options).map_or(usize::MAX, |v| v.len()) > MAX_OPTIONS_BYTES {
        return Err(ApiError::invalid(
            "options",
            format!("at most {MAX_OPTIONS_BYTES} bytes of JSON"),
        ));
    }
    channel
        .check_options(options)
        .map_err(|why| ApiError::invalid("options", why))
}

pub fn validate_idempotency_key(
    value: Option<&axum::http::HeaderValue>,
) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
            ),
        )
        .field("Idempotency-Key")
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(text.to_string()))
}
