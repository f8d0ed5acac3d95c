use std::fmt;

/// One problem found by an adapter config's pure `validate()`: the key path
/// relative to the adapter's section (`modems[0].device`) and why.
/// The daemon prefixes the section (`channels.sms.`) when it prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub reason: String,
    /// The config is right but something it names is not there yet (a
    /// modem not plugged in, still switching modes after boot): `check`
    /// reports it, while a daemon starts and waits for it, as for a modem
    /// unplugged while it runs, rather than exit on it.
    pub absent_for_now: bool,
}

impl ConfigIssue {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
            absent_for_now: false,
        }
    }

    /// An issue that may pass without a config change (`absent_for_now`).
    pub fn absent(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            absent_for_now: true,
            ..Self::new(key, reason)
        }
    }

    /// The same issue under a parent key: `modems[0]` + `device`.
    pub fn under(self, parent: &str) -> Self {
        let key = if self.key.is_empty() {
            parent.to_string()
        } else if self.key.starts_with('[') {
            format!("{parent}{}", self.key)
        } else {
            format!("{parent}.{}", self.key)
        };
        Self { key, ..self }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_keys() {
        let issue = ConfigIssue::new("device", "no such file")
            .under("modems[0]")
            .under("channels.sms");
        assert_eq!(
            issue.to_string(),
            "channels.sms.modems[0].device: no such file"
        );
    }
}
