//! `wit/controller.wit` is the contract: the host bindings are generated from it at build
//! time (`bindgen!` in `src/component.rs`), and this test reads it with wit-parser to check
//! it declares exactly what the host calls, under the name and version the host and the
//! package format use. Editing the WIT without the host (or the reverse) fails here or in
//! the build.

use std::path::Path;

use wit_parser::{Function, Resolve, Type, TypeDefKind, WorldItem, WorldKey};

fn resolve() -> (Resolve, wit_parser::WorldId) {
    let mut resolve = Resolve::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let (package, _) = resolve.push_dir(&dir).expect("wit/ parses");
    let world = resolve
        .select_world(&[package], Some("cup-controller"))
        .expect("world cup-controller");
    (resolve, world)
}

fn describe(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::String => "string".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            match (&def.name, &def.kind) {
                (Some(name), _) => name.clone(),
                (None, TypeDefKind::List(inner)) => format!("list<{}>", describe(resolve, inner)),
                (None, TypeDefKind::Option(inner)) => {
                    format!("option<{}>", describe(resolve, inner))
                }
                (None, TypeDefKind::Tuple(t)) => format!(
                    "tuple<{}>",
                    t.types
                        .iter()
                        .map(|t| describe(resolve, t))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (None, TypeDefKind::Result(r)) => format!(
                    "result<{}, {}>",
                    r.ok.as_ref().map_or("_".into(), |t| describe(resolve, t)),
                    r.err.as_ref().map_or("_".into(), |t| describe(resolve, t))
                ),
                (None, other) => format!("{other:?}"),
            }
        }
        other => format!("{other:?}"),
    }
}

fn signature(resolve: &Resolve, f: &Function) -> String {
    let params: Vec<String> = f
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, describe(resolve, &p.ty)))
        .collect();
    let result = f
        .result
        .as_ref()
        .map_or(String::new(), |t| format!(" -> {}", describe(resolve, t)));
    format!("{}({}){result}", f.name, params.join(", "))
}

#[test]
fn the_world_exports_exactly_the_interface_the_host_calls() {
    let (resolve, world) = resolve();
    let world = &resolve.worlds[world];
    assert!(
        world
            .imports
            .values()
            .all(|item| matches!(item, WorldItem::Interface { .. })),
        "the world imports no functions of its own"
    );
    let exports: Vec<_> = world.exports.iter().collect();
    assert_eq!(exports.len(), 1, "one export: the controller interface");
    let (key, item) = exports[0];
    let WorldItem::Interface { id, .. } = item else {
        panic!("the export is an interface")
    };
    assert!(matches!(key, WorldKey::Interface(_)));
    assert_eq!(
        resolve.id_of(*id).as_deref(),
        Some(cup_runtime::CONTROLLER_INTERFACE),
        "the host's interface name and version are the WIT's"
    );
    let mut functions: Vec<String> = resolve.interfaces[*id]
        .functions
        .values()
        .map(|f| signature(&resolve, f))
        .collect();
    functions.sort();
    assert_eq!(
        functions,
        [
            "delete(req: request, name: string) -> result<_, error>",
            "get(req: request, name: string) -> result<resource, error>",
            "list(req: request) -> result<list<resource>, error>",
            "put(req: request, name: string, res: resource) -> result<_, error>",
        ]
    );
}

#[test]
fn the_types_are_the_ones_the_host_renders() {
    let (resolve, _) = resolve();
    let types = resolve
        .interfaces
        .iter()
        .find(|(_, i)| i.name.as_deref() == Some("types"))
        .map(|(_, i)| i)
        .expect("interface types");
    let fields = |name: &str| -> Vec<String> {
        let id = types.types[name];
        match &resolve.types[id].kind {
            TypeDefKind::Record(r) => r
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.name, describe(&resolve, &f.ty)))
                .collect(),
            TypeDefKind::Variant(v) => v
                .cases
                .iter()
                .map(|c| {
                    format!(
                        "{}({})",
                        c.name,
                        c.ty.as_ref()
                            .map_or(String::new(), |t| describe(&resolve, t))
                    )
                })
                .collect(),
            other => panic!("{name} is {other:?}"),
        }
    };
    assert_eq!(
        fields("metadata"),
        [
            "namespace: string",
            "name: string",
            "labels: option<list<tuple<string, string>>>",
            "annotations: option<list<tuple<string, string>>>",
        ]
    );
    assert_eq!(
        fields("resource"),
        [
            "api-version: string",
            "kind: string",
            "metadata: metadata",
            "spec: string"
        ]
    );
    assert_eq!(fields("request"), ["kind: string", "namespace: string"]);
    assert_eq!(
        fields("error"),
        ["not-found(string)", "invalid(string)", "failed(string)"]
    );
}
