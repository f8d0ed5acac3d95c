//! Splitting of AT response parameters (`+XXX: a,"b,c",,d`).
//!
//! 27.007 §4.1 / V.250 §5.7: information responses are a prefix, a colon and
//! comma-separated values; string values are double-quoted and may contain
//! commas. Modems are sloppy about spaces after commas, so we trim them.

/// One comma-separated parameter of an AT response line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// The value with surrounding spaces (and quotes, if any) removed.
    pub text: &'a str,
    /// Whether the value was double-quoted: lets callers tell the
    /// unsolicited `+CREG: 1,"1A2B",...` form from the read form.
    pub quoted: bool,
}

impl<'a> Field<'a> {
    /// An empty, unquoted field (`a,,b`) means "parameter omitted".
    pub fn is_omitted(&self) -> bool {
        !self.quoted && self.text.is_empty()
    }

    pub fn as_u32(&self) -> Option<u32> {
        self.text.parse().ok()
    }

    pub fn as_u8(&self) -> Option<u8> {
        self.text.parse().ok()
    }

    pub fn as_u16(&self) -> Option<u16> {
        self.text.parse().ok()
    }

    /// Optional string: omitted → `None`, otherwise the text.
    pub fn as_opt_string(&self) -> Option<String> {
        if self.is_omitted() {
            None
        } else {
            Some(self.text.to_owned())
        }
    }
}

/// Splits the parameter part of a response (after `prefix:`).
///
/// An unterminated quote swallows the rest of the line instead of failing:
/// a truncated line should still yield the fields before it.
pub(crate) fn split_fields(params: &str) -> Vec<Field<'_>> {
    let mut fields = Vec::new();
    let bytes = params.as_bytes();
    let mut i = 0;
    loop {
        // Skip spaces before the value.
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'"' {
            let start = i + 1;
            let end = params[start..]
                .find('"')
                .map_or(bytes.len(), |off| start + off);
            fields.push(Field {
                text: &params[start..end],
                quoted: true,
            });
            // Skip past the closing quote and anything up to the next comma.
            i = end.saturating_add(1).min(bytes.len());
            match params[i..].find(',') {
                Some(off) => i += off + 1,
                None => break,
            }
        } else {
            let end = params[i..].find(',').map_or(bytes.len(), |off| i + off);
            fields.push(Field {
                text: params[i..end].trim(),
                quoted: false,
            });
            if end >= bytes.len() {
                break;
            }
            i = end + 1;
        }
    }
    fields
}

/// Case-insensitive `prefix` match (modems differ in case only for verbose
/// texts, but being lenient costs nothing). Returns the trimmed remainder.
pub(crate) fn strip_prefix_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        Some(line[prefix.len()..].trim())
    } else {
        None
    }
}

/// The `+XXX` / `^XXX` / `#XXX` / `$XXX` / `*XXX` name of an information
/// line, upper-cased, without the colon. `None` for plain lines.
pub(crate) fn response_name(line: &str) -> Option<String> {
    let first = *line.as_bytes().first()?;
    if !matches!(first, b'+' | b'^' | b'#' | b'$' | b'*' | b'!' | b'%') {
        return None;
    }
    let colon = line.find(':')?;
    let name = &line[..colon];
    if name.len() < 2 || name[1..].bytes().any(|b| !b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(name.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<(&str, bool)> {
        split_fields(s).iter().map(|f| (f.text, f.quoted)).collect()
    }

    #[test]
    fn splits_plain_and_quoted_values() {
        assert_eq!(
            texts(r#"0,0,"Vodafone, DE",7"#),
            vec![
                ("0", false),
                ("0", false),
                ("Vodafone, DE", true),
                ("7", false)
            ]
        );
    }

    #[test]
    fn keeps_omitted_values() {
        let f = split_fields("1,0,,23");
        assert_eq!(f.len(), 4);
        assert!(f[2].is_omitted());
        assert_eq!(f[3].as_u32(), Some(23));
    }

    #[test]
    fn tolerates_spaces_and_unterminated_quotes() {
        assert_eq!(texts(r#" 1 , "ab"#), vec![("1", false), ("ab", true)]);
        assert_eq!(texts(""), vec![("", false)]);
    }

    #[test]
    fn quoted_empty_string_is_not_omitted() {
        let f = split_fields(r#""",5"#);
        assert!(!f[0].is_omitted());
        assert_eq!(f[0].as_opt_string(), Some(String::new()));
    }

    #[test]
    fn response_names() {
        assert_eq!(response_name("+CREG: 1"), Some("+CREG".into()));
        assert_eq!(response_name("^rssi:5"), Some("^RSSI".into()));
        assert_eq!(response_name("OK"), None);
        assert_eq!(response_name("+ weird: 1"), None);
        assert_eq!(response_name("+CMGS"), None);
    }

    #[test]
    fn prefix_is_case_insensitive() {
        assert_eq!(strip_prefix_ci("+csq: 20,99", "+CSQ:"), Some("20,99"));
        assert_eq!(strip_prefix_ci("+CS", "+CSQ:"), None);
    }
}
