//! Request bodies with our error shape: wrong content type or a content
//! coding (gzip) → 415, too
//! large → 413, too slow → 408, malformed → 400, a field of the wrong type,
//! missing, repeated or unknown → 422 naming the field.
//!
//! `server.request_timeout_seconds` bounds only how long the client takes
//! to send its body. It is not a limit on the whole request: a send whose
//! write has reached the store waits for the commit's outcome, for a
//! timeout answered while the commit goes on would tell the client "not
//! accepted" about a message that is then sent, and a client that tries
//! again without an `Idempotency-Key` would send it twice.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use super::webhook_budget::HeldRoom;

pub struct JsonBody<T> {
    pub value: T,
    /// The exact bytes, for the idempotency fingerprint.
    pub raw: Bytes,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        check_json_headers(req.headers())?;
        let raw = read(req, state).await?;
        let value = parse(&raw)?;
        Ok(JsonBody { value, raw })
    }
}

/// A JSON body a request may leave out (`POST /api/v1/inbound/{id}/retry`,
/// whose clients from before it took one send none): an empty body is
/// `None`, whatever its headers, and so is a JSON `null` (the OpenAPI
/// document's rendering of an optional body allows it); any other is read
/// as [`JsonBody`] is.
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let raw = read(req, state).await?;
        if raw.is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        check_json_headers(&headers)?;
        if raw.trim_ascii() == b"null" {
            return Ok(OptionalJsonBody(None));
        }
        Ok(OptionalJsonBody(Some(parse(&raw)?)))
    }
}

/// A JSON body's headers: `Content-Type: application/json`, no content
/// coding.
fn check_json_headers(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
        .field("Content-Type"));
    }
    // A compressed body would otherwise be answered "not valid JSON",
    // which sends its client looking in the wrong place.
    let coded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .any(|coding| !coding.trim().eq_ignore_ascii_case("identity"));
    if coded {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body uncompressed: no Content-Encoding is taken",
        )
        .field("Content-Encoding"));
    }
    Ok(())
}

/// A webhook's body, taken as it is (the channel checks and reads it),
/// with the same errors as [`JsonBody`], the timeout of any request and a
/// size limit of its own (`server.max_webhook_body_bytes`). Read part by
/// part, each part taking room from `webhook_bodies` as it arrives
/// (`webhook_budget.rs`): the room is held until the answer, the body
/// being in memory until then.
pub async fn read_webhook_body(
    req: Request,
    state: &AppState,
) -> Result<(Bytes, HeldRoom), ApiError> {
    use futures_util::StreamExt;
    let max = state.config.config.server.max_webhook_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than server.max_webhook_body_bytes",
        )
    };
    let mut body = req.into_body().into_data_stream();
    let mut held = HeldRoom::default();
    let mut bytes = Vec::new();
    let read = async {
        while let Some(data) = body.next().await {
            let data = data.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
            })?;
            if bytes.len() + data.len() > max {
                return Err(too_large());
            }
            state.webhook_bodies.take(&mut held, data.len())?;
            bytes.extend_from_slice(&data);
        }
        Ok(())
    };
    let limit = Duration::from_secs(state.config.config.server.request_timeout_seconds);
    match tokio::time::timeout(limit, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive within server.request_timeout_seconds",
        )),
        Ok(read) => read.map(|()| (Bytes::from(bytes), held)),
    }
}

/// The whole body, within `server.max_body_bytes` and
/// `server.request_timeout_seconds`.
async fn read(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let limit = Duration::from_secs(state.config.config.server.request_timeout_seconds);
    // A body that came with its headers is read at the first poll, so the
    // timer is only armed for one that is still on its way.
    let read = tokio::time::timeout(limit, Bytes::from_request(req, state));
    match read.await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive within server.request_timeout_seconds",
        )),
        Ok(Ok(raw)) => Ok(raw),
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than server.max_body_bytes",
            ))
        }
        Ok(Err(rejection)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            rejection.body_text(),
        )),
    }
}

pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    // serde would read a struct from an array too; the API takes objects.
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    // Most bodies are valid: read them without tracking the path, which
    // costs an allocation per field; only a failure is read again with it,
    // to name the field.
    if let Ok(value) = serde_json::from_slice(raw) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    if result.is_ok() {
        deserializer.end().map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
    }
    result.map_err(|error| {
        let inner = error.inner();
        // A syntax error after the part serde read wins over a field error.
        if !inner.is_syntax()
            && !inner.is_eof()
            && let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(raw)
        {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {syntax}"),
            );
        }
        let path = error.path().to_string();
        // serde_json files a number too large for a float (`1e400`) as a
        // syntax error, but the body is valid JSON (RFC 8259 sets numbers
        // no limit): it is that field's value that cannot be taken, as a
        // float where an integer belongs cannot.
        // Only that error: skipping a value (`IgnoredAny`) checks neither
        // strings' UTF-8 nor `\u` escapes nor depth, so "the rest parses"
        // would pass off a lone surrogate or a raw 0xFF as a field error.
        let value_out_of_range = inner.is_syntax()
            && inner.to_string().starts_with("number out of range")
            && serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok();
        if (inner.is_syntax() || inner.is_eof()) && !value_out_of_range {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let message = inner.to_string();
        let field = field_path(&message, &path);
        let code = if message.starts_with("missing field") {
            "missing_field"
        } else if message.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_field"
        };
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).field(field)
    })
}

/// The field a serde error is about. serde names a missing or repeated
/// field in backticks, and the path then stops at its parent (the error
/// comes before its value is read); for an unknown field or a bad value
/// the path already ends in the field's name.
fn field_path(message: &str, path: &str) -> String {
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (named, path) {
        (Some(name), ".") => name.to_string(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, path) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        to: String,
        ttl: Option<u32>,
    }

    #[test]
    fn names_the_field() {
        let e = parse::<Probe>(br#"{"ttl":1}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("missing_field", Some("to")));
        let e = parse::<Probe>(br#"{"to":"x","tll":1}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("unknown_field", Some("tll")));
        let e = parse::<Probe>(br#"{"to":"x","ttl":"soon"}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("ttl")));
        let e = parse::<Probe>(br#"{"to":"x","to":"y"}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("to")));
        let e = parse::<Probe>(br#"{"to":"x""#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = parse::<Probe>(br#"{"to":"x"} trailing"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = parse::<Probe>(br#"{"to":"x","ttl":1e400}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid_field", Some("ttl")));
        // Out of range and then broken: the syntax error wins.
        let e = parse::<Probe>(br#"{"to":"x","ttl":1e400"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
    }
}
