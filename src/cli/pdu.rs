//! `phonerelay pdu decode|encode`: the codec on the command line, as JSON,
//! for operators reading a modem's log.

use clap::{Subcommand, ValueEnum};
use phonerelay_sms_pdu::{Direction, SubmitOptions, decode, encode_submit};

use crate::exit::ExitError;

#[derive(Debug, Subcommand)]
pub enum PduCommand {
    /// Decode a PDU as printed by the modem (with the SMSC octets first).
    Decode {
        /// The PDU in hex, as the modem printed it
        hex: String,
        /// `received` for +CMT/+CMGL/+CDS output (DELIVER, STATUS-REPORT);
        /// `sent` for what was written after AT+CMGS (SUBMIT).
        #[arg(long, value_enum, default_value = "received")]
        direction: PduDirection,
    },
    /// Encode a message as the SMS-SUBMIT part(s) AT+CMGS takes.
    Encode {
        /// The recipient's number: +15551230001, or digits as dialled
        #[arg(long)]
        to: String,
        /// The message's text; a long one makes several parts
        #[arg(long)]
        text: String,
        /// SMS centre number; default: the modem's (AT+CSCA)
        #[arg(long)]
        smsc: Option<String>,
        /// Ask for a delivery report
        #[arg(long)]
        status_report: bool,
        /// Use UCS-2 even when GSM 7-bit fits
        #[arg(long)]
        ucs2: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PduDirection {
    Received,
    Sent,
}

pub fn run(command: &PduCommand) -> Result<(), ExitError> {
    let json = match command {
        PduCommand::Decode { hex, direction } => {
            let direction = match direction {
                PduDirection::Received => Direction::MtFromNetwork,
                PduDirection::Sent => Direction::MoToNetwork,
            };
            let pdu = decode(hex.trim(), direction)
                .map_err(|e| ExitError::Config(format!("cannot decode: {e}")))?;
            serde_json::to_string_pretty(&pdu)
        }
        PduCommand::Encode {
            to,
            text,
            smsc,
            status_report,
            ucs2,
        } => {
            let options = SubmitOptions {
                smsc: smsc.clone(),
                request_status_report: *status_report,
                force_ucs2: *ucs2,
                ..SubmitOptions::default()
            };
            let parts = encode_submit(to, text, &options)
                .map_err(|e| ExitError::Config(format!("cannot encode: {e}")))?;
            serde_json::to_string_pretty(&parts)
        }
    };
    outln!("{}", json.map_err(|e| ExitError::Runtime(e.to_string()))?);
    Ok(())
}
