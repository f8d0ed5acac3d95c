use std::time::Duration;

/// What the outbox should do with a message whose send failed.
///
/// Adapters classify, the dispatcher decides: the same split vector's sinks
/// make between retriable and non-retriable errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth trying again later (network down, modem busy, 5xx, timeout).
    Transient,
    /// The remote refused the send for now (a rate limit, congestion), and
    /// nothing went out: not an attempt. The message goes back to the
    /// queue, and the endpoint starts no send until `retry_after` has
    /// passed or, when the remote does not say, for a wait that doubles
    /// with each refusal in a row (the outbox's `retry_initial_ms` up to
    /// its `retry_max_ms`, which also caps a `retry_after`). A limit the
    /// remote keeps up costs a message none of its attempts; only its TTL
    /// runs on. A send that may have gone out is `Transient`, whatever the
    /// remote said. A limit on one recipient alone is
    /// [`ErrorClass::RecipientLimited`].
    RateLimited,
    /// The remote refused this send for now because of its recipient alone
    /// (WhatsApp's pair rate limit 131056, Telegram's 429 for one chat),
    /// and nothing went out: not an attempt, and the endpoint does not
    /// pause. The message goes back to the queue for `retry_after` (or,
    /// when the remote does not say, the outbox's `retry_initial_ms`; at
    /// most its `retry_max_ms`); that recipient's later messages wait
    /// behind it, and the endpoint sends on to the others.
    RecipientLimited,
    /// Will never succeed as it stands (bad number, blocked, rejected content).
    Permanent,
    /// The endpoint cannot send at all right now (modem unplugged, not yet
    /// connected), and nothing went out: not an attempt. The message goes
    /// back to the queue without spending one of its attempts, and the
    /// dispatcher claims nothing more while `Channel::can_send` says no
    /// (and pauses briefly even if it says yes), so an outage of any
    /// length costs no message its retries (only its TTL runs on).
    Unavailable,
}

/// A classified send failure. `code` is a short stable machine string
/// (`"cms_500"`, `"wa_131026"`, `"http_503"`); `message` is for humans and
/// must never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SendError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The adapter knows that nothing of this attempt went out (a
    /// `Transient` failure before any part reached the network). Reply
    /// routing dates a pChat user's conversation from the first attempt
    /// that may have put something out; one that put nothing out must not
    /// take the conversation from whoever wrote to the recipient before.
    /// False (the default) when the adapter cannot tell.
    pub nothing_sent: bool,
}

impl SendError {
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, code, message)
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, code, message)
    }

    /// See [`ErrorClass::Unavailable`]: only when nothing was sent.
    pub fn unavailable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unavailable, code, message)
    }

    pub fn rate_limited(
        code: impl Into<String>,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        Self::new(ErrorClass::RateLimited, code, message).after(retry_after)
    }

    /// See [`ErrorClass::RecipientLimited`]: only when nothing was sent.
    pub fn recipient_limited(
        code: impl Into<String>,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        Self::new(ErrorClass::RecipientLimited, code, message).after(retry_after)
    }

    /// The wait the remote asked for.
    fn after(self, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..self
        }
    }

    fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            nothing_sent: false,
        }
    }

    /// Say whether the adapter knows nothing of this attempt went out
    /// ([`SendError::nothing_sent`]).
    pub fn nothing_sent(self, nothing_sent: bool) -> Self {
        Self {
            nothing_sent,
            ..self
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.class != ErrorClass::Permanent
    }
}
