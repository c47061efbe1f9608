//! The controller: Flag and Segment resources over the features.yml files under a root.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use cup_controller_sdk::{Controller, Error, Request, Resource};
use serde_yaml_ng::Value;

use crate::model::{self, API_VERSION, Entry, Flag, Kind, Segment};
use crate::state::{DEFAULT_NAMESPACE, Document, Selection};

/// Serves flags and segments from the state files under `root` (`/` inside the module,
/// where the host mounts the source tree).
pub struct Flipt {
    root: PathBuf,
}

impl Flipt {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The state files of `namespace` with their documents, in walk order. Files of other
    /// namespaces are parsed too, since a file's namespace is written inside it.
    fn documents<'a>(
        &'a self,
        selection: &Selection,
        namespace: &'a str,
    ) -> Result<impl Iterator<Item = Result<(String, Document), Error>> + 'a, Error> {
        let paths = selection.state_files(&self.root)?;
        Ok(paths
            .into_iter()
            .filter_map(move |path| match Document::load(&self.root, &path) {
                Ok(doc) if doc.namespace() == namespace => Some(Ok((path, doc))),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }))
    }

    fn get_as<T: Entry>(&self, req: &Request, name: &str) -> Result<Resource, Error> {
        let selection = Selection::load(&self.root)?;
        for file in self.documents(&selection, &req.namespace)? {
            let (path, doc) = file?;
            if let Some((index, entry)) = doc.find(T::KIND, name) {
                let item = parse_entry::<T>(&path, index, entry)?;
                return to_resource(req, item);
            }
        }
        Err(not_found(T::KIND, &req.namespace, name))
    }

    fn list_as<T: Entry>(&self, req: &Request) -> Result<Vec<Resource>, Error> {
        let selection = Selection::load(&self.root)?;
        let mut resources = Vec::new();
        let mut seen = BTreeSet::new();
        for file in self.documents(&selection, &req.namespace)? {
            let (path, doc) = file?;
            for (index, entry) in doc.entries(T::KIND).iter().enumerate() {
                let item = parse_entry::<T>(&path, index, entry)?;
                if item.key().is_empty() {
                    return Err(Error::Other(format!(
                        "{path}: {}[{index}] has no key",
                        T::KIND.list_key()
                    )));
                }
                // A duplicate key is shadowed by its first occurrence, which is what get
                // returns and put replaces; listing it would show a resource nobody can reach.
                if seen.insert(item.key().to_owned()) {
                    resources.push(to_resource(req, item)?);
                }
            }
        }
        Ok(resources)
    }

    fn put_as<T: Entry>(&self, req: &Request, name: &str, resource: Resource) -> Result<(), Error> {
        req.check_identity(name, &resource)?;
        if !resource.api_version.is_empty() && resource.api_version != API_VERSION {
            return Err(Error::Invalid(format!(
                "apiVersion {:?} in the body is not {API_VERSION:?}",
                resource.api_version
            )));
        }
        let mut item: T = model::from_spec(&resource.spec)
            .map_err(|e| Error::Invalid(format!("spec is not a valid {}: {e}", T::KIND.noun())))?;
        if !item.key().is_empty() && item.key() != name {
            return Err(Error::Invalid(format!(
                "spec.key {:?} does not match the resource name {name:?}",
                item.key()
            )));
        }
        *item.key_mut() = name.to_owned();
        let entry = model::to_yaml_entry(&item)
            .map_err(|e| Error::Other(format!("encoding {} {name:?}: {e}", T::KIND.noun())))?;
        self.store_entry(T::KIND, &req.namespace, name, entry)
    }

    /// Replaces the entry in the first file that holds `name`, else appends it to the first
    /// file of the namespace, else creates a file for the namespace. Exactly one file is
    /// written.
    fn store_entry(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        entry: Value,
    ) -> Result<(), Error> {
        let selection = Selection::load(&self.root)?;
        let mut first_file = None;
        for file in self.documents(&selection, namespace)? {
            let (path, mut doc) = file?;
            if let Some(slot) = doc.find_mut(kind, name) {
                *slot = entry;
                return doc.save(&self.root, &path);
            }
            if first_file.is_none() {
                first_file = Some((path, doc));
            }
        }
        match first_file {
            Some((path, mut doc)) => {
                doc.entries_mut(kind).push(entry);
                doc.save(&self.root, &path)
            }
            None => self.create_file(&selection, kind, namespace, entry),
        }
    }

    /// Creates the first state file of `namespace`: `features.yml` for the default
    /// namespace, `<namespace>/features.yml` for others.
    fn create_file(
        &self,
        selection: &Selection,
        kind: Kind,
        namespace: &str,
        entry: Value,
    ) -> Result<(), Error> {
        let path = if namespace == DEFAULT_NAMESPACE {
            "features.yml".to_owned()
        } else {
            format!("{namespace}/features.yml")
        };
        if !selection.would_find(&path) {
            return Err(Error::Other(format!(
                "namespace {namespace:?} has no state file, and {path} would not be read \
                 (it does not match the include/exclude patterns); create a state file for it first"
            )));
        }
        let full = self.root.join(&path);
        match fs::symlink_metadata(&full) {
            Ok(_) => {
                return Err(Error::Other(format!(
                    "namespace {namespace:?} has no state file, and {path} already exists \
                     for another namespace; create a state file for it first"
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating the directory of {path}"), e))?;
        }
        let mut doc = Document::new(namespace);
        doc.entries_mut(kind).push(entry);
        doc.save(&self.root, &path)
    }

    /// Removes every entry with key `name` from the files of the namespace, rewriting only
    /// the files that held it. Entries are matched by key alone, so even a malformed entry
    /// can be deleted.
    fn delete_kind(&self, kind: Kind, namespace: &str, name: &str) -> Result<(), Error> {
        let selection = Selection::load(&self.root)?;
        let mut removed = false;
        for file in self.documents(&selection, namespace)? {
            let (path, mut doc) = file?;
            let entries = doc.entries_mut(kind);
            let before = entries.len();
            entries.retain(|entry| model::entry_key(entry) != Some(name));
            if entries.len() != before {
                doc.save(&self.root, &path)?;
                removed = true;
            }
        }
        if removed {
            Ok(())
        } else {
            Err(not_found(kind, namespace, name))
        }
    }
}

impl Controller for Flipt {
    fn kinds(&self) -> &[&str] {
        &Kind::NAMES
    }

    fn get(&self, req: &Request, name: &str) -> Result<Resource, Error> {
        match kind_of(req)? {
            Kind::Flag => self.get_as::<Flag>(req, name),
            Kind::Segment => self.get_as::<Segment>(req, name),
        }
    }

    fn list(&self, req: &Request) -> Result<Vec<Resource>, Error> {
        match kind_of(req)? {
            Kind::Flag => self.list_as::<Flag>(req),
            Kind::Segment => self.list_as::<Segment>(req),
        }
    }

    fn put(&self, req: &Request, name: &str, resource: Resource) -> Result<(), Error> {
        match kind_of(req)? {
            Kind::Flag => self.put_as::<Flag>(req, name, resource),
            Kind::Segment => self.put_as::<Segment>(req, name, resource),
        }
    }

    fn delete(&self, req: &Request, name: &str) -> Result<(), Error> {
        self.delete_kind(kind_of(req)?, &req.namespace, name)
    }
}

/// The SDK only calls with a kind from [`Controller::kinds`]; this turns it into [`Kind`]
/// without assuming so.
fn kind_of(req: &Request) -> Result<Kind, Error> {
    Kind::parse(&req.kind)
        .ok_or_else(|| Error::Invalid(format!("unsupported kind: {:?}", req.kind)))
}

fn not_found(kind: Kind, namespace: &str, name: &str) -> Error {
    Error::NotFound(format!(
        "no state file of namespace {namespace:?} has a {} with key {name:?}",
        kind.noun()
    ))
}

fn parse_entry<T: Entry>(path: &str, index: usize, entry: &Value) -> Result<T, Error> {
    model::from_yaml_entry(entry).map_err(|e| {
        Error::Other(format!(
            "{path}: {}[{index}] is not a valid {}: {e}",
            T::KIND.list_key(),
            T::KIND.noun()
        ))
    })
}

/// The API form: `metadata.name` carries the key, so `spec.key` is left empty (as in the
/// original); `spec.name`, the human-readable name, is kept.
fn to_resource<T: Entry>(req: &Request, mut item: T) -> Result<Resource, Error> {
    let key = std::mem::take(item.key_mut());
    req.resource(API_VERSION, &key, &item)
}
