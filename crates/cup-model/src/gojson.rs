//! JSON bytes exactly as Go's `encoding/json` writes them.
//!
//! The original cup encodes every response and every file with Go's `json.Encoder`, whose
//! output differs from serde_json's in two ways that clients can see byte for byte:
//! strings are HTML-escaped (`<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`; U+2028 and
//! U+2029 always escaped), and indented output follows `json.Indent`. Raw JSON kept inside a
//! document (a resource's `spec`) is compacted the same way. Both functions take JSON that
//! is already valid (serde_json's output, or raw values serde_json has checked) and only
//! re-space it and re-escape characters inside strings; they never reorder anything.

/// Removes insignificant whitespace and applies Go's HTML escaping inside strings.
pub fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut scanner = Scanner::default();
    for &byte in json {
        match scanner.step(byte) {
            Token::InString => push_escaped(&mut out, byte, &mut scanner),
            Token::Space => {}
            Token::Other => out.push(byte),
        }
    }
    out
}

/// `json.Indent(dst, compact(src), "", indent)`: one value per line, `": "` after keys, empty
/// objects and arrays stay `{}` / `[]`. No trailing newline (the Encoder adds one).
pub fn indent(json: &[u8], unit: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() * 2);
    let mut scanner = Scanner::default();
    let mut depth = 0usize;
    // Set after `{` or `[`: the newline is written only if the container is not empty.
    let mut pending_open = false;
    for &byte in json {
        let token = scanner.step(byte);
        if token == Token::Space {
            continue;
        }
        if pending_open && !(token == Token::Other && (byte == b'}' || byte == b']')) {
            newline(&mut out, unit, depth);
        }
        pending_open = false;
        match token {
            Token::InString => push_escaped(&mut out, byte, &mut scanner),
            Token::Space => {}
            Token::Other => match byte {
                b'{' | b'[' => {
                    out.push(byte);
                    depth += 1;
                    pending_open = true;
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if !matches!(out.last(), Some(b'{' | b'[')) {
                        newline(&mut out, unit, depth);
                    }
                    out.push(byte);
                }
                b',' => {
                    out.push(b',');
                    newline(&mut out, unit, depth);
                }
                b':' => out.extend_from_slice(b": "),
                _ => out.push(byte),
            },
        }
    }
    out
}

fn newline(out: &mut Vec<u8>, unit: &str, depth: usize) {
    out.push(b'\n');
    for _ in 0..depth {
        out.extend_from_slice(unit.as_bytes());
    }
}

/// Writes one byte of a string's contents, escaping what Go escapes and serde_json does not.
/// U+2028/U+2029 are three UTF-8 bytes (E2 80 A8/A9); the scanner buffers their prefix.
fn push_escaped(out: &mut Vec<u8>, byte: u8, scanner: &mut Scanner) {
    if scanner.escaped_char {
        // The byte after a backslash belongs to an escape sequence serde_json already wrote.
        out.push(byte);
        return;
    }
    match (scanner.pending.as_slice(), byte) {
        ([], b'<') => out.extend_from_slice(b"\\u003c"),
        ([], b'>') => out.extend_from_slice(b"\\u003e"),
        ([], b'&') => out.extend_from_slice(b"\\u0026"),
        ([], 0xE2) => scanner.pending.push(byte),
        ([0xE2], 0x80) => scanner.pending.push(byte),
        ([0xE2, 0x80], 0xA8) => {
            scanner.pending.clear();
            out.extend_from_slice(b"\\u2028");
        }
        ([0xE2, 0x80], 0xA9) => {
            scanner.pending.clear();
            out.extend_from_slice(b"\\u2029");
        }
        _ => {
            out.append(&mut scanner.pending);
            out.push(byte);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A byte inside a string literal (quotes excluded).
    InString,
    /// Whitespace between tokens.
    Space,
    /// Everything else, quotes included.
    Other,
}

/// Tracks whether the current byte is inside a string literal.
#[derive(Default)]
struct Scanner {
    in_string: bool,
    /// The previous byte was an unescaped backslash inside a string.
    backslash: bool,
    /// The current byte is the one right after a backslash.
    escaped_char: bool,
    /// Buffered prefix of a possible U+2028/U+2029.
    pending: Vec<u8>,
}

impl Scanner {
    fn step(&mut self, byte: u8) -> Token {
        self.escaped_char = false;
        if !self.in_string {
            return match byte {
                b'"' => {
                    self.in_string = true;
                    Token::Other
                }
                b' ' | b'\t' | b'\n' | b'\r' => Token::Space,
                _ => Token::Other,
            };
        }
        if self.backslash {
            self.backslash = false;
            self.escaped_char = true;
            return Token::InString;
        }
        match byte {
            b'\\' => {
                self.backslash = true;
                Token::InString
            }
            b'"' => {
                self.in_string = false;
                Token::Other
            }
            _ => Token::InString,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn compact_drops_whitespace_outside_strings_only() {
        let json = br#" { "a b" : [ 1 , 2 ] , "c":"x\" y" } "#;
        assert_eq!(s(compact(json)), r#"{"a b":[1,2],"c":"x\" y"}"#);
    }

    #[test]
    fn compact_escapes_html_and_line_separators_like_go() {
        let json = "{\"k\":\"<a href='x'>&\u{2028}\u{2029}é\"}";
        assert_eq!(
            s(compact(json.as_bytes())),
            r#"{"k":"\u003ca href='x'\u003e\u0026\u2028\u2029é"}"#
        );
        // An escaped quote or backslash before '<' does not confuse the scanner.
        assert_eq!(
            s(compact(br#"["\\<","\"<"]"#)),
            r#"["\\\u003c","\"\u003c"]"#
        );
    }

    #[test]
    fn indent_matches_go_json_indent() {
        let json = br#"{"apiVersion":"v","metadata":{"labels":{"foo":"bar"},"annotations":{}},"spec":{},"list":[],"n":[1,{"a":null}]}"#;
        let want = "{\n  \"apiVersion\": \"v\",\n  \"metadata\": {\n    \"labels\": {\n      \"foo\": \"bar\"\n    },\n    \"annotations\": {}\n  },\n  \"spec\": {},\n  \"list\": [],\n  \"n\": [\n    1,\n    {\n      \"a\": null\n    }\n  ]\n}";
        assert_eq!(s(indent(json, "  ")), want);
    }

    #[test]
    fn indent_of_a_scalar_and_of_spaced_input() {
        assert_eq!(s(indent(b" 12 ", "  ")), "12");
        assert_eq!(s(indent(b"{ \"a\" : [ ] }", "  ")), "{\n  \"a\": []\n}");
    }
}
