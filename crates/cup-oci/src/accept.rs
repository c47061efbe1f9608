//! Which manifests `pull` accepts, and where the wasm is in them.
//!
//! Accepted: an OCI image (or Docker schema 2) manifest with exactly one layer, whatever
//! its config (CNCF wasm config, `application/vnd.oci.empty.v1+json`, a tool's
//! `application/vnd.unknown.config.v1+json`, …), where the layer is
//! * a wasm module: `application/wasm` or one of the older
//!   `application/vnd.{,module.}wasm.content.layer.v1+wasm` types, with the `\0asm` magic; or
//! * a tar+gzip filesystem layer of a docker-buildable image holding `controller.wasm` or
//!   `plugin.wasm` at its root (the "compat" image).
//!
//! Everything else is refused with the media types seen.

use std::io::Read;

use crate::manifest::{Descriptor, ImageManifest, Probe};
use crate::{Error, MAX_WASM_BYTES, Result, digest, media};

/// Where the wasm of an accepted manifest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmSource {
    /// The layer is the module itself.
    Layer(Descriptor),
    /// The layer is a tar+gzip filesystem holding the module.
    TarGz(Descriptor),
}

impl WasmSource {
    /// The layer's descriptor, whichever way it holds the wasm.
    pub fn layer(&self) -> &Descriptor {
        match self {
            WasmSource::Layer(d) | WasmSource::TarGz(d) => d,
        }
    }
}

/// File names looked for in a compat image's layer, in order of preference.
pub const COMPAT_NAMES: [&str; 2] = ["controller.wasm", "plugin.wasm"];

/// The wasm magic number.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Parses a manifest and finds its wasm, or says why it is not a controller artifact.
/// `what` names the manifest in errors (registry and reference).
pub fn classify(manifest: &[u8], what: &str) -> Result<(ImageManifest, WasmSource)> {
    let refuse = |reason: String, seen: Vec<String>| Error::MediaType {
        what: what.to_owned(),
        reason,
        seen,
    };
    let probe: Probe = serde_json::from_slice(manifest)
        .map_err(|e| refuse(format!("the manifest is not valid JSON: {e}"), Vec::new()))?;
    let declared = probe.media_type.clone().unwrap_or_default();
    if probe.manifests.is_some() || declared == media::OCI_INDEX || declared == media::DOCKER_LIST {
        return Err(refuse(
            "it is an image index (a controller is one manifest with one wasm layer)".into(),
            vec![declared],
        ));
    }
    if probe.schema_version != Some(2) || probe.layers.is_none() {
        return Err(refuse(
            "it is not a schema 2 image manifest".into(),
            vec![declared],
        ));
    }
    if !declared.is_empty() && declared != media::OCI_MANIFEST && declared != media::DOCKER_MANIFEST
    {
        return Err(refuse(
            format!("unknown manifest media type {declared}"),
            vec![declared],
        ));
    }
    let parsed: ImageManifest = serde_json::from_slice(manifest)
        .map_err(|e| refuse(format!("malformed image manifest: {e}"), vec![declared]))?;
    let source = find_wasm(&parsed).map_err(|reason| refuse(reason, seen_types(&parsed)))?;
    digest::validate(&parsed.config.digest)?;
    digest::validate(&source.layer().digest)?;
    Ok((parsed, source))
}

fn find_wasm(manifest: &ImageManifest) -> std::result::Result<WasmSource, String> {
    let [layer] = manifest.layers.as_slice() else {
        return Err(format!(
            "it has {} layers (exactly one, the wasm module, is expected)",
            manifest.layers.len()
        ));
    };
    let mt = layer.media_type.as_str();
    if mt == media::WASM_LAYER || media::WASM_LAYER_LEGACY.contains(&mt) {
        Ok(WasmSource::Layer(layer.clone()))
    } else if media::TAR_GZIP_LAYERS.contains(&mt) {
        Ok(WasmSource::TarGz(layer.clone()))
    } else {
        Err(format!(
            "its layer has media type {mt}, which is not a wasm module"
        ))
    }
}

/// Config and layer media types, for error messages.
pub fn seen_types(manifest: &ImageManifest) -> Vec<String> {
    std::iter::once(format!("config {}", manifest.config.media_type))
        .chain(
            manifest
                .layers
                .iter()
                .map(|l| format!("layer {}", l.media_type)),
        )
        .collect()
}

/// Checks the `\0asm` magic of what claims to be a wasm module.
pub fn check_magic(prefix: &[u8], what: &str, media_type: &str) -> Result<()> {
    if prefix.starts_with(WASM_MAGIC) {
        Ok(())
    } else {
        Err(Error::MediaType {
            what: what.to_owned(),
            reason: "the layer does not start with the wasm magic \\0asm".into(),
            seen: vec![format!("layer {media_type}")],
        })
    }
}

/// Unpacks the module from a compat image's tar+gzip layer: `controller.wasm` if present,
/// else `plugin.wasm`, at the root of the filesystem. Reads at most [`MAX_WASM_BYTES`] of
/// any entry, so a decompression bomb cannot exhaust memory.
pub fn extract_wasm(layer: impl Read, what: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::MediaType {
        what: what.to_owned(),
        reason,
        seen: vec![format!("layer {}", media::TAR_GZIP_LAYERS[0])],
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut found: [Option<Vec<u8>>; 2] = [None, None];
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("the layer is not a tar+gzip archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("the layer is not a tar+gzip archive: {e}")))?;
        let Some(slot) = compat_slot(&entry) else {
            continue;
        };
        if found[slot].is_none() {
            found[slot] = Some(read_capped(entry, what)?);
        }
    }
    let [controller, plugin] = found;
    let wasm = controller.or(plugin).ok_or_else(|| {
        bad(format!(
            "the tar+gzip layer holds neither {} nor {} at its root",
            COMPAT_NAMES[0], COMPAT_NAMES[1]
        ))
    })?;
    check_magic(&wasm, what, media::TAR_GZIP_LAYERS[0])?;
    Ok(wasm)
}

/// Index into [`COMPAT_NAMES`] of a regular-file entry with one of those names at the root.
fn compat_slot<R: Read>(entry: &tar::Entry<'_, R>) -> Option<usize> {
    if !entry.header().entry_type().is_file() {
        return None;
    }
    let path = entry.path().ok()?;
    let name = path.to_str()?;
    let name = name.trim_start_matches("./").trim_start_matches('/');
    COMPAT_NAMES.iter().position(|n| *n == name)
}

fn read_capped(entry: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    entry
        .take(MAX_WASM_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::MediaType {
            what: what.to_owned(),
            reason: format!("reading the wasm from the tar+gzip layer: {e}"),
            seen: vec![],
        })?;
    if out.len() as u64 > MAX_WASM_BYTES {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            reason: format!("the unpacked wasm is over {MAX_WASM_BYTES} bytes"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config: &str, layers: &[&str]) -> Vec<u8> {
        let d = digest::of(b"x");
        let layers: Vec<String> = layers
            .iter()
            .map(|mt| format!(r#"{{"mediaType":"{mt}","digest":"{d}","size":1}}"#))
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{config}","digest":"{d}","size":1}},"layers":[{}]}}"#,
            media::OCI_MANIFEST,
            layers.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn accepts_any_config_with_one_wasm_layer() {
        for config in [
            media::WASM_CONFIG,
            "application/vnd.oci.empty.v1+json",
            "application/vnd.unknown.config.v1+json",
        ] {
            for layer in [
                media::WASM_LAYER,
                media::WASM_LAYER_LEGACY[0],
                media::WASM_LAYER_LEGACY[1],
            ] {
                let (_, src) = classify(&manifest(config, &[layer]), "t").expect("accepted");
                assert!(matches!(src, WasmSource::Layer(_)));
            }
        }
        let (_, src) = classify(&manifest("x", &[media::TAR_GZIP_LAYERS[1]]), "t").expect("compat");
        assert!(matches!(src, WasmSource::TarGz(_)));
    }

    #[test]
    fn refuses_others_listing_types() {
        let err = classify(&manifest("c", &["text/plain"]), "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer text/plain") && err.contains("config c"),
            "{err}"
        );
        let err = classify(&manifest("c", &[media::WASM_LAYER, media::WASM_LAYER]), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 layers"), "{err}");
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(
            classify(index, "t")
                .unwrap_err()
                .to_string()
                .contains("image index")
        );
    }

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            Default::default(),
        ));
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, name, *data).expect("append");
        }
        builder.into_inner().expect("tar").finish().expect("gz")
    }

    #[test]
    fn extracts_compat_wasm() {
        let wasm = b"\0asm\x01\0\0\0";
        let layer = tar_gz(&[
            ("etc/x", b"no"),
            ("plugin.wasm", b"\0asmplug"),
            ("./controller.wasm", wasm),
        ]);
        assert_eq!(extract_wasm(layer.as_slice(), "t").expect("found"), wasm);
        let layer = tar_gz(&[("sub/controller.wasm", wasm)]);
        assert!(extract_wasm(layer.as_slice(), "t").is_err());
        let layer = tar_gz(&[("controller.wasm", b"text")]);
        assert!(
            extract_wasm(layer.as_slice(), "t")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
    }
}
