//! The files of an inbound message, made the relay's before the message
//! goes (`POST {media}`, docs/relay-protocol.md): the relay cannot fetch
//! from a bridge behind NAT, so the bridge uploads each file it keeps and
//! sends the relay's URL in place of its own path. The relay's URL is
//! recorded with the file, so a retry or a restart does not upload it
//! again. A file the relay refuses for good is left out and named in the
//! message, so its text still reaches the user; so is one whose uploads
//! kept failing (timeouts, 5xx, no media route) `relay.upload_give_up_after` times, which
//! would otherwise hold its message, and its conversation, back for good.

use serde::Serialize;

use super::Deps;
use super::client::{RelayError, Upload};
use super::relay_url::same_relay;
use crate::api::dto::AttachmentBody;
use crate::media::media_id_of;
use crate::media_chunks::{ReadFailure, chunks};
use crate::metrics::labels;
use crate::store::{InboundRecord, MediaContent, MediaRecord, StoreError, UploadFailures};

/// The `code` of a file left out because its uploads kept failing.
pub const NOT_UPLOADED: &str = "not_uploaded";

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
    /// Files whose uploads failed `relay.upload_give_up_after` times:
    /// left out, each named in `origin.not_uploaded_attachments`.
    pub not_uploaded: Vec<RefusedAttachment>,
}

/// A file left out of its message, as `origin.refused_attachments` (the
/// relay refused it) or `origin.not_uploaded_attachments` (it could not
/// be uploaded) names it.
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
    /// The relay's refusal, `relay_http_413`; or `not_uploaded`.
    pub code: String,
    /// The relay's words for it; for `not_uploaded`, how many uploads
    /// failed and how the last did.
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
    /// Its uploads failed too often: given up on.
    GivenUp(RefusedAttachment),
}

pub enum UploadFailure {
    /// The relay refused or could not be reached: classified as a refused
    /// or failed message POST is.
    Relay(RelayError),
    /// The relay has no `{media}` route (404, 405): a relay older than the
    /// bridge, or a proxy answering while the relay restarts. Unlike a
    /// message POST's, this does not say the relay is away (messages
    /// without files still go), so only this message's conversation
    /// waits, until `relay.upload_give_up_after` such failures send it
    /// without the file.
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
        not_uploaded: Vec::new(),
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
            }) if same_relay(&base, &deps.settings.url) => Uploaded::At(url),
            Some(record) if given_up(deps, &record) => Uploaded::GivenUp(not_uploaded(record)),
            Some(record) => match upload(deps, id).await {
                Ok(uploaded) => uploaded,
                Err(failure) => after_failure(deps, m, record, failure).await?,
            },
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
            // Logged when it was given up on (`after_failure`), once.
            Uploaded::GivenUp(left_out) => relayed.not_uploaded.push(left_out),
        }
    }
    Ok(relayed)
}

/// Whether file `record`'s uploads to this relay have failed
/// `relay.upload_give_up_after` times already (before a restart, or
/// before its message's body could be fixed): it is not tried again.
fn given_up(deps: &Deps, record: &MediaRecord) -> bool {
    record.upload_failures.as_ref().is_some_and(|failures| {
        same_relay(&failures.relay_base, &deps.settings.url)
            && failures.count >= deps.settings.config.upload_give_up_after
    })
}

/// After upload `failure` of file `record`: one that retrying may mend on
/// the relay's side (a timeout, a 5xx) is counted with the file, and the
/// one that reaches `relay.upload_give_up_after` gives the file up, logged
/// and counted here, once. Any other failure, or one below the bound,
/// stands.
async fn after_failure(
    deps: &Deps,
    m: &InboundRecord,
    record: MediaRecord,
    failure: UploadFailure,
) -> Result<Uploaded, UploadFailure> {
    let Some(code) = counted(&failure) else {
        return Err(failure);
    };
    let failures = deps
        .state
        .store
        .record_media_upload_failure(&record.id, &deps.settings.url, &code)
        .await
        .map_err(UploadFailure::Store)?;
    if failures < deps.settings.config.upload_give_up_after {
        return Err(failure);
    }
    // What the row holds now, so the message reads the same if it is made
    // again (its body could not be fixed, a restart): from the row.
    let record = MediaRecord {
        upload_failures: Some(UploadFailures {
            relay_base: deps.settings.url.clone(),
            count: failures,
            last_code: code.clone(),
        }),
        ..record
    };
    tracing::warn!(inbound_id = %m.id, media_id = %record.id, failures, last = %code,
        "a file of an inbound message could not be uploaded to the relay; \
         forwarded without it (the bridge keeps it)");
    deps.state
        .metrics
        .relay_uploads_given_up
        .get_or_create(&labels(&[("phone_id", &deps.settings.phone_id)]))
        .inc();
    Ok(Uploaded::GivenUp(not_uploaded(record)))
}

/// The failure's code if it counts towards giving a file up: the relay,
/// or the way to it, took too long or failed (5xx), or has no media route
/// (404, 405). Not a relay that cannot be reached at all (its outage is
/// not the file's), nor a file the bridge cannot read.
///
/// A missing route counts: a proxy that answers 404 while the relay
/// restarts does so for minutes, far less than the give-up's backoff adds
/// up to (about an hour by default), while a relay older than the bridge
/// never takes a file, and held its conversation for good.
fn counted(failure: &UploadFailure) -> Option<String> {
    match failure {
        UploadFailure::TooSlow(e) | UploadFailure::NoMediaRoute(e) => Some(e.code()),
        UploadFailure::Relay(e @ RelayError::Http { status, .. }) if *status >= 500 => {
            Some(e.code())
        }
        _ => None,
    }
}

/// How `origin.not_uploaded_attachments` names file `record`, given up on.
fn not_uploaded(record: MediaRecord) -> RefusedAttachment {
    let message = match &record.upload_failures {
        Some(failures) => format!(
            "could not be uploaded to the relay: {} tries failed, the last with {}",
            failures.count, failures.last_code
        ),
        None => "could not be uploaded to the relay".into(),
    };
    RefusedAttachment {
        media_id: record.id,
        filename: record.filename,
        content_type: record.content_type,
        size: record.size,
        code: NOT_UPLOADED.into(),
        message,
    }
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

/// The `url` of a `POST {media}` answer: an absolute http(s) URL with a
/// host, as every attachment the relay hands the bridge is (parsed: a
/// bare `https://`, or one with spaces or control characters, is none).
fn relay_url_in(answer: &serde_json::Value) -> Option<String> {
    let url = answer["url"].as_str().filter(|url| url.len() <= 2048)?;
    // As given, not as the parser would mend it (`https:///f` names a
    // host `f` once parsed).
    let after_scheme = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let parsed = reqwest::Url::parse(url).ok()?;
    let well_formed = !after_scheme.starts_with('/')
        && parsed.host_str().is_some_and(|host| !host.is_empty())
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    well_formed.then(|| url.to_string())
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
            json!({"url": "https://"}),
            json!({"url": "https:///f/1"}),
            json!({"url": "https://relay.example/f 1"}),
            json!({"url": "https://relay.example/f\n1"}),
            json!({"url": "HTTPS//relay.example/f/1"}),
        ] {
            assert_eq!(relay_url_in(&bad), None, "{bad}");
        }
    }
}
