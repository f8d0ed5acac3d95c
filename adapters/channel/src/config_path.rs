//! Paths a config names (a state dir, a key file, a device), read as
//! written: the config is no shell, so nothing expands `~`, and a
//! relative path is taken from the config file's folder.

use std::path::Path;

/// Why `path`, a config key's value, cannot name what the operator meant,
/// if so. Empty, it is the config file's own folder. Starting with `~`,
/// it is a folder of that name beside the config file (`~/pr` is
/// `<config folder>/~/pr`), which a service under `ProtectSystem=strict`
/// cannot even write.
pub fn config_path_issue(path: &Path) -> Option<&'static str> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some("must not be empty (that would be the config file's own folder)");
    }
    if bytes.first() == Some(&b'~') {
        return Some(
            "starts with `~`, which is not expanded here (it would name a folder `~` \
             beside the config file): give the full path, or one relative to the \
             config file's folder",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_path_and_a_leading_tilde_are_refused() {
        for bad in ["", "  ", "~", "~/pr", "~phonerelay/state"] {
            assert!(config_path_issue(Path::new(bad)).is_some(), "{bad:?}");
        }
        for good in [
            "/var/lib/phonerelay",
            "state",
            "./~",
            "data/~x",
            "/dev/ttyUSB2",
        ] {
            assert_eq!(config_path_issue(Path::new(good)), None, "{good:?}");
        }
    }
}
