//! JSON output that keeps the server's bytes: documents are re-indented token by token, so
//! key order, number spelling (`1.50`) and string escapes (`\u003c`) stay exactly as the
//! server sent them. Going through `serde_json::Value` would sort keys and reformat numbers.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::value::RawValue;

/// Re-indents a JSON text with two spaces, in the layout of `serde_json::to_string_pretty`
/// (`"key": value`, empty containers as `{}`/`[]`). The input must be valid JSON (callers
/// hold it as a [`RawValue`], which serde has checked); anything else is copied through
/// without a panic but with no promise about the layout.
pub fn pretty(json: &str) -> String {
    let b = json.as_bytes();
    let len = b.len();
    let mut out = String::with_capacity(len + len / 2);
    let mut depth = 0usize;
    let mut i = 0;
    while i < len {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let start = i;
                i += 1;
                while i < len {
                    match b[i] {
                        // JSON escapes are ASCII, so skipping one byte stays on a char boundary.
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                out.push_str(&json[start..i.min(len)]);
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                let next = skip_ws(b, i + 1);
                out.push(char::from(open));
                if next < len && b[next] == close {
                    out.push(char::from(close));
                    i = next + 1;
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                    i += 1;
                }
            }
            close @ (b'}' | b']') => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(char::from(close));
                i += 1;
            }
            b',' => {
                out.push(',');
                newline(&mut out, depth);
                i += 1;
            }
            b':' => {
                out.push_str(": ");
                i += 1;
            }
            _ => {
                // A number, true, false or null: up to the next structural byte (all ASCII,
                // hence char boundaries).
                let start = i;
                while i < len
                    && !matches!(
                        b[i],
                        b' ' | b'\t'
                            | b'\n'
                            | b'\r'
                            | b','
                            | b':'
                            | b'{'
                            | b'}'
                            | b'['
                            | b']'
                            | b'"'
                    )
                {
                    i += 1;
                }
                out.push_str(&json[start..i]);
            }
        }
    }
    out
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n("  ", depth));
}

/// One JSON array of documents, indented.
pub fn pretty_array<'a>(items: impl IntoIterator<Item = &'a RawValue>) -> String {
    let mut compact = String::from("[");
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            compact.push(',');
        }
        compact.push_str(item.get());
    }
    compact.push(']');
    pretty(&compact)
}

/// Writes text and a newline to stdout; a closed pipe (`| head`) is an error, not a panic
/// as with `println!`.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_pretty_layout() {
        let text = r#"{"a":1,"b":[1,2,{"c":null}],"d":{},"e":[],"f":"x,y:{z}","g":{"h":true}}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(pretty(text), serde_json::to_string_pretty(&value).unwrap());
    }

    #[test]
    fn keeps_key_order_numbers_and_escapes() {
        let text = "{\"z\":1.50,\"a\":\"\\u003cb\\\"q\\\\\",\"m\":\"é ü\" , \"n\" : [ ] }";
        assert_eq!(
            pretty(text),
            "{\n  \"z\": 1.50,\n  \"a\": \"\\u003cb\\\"q\\\\\",\n  \"m\": \"é ü\",\n  \"n\": []\n}"
        );
    }

    #[test]
    fn re_indents_already_pretty_input_identically() {
        let once = pretty(r#"{"a":{"b":[1,{"c":"d"}]}}"#);
        assert_eq!(pretty(&once), once);
    }

    #[test]
    fn arrays_of_documents() {
        let a = RawValue::from_string(r#"{"n":"a"}"#.into()).unwrap();
        let b = RawValue::from_string(r#"{"n":"b"}"#.into()).unwrap();
        assert_eq!(
            pretty_array([a.as_ref(), b.as_ref()]),
            "[\n  {\n    \"n\": \"a\"\n  },\n  {\n    \"n\": \"b\"\n  }\n]"
        );
        assert_eq!(pretty_array([]), "[]");
    }

    #[test]
    fn invalid_input_does_not_panic() {
        for s in ["\"unterminated \\", "{\"a\":", "}}]]", "é{", "\\"] {
            let _ = pretty(s);
        }
    }
}
