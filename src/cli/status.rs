use clap::Args;
use reqwest::Method;

use super::client::LocalClient;
use crate::api::human::{age, storage_summary};
use crate::api::system::StatusReport;
use crate::config::LoadedConfig;
use crate::exit::ExitError;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the raw JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub async fn run(loaded: &LoadedConfig, args: &StatusArgs) -> Result<(), ExitError> {
    let client = LocalClient::new(loaded)?;
    let report: StatusReport = client
        .call(Method::GET, "/api/v1/status", None::<&()>)
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render(&report));
    }
    if report.status == "ready" {
        Ok(())
    } else {
        Err(ExitError::Runtime("not ready: see the table above".into()))
    }
}

/// The at-a-glance table: one line per endpoint.
pub fn render(report: &StatusReport) -> String {
    let mut out = format!(
        "phonerelay {}  {}  store: {}",
        report.version, report.status, report.store
    );
    if let Some(storage) = &report.storage {
        out.push_str(&format!(" ({})", storage_summary(storage)));
    }
    out.push_str("\n\n");
    let header = [
        "CHANNEL",
        "PHONE_ID",
        "STATE",
        "QUEUED",
        "OLDEST",
        "SENDING",
        "SENT/1h",
        "FAILED/1h",
        "DETAIL",
    ];
    let mut rows: Vec<[String; 9]> = vec![header.map(String::from)];
    for e in &report.endpoints {
        let mut detail = e.summary.clone();
        for (k, v) in &e.details {
            detail.push_str(&format!("  {k}={v}"));
        }
        rows.push([
            e.channel.clone(),
            e.phone_id.clone(),
            e.state.clone(),
            e.queued.to_string(),
            e.oldest_queued_seconds.map_or("-".into(), age),
            e.sending.to_string(),
            e.sent_last_hour.to_string(),
            e.failed_last_hour.to_string(),
            detail,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if report.endpoints.is_empty() {
        out.push_str("(no endpoints configured)\n");
    }
    if let Some(relay) = &report.relay {
        out.push_str(&format!(
            "\nrelay {} ({}, phone_id {})  last reached: {}  inbound pending: {}  dead letters: {}\n",
            relay.url,
            relay.mode,
            relay.phone_id,
            relay.last_reached.as_deref().unwrap_or("never"),
            relay.inbound_pending,
            relay.inbound_dead,
        ));
        if let Some(error) = &relay.last_error {
            out.push_str(&format!("relay last error: {error}\n"));
        }
        if relay.inbound_dead > 0 {
            out.push_str(
                "see `phonerelay inbound dead`; retry with `phonerelay inbound retry ID`\n",
            );
        }
    }
    out
}
