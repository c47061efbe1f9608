//! The original cup's integration scenario through the real `cup` binary
//! against a real `cupd` serving the template controller over a local directory:
//! definitions, list, get, apply on stdin, delete; in JSON and in table form. Plus `edit`.

use crate::cli_common::*;
use serde_json::Value;

#[test]
fn the_original_scenario_in_json() {
    let f = Fixture::start();

    // definitions: exactly the fixture's one definition.
    let defs = f.cup(&["-o", "json", "definitions"]).json();
    let defs = defs.as_array().expect("an array of definitions");
    assert_eq!(defs.len(), 1, "{defs:?}");
    let expected = json(DEFINITION);
    for key in ["apiVersion", "kind", "names", "spec"] {
        assert_eq!(defs[0][key], expected[key], "{key}");
    }
    assert_eq!(defs[0]["metadata"]["name"], "resources.test.cup.flipt.io");

    // get: the list is bar, foo (sorted by the controller), as one JSON array.
    let list = f.cup(&["-o", "json", "get", "resources"]).json();
    assert_eq!(list, Value::Array(vec![json(BAR), json(FOO)]));

    // get one: an object, not an array.
    let foo = f.cup(&["-o", "json", "get", "resources", "foo"]).json();
    assert_eq!(foo, json(FOO));

    // The JSON keeps the server's key order (Go's field order), indented.
    let text = f.cup(&["-o", "json", "get", "resources", "foo"]);
    assert!(
        text.ok().starts_with(
            "{\n  \"apiVersion\": \"test.cup.flipt.io/v1alpha1\",\n  \"kind\": \"Resource\",\n  \"metadata\": {\n    \"namespace\": \"default\",\n    \"name\": \"foo\","
        ),
        "{}",
        text.stdout
    );

    // apply on stdin: the local source's zero Result, and the file the template writes.
    let result = f.cup_stdin(&["-o", "json", "apply"], BAZ).json();
    assert_eq!(result, json(ZERO_RESULT));
    let written = std::fs::read_to_string(f.source().join(file_of("baz"))).expect("baz written");
    assert_eq!(json(&written), json(BAZ));

    // delete: the same Result, and the file is gone.
    let result = f.cup(&["-o", "json", "delete", "resources", "foo"]).json();
    assert_eq!(result, json(ZERO_RESULT));
    assert!(!f.source().join(file_of("foo")).exists());

    let names: Vec<Value> = f
        .cup(&["-o", "json", "get", "resources"])
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, ["bar", "baz"]);
}

#[test]
fn the_original_scenario_in_tables() {
    let f = Fixture::start();

    assert_eq!(
        f.cup(&["definitions"]).ok(),
        "PLURAL      APIVERSION                   KIND       VERSIONS\n\
         resources   test.cup.flipt.io/v1alpha1   Resource   v1alpha1\n"
    );
    // The alias and every spelling of the type give the same table.
    let table =
        "NAMESPACE   NAME   LABELS\ndefault     bar    bar=baz\ndefault     foo    foo=bar\n";
    for ty in [
        "resources",
        "resource",
        "Resource",
        "RESOURCES",
        "test.cup.flipt.io/resource",
        "test.cup.flipt.io/v1alpha1/resources",
        "resources.test.cup.flipt.io",
    ] {
        assert_eq!(f.cup(&["get", ty]).ok(), table, "{ty}");
    }
    assert_eq!(f.cup(&["defs"]).ok(), f.cup(&["definitions"]).ok());
    assert_eq!(
        f.cup(&["get", "resources", "foo"]).ok(),
        "NAMESPACE   NAME   LABELS\ndefault     foo    foo=bar\n"
    );

    // A write made in place (a null proposal: the original crashed here) is one line.
    assert_eq!(f.cup_stdin(&["apply"], BAZ).ok(), "resource/baz applied\n");
    let file = f.path("baz.json");
    std::fs::write(&file, BAZ).expect("write");
    assert_eq!(
        f.cup(&["apply", "-f", &file.to_string_lossy()]).ok(),
        "resource/baz applied\n",
        "apply -f FILE"
    );
    assert_eq!(
        f.cup(&["delete", "resources", "foo"]).ok(),
        "resource/foo deleted\n"
    );
    assert_eq!(
        f.cup(&["get", "resources"]).ok(),
        "NAMESPACE   NAME   LABELS\ndefault     bar    bar=baz\ndefault     baz    baz=foo\n"
    );

    // Several names: each is fetched; the found ones print, a missing one is reported on
    // stderr and the exit status is 1.
    let some = f.cup(&["get", "resources", "bar", "nope", "baz"]);
    assert_eq!(some.code, 1);
    assert_eq!(
        some.stdout,
        "NAMESPACE   NAME   LABELS\ndefault     bar    bar=baz\ndefault     baz    baz=foo\n"
    );
    assert_eq!(
        some.stderr,
        "cup: resources \"nope\" not found in namespace \"default\"\n"
    );
    let both = f
        .cup(&["-o", "json", "get", "resources", "bar", "baz"])
        .json();
    assert_eq!(
        both.as_array().map(Vec::len),
        Some(2),
        "several names: an array"
    );

    // An empty namespace: nothing on stdout, a notice on stderr, success; JSON: [].
    let empty = f.cup(&["-n", "other", "get", "resources"]);
    assert_eq!((empty.code, empty.stdout.as_str()), (0, ""));
    assert_eq!(empty.stderr, "no resources in namespace \"other\"\n");
    assert_eq!(
        f.cup(&["-n", "other", "-o", "json", "get", "resources"])
            .json(),
        Value::Array(vec![])
    );
}

#[test]
fn apply_takes_the_namespace_from_the_body_else_from_the_flag_or_context() {
    let f = Fixture::start();
    // No metadata.namespace: -n decides.
    let body = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"name":"q","labels":{},"annotations":{}},"spec":{"foo":"x"}}"#;
    let addr = f.cupd.base_url();
    f.cup
        .run_stdin(&["-a", &addr, "-n", "team", "apply"], body)
        .ok();
    assert!(
        f.source()
            .join("team/test.cup.flipt.io-v1alpha1-Resource-q.json")
            .exists()
    );
    // A body namespace that contradicts an explicit -n is refused, and nothing is written.
    let before = snapshot(&f.source());
    let e = f
        .cup
        .run_stdin(&["-a", &addr, "-n", "team", "apply"], BAZ)
        .one_line_error()
        .to_owned();
    assert_eq!(
        e,
        "cup: the resource's metadata.namespace is \"default\" but -n says \"team\"; drop -n or change the document"
    );
    assert_eq!(snapshot(&f.source()), before);
    // Without -n, the body's namespace wins over the context's.
    f.cup.run_stdin(&["-a", &addr, "apply"], BAZ).ok();
    assert!(f.source().join(file_of("baz")).exists());
}

#[test]
fn edit_applies_the_saved_file_and_does_nothing_when_unchanged() {
    let f = Fixture::start();
    let addr = f.cupd.base_url();
    let foo_file = f.source().join(file_of("foo"));
    // $EDITOR runs as `sh -c "$EDITOR FILE"`; each "editor" here is a sed script.
    let editor = |name: &str, sed: &str| -> Cup {
        let script = f.path(name);
        std::fs::write(&script, format!("#!/bin/sh\nsed -i '{sed}' \"$1\"\n")).expect("script");
        let mut cup = Cup::new(&f.cup.home);
        cup.env
            .push(("EDITOR".into(), format!("sh {}", script.display())));
        cup
    };

    // Saved unchanged: nothing is sent.
    let before = snapshot(&f.source());
    let run = editor("same.sh", "s/x/x/").run(&["-a", &addr, "edit", "resources", "foo"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "edit cancelled: resources \"foo\" is unchanged\n"
    );
    assert_eq!(snapshot(&f.source()), before);

    // spec.foo changed (the spec's key is the one indented by four spaces): applied.
    let run = editor("change.sh", r#"s/^    "foo": "bar"$/    "foo": "edited"/"#)
        .run(&["-a", &addr, "-o", "json", "edit", "resource", "foo"]);
    assert_eq!(json(run.ok()), json(ZERO_RESULT));
    let foo = json(&std::fs::read_to_string(&foo_file).expect("foo"));
    assert_eq!(foo["spec"]["foo"], "edited");
    assert_eq!(foo["metadata"]["labels"]["foo"], "bar");

    // Broken JSON: one-line error with the position, the edit kept, nothing sent.
    let before = snapshot(&f.source());
    let run = editor("break.sh", r#"s/"apiVersion"/"apiVersion""/"#).run(&[
        "-a",
        &addr,
        "edit",
        "resources",
        "foo",
    ]);
    let e = run.one_line_error();
    assert!(
        e.contains("invalid JSON") && e.contains("line 2 column"),
        "{e}"
    );
    let kept = kept_file(e);
    assert!(
        std::fs::read_to_string(&kept)
            .expect("kept")
            .contains(r#""apiVersion"""#)
    );
    let _ = std::fs::remove_file(kept);
    assert_eq!(snapshot(&f.source()), before);

    // Renaming is refused.
    let run = editor("rename.sh", r#"s/"name": "foo"/"name": "foo2"/"#).run(&[
        "-a",
        &addr,
        "edit",
        "resources",
        "foo",
    ]);
    let e = run.one_line_error();
    assert!(e.contains("edit cannot rename"), "{e}");
    let _ = std::fs::remove_file(kept_file(e));
    assert_eq!(snapshot(&f.source()), before);

    // A failing editor: nothing applied.
    let mut failing = Cup::new(&f.cup.home);
    failing.env.push(("EDITOR".into(), "false".into()));
    let e = failing.run(&["-a", &addr, "edit", "resources", "foo"]);
    assert!(
        e.one_line_error().contains("nothing was applied"),
        "{}",
        e.stderr
    );
    assert_eq!(snapshot(&f.source()), before);
}

/// The path in "…; your edit is saved in PATH (fix it …)".
fn kept_file(message: &str) -> std::path::PathBuf {
    message
        .split("your edit is saved in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("the message names the kept file: {message}"))
}
