//! The local store: an OCI image-layout directory shared by `cup` and `cupd`.
//!
//! ```text
//! <root>/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! <root>/index.json            one descriptor per manifest; tags in org.opencontainers.image.ref.name
//! <root>/blobs/sha256/<hex>    content-addressed blobs (manifests, configs, layers, wasm)
//! <root>/.tmp/                 blobs being written (renamed into blobs/ once verified)
//! <root>/.lock                 taken exclusively while index.json is read-modified-written
//! ```
//!
//! Safety rules: a blob reaches `blobs/` only by a rename after its digest and size were
//! checked, so a reader never sees a partial blob; every read hashes again, so a blob
//! corrupted on disk is reported, not used; `index.json` is replaced by rename under an
//! exclusive lock on `.lock`, so two processes adding tags at once both keep their tag.
//! Blobs are written before the index entry that refers to them, so a crash can leave an
//! unreferenced blob but never an entry without its blobs.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::accept::{WasmSource, check_magic, classify, extract_wasm};
use crate::artifact::{Artifact, ArtifactOptions};
use crate::digest::{self, Hasher};
use crate::manifest::{Descriptor, ImageIndex, ImageManifest};
use crate::signature::{
    StoredSignature, append_signature, names_signatures_of, parse_signature_manifest,
    signature_manifest, signature_tag,
};
use crate::{Error, Result, annotations, media};

/// One `index.json` entry: a manifest descriptor, tagged when it has a ref-name annotation.
pub type IndexEntry = Descriptor;

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
const LOCK_FILE: &str = ".lock";
const TMP_DIR: &str = ".tmp";
/// Temp files older than this were left by a killed process and are removed on open.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// An OCI image-layout directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `$XDG_CACHE_HOME/cup`, else `~/.cache/cup`.
    pub fn default_dir() -> Option<PathBuf> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty());
        let base = xdg
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("cup"))
    }

    /// Opens a store, creating the layout if the directory is new.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        fs::create_dir_all(store.blobs_dir()).map_err(Error::io(store.blobs_dir()))?;
        fs::create_dir_all(store.tmp_dir()).map_err(Error::io(store.tmp_dir()))?;
        if !store.root.join(LAYOUT_FILE).exists() || !store.index_path().exists() {
            // Under the lock: a concurrent opener may be creating them, or a concurrent
            // pull already wrote a tag into a fresh index.json that must not be clobbered.
            let _lock = store.lock()?;
            store.create_missing()?;
        }
        store.check_layout()?;
        store.prune_temp();
        Ok(store)
    }

    /// The store's root directory (the OCI image layout).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    fn store_error(&self, detail: impl Into<String>) -> Error {
        Error::Store {
            path: self.root.clone(),
            detail: detail.into(),
        }
    }

    fn create_missing(&self) -> Result<()> {
        let layout = self.root.join(LAYOUT_FILE);
        if !layout.exists() {
            self.write_atomic(&layout, LAYOUT_JSON)?;
        }
        if !self.index_path().exists() {
            self.write_index(&ImageIndex::default())?;
        }
        Ok(())
    }

    fn check_layout(&self) -> Result<()> {
        let path = self.root.join(LAYOUT_FILE);
        let bytes = fs::read(&path).map_err(Error::io(&path))?;
        let layout: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.store_error(format!("oci-layout is not JSON: {e}")))?;
        match layout.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => Ok(()),
            other => Err(self.store_error(format!(
                "unsupported imageLayoutVersion {other:?} in oci-layout (expected \"1.0.0\")"
            ))),
        }
    }

    /// Best effort: removes temp files a killed process left behind long ago.
    fn prune_temp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMP);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Exclusive lock on `.lock`, released when the returned file is dropped.
    fn lock(&self) -> Result<File> {
        let path = self.root.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        file.lock().map_err(Error::io(&path))?;
        Ok(file)
    }

    /// Writes a small file by temp file + rename.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).map_err(Error::io(tmp.path()))?;
        tmp.persist(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: e.error,
        })?;
        Ok(())
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("tmp-");
        // Readable by others: cupd may run as another user than the `cup` that pulled.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        builder
            .tempfile_in(self.tmp_dir())
            .map_err(Error::io(self.tmp_dir()))
    }

    // ---- index.json ----

    /// The current `index.json` (readers need no lock: it is only ever replaced by rename).
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(Error::io(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.store_error(format!("index.json is not a valid image index: {e}")))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|e| self.store_error(format!("serializing index.json: {e}")))?;
        self.write_atomic(&self.index_path(), &bytes)
    }

    /// Read-modify-write of `index.json` under the exclusive lock.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut ImageIndex) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let out = change(&mut index)?;
        self.write_index(&index)?;
        Ok(out)
    }

    /// Every manifest the store knows, tagged or not.
    pub fn entries(&self) -> Result<Vec<IndexEntry>> {
        Ok(self.index()?.manifests)
    }

    /// Records a manifest (whose blobs must already be stored), under `reference` if given.
    /// A reference moves to the new digest; an untagged entry is added only once per digest.
    pub fn add_entry(
        &self,
        manifest: Descriptor,
        reference: Option<&str>,
        extra: BTreeMap<String, String>,
    ) -> Result<()> {
        if !self.has_blob(&manifest.digest, manifest.size)? {
            return Err(self.store_error(format!("manifest {} is not stored", manifest.digest)));
        }
        let mut entry = Descriptor::new(&manifest.media_type, manifest.digest, manifest.size);
        entry.annotations = extra;
        if let Some(r) = reference {
            entry
                .annotations
                .insert(annotations::REF_NAME.to_owned(), r.to_owned());
        }
        self.update_index(|index| {
            insert_entry(index, entry);
            Ok(())
        })
    }

    /// The manifest digest a reference names in this store: a digest (`sha256:…` or
    /// `…@sha256:…`) whose manifest is stored, or a tag recorded in `index.json` (exact, or
    /// in the normalized `registry/repo:tag` form).
    pub fn resolve(&self, reference: &str) -> Result<Option<String>> {
        if let Some(d) = digest_of_reference(reference) {
            digest::validate(d)?;
            return Ok(self.blob_path(d)?.exists().then(|| d.to_owned()));
        }
        let normalized = crate::reference::ImageRef::parse(reference)
            .ok()
            .map(|r| r.whole());
        let entries = self.entries()?;
        let find = |name: &str| {
            entries
                .iter()
                .find(|e| e.annotation(annotations::REF_NAME) == Some(name))
                .map(|e| e.digest.clone())
        };
        Ok(find(reference).or_else(|| normalized.as_deref().and_then(find)))
    }

    /// The `index.json` entry of a manifest digest (the first, if several tags name it).
    pub fn entry(&self, manifest_digest: &str) -> Result<Option<IndexEntry>> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|e| e.digest == manifest_digest))
    }

    // ---- blobs ----

    /// Where a blob lives (it may not exist).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs_dir().join(digest::hex_part(digest)?))
    }

    /// Whether a blob is present with the given size (its content is checked on read).
    pub fn has_blob(&self, digest: &str, size: u64) -> Result<bool> {
        let path = self.blob_path(digest)?;
        Ok(fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size))
    }

    /// Whether a blob is present and its content matches its digest (hashes the file).
    pub fn has_verified_blob(&self, digest: &str, size: u64) -> Result<bool> {
        if !self.has_blob(digest, size)? {
            return Ok(false);
        }
        let path = self.blob_path(digest)?;
        let mut file = File::open(&path).map_err(Error::io(&path))?;
        let mut hasher = Hasher::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(Error::io(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish() == (digest.to_owned(), size))
    }

    /// Reads a blob and checks it against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotInStore {
                reference: digest.to_owned(),
                store: self.root.clone(),
            },
            _ => Error::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        let what = format!(
            "store {}: blob {digest} is corrupted (pull it again to repair)",
            self.root.display()
        );
        digest::verify(&what, &bytes, digest, None)?;
        Ok(bytes)
    }

    /// Starts writing a blob. With `expected`, writing past its size fails at once and
    /// [`BlobWriter::finish`] checks the digest.
    pub fn blob_writer(&self, expected: Option<(&str, u64)>, what: &str) -> Result<BlobWriter> {
        if let Some((d, _)) = expected {
            digest::validate(d)?;
        }
        let file = self.temp_file()?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(256 << 10, file),
            hasher: Hasher::default(),
            expected: expected.map(|(d, s)| (d.to_owned(), s)),
            what: what.to_owned(),
            head: Vec::with_capacity(8),
            blobs_dir: self.blobs_dir(),
        })
    }

    /// Stages bytes held in memory as a blob (verified against `expected` when given).
    pub fn stage_bytes(
        &self,
        bytes: &[u8],
        expected: Option<(&str, u64)>,
        what: &str,
    ) -> Result<StagedBlob> {
        let mut writer = self.blob_writer(expected, what)?;
        writer.write(bytes)?;
        writer.finish()
    }

    /// Stores bytes as a blob now and returns their digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<String> {
        let staged = self.stage_bytes(bytes, None, "blob")?;
        let digest = staged.digest.clone();
        staged.commit()?;
        Ok(digest)
    }

    // ---- controllers ----

    /// A stored manifest, verified and parsed (any manifest shape, not only ours).
    pub fn manifest(&self, digest: &str) -> Result<ImageManifest> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            self.store_error(format!("manifest {digest} is not an image manifest: {e}"))
        })
    }

    /// The wasm module of a stored controller manifest, every byte verified. For a compat
    /// image it is unpacked from the verified layer every time: the wasm digest recorded on
    /// the `index.json` entry is not trusted (an entry may have come from an archive or an
    /// older cup), so what runs is always what the manifest's digest pins.
    pub fn wasm_for(&self, manifest_digest: &str) -> Result<Vec<u8>> {
        let what = format!("store {}: manifest {manifest_digest}", self.root.display());
        let (_, source) = classify(&self.read_blob(manifest_digest)?, &what)?;
        let layer = source.layer();
        let bytes = self.read_blob(&layer.digest)?;
        digest::verify(&what, &bytes, &layer.digest, Some(layer.size))?;
        match source {
            WasmSource::Layer(_) => {
                check_magic(&bytes, &what, &layer.media_type)?;
                Ok(bytes)
            }
            WasmSource::TarGz(_) => extract_wasm(bytes.as_slice(), &what),
        }
    }

    /// The wasm a stored compat image's layer holds (`None` for any other manifest).
    fn compat_wasm(&self, manifest_digest: &str) -> Result<Option<Vec<u8>>> {
        let what = format!("store {}: manifest {manifest_digest}", self.root.display());
        match classify(&self.read_blob(manifest_digest)?, &what)?.1 {
            WasmSource::TarGz(_) => self.wasm_for(manifest_digest).map(Some),
            WasmSource::Layer(_) => Ok(None),
        }
    }

    /// The `index.json` annotations a stored manifest's entry should carry besides its tag,
    /// derived from the verified content, never taken from elsewhere: for a compat image,
    /// the digest of the wasm its layer holds (stored as a blob of its own when missing).
    pub fn derived_annotations(&self, manifest_digest: &str) -> Result<BTreeMap<String, String>> {
        let Some(wasm) = self.compat_wasm(manifest_digest)? else {
            return Ok(BTreeMap::new());
        };
        let d = digest::of(&wasm);
        if !self.has_verified_blob(&d, wasm.len() as u64)? {
            self.stage_bytes(&wasm, None, "unpacked compat wasm")?
                .commit()?;
        }
        Ok(BTreeMap::from([(annotations::WASM_DIGEST.to_owned(), d)]))
    }

    /// Packages a local module into the store (as `push` would build it) and returns the
    /// manifest digest, tagging it with `reference` when given.
    pub fn import_wasm(
        &self,
        wasm: &[u8],
        reference: Option<&str>,
        options: &ArtifactOptions,
    ) -> Result<String> {
        if let Some(r) = reference {
            validate_tag_name(r)?;
        }
        let artifact = Artifact::build(wasm, options)?;
        let staged = [
            self.stage_bytes(
                wasm,
                Some((&artifact.layer.digest, artifact.layer.size)),
                "wasm layer",
            )?,
            self.stage_bytes(&artifact.config, None, "config")?,
            self.stage_bytes(&artifact.manifest, None, "manifest")?,
        ];
        for blob in staged {
            blob.commit()?;
        }
        let manifest = Descriptor::new(
            media::OCI_MANIFEST,
            artifact.manifest_digest.clone(),
            artifact.manifest.len() as u64,
        );
        self.add_entry(manifest, reference, BTreeMap::new())?;
        Ok(artifact.manifest_digest)
    }

    // ---- signatures ----

    /// The signatures the store holds for a controller manifest: those of every signature
    /// manifest recorded for it (`sha256-<hex>.sig`, under any repository), each once, every
    /// blob verified. None recorded: empty. A signature manifest with a layer that is not a
    /// signature is an [`Error::ForeignSignatureLayer`].
    pub fn signatures(&self, manifest_digest: &str) -> Result<Vec<StoredSignature>> {
        let tag = signature_tag(manifest_digest)?;
        let mut out = Vec::new();
        for entry in self.entries()? {
            let named = entry
                .annotation(annotations::REF_NAME)
                .is_some_and(|name| names_signatures_of(name, &tag));
            if named {
                for signature in self.signatures_in(&entry.digest)? {
                    append_signature(&mut out, signature);
                }
            }
        }
        Ok(out)
    }

    /// The signatures of one stored signature manifest, in layer order.
    pub(crate) fn signatures_in(&self, signature_manifest: &str) -> Result<Vec<StoredSignature>> {
        let what = format!(
            "store {}: signature manifest {signature_manifest}",
            self.root.display()
        );
        let manifest = parse_signature_manifest(&self.read_blob(signature_manifest)?, &what)?;
        manifest
            .layers
            .iter()
            .map(|layer| {
                let payload = self.read_blob(&layer.digest)?;
                let what = format!("{what}: signature layer {}", layer.digest);
                StoredSignature::from_layer(layer, payload, &what)
            })
            .collect()
    }

    /// Adds a signature of the stored controller manifest `manifest_digest` to its signature
    /// manifest in the repository `reference` names (`registry/repository[:tag]`, recorded
    /// as `registry/repository:sha256-<hex>.sig`; a bare digest or a name without a
    /// repository records `sha256-<hex>.sig` alone). Returns whether it was added: the same
    /// signature (same payload and signature) already there is not added again. The new
    /// signature manifest's blobs are stored before the entry moves to it, under the
    /// store's lock, so concurrent attaches keep each other's signatures.
    pub fn attach_signature(
        &self,
        reference: &str,
        manifest_digest: &str,
        signature: StoredSignature,
    ) -> Result<bool> {
        let tag = signature_tag(manifest_digest)?;
        if self.resolve(manifest_digest)?.is_none() {
            return Err(Error::NotInStore {
                reference: manifest_digest.to_owned(),
                store: self.root.clone(),
            });
        }
        let name = signature_ref_name(reference, &tag);
        self.update_index(|index| {
            let current = index
                .manifests
                .iter()
                .find(|e| e.annotation(annotations::REF_NAME) == Some(name.as_str()))
                .map(|e| e.digest.clone());
            let mut signatures = match current {
                Some(d) => self.signatures_in(&d)?,
                None => Vec::new(),
            };
            if !append_signature(&mut signatures, signature) {
                return Ok(false);
            }
            let (manifest, config) = signature_manifest(&signatures)?;
            let mut staged = Vec::new();
            for s in &signatures {
                let size = s.payload.len() as u64;
                if !self.has_verified_blob(&s.layer_digest, size)? {
                    let expected = Some((s.layer_digest.as_str(), size));
                    staged.push(self.stage_bytes(&s.payload, expected, "signature payload")?);
                }
            }
            staged.push(self.stage_bytes(&config, None, "signature config")?);
            let manifest_blob = self.stage_bytes(&manifest, None, "signature manifest")?;
            let mut entry = Descriptor::new(
                media::OCI_MANIFEST,
                manifest_blob.digest.clone(),
                manifest_blob.size,
            );
            staged.push(manifest_blob);
            for blob in staged {
                blob.commit()?;
            }
            entry
                .annotations
                .insert(annotations::REF_NAME.to_owned(), name.clone());
            insert_entry(index, entry);
            Ok(true)
        })
    }

    /// Checks every blob against its digest and every entry's manifest and blobs; returns
    /// the problems found (empty: the store is sound).
    pub fn verify(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let dir = self.blobs_dir();
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let d = format!("{}{name}", digest::SHA256_PREFIX);
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if digest::validate(&d).is_err() || !self.has_verified_blob(&d, size)? {
                problems.push(format!("blob {name} does not match its name"));
            }
        }
        for entry in self.entries()? {
            if let Err(e) = self.check_entry(&entry) {
                problems.push(format!("entry {}: {e}", entry.digest));
            }
        }
        Ok(problems)
    }

    fn check_entry(&self, entry: &IndexEntry) -> Result<()> {
        if !self.has_blob(&entry.digest, entry.size)? {
            return Err(self.store_error("manifest blob missing or of the wrong size"));
        }
        let manifest = self.manifest(&entry.digest)?;
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if !self.has_blob(&d.digest, d.size)? {
                return Err(self.store_error(format!("blob {} missing", d.digest)));
            }
        }
        // The recorded wasm digest must be that of the wasm the layer holds (what runs is
        // unpacked from the layer; a different claim means the entry was tampered with).
        if let Some(recorded) = entry.annotation(annotations::WASM_DIGEST) {
            let actual = self.compat_wasm(&entry.digest)?.map(|w| digest::of(&w));
            if actual.as_deref() != Some(recorded) {
                return Err(self.store_error(format!(
                    "annotation {} names {recorded}, but {}",
                    annotations::WASM_DIGEST,
                    match actual {
                        Some(a) => format!("the manifest's layer holds the wasm {a}"),
                        None => "the manifest is not a compat image".to_owned(),
                    }
                )));
            }
        }
        Ok(())
    }
}

/// Adds or moves an entry (see [`Store::add_entry`]).
pub(crate) fn insert_entry(index: &mut ImageIndex, entry: Descriptor) {
    // Annotations besides the tag are derived from the manifest's content: every entry of
    // the same digest takes the fresh ones (so an entry with a wrong claim is repaired).
    let mut derived = entry.annotations.clone();
    derived.remove(annotations::REF_NAME);
    for e in index
        .manifests
        .iter_mut()
        .filter(|e| e.digest == entry.digest)
    {
        let tag = e.annotations.remove(annotations::REF_NAME);
        e.annotations = derived.clone();
        if let Some(tag) = tag {
            e.annotations.insert(annotations::REF_NAME.to_owned(), tag);
        }
    }
    match entry.annotation(annotations::REF_NAME).map(str::to_owned) {
        Some(name) => {
            index.manifests.retain(|e| {
                let same_name = e.annotation(annotations::REF_NAME) == Some(name.as_str());
                let untagged_same =
                    e.digest == entry.digest && e.annotation(annotations::REF_NAME).is_none();
                !same_name && !untagged_same
            });
            index.manifests.push(entry);
        }
        None => {
            if !index.manifests.iter().any(|e| e.digest == entry.digest) {
                index.manifests.push(entry);
            }
        }
    }
}

/// The digest part of `sha256:…` or `name@sha256:…`.
pub fn digest_of_reference(reference: &str) -> Option<&str> {
    match reference.rsplit_once('@') {
        Some((_, d)) => Some(d),
        None => reference
            .starts_with(digest::SHA256_PREFIX)
            .then_some(reference),
    }
}

/// The `ref.name` of the signature manifest tagged `tag` in the repository of `reference`
/// (its tag or digest dropped), or `tag` alone when the reference names no repository.
pub(crate) fn signature_ref_name(reference: &str, tag: &str) -> String {
    let name = match reference.rsplit_once('@') {
        Some((name, _)) => name,
        None if reference.starts_with(digest::SHA256_PREFIX) => "",
        None => reference,
    };
    let repository = match name.rsplit_once(':') {
        Some((repository, t)) if !t.contains('/') => repository,
        _ => name,
    };
    if repository.is_empty() {
        tag.to_owned()
    } else {
        format!("{repository}:{tag}")
    }
}

/// A local tag is free-form but must be one printable token.
fn validate_tag_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok && digest_of_reference(name).is_none() {
        Ok(())
    } else {
        Err(Error::InvalidReference {
            reference: name.to_owned(),
            reason: "a tag is one token without spaces and without @ or a digest".into(),
        })
    }
}

/// A blob being written to a temp file in the store, hashed as it goes.
pub struct BlobWriter {
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: Hasher,
    expected: Option<(String, u64)>,
    what: String,
    head: Vec<u8>,
    blobs_dir: PathBuf,
}

impl BlobWriter {
    /// Appends bytes; fails as soon as the total passes the expected size.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if let Some((_, size)) = &self.expected
            && self.hasher.len() + chunk.len() as u64 > *size
        {
            return Err(Error::SizeMismatch {
                what: self.what.clone(),
                expected: *size,
                actual: format!("more than {size}"),
            });
        }
        let room = 8usize.saturating_sub(self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..room]);
        self.hasher.update(chunk);
        let path = self.file.get_ref().path().to_owned();
        self.file.write_all(chunk).map_err(Error::io(path))
    }

    /// The first bytes written (up to 8), to check a magic number.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Ends the write and checks size and digest; the blob is staged, not yet visible.
    pub fn finish(self) -> Result<StagedBlob> {
        let file = self.file.into_inner().map_err(|e| Error::Io {
            path: PathBuf::from("temp blob"),
            source: e.into_error(),
        })?;
        let (digest, size) = self.hasher.finish();
        if let Some((expected_digest, expected_size)) = self.expected {
            if size != expected_size {
                return Err(Error::SizeMismatch {
                    what: self.what,
                    expected: expected_size,
                    actual: size.to_string(),
                });
            }
            if digest != expected_digest {
                return Err(Error::DigestMismatch {
                    what: self.what,
                    expected: expected_digest,
                    actual: digest,
                });
            }
        }
        let dest = self.blobs_dir.join(digest::hex_part(&digest)?);
        Ok(StagedBlob {
            temp: file.into_temp_path(),
            digest,
            size,
            dest,
        })
    }
}

/// A verified blob in a temp file; dropped without [`StagedBlob::commit`], it disappears.
pub struct StagedBlob {
    temp: tempfile::TempPath,
    /// `sha256:` digest of the content, computed while it was written.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    dest: PathBuf,
}

impl StagedBlob {
    /// The temp file (to read the content back before committing).
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Renames the blob into `blobs/sha256/`. Replacing an existing copy is harmless: the
    /// content is the same (or the old one was corrupt).
    pub fn commit(self) -> Result<()> {
        let dest = self.dest;
        self.temp.persist(&dest).map_err(|e| Error::Io {
            path: dest,
            source: e.error,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn plain() -> Vec<u8> {
        b"\0asm\x01\0\0\0".to_vec()
    }

    fn forced() -> ArtifactOptions {
        ArtifactOptions {
            force: true,
            ..Default::default()
        }
    }

    #[test]
    fn import_resolve_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let d = store
            .import_wasm(&plain(), Some("local/ctl:dev"), &forced())
            .expect("import");
        assert_eq!(
            store.resolve("local/ctl:dev").expect("resolve"),
            Some(d.clone())
        );
        assert_eq!(store.resolve(&d).expect("resolve"), Some(d.clone()));
        assert_eq!(store.resolve("other").expect("resolve"), None);
        assert_eq!(store.wasm_for(&d).expect("wasm"), plain());
        assert!(store.verify().expect("verify").is_empty());
        // Same module again: same digest, still one entry.
        assert_eq!(
            store
                .import_wasm(&plain(), Some("local/ctl:dev"), &forced())
                .expect("again"),
            d
        );
        assert_eq!(store.entries().expect("entries").len(), 1);
    }

    #[test]
    fn corrupted_blob_is_detected() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let d = store
            .import_wasm(&plain(), None, &forced())
            .expect("import");
        let layer = store.manifest(&d).expect("manifest").layers[0]
            .digest
            .clone();
        let path = store.blob_path(&layer).expect("path");
        let mut bytes = fs::read(&path).expect("read");
        bytes[5] ^= 1;
        fs::write(&path, bytes).expect("write");
        let err = store.wasm_for(&d).unwrap_err().to_string();
        assert!(
            err.contains("corrupted") && err.contains("digest mismatch"),
            "{err}"
        );
        assert_eq!(store.verify().expect("verify").len(), 1);
    }

    /// A compat image (tar+gzip layer holding `controller.wasm`) written into the store;
    /// returns the manifest's descriptor.
    pub(crate) fn compat_image(store: &Store, wasm: &[u8]) -> Descriptor {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            Default::default(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(wasm.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "controller.wasm", wasm)
            .expect("append");
        let layer = tar.into_inner().expect("tar").finish().expect("gzip");
        let config = b"{}";
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: Descriptor::new(
                "application/vnd.oci.empty.v1+json",
                store.write_blob(config).expect("config"),
                config.len() as u64,
            ),
            layers: vec![Descriptor::new(
                media::TAR_GZIP_LAYERS[0],
                store.write_blob(&layer).expect("layer"),
                layer.len() as u64,
            )],
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&manifest).expect("json");
        Descriptor::new(
            media::OCI_MANIFEST,
            store.write_blob(&bytes).expect("manifest"),
            bytes.len() as u64,
        )
    }

    #[test]
    fn a_compat_entry_runs_its_layer_whatever_the_recorded_wasm_digest() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let harmless = plain();
        let hostile = b"\0asm\x01\0\0\0hostile".to_vec();
        let hostile_digest = store.write_blob(&hostile).expect("hostile");
        let manifest = compat_image(&store, &harmless);
        // An entry that claims the layer holds another module (as a crafted archive or a
        // hand-edited index.json could record it).
        let forged = BTreeMap::from([(annotations::WASM_DIGEST.to_owned(), hostile_digest)]);
        store
            .add_entry(manifest.clone(), Some("ctl:compat"), forged)
            .expect("entry");
        assert_eq!(store.wasm_for(&manifest.digest).expect("wasm"), harmless);
        let problems = store.verify().expect("verify");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(annotations::WASM_DIGEST)
                && problems[0].contains(&digest::of(&harmless)),
            "{problems:?}"
        );
        // Recording the entry again from its content repairs it.
        let derived = store
            .derived_annotations(&manifest.digest)
            .expect("derived");
        assert_eq!(
            derived.get(annotations::WASM_DIGEST),
            Some(&digest::of(&harmless))
        );
        store
            .add_entry(manifest, None, derived)
            .expect("entry again");
        assert!(store.verify().expect("verify").is_empty());
        assert_eq!(
            store
                .entries()
                .expect("entries")
                .iter()
                .filter(|e| e.annotation(annotations::REF_NAME) == Some("ctl:compat"))
                .count(),
            1,
            "the tag is kept"
        );
    }

    #[test]
    fn signatures_are_attached_once_and_read_back() {
        use crate::signature::tests::sample;
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let d = store
            .import_wasm(&plain(), Some("local/ctl:dev"), &forced())
            .expect("import");
        assert!(store.signatures(&d).expect("none").is_empty());
        assert!(
            store
                .attach_signature("local/ctl:dev", &d, sample(1))
                .expect("1")
        );
        assert!(
            store
                .attach_signature("local/ctl:dev", &d, sample(2))
                .expect("2")
        );
        assert!(
            !store
                .attach_signature("local/ctl:dev", &d, sample(1))
                .expect("again")
        );
        assert_eq!(store.signatures(&d).expect("read"), [sample(1), sample(2)]);
        let tag = signature_tag(&d).expect("tag");
        let names: Vec<String> = store
            .entries()
            .expect("entries")
            .iter()
            .filter_map(|e| e.annotation(annotations::REF_NAME).map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            ["local/ctl:dev".to_owned(), format!("local/ctl:{tag}")]
        );
        // By digest alone: an entry of its own; read together with the repository's.
        assert!(store.attach_signature(&d, &d, sample(3)).expect("3"));
        assert_eq!(store.signatures(&d).expect("read").len(), 3);
        assert!(store.verify().expect("verify").is_empty());
        // Only a stored controller can be signed.
        let other = digest::of(b"other");
        assert!(matches!(
            store.attach_signature("x", &other, sample(1)),
            Err(Error::NotInStore { .. })
        ));
        // A tampered payload is reported, naming the layer.
        let layer = &sample(2).layer_digest;
        fs::write(store.blob_path(layer).expect("path"), b"{}").expect("tamper");
        let err = store.signatures(&d).expect_err("tampered").to_string();
        assert!(
            err.contains(layer.as_str()) && err.contains("corrupted"),
            "{err}"
        );
    }

    #[test]
    fn signature_ref_names_follow_the_repository() {
        let tag = "sha256-ab.sig";
        for (reference, name) in [
            (
                "127.0.0.1:5000/cup/flipt:v1",
                "127.0.0.1:5000/cup/flipt:sha256-ab.sig",
            ),
            (
                "127.0.0.1:5000/cup/flipt",
                "127.0.0.1:5000/cup/flipt:sha256-ab.sig",
            ),
            ("reg/cup/flipt:v1@sha256:00", "reg/cup/flipt:sha256-ab.sig"),
            ("sha256:00", tag),
            ("", tag),
        ] {
            assert_eq!(signature_ref_name(reference, tag), name, "{reference}");
        }
    }

    #[test]
    fn writer_stops_past_the_size_and_checks_the_digest() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let d = digest::of(b"abc");
        let mut w = store.blob_writer(Some((&d, 3)), "t").expect("w");
        w.write(b"ab").expect("fits");
        assert!(matches!(w.write(b"cd"), Err(Error::SizeMismatch { .. })));
        drop(w);
        let mut w = store.blob_writer(Some((&d, 3)), "t").expect("w");
        w.write(b"abd").expect("fits");
        assert!(matches!(w.finish(), Err(Error::DigestMismatch { .. })));
        assert!(!store.blob_path(&d).expect("p").exists());
        assert_eq!(fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0);
    }
}
