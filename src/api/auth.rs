//! The `Authorization: Bearer` extractor. No key → 401; a key without the
//! scope or for another phone_id → 403 (checked by the handlers).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use super::state::AppState;
use crate::keys;
use crate::store::{ApiKeyRecord, Scope};

pub struct Caller(pub ApiKeyRecord);

impl Caller {
    /// A key without `scope` is refused naming the `Authorization` header
    /// that carried it, as the 401 for a bad key does: it is the key, not
    /// the body, that has to change.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(
                ApiError::forbidden(format!("this API key lacks the {scope} scope"))
                    .field("Authorization"),
            )
        }
    }

    /// A key bound to one phone_id may only act on that phone_id.
    pub fn require_phone(&self, phone_id: &str) -> Result<(), ApiError> {
        match &self.0.phone_id {
            Some(bound) if bound != phone_id => Err(ApiError::forbidden(format!(
                "this API key is limited to phone_id {bound:?}"
            ))
            .field("phone_id")),
            _ => Ok(()),
        }
    }

    pub fn phone_scope(&self) -> Option<String> {
        self.0.phone_id.clone()
    }
}

#[cfg(test)]
impl Caller {
    /// A caller whose key has `scopes`, bound to `phone_id` if given.
    pub fn with(scopes: Vec<Scope>, phone_id: Option<&str>) -> Self {
        Caller(ApiKeyRecord {
            key_id: "test-key".into(),
            name: "test".into(),
            secret_hash: Vec::new(),
            scopes,
            phone_id: phone_id.map(Into::into),
            created_at_ms: 0,
            revoked_at_ms: None,
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer API key"))?;
        let presented =
            header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
                ApiError::unauthorized("Authorization must be \"Bearer <API key>\"")
            })?;
        let rejected = || ApiError::unauthorized("the API key is not valid or was revoked");
        let (key_id, secret) = keys::parse(presented).ok_or_else(rejected)?;
        let record = state.store.find_key(key_id).await?.ok_or_else(rejected)?;
        if keys::verify(&record, secret) {
            Ok(Caller(record))
        } else {
            Err(rejected())
        }
    }
}

/// The token of a `Bearer` credential. The scheme is compared without
/// regard to case, as RFC 9110 §11.1 has it (`bearer`, `BEARER`), and
/// may be followed by several spaces.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}
