//! How the bridge names and describes the files it keeps for inbound
//! messages (`EventSink::save_media`): the API path an attachment carries,
//! and the cleaning of what an upstream said about a file before it is
//! stored and later written into HTTP headers. Pure.

/// An inbound attachment whose `url` starts with this is a file the bridge
/// keeps: `/api/v1/media/{id}` on its own API. The relay link uploads it
/// and sends the relay's URL in its place.
pub const MEDIA_PATH_PREFIX: &str = "/api/v1/media/";

/// Longest filename kept, in characters; a longer one is cut.
const MAX_FILENAME_CHARS: usize = 255;
/// Longest content type kept; a longer one is dropped.
const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// The API path of kept file `id`.
pub fn media_path(id: &str) -> String {
    format!("{MEDIA_PATH_PREFIX}{id}")
}

/// The id of a kept file, if `url` is the path of one.
pub fn media_id_of(url: &str) -> Option<&str> {
    url.strip_prefix(MEDIA_PATH_PREFIX)
        .filter(|id| !id.is_empty() && !id.contains(['/', '?', '#']))
}

/// A filename as a sender gave it, made safe to store and to put in a
/// header: the last part of a path (a mail client may send
/// `C:\Users\ann\scan.pdf`), without control characters or the
/// invisible ones that change how it reads ([`hidden_in_a_name`]), at most
/// 255 characters. `None` when nothing is left.
pub fn clean_filename(name: Option<String>) -> Option<String> {
    let name = name?;
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|&c| !c.is_control() && !hidden_in_a_name(c))
        .take(MAX_FILENAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty() && cleaned != "." && cleaned != "..").then(|| cleaned.to_string())
}

/// An invisible character that changes how a name reads: a direction
/// override (`invoice_\u{202E}fdp.exe` shows as `invoice_exe.pdf`), a
/// zero-width space or word joiner, a soft hyphen, a byte-order mark, a
/// line or paragraph separator, a tag character. Joiners that scripts and emoji need (U+200C,
/// U+200D) are kept.
fn hidden_in_a_name(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// A content type as an upstream gave it, kept only if it has the shape of
/// one (`type/subtype`, parameters after `;`) in printable ASCII, so it can
/// be served as a `Content-Type` as it is. `None` otherwise: the file is
/// then served as `application/octet-stream`.
pub fn clean_content_type(content_type: Option<String>) -> Option<String> {
    let content_type = content_type?;
    let content_type = content_type.trim();
    let printable = content_type.bytes().all(|b| (b' '..=b'~').contains(&b));
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let shaped = essence
        .split_once('/')
        .is_some_and(|(kind, sub)| token(kind) && token(sub));
    (printable && shaped && content_type.len() <= MAX_CONTENT_TYPE_BYTES)
        .then(|| content_type.to_string())
}

/// `text` as UTF-8 with every byte but ASCII letters, digits and `-._~`
/// percent-encoded: the value of `filename*=UTF-8''…` (RFC 8187) and of the
/// relay upload's `X-Filename` header.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_path_names_its_id_and_nothing_else_does() {
        let path = media_path("0194f0c2-7a4e-7000-8000-000000000001");
        assert_eq!(
            media_id_of(&path),
            Some("0194f0c2-7a4e-7000-8000-000000000001")
        );
        for other in [
            "https://relay.example/f/1",
            "/api/v1/media/",
            "/api/v1/media/a/b",
            "/api/v1/media/a?x=1",
            "/api/v1/messages/x",
        ] {
            assert_eq!(media_id_of(other), None, "{other}");
        }
    }

    #[test]
    fn filenames_lose_their_folders_and_control_characters() {
        let clean = |s: &str| clean_filename(Some(s.to_string()));
        assert_eq!(clean("photo.jpg").as_deref(), Some("photo.jpg"));
        assert_eq!(clean(r"C:\Users\ann\scan.pdf").as_deref(), Some("scan.pdf"));
        assert_eq!(clean("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean("a\r\nb.txt").as_deref(), Some("ab.txt"));
        assert_eq!(clean("Grüße 😀.txt").as_deref(), Some("Grüße 😀.txt"));
        // Nothing invisible changes how it reads; joiners scripts need stay.
        assert_eq!(
            clean("invoice_\u{202E}fdp.exe").as_deref(),
            Some("invoice_fdp.exe")
        );
        assert_eq!(
            clean("\u{FEFF}a\u{200B}b\u{2066}c\u{2069}\u{2028}\u{00AD}\u{E0041}.txt").as_deref(),
            Some("abc.txt")
        );
        assert_eq!(
            clean("\u{0645}\u{200C}\u{0646}.txt").as_deref(),
            Some("\u{0645}\u{200C}\u{0646}.txt")
        );
        assert_eq!(clean("x".repeat(300).as_str()).unwrap().len(), 255);
        for nothing in ["", "  ", "dir/", "..", "\u{7}"] {
            assert_eq!(clean(nothing), None, "{nothing:?}");
        }
        assert_eq!(clean_filename(None), None);
    }

    #[test]
    fn content_types_are_kept_only_when_they_are_one() {
        let clean = |s: &str| clean_content_type(Some(s.to_string()));
        assert_eq!(clean("image/jpeg").as_deref(), Some("image/jpeg"));
        assert_eq!(
            clean(" text/plain; charset=utf-8 ").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            clean("application/vnd.ms-excel").as_deref(),
            Some("application/vnd.ms-excel")
        );
        for bad in [
            "",
            "jpeg",
            "image/",
            "/jpeg",
            "text/html\r\nX-Evil: 1",
            "tëxt/plain",
        ] {
            assert_eq!(clean(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_ascii() {
        assert_eq!(percent_encode("report-1.pdf"), "report-1.pdf");
        assert_eq!(percent_encode("a b\"c;.txt"), "a%20b%22c%3B.txt");
        assert_eq!(percent_encode("Grüße"), "Gr%C3%BC%C3%9Fe");
    }
}
