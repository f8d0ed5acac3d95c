//! What a fetched file is called and what it is, and how its URL is shown.
//! Pure.

use reqwest::Url;

use crate::media::{clean_content_type, clean_filename};

/// `url` as errors and logs show it: `scheme://host[:port]/path`, without
/// the user info, query or fragment, any of which may carry a token, and
/// with each path segment that may be one shown as `…` ([`may_be_secret`]).
pub fn shown_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let path: String = match url.path_segments() {
        Some(segments) => segments
            .map(|s| if may_be_secret(s) { "…" } else { s })
            .fold(String::new(), |path, s| path + "/" + s),
        None => url.path().to_string(),
    };
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{path}", url.scheme()),
        None => format!("{}://{host}{path}", url.scheme()),
    }
}

/// A path segment that may be a credential: long (a token, a signature),
/// or with a `:` in it, escaped in either case or not (Telegram's file
/// URLs carry `bot<id>:<token>`). File and folder names are rarely either.
fn may_be_secret(segment: &str) -> bool {
    const LONGEST_SHOWN: usize = 40;
    segment.len() > LONGEST_SHOWN
        || segment.contains(':')
        || segment.to_ascii_lowercase().contains("%3a")
}

/// The file's content type: the server's `Content-Type` when it names one
/// (a bare `application/octet-stream` says nothing, so a type the send
/// gave wins over it), else the send's, each cleaned.
pub fn content_type(served: Option<&str>, given: Option<&str>) -> Option<String> {
    let served = clean_content_type(served.map(str::to_string));
    let given = clean_content_type(given.map(str::to_string));
    match served {
        Some(served)
            if served
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream"))
                && given.is_some() =>
        {
            given
        }
        Some(served) => Some(served),
        None => given,
    }
}

/// The file's name: the send's, else the server's `Content-Disposition`,
/// else the last segment of the URL's path (of the URL it was finally
/// fetched from) unless [`shown_url`] hides it as a possible token (the
/// recipient sees the name), each cleaned.
pub fn filename(given: Option<&str>, disposition: Option<&str>, url: &Url) -> Option<String> {
    clean_filename(given.map(str::to_string))
        .or_else(|| clean_filename(disposition.and_then(disposition_filename)))
        .or_else(|| {
            let last = percent_decode(url.path_segments()?.next_back()?)?;
            if looks_like_a_token(&last) {
                return None;
            }
            clean_filename(Some(last))
        })
}

/// A decoded last path segment that is more likely a token than a file's
/// name: with a `:` (Telegram's `bot<id>:<token>`), or long and without a
/// short extension after its last dot (a signature; a JWT's dots are
/// followed by long runs). Judged decoded, not as [`may_be_secret`] judges
/// a segment for showing: `отчёт за 2026 год.pdf` is long only escaped.
fn looks_like_a_token(segment: &str) -> bool {
    const LONGEST_WITHOUT_EXTENSION: usize = 40;
    const LONGEST_EXTENSION: usize = 10;
    let has_extension = segment.rsplit_once('.').is_some_and(|(stem, extension)| {
        !stem.is_empty()
            && (1..=LONGEST_EXTENSION).contains(&extension.len())
            && extension.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    segment.contains(':') || (segment.chars().count() > LONGEST_WITHOUT_EXTENSION && !has_extension)
}

/// The filename a `Content-Disposition` names: `filename*=UTF-8''…`
/// (RFC 6266 prefers it), else `filename=`, quoted or not.
fn disposition_filename(header: &str) -> Option<String> {
    let mut plain = None;
    for param in split_params(header).into_iter().skip(1) {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("filename*") {
            // A malformed one is passed over: a `filename=` beside it
            // still names the file.
            let Some((charset, rest)) = value.split_once('\'') else {
                continue;
            };
            let Some((_language, encoded)) = rest.split_once('\'') else {
                continue;
            };
            if charset.eq_ignore_ascii_case("utf-8")
                && let Some(decoded) = percent_decode(encoded)
            {
                return Some(decoded);
            }
        } else if name.eq_ignore_ascii_case("filename") {
            plain = Some(unquote(value));
        }
    }
    plain
}

/// The parameters of a header value, split at `;` outside quotes.
fn split_params(header: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in header.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&header[start..]);
    parts
}

fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// `%XX` escapes decoded; `None` if the result is not UTF-8 or an escape
/// is broken.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn a_shown_url_has_no_user_info_query_or_fragment() {
        assert_eq!(
            shown_url(&url(
                "https://ann:pw@files.example:8443/a/b.pdf?token=S3CRET#x"
            )),
            "https://files.example:8443/a/b.pdf"
        );
        assert_eq!(shown_url(&url("http://[::1]/x?sig=1")), "http://[::1]/x");
        // Segments that may be credentials: a token in the path.
        assert_eq!(
            shown_url(&url(
                "https://api.telegram.org/file/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/photos/file_1.jpg"
            )),
            "https://api.telegram.org/file/…/photos/file_1.jpg"
        );
        assert_eq!(
            shown_url(&url(&format!(
                "https://cdn.example/{}/a.png",
                "k".repeat(64)
            ))),
            "https://cdn.example/…/a.png"
        );
        assert_eq!(
            shown_url(&url("https://example.com")),
            "https://example.com/"
        );
        // The `:` escaped in lower case is one too.
        assert_eq!(
            shown_url(&url("https://api.telegram.org/file/bot12%3aS3CRET/a.jpg")),
            "https://api.telegram.org/file/…/a.jpg"
        );
    }

    #[test]
    fn a_last_segment_that_may_be_a_token_names_no_file() {
        let token = "k".repeat(64);
        let signed = url(&format!("https://dl.example/get/{token}"));
        assert_eq!(filename(None, None, &signed), None);
        assert_eq!(
            filename(None, None, &url("https://dl.example/get/bot1%3aS3CRET")),
            None
        );
        // A JWT has dots, but no extension after them.
        let jwt = format!(
            "https://dl.example/get/eyJhbGciOiJIUzI1NiJ9.{}.{}",
            "eyJzdWIiOiJmaWxlIn0".repeat(2),
            "S3CRETsignature_abcdefghijklmnop"
        );
        assert_eq!(filename(None, None, &url(&jwt)), None);
        // A long name, or one long only escaped, is a name.
        let long_name = "Report for the third quarter of 2026, final.pdf";
        assert_eq!(
            filename(None, None, &url(&format!("https://dl.example/{long_name}"))).as_deref(),
            Some(long_name)
        );
        assert_eq!(
            filename(None, None, &url("https://dl.example/отчёт-за-год.pdf")).as_deref(),
            Some("отчёт-за-год.pdf")
        );
        // A name the server gives still wins.
        assert_eq!(
            filename(None, Some("attachment; filename=a.pdf"), &signed).as_deref(),
            Some("a.pdf")
        );
    }

    #[test]
    fn a_malformed_extended_filename_leaves_the_plain_one() {
        let u = url("https://files.example/download");
        for header in [
            "attachment; filename=\"report.pdf\"; filename*=report.pdf",
            "attachment; filename*=UTF-8'report.pdf; filename=\"report.pdf\"",
        ] {
            assert_eq!(
                filename(None, Some(header), &u).as_deref(),
                Some("report.pdf"),
                "{header}"
            );
        }
    }

    #[test]
    fn the_given_name_wins_then_the_servers_then_the_urls() {
        let u = url("https://files.example/dl/Report%20Q3.pdf?token=1");
        assert_eq!(
            filename(
                Some("mine.pdf"),
                Some("attachment; filename=\"theirs.pdf\""),
                &u
            )
            .as_deref(),
            Some("mine.pdf")
        );
        assert_eq!(
            filename(
                None,
                Some("attachment; filename=\"the;irs \\\"x\\\".pdf\""),
                &u
            )
            .as_deref(),
            Some("the;irs \"x\".pdf")
        );
        assert_eq!(
            filename(
                None,
                Some("attachment; filename=\"fallback.pdf\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.pdf"),
                &u
            )
            .as_deref(),
            Some("Grüße.pdf")
        );
        assert_eq!(
            filename(None, Some("inline; filename=../../etc/passwd"), &u).as_deref(),
            Some("passwd")
        );
        assert_eq!(
            filename(None, Some("inline"), &u).as_deref(),
            Some("Report Q3.pdf")
        );
        assert_eq!(filename(None, None, &u).as_deref(), Some("Report Q3.pdf"));
        assert_eq!(filename(None, None, &url("https://files.example/")), None);
        assert_eq!(
            filename(Some("  "), None, &url("https://files.example/dir/")),
            None
        );
    }

    #[test]
    fn the_servers_type_wins_unless_it_says_nothing() {
        assert_eq!(
            content_type(Some("image/png"), Some("image/jpeg")).as_deref(),
            Some("image/png")
        );
        assert_eq!(
            content_type(Some("application/octet-stream"), Some("image/jpeg")).as_deref(),
            Some("image/jpeg")
        );
        assert_eq!(
            content_type(Some("application/octet-stream"), None).as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(
            content_type(Some("text/html\r\nX: 1"), Some("text/plain")).as_deref(),
            Some("text/plain")
        );
        assert_eq!(content_type(None, None), None);
    }
}
