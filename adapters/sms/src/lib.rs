//! The SMS channel: GSM/LTE modems on serial ports, driven with AT commands
//! in PDU mode, plus a pseudo-terminal modem simulator.

pub mod adapter;
pub mod codec;
pub mod concat_reference;
pub mod config;
pub mod driver;
pub mod sim;

pub use adapter::{SmsChannel, build, build_modem};
pub use config::{ModemConfig, SimSettings, SmsConfig, Storage};
pub use driver::pin_record::PinRecordKey;
