//! Every bad request gets `{"error":{"code","message","field"}}` and stores
//! nothing.

mod common;

use common::*;
use phonerelay_channel::ChannelKind;
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    idempotency_keys: &'static [&'static str],
    content_encoding: Option<&'static str>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn json_case(
    name: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        idempotency_keys: &[],
        content_encoding: None,
        status,
        code,
        field,
    }
}

fn with(field: &str, value: Value) -> Value {
    let mut body = send_body("phone-1", "sms", "+15551230001", "hi");
    body[field] = value;
    body
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: "malformed json",
            content_type: "application/json",
            body: b"{\"phone_id\":".to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 400,
            code: "invalid_json",
            field: None,
        },
        Case {
            name: "trailing garbage",
            content_type: "application/json",
            body: b"{} x".to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 400,
            code: "invalid_json",
            field: None,
        },
        Case {
            name: "wrong content type",
            content_type: "text/plain",
            body: send_body("phone-1", "sms", "+15551230001", "hi")
                .to_string()
                .into_bytes(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 415,
            code: "unsupported_media_type",
            field: Some("Content-Type"),
        },
        Case {
            name: "oversize body",
            content_type: "application/json",
            body: with("text", json!("x".repeat(300_000)))
                .to_string()
                .into_bytes(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 413,
            code: "payload_too_large",
            field: None,
        },
        Case {
            name: "bad idempotency key",
            content_type: "application/json",
            body: send_body("phone-1", "sms", "+15551230001", "hi")
                .to_string()
                .into_bytes(),
            idempotency_keys: &["has space"],
            content_encoding: None,
            status: 400,
            code: "invalid_header",
            field: Some("Idempotency-Key"),
        },
        Case {
            name: "two idempotency keys",
            content_type: "application/json",
            body: send_body("phone-1", "sms", "+15551230001", "hi")
                .to_string()
                .into_bytes(),
            idempotency_keys: &["first", "second"],
            content_encoding: None,
            status: 400,
            code: "invalid_header",
            field: Some("Idempotency-Key"),
        },
        Case {
            name: "a compressed body",
            content_type: "application/json",
            body: vec![0x1f, 0x8b, 0x08, 0x00],
            idempotency_keys: &[],
            content_encoding: Some("gzip"),
            status: 415,
            code: "unsupported_media_type",
            field: Some("Content-Encoding"),
        },
        // serde_json keeps no duplicate keys, so these bodies are written
        // out; the error names the repeated field, also inside an array.
        Case {
            name: "duplicated key",
            content_type: "application/json",
            body: br#"{"phone_id":"phone-1","phone_id":"phone-1","channel":"sms","to":"+15551230001","text":"hi"}"#.to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 422,
            code: "invalid_field",
            field: Some("phone_id"),
        },
        Case {
            name: "duplicated key in an attachment",
            content_type: "application/json",
            body: br#"{"phone_id":"mail-1","channel":"email","to":"a@example.com","text":"hi","attachments":[{"url":"https://x.test/a","url":"https://x.test/b"}]}"#.to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 422,
            code: "invalid_field",
            field: Some("attachments[0].url"),
        },
    ];
    cases.extend([
        json_case("not an object", json!([1, 2]), 400, "invalid_json", None),
        json_case(
            "options not an object",
            with("options", json!(["template"])),
            422,
            "invalid_field",
            Some("options"),
        ),
        json_case(
            "options the channel does not take",
            with("options", json!({"colour": "red"})),
            422,
            "invalid_field",
            Some("options"),
        ),
        json_case(
            "empty text with empty options",
            json!({"phone_id": "phone-1", "channel": "sms", "to": "+15551230001",
                "text": "", "options": {}}),
            422,
            "invalid_field",
            Some("text"),
        ),
        json_case(
            "options too large",
            with("options", json!({"template": "x".repeat(17 * 1024)})),
            422,
            "invalid_field",
            Some("options"),
        ),
        json_case(
            "missing to",
            json!({"phone_id": "phone-1", "channel": "sms", "text": "hi"}),
            422,
            "missing_field",
            Some("to"),
        ),
        json_case(
            "unknown field",
            with("colour", json!("red")),
            422,
            "unknown_field",
            Some("colour"),
        ),
        json_case(
            "text of wrong type",
            with("text", json!(42)),
            422,
            "invalid_field",
            Some("text"),
        ),
        json_case(
            "unknown channel",
            with("channel", json!("fax")),
            422,
            "unknown_channel",
            Some("channel"),
        ),
        json_case(
            "pchat is the relay's",
            with("channel", json!("pchat")),
            422,
            "unsupported_channel",
            Some("channel"),
        ),
        json_case(
            "unknown phone_id",
            with("phone_id", json!("nope")),
            422,
            "unknown_phone_id",
            Some("phone_id"),
        ),
        json_case(
            "channel not on this phone",
            with("channel", json!("wa")),
            422,
            "unknown_phone_id",
            Some("phone_id"),
        ),
        json_case(
            "sms to a non-E.164 number",
            with("to", json!("5551230001")),
            422,
            "invalid_field",
            Some("to"),
        ),
        json_case(
            "sms to letters",
            with("to", json!("+1555abc0001")),
            422,
            "invalid_field",
            Some("to"),
        ),
        json_case(
            "empty text",
            with("text", json!("")),
            422,
            "invalid_field",
            Some("text"),
        ),
        json_case(
            "text of white space only",
            with("text", json!(" \n\t ")),
            422,
            "invalid_field",
            Some("text"),
        ),
        json_case(
            "text with a NUL",
            with("text", json!("a\u{0}b")),
            422,
            "invalid_field",
            Some("text"),
        ),
        json_case(
            "text with an escape",
            with("text", json!("\u{1b}[2Jcleared")),
            422,
            "invalid_field",
            Some("text"),
        ),
        json_case(
            "oversize sms text",
            with("text", json!("x".repeat(1531))),
            422,
            "invalid_field",
            Some("text"),
        ),
        json_case(
            "ttl zero",
            with("ttl_seconds", json!(0)),
            422,
            "invalid_field",
            Some("ttl_seconds"),
        ),
        json_case(
            "ttl too long",
            with("ttl_seconds", json!(30 * 24 * 3600)),
            422,
            "invalid_field",
            Some("ttl_seconds"),
        ),
        json_case(
            "negative ttl",
            with("ttl_seconds", json!(-5)),
            422,
            "invalid_field",
            Some("ttl_seconds"),
        ),
        // Valid JSON (RFC 8259 sets no limit on a number), too large for
        // a float: refused naming the field, as 1e308 is, not as bad JSON.
        Case {
            name: "ttl too large for a number",
            content_type: "application/json",
            body: br#"{"phone_id":"phone-1","channel":"sms","to":"+15551230001","text":"hi","ttl_seconds":1e400}"#.to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 422,
            code: "invalid_field",
            field: Some("ttl_seconds"),
        },
        // Not JSON (RFC 8259: text is UTF-8, and a \u escape names a
        // character), though skipping over the value would not notice.
        Case {
            name: "a lone surrogate in the text",
            content_type: "application/json",
            body: br#"{"phone_id":"phone-1","channel":"sms","to":"+15551230001","text":"\ud800"}"#.to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 400,
            code: "invalid_json",
            field: None,
        },
        Case {
            name: "a raw 0xFF byte in the text",
            content_type: "application/json",
            body: b"{\"phone_id\":\"phone-1\",\"channel\":\"sms\",\"to\":\"+15551230001\",\"text\":\"a\xffb\"}".to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 400,
            code: "invalid_json",
            field: None,
        },
        json_case(
            "ttl a float",
            with("ttl_seconds", json!(1e308)),
            422,
            "invalid_field",
            Some("ttl_seconds"),
        ),
        Case {
            name: "option too large for a number",
            content_type: "application/json",
            body: br#"{"phone_id":"phone-1","channel":"sms","to":"+15551230001","text":"hi","options":{"template":1e400}}"#.to_vec(),
            idempotency_keys: &[],
        content_encoding: None,
            status: 422,
            code: "invalid_field",
            field: Some("options.template"),
        },
        json_case(
            "option a large float",
            with("options", json!({"template": 1e308})),
            422,
            "invalid_field",
            Some("options"),
        ),
        json_case(
            "bad priority",
            with("priority", json!("urgent")),
            422,
            "invalid_field",
            Some("priority"),
        ),
        json_case(
            "attachment on an sms, with no text",
            {
                let mut body = with("attachments", json!([{"url": "https://x.test/a.jpg"}]));
                body["text"] = json!("");
                body
            },
            422,
            "invalid_field",
            Some("attachments"),
        ),
        json_case(
            "attachment not a url",
            with("attachments", json!([{"url": "file:///etc/passwd"}])),
            422,
            "invalid_field",
            Some("attachments[0].url"),
        ),
        json_case(
            "attachment url without a host",
            with("attachments", json!([{"url": "https://"}])),
            422,
            "invalid_field",
            Some("attachments[0].url"),
        ),
        json_case(
            "attachment url with a space",
            with("attachments", json!([{"url": "https:// not a url"}])),
            422,
            "invalid_field",
            Some("attachments[0].url"),
        ),
        json_case(
            "attachment url with a password",
            {
                let mut b = send_body("mail-1", "email", "a@example.com", "hi");
                b["attachments"] = json!([{"url": "https://ann:S3CRET@x.test/a.pdf"}]);
                b
            },
            422,
            "invalid_field",
            Some("attachments[0].url"),
        ),
        json_case(
            "attachment url at a private address",
            {
                let mut b = send_body("mail-1", "email", "a@example.com", "hi");
                b["attachments"] = json!([{"url": "http://169.254.169.254/latest/meta-data/"}]);
                b
            },
            422,
            "invalid_field",
            Some("attachments[0].url"),
        ),
        json_case(
            "attachment url at port 0",
            {
                let mut b = send_body("mail-1", "email", "a@example.com", "hi");
                b["attachments"] = json!([{"url": "https://x.test:0/a.pdf"}]);
                b
            },
            422,
            "invalid_field",
            Some("attachments[0].url"),
        ),
        json_case(
            "attachment url no request can name",
            {
                let mut b = send_body("mail-1", "email", "a@example.com", "hi");
                b["attachments"] = json!([{"url": "https://{x}.test/a.pdf"}]);
                b
            },
            422,
            "invalid_field",
            Some("attachments[0].url"),
        ),
        // What the channel takes is said first: an SMS takes no file.
        json_case(
            "attachment at a private address on an sms",
            with(
                "attachments",
                json!([{"url": "http://169.254.169.254/latest/meta-data/"}]),
            ),
            422,
            "invalid_field",
            Some("attachments"),
        ),
        json_case(
            "attachment unknown key",
            with(
                "attachments",
                json!([{"url": "https://x.test/a", "bytes": 1}]),
            ),
            422,
            "unknown_field",
            Some("attachments[0].bytes"),
        ),
        json_case(
            "reply_to unknown",
            with("reply_to", json!("no-such-inbound")),
            422,
            "invalid_field",
            Some("reply_to"),
        ),
        json_case(
            "bad source address",
            with("source", json!("not an address")),
            422,
            "invalid_field",
            Some("source"),
        ),
        json_case(
            "multi-line subject",
            {
                let mut b = send_body("mail-1", "email", "a@example.com", "hi");
                b["subject"] = json!("a\r\nBcc: victim@example.com");
                b
            },
            422,
            "invalid_field",
            Some("subject"),
        ),
        json_case(
            "email to a bad address",
            send_body("mail-1", "email", "a@@example.com", "hi"),
            422,
            "invalid_field",
            Some("to"),
        ),
    ]);
    cases
}

#[tokio::test]
async fn every_bad_request_is_refused_with_a_code_and_field_and_stores_nothing() {
    let sms = TestChannel::new(ChannelKind::Sms, "phone-1");
    let email = TestChannel::new(ChannelKind::Email, "mail-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone(), email.clone()]).await;
    for case in cases() {
        let mut request = d
            .http
            .post(format!("{}/api/v1/messages", d.base))
            .bearer_auth(&d.admin_key)
            .header("content-type", case.content_type)
            .body(case.body.clone());
        for key in case.idempotency_keys {
            request = request.header("idempotency-key", *key);
        }
        if let Some(coding) = case.content_encoding {
            request = request.header("content-encoding", coding);
        }
        let (status, body) = into_parts(request.send().await.unwrap()).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert!(
            !body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{}: no message",
            case.name
        );
        assert_eq!(
            body["error"]["field"].as_str(),
            case.field,
            "{}: {body}",
            case.name
        );
    }
    let (_, page) = d.get("/api/v1/messages", &d.admin_key).await;
    assert_eq!(page["messages"], json!([]), "bad requests stored something");
    assert_eq!(sms.calls() + email.calls(), 0);
}

/// The limits are the endpoint's adapter's (`Channel::send_limits`), not
/// fixed per channel in the core: a notify endpoint that takes one file
/// and 20 characters refuses more, naming the field, and stores nothing;
/// within them it accepts.
#[tokio::test]
async fn an_adapter_with_lower_limits_has_them_enforced_at_accept() {
    let ntfy = TestChannel::new(ChannelKind::Notify, "alerts");
    ntfy.set_send_limits(phonerelay_channel::SendLimits {
        max_text_chars: 20,
        max_attachments: 1,
    });
    let d = TestDaemon::start(FAST_OUTBOX, vec![ntfy.clone()]).await;
    let file = |name: &str| json!({"url": format!("https://files.test/{name}")});
    let body = |text: &str, files: Vec<Value>| {
        let mut body = send_body("alerts", "notify", "backups", text);
        body["attachments"] = json!(files);
        body
    };
    for (name, request, field, words) in [
        (
            "21 characters",
            body(&"é".repeat(21), vec![]),
            "text",
            "at most 20",
        ),
        (
            "two files",
            body("disk full", vec![file("a.log"), file("b.log")]),
            "attachments",
            "at most 1 ",
        ),
    ] {
        let (status, answer) = d.post("/api/v1/messages", &d.admin_key, &request).await;
        assert_eq!(status, 422, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field", "{name}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{name}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{name}: {message}");
    }
    let (_, page) = d.get("/api/v1/messages", &d.admin_key).await;
    assert_eq!(page["messages"], json!([]), "a refused send was stored");
    let (status, answer) = d
        .post(
            "/api/v1/messages",
            &d.admin_key,
            &body(&"é".repeat(20), vec![file("a.log")]),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(ntfy.wait_sent(1).await[0].attachments.len(), 1);
}

/// An SMS endpoint refuses a text that would take more parts than its
/// `max_parts` (10), whatever its length in characters: 1,530 `€` (two
/// septets each, never split, so 76 a part) are 21 parts and 700 `Ж`
/// (UCS-2, 67 a part) are 11, each refused naming `text`, and nothing is
/// stored; 1,530 plain characters are ten, and taken.
#[tokio::test]
async fn an_sms_text_over_its_parts_is_refused_whatever_its_length() {
    let d = TestDaemon::start(
        &format!("{FAST_OUTBOX}\n[[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"sim\"\n"),
        vec![],
    )
    .await;
    let body = |text: &str| send_body("m1", "sms", "+15551230001", text);
    for (text, parts) in [("€".repeat(1530), "21"), ("Ж".repeat(700), "11")] {
        let (status, answer) = d.post("/api/v1/messages", &d.admin_key, &body(&text)).await;
        assert_eq!(status, 422, "{parts} parts: {answer}");
        assert_eq!(answer["error"]["field"], "text", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("needs {parts} SMS parts")) && message.contains("at most 10"),
            "{message}"
        );
    }
    let (_, page) = d.get("/api/v1/messages", &d.admin_key).await;
    assert_eq!(page["messages"], json!([]), "a refused send was stored");
    let (status, answer) = d
        .post("/api/v1/messages", &d.admin_key, &body(&"a".repeat(1530)))
        .await;
    assert_eq!(status, 202, "{answer}");
}

/// What an endpoint's service takes beyond the kind's syntax is its
/// adapter's to say (`Channel::check_recipient`): a notify endpoint whose
/// service takes no `.` in a topic refuses one, naming `to`, and stores
/// nothing; another notify endpoint takes the same address.
#[tokio::test]
async fn an_adapter_refuses_a_recipient_its_service_does_not_take() {
    let ntfy = TestChannel::new(ChannelKind::Notify, "alerts");
    ntfy.refuse_in_recipient(".");
    let webhook = TestChannel::new(ChannelKind::Notify, "hooks");
    let d = TestDaemon::start(FAST_OUTBOX, vec![ntfy.clone(), webhook.clone()]).await;
    let (status, answer) = d
        .post(
            "/api/v1/messages",
            &d.admin_key,
            &send_body("alerts", "notify", "backups.nightly", "disk full"),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_field", "{answer}");
    assert_eq!(answer["error"]["field"], "to", "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("'.'"),
        "{answer}"
    );
    let (_, page) = d.get("/api/v1/messages", &d.admin_key).await;
    assert_eq!(page["messages"], json!([]), "a refused send was stored");
    for (phone_id, to) in [("alerts", "backups"), ("hooks", "backups.nightly")] {
        let (status, answer) = d
            .post(
                "/api/v1/messages",
                &d.admin_key,
                &send_body(phone_id, "notify", to, "disk full"),
            )
            .await;
        assert_eq!(status, 202, "{phone_id} {to}: {answer}");
    }
    assert_eq!(ntfy.wait_sent(1).await[0].to, "backups");
    assert_eq!(webhook.wait_sent(1).await[0].to, "backups.nightly");
}

#[tokio::test]
async fn bad_queries_and_unknown_routes() {
    let d = TestDaemon::start(
        FAST_OUTBOX,
        vec![TestChannel::new(ChannelKind::Sms, "phone-1")],
    )
    .await;
    for (path, field) in [
        ("/api/v1/messages?status=lost", "status"),
        ("/api/v1/messages?channel=fax", "channel"),
        // pChat messages are the relay's: the schema's enum leaves it out.
        ("/api/v1/messages?channel=pchat", "channel"),
        ("/api/v1/inbound?channel=pchat", "channel"),
        // The status takes no parameters: a filter is refused, not ignored.
        ("/api/v1/status?phone_id=phone-1", "phone_id"),
        ("/api/v1/relay?phone_id=phone-1", "phone_id"),
        ("/api/v1/messages?limit=0", "limit"),
        ("/api/v1/messages?limit=100000", "limit"),
        ("/api/v1/messages?since=yesterday", "since"),
        ("/api/v1/messages?cursor=zzz", "cursor"),
        ("/api/v1/inbound?limit=-1", "limit"),
        ("/api/v1/messages?limit=5&limit=6", "limit"),
    ] {
        let (code, body) = d.get(path, &d.admin_key).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{path}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    // A + in a query string is a space: the refusal says how to send one.
    let (code, body) = d
        .get(
            "/api/v1/messages?since=2026-11-29T03:00:00+01:00",
            &d.admin_key,
        )
        .await;
    assert_eq!((code, &body["error"]["field"]), (400, &json!("since")));
    let said = body["error"]["message"].as_str().unwrap();
    assert!(said.contains("%2B"), "{said}");
    let (code, body) = d
        .get(
            "/api/v1/messages?since=2026-11-29T03:00:00%2B01:00",
            &d.admin_key,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = d.get("/api/v1/messages/does-not-exist", &d.admin_key).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // A path segment that is not UTF-8 gets the API's JSON error too, on
    // every route that takes one, with or without a key.
    for (path, key) in [
        ("/api/v1/messages/%FF", d.admin_key.as_str()),
        ("/api/v1/inbound/%FF", d.admin_key.as_str()),
        ("/webhooks/%FF/x/y", ""),
    ] {
        let (code, body) = d.get(path, key).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_path", "{path}: {body}");
        assert_eq!(body["error"]["field"], "path", "{path}");
    }
    let (code, body) = d.get("/api/v1/nothing-here", &d.admin_key).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let response = d
        .http
        .delete(format!("{}/api/v1/messages", d.base))
        .send()
        .await
        .unwrap();
    let (code, body) = into_parts(response).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn every_refused_send_is_counted_by_its_code_whichever_step_refused_it() {
    let d = TestDaemon::start(
        FAST_OUTBOX,
        vec![TestChannel::new(ChannelKind::Sms, "phone-1")],
    )
    .await;
    let url = format!("{}/api/v1/messages", d.base);
    let good = send_body("phone-1", "sms", "+15551230001", "hi");
    // The bearer check refuses before the handler runs.
    d.http.post(&url).json(&good).send().await.unwrap();
    d.http
        .post(&url)
        .bearer_auth("not-a-key")
        .json(&good)
        .send()
        .await
        .unwrap();
    // So does reading the body.
    for (content_type, body) in [("text/plain", "hi"), ("application/json", "{\"phone_id\":")] {
        d.http
            .post(&url)
            .bearer_auth(&d.admin_key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
    }
    // Validation refuses inside it.
    let bad_to = send_body("phone-1", "sms", "555", "hi");
    d.post("/api/v1/messages", &d.admin_key, &bad_to).await;
    // A good send and a bad read are not refused sends.
    d.post("/api/v1/messages", &d.admin_key, &good).await;
    d.get("/api/v1/messages/nope", &d.admin_key).await;

    let metrics = d.metrics_text().await;
    for (code, count) in [
        ("unauthorized", 2),
        ("unsupported_media_type", 1),
        ("invalid_json", 1),
        ("invalid_field", 1),
    ] {
        let line = format!("phonerelay_rejected_total{{code=\"{code}\"}} {count}");
        assert!(metrics.contains(&line), "no `{line}` in:\n{metrics}");
    }
    assert!(
        !metrics.contains("phonerelay_rejected_total{code=\"not_found\"}"),
        "a refused read counted as a refused send:\n{metrics}"
    );
}

/// A cursor names its list: one list's cursor given to another is
/// refused, where it was read as a sequence number of the other's rows
/// and answered with an empty page that looked like the list's end. A
/// cursor is one spelling of a sequence number of 1 or more. A list's own
/// cursor still pages.
#[tokio::test]
async fn a_cursor_is_refused_by_every_list_but_its_own() {
    let sms = TestChannel::new(ChannelKind::Sms, "phone-1");
    let d = TestDaemon::start(FAST_OUTBOX, vec![sms.clone()]).await;
    for n in 1..=3 {
        let message = phonerelay_channel::InboundMessage {
            channel: ChannelKind::Sms,
            phone_id: "phone-1".into(),
            from: "+15551230001".into(),
            text: format!("inbound {n}"),
            subject: None,
            attachments: vec![],
            external_id: format!("in-{n}"),
            reply_to: vec![],
            received_at_ms: phonerelay::clock::now_ms(),
            meta: Default::default(),
        };
        let event = phonerelay_channel::ChannelEvent::Inbound(message);
        sms.inject(event).await.unwrap();
    }
    let (code, page) = d.get("/api/v1/inbound?limit=1", &d.admin_key).await;
    assert_eq!(code, 200, "{page}");
    let inbound_cursor = page["next_cursor"].as_str().unwrap().to_string();
    let first = page["messages"][0]["id"].clone();

    let refused = [
        format!("/api/v1/messages?cursor={inbound_cursor}"),
        format!("/api/v1/inbound/unreadable?cursor={inbound_cursor}"),
        format!("/api/v1/relay/inbound?cursor={inbound_cursor}"),
        "/api/v1/inbound?cursor=c0".into(),
        "/api/v1/inbound?cursor=c-1".into(),
        // The form cursors had before each named its list.
        "/api/v1/inbound?cursor=c2".into(),
    ];
    for path in &refused {
        let (code, body) = d.get(path, &d.admin_key).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{path}");
        assert_eq!(body["error"]["field"], "cursor", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("not a cursor of this list"),
            "{path}: {message}"
        );
    }
    for spelling in ["0", "-1", "%2B2", "02"] {
        let prefix = inbound_cursor.trim_end_matches(|c: char| c.is_ascii_digit());
        let path = format!("/api/v1/inbound?cursor={prefix}{spelling}");
        let (code, body) = d.get(&path, &d.admin_key).await;
        assert_eq!(
            (code, &body["error"]["field"]),
            (400, &json!("cursor")),
            "{path}: {body}"
        );
    }

    let path = format!("/api/v1/inbound?limit=1&cursor={inbound_cursor}");
    let (code, page) = d.get(&path, &d.admin_key).await;
    assert_eq!(code, 200, "{page}");
    let second = &page["messages"][0]["id"];
    assert!(second.is_string() && *second != first, "{page}");
    assert!(page["next_cursor"].is_string(), "one more page: {page}");
}
