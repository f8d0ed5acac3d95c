//! The operator's control socket of the simulator.
mod common;

use common::*;
use phonerelay_sms::sim;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A connection to a simulator's control socket: one line asked, one
/// line answered.
struct Control {
    write: OwnedWriteHalf,
    lines: Lines<BufReader<OwnedReadHalf>>,
}

impl Control {
    async fn open(handle: sim::SimHandle, stop: &tokio_util::sync::CancellationToken) -> Self {
        let addr = sim::serve_control_socket(handle, "127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (read, write) = stream.into_split();
        Self {
            write,
            lines: BufReader::new(read).lines(),
        }
    }

    async fn ask(&mut self, line: &str) -> String {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.lines.next_line().await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn control_socket_commands() {
    let dir = tempfile::tempdir().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = sim::spawn(behaviour(), dir.path().join("modem"), stop.clone()).unwrap();
    let mut control = Control::open(handle.clone(), &stop).await;
    let mut ask = async |line: &str| control.ask(line).await;
    assert_eq!(
        ask("inject +15551230001 hello there").await,
        "ok 1 part(s) stored"
    );
    assert_eq!(
        ask("inject-pdu 0004038121F300001170000000000003E8329B").await,
        "ok 1 part(s) stored"
    );
    assert_eq!(ask("stored").await, "ok messages=2 reports=0 held=0");
    assert_eq!(
        ask("inject-cmt 0004038121F300001170000000000003E8329B").await,
        "ok delivered directly (+CMT)"
    );
    assert_eq!(ask("urc +CSCON: 1").await, "ok sent");
    assert!(ask("inject-cmt").await.starts_with("error: inject-cmt"));
    assert_eq!(ask("stored").await, "ok messages=2 reports=0 held=0");
    assert!(ask("fail 500 2").await.starts_with("ok next 2"));
    assert!(
        ask("fail 38 1 2")
            .await
            .starts_with("ok 1 send(s) after the next 2 fail")
    );
    assert_eq!(ask("deletes keep").await, "ok deletes keep");
    assert_eq!(ask("deletes apply").await, "ok deletes apply");
    assert!(
        ask("deletes sometimes")
            .await
            .starts_with("error: deletes keep|apply")
    );
    assert_eq!(ask("sent").await, "ok");
    assert_eq!(ask("parts").await, "ok");
    assert!(handle.path().exists());
    assert_eq!(ask("unplug").await, "ok unplugged");
    wait_until(|| !handle.path().exists()).await;
    assert_eq!(ask("replug").await, "ok replugged");
    wait_until(|| handle.path().exists()).await;
    assert_eq!(ask("restart").await, "ok restarted in place");
    assert!(ask("bogus").await.starts_with("error: unknown command"));
    stop.cancel();
}

/// A full simulated SIM: what comes is held by the network, and the
/// control socket says so.
#[tokio::test]
async fn control_socket_on_a_full_sim() {
    let dir = tempfile::tempdir().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let small = Behaviour {
        capacity: 1,
        ..behaviour()
    };
    let handle = sim::spawn(small, dir.path().join("modem"), stop.clone()).unwrap();
    let mut control = Control::open(handle, &stop).await;
    let mut ask = async |line: &str| control.ask(line).await;
    let pdu = "inject-pdu 0004038121F300001170000000000003E8329B";
    assert_eq!(ask(pdu).await, "ok 1 part(s) stored");
    assert_eq!(
        ask(pdu).await,
        "ok 0 part(s) stored, 1 held by the network (SIM full)"
    );
    assert_eq!(
        ask("inject +15551230001 hello").await,
        "ok 0 part(s) stored, 1 held by the network (SIM full)"
    );
    assert_eq!(ask("stored").await, "ok messages=1 reports=0 held=2");
    stop.cancel();
}
