//! The command line when its standard output cannot be written: a reader
//! that went away (`| head`), a full disk.

mod support;

use std::fs;
use std::process::{Output, Stdio};

use support::process::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `args` run with standard output on a pipe whose reader is gone.
fn run_into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    bin()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("phonerelay runs")
}

/// `args` run with standard output on `/dev/full` (every write: ENOSPC).
fn run_into_a_full_disk(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdout(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .stderr(Stdio::piped())
        .output()
        .expect("phonerelay runs")
}

/// A reader that went away (`| head`) ends a report quietly, exit 0: what
/// the command did is done. A full disk is said, exit 1. Neither panics
/// (exit 101), and no signal ends the command: SIGPIPE stays ignored, so
/// a connection the daemon closed is reported, not a silent death.
#[test]
fn a_report_that_cannot_be_written_ends_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonerelay.toml");
    fs::write(&config, "[storage]\nstate_dir = \"state\"\n").unwrap();
    let check = ["check", "--config", config.to_str().unwrap()];
    let ended = run_into_a_closed_pipe(&check);
    let said = text(&ended.stderr);
    assert_eq!(ended.status.code(), Some(0), "{:?}: {said}", ended.status);
    assert!(!said.contains("panicked"), "{said}");
    let full = run_into_a_full_disk(&check);
    let said = text(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{:?}: {said}", full.status);
    assert!(said.contains("cannot write to standard output"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

/// A key nobody got is not left active: it is revoked again, and the
/// error says so (exit 1).
#[test]
fn a_new_key_that_cannot_be_shown_is_revoked_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonerelay.toml");
    fs::write(&config, "[storage]\nstate_dir = \"state\"\n").unwrap();
    let config = config.to_str().unwrap();
    for (name, output) in [
        (
            "lost-to-a-pipe",
            run_into_a_closed_pipe(&[
                "keys",
                "create",
                "--config",
                config,
                "--name",
                "lost-to-a-pipe",
            ]),
        ),
        (
            "lost-to-a-full-disk",
            run_into_a_full_disk(&[
                "keys",
                "create",
                "--config",
                config,
                "--name",
                "lost-to-a-full-disk",
            ]),
        ),
    ] {
        let said = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {said}");
        assert!(
            said.contains("cannot write the key to standard output"),
            "{name}: {said}"
        );
        assert!(said.contains("revoked again"), "{name}: {said}");
        assert!(!said.contains("panicked"), "{name}: {said}");
    }
    let listed = run(&["keys", "list", "--config", config]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed = text(&listed.stdout);
    let lines: Vec<&str> = listed.lines().filter(|l| l.contains("lost-to-")).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    for line in lines {
        assert!(
            line.contains("revoked"),
            "an unshown key stays active: {line}"
        );
    }
}
