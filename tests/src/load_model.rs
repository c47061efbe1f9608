//! What a load client expects of its own resources: the specs it sends, the states a name
//! may be in after its acknowledged (and unacknowledged) writes, and the judgement of what
//! the server shows against them: correct, a lost write, or a mixed one.

use serde_json::{Value, json};

/// A name's state: absent, or holding the spec of one put.
pub type State = Option<Value>;

/// What one client knows about one of its names.
#[derive(Debug, Clone, Default)]
pub struct NameModel {
    /// The states the server may show: one after an acknowledged write; more while the
    /// outcome of a failed write is unknown (it may or may not have been applied).
    pub acceptable: Vec<State>,
    /// Every spec ever sent for the name, to tell a lost write (an older spec of ours)
    /// from a mixed one (content we never sent).
    pub sent: Vec<Value>,
}

impl NameModel {
    /// A name that does not exist when the run starts.
    pub fn absent() -> NameModel {
        NameModel {
            acceptable: vec![None],
            sent: Vec::new(),
        }
    }

    /// The server acknowledged a write that left the name in `state`.
    pub fn acknowledged(&mut self, state: State) {
        self.acceptable = vec![state];
    }

    /// A write whose outcome is unknown (error or no answer): either state may show.
    pub fn uncertain(&mut self, state: State) {
        if !self.acceptable.contains(&state) {
            self.acceptable.push(state);
        }
    }

    /// The single expected state, if the model is certain.
    pub fn certain(&self) -> Option<&State> {
        match self.acceptable.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

/// The verdict on what the server showed for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It shows an acceptable state (the index into `acceptable`).
    Correct(usize),
    /// It shows an older state of ours, or absence/presence contrary to the last write.
    Lost(String),
    /// It shows content this client never sent for this name.
    Mixed(String),
}

/// Judges `shown` (the resource the server returned, or `None` for a 404) for `name`.
pub fn judge(model: &NameModel, namespace: &str, name: &str, shown: Option<&Value>) -> Verdict {
    let Some(resource) = shown else {
        return match model.acceptable.iter().position(Option::is_none) {
            Some(index) => Verdict::Correct(index),
            None => Verdict::Lost(format!("{name}: absent, but the last write put it")),
        };
    };
    if let Some(problem) = metadata_problem(resource, namespace, name) {
        return Verdict::Mixed(format!("{name}: {problem}"));
    }
    let spec = resource.get("spec").unwrap_or(&Value::Null);
    let matching = model
        .acceptable
        .iter()
        .position(|state| state.as_ref().is_some_and(|sent| fields_match(sent, spec)));
    if let Some(index) = matching {
        return Verdict::Correct(index);
    }
    let expected = describe(&model.acceptable);
    if model.sent.iter().any(|sent| fields_match(sent, spec)) {
        Verdict::Lost(format!("{name}: shows an older put, expected {expected}"))
    } else if model.acceptable.iter().all(Option::is_none) && model.sent.is_empty() {
        Verdict::Mixed(format!(
            "{name}: exists but this client never put it: {spec}"
        ))
    } else {
        Verdict::Mixed(format!("{name}: shows {spec}, expected {expected}"))
    }
}

fn metadata_problem(resource: &Value, namespace: &str, name: &str) -> Option<String> {
    let metadata = resource.get("metadata")?;
    let shown_name = metadata.get("name").and_then(Value::as_str);
    let shown_namespace = metadata.get("namespace").and_then(Value::as_str);
    if shown_name != Some(name) {
        return Some(format!("metadata.name is {shown_name:?}"));
    }
    if shown_namespace != Some(namespace) {
        return Some(format!("metadata.namespace is {shown_namespace:?}"));
    }
    None
}

fn describe(states: &[State]) -> String {
    let parts: Vec<String> = states
        .iter()
        .map(|s| match s {
            None => "absent".to_owned(),
            Some(spec) => spec.to_string(),
        })
        .collect();
    parts.join(" or ")
}

/// `got` equals `sent` on every field the client set, and every field it did not set is
/// empty (the controller emits all fields with their zero value): the canonical form of a
/// spec is its set fields, so key order and defaults do not count, extra data does.
pub fn fields_match(sent: &Value, got: &Value) -> bool {
    match (sent, got) {
        (Value::Object(sent), Value::Object(got)) => {
            sent.iter()
                .all(|(key, value)| fields_match(value, got.get(key).unwrap_or(&Value::Null)))
                && got
                    .iter()
                    .all(|(key, value)| sent.contains_key(key) || is_empty(value))
        }
        (Value::Array(sent), Value::Array(got)) => {
            sent.len() == got.len() && sent.iter().zip(got).all(|(s, g)| fields_match(s, g))
        }
        _ => sent == got,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The spec of put number `seq` by `client` on `name`. For a `Flag` (the example
/// controller) it varies the type, the flag and a variant attachment carrying the writer's
/// identity, so a write landing on the wrong flag or merged with another is visible; any
/// other kind gets a small free-form spec.
pub fn spec_for(kind: &str, client: usize, name: &str, seq: u64) -> Value {
    if kind != "Flag" {
        return json!({"client": client, "name": name, "seq": seq, "note": format!("put {seq} by client {client}")});
    }
    let description = format!("client {client} put {seq}: load test, do not merge");
    if seq.is_multiple_of(2) {
        // No `key`: the controller takes it from metadata.name and shows it empty.
        json!({
            "name": format!("{name} #{seq}"),
            "type": "BOOLEAN_FLAG_TYPE",
            "description": description,
            "enabled": seq.is_multiple_of(4),
        })
    } else {
        json!({
            "name": format!("{name} #{seq}"),
            "type": "VARIANT_FLAG_TYPE",
            "description": description,
            "enabled": true,
            "variants": [
                {"key": format!("v{seq}"), "name": "Writer", "attachment": {"client": client, "seq": seq, "flag": name}},
                {"key": "other", "name": "Other"}
            ],
        })
    }
}

/// The full resource body of a put.
pub fn resource_body(
    group: &str,
    version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    spec: &Value,
) -> Value {
    json!({
        "apiVersion": format!("{group}/{version}"),
        "kind": kind,
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "flipt.io/v1alpha1", "kind": "Flag",
               "metadata": {"namespace": "default", "name": name, "labels": null, "annotations": null},
               "spec": spec})
    }

    /// What the example controller returns for a put spec: every field, zero values too.
    fn as_controller_shows(spec: &Value) -> Value {
        let mut full = json!({"key": "", "name": "", "type": "", "description": "", "enabled": false,
                              "variants": null, "rules": null, "rollouts": null});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        if let Some(variants) = full["variants"].as_array_mut() {
            for variant in variants {
                for field in ["name", "description"] {
                    if variant.get(field).is_none() {
                        variant[field] = json!("");
                    }
                }
                if variant.get("attachment").is_none() {
                    variant["attachment"] = Value::Null;
                }
            }
        }
        full
    }

    #[test]
    fn a_spec_matches_its_canonical_echo_and_nothing_else() {
        for seq in [1, 2, 3, 4] {
            let sent = spec_for("Flag", 7, "load-c07-n1", seq);
            assert!(fields_match(&sent, &as_controller_shows(&sent)), "{seq}");
            let other = spec_for("Flag", 7, "load-c07-n1", seq + 2);
            assert!(!fields_match(&sent, &as_controller_shows(&other)), "{seq}");
            let other_client = spec_for("Flag", 8, "load-c07-n1", seq);
            assert!(!fields_match(&sent, &as_controller_shows(&other_client)));
        }
        // Extra data the client never sent is a difference.
        let sent = spec_for("Flag", 1, "x", 2);
        let mut extra = as_controller_shows(&sent);
        extra["rules"] = json!([{"segment_key": "beta-users"}]);
        assert!(!fields_match(&sent, &extra));
    }

    #[test]
    fn verdicts_tell_lost_from_mixed() {
        let name = "load-c01-n0";
        let mut model = NameModel::absent();
        assert_eq!(judge(&model, "default", name, None), Verdict::Correct(0));
        let first = spec_for("Flag", 1, name, 1);
        model.sent.push(first.clone());
        model.acknowledged(Some(first.clone()));
        assert!(matches!(
            judge(&model, "default", name, None),
            Verdict::Lost(_)
        ));
        let shown_first = shown(name, as_controller_shows(&first));
        assert_eq!(
            judge(&model, "default", name, Some(&shown_first)),
            Verdict::Correct(0)
        );
        let second = spec_for("Flag", 1, name, 2);
        model.sent.push(second.clone());
        model.acknowledged(Some(second.clone()));
        assert!(matches!(
            judge(&model, "default", name, Some(&shown_first)),
            Verdict::Lost(_)
        ));
        let foreign = shown(name, as_controller_shows(&spec_for("Flag", 2, name, 2)));
        assert!(matches!(
            judge(&model, "default", name, Some(&foreign)),
            Verdict::Mixed(_)
        ));
        let renamed = shown("load-c01-n1", as_controller_shows(&second));
        assert!(matches!(
            judge(&model, "default", name, Some(&renamed)),
            Verdict::Mixed(_)
        ));
        // After a failed delete, either outcome is correct.
        model.uncertain(None);
        assert_eq!(judge(&model, "default", name, None), Verdict::Correct(1));
        let shown_second = shown(name, as_controller_shows(&second));
        assert_eq!(
            judge(&model, "default", name, Some(&shown_second)),
            Verdict::Correct(0)
        );
    }
}
