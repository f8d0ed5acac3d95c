//! `server.max_connections`: a connection beyond the limit is not refused
//! but waits, unanswered, until one of those being served closes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// `GET /health` on a connection of its own, from a thread; the status
/// line comes back on the channel once answered.
fn health_on_new_connection(addr: &str) -> mpsc::Receiver<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let _ = tx.send(answer.lines().next().unwrap_or_default().to_string());
    });
    rx
}

/// A daemon with `max_connections` and `request_timeout_seconds`, and
/// its address.
async fn start_with_limits(max_connections: usize, request_timeout: u64) -> (TestDaemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir, "").replace(
        "[server]\n",
        &format!(
            "[server]\nmax_connections = {max_connections}\n\
             request_timeout_seconds = {request_timeout}\n"
        ),
    );
    let d = TestDaemon::start_in(dir, text, vec![]).await;
    let addr = d.base.trim_start_matches("http://").to_string();
    (d, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_beyond_the_limit_waits_until_one_closes() {
    let (_daemon, addr) = start_with_limits(2, 30).await;

    // Two connections that say nothing take both slots.
    let first_idle = TcpStream::connect(&addr).unwrap();
    let _second_idle = TcpStream::connect(&addr).unwrap();
    let waiting = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(200));
        let answer = health_on_new_connection(&addr);
        let early = answer.recv_timeout(Duration::from_millis(700)).ok();
        (answer, early)
    })
    .await
    .unwrap();
    let (answer, early) = waiting;
    assert_eq!(early, None, "answered while both slots were taken");

    // One closes: the waiting connection is served.
    drop(first_idle);
    let status = tokio::task::spawn_blocking(move || answer.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("never answered after a slot came free");
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// A client that sends requests and never reads the answers: once they
/// have filled the socket, the answer stalls, and after the request
/// timeout the connection is closed, so its slot serves the next client.
/// (hyper's own timer covers only the reading of a request's headers.)
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_its_answers_loses_its_connection() {
    let (_daemon, addr) = start_with_limits(1, 1).await;

    let greedy = TcpStream::connect(&addr).unwrap();
    let mut writer = greedy.try_clone().unwrap();
    std::thread::spawn(move || {
        let request = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: test\r\n\r\n";
        for _ in 0..5000 {
            // Fails once the daemon has closed the connection.
            if writer.write_all(request).is_err() {
                break;
            }
        }
    });
    // Time for the answers to fill the socket while the one slot is taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::spawn_blocking(move || {
        health_on_new_connection(&addr).recv_timeout(Duration::from_secs(15))
    })
    .await
    .unwrap()
    .expect("the slot is still held by a client that reads nothing");
    assert_eq!(status, "HTTP/1.1 200 OK");
    drop(greedy);
}
