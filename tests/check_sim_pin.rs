//! `phonerelay check` resolves the SIM PIN as `serve` does (`${ENV}`,
//! `pin_file`) and holds the result to the PIN rule, never showing it.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::process::*;

const PIN_VAR: &str = "SIM_PIN";

fn modem_with(dir: &Path, pin_keys: &str) -> PathBuf {
    let path = dir.join("phonerelay.toml");
    fs::write(
        &path,
        format!("[[channels.sms.modems]]\nphone_id = \"m\"\ndevice = \"sim\"\n{pin_keys}\n"),
    )
    .unwrap();
    path
}

/// `check` with `SIM_PIN` set to `pin`, or removed for `None`.
fn check(config: &Path, pin: Option<&str>) -> Output {
    let mut command = bin();
    command.args(["check", "--config"]).arg(config);
    match pin {
        Some(pin) => command.env(PIN_VAR, pin),
        None => command.env_remove(PIN_VAR),
    };
    command.output().expect("phonerelay runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unset_pin_variable_fails_check_naming_the_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = modem_with(dir.path(), "pin = \"${SIM_PIN}\"");
    let out = check(&config, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("channels.sms.modems[0].pin: environment variable SIM_PIN is not set"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("pin: pin:"), "{}", stderr(&out));
}

#[test]
fn a_pin_variable_that_is_no_pin_fails_check_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = modem_with(dir.path(), "pin = \"${SIM_PIN}\"");
    for (bad, said) in [
        (
            "12 34",
            "channels.sms.modems[0].pin: a SIM PIN is 4 to 8 digits",
        ),
        (
            "",
            "channels.sms.modems[0].pin: environment variable SIM_PIN is empty",
        ),
    ] {
        let out = check(&config, Some(bad));
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        let errors = stderr(&out);
        assert!(errors.contains(said), "{bad:?}: {errors}");
        if !bad.is_empty() {
            assert!(!errors.contains(bad), "{errors}");
        }
    }
    let good = check(&config, Some("2468"));
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(!String::from_utf8_lossy(&good.stdout).contains("2468"));
}

#[test]
fn a_pin_file_that_holds_no_pin_fails_check_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("sim-pin"), "98 76\n").unwrap();
    let config = modem_with(dir.path(), "pin_file = \"sim-pin\"");
    let out = check(&config, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let errors = stderr(&out);
    assert!(
        errors.contains("channels.sms.modems[0].pin_file: a SIM PIN is 4 to 8 digits"),
        "{errors}"
    );
    assert!(!errors.contains("98 76"), "{errors}");
}

/// `serve` with a PIN configured must make the PIN record key in the state
/// dir before anything else; a state dir that cannot be made is a run-time
/// failure (exit 1, which systemd restarts), not a config error (exit 2,
/// which it does not): a full disk passes, a wrong key does not.
#[test]
fn serve_that_cannot_make_the_pin_record_key_exits_1_not_2() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("blocker"), "a file, not a folder").unwrap();
    let config = modem_with(
        dir.path(),
        "pin = \"4321\"\n\n[storage]\nstate_dir = \"blocker/state\"",
    );
    let out = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("phonerelay runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot create"), "{}", stderr(&out));
}
