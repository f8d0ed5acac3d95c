//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{dto, error, inbound, messages, relay, system};

#[derive(OpenApi)]
#[openapi(
    info(title = "PhoneRelay", description = "Bridge between a pChat relay and SMS, WhatsApp, Telegram, e-mail and notifications."),
    paths(
        messages::send, messages::get_message, messages::list_messages, messages::cancel_message,
        inbound::list_inbound, inbound::get_inbound,
        relay::get_link, relay::list_inbound, relay::retry_inbound,
        system::health, system::ready, system::status, system::metrics,
    ),
    components(schemas(
        dto::SendRequest, dto::AttachmentBody, dto::Priority, dto::Accepted, dto::MessageView,
        dto::MessagePage, dto::HistoryEntry, dto::ErrorInfo, dto::InboundView, dto::InboundPage,
        error::ErrorBody, error::ErrorDetail, system::StatusReport, system::EndpointStatus, system::Health,
        relay::RelayLinkView, relay::RelayInboundView, relay::RelayInboundPage,
        crate::store::RelayInboundState,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "This document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
