//! features.yml files: which ones exist, reading them, and replacing them safely.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use cup_controller_sdk::Error;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};
use wildmatch::WildMatch;

use crate::model::{Kind, entry_key};

/// Optional file at the root that replaces the default include patterns.
pub const INDEX_FILE: &str = ".flipt.yml";

/// Namespace of a document that does not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

const DEFAULT_INCLUDE: [&str; 4] = [
    "**features.yml",
    "**features.yaml",
    "**.features.yml",
    "**.features.yaml",
];

/// Directories never searched: they hold no state, and walking a git object store is slow.
fn is_skipped_dir(name: &str) -> bool {
    name == ".git"
}

/// `.flipt.yml`. Its `version` is not used.
#[derive(Debug, Default, Deserialize)]
struct Index {
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Option<Vec<String>>,
}

/// Which paths (relative to the root, `/`-separated) are state files.
///
/// Patterns are matched against the whole relative path, and `*` also matches `/`, so
/// `**features.yml` matches `features.yml`, `a/b/features.yml` and `myfeatures.yml`.
pub struct Selection {
    include: Vec<WildMatch>,
    exclude: Vec<WildMatch>,
}

impl Selection {
    /// Reads `.flipt.yml` at `root` if there is one; without it, or without an `include`
    /// list in it, the default patterns apply.
    pub fn load(root: &Path) -> Result<Self, Error> {
        let index: Index = match fs::read_to_string(root.join(INDEX_FILE)) {
            Ok(text) => parse_yaml(&text)
                .map_err(|e| Error::Other(format!("{INDEX_FILE}: invalid YAML: {e}")))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(Error::io(INDEX_FILE, e)),
        };
        let compile = |patterns: &[String]| patterns.iter().map(|p| WildMatch::new(p)).collect();
        let include = match &index.include {
            Some(patterns) => compile(patterns),
            None => DEFAULT_INCLUDE.iter().map(|p| WildMatch::new(p)).collect(),
        };
        let exclude = index.exclude.as_deref().map(compile).unwrap_or_default();
        Ok(Self { include, exclude })
    }

    pub fn selects(&self, path: &str) -> bool {
        self.include.iter().any(|p| p.matches(path))
            && !self.exclude.iter().any(|p| p.matches(path))
    }

    /// Every selected file under `root`, depth-first in lexical order of names (the order of
    /// Go's `fs.WalkDir`, so "first file" means the same as in the original).
    pub fn state_files(&self, root: &Path) -> Result<Vec<String>, Error> {
        let mut found = Vec::new();
        self.walk(root, "", &mut found)?;
        Ok(found)
    }

    fn walk(&self, root: &Path, dir: &str, found: &mut Vec<String>) -> Result<(), Error> {
        let display = if dir.is_empty() { "/" } else { dir };
        let entries = fs::read_dir(root.join(dir)).map_err(|e| Error::io(display, e))?;
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(display, e))?;
            // A name that is not UTF-8 cannot be matched against the (UTF-8) patterns.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Symlinks are not followed into directories, as in Go's WalkDir.
            let is_dir = entry
                .file_type()
                .map_err(|e| Error::io(display, e))?
                .is_dir();
            children.push((name, is_dir));
        }
        children.sort();
        for (name, is_dir) in children {
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            if is_dir {
                if !is_skipped_dir(&name) {
                    self.walk(root, &path, found)?;
                }
            } else if self.selects(&path) {
                found.push(path);
            }
        }
        Ok(())
    }

    /// Whether a file created at `path` would be found by [`Self::state_files`].
    pub fn would_find(&self, path: &str) -> bool {
        let mut dirs = path.split('/').rev().skip(1);
        self.selects(path) && !dirs.any(is_skipped_dir)
    }
}

/// One features.yml document. Only the entry lists are interpreted; entries stay YAML values
/// so a rewrite leaves the ones not being changed exactly as they were (minus comments and
/// formatting, which serde cannot keep), and unknown top-level keys survive in `other`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Document {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub flags: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub segments: Option<Vec<Value>>,
    #[serde(flatten)]
    pub other: Mapping,
}

fn is_none_or_empty(list: &Option<Vec<Value>>) -> bool {
    list.as_ref().is_none_or(Vec::is_empty)
}

impl Document {
    /// A document for a new file of `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            version: Some(Value::from("1.0")),
            namespace: Some(namespace.to_owned()),
            ..Self::default()
        }
    }

    /// The document's namespace; none or empty means `default`.
    pub fn namespace(&self) -> &str {
        match self.namespace.as_deref() {
            None | Some("") => DEFAULT_NAMESPACE,
            Some(namespace) => namespace,
        }
    }

    pub fn entries(&self, kind: Kind) -> &[Value] {
        let list = match kind {
            Kind::Flag => &self.flags,
            Kind::Segment => &self.segments,
        };
        list.as_deref().unwrap_or_default()
    }

    pub fn entries_mut(&mut self, kind: Kind) -> &mut Vec<Value> {
        let list = match kind {
            Kind::Flag => &mut self.flags,
            Kind::Segment => &mut self.segments,
        };
        list.get_or_insert_with(Vec::new)
    }

    /// The first entry of `kind` whose key is `key`, with its index in the list.
    pub fn find(&self, kind: Kind, key: &str) -> Option<(usize, &Value)> {
        self.entries(kind)
            .iter()
            .enumerate()
            .find(|(_, entry)| entry_key(entry) == Some(key))
    }

    /// The first entry of `kind` whose key is `key`, to replace it.
    pub fn find_mut(&mut self, kind: Kind, key: &str) -> Option<&mut Value> {
        self.entries_mut(kind)
            .iter_mut()
            .find(|entry| entry_key(entry) == Some(key))
    }

    /// Reads the document at `path` (relative to `root`).
    pub fn load(root: &Path, path: &str) -> Result<Self, Error> {
        let text = fs::read_to_string(root.join(path)).map_err(|e| Error::io(path, e))?;
        parse_yaml(&text).map_err(|e| Error::Other(format!("{path}: invalid state file: {e}")))
    }

    /// Replaces the file at `path` (relative to `root`) with this document.
    pub fn save(&self, root: &Path, path: &str) -> Result<(), Error> {
        let text = serde_yaml_ng::to_string(self)
            .map_err(|e| Error::Other(format!("{path}: encoding YAML: {e}")))?;
        replace_file(&root.join(path), text.as_bytes()).map_err(|e| Error::io(path, e))
    }
}

/// Parses one YAML document; an empty file (or only comments) is the default value rather
/// than an error, since "no flags yet" is a normal state.
fn parse_yaml<T: DeserializeOwned + Default>(text: &str) -> Result<T, serde_yaml_ng::Error> {
    // Straight into `T`, not through a `Value` first: that tree would be built only to be
    // copied into `T`, a noticeable share of the guest's time per request.
    let parsed: Option<T> = serde_yaml_ng::from_str(text)?;
    Ok(parsed.unwrap_or_default())
}

/// Writes a sibling temporary file and renames it over `path`, so that a trap or a full disk
/// mid-write leaves the old contents in place instead of a truncated file.
fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let Some(file_name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ));
    };
    // A dot-prefixed `.cup-tmp` name is not matched by the default include patterns, so a
    // leftover from an interrupted write is never read as state.
    let mut temp_name = OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(".cup-tmp");
    let temp = path.with_file_name(temp_name);
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    let result = written.and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the error being returned matters more than a stray temporary file.
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, path: &str) {
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(full, "").expect("write");
    }

    fn tree(paths: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for path in paths {
            touch(dir.path(), path);
        }
        dir
    }

    #[test]
    fn default_patterns_walk_in_lexical_order() {
        let dir = tree(&[
            "z.features.yaml",
            "b/features.yml",
            "a/c/features.yaml",
            "features.yml",
            "myfeatures.yml",
            "features.json",
            "notes.yml",
            ".git/features.yml",
            "a/features.yml.bak",
        ]);
        let selection = Selection::load(dir.path()).expect("no index");
        assert_eq!(
            selection.state_files(dir.path()).expect("walks"),
            [
                "a/c/features.yaml",
                "b/features.yml",
                "features.yml",
                "myfeatures.yml",
                "z.features.yaml"
            ]
        );
    }

    #[test]
    fn index_file_replaces_include_and_excludes_every_match() {
        let dir = tree(&[
            "flags/a.yml",
            "flags/b.yml",
            "flags/c.yml",
            "flags/d.yml",
            "features.yml",
        ]);
        // Consecutive excluded entries are the case the original's exclude loop got wrong.
        fs::write(
            dir.path().join(INDEX_FILE),
            "version: \"1.0\"\ninclude: [\"flags/*.yml\"]\nexclude: [\"*/b.yml\", \"*c.yml\"]\n",
        )
        .expect("write");
        let selection = Selection::load(dir.path()).expect("valid index");
        assert_eq!(
            selection.state_files(dir.path()).expect("walks"),
            ["flags/a.yml", "flags/d.yml"]
        );
    }

    #[test]
    fn index_without_include_keeps_defaults() {
        let dir = tree(&["features.yml", "old/features.yml"]);
        fs::write(dir.path().join(INDEX_FILE), "exclude: [\"old/**\"]\n").expect("write");
        let selection = Selection::load(dir.path()).expect("valid index");
        assert_eq!(
            selection.state_files(dir.path()).expect("walks"),
            ["features.yml"]
        );
        assert!(!selection.would_find("old/features.yml"));
        assert!(!selection.would_find(".git/features.yml"));
        assert!(selection.would_find("prod/features.yml"));
    }

    #[test]
    fn bad_index_is_an_error() {
        let dir = tree(&[]);
        fs::write(dir.path().join(INDEX_FILE), "include: 12\n").expect("write");
        let err = Selection::load(dir.path()).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with(".flipt.yml: invalid YAML")),
            "{err:?}"
        );
    }

    #[test]
    fn document_keeps_unknown_keys_and_implicit_namespace() {
        let dir = tree(&[]);
        let text = "version: \"1.0\"\nflags:\n- key: a\n  custom: [1, 2]\nowner: team-a\nextra:\n  nested: true\n";
        fs::write(dir.path().join("features.yml"), text).expect("write");
        let doc = Document::load(dir.path(), "features.yml").expect("parses");
        assert_eq!(doc.namespace(), "default");
        doc.save(dir.path(), "features.yml").expect("saves");
        let saved = fs::read_to_string(dir.path().join("features.yml")).expect("read");
        assert_eq!(
            saved,
            "version: '1.0'\nflags:\n- key: a\n  custom:\n  - 1\n  - 2\nowner: team-a\nextra:\n  nested: true\n"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, ["features.yml"], "no temporary file is left");
    }

    #[test]
    fn empty_file_is_an_empty_document() {
        let dir = tree(&["features.yml"]);
        // Nothing, only a comment, or an explicit null: all mean "no state yet".
        for text in ["", "# nothing yet\n", "~\n", "null\n", "---\n"] {
            fs::write(dir.path().join("features.yml"), text).expect("write");
            let doc = Document::load(dir.path(), "features.yml").expect("parses");
            assert!(doc.entries(Kind::Flag).is_empty(), "{text:?}");
            assert_eq!(doc.namespace(), "default", "{text:?}");
        }
        // A scalar or a list is not a document, though.
        for text in ["12\n", "- a\n"] {
            fs::write(dir.path().join("features.yml"), text).expect("write");
            assert!(
                Document::load(dir.path(), "features.yml").is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn several_documents_in_one_file_are_refused() {
        let dir = tree(&[]);
        fs::write(
            dir.path().join("features.yml"),
            "namespace: a\n---\nnamespace: b\n",
        )
        .expect("write");
        assert!(Document::load(dir.path(), "features.yml").is_err());
    }

    #[test]
    fn malformed_file_names_itself() {
        let dir = tree(&[]);
        fs::write(dir.path().join("features.yml"), "flags: {a: 1}\n").expect("write");
        let err = Document::load(dir.path(), "features.yml")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("features.yml: invalid state file:")),
            "{err:?}"
        );
    }
}
