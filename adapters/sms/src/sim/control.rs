//! `phonerelay modem-sim`: a simulator for operators, steered over a
//! line-based TCP control socket on 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{Behaviour, SimHandle, spawn};

/// Arguments of `phonerelay modem-sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModemSimArgs {
    /// Path of the symlink to the simulated modem's pty (point a modem's
    /// `device` at it). Default: a file in the temp dir.
    #[arg(long)]
    pub link: Option<PathBuf>,
    /// Control socket address; only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control: SocketAddr,
    /// Emulate a serial line of this speed (bytes paced at baud/10 per s).
    #[arg(long)]
    pub baud_limit: Option<u32>,
    /// Milliseconds the simulated network takes to accept each part.
    #[arg(long, default_value_t = 0)]
    pub network_delay_ms: u64,
    /// Start with echo off (real modems echo until ATE0).
    #[arg(long)]
    pub no_echo: bool,
    /// Interleave vendor URCs (^RSSI, ^MODE) with answers.
    #[arg(long)]
    pub urc_noise: bool,
    /// Do not send delivery reports.
    #[arg(long)]
    pub no_delivery_reports: bool,
    /// A PIN the simulated SIM demands (a test SIM's, not a real one).
    #[arg(long)]
    pub pin: Option<String>,
    /// Message slots in each memory; a full one stores nothing more, and
    /// the network holds what comes until there is room.
    #[arg(long, default_value_t = super::SIM_CAPACITY)]
    pub capacity: u32,
}

pub const CONTROL_HELP: &str = "commands: inject <+from> <text> | inject-pdu <hex> | inject-cmt <hex> | urc <line> | sent | parts | stored | fail <cms-code> <count> [<after>] | delay <ms> | reports on|off | unplug | replug | coverage on|off | deletes keep|apply | damage <mem> <index> <count> | next-mr <0-255> | mute | unmute | boot <count> | restart | help";

/// Run the simulator until `shutdown` fires; prints the pty path and the
/// control address on stdout.
pub async fn run_modem_sim_cli(
    args: ModemSimArgs,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if !args.control.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the control socket only listens on a loopback address",
        ));
    }
    let link = args.link.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("phonerelay-modem-sim-{}", std::process::id()))
    });
    let behaviour = Behaviour {
        network_delay: Duration::from_millis(args.network_delay_ms),
        baud_limit: args.baud_limit,
        echo_default: !args.no_echo,
        urc_noise: args.urc_noise,
        delivery_reports: !args.no_delivery_reports,
        pin: args.pin.clone(),
        registration_urcs: true,
        stores_status_reports: true,
        message_service: 0,
        selects_memory: true,
        capacity: args.capacity,
    };
    let handle = spawn(behaviour, link.clone(), shutdown.clone())?;
    let listener = TcpListener::bind(args.control).await?;
    let addr = listener.local_addr()?;
    println!("modem simulator pty: {}", link.display());
    println!("control: {addr} (nc 127.0.0.1 {}; 'help')", addr.port());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let handle = handle.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_control(stream, handle, shutdown).await {
                        tracing::debug!(error = %e, "control connection ended");
                    }
                });
            }
        }
    }
    Ok(())
}

/// Bind a control socket for an existing simulator (tests, embedding).
pub async fn serve_control_socket(
    handle: SimHandle,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Ok((stream, _)) = listener.accept() => {
                    let handle = handle.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        let _ = serve_control(stream, handle, shutdown).await;
                    });
                }
            }
        }
    });
    Ok(local)
}

async fn serve_control(
    stream: TcpStream,
    handle: SimHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            line = lines.next_line() => line?,
        };
        let Some(line) = line else { return Ok(()) };
        let answer = control_command(&handle, &line);
        write.write_all(answer.as_bytes()).await?;
        write.write_all(b"\n").await?;
    }
}

/// One control line → the answer (without the final newline).
pub fn control_command(handle: &SimHandle, line: &str) -> String {
    let line = line.trim();
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    match cmd {
        "inject" => {
            let Some((from, text)) = rest.split_once(' ') else {
                return "error: inject <+from> <text>".into();
            };
            let injected = handle.inject_inbound(from, text);
            match injected.held {
                0 => format!("ok {} part(s) stored", injected.stored),
                held => format!(
                    "ok {} part(s) stored, {held} held by the network (SIM full)",
                    injected.stored
                ),
            }
        }
        "inject-pdu" => match rest {
            "" => "error: inject-pdu <hex>".into(),
            hex if handle.inject_raw_pdu(hex) => "ok 1 part(s) stored".into(),
            _ => "ok 0 part(s) stored, 1 held by the network (SIM full)".into(),
        },
        "inject-cmt" => match rest {
            "" => "error: inject-cmt <hex>".into(),
            hex => {
                handle.deliver_direct(hex, false);
                "ok delivered directly (+CMT)".into()
            }
        },
        "urc" => match rest {
            "" => "error: urc <line>".into(),
            line => {
                handle.send_unsolicited(vec![line.to_string()]);
                "ok sent".into()
            }
        },
        "sent" => {
            let mut out = String::new();
            for m in handle.sent_messages() {
                out.push_str(&format!("{} mr={:?} {}\n", m.to, m.mrs, m.text));
            }
            out.push_str("ok");
            out
        }
        "stored" => {
            let (sm, sr, held) = handle.stored();
            format!("ok messages={sm} reports={sr} held={held}")
        }
        "parts" => {
            // One line per part the network accepted, in order.
            let mut out = String::new();
            for p in handle.sent_parts() {
                let concat = p.concat.map_or("single".to_string(), |(r, total, seq)| {
                    format!("ref={r} seq={seq}/{total}")
                });
                out.push_str(&format!("{} mr={} {concat}\n", p.to, p.mr));
            }
            out.push_str("ok");
            out
        }
        "fail" => {
            let mut it = rest.split_whitespace();
            match (
                it.next().and_then(|c| c.parse::<u16>().ok()),
                it.next().map(|n| n.parse::<usize>()).unwrap_or(Ok(1)),
                it.next().map(|n| n.parse::<usize>()).unwrap_or(Ok(0)),
            ) {
                (Some(code), Ok(count), Ok(after)) => {
                    handle.fail_sends_after(after, code, count);
                    match after {
                        0 => format!("ok next {count} send(s) fail with +CMS ERROR: {code}"),
                        _ => format!(
                            "ok {count} send(s) after the next {after} fail with +CMS ERROR: {code}"
                        ),
                    }
                }
                _ => "error: fail <cms-code> <count> [<after>]".into(),
            }
        }
        "delay" => match rest.parse::<u64>() {
            Ok(ms) => {
                handle.set_delay(Duration::from_millis(ms));
                format!("ok delay {ms} ms")
            }
            Err(_) => "error: delay <ms>".into(),
        },
        "reports" => match rest {
            "on" | "off" => {
                handle.deliver_status_reports(rest == "on");
                format!("ok reports {rest}")
            }
            _ => "error: reports on|off".into(),
        },
        "unplug" => {
            handle.disconnect();
            "ok unplugged".into()
        }
        "replug" => {
            handle.reconnect();
            "ok replugged".into()
        }
        "next-mr" => match rest.parse::<u8>() {
            Ok(mr) => {
                handle.set_next_mr(mr);
                format!("ok next TP-MR {mr}")
            }
            Err(_) => "error: next-mr <0-255>".into(),
        },
        "coverage" => match rest {
            "on" | "off" => {
                handle.set_coverage(rest == "on");
                format!("ok coverage {rest}")
            }
            _ => "error: coverage on|off".into(),
        },
        "deletes" => match rest {
            "keep" | "apply" => {
                handle.set_keep_deleted(rest == "keep");
                format!("ok deletes {rest}")
            }
            _ => "error: deletes keep|apply".into(),
        },
        "damage" => {
            let mut it = rest.split_whitespace();
            let mem = it.next().filter(|m| matches!(*m, "SM" | "ME" | "SR"));
            let index = it.next().and_then(|i| i.parse::<u32>().ok());
            let count = it.next().map(str::parse::<u32>).unwrap_or(Ok(1));
            match (mem, index, count) {
                (Some(mem), Some(index), Ok(count)) => {
                    if handle.damage_next_reads(mem, index, count) {
                        format!("ok next {count} read(s) of {mem}:{index} damaged on the line")
                    } else {
                        format!("error: {mem}:{index} is empty")
                    }
                }
                _ => "error: damage <SM|ME|SR> <index> [<count>]".into(),
            }
        }
        "mute" | "unmute" => {
            handle.set_muted(cmd == "mute");
            format!("ok {cmd}d")
        }
        "boot" => match rest.parse::<usize>() {
            Ok(n) => {
                handle.boot_flood(n);
                format!("ok {n} ^BOOT lines")
            }
            Err(_) => "error: boot <count>".into(),
        },
        "restart" => {
            handle.restart_in_place();
            "ok restarted in place".into()
        }
        "help" | "" => CONTROL_HELP.into(),
        other => format!("error: unknown command {other:?}; {CONTROL_HELP}"),
    }
}
