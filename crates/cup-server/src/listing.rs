//! Bounds on list responses.
//!
//! A wasm controller's list output is untrusted, and it amplifies: each JSON value decodes to
//! a whole resource whose absent fields are filled in, so `{}` (2 bytes of stdout, ~200 bytes
//! once decoded) is re-encoded as ~110 bytes of `{"apiVersion":"","kind":"",…}`. Within the
//! 16 MiB stdout cap that is 8 million resources, a response of ~900 MB and 2.5 GB of
//! memory. Two bounds hold it:
//!
//! * [`ListLimits::max_items`] is checked while the stdout stream is decoded, so at most that
//!   many resources (plus the one that crosses it) are ever built: decoding memory is the
//!   stdout bytes plus a fixed cost per item.
//! * [`ListLimits::max_bytes`] is checked while the response is encoded, after each
//!   resource, so the body never grows past it by more than one resource.
//!
//! Crossing either is a 500 that names the bound and its flag, never a cut-short list.

use cup_model::Resource;
use cup_model::compact_go_json;

/// Bounds of one list response (flags `--max-list-items`, `--max-list-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    /// Most resources one wasm controller list may return.
    pub max_items: usize,
    /// Largest list response body, in bytes (NDJSON or JSON array).
    pub max_bytes: usize,
}

impl ListLimits {
    /// 10,000 resources: two orders of magnitude above the lists cup serves (tens to
    /// hundreds of flags per namespace), while the fixed cost per item (~200 bytes decoded,
    /// ~110 encoded) stays near 3 MB in all.
    pub const DEFAULT_MAX_ITEMS: usize = 10_000;
    /// 32 MiB: twice the controller's 16 MiB stdout cap, so any list that fits in stdout
    /// fits re-encoded (compacting only removes bytes; Go's escaping of `<`, `>`, `&` and the
    /// filled-in empty fields add some) unless most of it is characters Go escapes.
    pub const DEFAULT_MAX_BYTES: usize = 32 << 20;
}

impl Default for ListLimits {
    fn default() -> Self {
        ListLimits {
            max_items: Self::DEFAULT_MAX_ITEMS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// A list over one of the bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListTooBig {
    #[error(
        "the controller listed more than {limit} resources (the bound of --max-list-items); \
         nothing was returned"
    )]
    Items { limit: usize },
    #[error(
        "the list response would be larger than {limit} bytes (the bound of --max-list-bytes); \
         nothing was returned"
    )]
    Bytes { limit: usize },
}

/// Why a list's stdout was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decoding the controller's output: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    TooBig(#[from] ListTooBig),
}

/// Every JSON value of a list's stdout as a resource, stopping at the first value past
/// `max_items`.
pub fn decode(stdout: &[u8], max_items: usize) -> Result<Vec<Resource>, DecodeError> {
    let mut resources = Vec::new();
    for value in serde_json::Deserializer::from_slice(stdout).into_iter::<Resource>() {
        if resources.len() == max_items {
            return Err(ListTooBig::Items { limit: max_items }.into());
        }
        resources.push(value?);
    }
    Ok(resources)
}

/// A resource as compact Go JSON (HTML-escaped, `spec` compacted).
pub fn encode_one(resource: &Resource) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(resource).map(|b| compact_go_json(&b))
}

/// The list body: one compact resource and `\n` each (NDJSON), or one JSON array and `\n`.
/// Fails as soon as the body passes `max_bytes`. A resource that cannot be encoded is left
/// out, as before.
pub fn encode(
    resources: &[Resource],
    array: bool,
    max_bytes: usize,
) -> Result<Vec<u8>, ListTooBig> {
    let too_big = || ListTooBig::Bytes { limit: max_bytes };
    let mut out = Vec::new();
    if array {
        out.push(b'[');
    }
    let mut first = true;
    for r in resources {
        let Ok(bytes) = encode_one(r) else { continue };
        if array && !first {
            out.push(b',');
        }
        first = false;
        // Checked before copying, so the body never holds more than the bound.
        if out.len() + bytes.len() + 1 > max_bytes {
            return Err(too_big());
        }
        out.extend_from_slice(&bytes);
        if !array {
            out.push(b'\n');
        }
    }
    if array {
        out.extend_from_slice(b"]\n");
    }
    if out.len() > max_bytes {
        return Err(too_big());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_stops_at_the_first_value_past_the_bound() {
        assert_eq!(decode(b"{} {} {}", 3).unwrap().len(), 3);
        let err = decode(b"{} {} {", 3).unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)), "{err}");
        // Everything after the crossing value is never read: a bad tail does not matter.
        let err = decode(b"{} {} {} {} not json", 3).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooBig(ListTooBig::Items { limit: 3 })),
            "{err}"
        );
        assert!(err.to_string().contains("--max-list-items"), "{err}");
        assert!(decode(b"", 0).unwrap().is_empty());
    }

    #[test]
    fn encode_matches_the_format_and_stops_at_the_byte_bound() {
        let list = decode(
            br#"{"metadata":{"name":"a"}} {"metadata":{"name":"b"}}"#,
            10,
        )
        .unwrap();
        let one = encode_one(&list[0]).unwrap().len();
        let ndjson = encode(&list, false, usize::MAX).unwrap();
        assert_eq!(ndjson.len(), 2 * one + 2);
        assert_eq!(ndjson.iter().filter(|&&b| b == b'\n').count(), 2);
        let array = encode(&list, true, usize::MAX).unwrap();
        assert_eq!(array.len(), 2 * one + 4);
        let parsed: serde_json::Value = serde_json::from_slice(&array).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(2));
        // Exactly at the bound is fine; one byte less is not.
        assert_eq!(encode(&list, false, ndjson.len()).unwrap(), ndjson);
        assert_eq!(encode(&list, true, array.len()).unwrap(), array);
        let err = encode(&list, false, ndjson.len() - 1).unwrap_err();
        assert_eq!(
            err,
            ListTooBig::Bytes {
                limit: ndjson.len() - 1
            }
        );
        assert!(err.to_string().contains("--max-list-bytes"), "{err}");
        assert!(encode(&list, true, array.len() - 1).is_err());
        assert_eq!(encode(&[], true, 3).unwrap(), b"[]\n");
        assert!(encode(&[], false, 0).unwrap().is_empty());
    }
}
