//! What `check` says about the relay link beyond `config::validate`:
//! things the daemon starts on (it may be given endpoints in code, and a
//! link that cannot carry sends still forwards replies), but that leave
//! the relay's sends with nowhere to go.

use phonerelay_channel::ConfigIssue;

use crate::config::LoadedConfig;

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
