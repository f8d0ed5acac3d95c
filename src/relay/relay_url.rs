//! A relay's URL as the bridge compares it. The pairing, the record of
//! which relay the status events go to, a forwarded message's fixed body
//! and a file's upload each keep the URL of their relay, and a link
//! compares its own with it: "the same relay" must not hang on how the URL
//! was typed (`https://Relay.example:443/` is `https://relay.example`),
//! or a re-pair with the same relay, a new key say, is taken for a move to
//! another (its messages' status events passed over, its files uploaded
//! again).

/// `url` with its scheme and host in lower case, a default port left
/// out and no trailing `/`; as given if it does not parse (the config and
/// `pair` refuse such a URL before a link is built).
pub fn canonical(url: &str) -> String {
    let url = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.to_string(),
        Err(_) => url.to_string(),
    };
    url.trim_end_matches('/').to_string()
}

/// Whether two relay URLs name the same relay.
pub fn same_relay(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_relay_are_the_same_relay() {
        for spelling in [
            "https://relay.example",
            "https://relay.example/",
            "HTTPS://Relay.Example",
            "https://relay.example:443",
            "https://RELAY.example:443/",
        ] {
            assert!(same_relay(spelling, "https://relay.example"), "{spelling}");
        }
        assert_eq!(canonical("https://R.example:443/"), "https://r.example");
        assert_eq!(
            canonical("http://r.example:80/pchat/"),
            "http://r.example/pchat"
        );
    }

    #[test]
    fn another_port_path_or_scheme_is_another_relay() {
        for other in [
            "https://relay.example:8443",
            "http://relay.example",
            "https://relay.example/pchat",
            "https://other.example",
        ] {
            assert!(!same_relay(other, "https://relay.example"), "{other}");
        }
        assert!(
            !same_relay("https://relay.example/PChat", "https://relay.example/pchat"),
            "a path's case is the server's to read"
        );
    }

    #[test]
    fn a_url_that_does_not_parse_is_compared_as_given() {
        assert_eq!(canonical("not a url/"), "not a url");
        assert!(!same_relay("not a url", "https://relay.example"));
    }
}
