//! The SMS channel: GSM/LTE modems on serial ports, driven with AT commands
//! in PDU mode, plus a pseudo-terminal modem simulator.

pub mod config;

pub use config::{ModemConfig, SimSettings, SmsConfig, Storage};
