//! The store as an OCI-layout tarball (`oci-layout`, `index.json`, `blobs/sha256/<hex>`),
//! for machines without a registry. `save` writes verified blobs only; `load` checks every
//! blob against its name and every manifest's blobs before anything reaches the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::accept::{WasmSource, classify, extract_wasm};
use crate::digest;
use crate::manifest::{Descriptor, ImageIndex};
use crate::signature::{
    StoredSignature, is_signature_ref_name, names_signatures_of, parse_signature_manifest,
    signature_tag,
};
use crate::store::{StagedBlob, Store, insert_entry};
use crate::{Error, MAX_MANIFEST_BYTES, Result, annotations};

/// What `save` wrote or `load` read.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    /// The manifests (index entries) in the archive.
    pub manifests: Vec<Descriptor>,
    /// Blobs written to the archive, or added to the store by `load`.
    pub blobs: usize,
    /// `load` only: blobs the store already had.
    pub present_blobs: usize,
}

/// Writes the entries named by `references` (all entries when empty) and their blobs to
/// a tarball at `out`, atomically.
pub fn save(store: &Store, references: &[String], out: &Path) -> Result<ArchiveReport> {
    let entries = select(store, references)?;
    let blobs = blobs_of(store, &entries)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(Error::io(dir))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp));
    let index = ImageIndex {
        manifests: entries.clone(),
        ..ImageIndex::default()
    };
    let index_json = serde_json::to_vec_pretty(&index).map_err(|e| archive_error(out, e))?;
    append(
        &mut tar,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        out,
    )?;
    append(&mut tar, "index.json", &index_json, out)?;
    for blob in &blobs {
        let bytes = store.read_blob(blob)?;
        append(
            &mut tar,
            &format!("blobs/sha256/{}", digest::hex_part(blob)?),
            &bytes,
            out,
        )?;
    }
    let file = tar
        .into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(Error::io(out))?;
    file.persist(out).map_err(|e| Error::Io {
        path: out.to_owned(),
        source: e.error,
    })?;
    Ok(ArchiveReport {
        manifests: entries,
        blobs: blobs.len(),
        present_blobs: 0,
    })
}

fn archive_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Archive {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Index entries for the references (tag entries as they are; digests as untagged).
fn select(store: &Store, references: &[String]) -> Result<Vec<Descriptor>> {
    let all = store.entries()?;
    if references.is_empty() {
        return Ok(all);
    }
    let mut out: Vec<Descriptor> = Vec::new();
    for r in references {
        let digest = store.resolve(r)?.ok_or_else(|| Error::NotInStore {
            reference: r.clone(),
            store: store.root().to_owned(),
        })?;
        let tagged = all.iter().find(|e| {
            e.digest == digest
                && e.annotation(annotations::REF_NAME)
                    .is_some_and(|n| n == r || r.contains(':'))
        });
        let entry = match tagged.or_else(|| all.iter().find(|e| e.digest == digest)) {
            Some(e) => e.clone(),
            None => {
                let m = store.manifest(&digest)?;
                let mt = m
                    .media_type
                    .unwrap_or_else(|| crate::media::OCI_MANIFEST.to_owned());
                Descriptor::new(&mt, digest.clone(), store.read_blob(&digest)?.len() as u64)
            }
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
        // The controller's signatures travel with it, so the other machine can verify it.
        let tag = signature_tag(&digest)?;
        for signatures in all.iter().filter(|e| {
            e.annotation(annotations::REF_NAME)
                .is_some_and(|name| names_signatures_of(name, &tag))
        }) {
            if !out.contains(signatures) {
                out.push(signatures.clone());
            }
        }
    }
    Ok(out)
}

/// Every blob the entries need, sorted (so the same selection gives the same tarball).
fn blobs_of(store: &Store, entries: &[Descriptor]) -> Result<BTreeSet<String>> {
    let mut blobs = BTreeSet::new();
    for entry in entries {
        let manifest = store.manifest(&entry.digest)?;
        blobs.insert(entry.digest.clone());
        blobs.insert(manifest.config.digest.clone());
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        if let Some(w) = entry.annotation(annotations::WASM_DIGEST) {
            blobs.insert(w.to_owned());
        }
    }
    Ok(blobs)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8], out: &Path) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
        .map_err(Error::io(out))
}

/// Loads a tarball written by `save` (or any OCI layout tarball of controllers) into the
/// store. Nothing is stored unless every blob matches its name and every manifest is a
/// controller whose blobs are all present.
pub fn load(store: &Store, path: &Path) -> Result<ArchiveReport> {
    let file = File::open(path).map_err(Error::io(path))?;
    let mut tar = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut read = Loaded::default();
    for entry in tar.entries().map_err(|e| archive_error(path, e))? {
        let entry = entry.map_err(|e| archive_error(path, e))?;
        read_entry(store, path, entry, &mut read)?;
    }
    let index = read.check(store, path)?;
    // Annotations derived from content (the unpacked wasm of a compat image) are computed
    // here, never taken from the archive.
    let blobs = read.staged.len();
    for blob in read.staged.into_values() {
        blob.commit()?;
    }
    store.update_index(|current| {
        for entry in &index.manifests {
            insert_entry(current, entry.clone());
        }
        Ok(())
    })?;
    Ok(ArchiveReport {
        manifests: index.manifests,
        blobs,
        present_blobs: read.present.len(),
    })
}

#[derive(Default)]
struct Loaded {
    layout: bool,
    index: Option<ImageIndex>,
    staged: BTreeMap<String, StagedBlob>,
    present: BTreeMap<String, u64>,
}

fn read_entry<R: Read>(
    store: &Store,
    path: &Path,
    entry: tar::Entry<'_, R>,
    read: &mut Loaded,
) -> Result<()> {
    let kind = entry.header().entry_type();
    let name = entry
        .path()
        .map_err(|e| archive_error(path, e))?
        .to_string_lossy()
        .into_owned();
    let name = name.trim_start_matches("./").to_owned();
    if kind.is_dir() {
        return Ok(());
    }
    if !kind.is_file() {
        return Err(archive_error(
            path,
            format!("entry {name:?} is not a regular file"),
        ));
    }
    match name.as_str() {
        "oci-layout" => {
            let v: serde_json::Value = serde_json::from_slice(&read_small(entry, path, 4096)?)
                .map_err(|e| archive_error(path, e))?;
            if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                return Err(archive_error(
                    path,
                    "oci-layout does not say imageLayoutVersion 1.0.0",
                ));
            }
            read.layout = true;
        }
        "index.json" => {
            let bytes = read_small(entry, path, MAX_MANIFEST_BYTES as u64)?;
            read.index = Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| archive_error(path, format!("index.json: {e}")))?,
            );
        }
        _ => stage_blob(store, path, &name, entry, read)?,
    }
    Ok(())
}

fn stage_blob<R: Read>(
    store: &Store,
    path: &Path,
    name: &str,
    mut entry: tar::Entry<'_, R>,
    read: &mut Loaded,
) -> Result<()> {
    let hex = name.strip_prefix("blobs/sha256/").ok_or_else(|| {
        archive_error(
            path,
            format!("unexpected entry {name:?} (not part of an OCI layout)"),
        )
    })?;
    let d = format!("{}{hex}", digest::SHA256_PREFIX);
    digest::validate(&d)?;
    let size = entry.header().size().map_err(|e| archive_error(path, e))?;
    if store.has_verified_blob(&d, size)? {
        read.present.insert(d, size);
        return Ok(());
    }
    let what = format!("archive {}: {name}", path.display());
    let mut writer = store.blob_writer(Some((&d, size)), &what)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(|e| archive_error(path, e))?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n])?;
    }
    read.staged.insert(d, writer.finish()?);
    Ok(())
}

fn read_small(entry: impl Read, path: &Path, cap: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    entry
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| archive_error(path, e))?;
    if out.len() as u64 > cap {
        return Err(archive_error(
            path,
            format!("a metadata file is over {cap} bytes"),
        ));
    }
    Ok(out)
}

impl Loaded {
    /// Checks the layout is complete: every manifest is a controller with all its blobs.
    fn check(&mut self, store: &Store, path: &Path) -> Result<ImageIndex> {
        if !self.layout {
            return Err(archive_error(
                path,
                "no oci-layout file (not an OCI layout tarball)",
            ));
        }
        let index = self
            .index
            .clone()
            .ok_or_else(|| archive_error(path, "no index.json"))?;
        let mut index = index;
        for entry in &mut index.manifests {
            let bytes = self.blob_bytes(store, &entry.digest, entry.size, path)?;
            let what = format!("archive {}: manifest {}", path.display(), entry.digest);
            let signatures = entry
                .annotation(annotations::REF_NAME)
                .is_some_and(is_signature_ref_name);
            if signatures {
                self.check_signatures(store, &bytes, entry, &what, path)?;
                continue;
            }
            let (manifest, source) = classify(&bytes, &what)?;
            for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
                self.require(store, &d.digest, d.size, path)?;
            }
            let claimed = entry.annotations.remove(annotations::WASM_DIGEST);
            if let WasmSource::TarGz(layer) = &source {
                let actual = self.unpack_compat(store, layer, &what, path)?;
                if let Some(claimed) = claimed.filter(|c| *c != actual) {
                    return Err(archive_error(
                        path,
                        format!(
                            "index.json entry {}: annotation {} names the wasm {claimed}, but \
                             the manifest's layer holds {actual}",
                            entry.digest,
                            annotations::WASM_DIGEST
                        ),
                    ));
                }
                entry
                    .annotations
                    .insert(annotations::WASM_DIGEST.to_owned(), actual);
            } else if let Some(claimed) = claimed {
                return Err(archive_error(
                    path,
                    format!(
                        "index.json entry {}: annotation {} names the wasm {claimed}, but the \
                         manifest is not a compat image",
                        entry.digest,
                        annotations::WASM_DIGEST
                    ),
                ));
            }
        }
        Ok(index)
    }

    /// An entry named as a signature manifest (`…sha256-<hex>.sig`) must be one: only
    /// signature layers, within bounds, every blob present and each payload matching its
    /// layer. It carries no derived annotations.
    fn check_signatures(
        &self,
        store: &Store,
        bytes: &[u8],
        entry: &mut Descriptor,
        what: &str,
        path: &Path,
    ) -> Result<()> {
        let manifest = parse_signature_manifest(bytes, what)?;
        self.require(store, &manifest.config.digest, manifest.config.size, path)?;
        for layer in &manifest.layers {
            let file = self.require(store, &layer.digest, layer.size, path)?;
            let payload = std::fs::read(&file).map_err(Error::io(&file))?;
            let what = format!("{what}: signature layer {}", layer.digest);
            StoredSignature::from_layer(layer, payload, &what)?;
        }
        entry
            .annotations
            .retain(|key, _| key == annotations::REF_NAME);
        Ok(())
    }

    /// Unpacks a compat image's wasm from its verified layer, stages it as a blob unless the
    /// store has it, and returns its digest.
    fn unpack_compat(
        &mut self,
        store: &Store,
        layer: &Descriptor,
        what: &str,
        path: &Path,
    ) -> Result<String> {
        let wasm = match self
            .staged
            .get(&layer.digest)
            .filter(|s| s.size == layer.size)
        {
            // Verified against its name while it was staged.
            Some(staged) => {
                let file = File::open(staged.path()).map_err(Error::io(staged.path()))?;
                extract_wasm(BufReader::new(file), what)?
            }
            None => {
                self.require(store, &layer.digest, layer.size, path)?;
                extract_wasm(store.read_blob(&layer.digest)?.as_slice(), what)?
            }
        };
        let d = digest::of(&wasm);
        let size = wasm.len() as u64;
        let known = self.staged.get(&d).is_some_and(|s| s.size == size)
            || self.present.get(&d) == Some(&size)
            || store.has_verified_blob(&d, size)?;
        if !known {
            let staged = store.stage_bytes(&wasm, Some((&d, size)), what)?;
            self.staged.insert(d.clone(), staged);
        }
        Ok(d)
    }

    fn require(&self, store: &Store, digest: &str, size: u64, path: &Path) -> Result<PathBuf> {
        if let Some(staged) = self.staged.get(digest).filter(|s| s.size == size) {
            return Ok(staged.path().to_owned());
        }
        let known = self.present.get(digest) == Some(&size) || store.has_blob(digest, size)?;
        if known {
            return store.blob_path(digest);
        }
        Err(archive_error(
            path,
            format!("blob {digest} ({size} bytes) is missing"),
        ))
    }

    fn blob_bytes(&self, store: &Store, digest: &str, size: u64, path: &Path) -> Result<Vec<u8>> {
        digest::validate(digest)?;
        if size > MAX_MANIFEST_BYTES as u64 {
            return Err(archive_error(
                path,
                format!("manifest {digest} is over {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
        let file = self.require(store, digest, size, path)?;
        let bytes = std::fs::read(&file).map_err(Error::io(&file))?;
        digest::verify(
            &format!("archive {}: manifest", path.display()),
            &bytes,
            digest,
            Some(size),
        )?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ArtifactOptions;

    #[test]
    fn save_then_load_into_another_store() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        let src = Store::open(a.path().join("s")).expect("open");
        let opts = ArtifactOptions {
            force: true,
            ..Default::default()
        };
        let d = src
            .import_wasm(b"\0asm\x01\0\0\0", Some("ctl:dev"), &opts)
            .expect("import");
        let tarball = a.path().join("out.tar");
        let saved = save(&src, &[], &tarball).expect("save");
        assert_eq!(saved.blobs, 3);
        let dst = Store::open(b.path()).expect("open");
        let loaded = load(&dst, &tarball).expect("load");
        assert_eq!(loaded.blobs, 3);
        assert_eq!(dst.resolve("ctl:dev").expect("resolve"), Some(d.clone()));
        assert_eq!(dst.wasm_for(&d).expect("wasm"), b"\0asm\x01\0\0\0");
        // Loading again adds nothing.
        assert_eq!(load(&dst, &tarball).expect("again").present_blobs, 3);
    }

    #[test]
    fn signatures_travel_with_their_controller() {
        use crate::signature::tests::sample;
        let a = tempfile::tempdir().expect("tmp");
        let src = Store::open(a.path().join("s")).expect("open");
        let opts = ArtifactOptions {
            force: true,
            ..Default::default()
        };
        let d = src
            .import_wasm(b"\0asm\x01\0\0\0", Some("reg/ctl:dev"), &opts)
            .expect("import");
        src.attach_signature("reg/ctl:dev", &d, sample(1))
            .expect("attach");
        src.attach_signature("reg/ctl:dev", &d, sample(2))
            .expect("attach");
        let tarball = a.path().join("out.tar");
        // Named by its tag only, the controller brings its signature manifest along.
        let saved = save(&src, &["reg/ctl:dev".to_owned()], &tarball).expect("save");
        assert_eq!(saved.manifests.len(), 2);
        let dst = Store::open(a.path().join("d")).expect("open");
        load(&dst, &tarball).expect("load");
        assert_eq!(dst.signatures(&d).expect("sigs"), [sample(1), sample(2)]);
        assert!(dst.verify().expect("verify").is_empty());

        // An entry named as signatures that holds a foreign layer is refused on load.
        let sig_entry = src
            .entries()
            .expect("entries")
            .into_iter()
            .find(|e| {
                e.annotation(annotations::REF_NAME)
                    .is_some_and(is_signature_ref_name)
            })
            .expect("signature entry");
        let mut manifest = src.manifest(&sig_entry.digest).expect("manifest");
        let junk = src.write_blob(b"junk").expect("junk");
        manifest
            .layers
            .push(Descriptor::new("text/plain", junk.clone(), 4));
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let forged = Descriptor::new(
            crate::media::OCI_MANIFEST,
            src.write_blob(&bytes).expect("manifest"),
            bytes.len() as u64,
        );
        let name = sig_entry.annotation(annotations::REF_NAME).expect("name");
        src.add_entry(forged, Some(name), BTreeMap::new())
            .expect("entry");
        save(&src, &[], &tarball).expect("save");
        let fresh = Store::open(a.path().join("f")).expect("open");
        let err = load(&fresh, &tarball).expect_err("foreign");
        assert!(
            matches!(&err, Error::ForeignSignatureLayer { digest, .. } if *digest == junk),
            "{err}"
        );
        assert!(fresh.entries().expect("entries").is_empty());
    }

    #[test]
    fn a_recorded_wasm_digest_that_is_not_the_layers_is_refused() {
        let a = tempfile::tempdir().expect("tmp");
        let src = Store::open(a.path().join("s")).expect("open");
        let harmless = b"\0asm\x01\0\0\0".to_vec();
        let hostile = src.write_blob(b"\0asm\x01\0\0\0hostile").expect("hostile");
        let manifest = crate::store::tests::compat_image(&src, &harmless);
        let forged = BTreeMap::from([(annotations::WASM_DIGEST.to_owned(), hostile.clone())]);
        src.add_entry(manifest.clone(), Some("ctl:compat"), forged)
            .expect("entry");
        let tarball = a.path().join("out.tar");
        save(&src, &[], &tarball).expect("save");
        let dst = Store::open(a.path().join("d")).expect("open");
        let err = load(&dst, &tarball).unwrap_err().to_string();
        assert!(
            err.contains(annotations::WASM_DIGEST) && err.contains(&hostile),
            "{err}"
        );
        assert!(dst.entries().expect("entries").is_empty());

        // Without the claim, load records the digest it unpacks itself.
        src.add_entry(manifest.clone(), Some("ctl:compat"), BTreeMap::new())
            .expect("entry");
        save(&src, &[], &tarball).expect("save");
        load(&dst, &tarball).expect("load");
        let entry = dst.entry(&manifest.digest).expect("entry").expect("loaded");
        assert_eq!(
            entry.annotation(annotations::WASM_DIGEST),
            Some(digest::of(&harmless).as_str())
        );
        assert!(dst.verify().expect("verify").is_empty());
        assert_eq!(dst.wasm_for(&manifest.digest).expect("wasm"), harmless);
    }

    #[test]
    fn tampered_archive_changes_nothing() {
        let a = tempfile::tempdir().expect("tmp");
        let src = Store::open(a.path().join("s")).expect("open");
        let opts = ArtifactOptions {
            force: true,
            ..Default::default()
        };
        src.import_wasm(b"\0asm\x01\0\0\0", Some("ctl:dev"), &opts)
            .expect("import");
        let tarball = a.path().join("out.tar");
        save(&src, &[], &tarball).expect("save");
        let mut bytes = std::fs::read(&tarball).expect("read");
        // The wasm payload is the only place with this magic; flip its version byte.
        let at = bytes
            .windows(8)
            .position(|w| w == b"\0asm\x01\0\0\0")
            .expect("found");
        bytes[at + 4] = 2;
        std::fs::write(&tarball, bytes).expect("write");
        let dst = Store::open(a.path().join("d")).expect("open");
        let err = load(&dst, &tarball).unwrap_err().to_string();
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(dst.entries().expect("entries").is_empty());
        assert_eq!(
            std::fs::read_dir(dst.root().join("blobs/sha256"))
                .expect("dir")
                .count(),
            0
        );
    }
}
