//! cosign's simple-signing payload, written byte for byte as cosign writes it.

use std::collections::BTreeMap;

/// The `critical.type` of a cosign signature payload.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// cosign's simple-signing payload for `manifest_digest` in `docker_reference`:
///
/// ```text
/// {"critical":{"identity":{"docker-reference":REF},"image":{"docker-manifest-digest":DIGEST},
///  "type":"cosign container image signature"},"optional":ANNOTATIONS}
/// ```
///
/// on one line, `optional` being `null` when there are no annotations, exactly as cosign's Go
/// code (`encoding/json`) writes it: keys in that order, annotations sorted by key, strings
/// escaped as Go escapes them (`<`, `>`, `&`, U+2028 and U+2029 too). cosign signs the
/// repository, not a tag: `docker_reference` is normally `registry/repository`.
pub fn simple_signing_payload(
    docker_reference: &str,
    manifest_digest: &str,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut out = String::with_capacity(200);
    out.push_str(r#"{"critical":{"identity":{"docker-reference":"#);
    push_go_string(&mut out, docker_reference);
    out.push_str(r#"},"image":{"docker-manifest-digest":"#);
    push_go_string(&mut out, manifest_digest);
    out.push_str(r#"},"type":"#);
    push_go_string(&mut out, SIMPLE_SIGNING_TYPE);
    out.push_str(r#"},"optional":"#);
    if annotations.is_empty() {
        // cosign's annotations are a nil map when none are given, which Go writes as null.
        out.push_str("null");
    } else {
        out.push('{');
        for (i, (key, value)) in annotations.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_go_string(&mut out, key);
            out.push(':');
            push_go_string(&mut out, value);
        }
        out.push('}');
    }
    out.push('}');
    out.into_bytes()
}

/// A JSON string as Go's `encoding/json` (Go 1.22 and later) writes it: HTML-safe (`<`, `>`,
/// `&` as `\u003c`, `\u003e`, `\u0026`), U+2028 and U+2029 escaped, `\b \f \n \r \t` short,
/// other control characters as `\u00xx`; everything else as it is.
fn push_go_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_cosign_writes() {
        let digest = "sha256:9c4d2f1ea52b6d0a3c8e7f5b1a2d3c4e5f60718293a4b5c6d7e8f90123456789";
        assert_eq!(
            String::from_utf8(simple_signing_payload(
                "registry.example/team/flags",
                digest,
                &BTreeMap::new()
            ))
            .unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"registry.example/team/flags"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let annotations = BTreeMap::from([
            ("z".to_owned(), "last".to_owned()),
            ("a".to_owned(), "<b> & \"c\"\n\u{1}\u{2028}é".to_owned()),
        ]);
        assert_eq!(
            String::from_utf8(simple_signing_payload("r/x", "d", &annotations)).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"r/x"},"image":{"docker-manifest-digest":"d"},"type":"cosign container image signature"},"optional":{"a":"\u003cb\u003e \u0026 \"c\"\n\u0001\u2028é","z":"last"}}"#
        );
    }

    #[test]
    fn every_payload_is_json_that_reads_back() {
        let annotations = BTreeMap::from([("k\u{7f}\\".to_owned(), "\u{8}\u{c}\r\t".to_owned())]);
        let payload = simple_signing_payload("a\"b", "c", &annotations);
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(value["critical"]["identity"]["docker-reference"], "a\"b");
        assert_eq!(value["optional"]["k\u{7f}\\"], "\u{8}\u{c}\r\t");
    }
}
