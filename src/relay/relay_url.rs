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

/// Whether `url` is plain `http://` to a host other than this one: the
/// relay key, and every message and phone number, go over the network in
/// clear, and in pull mode anyone on the way could hand the bridge jobs
/// (SMS from the operator's SIM). Said, not refused: a relay on a LAN
/// behind a trusted network is a choice the operator may make.
pub fn plain_http_off_this_host(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if parsed.scheme() != "http" {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        // 0.0.0.0 as a destination is this host too.
        return !ip.is_loopback() && !ip.is_unspecified();
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name != "localhost" && !name.ends_with(".localhost")
}

/// What `check`, `pair` and the link say of a [`plain_http_off_this_host`]
/// URL.
pub fn plain_http_warning(shown_url: &str) -> String {
    format!(
        "the relay at {shown_url} is reached over plain http, not on this host: the relay key \
         and every message go over the network in clear, and in pull mode anyone on the way \
         could hand this bridge sends; use https"
    )
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
    fn plain_http_is_told_apart_only_off_this_host() {
        for off in [
            "http://relay.example",
            "http://192.168.1.10:8080",
            "http://[2001:db8::1]/pchat",
        ] {
            assert!(plain_http_off_this_host(off), "{off}");
        }
        for fine in [
            "https://relay.example",
            "http://127.0.0.1:8080",
            "http://localhost:9000",
            "http://LOCALHOST.",
            "http://relay.localhost",
            "http://[::1]:8080",
            "http://0.0.0.0:8080",
            "not a url",
        ] {
            assert!(!plain_http_off_this_host(fine), "{fine}");
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_compared_as_given() {
        assert_eq!(canonical("not a url/"), "not a url");
        assert!(!same_relay("not a url", "https://relay.example"));
    }
}
