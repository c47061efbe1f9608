//! The component path: a [`Controller`] as a component exporting
//! `cup:controller/controller@0.1.0` (world `cup-controller` in wit/controller.wit).
//!
//! [`export_component!`](crate::export_component) is the whole glue; the functions here are
//! what it calls, public only so that the macro can reach them from the controller's crate.
//! They check the request exactly as the preview 1 path does ([`Controller::kinds`], namespace
//! and name as path segments), convert between the WIT records and [`Resource`], and map
//! [`Error`] to the WIT `error` variant.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::dispatch::check_request;
use crate::{Controller, Error, Request, Resource, ResourceMeta, StringMap};

/// Bindings generated from wit/controller.wit. Hidden: controllers use
/// [`export_component!`](crate::export_component) and the SDK's own types.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
// The generated code is wit-bindgen's canonical ABI glue (raw pointers into linear memory,
// exported `extern "C"` functions), which cannot be written without `unsafe`. It is sound as
// long as the caller follows the canonical ABI for this WIT, which the component model's
// adapters guarantee: only the host's lifting and lowering calls these exports.
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "cup-controller",
        // The contract itself, wit/controller.wit of this repository.
        path: "../../wit",
        // `export_component!` expands in the controller's crate, so the export macro must be
        // reachable from there and name this module through `$crate`.
        pub_export_macro: true,
        default_bindings_module: "$crate::component::bindings",
    });
}

use bindings::cup::controller::types as wit;

#[doc(hidden)]
pub use bindings::exports::cup::controller::controller::Guest;
#[doc(hidden)]
pub use wit::{Error as WitError, Request as WitRequest, Resource as WitResource};

/// Exports a [`Controller`] as the component interface `cup:controller/controller@0.1.0`.
///
/// The argument is an expression that makes the controller (a unit struct's name, or a
/// constructor call such as `Notes::new("/")`); it is evaluated once per call, and the host
/// makes a fresh instance for every call anyway. Use it once, at the root of a `cdylib` crate
/// built for `wasm32-wasip2`, with the SDK's `component` feature on:
///
/// ```no_run
/// # use cup_controller_sdk::{Controller, Error, Request, Resource};
/// # struct Notes;
/// # impl Controller for Notes {
/// #     fn kinds(&self) -> &[&str] { &["Note"] }
/// #     fn get(&self, _: &Request, name: &str) -> Result<Resource, Error> {
/// #         Err(Error::NotFound(format!("note {name:?} does not exist")))
/// #     }
/// #     fn list(&self, _: &Request) -> Result<Vec<Resource>, Error> { Ok(Vec::new()) }
/// #     fn put(&self, _: &Request, _: &str, _: Resource) -> Result<(), Error> {
/// #         Err(Error::Invalid("notes are read-only".into()))
/// #     }
/// #     fn delete(&self, _: &Request, name: &str) -> Result<(), Error> {
/// #         Err(Error::NotFound(format!("note {name:?} does not exist")))
/// #     }
/// # }
/// cup_controller_sdk::export_component!(Notes);
/// # fn main() {}
/// ```
///
/// Each export checks the request like [`run`](crate::run) does (a kind not in
/// [`Controller::kinds`], or a namespace or name that is not a path segment, is refused as
/// `failed` with the same message) and then calls the matching method. Errors map to the WIT
/// variant: [`Error::NotFound`] to `not-found`, [`Error::Invalid`] to `invalid`, anything else
/// to `failed`, each with the error's message. A `put` whose `spec` is not one JSON value is
/// refused as `invalid` before the controller sees it.
#[macro_export]
macro_rules! export_component {
    ($controller:expr $(,)?) => {
        // The generated exports are `unsafe extern "C"` functions; a crate that denies
        // `unsafe_code` can still use the macro.
        #[allow(unsafe_code)]
        const _: () = {
            struct CupControllerComponent;

            impl $crate::component::Guest for CupControllerComponent {
                fn get(
                    req: $crate::component::WitRequest,
                    name: ::std::string::String,
                ) -> ::std::result::Result<
                    $crate::component::WitResource,
                    $crate::component::WitError,
                > {
                    $crate::component::get(&$controller, req, name)
                }

                fn list(
                    req: $crate::component::WitRequest,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::component::WitResource>,
                    $crate::component::WitError,
                > {
                    $crate::component::list(&$controller, req)
                }

                fn put(
                    req: $crate::component::WitRequest,
                    name: ::std::string::String,
                    res: $crate::component::WitResource,
                ) -> ::std::result::Result<(), $crate::component::WitError> {
                    $crate::component::put(&$controller, req, name, res)
                }

                fn delete(
                    req: $crate::component::WitRequest,
                    name: ::std::string::String,
                ) -> ::std::result::Result<(), $crate::component::WitError> {
                    $crate::component::delete(&$controller, req, name)
                }
            }

            $crate::component::bindings::export!(
                CupControllerComponent with_types_in $crate::component::bindings
            );
        };
    };
}

/// The `get` export: checks the request, then [`Controller::get`].
#[doc(hidden)]
pub fn get<C: Controller + ?Sized>(
    controller: &C,
    req: WitRequest,
    name: String,
) -> Result<WitResource, WitError> {
    let req = request(controller, req, Some(&name))?;
    controller
        .get(&req, &name)
        .map(to_wit)
        .map_err(to_wit_error)
}

/// The `list` export: checks the request, then [`Controller::list`].
#[doc(hidden)]
pub fn list<C: Controller + ?Sized>(
    controller: &C,
    req: WitRequest,
) -> Result<Vec<WitResource>, WitError> {
    let req = request(controller, req, None)?;
    let resources = controller.list(&req).map_err(to_wit_error)?;
    Ok(resources.into_iter().map(to_wit).collect())
}

/// The `put` export: checks the request and the resource's spec, then [`Controller::put`].
#[doc(hidden)]
pub fn put<C: Controller + ?Sized>(
    controller: &C,
    req: WitRequest,
    name: String,
    res: WitResource,
) -> Result<(), WitError> {
    let req = request(controller, req, Some(&name))?;
    let resource = from_wit(res).map_err(to_wit_error)?;
    controller.put(&req, &name, resource).map_err(to_wit_error)
}

/// The `delete` export: checks the request, then [`Controller::delete`].
#[doc(hidden)]
pub fn delete<C: Controller + ?Sized>(
    controller: &C,
    req: WitRequest,
    name: String,
) -> Result<(), WitError> {
    let req = request(controller, req, Some(&name))?;
    controller.delete(&req, &name).map_err(to_wit_error)
}

/// The SDK's [`Request`], once the kind, namespace and name passed the preview 1 path's checks.
/// A refusal is `failed`, as its exit status 1 is a 500 on that path.
fn request<C: Controller + ?Sized>(
    controller: &C,
    req: WitRequest,
    name: Option<&str>,
) -> Result<Request, WitError> {
    check_request(controller.kinds(), &req.kind, &req.namespace, name).map_err(WitError::Failed)?;
    Ok(Request::new(req.kind, req.namespace))
}

fn to_wit_error(error: Error) -> WitError {
    match error {
        Error::NotFound(message) => WitError::NotFound(message),
        Error::Invalid(message) => WitError::Invalid(message),
        other => WitError::Failed(other.to_string()),
    }
}

fn to_wit(resource: Resource) -> WitResource {
    WitResource {
        api_version: resource.api_version,
        kind: resource.kind,
        metadata: wit::Metadata {
            namespace: resource.metadata.namespace,
            name: resource.metadata.name,
            labels: to_pairs(resource.metadata.labels),
            annotations: to_pairs(resource.metadata.annotations),
        },
        spec: String::from(Box::<str>::from(resource.spec)),
    }
}

/// The resource `put` received. `spec` must be one JSON value (surrounding whitespace
/// allowed), as it is on the preview 1 path where it is part of the JSON body.
fn from_wit(resource: WitResource) -> Result<Resource, Error> {
    let spec = RawValue::from_string(resource.spec)
        .map_err(|e| Error::Invalid(format!("spec is not one JSON value: {e}")))?;
    Ok(Resource {
        api_version: resource.api_version,
        kind: resource.kind,
        metadata: ResourceMeta {
            namespace: resource.metadata.namespace,
            name: resource.metadata.name,
            labels: from_pairs(resource.metadata.labels),
            annotations: from_pairs(resource.metadata.annotations),
        },
        spec,
    })
}

/// `None` stays `None` (JSON `null`); pairs come out in the map's order.
fn to_pairs(map: StringMap) -> Option<Vec<(String, String)>> {
    map.map(|map| map.into_iter().collect())
}

/// `None` stays `None`; a repeated key keeps its last value, as a repeated key in a JSON object
/// does on the preview 1 path.
fn from_pairs(pairs: Option<Vec<(String, String)>>) -> StringMap {
    pairs.map(|pairs| pairs.into_iter().collect::<BTreeMap<_, _>>())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// One stored resource; `put` keeps what it receives, the others serve it back.
    /// Makes the error every method of [`One`] fails with.
    type Failure = fn() -> Error;

    #[derive(Default)]
    struct One {
        stored: RefCell<Option<Resource>>,
        fail: Option<Failure>,
    }

    impl Controller for One {
        fn kinds(&self) -> &[&str] {
            &["Note", "Memo"]
        }

        fn get(&self, req: &Request, name: &str) -> Result<Resource, Error> {
            if let Some(fail) = self.fail {
                return Err(fail());
            }
            self.stored
                .borrow()
                .clone()
                .filter(|r| r.metadata.name == name && r.metadata.namespace == req.namespace)
                .ok_or_else(|| Error::NotFound(format!("note {name:?} does not exist")))
        }

        fn list(&self, _req: &Request) -> Result<Vec<Resource>, Error> {
            if let Some(fail) = self.fail {
                return Err(fail());
            }
            Ok(self.stored.borrow().iter().cloned().collect())
        }

        fn put(&self, req: &Request, name: &str, resource: Resource) -> Result<(), Error> {
            if let Some(fail) = self.fail {
                return Err(fail());
            }
            req.check_identity(name, &resource)?;
            *self.stored.borrow_mut() = Some(resource);
            Ok(())
        }

        fn delete(&self, _req: &Request, name: &str) -> Result<(), Error> {
            if let Some(fail) = self.fail {
                return Err(fail());
            }
            self.stored
                .borrow_mut()
                .take()
                .map(drop)
                .ok_or_else(|| Error::NotFound(format!("note {name:?} does not exist")))
        }
    }

    fn req(kind: &str, namespace: &str) -> WitRequest {
        WitRequest {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    fn note(name: &str, spec: &str) -> WitResource {
        WitResource {
            api_version: "notes.io/v1".to_owned(),
            kind: "Note".to_owned(),
            metadata: wit::Metadata {
                namespace: "default".to_owned(),
                name: name.to_owned(),
                labels: Some(vec![
                    ("z".to_owned(), "last".to_owned()),
                    ("a".to_owned(), "first".to_owned()),
                ]),
                annotations: None,
            },
            spec: spec.to_owned(),
        }
    }

    fn message(error: WitError) -> String {
        match error {
            WitError::NotFound(m) => format!("not-found: {m}"),
            WitError::Invalid(m) => format!("invalid: {m}"),
            WitError::Failed(m) => format!("failed: {m}"),
        }
    }

    #[test]
    fn put_then_get_and_list_round_trip() {
        let one = One::default();
        put(
            &one,
            req("Note", "default"),
            "a".into(),
            note("a", r#" {"text": "x", "n": 1.50} "#),
        )
        .expect("stored");
        let stored = one
            .stored
            .borrow()
            .clone()
            .expect("put reached the controller");
        assert_eq!(stored.spec.get(), r#"{"text": "x", "n": 1.50}"#);
        assert_eq!(
            serde_json::to_string(&stored.metadata).expect("serializes"),
            r#"{"namespace":"default","name":"a","labels":{"a":"first","z":"last"},"annotations":null}"#
        );

        let got = get(&one, req("Note", "default"), "a".into()).expect("found");
        assert_eq!(got.spec, r#"{"text": "x", "n": 1.50}"#);
        assert_eq!(got.api_version, "notes.io/v1");
        assert_eq!(got.kind, "Note");
        assert_eq!(
            (got.metadata.namespace.as_str(), got.metadata.name.as_str()),
            ("default", "a")
        );
        assert_eq!(
            got.metadata.labels,
            Some(vec![
                ("a".to_owned(), "first".to_owned()),
                ("z".to_owned(), "last".to_owned())
            ])
        );
        assert_eq!(got.metadata.annotations, None);

        let listed = list(&one, req("Memo", "default")).expect("listed");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].spec, got.spec);
    }

    #[test]
    fn resource_from_request_has_compact_spec_and_null_maps() {
        let resource = Request::new("Note", "default")
            .resource("notes.io/v1", "a", &serde_json::json!({"text": "a"}))
            .expect("serializes");
        let wit = to_wit(resource);
        assert_eq!(wit.spec, r#"{"text":"a"}"#);
        assert_eq!(wit.metadata.labels, None);
        assert_eq!(wit.metadata.annotations, None);
        let empty = from_pairs(Some(Vec::new()));
        assert_eq!(empty, Some(BTreeMap::new()));
        assert_eq!(to_pairs(empty), Some(Vec::new()));
    }

    #[test]
    fn repeated_label_keeps_the_last_value() {
        let pairs = vec![
            ("k".to_owned(), "1".to_owned()),
            ("k".to_owned(), "2".to_owned()),
        ];
        let map = from_pairs(Some(pairs)).expect("some");
        assert_eq!(map.get("k").map(String::as_str), Some("2"));
    }

    #[test]
    fn put_refuses_a_spec_that_is_not_one_json_value() {
        let one = One::default();
        for spec in ["", " ", "{", "{} {}", "[1,]", "nul"] {
            let err = put(&one, req("Note", "default"), "a".into(), note("a", spec))
                .expect_err("refused");
            let message = message(err);
            assert!(
                message.starts_with("invalid: spec is not one JSON value: "),
                "{spec:?}: {message}"
            );
        }
        assert!(
            one.stored.borrow().is_none(),
            "the controller was not called"
        );
        for spec in ["null", "1", "\"s\"", "[]"] {
            put(&one, req("Note", "default"), "a".into(), note("a", spec)).expect(spec);
        }
    }

    #[test]
    fn put_body_for_another_resource_is_invalid() {
        let one = One::default();
        let err =
            put(&one, req("Note", "default"), "b".into(), note("a", "{}")).expect_err("refused");
        assert_eq!(
            message(err),
            r#"invalid: metadata.name "a" in the body does not match "b" in the request"#
        );
    }

    #[test]
    fn other_kinds_are_refused_as_on_the_command_path() {
        let one = One::default();
        let refused = [
            get(&one, req("Foo", "default"), "a".into()).map(drop),
            list(&one, req("Foo", "default")).map(drop),
            put(&one, req("Foo", "default"), "a".into(), note("a", "{}")),
            delete(&one, req("Foo", "default"), "a".into()),
        ];
        for result in refused {
            assert_eq!(
                message(result.expect_err("refused")),
                r#"failed: unsupported kind: "Foo" (this controller serves Note, Memo)"#
            );
        }
        assert!(one.stored.borrow().is_none());
    }

    #[test]
    fn bad_namespace_or_name_is_refused() {
        let one = One::default();
        let refused = [
            list(&one, req("Note", "")).map(drop),
            list(&one, req("Note", "a/b")).map(drop),
            get(&one, req("Note", "default"), "..".into()).map(drop),
            delete(&one, req("Note", ".."), "a".into()),
            put(
                &one,
                req("Note", "default"),
                "a\nb".into(),
                note("a\nb", "{}"),
            ),
        ];
        for result in refused {
            let message = message(result.expect_err("refused"));
            assert!(message.starts_with("failed: invalid "), "{message}");
        }
    }

    #[test]
    fn errors_map_to_the_wit_variant() {
        let cases: [(Failure, &str); 4] = [
            (|| Error::NotFound("gone".into()), "not-found: gone"),
            (|| Error::Invalid("bad".into()), "invalid: bad"),
            (|| Error::Other("broken".into()), "failed: broken"),
            (
                || Error::io("/notes.json", std::io::Error::other("disk on fire")),
                "failed: /notes.json: disk on fire",
            ),
        ];
        for (fail, expected) in cases {
            let one = One {
                fail: Some(fail),
                ..One::default()
            };
            let results = [
                get(&one, req("Note", "default"), "a".into()).map(drop),
                list(&one, req("Note", "default")).map(drop),
                put(&one, req("Note", "default"), "a".into(), note("a", "{}")),
                delete(&one, req("Note", "default"), "a".into()),
            ];
            for result in results {
                assert_eq!(message(result.expect_err("fails")), expected);
            }
        }
        let one = One::default();
        let err = delete(&one, req("Note", "default"), "a".into()).expect_err("nothing stored");
        assert_eq!(message(err), r#"not-found: note "a" does not exist"#);
    }
}
