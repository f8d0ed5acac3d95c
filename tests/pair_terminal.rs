//! `phonerelay pair` reading the relay's key from a terminal (a real
//! pseudo-terminal): the key is not echoed, and the terminal echoes again
//! once it is read.

mod support;

use std::ffi::CStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, Stdio};

use support::process::bin;

const TYPED_KEY: &str = "relaykey-S3CRET-typed";

/// A pseudo-terminal: its master side, and its slave side opened as a
/// program's terminal would be.
fn open_pty() -> (File, File) {
    // SAFETY: plain libc calls on a fd this function owns; ptsname_r
    // writes at most the buffer's length, NUL-terminated.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let slave_path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string();
        let master = File::from_raw_fd(master);
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(slave_path)
            .unwrap();
        (master, slave)
    }
}

fn echoes(terminal: &File) -> bool {
    // SAFETY: a termios struct filled by tcgetattr on an open fd.
    unsafe {
        let mut modes: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(terminal.as_raw_fd(), &mut modes), 0);
        modes.c_lflag & libc::ECHO != 0
    }
}

/// `pair` run with `terminal` as its standard input, on a config of its
/// own (in the directory returned), up to its key prompt: the process,
/// its standard error past the prompt, and the prompt.
fn pair_on(terminal: &File) -> (tempfile::TempDir, Child, BufReader<ChildStderr>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonerelay.toml");
    std::fs::write(
        &config,
        "[storage]\nstate_dir = \"state\"\n[[channels.sms.modems]]\nphone_id = \"ph1\"\ndevice = \"sim\"\n",
    )
    .unwrap();
    let mut pair = bin()
        .args(["pair", "--config", config.to_str().unwrap()])
        // No relay answers there: the pairing fails after the key is read.
        .args(["--relay", "http://127.0.0.1:9", "--phone-id", "ph1"])
        .stdin(terminal.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(pair.stderr.take().unwrap());
    let mut prompt = String::new();
    stderr.read_line(&mut prompt).unwrap();
    (dir, pair, stderr, prompt)
}

/// How `child` ended, within `limit`; killed and a failure if it had not
/// (a signal it did not heed would leave it waiting for the key).
fn ended_within(child: &mut Child, limit: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("pair did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_key_typed_on_a_terminal_is_not_echoed() {
    let (mut master, slave) = open_pty();
    assert!(echoes(&slave), "a new terminal echoes");
    let (_dir, mut pair, mut stderr, prompt) = pair_on(&slave);
    assert!(prompt.contains("it is not shown"), "{prompt}");
    assert!(!echoes(&slave), "the terminal echoes while the key is read");
    master
        .write_all(format!("{TYPED_KEY}\n").as_bytes())
        .unwrap();
    let status = pair.wait().unwrap();
    let mut said = String::new();
    stderr.read_to_string(&mut said).unwrap();
    assert_ne!(status.code(), Some(0), "{said}");
    assert!(echoes(&slave), "the terminal was left without echo");

    // What the terminal showed: the master reads what it echoed.
    // SAFETY: fcntl on an open fd this test owns.
    unsafe {
        let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut shown = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        shown.extend_from_slice(&buf[..n]);
    }
    let shown = String::from_utf8_lossy(&shown);
    assert!(!shown.contains("S3CRET"), "the key was echoed: {shown:?}");
    assert!(!said.contains("S3CRET"), "{said}");
    drop(slave);
}

/// A Ctrl-C while the key is awaited ends `pair` with the terminal's echo
/// put back (killed by the signal, it left the shell typing blind), and
/// pairs nothing; the process still ends as one the signal ended.
#[test]
fn a_ctrl_c_at_the_key_prompt_puts_the_echo_back() {
    for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
        let (_master, slave) = open_pty();
        let (dir, mut pair, mut stderr, _) = pair_on(&slave);
        assert!(!echoes(&slave));
        // SAFETY: a signal to the child this test spawned.
        assert_eq!(unsafe { libc::kill(pair.id() as i32, signal) }, 0);
        let status = ended_within(&mut pair, std::time::Duration::from_secs(20));
        let mut said = String::new();
        stderr.read_to_string(&mut said).unwrap();
        // Ended by the signal itself, as a shell expects of a program
        // that caught it to clean up (a script looping over it stops);
        // Ctrl-\\ by 128 + its number, without the core dump its default
        // action would leave.
        if signal == libc::SIGQUIT {
            assert_eq!(status.code(), Some(128 + signal), "{status:?}: {said}");
        } else {
            assert_eq!(status.signal(), Some(signal), "{status:?}: {said}");
        }
        assert!(said.contains("interrupted: nothing was paired"), "{said}");
        assert!(
            echoes(&slave),
            "{signal}: the terminal was left without echo"
        );
        assert!(!dir.path().join("state").join("relay.key").exists());
    }
}
