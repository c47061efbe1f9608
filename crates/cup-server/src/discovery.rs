//! `GET /apis`: one JSON object mapping `group/version/plural` to the whole definition,
//! keys sorted, compact, Go-escaped, then `\n`, as the original cup answers, so its clients
//! read it unchanged (docs/API.md, "The API"). Schemas from the config
//! directory are re-emitted as written (compacted, key order kept), as the original does
//! with its raw JSON; definitions embedded in modules are already canonical JSON.

use std::collections::BTreeMap;

use cup_model::compact_go_json;
use cup_model::{Names, ObjectMeta, ResourceDefinition};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A ResourceDefinition in Go field order with raw schemas.
#[derive(Serialize)]
struct GoDefinition<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    metadata: &'a ObjectMeta,
    names: &'a Names,
    spec: GoSpec<'a>,
}

#[derive(Serialize)]
struct GoSpec<'a> {
    group: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    versions: BTreeMap<&'a str, &'a RawValue>,
}

#[derive(Deserialize)]
struct RawVersions {
    #[serde(default)]
    spec: RawSpec,
}

#[derive(Deserialize, Default)]
struct RawSpec {
    #[serde(default)]
    versions: BTreeMap<String, Box<RawValue>>,
}

/// The `/apis` value of a definition read from `raw` (the file's JSON).
pub fn encode_raw(def: &ResourceDefinition, raw: &str) -> serde_json::Result<String> {
    let versions: RawVersions = serde_json::from_str(raw)?;
    encode_with(def, &versions.spec.versions)
}

/// The `/apis` value of a parsed definition (an embedded one).
pub fn encode(def: &ResourceDefinition) -> serde_json::Result<String> {
    let versions = def
        .spec
        .versions
        .iter()
        .map(|(v, schema)| Ok((v.clone(), serde_json::value::to_raw_value(schema)?)))
        .collect::<serde_json::Result<BTreeMap<_, _>>>()?;
    encode_with(def, &versions)
}

fn encode_with(
    def: &ResourceDefinition,
    versions: &BTreeMap<String, Box<RawValue>>,
) -> serde_json::Result<String> {
    let go = GoDefinition {
        api_version: &def.api_version,
        kind: &def.kind,
        metadata: &def.metadata,
        names: &def.names,
        spec: GoSpec {
            group: &def.spec.group,
            versions: versions.iter().map(|(k, v)| (k.as_str(), &**v)).collect(),
        },
    };
    let bytes = compact_go_json(&serde_json::to_vec(&go)?);
    // compact() only re-escapes inside valid UTF-8 strings, so this cannot fail.
    String::from_utf8(bytes).map_err(|e| serde_json::Error::io(std::io::Error::other(e)))
}

/// The whole `/apis` body from `key → encoded definition`.
pub fn body(entries: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.values().map(|v| v.len() + 64).sum());
    out.push(b'{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A key is a JSON string; serde_json escapes it, compact() adds Go's HTML escapes.
        let key = serde_json::to_vec(key).unwrap_or_else(|_| b"\"\"".to_vec());
        out.extend_from_slice(&compact_go_json(&key));
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_schemas_keep_their_key_order() {
        let raw = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io"},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object","properties":{"spec":{"type":"object","properties":{"foo":{"type":"string"}},"additionalProperties":false}},"additionalProperties":true}}}}"#;
        let def: ResourceDefinition = serde_json::from_str(raw).unwrap();
        let encoded = encode_raw(&def, raw).unwrap();
        let body = body(&BTreeMap::from([(
            "test.cup.flipt.io/v1alpha1/resources".to_owned(),
            encoded,
        )]));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"test.cup.flipt.io/v1alpha1/resources":{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io","labels":null,"annotations":null},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object","properties":{"spec":{"type":"object","properties":{"foo":{"type":"string"}},"additionalProperties":false}},"additionalProperties":true}}}}}"#.to_owned() + "\n"
        );
    }
}
