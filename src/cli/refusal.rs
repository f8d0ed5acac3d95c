//! An answer that refused a request of the CLI's, and the exit it makes.

use reqwest::StatusCode;
use serde_json::Value;

use crate::exit::ExitError;

/// How much of a body that is not the daemon's JSON error is shown: the
/// start of a proxy's error page names it, the rest is markup.
const BODY_EXCERPT_CHARS: usize = 200;

/// An answer of the daemon (or of whatever answers at its address) that
/// refused the request: its status and its body as it came.
pub struct Refusal {
    pub status: StatusCode,
    body: Vec<u8>,
    /// Which key a 401 refused and what mends it: the daemon's answer
    /// reads the same for the local key and one in `PHONERELAY_API_KEY`.
    key_hint: Option<String>,
}

impl Refusal {
    pub fn new(status: StatusCode, body: Vec<u8>) -> Self {
        Self {
            status,
            body,
            key_hint: None,
        }
    }

    /// `hint` said after a 401's text.
    pub fn with_key_hint(mut self, hint: String) -> Self {
        self.key_hint = Some(hint);
        self
    }
}

impl From<Refusal> for ExitError {
    fn from(refusal: Refusal) -> Self {
        let text = match serde_json::from_slice::<Value>(&refusal.body) {
            Ok(body) if body["error"]["code"].is_string() => api_error_text(refusal.status, &body),
            // Not the daemon's error (a proxy's page, an empty body): its
            // status and start still say what answered and why.
            _ => other_answer_text(refusal.status, &refusal.body),
        };
        let text = match refusal.key_hint {
            Some(hint) if refusal.status == StatusCode::UNAUTHORIZED => format!("{text}\n{hint}"),
            _ => text,
        };
        refused_with(refusal.status, text)
    }
}

/// The daemon's JSON error: `{"error": {"code", "message", "field"}}`.
fn api_error_text(status: StatusCode, body: &Value) -> String {
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or("error");
    let message = error["message"].as_str().unwrap_or("");
    let field = error["field"]
        .as_str()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    // One line, as the body of an answer not the daemon's: what answered
    // may be something else speaking the daemon's JSON.
    super::terminal::one_line(&format!("{status}: {code}: {message}{field}"))
}

fn other_answer_text(status: StatusCode, body: &[u8]) -> String {
    let excerpt = body_excerpt(body);
    if excerpt.is_empty() {
        format!("HTTP {status}, with an empty body")
    } else {
        format!("HTTP {status}: {excerpt}")
    }
}

/// The start of `body` as one line: control characters (line ends, an
/// escape that would steer the terminal) and runs of white space become
/// one space, and at most `BODY_EXCERPT_CHARS` characters are kept.
fn body_excerpt(body: &[u8]) -> String {
    let line = super::terminal::one_line(&String::from_utf8_lossy(body));
    match line.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// The exit a refusal with `status` makes. A 401 or 403 refuses the key
/// (revoked, without the scope, bound to another phone_id): a remote
/// party refusing us, exit 3, not a command line to correct. Another 4xx
/// is the request's fault, exit 2; anything else is the daemon's, exit 1.
fn refused_with(status: StatusCode, text: String) -> ExitError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ExitError::Rejected(text),
        _ if status.is_client_error() => ExitError::Config(text),
        _ => ExitError::Runtime(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_excerpt_is_one_line_of_at_most_200_characters_without_control_characters() {
        assert_eq!(
            body_excerpt(b"  <html>\r\n<head>\t<title>502</title>\x1b[31m red\x00</html>\n"),
            "<html> <head> <title>502</title> [31m red </html>"
        );
        let long = "é".repeat(BODY_EXCERPT_CHARS + 50);
        let excerpt = body_excerpt(long.as_bytes());
        assert_eq!(excerpt, format!("{}…", "é".repeat(BODY_EXCERPT_CHARS)));
        assert_eq!(body_excerpt(b" \r\n "), "");
    }

    #[test]
    fn an_answer_not_the_daemons_keeps_its_status_and_exit_class() {
        let bad_gateway: ExitError =
            Refusal::new(StatusCode::BAD_GATEWAY, b"<h1>Bad Gateway</h1>".to_vec()).into();
        assert_eq!(bad_gateway.code(), 1);
        assert_eq!(
            bad_gateway.to_string(),
            "HTTP 502 Bad Gateway: <h1>Bad Gateway</h1>"
        );
        let empty: ExitError = Refusal::new(StatusCode::NOT_FOUND, Vec::new()).into();
        assert_eq!(empty.code(), 2);
        assert_eq!(empty.to_string(), "HTTP 404 Not Found, with an empty body");
        let json_not_ours: ExitError =
            Refusal::new(StatusCode::UNAUTHORIZED, br#"{"message":"no"}"#.to_vec()).into();
        assert_eq!(json_not_ours.code(), 3);
        assert_eq!(
            json_not_ours.to_string(),
            r#"HTTP 401 Unauthorized: {"message":"no"}"#
        );
        let ours: ExitError = Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"error":{"code":"invalid_field","message":"bad","field":"to"}}"#.to_vec(),
        )
        .into();
        assert_eq!(ours.code(), 2);
        assert_eq!(
            ours.to_string(),
            "422 Unprocessable Entity: invalid_field: bad (field to)"
        );
        let steering: ExitError = Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"error":{"code":"x\u001b[2J","message":"bad\nsms  sim-1  up","field":"to\r"}}"#
                .to_vec(),
        )
        .into();
        assert_eq!(
            steering.to_string(),
            "422 Unprocessable Entity: x [2J: bad sms sim-1 up (field to )"
        );
    }
}
