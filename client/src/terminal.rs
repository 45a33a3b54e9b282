//! Text for a terminal: what a server sends (names, messages, versions) is printed only with
//! its control characters and bidirectional overrides made visible, so a hostile server
//! cannot move the cursor, retitle the window, recolour text or show `invoice\u{202e}fdp.exe`
//! as `invoiceexe.pdf`. JSON output keeps the exact text (JSON escapes it itself).

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidirectional marks, embeddings, overrides and isolates.
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every unsafe character written as `\u{XXXX}` (a backslash as `\\`, so an
/// escape cannot be faked).
pub(crate) fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Prints one line to stdout, made safe for a terminal.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stdout().lock(), "{}", $crate::terminal::safe(&line));
    }};
}
pub(crate) use out;

/// Prints one line to stderr, made safe for a terminal.
macro_rules! err {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        eprintln!("{}", $crate::terminal::safe(&line));
    }};
}
pub(crate) use err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_overrides_are_made_visible() {
        assert_eq!(safe("plain/name.txt"), "plain/name.txt");
        assert_eq!(safe("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        assert_eq!(safe("\u{1b}]0;owned\u{7}x"), "\\u{001b}]0;owned\\u{0007}x");
        assert_eq!(safe("a\nb\tc\u{9b}"), "a\\u{000a}b\\u{0009}c\\u{009b}");
        assert_eq!(
            safe("C:\\u{202e}"),
            "C:\\\\u{202e}",
            "a typed escape stays distinguishable"
        );
    }
}
