//! `[channels.sms]`: one entry per modem. Deserialised by the daemon, checked
//! by the pure [`SmsConfig::validate`] before anything is opened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use phonerelay_channel::{ConfigIssue, Secret, SecretError, SecretSource};
use serde::{Deserialize, Serialize};

/// The longest AT command or per-part send timeout: ten minutes (a modem
/// that has not answered by then will not).
pub const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// The longest interval, timeout or backoff counted in seconds: a day.
pub const MAX_INTERVAL_SECONDS: u64 = 24 * 3600;

/// The device value that starts an in-process simulated modem instead of
/// opening a serial port.
pub const SIM_DEVICE: &str = "sim";
/// 115200 is what every USB modem's AT port runs at out of the box.
pub const DEFAULT_BAUD: u32 = 115_200;
/// The rates termios can set; anything else is a typo.
pub const STANDARD_BAUDS: [u32; 13] = [
    1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600, 1_000_000,
    3_000_000,
];
/// Status reports cost nothing extra on most networks and are the only way
/// to learn that a message reached the handset.
pub const DEFAULT_STATUS_REPORTS: bool = true;
/// 8-bit references leave 7 more octets per part for text; 16-bit ones
/// collide less when many long messages go to one recipient.
pub const DEFAULT_CONCAT_REFERENCE_BITS: u8 = 8;
/// Plain AT commands answer in milliseconds; 5 s covers slow firmware.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 5_000;
/// AT+CMGS waits for the network: 60 s is what 3GPP TS 27.005 modems allow.
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 60_000;
/// Registration after power-up or a replug can take a minute on 2G fallback.
pub const DEFAULT_REGISTRATION_TIMEOUT_SECONDS: u64 = 90;
/// Signal/registration polling; cheap, but it occupies the port.
pub const DEFAULT_HEALTH_INTERVAL_SECONDS: u64 = 30;
/// AT+CMGL=4 sweep for messages whose +CMTI we missed.
pub const DEFAULT_SWEEP_INTERVAL_SECONDS: u64 = 300;
/// Parts of a long message can arrive hours apart on a congested network;
/// after this the parts we have are delivered as they are.
pub const DEFAULT_REASSEMBLY_TIMEOUT_SECONDS: u64 = 3_600;
/// Reconnect backoff doubles from 200 ms (the driver's first delay) up to this.
pub const DEFAULT_RECONNECT_MAX_BACKOFF_SECONDS: u64 = 60;
/// TP-VP relative format covers 5 minutes to 63 weeks.
pub const MIN_VALIDITY_SECONDS: u32 = 300;
/// 63 weeks, the largest relative validity period TP-VP can say.
pub const MAX_VALIDITY_SECONDS: u32 = 63 * 7 * 24 * 3600;
/// A simulated modem answers at once unless told otherwise.
pub const DEFAULT_SIM_NETWORK_DELAY_MS: u64 = 0;
/// Modems echo commands until ATE0; the simulator does the same.
pub const DEFAULT_SIM_ECHO: bool = true;
/// Vendor URC floods are opt-in: they exist to test the parser.
pub const DEFAULT_SIM_URC_NOISE: bool = false;
/// The simulated network confirms deliveries unless told otherwise.
pub const DEFAULT_SIM_DELIVERY_REPORTS: bool = true;

/// The `[channels.sms]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// One entry per modem (`[[channels.sms.modems]]`); each becomes one
    /// endpoint routed by its `phone_id`.
    #[serde(default)]
    pub modems: Vec<ModemConfig>,
}

/// Preferred message storage for `AT+CPMS` (read, write and receive).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Storage {
    /// The SIM card: survives moving the SIM to another modem.
    #[default]
    SM,
    /// The modem's own memory.
    ME,
    /// SIM and modem memory together, as the modem sees fit.
    MT,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::SM => "SM",
            Storage::ME => "ME",
            Storage::MT => "MT",
        }
    }
}

/// One GSM/LTE modem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModemConfig {
    /// The endpoint name that routes sends here (`phone_id` in the API).
    pub phone_id: String,
    /// The AT port, e.g. `/dev/ttyUSB2` or `/dev/serial/by-id/...`; relative
    /// paths are relative to the config file. The literal `"sim"` starts an
    /// in-process simulated modem.
    pub device: String,
    /// Serial line speed in bits per second.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// SIM PIN, inline or `${ENV_VAR}`; only needed if the SIM asks for one.
    #[serde(default)]
    pub pin: Option<Secret>,
    /// A file holding the SIM PIN (systemd `LoadCredential=`); exclusive
    /// with `pin`.
    #[serde(
        default,
        deserialize_with = "phonerelay_channel::deserialize_secret_file",
        serialize_with = "phonerelay_channel::serialize_secret_file"
    )]
    pub pin_file: Option<PathBuf>,
    /// SMS centre number (E.164) to use instead of the one stored on the SIM.
    #[serde(default)]
    pub smsc: Option<String>,
    /// The home country of the SIM, as an ISO 3166-1 alpha-2 code in
    /// capitals (`"GB"`, `"US"`). Networks give many senders in national
    /// format (`07911 123456`); with this they are written in E.164
    /// (`+447911123456`), as the relay sends to them, so replies reach the
    /// conversation they belong to. Absent: senders are kept as the network
    /// gives them, and only international ones are E.164.
    #[serde(default)]
    pub country: Option<String>,
    /// Message storage the modem uses for received messages. With `ME`,
    /// class 2 messages still go to the SIM, and sweeps list both: every
    /// message on the SIM is taken in and deleted, as with `SM`.
    #[serde(default)]
    pub storage: Storage,
    /// Ask the network for a delivery report for every part sent.
    #[serde(default = "default_status_reports")]
    pub status_reports: bool,
    /// How long the SMSC keeps trying to deliver, in seconds; absent: the
    /// SMSC's own default.
    #[serde(default)]
    pub validity_seconds: Option<u32>,
    /// Concatenation reference size for long messages: 8 or 16 bits. Each
    /// long message takes the next value of the modem's counter, kept in
    /// the store (`crate::concat_reference`), so a reference comes round
    /// again only after 256 (or 65,536) long messages; 16 bits cost one
    /// character of text per part.
    #[serde(default = "default_concat_reference_bits")]
    pub concat_reference_bits: u8,
    /// The most parts one message may take, 1 to 255: a longer text is
    /// refused when the API accepts it (422, field `text`). Many SMS
    /// centres and handsets fail to join more than about ten, and such a
    /// failure shows only after earlier parts went out. Absent: as many as
    /// the longest plain text the API takes (1,530 characters) needs, 10
    /// parts with 8-bit references, 11 with 16-bit ones
    /// ([`ModemConfig::parts_limit`]).
    #[serde(default)]
    pub max_parts: Option<u8>,
    /// Upper bound for one plain AT command, in milliseconds (`AT+CMGL`
    /// waits at least 30 s for its first line, each line renewing it).
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    /// Upper bound for one AT+CMGS (one part), in milliseconds.
    #[serde(default = "default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// How long to wait for network registration at start-up, in seconds.
    #[serde(default = "default_registration_timeout_seconds")]
    pub registration_timeout_seconds: u64,
    /// Interval between signal/registration/operator polls, in seconds.
    #[serde(default = "default_health_interval_seconds")]
    pub health_interval_seconds: u64,
    /// Interval between AT+CMGL sweeps of the message storage, in seconds.
    #[serde(default = "default_sweep_interval_seconds")]
    pub sweep_interval_seconds: u64,
    /// How long to wait for the missing parts of a long message, in seconds.
    #[serde(default = "default_reassembly_timeout_seconds")]
    pub reassembly_timeout_seconds: u64,
    /// The longest wait between reconnect attempts, in seconds.
    #[serde(default = "default_reconnect_max_backoff_seconds")]
    pub reconnect_max_backoff_seconds: u64,
    /// Simulator settings (`[channels.sms.modems.sim]`); only with
    /// `device = "sim"`.
    #[serde(default)]
    pub sim: Option<SimSettings>,
}

/// Behaviour of a simulated modem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// Time the simulated network takes to accept each part, in ms.
    #[serde(default = "default_sim_network_delay_ms")]
    pub network_delay_ms: u64,
    /// Emulate a serial line of this speed (both directions paced at
    /// baud/10 bytes per second); absent: as fast as the pty goes.
    #[serde(default)]
    pub baud_limit: Option<u32>,
    /// Echo commands back until ATE0, like a real modem after power-up.
    #[serde(default = "default_sim_echo")]
    pub echo: bool,
    /// Interleave vendor URCs (^RSSI, ^MODE...) with answers.
    #[serde(default = "default_sim_urc_noise")]
    pub urc_noise: bool,
    /// Send delivery reports for parts that asked for one.
    #[serde(default = "default_sim_delivery_reports")]
    pub delivery_reports: bool,
    /// A PIN the simulated SIM demands before it registers.
    #[serde(default)]
    pub pin: Option<Secret>,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            network_delay_ms: DEFAULT_SIM_NETWORK_DELAY_MS,
            baud_limit: None,
            echo: DEFAULT_SIM_ECHO,
            urc_noise: DEFAULT_SIM_URC_NOISE,
            delivery_reports: DEFAULT_SIM_DELIVERY_REPORTS,
            pin: None,
        }
    }
}

fn default_baud() -> u32 {
    DEFAULT_BAUD
}
fn default_status_reports() -> bool {
    DEFAULT_STATUS_REPORTS
}
fn default_concat_reference_bits() -> u8 {
    DEFAULT_CONCAT_REFERENCE_BITS
}
fn default_command_timeout_ms() -> u64 {
    DEFAULT_COMMAND_TIMEOUT_MS
}
fn default_send_timeout_ms() -> u64 {
    DEFAULT_SEND_TIMEOUT_MS
}
fn default_registration_timeout_seconds() -> u64 {
    DEFAULT_REGISTRATION_TIMEOUT_SECONDS
}
fn default_health_interval_seconds() -> u64 {
    DEFAULT_HEALTH_INTERVAL_SECONDS
}
fn default_sweep_interval_seconds() -> u64 {
    DEFAULT_SWEEP_INTERVAL_SECONDS
}
fn default_reassembly_timeout_seconds() -> u64 {
    DEFAULT_REASSEMBLY_TIMEOUT_SECONDS
}
fn default_reconnect_max_backoff_seconds() -> u64 {
    DEFAULT_RECONNECT_MAX_BACKOFF_SECONDS
}
fn default_sim_network_delay_ms() -> u64 {
    DEFAULT_SIM_NETWORK_DELAY_MS
}
fn default_sim_echo() -> bool {
    DEFAULT_SIM_ECHO
}
fn default_sim_urc_noise() -> bool {
    DEFAULT_SIM_URC_NOISE
}
fn default_sim_delivery_reports() -> bool {
    DEFAULT_SIM_DELIVERY_REPORTS
}

impl ModemConfig {
    /// The most parts one message may take: `max_parts`, or as many as
    /// the longest plain text the API takes for SMS needs with this
    /// modem's reference size (153 septets a part with an 8-bit reference,
    /// 152 with a 16-bit one), so that every plain text the API takes is
    /// sent.
    pub fn parts_limit(&self) -> usize {
        let per_part = if self.concat_reference_bits == 16 {
            152
        } else {
            153
        };
        let longest =
            phonerelay_channel::SendLimits::of(phonerelay_channel::ChannelKind::Sms).max_text_chars;
        self.max_parts
            .map_or_else(|| longest.div_ceil(per_part), usize::from)
    }

    /// A modem with every optional field at its default.
    pub fn new(phone_id: impl Into<String>, device: impl Into<String>) -> Self {
        Self {
            phone_id: phone_id.into(),
            device: device.into(),
            baud: DEFAULT_BAUD,
            pin: None,
            pin_file: None,
            smsc: None,
            country: None,
            storage: Storage::default(),
            status_reports: DEFAULT_STATUS_REPORTS,
            validity_seconds: None,
            concat_reference_bits: DEFAULT_CONCAT_REFERENCE_BITS,
            max_parts: None,
            command_timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            registration_timeout_seconds: DEFAULT_REGISTRATION_TIMEOUT_SECONDS,
            health_interval_seconds: DEFAULT_HEALTH_INTERVAL_SECONDS,
            sweep_interval_seconds: DEFAULT_SWEEP_INTERVAL_SECONDS,
            reassembly_timeout_seconds: DEFAULT_REASSEMBLY_TIMEOUT_SECONDS,
            reconnect_max_backoff_seconds: DEFAULT_RECONNECT_MAX_BACKOFF_SECONDS,
            sim: None,
        }
    }

    pub fn is_sim(&self) -> bool {
        self.device == SIM_DEVICE
    }

    /// The device path, resolved against the config file's directory.
    pub fn device_path(&self, base_dir: &Path) -> PathBuf {
        base_dir.join(&self.device)
    }

    /// The SIM PIN, from `pin` (inline or `${ENV}`) or `pin_file` (a
    /// credential's name under systemd, else relative to the config file's
    /// folder: [`phonerelay_channel::secret_file_path`]).
    pub fn resolve_pin(&self, base_dir: &Path) -> Result<Option<Secret>, SecretError> {
        let credentials = phonerelay_channel::credentials_dir();
        let file = self
            .pin_file
            .as_ref()
            .map(|f| phonerelay_channel::secret_file_path(f, base_dir, credentials.as_deref()));
        SecretSource {
            key: "pin",
            inline: self.pin.as_ref(),
            file: file.as_deref(),
        }
        .resolve_optional()
    }

    /// How this modem writes senders' numbers; `None` if `country` is not
    /// a code the numbering plans know ([`Self::validate`] says so).
    pub fn numbering(&self) -> Option<crate::codec::Numbering> {
        crate::codec::Numbering::for_country(self.country.as_deref())
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }

    /// Checks of one modem entry's values alone; keys are relative to the
    /// entry. Pure: what the host has (the device, the PIN's variable or
    /// file) is [`Self::check_host`]'s.
    fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, reason: &str| issues.push(ConfigIssue::new(key, reason));
        if self.phone_id.trim().is_empty() {
            issue("phone_id", "must not be empty");
        } else if !self
            .phone_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        {
            issue("phone_id", "only letters, digits, '-', '_', '.', '+'");
        }
        if self.device.is_empty() {
            issue(
                "device",
                "must not be empty (a serial device path or \"sim\")",
            );
        } else if let Some(why) = phonerelay_channel::config_path_issue(Path::new(&self.device)) {
            issue("device", why);
        }
        if let Some(file) = &self.pin_file
            && let Some(why) = phonerelay_channel::config_path_issue(file)
        {
            issue("pin_file", why);
        }
        if !STANDARD_BAUDS.contains(&self.baud) {
            issue("baud", "not a standard rate (e.g. 9600, 115200, 460800)");
        }
        if let Some(smsc) = &self.smsc
            && phonerelay_channel::validate_address(phonerelay_channel::ChannelKind::Sms, smsc)
                .is_err()
        {
            issue("smsc", "must be an E.164 number like +447785016005");
        }
        if self.numbering().is_none() {
            issue(
                "country",
                "not an ISO 3166-1 alpha-2 country code in capitals (e.g. \"GB\", \"US\")",
            );
        }
        if let Some(v) = self.validity_seconds
            && !(MIN_VALIDITY_SECONDS..=MAX_VALIDITY_SECONDS).contains(&v)
        {
            issue(
                "validity_seconds",
                "must be between 300 (5 min) and 38102400 (63 weeks)",
            );
        }
        if !matches!(self.concat_reference_bits, 8 | 16) {
            issue("concat_reference_bits", "must be 8 or 16");
        }
        if self.max_parts == Some(0) {
            issue("max_parts", "must be from 1 to 255");
        }
        // Each is added to clock readings or turned into milliseconds, so
        // each has a ceiling as well as a floor: a value meant in other
        // units passes neither, instead of overflowing at run time.
        for (key, value, max, unit) in [
            (
                "command_timeout_ms",
                self.command_timeout_ms,
                MAX_TIMEOUT_MS,
                "ten minutes",
            ),
            (
                "send_timeout_ms",
                self.send_timeout_ms,
                MAX_TIMEOUT_MS,
                "ten minutes",
            ),
            (
                "registration_timeout_seconds",
                self.registration_timeout_seconds,
                MAX_INTERVAL_SECONDS,
                "a day",
            ),
            (
                "health_interval_seconds",
                self.health_interval_seconds,
                MAX_INTERVAL_SECONDS,
                "a day",
            ),
            (
                "sweep_interval_seconds",
                self.sweep_interval_seconds,
                MAX_INTERVAL_SECONDS,
                "a day",
            ),
            (
                "reassembly_timeout_seconds",
                self.reassembly_timeout_seconds,
                MAX_INTERVAL_SECONDS,
                "a day",
            ),
            (
                "reconnect_max_backoff_seconds",
                self.reconnect_max_backoff_seconds,
                MAX_INTERVAL_SECONDS,
                "a day",
            ),
        ] {
            if value == 0 {
                issue(key, "must be greater than 0");
            } else if value > max {
                issue(key, &format!("must be at most {max} ({unit})"));
            }
        }
        if self.send_timeout_ms != 0 && self.send_timeout_ms < self.command_timeout_ms {
            issue(
                "send_timeout_ms",
                "must not be shorter than command_timeout_ms",
            );
        }
        if let Some(sim) = &self.sim {
            if !self.is_sim() {
                issue("sim", "only allowed with device = \"sim\"");
            }
            if let Some(limit) = sim.baud_limit
                && !STANDARD_BAUDS.contains(&limit)
            {
                issue("sim.baud_limit", "not a standard rate (e.g. 9600, 115200)");
            }
            if let Some(pin) = &sim.pin
                && !is_valid_pin(pin.expose())
            {
                issue("sim.pin", "a SIM PIN is 4 to 8 digits");
            }
        }
        issues
    }

    /// Checks of what one modem entry names on this host: its device path
    /// is there (an absent one may come later: [`ConfigIssue::absent`]),
    /// and its PIN resolves (`${ENV}`, `pin_file`) to a valid PIN, as the
    /// adapter resolves it at start, so `check` fails on what `serve`
    /// would. Reading the environment and the files the config names is
    /// all it does: a missing credential must fail here, not at 3 am.
    fn check_host(&self, base_dir: &Path) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !self.device.is_empty() && !self.is_sim() {
            let path = self.device_path(base_dir);
            // Not "no such file" when it cannot be looked for (a directory
            // on the way this user may not search, or that is a file):
            // the operator would look for a modem that is there.
            match path.try_exists() {
                Ok(true) => {}
                Ok(false) => issues.push(ConfigIssue::absent(
                    "device",
                    format!("no such file: {}", path.display()),
                )),
                Err(e) => issues.push(ConfigIssue::absent(
                    "device",
                    format!("cannot look for {}: {e}", path.display()),
                )),
            }
        }
        match self.resolve_pin(base_dir) {
            Err(error) => issues.push(error.into_issue()),
            Ok(Some(pin)) if !is_valid_pin(pin.expose()) => {
                let key = if self.pin_file.is_some() {
                    "pin_file"
                } else {
                    "pin"
                };
                // Never echo the value: it is a secret even when malformed.
                issues.push(ConfigIssue::new(key, "a SIM PIN is 4 to 8 digits"));
            }
            Ok(_) => {}
        }
        issues
    }
}

fn is_valid_pin(pin: &str) -> bool {
    (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

impl SmsConfig {
    /// Every problem in the table's values, keyed relative to
    /// `[channels.sms]` (`modems[0].device`). Pure: no file, device or
    /// environment is looked at; [`Self::check_host`] does that.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut devices: HashMap<&str, usize> = HashMap::new();
        for (i, modem) in self.modems.iter().enumerate() {
            let parent = format!("modems[{i}]");
            issues.extend(
                modem
                    .validate()
                    .into_iter()
                    .map(|issue| issue.under(&parent)),
            );
            if let Some(first) = seen.insert(modem.phone_id.as_str(), i) {
                issues.push(
                    ConfigIssue::new(
                        "phone_id",
                        format!("duplicate: also used by modems[{first}]"),
                    )
                    .under(&parent),
                );
            }
            if modem.is_sim() || modem.device.is_empty() {
                continue;
            }
            if let Some(first) = devices.insert(modem.device.as_str(), i) {
                issues.push(port_taken(first).under(&parent));
            }
        }
        issues
    }

    /// What the table names on this host, keyed as [`Self::validate`]'s:
    /// each modem's device and PIN ([`ModemConfig`]'s checks), and one
    /// port under two names (`/dev/ttyUSB2` and a `/dev/serial/by-id/…`
    /// link to it), which only the file system can tell.
    pub fn check_host(&self, base_dir: &Path) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut ports: HashMap<PathBuf, usize> = HashMap::new();
        for (i, modem) in self.modems.iter().enumerate() {
            let parent = format!("modems[{i}]");
            issues.extend(
                modem
                    .check_host(base_dir)
                    .into_iter()
                    .map(|issue| issue.under(&parent)),
            );
            if modem.is_sim() || modem.device.is_empty() {
                continue;
            }
            let named = modem.device_path(base_dir);
            let port = std::fs::canonicalize(&named).unwrap_or(named);
            match ports.insert(port, i) {
                // The same name twice is `validate`'s to report.
                Some(first) if self.modems[first].device != modem.device => {
                    issues.push(port_taken(first).under(&parent));
                }
                _ => {}
            }
        }
        issues
    }

    /// [`Self::validate`] then [`Self::check_host`]: all that `check`
    /// and `serve` hold the table to.
    pub fn check(&self, base_dir: &Path) -> Vec<ConfigIssue> {
        let mut issues = self.validate();
        issues.extend(self.check_host(base_dir));
        issues
    }
}

fn port_taken(first: usize) -> ConfigIssue {
    ConfigIssue::new(
        "device",
        format!("already used by modems[{first}]; a port has one owner"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SmsConfig, toml::de::Error> {
        toml::from_str(text)
    }

    fn sim_modem(phone_id: &str) -> ModemConfig {
        ModemConfig::new(phone_id, SIM_DEVICE)
    }

    fn keys(config: &SmsConfig) -> Vec<String> {
        config
            .check(Path::new("/"))
            .into_iter()
            .map(|i| i.key)
            .collect()
    }

    #[test]
    fn defaults_from_minimal_toml() {
        let config = parse(
            r#"
            [[modems]]
            phone_id = "main"
            device = "sim"
            "#,
        )
        .unwrap();
        assert_eq!(config.modems[0], sim_modem("main"));
        assert!(config.check(Path::new("/")).is_empty());
    }

    #[test]
    fn full_toml_with_sim_table() {
        let config = parse(
            r#"
            [[modems]]
            phone_id = "main"
            device = "sim"
            baud = 460800
            pin = "1234"
            smsc = "+447785016005"
            storage = "ME"
            status_reports = false
            validity_seconds = 86400
            concat_reference_bits = 16
            command_timeout_ms = 1000
            send_timeout_ms = 2000
            registration_timeout_seconds = 5
            health_interval_seconds = 10
            sweep_interval_seconds = 20
            reassembly_timeout_seconds = 30
            reconnect_max_backoff_seconds = 4
            [modems.sim]
            network_delay_ms = 50
            baud_limit = 115200
            echo = false
            urc_noise = true
            delivery_reports = false
            pin = "4321"
            "#,
        )
        .unwrap();
        let modem = &config.modems[0];
        assert_eq!(modem.storage, Storage::ME);
        assert_eq!(modem.sim.as_ref().unwrap().baud_limit, Some(115_200));
        assert!(config.check(Path::new("/")).is_empty());
    }

    #[test]
    fn unknown_keys_rejected() {
        let top = parse("modem = []").unwrap_err();
        assert!(top.to_string().contains("unknown field"), "{top}");
        let inner = parse(
            r#"
            [[modems]]
            phone_id = "a"
            device = "sim"
            baudrate = 9600
            "#,
        )
        .unwrap_err();
        assert!(inner.to_string().contains("unknown field"), "{inner}");
        let sim = parse(
            r#"
            [[modems]]
            phone_id = "a"
            device = "sim"
            [modems.sim]
            delay = 5
            "#,
        )
        .unwrap_err();
        assert!(sim.to_string().contains("unknown field"), "{sim}");
    }

    #[test]
    fn bad_storage_rejected() {
        let err = parse(
            r#"
            [[modems]]
            phone_id = "a"
            device = "sim"
            storage = "SD"
            "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn duplicate_phone_ids() {
        let config = SmsConfig {
            modems: vec![sim_modem("a"), sim_modem("b"), sim_modem("a")],
        };
        let issues = config.check(Path::new("/"));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "modems[2].phone_id");
        assert!(issues[0].reason.contains("modems[0]"));
    }

    #[test]
    fn empty_phone_id_and_device() {
        let config = SmsConfig {
            modems: vec![ModemConfig::new("", "")],
        };
        assert_eq!(keys(&config), ["modems[0].phone_id", "modems[0].device"]);
        let config = SmsConfig {
            modems: vec![sim_modem("has space")],
        };
        assert_eq!(keys(&config), ["modems[0].phone_id"]);
    }

    /// `validate` looks at the table alone: a device and a PIN file that
    /// are not on this host are `check_host`'s to find, and `check` has
    /// both.
    #[test]
    fn validate_is_pure_and_the_host_is_checked_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut modem = ModemConfig::new("a", "ttyUSB-not-here");
        modem.pin_file = Some("no-such-pin".into());
        let config = SmsConfig {
            modems: vec![modem],
        };
        assert_eq!(config.validate(), []);
        let host: Vec<String> = config
            .check_host(dir.path())
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(host, ["modems[0].device", "modems[0].pin_file"]);
        assert_eq!(config.check(dir.path()).len(), 2);
    }

    #[test]
    fn missing_device_path() {
        let dir = tempfile::tempdir().unwrap();
        let config = SmsConfig {
            modems: vec![ModemConfig::new("a", "ttyUSB-not-here")],
        };
        let issues = config.check(dir.path());
        // The path as looked for, so a relative one shows where.
        let looked_for = dir.path().join("ttyUSB-not-here");
        assert_eq!(
            issues,
            [ConfigIssue::absent(
                "modems[0].device",
                format!("no such file: {}", looked_for.display())
            )]
        );
        // Relative to the config directory, so the same file name passes
        // once it exists there.
        std::fs::write(dir.path().join("ttyUSB-not-here"), "").unwrap();
        assert!(config.check(dir.path()).is_empty());
    }

    /// A path that cannot be looked for is said to be so, with why, not
    /// reported missing.
    #[test]
    fn a_device_path_that_cannot_be_looked_for_says_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("serial"), "").unwrap();
        let config = SmsConfig {
            modems: vec![ModemConfig::new("a", "serial/by-id/modem")],
        };
        let issues = config.check(dir.path());
        assert_eq!(issues.len(), 1, "{issues:?}");
        let looked_for = dir.path().join("serial/by-id/modem");
        let message = &issues[0].reason;
        assert!(
            message.starts_with(&format!("cannot look for {}: ", looked_for.display())),
            "{message}"
        );
        assert!(!message.contains("no such file"), "{message}");
    }

    #[test]
    fn same_device_twice() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tty"), "").unwrap();
        let config = SmsConfig {
            modems: vec![ModemConfig::new("a", "tty"), ModemConfig::new("b", "tty")],
        };
        let issues = config.check(dir.path());
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "modems[1].device");
    }

    #[test]
    fn the_same_port_by_two_names_is_one_port() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ttyUSB2"), "").unwrap();
        std::os::unix::fs::symlink(dir.path().join("ttyUSB2"), dir.path().join("by-id-port0"))
            .unwrap();
        let config = SmsConfig {
            modems: vec![
                ModemConfig::new("a", "ttyUSB2"),
                ModemConfig::new("b", "by-id-port0"),
            ],
        };
        let issues = config.check(dir.path());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "modems[1].device");
        assert!(issues[0].reason.contains("modems[0]"), "{issues:?}");
    }

    #[test]
    fn timeouts_and_intervals_have_a_ceiling() {
        let mut modem = sim_modem("a");
        modem.command_timeout_ms = MAX_TIMEOUT_MS;
        modem.send_timeout_ms = MAX_TIMEOUT_MS;
        modem.reassembly_timeout_seconds = MAX_INTERVAL_SECONDS;
        let at_ceiling = SmsConfig {
            modems: vec![modem.clone()],
        };
        assert_eq!(keys(&at_ceiling), Vec::<String>::new());
        modem.send_timeout_ms = MAX_TIMEOUT_MS + 1;
        // Seconds that overflowed when turned into milliseconds.
        modem.reassembly_timeout_seconds = 20_000_000_000_000_000;
        modem.registration_timeout_seconds = u64::MAX;
        modem.health_interval_seconds = u64::MAX;
        modem.sweep_interval_seconds = u64::MAX;
        modem.reconnect_max_backoff_seconds = u64::MAX;
        let over = SmsConfig {
            modems: vec![modem],
        };
        assert_eq!(
            keys(&over),
            [
                "modems[0].send_timeout_ms",
                "modems[0].registration_timeout_seconds",
                "modems[0].health_interval_seconds",
                "modems[0].sweep_interval_seconds",
                "modems[0].reassembly_timeout_seconds",
                "modems[0].reconnect_max_backoff_seconds",
            ]
        );
    }

    #[test]
    fn non_standard_baud() {
        let mut modem = sim_modem("a");
        modem.baud = 115_000;
        let config = SmsConfig {
            modems: vec![modem],
        };
        assert_eq!(keys(&config), ["modems[0].baud"]);
    }

    #[test]
    fn zero_timeouts() {
        let mut modem = sim_modem("a");
        modem.command_timeout_ms = 0;
        modem.send_timeout_ms = 0;
        modem.registration_timeout_seconds = 0;
        modem.health_interval_seconds = 0;
        modem.sweep_interval_seconds = 0;
        modem.reassembly_timeout_seconds = 0;
        modem.reconnect_max_backoff_seconds = 0;
        let config = SmsConfig {
            modems: vec![modem],
        };
        assert_eq!(
            keys(&config),
            [
                "modems[0].command_timeout_ms",
                "modems[0].send_timeout_ms",
                "modems[0].registration_timeout_seconds",
                "modems[0].health_interval_seconds",
                "modems[0].sweep_interval_seconds",
                "modems[0].reassembly_timeout_seconds",
                "modems[0].reconnect_max_backoff_seconds",
            ]
        );
    }

    #[test]
    fn send_timeout_shorter_than_command_timeout() {
        let mut modem = sim_modem("a");
        modem.send_timeout_ms = 100;
        modem.command_timeout_ms = 1000;
        let config = SmsConfig {
            modems: vec![modem],
        };
        assert_eq!(keys(&config), ["modems[0].send_timeout_ms"]);
    }

    #[test]
    fn pin_rules_and_no_leak() {
        let mut modem = sim_modem("a");
        modem.pin = Some(Secret::new("12ab"));
        let config = SmsConfig {
            modems: vec![modem.clone()],
        };
        let issues = config.check(Path::new("/"));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "modems[0].pin");
        assert!(!issues[0].reason.contains("12ab"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pin"), "1234\n").unwrap();
        modem.pin = Some(Secret::new("${SIM_PIN}"));
        modem.pin_file = Some(PathBuf::from("pin"));
        let config = SmsConfig {
            modems: vec![modem.clone()],
        };
        let issues = config.check(dir.path());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].reason.contains("not both"));

        // A pin_file that is not there is reported at check time.
        modem.pin = None;
        modem.pin_file = Some(PathBuf::from("missing-pin"));
        let config = SmsConfig {
            modems: vec![modem.clone()],
        };
        let issues = config.check(dir.path());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "modems[0].pin_file");
        assert!(issues[0].reason.contains("missing-pin"), "{issues:?}");

        // The PIN itself given as pin_file: named as the file that cannot
        // be read, and not shown.
        modem.pin_file = Some(PathBuf::from("98765"));
        let config = SmsConfig {
            modems: vec![modem],
        };
        let issues = config.check(dir.path());
        assert_eq!(issues[0].key, "modems[0].pin_file");
        assert!(!issues[0].reason.contains("98765"), "{issues:?}");
        assert!(
            issues[0].reason.contains("5 digits, not shown"),
            "{issues:?}"
        );
    }

    #[test]
    fn a_resolved_pin_is_held_to_the_pin_rule() {
        let dir = tempfile::tempdir().unwrap();
        let mut modem = sim_modem("a");
        modem.pin_file = Some(PathBuf::from("pin"));
        for bad in ["12 34\n", "123456789\n"] {
            std::fs::write(dir.path().join("pin"), bad).unwrap();
            let config = SmsConfig {
                modems: vec![modem.clone()],
            };
            assert_eq!(
                config.check(dir.path()),
                [ConfigIssue::new(
                    "modems[0].pin_file",
                    "a SIM PIN is 4 to 8 digits"
                )],
                "{bad:?}"
            );
        }
        // An empty file (a credential left empty) says so.
        std::fs::write(dir.path().join("pin"), "\n").unwrap();
        let config = SmsConfig {
            modems: vec![modem.clone()],
        };
        let empty = format!("file {} is empty", dir.path().join("pin").display());
        assert_eq!(
            config.check(dir.path()),
            [ConfigIssue::new("modems[0].pin_file", empty)]
        );
        std::fs::write(dir.path().join("pin"), "1234\n").unwrap();
        let config = SmsConfig {
            modems: vec![modem],
        };
        assert!(config.check(dir.path()).is_empty());

        // An unset variable is named once under the key, never "pin: pin:".
        let mut modem = sim_modem("a");
        modem.pin = Some(Secret::new("${PHONERELAY_TEST_SURELY_UNSET_VAR}"));
        let config = SmsConfig {
            modems: vec![modem],
        };
        assert_eq!(
            config.check(dir.path()),
            [ConfigIssue::new(
                "modems[0].pin",
                "environment variable PHONERELAY_TEST_SURELY_UNSET_VAR is not set"
            )]
        );
    }

    /// Absent, the part limit takes every plain text the API takes: 1,530
    /// GSM 7-bit characters are 10 parts with an 8-bit reference and 11
    /// with a 16-bit one (before, a fixed 10 refused the longest plain
    /// texts of a 16-bit endpoint).
    #[test]
    fn the_part_limit_takes_every_plain_text_the_api_takes() {
        let longest = "a".repeat(1530);
        let mut modem = sim_modem("a");
        for bits in [8, 16] {
            modem.concat_reference_bits = bits;
            let (_, parts) = phonerelay_sms_pdu::classify_text_with(&longest, bits == 16);
            assert_eq!(modem.parts_limit(), parts, "{bits}-bit");
        }
        assert_eq!(modem.parts_limit(), 11);
        modem.max_parts = Some(3);
        assert_eq!(modem.parts_limit(), 3);
    }

    #[test]
    fn smsc_validity_and_concat_bits() {
        let mut modem = sim_modem("a");
        modem.smsc = Some("0044778".into());
        modem.validity_seconds = Some(60);
        modem.concat_reference_bits = 12;
        modem.max_parts = Some(0);
        let config = SmsConfig {
            modems: vec![modem],
        };
        assert_eq!(
            keys(&config),
            [
                "modems[0].smsc",
                "modems[0].validity_seconds",
                "modems[0].concat_reference_bits",
                "modems[0].max_parts"
            ]
        );
    }

    #[test]
    fn country_must_be_a_code_the_numbering_plans_know() {
        let mut modem = sim_modem("a");
        modem.country = Some("GB".into());
        let config = SmsConfig {
            modems: vec![modem.clone()],
        };
        assert!(keys(&config).is_empty());
        for bad in ["UK", "gb", "GBR", ""] {
            modem.country = Some(bad.into());
            let config = SmsConfig {
                modems: vec![modem.clone()],
            };
            assert_eq!(keys(&config), ["modems[0].country"], "{bad:?}");
        }
    }

    #[test]
    fn sim_table_only_for_sim_device() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tty"), "").unwrap();
        let mut modem = ModemConfig::new("a", "tty");
        modem.sim = Some(SimSettings {
            baud_limit: Some(1234),
            pin: Some(Secret::new("12")),
            ..SimSettings::default()
        });
        let config = SmsConfig {
            modems: vec![modem],
        };
        let found: Vec<String> = config
            .check(dir.path())
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(
            found,
            [
                "modems[0].sim",
                "modems[0].sim.baud_limit",
                "modems[0].sim.pin"
            ]
        );
    }
}
