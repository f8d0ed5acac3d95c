//! A request from a key that may send, with its body read only once the
//! key's scope is known: a key that cannot send hears 403 whatever it
//! sent, and no body is read for it (as the send itself does,
//! `messages::SendInput`).

use axum::extract::{FromRequest, FromRequestParts, Request};

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;
use crate::store::Scope;

pub struct Sender<B> {
    pub caller: Caller,
    pub body: B,
}

impl<B> FromRequest<AppState> for Sender<B>
where
    B: FromRequest<AppState, Rejection = ApiError> + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        caller.require(Scope::Send)?;
        let body = B::from_request(Request::from_parts(parts, body), state).await?;
        Ok(Sender { caller, body })
    }
}
