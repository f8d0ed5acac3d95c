use std::collections::BTreeMap;

/// An HTTP request routed to an adapter's webhook, free of any HTTP framework
/// type so that adapters and tests need no server crate. Its `Debug` shows
/// the names of its query parameters and headers but not their values,
/// which can be secrets (a verify token, a secret-token header, a
/// signature), nor the body.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub method: String,
    /// The sub-path below `/webhooks/{channel}/{phone_id}`, starting with `/`.
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Header names lower-cased; a header sent more than once with
    /// different values has them joined with `, ` in the order they came
    /// (the same value twice is one); a value that is not UTF-8 has its
    /// invalid bytes replaced (U+FFFD).
    pub headers: BTreeMap<String, String>,
    /// The raw body: signatures are computed over these exact bytes.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query.keys().collect::<Vec<_>>())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl WebhookResponse {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json".into(),
            body: body.to_string().into_bytes(),
        }
    }
}

/// An endpoint's answer to a request on its channel's shared webhook
/// ([`crate::Channel::handle_shared_webhook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedWebhookAnswer {
    /// Nothing in the request is this endpoint's (another app's signature,
    /// only other numbers' events): the daemon asks the next endpoint.
    NotMine,
    /// This endpoint took its part of the request (committed what was its
    /// own, or answered a verification) and answers so.
    Answered(WebhookResponse),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_but_no_values() {
        let request = WebhookRequest {
            method: "GET".into(),
            path: "/hook".into(),
            query: [("hub.verify_token".to_string(), "S3CRET-Q".to_string())].into(),
            headers: [(
                "x-telegram-bot-api-secret-token".to_string(),
                "S3CRET-H".to_string(),
            )]
            .into(),
            body: b"S3CRET-B".to_vec(),
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("hub.verify_token"), "{shown}");
        assert!(shown.contains("x-telegram-bot-api-secret-token"), "{shown}");
        assert!(!shown.contains("S3CRET"), "{shown}");
    }
}
