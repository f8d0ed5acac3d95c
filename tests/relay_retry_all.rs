//! `phonerelay inbound retry --all`, run as the real binary on the store
//! of a daemon running in this process, against the emulated relay.

mod common;
mod relay_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::TestChannel;
use phonerelay::store::RelayInboundState;
use phonerelay_channel::ChannelKind;
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY, wa_inbound};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `phonerelay --config CONFIG inbound ARGS`, off the runtime's threads:
/// the daemon it talks beside runs on them.
async fn inbound_cli(config: &Path, args: &[&str]) -> Output {
    let mut all: Vec<String> = ["--config", config.to_str().unwrap(), "inbound"]
        .map(String::from)
        .to_vec();
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        support::process::run(&all)
    })
    .await
    .unwrap()
}

/// A config for the CLI naming the state dir of `bridge`.
fn cli_config(bridge: &common::TestDaemon) -> PathBuf {
    let path = bridge.dir.path().join("cli.toml");
    let state_dir = bridge.db_path().parent().unwrap().to_path_buf();
    std::fs::write(
        &path,
        format!("[storage]\nstate_dir = \"{}\"\n", state_dir.display()),
    )
    .unwrap();
    path
}

/// A bridge linked to `relay` with three dead letters: "REJECT one" and
/// "REJECT three" refused with 422, "HOLD two" with 400; the relay then
/// takes everything. Their ids, in that order.
struct ThreeDead {
    relay: EmulatedRelay,
    bridge: common::TestDaemon,
    _wa: std::sync::Arc<TestChannel>,
    one: String,
    two: String,
    three: String,
}

async fn three_dead_letters() -> ThreeDead {
    let relay = EmulatedRelay::start().await;
    // "REJECT" refused with 422 (`reject_marked`), "HOLD" with 400.
    relay.with(|s| s.hold_marked = Some(400));
    let wa = TestChannel::new(ChannelKind::Wa, PHONE_ID);
    let bridge =
        common::start_bridge(&relay.bridge_config("push", Some("ops")), RELAY_KEY, &wa).await;
    for (i, words) in ["REJECT one", "HOLD two", "REJECT three"]
        .iter()
        .enumerate()
    {
        let from = format!("+1555123000{i}");
        wa.inject(wa_inbound(&from, &format!("d-{i}"), words, &[]))
            .await
            .unwrap();
    }
    bridge
        .wait_link("three dead letters", |l| l["inbound_dead"] == 3)
        .await;
    let dead = bridge
        .store()
        .list_relay_inbound(RelayInboundState::Dead, None, None, 10)
        .await
        .unwrap();
    let id_of = |words: &str| {
        let letter = dead.iter().find(|r| r.inbound.text == words).unwrap();
        letter.inbound.id.clone()
    };
    let (one, two, three) = (
        id_of("REJECT one"),
        id_of("HOLD two"),
        id_of("REJECT three"),
    );
    relay.with(|s| {
        s.reject_marked = false;
        s.hold_marked = None;
    });
    ThreeDead {
        relay,
        bridge,
        _wa: wa,
        one,
        two,
        three,
    }
}

/// The two letters a retry by code took are delivered, and only the third
/// is left dead.
async fn two_delivered_one_dead(relay: &EmulatedRelay, bridge: &common::TestDaemon) {
    relay
        .wait_for("the two requeued", |s| s.messages.len() == 2)
        .await;
    bridge
        .wait_link("nothing pending, one dead", |l| {
            l["inbound_pending"] == 0 && l["inbound_dead"] == 1
        })
        .await;
}

/// Three dead letters, two refused with one code: `--all --code` puts
/// exactly those two back, each under a key of its own, and the
/// forwarder delivers each once; run again, it finds none, as they are
/// no longer dead, and the third is left as it was.
#[tokio::test]
async fn retry_all_with_a_code_requeues_exactly_its_dead_letters_and_each_goes_once() {
    let ThreeDead {
        relay,
        bridge,
        _wa,
        one,
        two,
        three,
    } = three_dead_letters().await;
    let config = cli_config(&bridge);
    let retry = ["retry", "--all", "--code", "relay_http_422"];
    let out = inbound_cli(&config, &retry).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert_eq!(
        said,
        format!(
            "{one} queued for the relay again\n{three} queued for the relay again\n\
             2 dead letters queued for the relay again\n"
        )
    );

    two_delivered_one_dead(&relay, &bridge).await;
    let mut keys: Vec<String> = relay
        .messages()
        .into_iter()
        .map(|m| m.idempotency_key.unwrap())
        .collect();
    keys.sort();
    let mut expected = [format!("{one}:retry1"), format!("{three}:retry1")];
    expected.sort();
    assert_eq!(keys, expected);

    let again = inbound_cli(&config, &retry).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), "no dead letters matched\n");
    let left = bridge
        .store()
        .get_relay_inbound(&two)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.state, RelayInboundState::Dead);
    assert_eq!(left.manual_retries, 0);
    // Each REJECT refused once, then taken once.
    assert_eq!(relay.with(|s| s.message_posts_taken), 4);
}

/// `--all` with an id or `--to`, a filter without `--all`, and filters
/// that cannot match are usage errors naming the flag (exit 2), judged
/// before the store is opened.
#[test]
fn retry_all_refuses_an_id_to_and_bad_filters_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonerelay.toml");
    std::fs::write(&config, "[storage]\nstate_dir = \"state\"\n").unwrap();
    let config = config.to_str().unwrap();
    let id = "0194f0c2-7a4e-7000-8000-000000000001";
    let cases: [(&[&str], &str); 8] = [
        (&["retry", id, "--all"], "--all"),
        (&["retry", id, "--code", "relay_http_422"], "--code"),
        (&["retry", "--all", "--to", "alice"], "--to"),
        (&["retry", "--code", "relay_http_422"], "--all"),
        (&["retry"], "--all"),
        (&["retry", "--all", "--since", "yesterday"], "--since"),
        (&["retry", "--all", "--code", "HTTP 422"], "--code"),
        (&["retry", "--all", "--channel", "pigeon"], "--channel"),
    ];
    for (args, flag) in cases {
        let out = support::process::run(&[&["--config", config, "inbound"], args].concat());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} does not name {flag}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!dir.path().join("state").exists(), "a store was made");
}

/// `POST /api/v1/relay/inbound/retry`: filters that cannot match, a key
/// without the send scope, and a key bound to another phone are refused
/// (the field named) with every letter left dead; a key bound to another
/// phone takes none of this phone's; `{"code"}` requeues exactly its two,
/// each delivered once, and a repeat finds none.
#[tokio::test]
async fn the_api_requeues_the_dead_letters_a_code_matches_and_refuses_bad_filters() {
    use phonerelay::store::Scope;
    use serde_json::json;

    let ThreeDead {
        relay,
        bridge,
        _wa,
        one,
        two,
        three,
    } = three_dead_letters().await;
    const PATH: &str = "/api/v1/relay/inbound/retry";
    let store = bridge.store();
    let reader = common::create_key(&*store, vec![Scope::Read], None).await;
    let elsewhere = common::create_key(&*store, vec![Scope::Send], Some("sim-other")).await;

    let refused = [
        (&bridge.admin_key, json!({"code": "HTTP 422"}), 422, "code"),
        (
            &bridge.admin_key,
            json!({"since": "yesterday"}),
            422,
            "since",
        ),
        (
            &bridge.admin_key,
            json!({"channel": "pigeon"}),
            422,
            "channel",
        ),
        (
            &bridge.admin_key,
            json!({"channel": "pchat"}),
            422,
            "channel",
        ),
        (&bridge.admin_key, json!({"to": "ops"}), 422, "to"),
        (&reader, json!({}), 403, "Authorization"),
        (&elsewhere, json!({"phone_id": PHONE_ID}), 403, "phone_id"),
    ];
    for (key, body, status, field) in refused {
        let (code, answer) = bridge.post(PATH, key, &body).await;
        assert_eq!(code, status, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    // A key that cannot send hears 403 whatever it sent: its body is not
    // read (as for the send), on either retry.
    for path in [PATH.to_string(), format!("/api/v1/inbound/{one}/retry")] {
        let answer = bridge
            .http
            .post(format!("{}{path}", bridge.base))
            .bearer_auth(&reader)
            .header("content-type", "text/plain")
            .body("{")
            .send()
            .await
            .unwrap();
        let (code, answer) = common::into_parts(answer).await;
        assert_eq!(code, 403, "{path}: {answer}");
        assert_eq!(
            answer["error"]["field"], "Authorization",
            "{path}: {answer}"
        );
    }
    let (code, answer) = bridge.post(PATH, &elsewhere, &json!({})).await;
    assert_eq!((code, &answer["requeued"]), (200, &json!([])), "{answer}");
    let link = bridge
        .wait_link("still dead", |l| l["inbound_dead"] == 3)
        .await;
    assert_eq!(link["inbound_pending"], 0, "{link}");

    let by_code =
        json!({"code": "relay_http_422", "channel": "wa", "since": "2020-01-01T00:00:00Z"});
    let (code, answer) = bridge.post(PATH, &bridge.admin_key, &by_code).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["requeued"], json!([one, three]), "{answer}");
    two_delivered_one_dead(&relay, &bridge).await;
    let (code, again) = bridge.post(PATH, &bridge.admin_key, &by_code).await;
    assert_eq!((code, &again["requeued"]), (200, &json!([])), "{again}");
    let left = store.get_relay_inbound(&two).await.unwrap().unwrap();
    assert_eq!(left.state, RelayInboundState::Dead);
}
