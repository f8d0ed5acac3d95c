//! The files of an inbound message, made the relay's before the message
//! goes (`POST {media}`, docs/relay-protocol.md): the relay cannot fetch
//! from a bridge behind NAT, so the bridge uploads each file it keeps and
//! sends the relay's URL in place of its own path. The relay's URL is
//! recorded with the file, so a retry or a restart does not upload it
//! again. A file the relay refuses for good is left out and named in the
//! message, so its text still reaches the user.

use serde::Serialize;

use super::Deps;
use super::client::{RelayError, Upload};
use crate::api::dto::AttachmentBody;
use crate::media::media_id_of;
use crate::media_chunks::{ReadFailure, chunks};
use crate::store::{InboundRecord, MediaContent, MediaRecord, StoreError};

/// The attachments to send to the relay.
pub struct RelayAttachments {
    pub attachments: Vec<AttachmentBody>,
    /// Files the message named that the bridge no longer has and the relay
    /// never got (a store restored from a backup, which holds no files):
    /// left out, and counted in `origin.missing_attachments`.
    pub missing: u32,
    /// Files the relay refused for good (a `413` for one too large for
    /// it): left out, each named in `origin.refused_attachments`.
    pub refused: Vec<RefusedAttachment>,
}

/// A file the relay refused, as `origin.refused_attachments` names it.
#[derive(Debug, Serialize)]
pub struct RefusedAttachment {
    /// The bridge's media id: the bridge keeps its copy, served at
    /// `GET /api/v1/media/{id}`, until retention deletes the message.
    pub media_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub size: u64,
    /// The relay's refusal: `relay_http_413`.
    pub code: String,
    /// The relay's words for it.
    pub message: String,
}

/// What became of one file the bridge keeps.
enum Uploaded {
    /// The relay has it, at this URL.
    At(String),
    /// The bridge no longer has it.
    Gone,
    /// The relay will not take it.
    Refused(RefusedAttachment),
}

pub enum UploadFailure {
    /// The relay refused or could not be reached: classified as a refused
    /// or failed message POST is.
    Relay(RelayError),
    /// The relay has no `{media}` route (404, 405): a relay older than the
    /// bridge, or a proxy answering while the relay restarts. Unlike a
    /// message POST's, this does not say the relay is away (messages
    /// without files still go), so only this message's conversation waits.
    NoMediaRoute(RelayError),
    /// The upload ran past its timeout: the file too large for the way to
    /// the relay, or a relay reading it slowly. Like `NoMediaRoute`, this
    /// does not say the relay is away (messages without files still go),
    /// so only this message's conversation waits: held as the relay
    /// unreachable, every message would wait behind it, and the upload,
    /// tried first again after each backoff, would time out again.
    TooSlow(RelayError),
    /// The file is there but cannot be read (its permissions, a bad
    /// sector): only this message's conversation waits, for an operator.
    Unreadable(String),
    /// The bridge's store could not be read or written: every message
    /// would meet it.
    Store(StoreError),
    /// Shut down while an upload was in flight; nothing recorded.
    Stopped,
}

/// `m`'s attachments as the relay should see them, uploading the files the
/// bridge keeps that the relay does not have yet, one at a time.
pub async fn relay_attachments(
    deps: &Deps,
    m: &InboundRecord,
) -> Result<RelayAttachments, UploadFailure> {
    let mut relayed = RelayAttachments {
        attachments: Vec::with_capacity(m.attachments.len()),
        missing: 0,
        refused: Vec::new(),
    };
    for attachment in &m.attachments {
        let Some(id) = media_id_of(&attachment.url) else {
            relayed.attachments.push(AttachmentBody::from(attachment));
            continue;
        };
        let store = &deps.state.store;
        let record = store.get_media(id).await.map_err(UploadFailure::Store)?;
        // A file of another endpoint is not this message's to send.
        let record = record.filter(|r| r.channel == m.channel && r.phone_id == m.phone_id);
        // Uploaded before, to this relay: its copy. To another relay (a
        // re-pair since), or not yet: upload.
        let uploaded = match record {
            Some(MediaRecord {
                relay_url: Some(url),
                relay_base: Some(base),
                ..
            }) if base == deps.settings.url => Uploaded::At(url),
            Some(_) => upload(deps, id).await?,
            None => Uploaded::Gone,
        };
        match uploaded {
            Uploaded::At(url) => relayed.attachments.push(AttachmentBody {
                url,
                ..AttachmentBody::from(attachment)
            }),
            Uploaded::Gone => {
                tracing::warn!(inbound_id = %m.id, media_id = %id,
                    "a file of an inbound message is no longer kept; forwarded without it");
                relayed.missing += 1;
            }
            Uploaded::Refused(refused) => {
                tracing::warn!(inbound_id = %m.id, media_id = %id, code = %refused.code,
                    reason = %refused.message,
                    "the relay refused a file of an inbound message; forwarded without it");
                relayed.refused.push(refused);
            }
        }
    }
    Ok(relayed)
}

/// Upload file `id` and record the relay's URL for it.
///
/// A refusal for good (a permanent 4xx but 404/405: the file too large,
/// a type the relay does not take; or a 2xx without a URL) is the
/// file's, not the message's: the message goes without it, saying so.
/// Nothing is recorded of it.
async fn upload(deps: &Deps, id: &str) -> Result<Uploaded, UploadFailure> {
    let store = &deps.state.store;
    let (record, reader) = match store.open_media(id).await {
        Ok(MediaContent::Found(record, reader)) => (record, reader),
        Ok(MediaContent::Missing | MediaContent::Gone(_)) => return Ok(Uploaded::Gone),
        Ok(MediaContent::Unreadable(_, why)) => return Err(UploadFailure::Unreadable(why)),
        // The row could not be read: the store fails, for every message.
        Err(e) => return Err(UploadFailure::Store(e)),
    };
    // Read as it is sent: a read error breaks the upload, and `unreadable`
    // tells it from a broken connection.
    let unreadable = ReadFailure::default();
    let upload = Upload {
        body: reqwest::Body::wrap_stream(chunks(reader, unreadable.clone())),
        size: record.size,
        content_type: record
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        filename: record.filename.clone(),
        idempotency_key: record.id.clone(),
        phone_id: deps.settings.phone_id.clone(),
    };
    let path = &deps.settings.config.paths.media;
    // As for a message POST: dropping the upload at shutdown is safe, it
    // goes again with the same Idempotency-Key.
    let answer = tokio::select! {
        _ = deps.shutdown.cancelled() => return Err(UploadFailure::Stopped),
        answer = deps.client.upload(path, upload) => answer,
    };
    if let Some(why) = unreadable.take() {
        return Err(UploadFailure::Unreadable(format!(
            "cannot read media file {id}: {why}"
        )));
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(
            e @ RelayError::Http {
                status: 404 | 405, ..
            },
        ) => {
            return Err(UploadFailure::NoMediaRoute(e));
        }
        Err(e @ RelayError::Timeout { .. }) => return Err(UploadFailure::TooSlow(e)),
        Err(e) if e.is_permanent() => return Ok(Uploaded::Refused(refusal(record, &e))),
        Err(e) => return Err(UploadFailure::Relay(e)),
    };
    // Taken, but with no URL the message could carry: a repeat would get
    // the same answer (the Idempotency-Key makes sure of it), so the file
    // is left out as a refused one is rather than tried again for ever.
    let Some(url) = relay_url_in(&answer) else {
        let error = RelayError::BadAnswer {
            path: path.clone(),
            reason: "a 2xx without {\"url\": \"https://…\"}".into(),
        };
        return Ok(Uploaded::Refused(refusal(record, &error)));
    };
    tracing::debug!(media_id = %id, "file uploaded to the relay");
    store
        .record_media_relay_url(id, &url, &deps.settings.url)
        .await
        .map_err(UploadFailure::Store)?;
    Ok(Uploaded::At(url))
}

/// How `origin.refused_attachments` names file `record` that the relay
/// refused with `error`.
fn refusal(record: MediaRecord, error: &RelayError) -> RefusedAttachment {
    let message = match error {
        RelayError::Http { message, .. } => message.clone(),
        other => other.to_string(),
    };
    RefusedAttachment {
        media_id: record.id,
        filename: record.filename,
        content_type: record.content_type,
        size: record.size,
        code: error.code(),
        message,
    }
}

/// The `url` of a `POST {media}` answer: an http(s) URL, as every
/// attachment the relay hands the bridge is.
fn relay_url_in(answer: &serde_json::Value) -> Option<String> {
    answer["url"]
        .as_str()
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
        .filter(|url| url.len() <= 2048)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_an_http_url_is_taken_from_the_relay_s_answer() {
        let url = relay_url_in(&json!({"url": "https://relay.example/f/1"}));
        assert_eq!(url.as_deref(), Some("https://relay.example/f/1"));
        for bad in [
            json!(null),
            json!({}),
            json!({"url": 5}),
            json!({"url": "/f/1"}),
            json!({"url": "javascript:alert(1)"}),
            json!({"url": format!("https://r/{}", "x".repeat(2048))}),
        ] {
            assert_eq!(relay_url_in(&bad), None, "{bad}");
        }
    }
}
