//! `phonerelay pair`, `pair --status` and `unpair`, run as the real binary
//! against the emulated relay: success, and each error an admin meets.

mod relay_support;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use phonerelay::store::{SqliteStore, Store};
use relay_support::{EmulatedRelay, PHONE_ID, RELAY_KEY};
use support::process::run_with_stdin;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A config with one endpoint, a modem with the relay's `PHONE_ID`.
fn write_config(dir: &Path) -> std::path::PathBuf {
    write_config_with_endpoints(dir, &[PHONE_ID])
}

/// A config whose endpoints (modems, never started by `pair`) have these
/// phone_ids.
fn write_config_with_endpoints(dir: &Path, phone_ids: &[&str]) -> std::path::PathBuf {
    let path = dir.join("phonerelay.toml");
    let mut text = format!(
        "[storage]\nstate_dir = \"{}\"\n",
        dir.join("state").display()
    );
    for phone_id in phone_ids {
        text.push_str(&format!(
            "[[channels.sms.modems]]\nphone_id = \"{phone_id}\"\ndevice = \"sim\"\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Run the binary off the async runtime, the key on stdin.
async fn phonerelay(config: &Path, args: &[&str], stdin: &str) -> Run {
    let mut all = vec!["--config".to_string(), config.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run_with_stdin(&args, &stdin);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    })
    .await
    .unwrap()
}

fn assert_one_line_error(run: &Run, code: i32, needle: &str) {
    assert_eq!(run.code, code, "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {:?}", run.stderr);
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
    assert!(!run.stderr.contains(RELAY_KEY) && !run.stdout.contains(RELAY_KEY));
}

#[tokio::test]
async fn pair_checks_the_key_stores_it_privately_and_issues_the_bridge_key() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        &format!("{RELAY_KEY}\n"),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains(RELAY_KEY) && !run.stdout.contains(RELAY_KEY));
    assert!(!run.stderr.contains("no endpoint"), "{}", run.stderr);
    let bridge_key = run.stdout.trim().to_string();
    assert!(bridge_key.starts_with("prk_"), "{bridge_key}");
    assert_eq!(relay.with(|s| s.hellos.len()), 1);

    let key_file = dir.path().join("state").join("relay.key");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        RELAY_KEY
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The bridge key is stored hashed, bound to the phone_id, send+read.
    let (key_id, secret) = phonerelay::keys::parse(&bridge_key).unwrap();
    let store = SqliteStore::open(&dir.path().join("state").join("phonerelay.sqlite3")).unwrap();
    let record = store.find_key(key_id).await.unwrap().unwrap();
    assert!(phonerelay::keys::verify(&record, secret));
    assert_eq!(record.phone_id.as_deref(), Some(PHONE_ID));
    assert!(record.allows(phonerelay::store::Scope::Send));
    assert!(!record.allows(phonerelay::store::Scope::Admin));
    // The relay's last error, its words: shown on one line, no escape.
    store
        .save_cursor(
            "relay",
            "link",
            &serde_json::json!({
                "last_reached_ms": 1_800_000_000_000_i64,
                "last_error": "refused\u{1b}[2J\nbridge key:  x (active)",
                "last_error_at_ms": 1_800_000_000_000_i64,
            })
            .to_string(),
        )
        .await
        .unwrap();
    drop(store);

    let status = phonerelay(&config, &["pair", "--status"], "").await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains(&relay.url()));
    assert!(
        status.stdout.contains("last reached: 20"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("mode 600"), "{}", status.stdout);
    assert!(!status.stdout.contains(RELAY_KEY));
    assert!(
        !status.stdout.contains('\u{1b}'),
        "an escape reached the terminal: {:?}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("last error:  refused [2J bridge key: x (active)"),
        "{}",
        status.stdout
    );
    assert_eq!(
        status
            .stdout
            .lines()
            .filter(|l| l.starts_with("bridge key:"))
            .count(),
        1,
        "{}",
        status.stdout
    );

    let unpair = phonerelay(&config, &["unpair"], "").await;
    assert_eq!(unpair.code, 0, "{}", unpair.stderr);
    assert!(!key_file.exists());
    let store = SqliteStore::open(&dir.path().join("state").join("phonerelay.sqlite3")).unwrap();
    let record = store.find_key(key_id).await.unwrap().unwrap();
    assert!(
        record.revoked_at_ms.is_some(),
        "the bridge key was not revoked"
    );
    drop(store);
    let status = phonerelay(&config, &["pair", "--status"], "").await;
    assert_one_line_error(&status, 2, "not paired");
}

/// A relay.url with a password in it is never printed: `pair` refuses the
/// `[relay]` the daemon would refuse (naming the key, not the value) and
/// changes nothing; `pair --status` shows the URL with its user and
/// password masked.
#[tokio::test]
async fn a_password_in_the_configs_relay_url_is_never_printed() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let plain = std::fs::read_to_string(&config).unwrap();
    let with_password = format!(
        "{plain}[relay]\nurl = \"https://bridge:s3cret@relay.invalid\"\nphone_id = \"{PHONE_ID}\"\n"
    );
    std::fs::write(&config, &with_password).unwrap();
    let pair = ["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID];
    let refused = phonerelay(&config, &pair, RELAY_KEY).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("relay.url: must be an http:// or https:// URL")
            && refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("s3cret") && !refused.stdout.contains("s3cret"));
    assert!(
        !dir.path().join("state").exists(),
        "the refused pair made a store"
    );

    // Paired under a valid config, then the password put in: `--status`.
    std::fs::write(&config, &plain).unwrap();
    let paired = phonerelay(&config, &pair, RELAY_KEY).await;
    assert_eq!(paired.code, 0, "{}", paired.stderr);
    std::fs::write(&config, &with_password).unwrap();
    let status = phonerelay(&config, &["pair", "--status"], "").await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status
            .stdout
            .contains("relay:       https://****@relay.invalid\n"),
        "{}",
        status.stdout
    );
    assert!(!status.stderr.contains("s3cret") && !status.stdout.contains("s3cret"));
}

/// The config's relay.phone_id wins over the pairing's: `pair` says so.
#[tokio::test]
async fn pair_notes_a_phone_id_the_config_overrides() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[relay]\nphone_id = \"sim-1\"\n");
    std::fs::write(&config, text).unwrap();
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "note: relay.phone_id in the config (\"sim-1\") overrides this pairing's phone_id"
        ),
        "{}",
        run.stderr
    );
}

/// The bridge key is bound to the phone_id: with no endpoint of it, every
/// send the relay pushes would be refused. `pair` refuses before it asks
/// the relay or writes anything, and names the phone_ids there are.
#[tokio::test]
async fn pair_refuses_a_phone_id_no_endpoint_has_with_exit_2() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with_endpoints(dir.path(), &["modem-1", "modem-2"]);
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(
        &run,
        2,
        &format!("no endpoint with phone_id {PHONE_ID:?} is configured"),
    );
    assert!(
        run.stderr
            .contains("(configured phone_ids: \"modem-1\", \"modem-2\")")
            && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    assert_eq!(relay.with(|s| s.hellos.len()), 0, "the relay was asked");
    assert!(
        !dir.path().join("state").exists(),
        "the refused pair made a store"
    );

    let none = write_config_with_endpoints(dir.path(), &[]);
    let run = phonerelay(
        &none,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(&run, 2, "(configured phone_ids: none)");
}

/// `--force` pairs before the modem's config is written, and says the
/// relay's sends are refused until it is.
#[tokio::test]
async fn pair_with_force_pairs_a_phone_id_no_endpoint_has_and_notes_it() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with_endpoints(dir.path(), &[]);
    let run = phonerelay(
        &config,
        &[
            "pair",
            "--relay",
            &relay.url(),
            "--phone-id",
            PHONE_ID,
            "--force",
        ],
        RELAY_KEY,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("note: no endpoint with phone_id {PHONE_ID:?}")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.trim().starts_with("prk_"), "{}", run.stdout);
    assert!(dir.path().join("state").join("relay.key").exists());
}

#[tokio::test]
async fn pair_with_a_key_file_and_a_wrong_key_is_rejected_with_exit_3() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "not-the-key\n").unwrap();
    let run = phonerelay(
        &config,
        &[
            "pair",
            "--relay",
            &relay.url(),
            "--phone-id",
            PHONE_ID,
            "--key-file",
            wrong.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_one_line_error(&run, 3, "rejected the key (HTTP 401)");
    assert!(!run.stderr.contains("not-the-key"));
    assert!(!dir.path().join("state").join("relay.key").exists());
}

#[tokio::test]
async fn pair_with_an_unknown_phone_id_is_rejected_with_exit_3() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A modem configured under a phone_id the relay does not know.
    let config = write_config_with_endpoints(dir.path(), &["ph-unknown"]);
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", "ph-unknown"],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(&run, 3, "does not know phone_id \"ph-unknown\" (HTTP 404)");
}

/// A 404 without the code `unknown_phone_id` says nothing of the
/// phone_id: the hello path is not there (a wrong prefix in --relay, a
/// wrong relay.paths.hello). A usage error, exit 2, naming the URL asked.
#[tokio::test]
async fn pair_with_no_bridge_api_at_the_url_fails_with_exit_2() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let prefixed = format!("{}/wrong-prefix", relay.url());
    let run = phonerelay(
        &config,
        &["pair", "--relay", &prefixed, "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(
        &run,
        2,
        &format!(
            "no bridge API at {prefixed}/api/v1/bridge/hello (404): \
             check --relay and relay.paths.hello"
        ),
    );
    assert!(
        !run.stderr.contains("does not know phone_id"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("state").join("relay.key").exists());

    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[relay.paths]\nhello = \"/api/v1/no-hello\"\n");
    std::fs::write(&config, text).unwrap();
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    let asked = format!("{}/api/v1/no-hello", relay.url());
    assert_one_line_error(&run, 2, &format!("no bridge API at {asked} (404)"));
}

#[tokio::test]
async fn pair_with_a_server_answering_hello_with_plain_text_fails_with_exit_1() {
    // Any web server answers 200; a relay answers hello with JSON.
    let relay = EmulatedRelay::start().await;
    relay.with(|s| s.plain_ok = true);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(&run, 1, "is this a pChat relay?");
    assert!(!dir.path().join("state").join("relay.key").exists());
}

#[tokio::test]
async fn pair_with_an_unreachable_relay_fails_with_exit_1() {
    let mut relay = EmulatedRelay::start().await;
    let url = relay.url();
    relay.down().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let run = phonerelay(
        &config,
        &["pair", "--relay", &url, "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(&run, 1, "cannot reach the relay");
}

#[tokio::test]
async fn pair_over_tls_to_a_plain_http_port_fails_with_exit_2() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let url = format!("https://{}", relay.addr);
    let run = phonerelay(
        &config,
        &["pair", "--relay", &url, "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(&run, 2, "TLS with the relay");
}

#[tokio::test]
async fn pair_without_a_key_or_with_a_bad_url_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let run = phonerelay(
        &config,
        &[
            "pair",
            "--relay",
            "http://127.0.0.1:9",
            "--phone-id",
            PHONE_ID,
        ],
        "",
    )
    .await;
    assert_one_line_error(&run, 2, "no relay key given");
    let run = phonerelay(
        &config,
        &["pair", "--relay", "relay.example", "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(&run, 2, "--relay must be an http");
    // A password in the URL would be printed and stored with the pairing.
    let run = phonerelay(
        &config,
        &[
            "pair",
            "--relay",
            "https://bridge:s3cret@relay.example",
            "--phone-id",
            PHONE_ID,
        ],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(&run, 2, "no user, password, query or fragment");
    assert!(
        !run.stderr.contains("s3cret") && !run.stdout.contains("s3cret"),
        "{}",
        run.stderr
    );
}

/// A relay.url in the config naming another relay would keep the link off
/// once paired: `pair` refuses before asking the relay or making a store.
/// The same relay written with a trailing `/` is the same relay.
#[tokio::test]
async fn pair_refuses_a_relay_other_than_the_configured_relay_url() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{base}[relay]\nurl = \"http://127.0.0.1:9/elsewhere\"\n"),
    )
    .unwrap();
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_one_line_error(
        &run,
        2,
        "relay.url in the config names http://127.0.0.1:9/elsewhere",
    );
    assert!(
        !dir.path().join("state").exists(),
        "the refused pair made a store"
    );

    std::fs::write(
        &config,
        format!("{base}[relay]\nurl = \"{}/\"\n", relay.url()),
    )
    .unwrap();
    let run = phonerelay(
        &config,
        &["pair", "--relay", &relay.url(), "--phone-id", PHONE_ID],
        RELAY_KEY,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(dir.path().join("state").join("relay.key").exists());
}

/// A bridge key nobody got (standard output on a full disk) is not left
/// active: the pairing is recorded, the key revoked, and the error says
/// to pair again.
#[tokio::test]
async fn a_bridge_key_that_cannot_be_shown_is_revoked() {
    let relay = EmulatedRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let url = relay.url();
    let config_arg = config.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = support::process::bin()
            .args([
                "--config",
                &config_arg,
                "pair",
                "--relay",
                &url,
                "--phone-id",
                PHONE_ID,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{RELAY_KEY}\n").as_bytes())
            .unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("is revoked: run `phonerelay pair` again"),
        "{said}"
    );
    let store = SqliteStore::open(&dir.path().join("state").join("phonerelay.sqlite3")).unwrap();
    let keys = store.list_keys().await.unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k.revoked_at_ms.is_some()),
        "an unshown bridge key is active"
    );
}
