//! Single-part SMS throughput through the real driver, over a pty, against
//! the simulator answering at once on an emulated 115200 baud line.
//!
//! `cargo bench -p phonerelay-sms --bench sms_throughput` measures;
//! without `--bench` (as `cargo test --all-targets` runs it) it does a tiny
//! smoke run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use phonerelay_channel::{
    Channel, ChannelContext, ChannelEvent, ChannelKind, CursorWrite, EventSink, HealthState,
    InboundMessage, OutboundMessage, SinkError,
};
use phonerelay_sms::sim::{self, Behaviour};
use phonerelay_sms::{ModemConfig, SmsChannel};
use tokio_util::sync::CancellationToken;

const BAUD: u32 = 115_200;
/// 160 GSM 7-bit characters: one full single-part SMS.
const TEXT: &str = "PhoneRelay throughput check: the quick brown fox jumps over the lazy dog 0123456789. Pack my box with five dozen liquor jugs! How vexingly quick daft zebras jum";

struct NullSink;

#[async_trait]
impl EventSink for NullSink {
    async fn deliver(&self, _: ChannelEvent) -> Result<(), SinkError> {
        Ok(())
    }
    async fn save_cursor(&self, _: &str, _: &str) -> Result<(), SinkError> {
        Ok(())
    }
    async fn deliver_inbound_with_cursors(
        &self,
        _: InboundMessage,
        _: &[CursorWrite],
    ) -> Result<(), SinkError> {
        Ok(())
    }
    async fn load_cursor(&self, _: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    async fn sent_ids(&self, _: &str) -> Result<Vec<(String, i64)>, SinkError> {
        Ok(Vec::new())
    }
    async fn inbound_ids(&self, _: &str) -> Result<Vec<String>, SinkError> {
        Ok(Vec::new())
    }
}

struct Run {
    modems: usize,
    per_modem: usize,
    elapsed: Duration,
    bytes_per_sms: f64,
}

async fn run(modems: usize, per_modem: usize) -> Run {
    assert_eq!(TEXT.chars().count(), 160);
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let mut channels = Vec::new();
    for i in 0..modems {
        let link = dir.path().join(format!("modem{i}"));
        let sim = sim::spawn(
            Behaviour {
                network_delay: Duration::ZERO,
                baud_limit: Some(BAUD),
                echo_default: true,
                urc_noise: false,
                delivery_reports: false,
                pin: None,
                registration_urcs: true,
                stores_status_reports: true,
                message_service: 0,
                selects_memory: true,
                capacity: sim::SIM_CAPACITY,
            },
            link.clone(),
            stop.clone(),
        )
        .unwrap();
        let mut config = ModemConfig::new(format!("m{i}"), "sim");
        config.baud = BAUD;
        // Reports would add reads and deletes that a real network spreads
        // over seconds; the figure is for the send path.
        config.status_reports = false;
        let channel = Arc::new(SmsChannel::new(config, link, None));
        let ctx = ChannelContext {
            sink: Arc::new(NullSink),
            fetcher: Arc::new(phonerelay_channel::NoFetcher),
            shutdown: stop.clone(),
        };
        let c = channel.clone();
        tokio::spawn(async move { c.run(ctx).await });
        channels.push((channel, sim));
    }
    for (channel, _) in &channels {
        let deadline = Instant::now() + Duration::from_secs(10);
        while channel.health().state != HealthState::Up {
            assert!(Instant::now() < deadline, "modem did not come up");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let before: Vec<u64> = channels
        .iter()
        .map(|(c, _)| {
            c.wire_stats().bytes_out.load(Ordering::Relaxed)
                + c.wire_stats().bytes_in.load(Ordering::Relaxed)
        })
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, (channel, _)) in channels.iter().enumerate() {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_modem {
                let message = OutboundMessage {
                    id: format!("{i}-{n}"),
                    channel: ChannelKind::Sms,
                    phone_id: format!("m{i}"),
                    to: "+15551230001".into(),
                    text: TEXT.into(),
                    subject: None,
                    source: None,
                    attachments: Vec::new(),
                    reply_to_external_id: None,
                    options: None,
                    attempt: 1,
                };
                channel.send(&message).await.expect("send");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    let bytes: u64 = channels
        .iter()
        .zip(&before)
        .map(|((c, _), b)| {
            c.wire_stats().bytes_out.load(Ordering::Relaxed)
                + c.wire_stats().bytes_in.load(Ordering::Relaxed)
                - b
        })
        .sum();
    for (_, sim) in &channels {
        assert_eq!(sim.sent_parts().len(), per_modem);
    }
    stop.cancel();
    Run {
        modems,
        per_modem,
        elapsed,
        bytes_per_sms: bytes as f64 / (modems * per_modem) as f64,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (counts, per_modem): (&[usize], usize) = if bench {
        (&[1, 2, 3, 4], 300)
    } else {
        (&[1, 2], 3)
    };
    println!("single-part SMS, simulator at {BAUD} baud over a pty, {per_modem} per modem");
    println!("modems  total_sms  seconds  sms/s_total  sms/s_per_modem  bytes/sms");
    for &modems in counts {
        let r = runtime.block_on(run(modems, per_modem));
        let total = r.modems * r.per_modem;
        let rate = total as f64 / r.elapsed.as_secs_f64();
        println!(
            "{:>6}  {:>9}  {:>7.2}  {:>11.1}  {:>15.1}  {:>9.0}",
            r.modems,
            total,
            r.elapsed.as_secs_f64(),
            rate,
            rate / r.modems as f64,
            r.bytes_per_sms
        );
    }
}
