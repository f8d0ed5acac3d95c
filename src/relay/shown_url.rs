//! A relay URL as it may be shown: in `pair`'s and `pair --status`'s
//! output and in `GET /api/v1/relay`. The config and `pair` refuse a URL
//! with a user or password (`config::is_relay_url`), but one can still be
//! met: in a config not yet checked, or a pairing an older build saved.

/// `url` with whatever sits before an `@` in its authority (a user, a
/// password) shown as `****`, the way a secret is shown. Worked on the
/// text, not on a parsed URL, so the rest is shown as written and a URL
/// that does not parse is masked all the same.
pub fn shown_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    let authority = &url[start..start + authority_len];
    match authority.rfind('@') {
        Some(at) => format!("{}****{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_and_password_are_masked_and_the_rest_shown_as_written() {
        for (url, shown) in [
            (
                "https://u:s3cret@relay.example",
                "https://****@relay.example",
            ),
            (
                "https://u:s3c@ret@relay.example/p?q=a@b",
                "https://****@relay.example/p?q=a@b",
            ),
            (
                "http://token@127.0.0.1:8080/",
                "http://****@127.0.0.1:8080/",
            ),
            ("u:s3cret@relay.example", "****@relay.example"),
            ("https://relay.example/x@y", "https://relay.example/x@y"),
            ("https://relay.example", "https://relay.example"),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
        }
    }
}
