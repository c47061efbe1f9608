//! Canonical JSON: the one byte form of a JSON value that cup hashes and embeds.
//!
//! Rules (also in docs/FORMAT.md): UTF-8; no insignificant whitespace; object keys sorted by
//! their UTF-8 bytes (= Unicode code point order); strings escaped as `serde_json` does
//! (only `"`, `\` and control characters); numbers as `serde_json` prints them (integers
//! verbatim, floats in shortest round-trip form). The same value always gives the same bytes,
//! whatever order its keys arrived in, so hashes of definitions are stable.
//!
//! Keys are sorted here explicitly instead of relying on `serde_json::Map` being a
//! `BTreeMap`: another crate in a build may switch on serde_json's `preserve_order` feature,
//! which would silently change the map's iteration order.

use serde::Serialize;
use serde_json::Value;

/// Serialises any value to canonical JSON bytes.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(256);
    write_value(&value, &mut out)?;
    Ok(out)
}

/// Canonical JSON of an already parsed value.
pub fn value_to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing scalars into a Vec cannot fail; an error here would be a serde_json bug.
    write_value(value, &mut out).expect("serialising a JSON scalar into memory");
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_recursively_and_drops_whitespace() {
        let value: Value =
            serde_json::from_str(r#"{ "b": [ {"y":1, "x":2} ], "a": "\u00e9\n", "c": 1.50 }"#)
                .unwrap();
        assert_eq!(
            String::from_utf8(value_to_vec(&value)).unwrap(),
            r#"{"a":"é\n","b":[{"x":2,"y":1}],"c":1.5}"#
        );
    }

    #[test]
    fn same_value_same_bytes_whatever_the_input_order() {
        let one: Value = serde_json::from_str(r#"{"k":{"b":1,"a":2},"z":null}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{"z":null,"k":{"a":2,"b":1}}"#).unwrap();
        assert_eq!(value_to_vec(&one), value_to_vec(&two));
    }
}
