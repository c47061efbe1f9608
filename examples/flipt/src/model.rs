//! Flags and segments: the spec types and their two spellings.
//!
//! One set of types serves both forms. The API (JSON) form uses the field names below and
//! always emits every field, as the original does. The features.yml form differs in two ways:
//! rules say `segment` and distributions `variant` (accepted through `alias` when reading,
//! renamed by [`to_yaml_entry`] when writing), and empty fields are left out of files.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_yaml_ng::{Mapping, Value};

/// `apiVersion` of every resource this controller serves.
pub const API_VERSION: &str = "flipt.io/v1alpha1";

/// A kind served by this controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flag,
    Segment,
}

impl Kind {
    /// `names.kind` of every served kind, as the SDK wants them.
    pub const NAMES: [&'static str; 2] = ["Flag", "Segment"];

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "Flag" => Some(Self::Flag),
            "Segment" => Some(Self::Segment),
            _ => None,
        }
    }

    /// The top-level key of a features.yml document holding entries of this kind.
    pub fn list_key(self) -> &'static str {
        match self {
            Self::Flag => "flags",
            Self::Segment => "segments",
        }
    }

    /// Lower-case name for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Segment => "segment",
        }
    }
}

/// A flag or a segment: what the generic operations need to know about an entry.
pub trait Entry: Serialize + DeserializeOwned + Default {
    const KIND: Kind;
    fn key(&self) -> &str;
    fn key_mut(&mut self) -> &mut String;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Flag {
    pub key: String,
    pub name: String,
    #[serde(rename = "type")]
    pub flag_type: String,
    pub description: String,
    pub enabled: bool,
    pub variants: Option<Vec<Variant>>,
    pub rules: Option<Vec<Rule>>,
    pub rollouts: Option<Vec<Rollout>>,
}

impl Entry for Flag {
    const KIND: Kind = Kind::Flag;
    fn key(&self) -> &str {
        &self.key
    }
    fn key_mut(&mut self) -> &mut String {
        &mut self.key
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Variant {
    pub key: String,
    pub name: String,
    pub description: String,
    /// Arbitrary data, passed through unchanged.
    pub attachment: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rule {
    #[serde(alias = "segment")]
    pub segment_key: String,
    pub rank: u64,
    pub distributions: Option<Vec<Distribution>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Distribution {
    #[serde(alias = "variant")]
    pub variant_key: String,
    pub rollout: Percent,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rollout {
    pub description: String,
    pub segment: Option<SegmentRule>,
    pub threshold: Option<Threshold>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmentRule {
    pub key: String,
    pub value: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Threshold {
    pub percentage: Percent,
    pub value: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Segment {
    pub key: String,
    pub name: String,
    pub description: String,
    pub constraints: Option<Vec<Constraint>>,
    pub match_type: String,
}

impl Entry for Segment {
    const KIND: Kind = Kind::Segment;
    fn key(&self) -> &str {
        &self.key
    }
    fn key_mut(&mut self) -> &mut String {
        &mut self.key
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Constraint {
    #[serde(rename = "type")]
    pub constraint_type: String,
    pub property: String,
    pub operator: String,
    pub value: String,
    pub description: String,
}

/// A percentage (Flipt stores float32). Whole numbers are written without a fraction, as Go
/// prints them, so `rollout: 50` stays `50` instead of becoming `50.0` on every rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Percent(pub f32);

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        // Beyond ±2^24 an f32 has no fraction anyway, and the cast would start to round.
        if value.fract() == 0.0 && value.abs() <= 16_777_216.0 {
            return serializer.serialize_i64(value as i64);
        }
        // Widening 33.3f32 to f64 gives 33.29999923706055, which the YAML serializer would
        // write out; going through the shortest f32 decimal keeps it 33.3.
        let shortest = value.to_string().parse().unwrap_or(f64::from(value));
        serializer.serialize_f64(shortest)
    }
}

/// Key of a stored entry, without parsing the rest of it (delete and put must work even
/// when some other field of the entry is malformed).
pub fn entry_key(entry: &Value) -> Option<&str> {
    entry.get("key").and_then(Value::as_str)
}

/// Parses a stored entry. Hand-written YAML often has `description:` with no value (null),
/// which means "empty" rather than "wrong type", so nulls are dropped first.
pub fn from_yaml_entry<T: Entry>(entry: &Value) -> Result<T, serde_yaml_ng::Error> {
    let mut entry = entry.clone();
    drop_nulls(&mut entry);
    serde_yaml_ng::from_value(entry)
}

/// Serializes an entry in the features.yml spelling, leaving out empty fields.
pub fn to_yaml_entry<T: Entry>(item: &T) -> Result<Value, serde_yaml_ng::Error> {
    let mut value = serde_yaml_ng::to_value(item)?;
    to_file_form(&mut value);
    Ok(value)
}

/// Parses the `spec` of a put body. A missing or null spec means "all defaults": only the key,
/// which comes from the resource name.
pub fn from_spec<T: Entry>(spec: &RawValue) -> Result<T, serde_json::Error> {
    if spec.get().trim() == "null" {
        return Ok(T::default());
    }
    serde_json::from_str(spec.get())
}

/// Attachments are user data: no cleanup happens inside them.
const ATTACHMENT: &str = "attachment";

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            map.retain(|_, v| !v.is_null());
            for (key, v) in map.iter_mut() {
                if key.as_str() != Some(ATTACHMENT) {
                    drop_nulls(v);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn to_file_form(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            let fields = std::mem::take(map);
            *map = Mapping::with_capacity(fields.len());
            for (key, mut v) in fields {
                let is_attachment = key.as_str() == Some(ATTACHMENT);
                if !is_attachment {
                    to_file_form(&mut v);
                }
                let empty = match &v {
                    Value::Null => true,
                    Value::String(s) => s.is_empty() && !is_attachment,
                    Value::Sequence(items) => items.is_empty() && !is_attachment,
                    _ => false,
                };
                if empty {
                    continue;
                }
                let key = match key.as_str() {
                    Some("segment_key") => Value::from("segment"),
                    Some("variant_key") => Value::from("variant"),
                    _ => key,
                };
                map.insert(key, v);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(to_file_form),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAG_YAML: &str = r##"
key: new-login
name: New Login
type: VARIANT_FLAG_TYPE
description:
enabled: true
variants:
  - key: blue
    name: Blue
    attachment: {color: "#00f", empty: null, list: []}
rules:
  - segment: beta-users
    rank: 1
    distributions:
      - variant: blue
        rollout: 33.3
      - variant: green
        rollout: 66.7
rollouts:
  - segment: {key: beta-users, value: true}
  - threshold: {percentage: 50, value: false}
"##;

    fn flag() -> Flag {
        let value: Value = serde_yaml_ng::from_str(FLAG_YAML).expect("valid YAML");
        from_yaml_entry(&value).expect("a valid flag")
    }

    #[test]
    fn reads_yaml_names_and_null_fields() {
        let flag = flag();
        assert_eq!(flag.description, "");
        let rules = flag.rules.as_deref().unwrap_or_default();
        assert_eq!(rules[0].segment_key, "beta-users");
        let dists = rules[0].distributions.as_deref().unwrap_or_default();
        assert_eq!(dists[0].variant_key, "blue");
        assert_eq!(dists[1].rollout, Percent(66.7));
    }

    #[test]
    fn json_form_emits_every_field_with_api_names() {
        let json = serde_json::to_string(&flag()).expect("serializes");
        assert_eq!(
            json,
            concat!(
                r#"{"key":"new-login","name":"New Login","type":"VARIANT_FLAG_TYPE","description":"","enabled":true,"#,
                r##""variants":[{"key":"blue","name":"Blue","description":"","attachment":{"color":"#00f","empty":null,"list":[]}}],"##,
                r#""rules":[{"segment_key":"beta-users","rank":1,"distributions":[{"variant_key":"blue","rollout":33.3},{"variant_key":"green","rollout":66.7}]}],"#,
                r#""rollouts":[{"description":"","segment":{"key":"beta-users","value":true},"threshold":null},{"description":"","segment":null,"threshold":{"percentage":50,"value":false}}]}"#
            )
        );
    }

    #[test]
    fn yaml_form_uses_file_names_and_skips_empties() {
        let yaml = serde_yaml_ng::to_string(&to_yaml_entry(&flag()).expect("serializes"))
            .expect("serializes");
        assert_eq!(
            yaml,
            r##"key: new-login
name: New Login
type: VARIANT_FLAG_TYPE
enabled: true
variants:
- key: blue
  name: Blue
  attachment:
    color: '#00f'
    empty: null
    list: []
rules:
- segment: beta-users
  rank: 1
  distributions:
  - variant: blue
    rollout: 33.3
  - variant: green
    rollout: 66.7
rollouts:
- segment:
    key: beta-users
    value: true
- threshold:
    percentage: 50
    value: false
"##
        );
    }

    #[test]
    fn yaml_form_round_trips() {
        let original = flag();
        let back: Flag =
            from_yaml_entry(&to_yaml_entry(&original).expect("serializes")).expect("parses");
        assert_eq!(back, original);
    }

    #[test]
    fn null_spec_means_defaults() {
        let null = RawValue::from_string("null".into()).expect("valid JSON");
        assert_eq!(
            from_spec::<Segment>(&null).expect("accepted"),
            Segment::default()
        );
        let bad = RawValue::from_string(r#"{"enabled":"yes"}"#.into()).expect("valid JSON");
        assert!(from_spec::<Flag>(&bad).is_err());
    }

    #[test]
    fn percent_keeps_fractions_only_where_present() {
        let values = [Percent(50.0), Percent(12.5), Percent(0.0), Percent(33.3)];
        let json = serde_json::to_string(&values).expect("serializes");
        assert_eq!(json, "[50,12.5,0,33.3]");
        let yaml = serde_yaml_ng::to_string(&values).expect("serializes");
        assert_eq!(yaml, "- 50\n- 12.5\n- 0\n- 33.3\n");
    }
}
