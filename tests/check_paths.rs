//! `check` (and `serve`) refuse a path the service could never use as
//! meant: empty (the config file's own folder) or starting with `~`, which
//! nothing expands (`~/pr` would be `<config folder>/~/pr`). Each names
//! the key and why, for every key that is a path.

mod support;

use support::process::*;

#[test]
fn check_refuses_an_empty_path_and_a_leading_tilde_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let tilde = "starts with `~`, which is not expanded here";
    let empty = "must not be empty (that would be the config file's own folder)";
    let sim = "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\n";
    for (config, key, reason) in [
        (
            "[storage]\nstate_dir = \"~/pr\"\n".to_string(),
            "storage.state_dir",
            tilde,
        ),
        (
            "[storage]\nstate_dir = \"\"\n".to_string(),
            "storage.state_dir",
            empty,
        ),
        (
            "[relay]\nkey_file = \"~/relay.key\"\n".to_string(),
            "relay.key_file",
            tilde,
        ),
        (
            "[relay]\nkey_file = \"\"\n".to_string(),
            "relay.key_file",
            empty,
        ),
        (
            "[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"~/ttyUSB2\"\n".to_string(),
            "channels.sms.modems[0].device",
            tilde,
        ),
        (
            format!("{sim}pin_file = \"~/sim-pin\"\n"),
            "channels.sms.modems[0].pin_file",
            tilde,
        ),
        (
            format!("{sim}pin_file = \" \"\n"),
            "channels.sms.modems[0].pin_file",
            empty,
        ),
    ] {
        let path = dir.path().join("phonerelay.toml");
        std::fs::write(&path, &config).unwrap();
        let out = run(&["check", "--config", path.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {said}");
        assert!(
            said.contains(&format!("{key}: {reason}")),
            "{config}: expected {key}: {reason} in {said}"
        );
    }

    // The daemon refuses it too (exit 2, not restarted) and makes no `~`.
    let port = free_port();
    let path = dir.path().join("phonerelay.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nstate_dir = \"~/pr\"\n"),
    )
    .unwrap();
    let mut serve = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while serve.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("serve started on state_dir = \"~/pr\"");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = serve.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("storage.state_dir"), "{said}");
    assert!(!dir.path().join("~").exists(), "a folder named ~ was made");
}
