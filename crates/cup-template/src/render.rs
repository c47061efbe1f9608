//! The two path templates and the data they see.
//!
//! Templates use Go's text/template language (via `gtmpl`, a Rust implementation of it),
//! with the original's extra function `replace` (`strings.ReplaceAll`). The data is the
//! original's request object, so the fields differ per operation: list has no `.Name`
//! (using it there is an error, as in the original), put also has `.Resource`.

use std::collections::HashMap;

use cup_model::{Resource, StringMap};
use gtmpl::{Context, FuncError, Template, Value};

use crate::Error;

/// The original's default list template.
pub const DEFAULT_LIST_TEMPLATE: &str =
    "{{ .Namespace }}/{{ .Group }}-{{ .Version }}-{{ .Kind }}-*.json";
/// The original's default resource template.
pub const DEFAULT_RESOURCE_TEMPLATE: &str =
    "{{ .Namespace }}/{{ .Group }}-{{ .Version }}-{{ .Kind }}-{{ .Name }}.json";

/// Which template, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `list_template`: the glob of every resource of a kind in a namespace.
    List,
    /// `resource_template`: the path of one resource's file.
    Resource,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Which::List => "list_template",
            Which::Resource => "resource_template",
        })
    }
}

/// A parsed template.
pub struct PathTemplate {
    which: Which,
    template: Template,
}

impl PathTemplate {
    /// Parses `text`, or the default when it is empty.
    pub fn parse(which: Which, text: &str) -> Result<PathTemplate, Error> {
        let text = match (text.is_empty(), which) {
            (false, _) => text,
            (true, Which::List) => DEFAULT_LIST_TEMPLATE,
            (true, Which::Resource) => DEFAULT_RESOURCE_TEMPLATE,
        };
        check_actions_closed(text).map_err(|message| Error::Template {
            which,
            message: message.into(),
        })?;
        let mut template = Template::default();
        template.add_func("replace", replace);
        template.parse(text).map_err(|e| Error::Template {
            which,
            message: e.to_string(),
        })?;
        Ok(PathTemplate { which, template })
    }

    /// Renders the template with `data` as its dot (`.Namespace`, `.Name`, ...).
    pub fn render(&self, data: HashMap<String, Value>) -> Result<String, Error> {
        self.template
            .render(&Context::from(Value::Object(data)))
            .map_err(|e| Error::Template {
                which: self.which,
                message: e.to_string(),
            })
    }
}

/// Refuses a template with an action (`{{ ...`) that is never closed.
///
/// gtmpl 0.7's lexer loops forever on some of those (`{{ .Name ` with a trailing space,
/// `{{ .A.`, `{{ "}}" `): it never sees EOF inside an action. Every action closed means
/// the lexer never reaches EOF inside one, so this scan runs first. It follows Go's lexer:
/// strings (`"…"` with escapes, raw `` `…` ``, `'…'`) and comments (`/* … */`) may contain
/// `}}`.
fn check_actions_closed(text: &str) -> Result<(), &'static str> {
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        rest = &rest[open + 2..];
        rest = rest.strip_prefix('-').unwrap_or(rest);
        let trimmed = rest.trim_start();
        if let Some(comment) = trimmed.strip_prefix("/*") {
            let end = comment.find("*/").ok_or("unclosed comment")?;
            rest = &comment[end + 2..];
        }
        rest = skip_action(rest).ok_or("unclosed action (missing \"}}\")")?;
    }
    Ok(())
}

/// The text after the `}}` closing the action that `action` starts, if there is one.
fn skip_action(action: &str) -> Option<&str> {
    let mut chars = action.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '}' if action[i..].starts_with("}}") => return Some(&action[i + 2..]),
            '"' | '\'' => loop {
                match chars.next()? {
                    (_, '\\') => {
                        chars.next()?;
                    }
                    (_, q) if q == c => break,
                    _ => {}
                }
            },
            '`' => while chars.next()?.1 != '`' {},
            _ => {}
        }
    }
    None
}

/// `replace s old new` = Go's `strings.ReplaceAll(s, old, new)`.
fn replace(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [Value::String(s), Value::String(old), Value::String(new)] => {
            Ok(Value::String(s.replace(old.as_str(), new)))
        }
        [_, _, _] => Err(FuncError::Generic(
            "replace: all three arguments must be strings".into(),
        )),
        _ => Err(FuncError::ExactlyXArgs("replace".into(), 3)),
    }
}

/// `.Group .Version .Kind .Namespace` (+ `.Labels`, always empty: the server never passes
/// label selectors, as in the original).
pub fn base_data(
    group: &str,
    version: &str,
    kind: &str,
    namespace: &str,
) -> HashMap<String, Value> {
    HashMap::from([
        ("Group".to_owned(), Value::from(group)),
        ("Version".to_owned(), Value::from(version)),
        ("Kind".to_owned(), Value::from(kind)),
        ("Namespace".to_owned(), Value::from(namespace)),
    ])
}

/// The Go `Resource` struct as template data (`.Resource.Metadata.Labels`, ...).
pub fn resource_value(resource: &Resource) -> Value {
    let meta = &resource.metadata;
    let metadata = HashMap::from([
        ("Namespace".to_owned(), Value::from(meta.namespace.as_str())),
        ("Name".to_owned(), Value::from(meta.name.as_str())),
        ("Labels".to_owned(), string_map(&meta.labels)),
        ("Annotations".to_owned(), string_map(&meta.annotations)),
    ]);
    let spec = serde_json::from_str(resource.spec.get())
        .map(|v| json_value(&v))
        .unwrap_or(Value::Nil);
    Value::Object(HashMap::from([
        (
            "APIVersion".to_owned(),
            Value::from(resource.api_version.as_str()),
        ),
        ("Kind".to_owned(), Value::from(resource.kind.as_str())),
        ("Metadata".to_owned(), Value::Object(metadata)),
        ("Spec".to_owned(), spec),
    ]))
}

fn string_map(map: &StringMap) -> Value {
    match map {
        None => Value::Nil,
        Some(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect(),
        ),
    }
}

fn json_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Nil),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(json_value).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> HashMap<String, Value> {
        base_data("test.cup.flipt.io", "v1alpha1", "Resource", "default")
    }

    #[test]
    fn defaults_render_like_the_original() {
        let list = PathTemplate::parse(Which::List, "").unwrap();
        assert_eq!(
            list.render(data()).unwrap(),
            "default/test.cup.flipt.io-v1alpha1-Resource-*.json"
        );
        let resource = PathTemplate::parse(Which::Resource, "").unwrap();
        let mut d = data();
        d.insert("Name".into(), Value::from("foo"));
        assert_eq!(
            resource.render(d).unwrap(),
            "default/test.cup.flipt.io-v1alpha1-Resource-foo.json"
        );
    }

    #[test]
    fn replace_works_called_and_piped_with_go_argument_order() {
        let t = PathTemplate::parse(Which::List, r#"{{ replace .Group "." "-" }}/*.json"#).unwrap();
        assert_eq!(t.render(data()).unwrap(), "test-cup-flipt-io/*.json");
        // In a pipeline the piped value is the *last* argument, as in Go.
        let t = PathTemplate::parse(Which::List, r#"{{ "a.b" | replace "." "-" }}"#).unwrap();
        assert_eq!(t.render(data()).unwrap(), ".");
    }

    #[test]
    fn name_in_a_list_template_is_an_error_and_bad_templates_are_refused() {
        let t = PathTemplate::parse(Which::List, "{{ .Name }}").unwrap();
        let err = t.render(data()).unwrap_err().to_string();
        assert!(err.contains("list_template"), "{err}");
        let err = PathTemplate::parse(Which::Resource, "{{ .Name ")
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("resource_template"), "{err}");
    }

    #[test]
    fn unclosed_actions_are_refused_without_reaching_gtmpl() {
        for text in [
            "{{ .Name ",
            "{{ .A.",
            "{{ \"}}\" ",
            "x {{ ",
            "{{/* c */ .A",
            "{{ `}}` ",
            "{{ '}' ",
        ] {
            let err = PathTemplate::parse(Which::Resource, text)
                .err()
                .map(|e| e.to_string());
            assert!(err.is_some_and(|e| e.contains("unclosed")), "{text:?}");
        }
        for text in [
            "{{ \"}}\" }}",
            "{{/* }} */}}x",
            "{{ `}}` }}",
            "{{- .Kind -}}",
        ] {
            assert!(
                PathTemplate::parse(Which::Resource, text).is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn resource_fields_are_visible_to_put_templates() {
        let res: Resource = serde_json::from_str(
            r#"{"apiVersion":"g/v","kind":"K","metadata":{"namespace":"n","name":"x","labels":{"team":"a"}},"spec":{"n":1}}"#,
        )
        .unwrap();
        let t = PathTemplate::parse(
            Which::Resource,
            r#"{{ index .Resource.Metadata.Labels "team" }}/{{ .Resource.Spec.n }}"#,
        )
        .unwrap();
        let mut d = data();
        d.insert("Resource".into(), resource_value(&res));
        assert_eq!(t.render(d).unwrap(), "a/1");
    }
}
