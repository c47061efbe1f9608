//! cup's template controller (`type: "template"`), compatible with the original cup's.
//!
//! Each resource is one JSON file; where it lives is rendered from two Go text/template
//! templates, `list_template` (a glob of every resource of a kind in a namespace) and
//! `resource_template` (one resource's file). Defaults:
//!
//! ```text
//! {{ .Namespace }}/{{ .Group }}-{{ .Version }}-{{ .Kind }}-*.json
//! {{ .Namespace }}/{{ .Group }}-{{ .Version }}-{{ .Kind }}-{{ .Name }}.json
//! ```
//!
//! * list: glob with Go `path.Match` semantics (`*`/`?` never cross `/`), sorted, each file
//!   decoded as one resource (first JSON value);
//! * get: the rendered file's first JSON value;
//! * put: the resource written with 2-space indentation and a trailing newline, Go field
//!   order and Go's HTML escaping (`cup_model::indent_go_json`), through a temp file and a rename so a reader
//!   never sees half a file;
//! * delete: the rendered file removed.
//!
//! Every rendered path must stay inside the source root (no `..`, no absolute paths, no
//! symlinks leading out). The API is blocking (plain file I/O); callers in async code run
//! it on a blocking thread.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

mod glob;
mod paths;
mod render;
mod source_temp;

use std::io::Write;
use std::path::{Path, PathBuf};

use cup_model::{Resource, TemplateSpec, indent_go_json};

pub use glob::{BadPattern, escape, glob, matches};
pub use paths::resolve as resolve_path;
pub use render::{DEFAULT_LIST_TEMPLATE, DEFAULT_RESOURCE_TEMPLATE, Which};
use render::{PathTemplate, base_data, resource_value};
pub use source_temp::{
    NEW_FILE_MODE, TEMP_PREFIX, TEMP_SUFFIX, is_temp_name, is_temp_name_tagged, temp_name,
};

/// What went wrong. `NotFound` is the one callers map to "404".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A template does not parse, or fails to render with the request's values.
    #[error("{which}: {message}")]
    Template {
        /// Which of the two templates.
        which: Which,
        /// The template engine's message.
        message: String,
    },
    /// A rendered path is not relative and clean, or a symbolic link on it leaves the
    /// source root.
    #[error("invalid path {path:?}: {reason}")]
    Path {
        /// The rendered path, relative to the source root.
        path: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The rendered list template is not a valid glob pattern.
    #[error("list pattern {pattern:?}: {source}")]
    Pattern {
        /// The rendered pattern.
        pattern: String,
        /// What is wrong with it.
        source: BadPattern,
    },
    /// The rendered resource path names no file (get or delete).
    #[error("{path}: resource not found")]
    NotFound {
        /// The rendered path, relative to the source root.
        path: String,
    },
    /// Reading, writing or removing a file failed (other than a missing file on get or delete).
    #[error("{path}: {source}")]
    Io {
        /// The host path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A resource file does not start with a JSON resource.
    #[error("{path}: not a JSON resource: {source}")]
    Decode {
        /// The file's path, relative to the source root.
        path: String,
        /// serde_json's message, with line and column.
        source: serde_json::Error,
    },
    /// The resource to put cannot be serialized.
    #[error("encoding the resource: {0}")]
    Encode(serde_json::Error),
}

/// The parts of a request every operation gets (the original's request object).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// API group of the resource's definition (`.Group` in templates).
    pub group: &'a str,
    /// Version of the definition the request names (`.Version`).
    pub version: &'a str,
    /// The TitleCase kind (`names.kind`), not the plural.
    pub kind: &'a str,
    /// Namespace of the resource (`.Namespace`).
    pub namespace: &'a str,
}

/// A template controller: two parsed templates.
pub struct TemplateController {
    list: PathTemplate,
    resource: PathTemplate,
}

impl std::fmt::Debug for TemplateController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateController").finish_non_exhaustive()
    }
}

impl TemplateController {
    /// Parses the templates of a controller spec (empty = default).
    pub fn new(spec: &TemplateSpec) -> Result<TemplateController, Error> {
        Ok(TemplateController {
            list: PathTemplate::parse(Which::List, &spec.list_template)?,
            resource: PathTemplate::parse(Which::Resource, &spec.resource_template)?,
        })
    }

    /// Every resource the list template matches, sorted by path.
    ///
    /// The request's values reach the template glob-escaped ([`glob::escape`]), so a
    /// namespace such as `*` or `[` is the literal directory name it is, as in get, put and
    /// delete, never a pattern over other namespaces (nor a malformed one).
    pub fn list(&self, root: &Path, req: &Request<'_>) -> Result<Vec<Resource>, Error> {
        let literal = Request {
            group: &glob::escape(req.group),
            version: &glob::escape(req.version),
            kind: &glob::escape(req.kind),
            namespace: &glob::escape(req.namespace),
        };
        let pattern = self.list.render(data(&literal))?;
        paths::check_relative(&pattern)?;
        let found = glob::glob(root, &pattern).map_err(|source| Error::Pattern {
            pattern: pattern.clone(),
            source,
        })?;
        let mut resources = Vec::with_capacity(found.len());
        for rel in found {
            let path = paths::resolve(root, &rel)?;
            if path.is_dir() {
                continue;
            }
            resources.push(read_resource(&path, &rel)?);
        }
        Ok(resources)
    }

    /// The resource stored at the rendered path.
    pub fn get(&self, root: &Path, req: &Request<'_>, name: &str) -> Result<Resource, Error> {
        let rel = self.resource_path(req, name, None)?;
        let path = paths::resolve(root, &rel)?;
        read_resource(&path, &rel)
    }

    /// Writes `resource` to the rendered path (atomically) and returns that relative path.
    pub fn put(
        &self,
        root: &Path,
        req: &Request<'_>,
        name: &str,
        resource: &Resource,
    ) -> Result<String, Error> {
        let rel = self.resource_path(req, name, Some(resource))?;
        let path = paths::resolve(root, &rel)?;
        let mut bytes = indent_go_json(&serde_json::to_vec(resource).map_err(Error::Encode)?, "  ");
        bytes.push(b'\n');
        write_atomic(&path, &bytes)?;
        Ok(rel)
    }

    /// Removes the rendered path's file and returns that relative path.
    pub fn delete(&self, root: &Path, req: &Request<'_>, name: &str) -> Result<String, Error> {
        let rel = self.resource_path(req, name, None)?;
        let path = paths::resolve(root, &rel)?;
        std::fs::remove_file(&path).map_err(|source| io_error(&path, &rel, source))?;
        Ok(rel)
    }

    /// The rendered resource template (relative to the source root).
    pub fn resource_path(
        &self,
        req: &Request<'_>,
        name: &str,
        resource: Option<&Resource>,
    ) -> Result<String, Error> {
        let mut data = data(req);
        data.insert("Name".to_owned(), name.into());
        if let Some(resource) = resource {
            data.insert("Resource".to_owned(), resource_value(resource));
        }
        let rel = self.resource.render(data)?;
        paths::check_relative(&rel)?;
        Ok(rel)
    }
}

fn data(req: &Request<'_>) -> std::collections::HashMap<String, gtmpl::Value> {
    base_data(req.group, req.version, req.kind, req.namespace)
}

fn io_error(path: &Path, rel: &str, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            path: rel.to_owned(),
        }
    } else {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Decodes the first JSON value of a file (anything after it is ignored, as in the original).
fn read_resource(path: &Path, rel: &str) -> Result<Resource, Error> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, rel, source))?;
    let mut values = serde_json::Deserializer::from_slice(&bytes).into_iter::<Resource>();
    match values.next() {
        Some(Ok(resource)) => Ok(resource),
        Some(Err(source)) => Err(Error::Decode {
            path: rel.to_owned(),
            source,
        }),
        None => Err(Error::Decode {
            path: rel.to_owned(),
            source: serde_json::from_slice::<Resource>(b"")
                .err()
                .unwrap_or_else(|| serde_json::Error::io(std::io::Error::other("empty file"))),
        }),
    }
}

/// Temp file beside the target, fsync, rename: readers see the old or the new file, never
/// a partial one, and a failed write leaves the old file. Mode [`NEW_FILE_MODE`].
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(io)?;
    temp.write_all(bytes).map_err(io)?;
    set_mode(temp.as_file()).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(NEW_FILE_MODE))
}

#[cfg(not(unix))]
fn set_mode(_: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: Request<'static> = Request {
        group: "test.cup.flipt.io",
        version: "v1alpha1",
        kind: "Resource",
        namespace: "default",
    };

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("default")).unwrap();
        std::fs::write(
            dir.path().join("default/test.cup.flipt.io-v1alpha1-Resource-foo.json"),
            r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo","labels":{"foo":"bar"},"annotations":{}},"spec":{"foo":"bar"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("default/test.cup.flipt.io-v1alpha1-Resource-bar.json"),
            "{\n  \"apiVersion\": \"test.cup.flipt.io/v1alpha1\", \"kind\": \"Resource\",\n  \"metadata\": {\"namespace\": \"default\", \"name\": \"bar\"}, \"spec\": {\"foo\": \"baz\"}\n}\ntrailing",
        )
        .unwrap();
        dir
    }

    fn controller() -> TemplateController {
        TemplateController::new(&TemplateSpec::default()).unwrap()
    }

    #[test]
    fn list_is_sorted_and_get_reads_the_first_value() {
        let dir = fixture();
        let names: Vec<String> = controller()
            .list(dir.path(), &REQ)
            .unwrap()
            .into_iter()
            .map(|r| r.metadata.name)
            .collect();
        assert_eq!(names, ["bar", "foo"]);
        let foo = controller().get(dir.path(), &REQ, "foo").unwrap();
        assert_eq!(foo.spec.get(), r#"{"foo":"bar"}"#);
        assert!(matches!(
            controller().get(dir.path(), &REQ, "nope"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn put_writes_go_indented_json_and_delete_removes_it() {
        let dir = fixture();
        let body: Resource = serde_json::from_str(
            r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"name":"baz","namespace":"default","labels":{"foo":"bar"},"annotations":{}},"spec":{}}"#,
        )
        .unwrap();
        let rel = controller().put(dir.path(), &REQ, "baz", &body).unwrap();
        assert_eq!(rel, "default/test.cup.flipt.io-v1alpha1-Resource-baz.json");
        let written = std::fs::read_to_string(dir.path().join(&rel)).unwrap();
        assert_eq!(
            written,
            "{\n  \"apiVersion\": \"test.cup.flipt.io/v1alpha1\",\n  \"kind\": \"Resource\",\n  \"metadata\": {\n    \"namespace\": \"default\",\n    \"name\": \"baz\",\n    \"labels\": {\n      \"foo\": \"bar\"\n    },\n    \"annotations\": {}\n  },\n  \"spec\": {}\n}\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("default"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "no temp file is left behind");
        controller().delete(dir.path(), &REQ, "baz").unwrap();
        assert!(!dir.path().join(&rel).exists());
        assert!(matches!(
            controller().delete(dir.path(), &REQ, "baz"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn put_escapes_html_and_reindents_the_raw_spec() {
        let dir = tempfile::tempdir().unwrap();
        let body: Resource = serde_json::from_str(
            r#"{"apiVersion":"g/v","kind":"K","metadata":{"namespace":"n","name":"x"},"spec":{ "b" : "<&>", "a":[ 1 ] }}"#,
        )
        .unwrap();
        let req = Request {
            namespace: "n",
            ..REQ
        };
        let rel = controller().put(dir.path(), &req, "x", &body).unwrap();
        let written = std::fs::read_to_string(dir.path().join(rel)).unwrap();
        assert!(written.contains("\"labels\": null"), "{written}");
        assert!(
            written.contains("\"spec\": {\n    \"b\": \"\\u003c\\u0026\\u003e\",\n    \"a\": [\n      1\n    ]\n  }\n}\n"),
            "{written}"
        );
    }

    #[test]
    fn list_treats_glob_characters_in_the_namespace_literally() {
        let dir = fixture();
        for ns in ["*", "?", "[", "\\", "def*"] {
            let req = Request {
                namespace: ns,
                ..REQ
            };
            let listed = controller().list(dir.path(), &req);
            assert!(listed.is_ok_and(|l| l.is_empty()), "{ns:?}");
        }
        let body: Resource = serde_json::from_str(
            r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"*","name":"star"},"spec":{}}"#,
        )
        .unwrap();
        let star = Request {
            namespace: "*",
            ..REQ
        };
        controller().put(dir.path(), &star, "star", &body).unwrap();
        let names: Vec<String> = controller()
            .list(dir.path(), &star)
            .unwrap()
            .into_iter()
            .map(|r| r.metadata.name)
            .collect();
        assert_eq!(names, ["star"]);
        assert_eq!(controller().list(dir.path(), &REQ).unwrap().len(), 2);
    }

    #[test]
    fn names_that_escape_the_root_are_refused() {
        let dir = fixture();
        let c = TemplateController::new(&TemplateSpec {
            list_template: String::new(),
            resource_template: "{{ .Name }}".into(),
        })
        .unwrap();
        for name in ["../x", "/etc/passwd", "a/../../b"] {
            assert!(
                matches!(c.get(dir.path(), &REQ, name), Err(Error::Path { .. })),
                "{name}"
            );
        }
    }
}
