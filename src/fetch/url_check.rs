//! Whether an attachment's URL may be fetched at all, judged from the URL
//! alone. The API asks at the send, so such a send is refused there (422
//! on `attachments[i].url`) instead of being accepted to fail at its first
//! attempt; the fetcher asks again before each request and redirect. A
//! host given by name is judged only at the fetch, by the resolver
//! (`resolver.rs`): what it resolves to may change. Pure.

use std::net::IpAddr;

use reqwest::Url;

/// Why `url` is not fetched, or `None` if it may be. `check` judges a
/// literal IP host. The reason never repeats the URL, which may carry a
/// token.
pub fn refusal(url: &Url, check: impl Fn(IpAddr) -> Result<(), String>) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "a {}: URL is not fetched, only http(s)",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Some("the URL names no host".to_string());
    };
    // The HTTP client would send them as Basic credentials (over plain
    // http too, and again after a relative redirect), and the store would
    // keep them in clear with the message.
    if !url.username().is_empty() || url.password().is_some() {
        return Some("the URL carries a user name or password; give a URL without them".into());
    }
    if url.port() == Some(0) {
        return Some("the URL names port 0".to_string());
    }
    // The URL standard takes hosts an HTTP request line cannot carry
    // (`{`, `}`); the client refuses them before any request, every try.
    if url.as_str().parse::<axum::http::Uri>().is_err() {
        return Some("the URL is not one an HTTP request can be made to".to_string());
    }
    // The URL parser wrote an IP host in its canonical form (`0x7f.1` is
    // `127.0.0.1`), IPv6 in brackets; anything else is a name.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let ip = literal.parse::<IpAddr>().ok()?;
    check(ip)
        .err()
        .map(|reason| format!("{ip} is {reason}; only public addresses are fetched from"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_only(ip: IpAddr) -> Result<(), String> {
        crate::fetch::check_address(ip, false).map_err(str::to_string)
    }

    fn refused(url: &str) -> Option<String> {
        refusal(&Url::parse(url).unwrap(), public_only)
    }

    #[test]
    fn a_public_http_url_may_be_fetched() {
        for url in [
            "https://files.example/a.pdf?token=1",
            "http://8.8.8.8:8080/x",
            "http://[2606:4700::1]/",
            "https://files.example:443/a",
        ] {
            assert_eq!(refused(url), None, "{url}");
        }
    }

    #[test]
    fn what_no_fetch_can_take_is_refused_with_why() {
        for (url, why) in [
            ("ftp://files.example/x", "only http(s)"),
            (
                "https://ann:S3CRET@files.example/x",
                "user name or password",
            ),
            ("https://ann@files.example/x", "user name or password"),
            ("https://:S3CRET@files.example/x", "user name or password"),
            ("https://files.example:0/x", "port 0"),
            ("https://{x}.example/a.pdf", "HTTP request"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "only public addresses",
            ),
            ("http://0x7f.1/x", "only public addresses"),
            ("http://[::ffff:10.0.0.1]/x", "only public addresses"),
        ] {
            let reason = refused(url).unwrap_or_else(|| panic!("{url} was not refused"));
            assert!(reason.contains(why), "{url}: {reason}");
            assert!(!reason.contains("S3CRET"), "{reason}");
        }
    }
}
