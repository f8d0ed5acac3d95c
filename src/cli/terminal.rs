//! Text from elsewhere (a relay's error, a modem's answer, an SMS
//! sender's address) as the CLI prints it: no control character reaches
//! the terminal, where an escape sequence would steer it (clear the
//! screen, retitle the window, write over a line to fake another).

/// `text` as one line: control characters (line ends, escapes) and runs
/// of white space become one space.
pub fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` with every control character but the line feed made a space: a
/// report of many lines stays one.
pub fn without_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escape_sequence_reaches_no_terminal() {
        let sent = "refused\u{1b}]0;owned\u{7}\r\n\u{1b}[2Jagain";
        assert_eq!(one_line(sent), "refused ]0;owned [2Jagain");
        assert_eq!(without_controls("a\u{1b}[1m\nb\r"), "a [1m\nb ");
    }
}
