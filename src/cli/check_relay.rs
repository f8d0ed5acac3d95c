//! What `check` says about the relay link beyond `config::validate`:
//! things the daemon starts on (it may be given endpoints in code, and a
//! link that cannot carry sends still forwards replies), but that leave
//! the relay's sends with nowhere to go.

use std::net::SocketAddr;

use phonerelay_channel::ConfigIssue;

use crate::config::{LoadedConfig, RelayMode};

/// A `relay.phone_id` no endpoint has: the link runs as it and the bridge
/// key is bound to it, so every send the relay pushes for it is refused
/// (422 unknown_phone_id) and every job it hands out rejected.
pub fn relay_phone_id_without_endpoint(loaded: &LoadedConfig) -> Option<ConfigIssue> {
    let phone_id = loaded.config.relay.phone_id.as_ref()?;
    let configured = crate::channels::configured_phone_ids(loaded);
    if configured.contains(phone_id) {
        return None;
    }
    Some(ConfigIssue::new(
        "relay.phone_id",
        format!(
            "no endpoint has phone_id {phone_id:?} (configured phone_ids: {}): the relay's \
             sends for it would be refused (422 unknown_phone_id); set it to an endpoint's \
             phone_id, or give that modem phone_id = {phone_id:?}",
            quoted_list(&configured)
        ),
    ))
}

/// A note, not an error (a reverse proxy on this host reaches a loopback
/// listen, and that is the setup the docs advise): in push mode the relay
/// must reach the bridge's API, and hello tells it no address, so a
/// loopback-only listen needs one set up and given to the relay by hand.
/// Only while a relay is in use: configured, or paired (its key file is
/// there, which tells without a look into the store).
pub fn push_to_a_loopback_listen(loaded: &LoadedConfig) -> Option<String> {
    let relay = &loaded.config.relay;
    if relay.mode != RelayMode::Push || !relay_in_use(loaded) {
        return None;
    }
    let listen = &loaded.config.server.listen;
    let addr: SocketAddr = listen.parse().ok()?;
    addr.ip().is_loopback().then(|| {
        format!(
            "note: relay.mode = \"push\" and server.listen = {listen}, a loopback address: \
             the relay must reach this bridge's API to push sends, so give it an address it \
             can reach (typically HTTPS through a reverse proxy on this host) along with the \
             bridge key; behind NAT, set relay.mode = \"pull\" instead"
        )
    })
}

/// A note, not an error (a relay on a trusted LAN is the operator's
/// choice): `relay.url` is plain http to another host.
pub fn plain_http_relay(loaded: &LoadedConfig) -> Option<String> {
    let url = loaded.config.relay.url.as_deref()?;
    crate::relay::relay_url::plain_http_off_this_host(url).then(|| {
        let warning = crate::relay::relay_url::plain_http_warning(&crate::relay::shown_url(url));
        format!("warning: relay.url: {warning}")
    })
}

/// A key file that cannot be looked for (a state dir `check`'s user may
/// not enter) counts as one: its pairing is then checked, and what cannot
/// be read is said, rather than passed over.
fn relay_in_use(loaded: &LoadedConfig) -> bool {
    let relay = &loaded.config.relay;
    relay.url.is_some()
        || relay.phone_id.is_some()
        || crate::relay::settings::key_file(loaded)
            .try_exists()
            .unwrap_or(true)
}

/// `"a", "b"`, or `none`.
pub fn quoted_list(phone_ids: &[String]) -> String {
    if phone_ids.is_empty() {
        return "none".into();
    }
    phone_ids
        .iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from_str;

    fn loaded(text: &str) -> LoadedConfig {
        load_from_str(text, std::path::Path::new("t.toml"), ".".into()).expect("parses")
    }

    fn push_note(text: &str) -> Option<String> {
        push_to_a_loopback_listen(&loaded(text))
    }

    /// `check` warns of a relay reached over plain http off this host (the
    /// key and every message in clear), not of https or a loopback one.
    #[test]
    fn a_plain_http_relay_off_this_host_is_warned_of() {
        let relay = |url: &str| {
            plain_http_relay(&loaded(&format!(
                "[relay]\nurl = \"{url}\"\nphone_id = \"ph_1\"\n"
            )))
        };
        let warned = relay("http://relay.example").expect("a warning");
        assert!(
            warned.contains("plain http") && warned.contains("use https"),
            "{warned}"
        );
        assert_eq!(relay("https://relay.example"), None);
        assert_eq!(relay("http://127.0.0.1:8080"), None);
    }

    #[test]
    fn push_to_a_loopback_listen_is_noted_while_a_relay_is_configured() {
        let relay = "[relay]\nurl = \"https://relay.example.com\"\n";
        for listen in ["127.0.0.1:8686", "[::1]:8686", "127.0.0.2:80"] {
            let note = push_note(&format!("[server]\nlisten = \"{listen}\"\n{relay}"));
            let note = note.unwrap_or_else(|| panic!("{listen}: no note"));
            assert!(
                note.starts_with(&format!(
                    "note: relay.mode = \"push\" and server.listen = {listen}, a loopback"
                )),
                "{note}"
            );
            assert!(note.contains("relay.mode = \"pull\""), "{note}");
        }
        let by_phone_id = "[relay]\nphone_id = \"m1\"\n";
        assert!(
            push_note(by_phone_id).is_some(),
            "the default listen is loopback"
        );
    }

    #[test]
    fn no_push_note_in_pull_mode_on_a_reachable_listen_or_without_a_relay() {
        let relay = "url = \"https://relay.example.com\"\n";
        assert_eq!(
            push_note(&format!("[relay]\n{relay}mode = \"pull\"\n")),
            None
        );
        for listen in ["0.0.0.0:8686", "192.0.2.7:8686", "[::]:8686"] {
            let text = format!("[server]\nlisten = \"{listen}\"\n[relay]\n{relay}");
            assert_eq!(push_note(&text), None, "{listen}");
        }
        // Not paired either: no relay.key in the state dir.
        let dir = tempfile::tempdir().unwrap();
        let alone = format!("[storage]\nstate_dir = \"{}\"\n", dir.path().display());
        assert_eq!(push_note(&alone), None);
    }

    #[test]
    fn a_pairing_s_key_file_is_a_relay_in_use() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay.key"), "k").unwrap();
        let paired = format!("[storage]\nstate_dir = \"{}\"\n", dir.path().display());
        assert!(push_note(&paired).is_some());
    }

    const MODEMS: &str = "[[channels.sms.modems]]\nphone_id = \"m1\"\ndevice = \"sim\"\n\
                          [[channels.sms.modems]]\nphone_id = \"m2\"\ndevice = \"sim\"\n";

    #[test]
    fn a_relay_phone_id_an_endpoint_has_or_none_at_all_is_fine() {
        assert!(relay_phone_id_without_endpoint(&loaded(MODEMS)).is_none());
        let matching = format!("{MODEMS}[relay]\nphone_id = \"m2\"\n");
        assert!(relay_phone_id_without_endpoint(&loaded(&matching)).is_none());
    }

    #[test]
    fn a_relay_phone_id_no_endpoint_has_is_named_with_the_phone_ids_there_are() {
        let typo = format!("{MODEMS}[relay]\nphone_id = \"m3\"\n");
        let issue = relay_phone_id_without_endpoint(&loaded(&typo)).expect("an issue");
        assert_eq!(issue.key, "relay.phone_id");
        assert!(!issue.absent_for_now);
        assert!(
            issue.reason.starts_with(
                "no endpoint has phone_id \"m3\" (configured phone_ids: \"m1\", \"m2\")"
            ),
            "{}",
            issue.reason
        );
        let alone = loaded("[relay]\nphone_id = \"m3\"\n");
        let issue = relay_phone_id_without_endpoint(&alone).expect("an issue");
        assert!(
            issue.reason.contains("(configured phone_ids: none)"),
            "{}",
            issue.reason
        );
    }
}
