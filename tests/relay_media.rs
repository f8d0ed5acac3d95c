//! Files received with inbound messages, on their way to the relay: each
//! is uploaded (`POST {media}`) before its message, once, and the message
//! carries the relay's URL in place of the bridge's path. The real daemon
//! against the emulated relay.

mod common;
mod relay_support;

use std::sync::Arc;
use std::time::Duration;

use common::TestChannel;
use phonerelay_channel::{Attachment, ChannelEvent, ChannelKind, MediaUpload};
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, wa_inbound};

const PICTURE: &[u8] = b"\x89PNG\r\n\x1a\n not really a picture \x00\xff";

/// A bridge on `relay` with one WhatsApp endpoint, a test channel.
async fn bridge_on(relay: &EmulatedRelay) -> (common::TestDaemon, Arc<TestChannel>) {
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    (bridge, wa)
}

/// Save `bytes` through the channel's sink, as an adapter does with a file
/// it received.
async fn save(wa: &TestChannel, bytes: &[u8], filename: &str) -> Attachment {
    wa.sink()
        .await
        .save_media(MediaUpload {
            content_type: Some("image/png".into()),
            filename: Some(filename.into()),
            bytes: bytes.to_vec(),
        })
        .await
        .expect("the file is kept")
}

/// A WhatsApp message carrying `attachment`.
fn with_file(external_id: &str, text: &str, attachment: Attachment) -> ChannelEvent {
    let ChannelEvent::Inbound(mut message) = wa_inbound("+15551230001", external_id, text, &[])
    else {
        unreachable!()
    };
    message.attachments = vec![attachment];
    ChannelEvent::Inbound(message)
}

/// `wa` receives a message carrying `attachment`; returns once the relay
/// has it (its first message).
async fn forward_one(
    relay: &EmulatedRelay,
    wa: &TestChannel,
    external_id: &str,
    text: &str,
    attachment: Attachment,
) {
    wa.inject(with_file(external_id, text, attachment))
        .await
        .unwrap();
    relay
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
}

/// The URL the emulated relay gives the first file it takes.
const FIRST_RELAY_URL: &str = "https://relay.test/files/1";

/// The URL of the first attachment of a message the relay received.
fn first_file_url(body: &serde_json::Value) -> &serde_json::Value {
    &body["attachments"][0]["url"]
}

/// A message with `attachment` from one sender, then a plain one from
/// another (whose conversation a held file must not hold up).
async fn file_then_plain(
    wa: &TestChannel,
    attachment: Attachment,
    file_id: &str,
    text: &str,
    plain_id: &str,
) {
    wa.inject(with_file(file_id, text, attachment))
        .await
        .unwrap();
    wa.inject(wa_inbound("+15551230002", plain_id, "plain text", &[]))
        .await
        .unwrap();
}

fn media_id(attachment: &Attachment) -> String {
    attachment
        .url
        .strip_prefix("/api/v1/media/")
        .expect("a bridge media path")
        .to_string()
}

#[tokio::test]
async fn a_file_is_uploaded_before_its_message_which_carries_the_relay_s_url() {
    let relay = EmulatedRelay::start().await;
    let (_bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "Grüße an Ann.png").await;
    forward_one(&relay, &wa, "f-1", "a picture", attachment.clone()).await;
    relay.with(|s| {
        assert_eq!(s.uploads.len(), 1, "uploaded once, before the message");
        let upload = &s.uploads[0];
        assert_eq!(upload.bytes, PICTURE);
        assert_eq!(upload.content_type.as_deref(), Some("image/png"));
        assert_eq!(upload.filename.as_deref(), Some("Grüße an Ann.png"));
        assert_eq!(
            upload.idempotency_key.as_deref(),
            Some(media_id(&attachment).as_str())
        );
        assert_eq!(upload.phone_id.as_deref(), Some(PHONE_ID));
        let sent = &s.messages[0].body["attachments"];
        assert_eq!(
            sent,
            &serde_json::json!([{
                "url": "https://relay.test/files/1",
                "content_type": "image/png",
                "filename": "Grüße an Ann.png",
                "size": PICTURE.len(),
            }])
        );
        assert!(
            s.messages[0].body["origin"]["missing_attachments"].is_null(),
            "{}",
            s.messages[0].body
        );
        assert!(!s.refused.contains(&"media"), "{:?}", s.refused);
    });
}

/// A file of several read chunks (64 KiB each) goes up as it is read from
/// disk, whole and with its length (not chunked): what the relay gets is
/// the file, byte for byte.
#[tokio::test]
async fn a_large_file_goes_up_whole_with_its_length() {
    let relay = EmulatedRelay::start().await;
    let (_bridge, wa) = bridge_on(&relay).await;
    let film: Vec<u8> = (0..200_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let attachment = save(&wa, &film, "film.bin").await;
    forward_one(&relay, &wa, "f-big", "a film", attachment).await;
    relay.with(|s| {
        let upload = &s.uploads[0];
        assert_eq!(upload.bytes.len(), film.len());
        assert!(upload.bytes == film, "the relay got other bytes");
        assert_eq!(upload.content_length.as_deref(), Some("200003"));
        assert_eq!(upload.transfer_encoding, None);
    });
}

/// The file is refused twice (503), then taken; the message is then
/// refused for a while: it is sent again with the recorded URL, and the
/// file is not uploaded again. The message arrives once.
#[tokio::test]
async fn an_upload_answered_503_is_tried_again_until_taken_and_the_message_arrives_once() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.fail_media_times = 2;
        s.hold_marked = Some(503);
    });
    let (bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    wa.inject(with_file("f-2", "HOLD after two failures", attachment))
        .await
        .unwrap();

    relay
        .wait_for("the message tried three times", |s| s.message_attempts >= 3)
        .await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 3, "two refused, one taken, no more");
        assert_eq!(s.uploads.len(), 1);
        // The message never went while its file was not taken.
        for body in &s.message_attempt_bodies {
            assert_eq!(first_file_url(body), FIRST_RELAY_URL, "{body}");
        }
    });
    relay.with(|s| s.hold_marked = None);
    relay
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
    bridge
        .wait_link("nothing pending or dead", |l| {
            l["inbound_pending"] == 0 && l["inbound_dead"] == 0
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 3);
        assert_eq!(s.message_posts_taken, 1);
        assert_eq!(s.messages.len(), 1);
        assert_eq!(first_file_url(&s.messages[0].body), FIRST_RELAY_URL);
    });
}

/// The bridge stops after the relay took the file and before it took the
/// message: the next run sends the message with the recorded URL, and
/// does not upload the file again.
#[tokio::test]
async fn after_a_restart_between_upload_and_message_the_file_is_not_uploaded_again() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.hold_marked = Some(503));
    let (bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    wa.inject(with_file(
        "f-3",
        "HOLD until the restart",
        attachment.clone(),
    ))
    .await
    .unwrap();
    relay
        .wait_for("the file and a refused message", |s| {
            s.uploads.len() == 1 && s.message_attempts >= 1
        })
        .await;
    let recorded = bridge
        .store()
        .get_media(&media_id(&attachment))
        .await
        .unwrap()
        .expect("the row");
    assert_eq!(recorded.relay_url.as_deref(), Some(FIRST_RELAY_URL));

    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = bridge.restart(vec![wa.clone()]).await;
    relay.with(|s| s.hold_marked = None);
    relay
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 1, "the file went once");
        assert_eq!(first_file_url(&s.messages[0].body), FIRST_RELAY_URL);
    });
    drop(bridge);
}

/// A file the relay refuses for good (413: too large for it) is left out
/// and named in `origin.refused_attachments`: the text still reaches the
/// user, nothing becomes a dead letter, and the bridge keeps its copy.
#[tokio::test]
async fn a_file_the_relay_refuses_is_left_out_and_named_in_its_message() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_media = Some(413));
    let (bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "huge.png").await;
    let id = media_id(&attachment);
    file_then_plain(&wa, attachment, "f-4", "too big for the relay", "f-5").await;

    relay
        .wait_for("both messages", |s| s.messages.len() == 2)
        .await;
    relay.with(|s| {
        let body = &s.messages[0].body;
        assert_eq!(body["text"], "too big for the relay", "{body}");
        assert_eq!(body["attachments"], serde_json::json!([]), "{body}");
        assert_eq!(
            body["origin"]["refused_attachments"],
            serde_json::json!([{
                "media_id": id,
                "filename": "huge.png",
                "content_type": "image/png",
                "size": PICTURE.len(),
                "code": "relay_http_413",
                "message": "emulated refusal of a file",
            }]),
            "{body}"
        );
        assert!(
            body["origin"].get("missing_attachments").is_none(),
            "{body}"
        );
        let plain = &s.messages[1].body;
        assert_eq!(plain["text"], "plain text");
        assert!(
            plain["origin"].get("refused_attachments").is_none(),
            "{plain}"
        );
        assert_eq!(s.upload_attempts, 1, "a refused file is not tried again");
    });
    let link = bridge
        .wait_link("both forwarded", |l| l["inbound_pending"] == 0)
        .await;
    assert_eq!(link["inbound_dead"], 0, "{link}");
    let kept = bridge
        .http
        .get(format!("{}/api/v1/media/{id}", bridge.base))
        .bearer_auth(&bridge.admin_key)
        .send()
        .await
        .expect("request");
    assert_eq!(kept.status(), 200);
    assert_eq!(
        kept.bytes().await.unwrap().as_ref(),
        PICTURE,
        "the bridge keeps its copy"
    );
}

/// A relay that takes a file but answers without a URL (`200 OK` in
/// plain text): the file is left out, named with `relay_bad_answer`, and
/// the message goes; trying again would get the same answer.
#[tokio::test]
async fn a_file_taken_without_a_url_is_left_out_and_its_message_goes() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.plain_ok = true);
    let (bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    wa.inject(with_file("f-9", "a picture", attachment))
        .await
        .unwrap();
    bridge
        .wait_link("forwarded", |l| l["inbound_pending"] == 0)
        .await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 1, "not tried again");
        let body = &s.messages[0].body;
        assert_eq!(body["attachments"], serde_json::json!([]), "{body}");
        let refused = &body["origin"]["refused_attachments"][0];
        assert_eq!(refused["code"], "relay_bad_answer", "{body}");
        assert_eq!(refused["filename"], "cat.png", "{body}");
    });
}

/// A file the bridge no longer has (a restored backup holds none) and the
/// relay never got: the message goes without it, and says so.
#[tokio::test]
async fn a_message_whose_file_is_gone_goes_without_it_and_says_so() {
    let relay = EmulatedRelay::start().await;
    let (bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "lost.png").await;
    let file = bridge
        .dir
        .path()
        .join("state/media")
        .join(media_id(&attachment));
    assert!(file.is_file());
    std::fs::remove_file(&file).unwrap();
    forward_one(&relay, &wa, "f-6", "the file is gone", attachment).await;
    relay.with(|s| {
        let body = &s.messages[0].body;
        assert_eq!(body["attachments"], serde_json::json!([]), "{body}");
        assert_eq!(body["origin"]["missing_attachments"], 1, "{body}");
        assert_eq!(s.upload_attempts, 0);
    });
}

/// A relay older than the bridge has no `{media}` route (404): the message
/// with a file waits, its conversation with it, but the link is not taken
/// for down: another sender's message without a file goes on. Once the
/// relay takes files, the held one goes, with its file.
#[tokio::test]
async fn a_relay_without_a_media_route_holds_only_that_conversation() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_media = Some(404));
    let (_bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    file_then_plain(&wa, attachment, "f-7", "a picture", "f-8").await;
    relay
        .wait_for("the plain message and tried uploads", |s| {
            s.messages.len() == 1 && s.upload_attempts >= 2
        })
        .await;
    relay.with(|s| {
        assert_eq!(s.messages[0].body["text"], "plain text");
        s.refuse_media = None;
    });
    relay
        .wait_for("the message with its file", |s| s.messages.len() == 2)
        .await;
    relay.with(|s| {
        assert_eq!(s.messages[1].body["text"], "a picture");
        assert_eq!(first_file_url(&s.messages[1].body), FIRST_RELAY_URL);
    });
}

/// A kept file that cannot be read (here a link that loops: root reads
/// any file whatever its mode) holds back its own conversation only, and
/// goes once it can be read again.
#[tokio::test]
async fn an_unreadable_file_holds_only_its_conversation() {
    let relay = EmulatedRelay::start().await;
    let (bridge, wa) = bridge_on(&relay).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    let file = bridge
        .dir
        .path()
        .join("state/media")
        .join(media_id(&attachment));
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&file, &file).unwrap();
    file_then_plain(&wa, attachment, "f-9", "a picture", "f-10").await;
    relay
        .wait_for("the plain message", |s| s.messages.len() == 1)
        .await;
    let link = bridge
        .wait_link("the held message retried", |l| l["inbound_pending"] == 1)
        .await;
    assert_eq!(link["inbound_dead"], 0, "{link}");
    relay.with(|s| assert_eq!(s.upload_attempts, 0));

    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, PICTURE).unwrap();
    relay
        .wait_for("the message with its file", |s| s.messages.len() == 2)
        .await;
    relay.with(|s| {
        assert_eq!(s.messages[1].body["text"], "a picture");
        assert_eq!(s.uploads[0].bytes, PICTURE);
    });
}

/// The file went to one relay, its message not yet; then the bridge is
/// pointed at another relay: that one gets the file too (its own URL in
/// the message), not the first relay's URL.
#[tokio::test]
async fn after_a_move_to_another_relay_the_file_is_uploaded_to_that_one() {
    let first = EmulatedRelay::start().await;
    first.with(|s| s.hold_marked = Some(503));
    let (bridge, wa) = bridge_on(&first).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    wa.inject(with_file("f-11", "HOLD until the move", attachment))
        .await
        .unwrap();
    first
        .wait_for("the file and a refused message", |s| {
            s.uploads.len() == 1 && s.message_attempts >= 1
        })
        .await;

    let second = EmulatedRelay::start().await;
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let config = format!(
        "{}{}",
        common::FAST_OUTBOX,
        second.bridge_config("push", Some("ops"))
    );
    let bridge = bridge.restart_with(&config, vec![wa.clone()]).await;
    second
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
    second.with(|s| {
        assert_eq!(s.uploads.len(), 1, "the second relay got the file");
        assert_eq!(s.uploads[0].bytes, PICTURE);
        assert_eq!(first_file_url(&s.messages[0].body), FIRST_RELAY_URL);
    });
    drop(bridge);
}

/// An upload that runs past its timeout every time (a relay reading it
/// slowly) holds back its own conversation only: a later plain message
/// from another sender still goes, and the file's message goes once the
/// upload is quick enough again. Held as the relay unreachable, every
/// message waited behind it, and after each backoff the upload, tried
/// first again, timed out again: nothing was ever forwarded.
#[tokio::test]
async fn an_upload_past_its_timeout_holds_back_its_conversation_only() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.slow_media_ms = 5_000);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    // The upload's timeout: the request timeout, as the file is small.
    let config = relay
        .bridge_config("push", Some("ops"))
        .replace("request_timeout_seconds = 3", "request_timeout_seconds = 1");
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let attachment = save(&wa, PICTURE, "slow.png").await;
    file_then_plain(&wa, attachment, "f-slow", "a slow picture", "p-1").await;

    relay
        .wait_for("the plain message", |s| s.messages.len() == 1)
        .await;
    relay.with(|s| {
        assert_eq!(s.messages[0].body["text"], "plain text");
        assert!(s.upload_attempts >= 1, "the file was never tried");
    });
    let held = bridge
        .wait_link("the file's message pending", |l| l["inbound_pending"] == 1)
        .await;
    assert_eq!(held["inbound_dead"], 0, "{held}");

    relay.with(|s| s.slow_media_ms = 0);
    relay
        .wait_for("the file's message", |s| s.messages.len() == 2)
        .await;
    relay.with(|s| {
        let body = &s.messages[1].body;
        assert_eq!(body["text"], "a slow picture");
        assert!(
            body["attachments"][0]["url"]
                .as_str()
                .is_some_and(|url| url.starts_with("https://relay.test/files/")),
            "{body}"
        );
    });
}

/// `relay`'s bridge config, giving a file up after `tries` failed uploads.
fn giving_up_after(relay: &EmulatedRelay, tries: u32) -> String {
    relay.bridge_config("push", Some("ops")).replace(
        "request_timeout_seconds = 3",
        &format!("request_timeout_seconds = 3\nupload_give_up_after = {tries}"),
    )
}

/// What `origin.not_uploaded_attachments` says of `attachment` (saved as
/// `filename` from `PICTURE`) given up after `tries` failures, the last
/// with `code`.
fn not_uploaded_entry(
    attachment: &Attachment,
    filename: &str,
    tries: u32,
    code: &str,
) -> serde_json::Value {
    serde_json::json!([{
        "media_id": media_id(attachment),
        "filename": filename,
        "content_type": "image/png",
        "size": PICTURE.len(),
        "code": "not_uploaded",
        "message": format!(
            "could not be uploaded to the relay: {tries} tries failed, the last with {code}"
        ),
    }])
}

/// A relay that answers every upload 503: after `upload_give_up_after`
/// failures the message goes without the file, which it names as not
/// uploaded (not as refused); the give-up is counted once, and the bridge
/// keeps the file. The message's POST, held back a while after that,
/// goes again byte for byte though uploads work by then: the body was
/// fixed with the file left out.
#[tokio::test]
async fn a_file_whose_uploads_always_fail_is_given_up_and_its_message_goes_without_it() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| {
        s.fail_media_times = u32::MAX;
        s.hold_marked = Some(503);
    });
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = common::start_bridge(&giving_up_after(&relay, 3), RELAY_KEY, &wa).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    wa.inject(with_file("f-up-1", "HOLD a picture", attachment.clone()))
        .await
        .unwrap();
    relay
        .wait_for("the message POSTed twice", |s| s.message_attempts >= 2)
        .await;
    relay.with(|s| {
        s.fail_media_times = 0;
        s.hold_marked = None;
    });
    relay
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 3, "three tries, then none");
        assert!(s.uploads.is_empty());
        let body = &s.messages[0].body;
        assert_eq!(body["attachments"], serde_json::json!([]), "{body}");
        assert_eq!(
            body["origin"]["not_uploaded_attachments"],
            not_uploaded_entry(&attachment, "cat.png", 3, "relay_http_503"),
            "{body}"
        );
        assert!(
            body["origin"].get("refused_attachments").is_none(),
            "{body}"
        );
        for attempt in &s.message_attempt_bodies {
            assert_eq!(attempt, body, "a repeat sent another body");
        }
    });
    let metrics = bridge.metrics_text().await;
    assert!(
        metrics.contains(&format!(
            "phonerelay_relay_uploads_given_up_total{{phone_id=\"{PHONE_ID}\"}} 1"
        )),
        "{metrics}"
    );
    let (code, _) = bridge
        .get(
            &format!("/api/v1/media/{}", media_id(&attachment)),
            &bridge.admin_key,
        )
        .await;
    assert_eq!(code, 200, "the bridge keeps its copy");
}

/// An upload that runs past its timeout every time is given up on too,
/// and its message goes, the file named as not uploaded.
#[tokio::test]
async fn a_file_whose_uploads_always_time_out_is_given_up_and_its_message_goes() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.slow_media_ms = 5_000);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let config = giving_up_after(&relay, 2)
        .replace("request_timeout_seconds = 3", "request_timeout_seconds = 1");
    let _bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let attachment = save(&wa, PICTURE, "slow.png").await;
    forward_one(&relay, &wa, "f-up-2", "a slow picture", attachment.clone()).await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 2);
        let body = &s.messages[0].body;
        assert_eq!(body["attachments"], serde_json::json!([]), "{body}");
        assert_eq!(
            body["origin"]["not_uploaded_attachments"],
            not_uploaded_entry(&attachment, "slow.png", 2, "relay_timeout"),
            "{body}"
        );
    });
}

/// Uploads that fail fewer times than the bound: the file goes, and the
/// message carries it.
#[tokio::test]
async fn an_upload_failure_that_clears_before_the_bound_still_uploads_the_file() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.fail_media_times = 2);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&giving_up_after(&relay, 3), RELAY_KEY, &wa).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    forward_one(&relay, &wa, "f-up-3", "a picture", attachment).await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 3);
        let body = &s.messages[0].body;
        assert_eq!(first_file_url(body), FIRST_RELAY_URL, "{body}");
        assert!(
            body["origin"].get("not_uploaded_attachments").is_none(),
            "{body}"
        );
    });
}

/// The failed uploads are counted with the file, so a restart does not
/// start the count again: two failures before it, one after, and the
/// file is given up on.
#[tokio::test]
async fn failed_uploads_counted_before_a_restart_count_after_it() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.fail_media_times = u32::MAX);
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    // A backoff slow enough that the restart comes before the third try.
    let config = giving_up_after(&relay, 3)
        .replace("retry_initial_ms = 40", "retry_initial_ms = 20000")
        .replace("retry_max_ms = 250", "retry_max_ms = 20000");
    let bridge = common::start_bridge(&config, RELAY_KEY, &wa).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    wa.inject(with_file("f-up-4", "a picture", attachment.clone()))
        .await
        .unwrap();
    let id = media_id(&attachment);
    let failures = |bridge: &common::TestDaemon| {
        let store = bridge.store();
        let id = id.clone();
        async move {
            let record = store.get_media(&id).await.unwrap().expect("the row");
            record.upload_failures.map_or(0, |f| f.count)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while failures(&bridge).await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The link's start tries what waits at once: the second try.
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge = bridge.restart(vec![wa.clone()]).await;
    while failures(&bridge).await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second failure");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = bridge.restart(vec![wa.clone()]).await;
    relay
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 3, "one try after each start");
        let body = &s.messages[0].body;
        assert_eq!(
            body["origin"]["not_uploaded_attachments"],
            not_uploaded_entry(&attachment, "cat.png", 3, "relay_http_503"),
            "{body}"
        );
    });
}

/// A relay that never gets a `{media}` route (older than the bridge, not
/// upgraded): after `upload_give_up_after` uploads answered 404 the
/// message goes without its file, named as not uploaded, instead of
/// holding its conversation for good.
#[tokio::test]
async fn a_relay_that_never_gets_a_media_route_has_the_message_without_its_file() {
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.refuse_media = Some(404));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let _bridge = common::start_bridge(&giving_up_after(&relay, 3), RELAY_KEY, &wa).await;
    let attachment = save(&wa, PICTURE, "cat.png").await;
    wa.inject(with_file("f-nr-1", "a picture", attachment.clone()))
        .await
        .unwrap();
    relay
        .wait_for("the message", |s| s.messages.len() == 1)
        .await;
    relay.with(|s| {
        assert_eq!(s.upload_attempts, 3, "three tries, then none");
        let body = &s.messages[0].body;
        assert_eq!(body["text"], "a picture", "{body}");
        assert_eq!(body["attachments"], serde_json::json!([]), "{body}");
        assert_eq!(
            body["origin"]["not_uploaded_attachments"],
            not_uploaded_entry(&attachment, "cat.png", 3, "relay_http_404"),
            "{body}"
        );
    });
}
