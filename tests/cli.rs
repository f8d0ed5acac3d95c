//! The `phonerelay` command line, run as a child process.

mod support;

use std::fs;

use support::process::*;

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("phonerelay.toml");
    fs::write(&path, body).unwrap();
    path
}

/// A config in `dir` for a daemon on a free port with its state in
/// `dir/state`, and that port.
fn daemon_on_a_free_port(dir: &std::path::Path) -> (u16, std::path::PathBuf) {
    let port = free_port();
    let path = write_config(
        dir,
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nstate_dir = \"state\"\n"),
    );
    (port, path)
}

/// A daemon started on a config in `dir` (state in `dir/state`, a free
/// port) with one modem, `sim-1`, on `device` ("sim": the built-in
/// simulator); the config's path.
fn daemon_with_modem(dir: &std::path::Path, device: &str) -> (std::path::PathBuf, DaemonProcess) {
    let port = free_port();
    let path = write_config(
        dir,
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 2\n[storage]\nstate_dir = \"state\"\n[[channels.sms.modems]]\nphone_id = \"sim-1\"\ndevice = \"{device}\"\n"
        ),
    );
    let daemon = DaemonProcess::start(&path, port);
    (path, daemon)
}

/// The id a successful `send` printed first.
fn sent_id(sent: &std::process::Output) -> String {
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    text(&sent.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A store a newer PhoneRelay migrated (after a downgrade): `serve`
/// refuses it with exit 2, which systemd does not restart, and leaves it
/// as it was.
#[test]
fn serve_refuses_a_store_a_newer_phonerelay_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), 0, "", "");
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let out = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("schema version 999, newer than this phonerelay's"),
        "{}",
        text(&out.stderr)
    );
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 999, "left as it was");
}

#[test]
fn check_accepts_the_shipped_configs() {
    let quick = run(&["check", "--config", "config/quickstart.toml"]);
    assert!(quick.status.success(), "{}", text(&quick.stderr));
    assert!(text(&quick.stdout).contains("is valid"));

    // The full example names a modem that is not plugged in here: exactly
    // that, with its key, is reported.
    let full = run(&["check", "--config", "config/phonerelay.toml"]);
    assert_eq!(full.status.code(), Some(2));
    let errors = text(&full.stderr);
    assert!(
        errors.contains("channels.sms.modems[0].device: no such file"),
        "{errors}"
    );
    assert_eq!(
        errors
            .lines()
            .filter(|l| l.contains(": ") && !l.starts_with("phonerelay:"))
            .count(),
        1,
        "{errors}"
    );
}

#[test]
fn check_names_the_key_and_reason_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for (config, expected) in [
        (
            "[server]\nlisten = \"127.0.0.1:8686\"\nlisen = 1\n",
            "server.lisen: unknown field `lisen`",
        ),
        // The line is the key's own (the third here, not the one before).
        (
            "[server]\nlisten = \"127.0.0.1:8686\"\nlisen = 1\n",
            "(line 3)",
        ),
        (
            "[[channels.sms.modems]]\nphone_id = \"m\"\nbaud = \"fast\"\n",
            "channels.sms.modems[0].baud: invalid type: string \"fast\", expected u32 (line 3)",
        ),
        (
            "[server]\nlisten = \"not an address\"\n",
            "server.listen: not an IP:port address",
        ),
        (
            "[outbox]\nmax_attempts = 0\n",
            "outbox.max_attempts: must be at least 1",
        ),
        (
            "[outbox]\nmax_ttl_seconds = 10000000000000000\n",
            "outbox.max_ttl_seconds: must be at most 31536000 (a year)",
        ),
        (
            "[storage]\nretention_days = 200000000000\n",
            "storage.retention_days: must be at most 36500 (0 keeps everything)",
        ),
        (
            "[storage]\ncommit_delay_ms = 51\n",
            "storage.commit_delay_ms: must be at most 50",
        ),
        (
            "[storage]\nmax_media_total_bytes = 1000\n",
            "storage.max_media_total_bytes: must be 0 (no total cap) or at least",
        ),
        (
            "[storage]\nmedia_min_free_bytes = 2000000000000000\n",
            "storage.media_min_free_bytes: must be at most",
        ),
        (
            "[outbox]\nsend_timeout_seconds = 600\nlease_seconds = 60\n",
            "outbox.send_timeout_seconds: must be shorter than outbox.lease_seconds",
        ),
        (
            "[outbox.limits.nosuchphone]\nconcurrency = 1\n",
            "outbox.limits.nosuchphone: is neither a channel name nor a configured phone_id",
        ),
        (
            "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"/dev/nonexistent-modem\"\n",
            "channels.sms.modems[0].device: no such file",
        ),
        (
            "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\nbaud = 12345\n",
            "channels.sms.modems[0].baud",
        ),
        (
            "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\npin_file = \"missing-pin\"\n",
            "channels.sms.modems[0].pin",
        ),
        // The link would run as a phone_id whose sends nothing can take.
        (
            "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\n[relay]\nphone_id = \"ph1\"\n",
            "relay.phone_id: no endpoint has phone_id \"ph1\" (configured phone_ids: \"m\")",
        ),
    ] {
        let path = write_config(dir.path(), config);
        let out = run(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{config}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(expected),
            "{config}: expected {expected:?} in {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "nothing printed as valid");
    }
    let missing = run(&["check", "--config", "/nonexistent/phonerelay.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read config /nonexistent/phonerelay.toml"));
}

/// In push mode the relay must reach the API; on a loopback listen that
/// takes a reverse proxy or pull mode. A note, not an error.
#[test]
fn check_notes_push_mode_on_a_loopback_listen() {
    let dir = tempfile::tempdir().unwrap();
    let relay = "[relay]\nurl = \"https://relay.example.com\"\n";
    let config = |mode: &str| {
        write_config(
            dir.path(),
            &format!(
                "[server]\nlisten = \"127.0.0.1:8686\"\n[storage]\nstate_dir = \"state\"\n\
                 {relay}mode = \"{mode}\"\n"
            ),
        )
    };
    let push = run(&["check", "--config", config("push").to_str().unwrap()]);
    let said = text(&push.stderr);
    assert!(push.status.success(), "a note, not an error: {said}");
    assert!(
        said.contains(
            "note: relay.mode = \"push\" and server.listen = 127.0.0.1:8686, a loopback address"
        ),
        "{said}"
    );
    let pull = run(&["check", "--config", config("pull").to_str().unwrap()]);
    assert!(pull.status.success(), "{}", text(&pull.stderr));
    assert!(
        !text(&pull.stderr).contains("note:"),
        "{}",
        text(&pull.stderr)
    );
}

#[test]
fn check_masks_secrets_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pin");
    fs::write(&pin, "4321\n").unwrap();
    let path = write_config(
        dir.path(),
        "[storage]\nstate_dir = \"state\"\n[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\npin = \"9876\"\n",
    );
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("pin = \"****\""), "{printed}");
    assert!(!printed.contains("9876"));
    assert!(
        !dir.path().join("state").exists(),
        "check must not create the state dir"
    );
    // Both inline and file: refused, naming the key.
    let both = write_config(
        dir.path(),
        &format!(
            "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\npin = \"1\"\npin_file = \"{}\"\n",
            pin.display()
        ),
    );
    let out = run(&["check", "--config", both.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stderr).contains("4321"));
}

/// The room received files may take is part of the effective config
/// `check` prints: defaults when not given, the values when given.
#[test]
fn check_prints_the_room_kept_files_may_take() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = write_config(dir.path(), "[storage]\nstate_dir = \"state\"\n");
    let out = run(&["check", "--config", defaults.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for line in [
        "max_media_total_bytes = 1073741824",
        "media_min_free_bytes = 268435456",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line}: {printed}");
    }
    let given = write_config(
        dir.path(),
        "[storage]\nstate_dir = \"state\"\nmax_media_total_bytes = 0\nmedia_min_free_bytes = 1\n",
    );
    let out = run(&["check", "--config", given.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for line in ["max_media_total_bytes = 0", "media_min_free_bytes = 1"] {
        assert!(printed.lines().any(|l| l == line), "{line}: {printed}");
    }
}

/// `pin_file = "sim-pin"` names a systemd credential: under the unit
/// (`$CREDENTIALS_DIRECTORY` set) it is read there, whatever the unit is
/// called; outside it, from the config file's folder, where the file
/// `LoadCredential=` copies lives. An empty one is refused, naming it.
#[test]
fn a_relative_pin_file_is_a_credential_under_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    fs::create_dir(&credentials).unwrap();
    fs::write(credentials.join("sim-pin"), "4321\n").unwrap();
    let path = write_config(
        dir.path(),
        "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\npin_file = \"sim-pin\"\n",
    );
    let check = |credentials_dir: Option<&std::path::Path>| {
        let mut command = bin();
        command.args(["check", "--config", path.to_str().unwrap()]);
        match credentials_dir {
            Some(dir) => command.env("CREDENTIALS_DIRECTORY", dir),
            None => command.env_remove("CREDENTIALS_DIRECTORY"),
        };
        command.output().unwrap()
    };
    let out = check(Some(&credentials));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Outside the unit the config's folder has no sim-pin yet.
    let out = check(None);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(said.contains("pin_file"), "{said}");
    assert!(
        said.contains(&dir.path().join("sim-pin").display().to_string()),
        "{said}"
    );
    fs::write(dir.path().join("sim-pin"), "1234\n").unwrap();
    assert!(check(None).status.success());
    // An empty credential (a LoadCredential= source left empty).
    fs::write(credentials.join("sim-pin"), "\n").unwrap();
    let out = check(Some(&credentials));
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(said.contains("pin") && said.contains("is empty"), "{said}");
}

#[test]
fn config_is_found_through_the_environment() {
    let out = bin()
        .arg("check")
        .env("PHONERELAY_CONFIG", "config/quickstart.toml")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn keys_are_created_listed_and_revoked_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[storage]\nstate_dir = \"state\"\n");
    let config = path.to_str().unwrap();
    let created = run(&[
        "keys",
        "create",
        "--config",
        config,
        "--name",
        "relay",
        "--scopes",
        "send,read",
        "--phone-id",
        "modem-1",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let key = text(&created.stdout).trim().to_string();
    assert!(key.starts_with("prk_"), "{key}");
    let listed = text(&run(&["keys", "list", "--config", config]).stdout);
    assert!(
        listed.contains("relay") && listed.contains("send,read") && listed.contains("modem-1"),
        "{listed}"
    );
    assert!(
        !listed.contains(key.rsplit('_').next().unwrap()),
        "list must never show a secret"
    );
    let bad = run(&[
        "keys",
        "create",
        "--config",
        config,
        "--name",
        "x",
        "--scopes",
        "send,root",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("unknown scope \"root\""));
    let revoked = run(&["keys", "revoke", "--config", config, "relay"]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert!(text(&run(&["keys", "list", "--config", config]).stdout).contains("revoked"));
    let again = run(&["keys", "revoke", "--config", config, "relay"]);
    assert_eq!(again.status.code(), Some(2));
    // The phone_id above is no configured endpoint's: said, not refused.
    assert!(
        text(&created.stderr).contains("no endpoint with phone_id \"modem-1\""),
        "{}",
        text(&created.stderr)
    );

    // Two active keys of one name: the second is warned, and a revoke by
    // that name says which ids to use instead of "no such key".
    let create = |name: &str| run(&["keys", "create", "--config", config, "--name", name]);
    assert!(create("ops").status.success());
    let second = create("ops");
    assert!(second.status.success());
    assert!(
        text(&second.stderr).contains("1 other active key(s) are named \"ops\""),
        "{}",
        text(&second.stderr)
    );
    let ambiguous = run(&["keys", "revoke", "--config", config, "ops"]);
    assert_eq!(ambiguous.status.code(), Some(2));
    let said = text(&ambiguous.stderr);
    assert!(
        said.contains("2 active keys are named \"ops\"") && said.contains("by its id"),
        "{said}"
    );
}

/// What `keys create` stores is what `keys revoke` and the API see: a
/// trimmed name of printable text, never the local key's own, and a
/// phone_id that names one.
#[test]
fn keys_create_refuses_names_and_phone_ids_no_key_should_have() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[storage]\nstate_dir = \"state\"\n");
    let config = path.to_str().unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec!["keys", "create", "--config", config];
        args.extend_from_slice(extra);
        run(&args)
    };
    for (extra, why) in [
        (&["--name", "local-cli"][..], "the local CLI key's"),
        (&["--name", "ops\u{1b}[2J"][..], "control characters"),
        (
            &["--name", "ops", "--phone-id", " "][..],
            "--phone-id must not be empty",
        ),
        (&["--name", "  "][..], "--name must not be empty"),
    ] {
        let refused = create(extra);
        assert_eq!(refused.status.code(), Some(2), "{extra:?}");
        let said = text(&refused.stderr);
        assert!(said.contains(why), "{extra:?}: {said}");
    }
    let listed = text(&run(&["keys", "list", "--config", config]).stdout);
    assert!(
        !listed.contains("ops") && !listed.contains("local-cli"),
        "a refused key was stored: {listed}"
    );

    let created = create(&["--name", " relay "]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let revoked = run(&["keys", "revoke", "--config", config, "relay"]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
}

/// After a package upgrade, before the daemon restarts: the old daemon
/// still serves the store at its older schema. The new binary's `keys`,
/// `inbound` and `unpair` must not migrate it under that daemon (which would
/// then write a schema it does not know): they refuse, say what to do, and
/// leave the store's file as it was. With no daemon, the same command
/// migrates as before; at the current schema, it works beside the daemon.
#[test]
fn a_cli_command_does_not_migrate_the_store_under_a_running_daemon() {
    use phonerelay::store::sqlite::{SCHEMA_VERSION, create_at_schema_version};
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[storage]\nstate_dir = \"state\"\n");
    let config = path.to_str().unwrap();
    let state = dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let db = state.join("phonerelay.sqlite3");
    let older = SCHEMA_VERSION - 1;
    create_at_schema_version(&db, older).unwrap();
    let version = || -> usize {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    };
    let before = fs::read(&db).unwrap();

    let daemon = phonerelay::instance_lock::acquire(&state).unwrap();
    let commands: [&[&str]; 4] = [
        &["keys", "list", "--config", config],
        &["keys", "create", "--config", config, "--name", "relay"],
        &["inbound", "dead", "--config", config],
        &["unpair", "--config", config],
    ];
    for args in commands {
        let out = run(args);
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains(&format!(
                "the store is at schema {older}, this phonerelay needs {SCHEMA_VERSION}: \
                 restart the daemon (systemctl restart phonerelay) so it upgrades the store first"
            )),
            "{args:?}: {said}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    assert_eq!(version(), older, "not migrated under the daemon");
    assert_eq!(
        fs::read(&db).unwrap(),
        before,
        "the store's file is as it was"
    );

    // No daemon: the command migrates the store, as before.
    drop(daemon);
    let listed = run(&["keys", "list", "--config", config]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(version(), SCHEMA_VERSION);

    // A daemon again, on a current store: nothing to migrate, so it works.
    let _daemon = phonerelay::instance_lock::acquire(&state).unwrap();
    let created = run(&["keys", "create", "--config", config, "--name", "relay"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let listed = run(&["keys", "list", "--config", config]);
    assert!(
        text(&listed.stdout).contains("relay"),
        "{}",
        text(&listed.stdout)
    );
}

#[test]
fn pdu_decode_and_encode_print_json() {
    let out = run(&[
        "pdu",
        "encode",
        "--to",
        "+15551230001",
        "--text",
        "hi €",
        "--status-report",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex = parts[0]["hex"].as_str().unwrap().to_string();
    assert_eq!(parts[0]["total_parts"], 1);
    let decoded = run(&["pdu", "decode", "--direction", "sent", &hex]);
    assert!(decoded.status.success(), "{}", text(&decoded.stderr));
    let json = text(&decoded.stdout);
    assert!(json.contains("hi €"), "{json}");
    assert!(json.contains("15551230001"), "{json}");
    let bad = run(&["pdu", "decode", "00zz"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("cannot decode"));
}

/// A flag no run can take is a usage error (exit 2), as clap's are: the
/// simulator's control socket is refused off loopback before anything
/// starts.
#[test]
fn modem_sim_refuses_a_control_address_off_loopback_as_a_usage_error() {
    let out = run(&["modem-sim", "--control", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("loopback"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn send_status_and_messages_go_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (path, daemon) = daemon_with_modem(dir.path(), "sim");
    let config = path.to_str().unwrap();
    let key_file = dir.path().join("state").join("cli.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let sent = run(&[
        "send",
        "--config",
        config,
        "--channel",
        "sms",
        "--to",
        "+15551230001",
        "--text",
        "from the CLI",
    ]);
    let id = sent_id(&sent);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let shown = run(&["messages", "show", "--config", config, &id]);
        assert!(shown.status.success(), "{}", text(&shown.stderr));
        let message: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        if message["status"] == "sent" || message["status"] == "delivered" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never sent: {message}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = run(&["status", "--config", config]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let table = text(&status.stdout);
    assert!(
        table.contains("CHANNEL") && table.contains("sim-1") && table.contains("up"),
        "{table}"
    );
    // The store's size and the disk's free space, in the first line.
    let first = table.lines().next().unwrap_or_default();
    assert!(
        first.contains("store: ok (database ")
            && first.contains(" + WAL ")
            && first.contains(" free)"),
        "{table}"
    );

    let list = text(&run(&["messages", "list", "--config", config]).stdout);
    assert!(list.contains(&id), "{list}");
    let bad = run(&[
        "send",
        "--config",
        config,
        "--channel",
        "sms",
        "--to",
        "12345",
        "--text",
        "x",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("invalid_field") && text(&bad.stderr).contains("(field to)"),
        "{}",
        text(&bad.stderr)
    );

    let exit = daemon.terminate();
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean stop");
    // Stopped: said without a try on the port, which anyone may hold now.
    let down = run(&["status", "--config", config]);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        text(&down.stderr).contains("no daemon is running"),
        "{}",
        text(&down.stderr)
    );
}

/// `messages cancel` with a key that may send but not read: the daemon
/// answers only the id and status (it tells such a key nothing of the
/// message), and the CLI says the message is cancelled, exit 0, the first
/// time and when asked again. It read the answer as a whole message, and
/// said the cancel failed (exit 1) though it was done.
#[test]
fn messages_cancel_with_a_send_only_key_says_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    // A modem whose port is not there: its queue waits.
    let no_port = dir.path().join("no-such-port");
    let (path, daemon) = daemon_with_modem(dir.path(), no_port.to_str().unwrap());
    let config = path.to_str().unwrap();
    let key = key_with(config, "send", None);
    let as_sender = |args: &[&str]| {
        let mut command = bin();
        command.args(args).env("PHONERELAY_API_KEY", &key);
        command.output().unwrap()
    };
    let sent = as_sender(&[
        "send",
        "--config",
        config,
        "--phone-id",
        "sim-1",
        "--channel",
        "sms",
        "--to",
        "+15551230001",
        "--text",
        "never mind",
    ]);
    let id = sent_id(&sent);
    for _ in 0..2 {
        let cancelled = as_sender(&["messages", "cancel", "--config", config, &id]);
        assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
        assert_eq!(text(&cancelled.stdout).trim(), format!("{id} cancelled"));
    }
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// A send whose answer does not come in time (its commit waits for a
/// lock another connection holds) may still be accepted: the daemon
/// finishes the commit. The error names the send's Idempotency-Key, and a
/// repeat with it is answered as the first: one message, not two.
#[test]
fn a_send_that_times_out_says_how_to_repeat_it_without_sending_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (path, daemon) = daemon_with_modem(dir.path(), "sim");
    let config = path.to_str().unwrap();
    let send = |extra: &[&str]| {
        let mut args = vec![
            "send",
            "--config",
            config,
            "--phone-id",
            "sim-1",
            "--channel",
            "sms",
            "--to",
            "+15551230001",
            "--text",
            "once only",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let db = dir.path().join("state").join("phonerelay.sqlite3");
    let holder = support::store_tables::hold_write_lock(db, std::time::Duration::from_secs(3));
    let late = send(&["--timeout", "1"]);
    assert_eq!(late.status.code(), Some(1), "{}", text(&late.stderr));
    let said = text(&late.stderr);
    let key = said
        .split("--idempotency-key ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no key named: {said}"))
        .to_string();
    holder.join().unwrap();
    let repeated = send(&["--idempotency-key", &key]);
    let id = sent_id(&repeated);
    let listed = text(&run(&["messages", "list", "--config", config]).stdout);
    let messages: Vec<&str> = listed.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(messages.len(), 1, "{listed}");
    assert!(messages[0].starts_with(&id), "{listed}");
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// `PHONERELAY_TIMEOUT` is read only by the commands that wait on the
/// daemon: empty is unset, and a bad value stops those with a usage error
/// naming it, not `check` or `keys` (nor `serve`). A state dir no daemon
/// has started on has no local key: that is a daemon not running (exit 1,
/// as when it is stopped), which starting it puts right.
#[test]
fn the_timeout_variable_is_read_only_where_it_counts_and_no_daemon_yet_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_port, path) = daemon_on_a_free_port(dir.path());
    let config = path.to_str().unwrap();
    let with_timeout = |args: &[&str], value: &str| {
        bin()
            .args(args)
            .args(["--config", config])
            .env("PHONERELAY_TIMEOUT", value)
            .env_remove("PHONERELAY_API_KEY")
            .output()
            .unwrap()
    };
    let check = with_timeout(&["check"], "");
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    // `keys create`: it may make the store a daemon has not made yet.
    let keys = with_timeout(&["keys", "create", "--name", "t"], "5s");
    assert_eq!(keys.status.code(), Some(0), "{}", text(&keys.stderr));
    let bad = with_timeout(&["status"], "5s");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("PHONERELAY_TIMEOUT"),
        "{}",
        text(&bad.stderr)
    );

    let never_started = with_timeout(&["status"], "");
    assert_eq!(
        never_started.status.code(),
        Some(1),
        "{}",
        text(&never_started.stderr)
    );
    assert!(
        text(&never_started.stderr).contains("cannot read the local CLI key"),
        "{}",
        text(&never_started.stderr)
    );
}

/// `send` without a text, or with an empty one, is refused by the
/// command line itself (clap's usage error, exit 2), before any config
/// or daemon is looked at; it had an empty default, which only the
/// daemon refused.
#[test]
fn send_without_a_text_is_a_usage_error() {
    let send = ["send", "--config", "nowhere.toml", "--channel", "sms"];
    let missing = run(&[&send[..], &["--to", "+15551230001"]].concat());
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    let said = text(&missing.stderr);
    assert!(said.contains("--text <TEXT>"), "{said}");
    assert!(said.contains("required"), "{said}");

    let empty = run(&[&send[..], &["--to", "+15551230001", "--text", ""]].concat());
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty.stderr));
    assert!(
        text(&empty.stderr).contains("--text"),
        "{}",
        text(&empty.stderr)
    );
}

/// A daemon that takes connections but never answers (stopped with
/// SIGSTOP, hung, or at its connection limit, where the kernel still
/// completes the handshake): `status` gives up after `--timeout` and says
/// why, and `PHONERELAY_TIMEOUT` sets the same.
#[test]
fn a_daemon_that_never_answers_is_reported_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Bound and listening, never accepting: connections wait in the backlog.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let path = write_config(
        dir.path(),
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nstate_dir = \"state\"\n"),
    );
    let config = path.to_str().unwrap();
    let mut by_flag = bin();
    by_flag
        .args(["status", "--config", config, "--timeout", "1"])
        .env("PHONERELAY_API_KEY", "prk_0000000000000000_00");
    let by_flag = output_within(by_flag, std::time::Duration::from_secs(10));
    assert_eq!(by_flag.status.code(), Some(1));
    let said = text(&by_flag.stderr);
    assert!(said.contains("did not answer within 1 s"), "{said}");
    assert!(said.contains("server.max_connections"), "{said}");

    let mut by_env = bin();
    by_env
        .args(["status", "--config", config])
        .env("PHONERELAY_API_KEY", "prk_0000000000000000_00")
        .env("PHONERELAY_TIMEOUT", "2");
    let by_env = output_within(by_env, std::time::Duration::from_secs(10));
    assert_eq!(by_env.status.code(), Some(1));
    assert!(text(&by_env.stderr).contains("did not answer within 2 s"));

    let zero = run(&["status", "--config", config, "--timeout", "0"]);
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    drop(silent);
}

/// The CLI reaches the daemon on its local socket, which TCP's
/// `server.max_connections` does not hold up: with every TCP slot taken
/// by connections that say nothing, `status` still answers at once. The
/// socket is its owner's alone; one a killed daemon left behind gives a
/// clear "cannot reach" and is replaced at the next start; a clean stop
/// removes it.
#[test]
fn the_cli_gets_in_on_the_local_socket_while_tcp_is_at_its_limit() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = 2\n\
             [storage]\nstate_dir = \"state\"\n"
        ),
    );
    let config = path.to_str().unwrap();
    let socket = dir.path().join("state").join("phonerelay.sock");
    let daemon = DaemonProcess::start(&path, port);
    let meta = fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let _idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // TCP is at its limit: a request on a new connection is not answered.
    let mut over = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    over.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    use std::io::{Read, Write};
    over.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(over.read(&mut [0; 64]).is_err(), "answered over the limit");

    let mut status = bin();
    status.args(["status", "--config", config, "--timeout", "5"]);
    let status = output_within(status, std::time::Duration::from_secs(10));
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stdout).contains("ready"),
        "{}",
        text(&status.stdout)
    );

    // Killed, the daemon leaves its socket: nobody listens on it.
    daemon.crash();
    assert!(socket.exists());
    let refused = run(&["status", "--config", config, "--timeout", "5"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(
        said.contains("cannot reach the daemon at") && said.contains("phonerelay.sock"),
        "{said}"
    );

    let daemon = DaemonProcess::start(&path, port);
    let again = run(&["status", "--config", config, "--timeout", "5"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(daemon.terminate().code(), Some(0));
    assert!(!socket.exists(), "a clean stop removes the socket");
}

/// Nobody listening where the daemon is reached, on its TCP port or on a
/// local socket a killed daemon left behind: the CLI names the system's
/// reason, which tells these apart from a socket the user may not open.
#[test]
fn an_unreachable_daemon_is_reported_with_the_systems_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (port, path) = daemon_on_a_free_port(dir.path());
    let config = path.to_str().unwrap();
    // A key of the user's own goes to the TCP port with no daemon running.
    let status = || {
        bin()
            .args(["status", "--config", config, "--timeout", "5"])
            .env("PHONERELAY_API_KEY", "prk_0000000000000000_00")
            .output()
            .unwrap()
    };
    let over_tcp = status();
    assert_eq!(over_tcp.status.code(), Some(1));
    let said = text(&over_tcp.stderr);
    assert!(
        said.contains(&format!(
            "cannot reach the daemon at http://127.0.0.1:{port}: connection refused \
             (is `phonerelay serve` running?)"
        )),
        "{said}"
    );
    // A send that never left is not one that may have been accepted: no
    // advice to repeat it under its idempotency key.
    let send = bin()
        .args(["send", "--config", config, "--phone-id", "m"])
        .args(["--channel", "sms", "--to", "+15551230001", "--text", "hi"])
        .env("PHONERELAY_API_KEY", "prk_0000000000000000_00")
        .output()
        .unwrap();
    assert_eq!(send.status.code(), Some(1));
    let said = text(&send.stderr);
    assert!(said.contains("connection refused"), "{said}");
    assert!(!said.contains("--idempotency-key"), "{said}");

    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    let socket = state.join("phonerelay.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let on_the_socket = status();
    assert_eq!(on_the_socket.status.code(), Some(1));
    let said = text(&on_the_socket.stderr);
    assert!(
        said.contains(&format!(
            "cannot reach the daemon at {}: connection refused",
            socket.display()
        )),
        "{said}"
    );
}

/// The CLI talks to its own daemon only: a proxy named in the environment
/// would be handed the bearer key (loopback is not exempt from it).
#[test]
fn the_cli_sends_its_key_to_no_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (port, path) = daemon_on_a_free_port(dir.path());
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let mut status = bin();
    status
        .args([
            "status",
            "--config",
            path.to_str().unwrap(),
            "--timeout",
            "5",
        ])
        .env("PHONERELAY_API_KEY", "prk_0000000000000000_00");
    for name in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        status.env(name, &proxy_url);
    }
    status.env_remove("no_proxy").env_remove("NO_PROXY");
    let said = output_within(status, std::time::Duration::from_secs(20));
    assert_eq!(said.status.code(), Some(1));
    let said = text(&said.stderr);
    assert!(
        said.contains(&format!("http://127.0.0.1:{port}: connection refused")),
        "{said}"
    );
    assert!(
        matches!(proxy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the proxy was connected to"
    );
}

/// A key with a line end inside (two pasted together) is named as such,
/// a usage error, never echoed; it was "cannot reach the daemon".
#[test]
fn a_key_no_header_can_carry_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = daemon_on_a_free_port(dir.path());
    let refused = bin()
        .args(["status", "--config", path.to_str().unwrap()])
        .env("PHONERELAY_API_KEY", "prk_S3CRET\nprk_OTHER")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = text(&refused.stderr);
    assert!(
        said.contains("PHONERELAY_API_KEY: not an API key"),
        "{said}"
    );
    assert!(
        !said.contains("S3CRET") && !said.contains("cannot reach"),
        "{said}"
    );
}

/// Something else answering at the daemon's address, with no JSON error
/// (a proxy's error page, an empty body): the CLI reports the HTTP status
/// and the start of the body on one line, and exits as the status's class
/// does.
#[test]
fn an_answer_that_is_not_the_daemons_keeps_its_status() {
    let page = format!(
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\x1b[2J{}</body></html>",
        "x".repeat(500)
    );
    let answers = [
        format!(
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{page}",
            page.len()
        ),
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    ];
    let (port, server) = answering_in_turn(answers.to_vec());
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nstate_dir = \"state\"\n"),
    );
    let status = || {
        bin()
            .args([
                "status",
                "--config",
                path.to_str().unwrap(),
                "--timeout",
                "5",
            ])
            .env("PHONERELAY_API_KEY", "prk_0000000000000000_00")
            .output()
            .unwrap()
    };

    let bad_gateway = status();
    assert_eq!(bad_gateway.status.code(), Some(1));
    let said = text(&bad_gateway.stderr);
    assert!(
        said.contains(
            "HTTP 502 Bad Gateway: <html> <head><title>502 Bad Gateway</title></head> <body> [2J"
        ),
        "{said}"
    );
    assert!(
        !said.contains('\x1b') && !said.contains(&"x".repeat(200)),
        "{said:?}"
    );

    let not_found = status();
    assert_eq!(not_found.status.code(), Some(2));
    let said = text(&not_found.stderr);
    assert!(
        said.contains("HTTP 404 Not Found, with an empty body"),
        "{said}"
    );
    server.join().unwrap();
}

/// A server on a port of its own that answers each connection with the
/// next of `answers`, whatever was asked, then closes it.
fn answering_in_turn(answers: Vec<String>) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut request = std::io::BufReader::new(stream);
            // The request's head, up to its blank line; a GET has no body.
            let mut line = String::new();
            while request.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            request.get_mut().write_all(answer.as_bytes()).unwrap();
        }
    });
    (port, server)
}

/// A daemon that cannot have its port (another process holds it) stops
/// with exit code 1 and leaves no local socket behind, which a `status`
/// would find and nobody answer.
#[test]
fn a_port_in_use_stops_the_daemon_and_leaves_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let path = write_config(
        dir.path(),
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nstate_dir = \"state\"\n"),
    );
    let mut serve = bin();
    serve.args(["serve", "--config", path.to_str().unwrap()]);
    let out = output_within(serve, std::time::Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot listen on"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        dir.path().join("state").is_dir(),
        "the store was opened first"
    );
    assert!(!dir.path().join("state").join("phonerelay.sock").exists());
    drop(taken);
}

/// Logs to a pipe (the journal, under systemd) carry no colour codes,
/// which `journalctl` would show as `^[[2m` or hide as "blob data".
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (_port, path) = daemon_on_a_free_port(dir.path());
    let mut serve = bin();
    serve
        .args(["serve", "--config", path.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .stderr(std::process::Stdio::piped());
    let mut child = serve.spawn().unwrap();
    // Read the log as it comes, on a thread of its own, until the daemon
    // says it is up (and so has its signal handlers).
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let mut log = String::new();
    while !log.contains("phonerelay is up") {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the daemon never said it was up: {log}"));
        log.push_str(&line);
        log.push('\n');
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success(), "{log}");
    reader.join().unwrap();
    log.extend(lines.try_iter().map(|line| line + "\n"));
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains('\x1b'), "{log:?}");
}

/// A SIGTERM that comes while the daemon is still starting (systemd
/// stopping a unit it just started) stops it cleanly, at once or once it
/// runs: exit 0 and "stopped", not death by the signal's default action.
#[test]
fn a_sigterm_while_starting_stops_the_daemon_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (_port, path) = daemon_on_a_free_port(dir.path());
    let mut serve = bin();
    serve
        .args(["serve", "--config", path.to_str().unwrap()])
        .stderr(std::process::Stdio::piped());
    let child = serve.spawn().unwrap();
    // The store's folder appears early in the start, after the handlers.
    let state = dir.path().join("state");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !state.exists() {
        assert!(std::time::Instant::now() < deadline, "no state dir");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "{:?}: {log}", out.status);
    assert!(log.contains("stopped"), "{log}");
}

/// Run `command` to its end, failing the test (and killing it) if that
/// takes longer than `limit`: a CLI that hangs is the fault looked for.
fn output_within(
    mut command: std::process::Command,
    limit: std::time::Duration,
) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still waiting after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `phonerelay keys create` on `config` with `scopes` and, if given, a
/// phone_id: the new key.
fn key_with(config: &str, scopes: &str, phone_id: Option<&str>) -> String {
    let mut args = vec![
        "keys", "create", "--config", config, "--name", "t", "--scopes", scopes,
    ];
    if let Some(phone_id) = phone_id {
        args.extend(["--phone-id", phone_id]);
    }
    let out = run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// `phonerelay send` without `--phone-id`, as `key` (the local key if
/// none), on `channel`.
fn send_unrouted(config: &str, key: Option<&str>, channel: &str) -> std::process::Output {
    let mut send = bin();
    send.args([
        "send",
        "--config",
        config,
        "--channel",
        channel,
        "--to",
        "+15551230001",
        "--text",
        "x",
    ]);
    if let Some(key) = key {
        send.env("PHONERELAY_API_KEY", key);
    }
    send.output().unwrap()
}

/// `send` finds the endpoint in the status only where the key may read it
/// and sees every phone: a send-only key is told to pass `--phone-id`,
/// and a phone-bound key that sees no endpoint is not told that the
/// daemon has none.
#[test]
fn send_without_a_phone_id_says_what_the_key_cannot_see() {
    let sim = Simulated::new();
    let config = sim.config.to_str().unwrap();
    let daemon = DaemonProcess::start(&sim.config, sim.port);

    let send_only = key_with(config, "send", None);
    let out = send_unrouted(config, Some(&send_only), "sms");
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains("cannot read the daemon's status") && said.contains("pass --phone-id"),
        "{said}"
    );
    let mut routed = bin();
    routed
        .args([
            "send",
            "--config",
            config,
            "--channel",
            "sms",
            "--phone-id",
            "sim-1",
        ])
        .args(["--to", "+15551230001", "--text", "x"])
        // A line end, as an EnvironmentFile with CRLF or `$(cat file)`
        // leaves, is no part of the key.
        .env("PHONERELAY_API_KEY", format!("{send_only}\r\n"));
    let routed = routed.output().unwrap();
    assert!(routed.status.success(), "{}", text(&routed.stderr));

    let bound = key_with(config, "send,read", Some("other-phone"));
    let out = send_unrouted(config, Some(&bound), "sms");
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(!said.contains("is configured"), "{said}");
    assert!(
        said.contains("this API key sees no sms endpoint") && said.contains("--phone-id"),
        "{said}"
    );
    // The local key sees every endpoint: "none" is the daemon's.
    let out = send_unrouted(config, None, "wa");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no wa endpoint is configured"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// The daemon refusing the key in `PHONERELAY_API_KEY` (revoked: 401;
/// without the read scope: 403) is a remote party refusing us, exit 3,
/// not a command line to correct; a request it finds invalid still exits
/// 2.
#[test]
fn a_refused_api_key_exits_3_and_a_bad_request_2() {
    let sim = Simulated::new();
    let config = sim.config.to_str().unwrap();
    let daemon = DaemonProcess::start(&sim.config, sim.port);
    let list_as = |key: &str, extra: &[&str]| {
        bin()
            .args(["messages", "list", "--config", config])
            .args(extra)
            .env("PHONERELAY_API_KEY", key)
            .output()
            .unwrap()
    };

    let revoked = key_with(config, "send,read", None);
    let revoke = run(&["keys", "revoke", "--config", config, "t"]);
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    let out = list_as(&revoked, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the key refused is the one in PHONERELAY_API_KEY"),
        "{}",
        text(&out.stderr)
    );

    // The local key revoked (by its id): said to be that one, and how it
    // comes back.
    let local_key = fs::read_to_string(sim.dir.path().join("state").join("cli.key")).unwrap();
    let (local_id, _) = phonerelay::keys::parse(local_key.trim()).unwrap();
    let revoke = run(&["keys", "revoke", "--config", config, local_id]);
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    assert!(
        text(&revoke.stderr).contains("that was the local CLI key"),
        "{}",
        text(&revoke.stderr)
    );
    let out = run(&["messages", "list", "--config", config]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("the key refused is the local CLI key")
            && said.contains("cli.key")
            && said.contains("restarting the daemon issues a new one"),
        "{said}"
    );

    let send_only = key_with(config, "send", None);
    let out = list_as(&send_only, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));

    let reader = key_with(config, "read", None);
    let out = list_as(&reader, &["--cursor", "not-a-cursor"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("invalid_query"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// `messages list` says when there is more than the page it shows, and
/// how to see it; its filters are sent encoded, each value as one
/// parameter's.
#[test]
fn messages_list_shows_how_to_get_the_next_page() {
    let sim = Simulated::new();
    let config = sim.config.to_str().unwrap();
    let daemon = DaemonProcess::start(&sim.config, sim.port);
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let out = send_unrouted(config, None, "sms");
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();

    let first = run(&["messages", "list", "--config", config, "--limit", "2"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first = text(&first.stdout);
    let more = first
        .lines()
        .find_map(|l| l.strip_prefix("more: phonerelay messages list "))
        .unwrap_or_else(|| panic!("no way to the next page in:\n{first}"));
    let args: Vec<&str> = more.split_whitespace().collect();
    // The same --config, so that the pasted command reads this daemon.
    assert_eq!(
        args[..5],
        ["--config", config, "--limit", "2", "--cursor"],
        "{more}"
    );
    let mut next = vec!["messages", "list"];
    next.extend(&args);
    let second = run(&next);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let second = text(&second.stdout);
    assert!(!second.contains("more:"), "the last page:\n{second}");
    for id in &ids {
        let shown = [&first, &second]
            .iter()
            .filter(|page| page.contains(id.as_str()))
            .count();
        assert_eq!(shown, 1, "{id} on one page:\n{first}\n{second}");
    }

    let odd = run(&[
        "messages",
        "list",
        "--config",
        config,
        "--cursor",
        "msg-1&limit=5",
    ]);
    assert_eq!(odd.status.code(), Some(2));
    assert!(
        text(&odd.stderr).contains("invalid_query") && text(&odd.stderr).contains("(field cursor)"),
        "{}",
        text(&odd.stderr)
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// `messages list`'s filters are judged by the command line, with the
/// API's bounds and names: a wrong one is a usage error (exit 2) naming
/// the flag, not a daemon not running (exit 1) or a refusal by one.
#[test]
fn messages_list_refuses_a_bad_filter_with_no_daemon_running() {
    let dir = tempfile::tempdir().unwrap();
    let (_port, path) = daemon_on_a_free_port(dir.path());
    let config = path.to_str().unwrap();
    for (flag, value, said) in [
        ("--limit", "0", "0 is not in 1..=500"),
        ("--limit", "501", "501 is not in 1..=500"),
        (
            "--status",
            "bogus",
            "[possible values: queued, sending, sent,",
        ),
        (
            "--channel",
            "fax",
            "[possible values: sms, wa, tg, email, notify]",
        ),
        // The relay's channel: the bridge keeps no message of it to list.
        (
            "--channel",
            "pchat",
            "[possible values: sms, wa, tg, email, notify]",
        ),
    ] {
        let out = bin()
            .args(["messages", "list", "--config", config, flag, value])
            .env_remove("PHONERELAY_API_KEY")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag} <"))
                && stderr.contains(said),
            "{flag} {value}: {stderr}"
        );
    }
    let good = bin()
        .args(["messages", "list", "--config", config, "--limit", "500"])
        .args(["--status", "queued", "--channel", "sms"])
        .env_remove("PHONERELAY_API_KEY")
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(1),
        "taken, then no daemon: {}",
        text(&good.stderr)
    );
}

/// A file that is not a socket where the local socket goes: the daemon
/// leaves it and serves TCP only, and the CLI takes TCP too instead of
/// failing on the file.
#[test]
fn a_file_in_the_local_sockets_place_sends_the_cli_to_tcp() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = daemon_config(dir.path(), port, "", "");
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let not_a_socket = state.join("phonerelay.sock");
    fs::write(&not_a_socket, "an operator's file").unwrap();
    let daemon = DaemonProcess::start(&config, port);

    let status = run(&[
        "status",
        "--config",
        config.to_str().unwrap(),
        "--timeout",
        "5",
    ]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stdout).contains("ready"),
        "{}",
        text(&status.stdout)
    );
    assert_eq!(daemon.terminate().code(), Some(0));
    assert_eq!(
        fs::read_to_string(&not_a_socket).unwrap(),
        "an operator's file"
    );
}

/// A PIN record key file that holds no key (a state dir restored by hand,
/// a truncated file), with a modem whose PIN is configured: `serve`
/// refuses it with exit 2, and so does `check` now, naming the file; with
/// no PIN configured the file is not read, and both go on.
#[test]
fn check_refuses_a_pin_record_key_that_serve_would() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("state")).unwrap();
    fs::write(dir.path().join("state/sms-pin.key"), "x\n").unwrap();
    let modem = "[storage]\nstate_dir = \"state\"\n[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\n";
    let with_pin = write_config(dir.path(), &format!("{modem}pin = \"9876\"\n"));
    let out = run(&["check", "--config", with_pin.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("storage.state_dir: "), "{said}");
    assert!(said.contains("sms-pin.key does not hold a key"), "{said}");
    assert!(!said.contains("9876"), "{said}");

    let without = write_config(dir.path(), modem);
    let out = run(&["check", "--config", without.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Under journald (stderr the stream `JOURNAL_STREAM` names) the line that
/// says why the daemon ends is at error priority: unprefixed it was stored
/// at info, and `journalctl -p warning` hid why the daemon never started.
/// Elsewhere (a terminal, a pipe) it has no prefix.
#[test]
fn the_reason_the_daemon_ends_is_an_error_line_in_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let serve = |journal: bool| -> (Option<i32>, String) {
        let log = dir.path().join("stderr.log");
        let file = fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let mut command = bin();
        command
            .args(["serve", "--config", missing.to_str().unwrap()])
            .stderr(file)
            .stdout(std::process::Stdio::null());
        if journal {
            command.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        let status = command.status().unwrap();
        (status.code(), fs::read_to_string(&log).unwrap())
    };
    let (code, journal) = serve(true);
    assert_eq!(code, Some(2), "{journal}");
    assert!(
        journal.starts_with("<3>phonerelay: cannot read config"),
        "{journal}"
    );
    let (code, plain) = serve(false);
    assert_eq!(code, Some(2), "{plain}");
    assert!(
        plain.starts_with("phonerelay: cannot read config"),
        "{plain}"
    );
}

/// The relay's key typed into `relay.key_file` by mistake (the file's name
/// where the key goes): `check`'s effective config, printed as "secrets
/// masked", does not show it, only how long it is.
#[test]
fn check_does_not_print_a_key_given_as_a_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "rk_live_8f3a91c2d4e5b6a7";
    let path = write_config(
        dir.path(),
        &format!(
            "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\n\
             [relay]\nurl = \"https://relay.example\"\nphone_id = \"m\"\nkey_file = \"{secret}\"\n"
        ),
    );
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains("not shown: a key given as the file's name?"),
        "{stdout}"
    );
}
