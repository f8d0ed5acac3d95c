//! The CLI commands that read or change what is in the store do not make
//! one where there is none: on a mistyped `storage.state_dir` they would
//! report an empty store ("no keys", "not paired", "no dead letters", "no
//! unreadable inbound") and
//! exit 0, a false all-clear. Only `keys create` and `pair`, which put the
//! first things in a store, may make it.

mod support;

use support::process::*;

#[test]
fn commands_that_read_the_store_refuse_a_state_dir_with_no_store_and_make_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonerelay.toml");
    std::fs::write(&config, "[storage]\nstate_dir = \"stat\"\n").unwrap();
    let config = config.to_str().unwrap();
    let typo = dir.path().join("stat");
    let commands: [&[&str]; 7] = [
        &["keys", "list"],
        &["keys", "revoke", "relay"],
        &["pair", "--status"],
        &["unpair"],
        &["inbound", "dead"],
        &["inbound", "retry", "0194f0c2-7a4e-7000-8000-000000000001"],
        &["inbound", "unreadable"],
    ];
    for command in commands {
        let out = run(&[command, &["--config", config]].concat());
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
        assert!(
            said.contains(&format!(
                "no store at {}",
                typo.join("phonerelay.sqlite3").display()
            )) && said.contains("storage.state_dir"),
            "{command:?}: {said}"
        );
        assert!(
            out.stdout.is_empty(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!typo.exists(), "{command:?} made {}", typo.display());
    }

    // `keys create` may: the first key comes before the daemon's first start.
    let created = run(&["keys", "create", "--config", config, "--name", "relay"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = run(&["keys", "list", "--config", config]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("relay"),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}
