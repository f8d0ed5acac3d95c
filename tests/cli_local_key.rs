//! The local CLI key (`cli.key`, an admin key) goes only to the daemon:
//! over its local socket, or over TCP while a daemon holds the state dir's
//! instance lock. With the daemon stopped, anyone on the box may hold the
//! TCP port; `status` must not hand them the key.

mod common;
mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestDaemon;
use common::test_channel::{Step, TestChannel};
use phonerelay_channel::ChannelKind;
use support::process::*;

/// Whatever arrives on a port another local user took: each connection's
/// request, read until its headers end, then dropped unanswered.
struct Recorder {
    heard: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    fn on(listener: TcpListener) -> Recorder {
        listener.set_nonblocking(true).unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (to, stop) = (heard.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(3)))
                            .unwrap();
                        let mut request = Vec::new();
                        let mut chunk = [0u8; 4096];
                        while let Ok(n @ 1..) = stream.read(&mut chunk) {
                            request.extend_from_slice(&chunk[..n]);
                            if request.windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        to.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&request).into_owned());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Recorder {
            heard,
            done,
            thread: Some(thread),
        }
    }

    /// Every request heard so far. A client that has exited was heard out:
    /// the connection is dropped only once its request is read.
    fn heard(&self) -> Vec<String> {
        self.heard.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `status --timeout 2` on `config`, with the local key (no
/// `PHONERELAY_API_KEY`) or with `env_key`.
fn status(config: &Path, env_key: Option<&str>) -> std::process::Output {
    let mut command = bin();
    command
        .args(["status", "--timeout", "2", "--config"])
        .arg(config)
        .env_remove("PHONERELAY_API_KEY");
    if let Some(key) = env_key {
        command.env("PHONERELAY_API_KEY", key);
    }
    command.output().unwrap()
}

#[test]
fn the_local_key_never_goes_to_the_port_while_no_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = daemon_config(dir.path(), port, "", "");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // As a daemon that ran and stopped cleanly leaves it: the key, no
    // socket, the lock file free.
    let local_key = "pr_localkeyleft_bythelastdaemon";
    std::fs::write(state.join("cli.key"), local_key).unwrap();
    let port_holder = Recorder::on(TcpListener::bind(("127.0.0.1", port)).unwrap());

    let out = status(&config, None);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let heard = port_holder.heard();
    assert!(heard.is_empty(), "the CLI went to the port: {heard:?}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "no daemon is running (state dir {})",
            state.display()
        )),
        "{said}"
    );

    // A restore holds the instance lock, but is no daemon on the port.
    let restore = phonerelay::instance_lock::acquire_for_command(&state).unwrap();
    let out = status(&config, None);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let heard = port_holder.heard();
    assert!(heard.is_empty(), "the CLI went to the port: {heard:?}");
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no daemon is running"), "{said}");
    drop(restore);

    // A key of the user's own goes where the config points, as with curl:
    // the port holder hears it, so it would have heard the local key.
    let own_key = "pr_akeyoftheusersown_givenbyenv";
    let out = status(&config, Some(own_key));
    assert_eq!(out.status.code(), Some(1));

    let heard = port_holder.heard();
    assert!(
        heard.iter().all(|request| !request.contains(local_key)),
        "the local key went to the port: {heard:?}"
    );
    assert_eq!(heard.len(), 1, "only the user's own key's call: {heard:?}");
    assert!(heard[0].contains(own_key), "{heard:?}");
}

/// A daemon that is stopping (a send still in flight in its grace) has
/// closed its port but holds its lock; another user takes the port. The
/// daemon keeps its socket's file until it lets go of the lock, so `status`
/// goes there (and is refused: nobody accepts on it any more), never to
/// the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_daemon_is_met_on_its_socket_not_on_the_freed_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let state = dir.path().join("state");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 60\n\n\
         [storage]\nstate_dir = \"{}\"\n\n{}",
        state.display(),
        common::FAST_OUTBOX
    );
    let config = dir.path().join("test.toml");
    std::fs::write(&config, &text).unwrap();
    let channel = TestChannel::new(ChannelKind::Sms, "m1");
    channel.script(vec![Step::Hang]);
    let mut daemon = TestDaemon::start_in(dir, text, vec![channel.clone()]).await;
    let id = daemon.queue_sms("+15551230001", "in flight").await;
    daemon.wait_status(&id, "sending").await;
    let local_key = std::fs::read_to_string(state.join("cli.key")).unwrap();
    let socket = state.join("phonerelay.sock");
    assert!(socket.exists());

    let stopping = tokio::spawn(daemon.daemon.take().unwrap().stop());
    // The port freed by the stop, taken by another user at once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let taken = loop {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            break listener;
        }
        assert!(Instant::now() < deadline, "the stop never freed the port");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let port_holder = Recorder::on(taken);
    // And the local socket no longer accepting either (or gone).
    while std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        assert!(Instant::now() < deadline, "the socket still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        socket.exists(),
        "the socket's file went while the daemon still holds its lock"
    );

    let config_path = config.clone();
    let out = tokio::task::spawn_blocking(move || status(&config_path, None))
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("cannot reach the daemon at") && said.contains("phonerelay.sock"),
        "{said}"
    );
    let heard = port_holder.heard();
    assert!(
        heard
            .iter()
            .all(|request| !request.contains(local_key.trim())),
        "the local key went to the port: {heard:?}"
    );
    assert!(heard.is_empty(), "{heard:?}");

    channel.release();
    stopping.await.unwrap().unwrap();
    assert!(!socket.exists(), "a stop removes the socket's file");
}
