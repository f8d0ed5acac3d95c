use std::fmt;

/// One problem found by an adapter config's pure `validate()`: the key path
/// relative to the adapter's section (`modems[0].device`) and why.
/// The daemon prefixes the section (`channels.sms.`) when it prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub reason: String,
}

impl ConfigIssue {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
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
