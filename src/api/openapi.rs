//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use phonerelay_channel::{ChannelKind, address_pattern};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{dto, error, inbound, media, messages, relay, system, unreadable};

#[derive(OpenApi)]
#[openapi(
    info(title = "PhoneRelay", description = "Bridge between a pChat relay and the outside world. The API names the channels sms, wa, tg, email, notify and pchat; this build ships the SMS adapter."),
    paths(
        messages::send, messages::get_message, messages::list_messages, messages::cancel_message,
        inbound::list_inbound, inbound::get_inbound, unreadable::list_unreadable, media::get_media,
        relay::get_link, relay::list_inbound, relay::retry_inbound, relay::retry_dead_letters,
        system::health, system::ready, system::status, system::metrics, openapi_json,
    ),
    components(schemas(
        dto::SendRequest, dto::AttachmentBody, dto::Priority, dto::Accepted, dto::MessageView, dto::CancelAnswer, dto::CancelledBrief,
        dto::MessagePage, dto::HistoryEntry, dto::ErrorInfo, dto::InboundView, dto::InboundPage,
        dto::InboundAttachment, unreadable::UnreadableView, unreadable::UnreadablePage, media::MediaBytes,
        error::ErrorBody, error::ErrorDetail, system::StatusReport, system::EndpointStatus, system::EndpointPause, system::Health,
        relay::RelayLinkView, relay::RelayInboundView, relay::RelayInboundPage, relay::RetryRequest, relay::RetryAnswer, relay::RetriedBrief,
        relay::RetryDeadRequest, relay::RetryDeadAnswer,
        crate::store::RelayInboundState, crate::store::DiskUsage, crate::store::MediaRefusal,
    )),
    modifiers(&BearerAuth, &KeyAndStoreResponses, &BodyResponses, &PathParameterResponses),
)]
pub struct ApiDoc;

/// A channel name as the API takes it: one of the channels this bridge
/// sends on, listed from `ChannelKind` so the document cannot drift from
/// the code.
pub fn channel_name() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ChannelKind::DELIVERABLE.map(ChannelKind::as_str)))
        .build()
}

/// As [`channel_name`], or null: a filter that may be left out.
pub fn channel_name_or_null() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            ChannelKind::DELIVERABLE
                .map(|c| Some(c.as_str()))
                .into_iter()
                .chain([None]),
        ))
        .build()
}

/// What `source` must look like: a pChat address, the channel crate's
/// pattern for it (the check the API runs), or null.
pub fn source_address() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(address_pattern(ChannelKind::Pchat)))
        .build()
}

/// Every operation behind a bearer key also answers 401 (no key, or not a
/// valid one), 403 (the key lacks the scope or the phone_id), 500 (the
/// store refused the request for good: `store_refused`) and 503 (the
/// store cannot be reached), all with the error body. Added here once
/// rather than written into each handler's annotation, where one is
/// easily forgotten (it was: only the send documented its 403).
struct KeyAndStoreResponses;

impl Modify for KeyAndStoreResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                if operation.security.as_ref().is_none_or(Vec::is_empty) {
                    continue;
                }
                for (status, description) in [
                    ("401", "No API key, or not a valid one"),
                    (
                        "403",
                        "The key lacks the scope, or is bound to another phone_id",
                    ),
                    (
                        "500",
                        "The store refused the request for a reason that will not pass by itself, a constraint or a bug (`store_refused`; the bridge's log says which); nothing was changed",
                    ),
                    ("503", "The store cannot be reached; nothing was changed"),
                ] {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description).into());
                }
            }
        }
    }
}

/// Every operation with a path parameter answers 400 `invalid_path` for
/// a segment it cannot take (`%FF`, not UTF-8: `api::path`). Added here
/// for the same reason as [`KeyAndStoreResponses`]: each handler's list
/// forgot it.
struct PathParameterResponses;

/// Every operation that takes a JSON body also answers 400 (not a JSON
/// object, or not valid JSON), 408 (the body was too slow), 413 (too
/// large) and 415 (not `application/json`, or compressed), as
/// `body::JsonBody` does: added here once, as the key's answers are, for
/// the retries had none of them documented. An operation's own text for
/// one of them (the send's) is kept.
struct BodyResponses;

impl Modify for BodyResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                if operation.request_body.is_none() {
                    continue;
                }
                let takes_path = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Path);
                let malformed = if takes_path {
                    "The body is not a JSON object or not valid JSON (`invalid_json`), or a path segment cannot be read (`invalid_path`, field `path`)"
                } else {
                    "The body is not a JSON object or not valid JSON (`invalid_json`)"
                };
                for (status, description) in [
                    ("400", malformed),
                    (
                        "408",
                        "The body did not arrive within server.request_timeout_seconds; nothing was changed",
                    ),
                    ("413", "The body is larger than server.max_body_bytes"),
                    (
                        "415",
                        "Not JSON (`Content-Type`), or compressed (`Content-Encoding`)",
                    ),
                ] {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description).into());
                }
            }
        }
    }
}

impl Modify for PathParameterResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let takes_path = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Path);
                if takes_path {
                    operation
                        .responses
                        .responses
                        .entry("400".to_string())
                        .or_insert_with(|| {
                            error_response(
                                "A path segment cannot be read (`invalid_path`, field `path`)",
                            )
                            .into()
                        });
                }
            }
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

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

/// A link from one operation's answer to an operation that takes a value
/// out of it (OpenAPI 3.1, Link Object): a client, or a tester such as
/// schemathesis, can follow a send's 202 to reading and cancelling that
/// very message instead of guessing ids.
struct LinkSpec {
    /// The operation whose answer carries the value, and that answer.
    from: (&'static str, &'static str, &'static str),
    name: &'static str,
    operation_id: &'static str,
    /// The target's parameter and the runtime expression that fills it.
    parameter: &'static str,
    value: &'static str,
    description: &'static str,
}

const LINKS: &[LinkSpec] = &[
    LinkSpec {
        from: ("/api/v1/messages", "post", "202"),
        name: "GetMessage",
        operation_id: "get_message",
        parameter: "id",
        value: "$response.body#/id",
        description: "The accepted message: its status and history",
    },
    LinkSpec {
        from: ("/api/v1/messages", "post", "202"),
        name: "CancelMessage",
        operation_id: "cancel_message",
        parameter: "id",
        value: "$response.body#/id",
        description: "Cancel the accepted message while it is queued (not when the 202 said `sending`)",
    },
    LinkSpec {
        from: ("/api/v1/messages/{id}", "get", "200"),
        name: "CancelMessage",
        operation_id: "cancel_message",
        parameter: "id",
        value: "$response.body#/id",
        description: "Cancel this message while it is queued",
    },
    LinkSpec {
        from: ("/api/v1/messages", "get", "200"),
        name: "GetFirstMessage",
        operation_id: "get_message",
        parameter: "id",
        value: "$response.body#/messages/0/id",
        description: "The first message of the page",
    },
    LinkSpec {
        from: ("/api/v1/messages", "get", "200"),
        name: "NextPage",
        operation_id: "list_messages",
        parameter: "cursor",
        value: "$response.body#/next_cursor",
        description: "The next page (null on the last one)",
    },
    LinkSpec {
        from: ("/api/v1/inbound", "get", "200"),
        name: "GetFirstInbound",
        operation_id: "get_inbound",
        parameter: "id",
        value: "$response.body#/messages/0/id",
        description: "The first inbound message of the page",
    },
    LinkSpec {
        from: ("/api/v1/inbound", "get", "200"),
        name: "NextPage",
        operation_id: "list_inbound",
        parameter: "cursor",
        value: "$response.body#/next_cursor",
        description: "The next page (null on the last one)",
    },
    LinkSpec {
        from: ("/api/v1/inbound/unreadable", "get", "200"),
        name: "NextPage",
        operation_id: "list_unreadable",
        parameter: "cursor",
        value: "$response.body#/next_cursor",
        description: "The next page (null on the last one)",
    },
    LinkSpec {
        from: ("/api/v1/relay/inbound", "get", "200"),
        name: "RetryFirst",
        operation_id: "retry_inbound",
        parameter: "id",
        value: "$response.body#/messages/0/message/id",
        description: "Queue the page's first dead letter for the relay again",
    },
    LinkSpec {
        from: ("/api/v1/relay/inbound", "get", "200"),
        name: "NextPage",
        operation_id: "list_relay_inbound",
        parameter: "cursor",
        value: "$response.body#/next_cursor",
        description: "The next page (null on the last one)",
    },
];

/// What `to` must look like on each channel, as JSON Schema `if`/`then`
/// pairs on the channel name (OpenAPI 3.1 takes JSON Schema 2020-12): the
/// patterns are the channel crate's, which its tests hold to the checks
/// the API runs. A client generated from the document can then refuse a
/// bad number before sending it, and a fuzzer can make valid sends.
fn address_rules() -> serde_json::Value {
    ChannelKind::DELIVERABLE
        .iter()
        .map(|channel| {
            serde_json::json!({
                "if": {
                    "properties": { "channel": { "const": channel.as_str() } },
                    "required": ["channel"],
                },
                "then": {
                    "properties": { "to": { "pattern": address_pattern(*channel) } },
                },
            })
        })
        .collect()
}

/// The whole document as served: the generated one with [`LINKS`] and
/// [`address_rules`] added. Added to the JSON rather than through utoipa,
/// whose `Link` (5.5) is written with the field name `operation_id` where
/// OpenAPI has `operationId`, so no reader would follow it, and which has
/// no `if`/`then`.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    doc["components"]["schemas"]["SendRequest"]["allOf"] = address_rules();
    for link in LINKS {
        let (path, method, status) = link.from;
        let response = &mut doc["paths"][path][method]["responses"][status];
        assert!(
            response.is_object(),
            "link {} from an undocumented answer",
            link.name
        );
        response["links"][link.name] = serde_json::json!({
            "operationId": link.operation_id,
            "parameters": { link.parameter: link.value },
            "description": link.description,
        });
    }
    doc
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "This document")))]
pub async fn openapi_json() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::api::paging::MAX_PAGE;

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                all.push((path.clone(), method.clone(), operation));
            }
        }
        all
    }

    fn list_messages_parameter<'a>(doc: &'a Value, name: &str) -> &'a Value {
        doc["paths"]["/api/v1/messages"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        let mut paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        paths.sort_unstable();
        // The routes of `api::router`, but the channels' webhooks, whose
        // shape each channel's own protocol sets.
        assert_eq!(
            paths,
            [
                "/api/v1/inbound",
                "/api/v1/inbound/unreadable",
                "/api/v1/inbound/{id}",
                "/api/v1/inbound/{id}/retry",
                "/api/v1/media/{id}",
                "/api/v1/messages",
                "/api/v1/messages/{id}",
                "/api/v1/messages/{id}/cancel",
                "/api/v1/openapi.json",
                "/api/v1/relay",
                "/api/v1/relay/inbound",
                "/api/v1/relay/inbound/retry",
                "/api/v1/status",
                "/health",
                "/metrics",
                "/ready",
            ]
        );
    }

    #[test]
    fn path_parameters_are_in_the_path_and_query_parameters_are_optional() {
        let doc = document();
        for (path, method, operation) in operations(&doc) {
            let Some(params) = operation["parameters"].as_array() else {
                continue;
            };
            for p in params {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str().unwrap() {
                    "path" => assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: `{name}` is documented as a path parameter"
                    ),
                    "query" => assert_ne!(
                        p["required"],
                        Value::Bool(true),
                        "{method} {path}: query parameter `{name}` is optional"
                    ),
                    "header" => {}
                    other => panic!("{method} {path}: `{name}` in {other}"),
                }
            }
        }
        let limit = list_messages_parameter(&doc, "limit");
        assert_eq!(limit["schema"]["minimum"], 1);
        assert_eq!(limit["schema"]["maximum"], MAX_PAGE);
    }

    #[test]
    fn every_keyed_operation_documents_401_403_500_and_503_with_the_error_body() {
        let doc = document();
        let mut keyed = 0;
        for (path, method, operation) in operations(&doc) {
            if operation["security"].as_array().is_none_or(Vec::is_empty) {
                continue;
            }
            keyed += 1;
            for status in ["401", "403", "500", "503"] {
                let schema =
                    &operation["responses"][status]["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
        assert!(keyed >= 10, "{keyed} keyed operations");
    }

    /// Whether a media range of a document's `content` (`*/*`, `image/*`,
    /// `image/png`) covers the type an answer is served with.
    fn covers(range: &str, served: &str) -> bool {
        let (Some((range_type, range_sub)), Some((served_type, served_sub))) =
            (range.split_once('/'), served.split_once('/'))
        else {
            return false;
        };
        (range_type == "*" || range_type.eq_ignore_ascii_case(served_type))
            && (range_sub == "*" || range_sub.eq_ignore_ascii_case(served_sub))
    }

    /// A kept file is served with the type its channel gave it
    /// (`media::file`), so the 200's content covers any type; it named
    /// only application/octet-stream, which a client or a checker held
    /// an image/jpeg answer against.
    #[test]
    fn a_kept_file_s_200_covers_every_type_it_is_served_with() {
        let doc = document();
        let content = doc["paths"]["/api/v1/media/{id}"]["get"]["responses"]["200"]["content"]
            .as_object()
            .unwrap();
        for served in [
            "image/jpeg",
            "audio/ogg",
            "application/pdf",
            "application/octet-stream",
        ] {
            assert!(
                content.keys().any(|range| covers(range, served)),
                "{served} is not in {:?}",
                content.keys().collect::<Vec<_>>()
            );
        }
    }

    /// The headers the send's 202 carries (`messages::accepted`).
    #[test]
    fn the_send_s_202_documents_its_headers() {
        let doc = document();
        let headers = &doc["paths"]["/api/v1/messages"]["post"]["responses"]["202"]["headers"];
        for name in ["Location", "Idempotent-Replayed"] {
            assert!(headers[name].is_object(), "{name}: {headers}");
        }
    }

    /// A cancel answers a key that may read the whole message, which has
    /// an id and a status too: the brief answer's schema must refuse it,
    /// or the answer matches both of `oneOf`'s schemas and a validator (or
    /// a generated client) refuses it.
    #[test]
    fn a_whole_message_is_no_brief_cancel_answer() {
        let doc = document();
        let brief = &doc["components"]["schemas"]["CancelledBrief"];
        assert_eq!(brief["additionalProperties"], false, "{brief}");
        let whole = &doc["components"]["schemas"]["MessageView"]["properties"];
        assert!(whole.as_object().unwrap().len() > 2, "{whole}");
        // A retry's likewise.
        let brief = &doc["components"]["schemas"]["RetriedBrief"];
        assert_eq!(brief["additionalProperties"], false, "{brief}");
    }

    /// Whatever takes a JSON body may answer its errors: 400, 408, 413
    /// and 415, each with the error body.
    #[test]
    fn every_operation_with_a_body_documents_the_body_s_errors() {
        let doc = document();
        let mut with_body = 0;
        for (path, method, operation) in operations(&doc) {
            if operation.get("requestBody").is_none() {
                continue;
            }
            with_body += 1;
            for status in ["400", "408", "413", "415"] {
                let schema =
                    &operation["responses"][status]["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
        assert_eq!(with_body, 3, "the send and the two retries");
    }

    /// Optional filters may be given as null, as the API takes them.
    #[test]
    fn a_bulk_retry_s_channel_may_be_null() {
        let doc = document();
        let channel = &doc["components"]["schemas"]["RetryDeadRequest"]["properties"]["channel"];
        assert_eq!(
            channel["type"],
            serde_json::json!(["string", "null"]),
            "{channel}"
        );
        assert!(
            channel["enum"].as_array().unwrap().contains(&Value::Null),
            "{channel}"
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut ids: Vec<&str> = operations(&doc)
            .iter()
            .map(|(_, _, op)| op["operationId"].as_str().unwrap())
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "a repeated operationId in {ids:?}");
    }

    /// The schema a JSON pointer reaches inside `schema`, following
    /// `$ref`s (also one wrapped in `oneOf`/`allOf`, as for an optional
    /// field) and array items.
    fn schema_at<'a>(doc: &'a Value, mut schema: &'a Value, pointer: &str) -> Option<&'a Value> {
        let deref = |mut s: &'a Value| {
            loop {
                if let Some(r) = s["$ref"].as_str() {
                    let name = r.strip_prefix("#/components/schemas/")?;
                    s = &doc["components"]["schemas"][name];
                } else if let Some(inner) = ["oneOf", "allOf", "anyOf"]
                    .iter()
                    .find_map(|k| s[*k].as_array()?.iter().find(|v| v["$ref"].is_string()))
                {
                    s = inner;
                } else {
                    return Some(s);
                }
            }
        };
        for segment in pointer.split('/').skip(1) {
            schema = deref(schema)?;
            schema = if segment.parse::<usize>().is_ok() {
                &schema["items"]
            } else {
                &schema["properties"][segment]
            };
            if schema.is_null() {
                return None;
            }
        }
        deref(schema)
    }

    #[test]
    fn every_link_names_a_real_operation_parameter_and_response_field() {
        let doc = document();
        let all = operations(&doc);
        let mut links = 0;
        for (path, method, operation) in &all {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Some(found) = response["links"].as_object() else {
                    continue;
                };
                for (name, link) in found {
                    links += 1;
                    let at = format!("{method} {path} {status} link {name}");
                    let target_id = link["operationId"].as_str().unwrap();
                    let (_, _, target) = all
                        .iter()
                        .find(|(_, _, op)| op["operationId"] == target_id)
                        .unwrap_or_else(|| panic!("{at}: no operation {target_id}"));
                    let body = &response["content"]["application/json"]["schema"];
                    for (parameter, value) in link["parameters"].as_object().unwrap() {
                        let taken = target["parameters"]
                            .as_array()
                            .is_some_and(|ps| ps.iter().any(|p| p["name"] == *parameter));
                        assert!(taken, "{at}: {target_id} takes no `{parameter}`");
                        let value = value.as_str().unwrap();
                        let pointer = value
                            .strip_prefix("$response.body#")
                            .unwrap_or_else(|| panic!("{at}: {value}"));
                        let field = schema_at(&doc, body, pointer)
                            .unwrap_or_else(|| panic!("{at}: the body has no {pointer}"));
                        assert!(
                            field["type"] == "string"
                                || field["type"]
                                    .as_array()
                                    .is_some_and(|t| t.contains(&"string".into())),
                            "{at}: {pointer} is not a string: {field}"
                        );
                    }
                }
            }
        }
        assert_eq!(links, LINKS.len());
        let accepted = &doc["paths"]["/api/v1/messages"]["post"]["responses"]["202"]["links"];
        assert_eq!(accepted["GetMessage"]["operationId"], "get_message");
        assert_eq!(
            accepted["GetMessage"]["parameters"]["id"],
            "$response.body#/id"
        );
    }

    #[test]
    fn each_channel_says_what_its_address_looks_like() {
        let doc = document();
        let rules = doc["components"]["schemas"]["SendRequest"]["allOf"]
            .as_array()
            .unwrap();
        assert_eq!(rules.len(), ChannelKind::DELIVERABLE.len());
        for channel in ChannelKind::DELIVERABLE {
            let rule = rules
                .iter()
                .find(|r| r["if"]["properties"]["channel"]["const"] == channel.as_str())
                .unwrap_or_else(|| panic!("no rule for {channel:?}"));
            assert_eq!(rule["if"]["required"], serde_json::json!(["channel"]));
            assert_eq!(
                rule["then"]["properties"]["to"]["pattern"],
                address_pattern(channel)
            );
        }
    }

    #[test]
    fn channel_names_are_the_deliverable_channels() {
        let doc = document();
        let names: Vec<&str> = ChannelKind::DELIVERABLE.map(ChannelKind::as_str).to_vec();
        let send = &doc["components"]["schemas"]["SendRequest"]["properties"]["channel"];
        assert_eq!(send["enum"], serde_json::json!(names));
        let channel = list_messages_parameter(&doc, "channel");
        assert_eq!(channel["schema"]["enum"], serde_json::json!(names));
    }
}
