//! Fetching an outbound attachment's bytes: what an adapter asks of the
//! daemon instead of fetching a URL itself.
//!
//! An [`crate::OutboundMessage`] carries its files as URLs
//! ([`crate::Attachment`]). An adapter that must send the bytes (e-mail
//! always; WhatsApp or Telegram when the upstream cannot fetch the URL
//! itself) asks [`crate::ChannelContext::fetcher`]. The daemon's fetcher
//! refuses addresses that are not public (loopback, the LAN, the cloud
//! metadata service), caps the size and the time, and never names the URL's
//! query or user info in its errors; an adapter that fetched on its own would
//! let any send make the bridge fetch internal resources.

use async_trait::async_trait;

use crate::{Attachment, MediaUpload, SendError};

/// Fetches an outbound attachment's bytes. The daemon gives every endpoint
/// one in its [`crate::ChannelContext`]; keep it from
/// [`crate::Channel::attach`] for `send` to use.
#[async_trait]
pub trait AttachmentFetcher: Send + Sync {
    /// The attachment's bytes, with its content type (the server's, else
    /// the attachment's) and filename (the attachment's, else the server's
    /// `Content-Disposition`, else the URL's last path segment), both
    /// cleaned so they can go in a header as they are.
    async fn fetch(&self, attachment: &Attachment) -> Result<MediaUpload, FetchError>;
}

/// Why an attachment could not be fetched. `message` names the URL without
/// its query or user info (they may hold a token), so it may be logged and
/// recorded in the message's history.
///
/// An adapter turns it into its send's outcome with `SendError::from`:
/// [`FetchErrorClass::Transient`] becomes a transient error with the code
/// [`ATTACHMENT_UNAVAILABLE`] (the message is tried again later, as for
/// any other transient failure), [`FetchErrorClass::Refused`] a permanent
/// one with the code [`ATTACHMENT_REFUSED`] (the message fails: sending it
/// again would fetch the same refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub message: String,
    pub class: FetchErrorClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchErrorClass {
    /// May pass: a timeout, a connection or DNS failure, a 5xx, 408 or
    /// 429. Try the send again later.
    Transient,
    /// Will not succeed as it is: a 4xx other than 408/429, a file over
    /// the size limit, an address that is not public, a scheme other than
    /// http(s), too many redirects, a fetcher that fetches nothing.
    Refused,
}

/// [`SendError::code`] of a send whose attachment could not be fetched now.
pub const ATTACHMENT_UNAVAILABLE: &str = "attachment_unavailable";
/// [`SendError::code`] of a send whose attachment the fetcher refused.
pub const ATTACHMENT_REFUSED: &str = "attachment_refused";

impl FetchError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: FetchErrorClass::Transient,
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            class: FetchErrorClass::Refused,
        }
    }

    /// Worth trying the send again later.
    pub fn is_transient(&self) -> bool {
        self.class == FetchErrorClass::Transient
    }
}

impl From<FetchError> for SendError {
    fn from(error: FetchError) -> Self {
        match error.class {
            FetchErrorClass::Transient => {
                SendError::transient(ATTACHMENT_UNAVAILABLE, error.message)
            }
            FetchErrorClass::Refused => SendError::permanent(ATTACHMENT_REFUSED, error.message),
        }
    }
}

/// A fetcher that refuses everything: for tests and tools whose channels
/// send no attachments.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFetcher;

#[async_trait]
impl AttachmentFetcher for NoFetcher {
    async fn fetch(&self, _attachment: &Attachment) -> Result<MediaUpload, FetchError> {
        Err(FetchError::refused("this daemon fetches no attachments"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    #[test]
    fn a_transient_failure_is_retried_and_a_refusal_fails_the_send() {
        let transient = SendError::from(FetchError::transient("timed out"));
        assert_eq!(transient.class, ErrorClass::Transient);
        assert_eq!(transient.code, ATTACHMENT_UNAVAILABLE);
        assert_eq!(transient.message, "timed out");
        let refused = SendError::from(FetchError::refused("not a public address"));
        assert_eq!(refused.class, ErrorClass::Permanent);
        assert_eq!(refused.code, ATTACHMENT_REFUSED);
        assert!(!refused.is_retriable());
    }

    #[test]
    fn no_fetcher_refuses_everything() {
        let attachment = Attachment {
            url: "https://example.com/a.pdf".into(),
            content_type: None,
            filename: None,
            size: None,
        };
        // No runtime in this crate: the future never waits, so poll it once.
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut fetched = std::pin::pin!(NoFetcher.fetch(&attachment));
        let std::task::Poll::Ready(Err(e)) = fetched.as_mut().poll(&mut context) else {
            panic!("NoFetcher fetched or waited");
        };
        assert_eq!(e.class, FetchErrorClass::Refused);
        assert!(e.message.contains("fetches no attachments"), "{e}");
    }
}
