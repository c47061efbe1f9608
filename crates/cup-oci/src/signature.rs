//! Where signatures of a controller live, as data (no cryptography here): cosign's tag
//! scheme. The signatures of the manifest `sha256:<hex>` in repository R are the image
//! manifest tagged `sha256-<hex>.sig` in R, one layer per signature:
//!
//! * layer media type [`SIMPLE_SIGNING_MEDIA_TYPE`], blob = the simple-signing payload
//!   (JSON naming the signed digest), annotation [`SIGNATURE_ANNOTATION`] = the base64
//!   signature of the payload; other layer annotations (a certificate, a bundle) are kept;
//! * config: an OCI image config as go-containerregistry writes for cosign (empty platform,
//!   zero time, one empty history entry and one `diff_id` per layer).
//!
//! Reading is strict: a layer of another media type, or one without the signature
//! annotation, is a [`Error::ForeignSignatureLayer`], never skipped, so a verifier can tell
//! "a signature manifest with a layer that is not a signature" from "no signatures". Bounds:
//! at most [`MAX_SIGNATURES`] layers, payloads of at most [`MAX_SIGNATURE_PAYLOAD_BYTES`],
//! the manifest at most [`crate::MAX_MANIFEST_BYTES`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest;
use crate::manifest::{Descriptor, ImageManifest};
use crate::{Error, MAX_MANIFEST_BYTES, Result, media};

/// Media type of a signature layer: cosign's simple-signing payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of the signature manifest's config (an OCI image config, as cosign writes).
pub const SIGNATURE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Most signature layers one signature manifest may have.
pub const MAX_SIGNATURES: usize = 64;
/// Largest simple-signing payload accepted (a payload is a few hundred bytes of JSON).
pub const MAX_SIGNATURE_PAYLOAD_BYTES: u64 = 64 << 10;
/// Largest config blob of a signature manifest read (cosign's is a few hundred bytes).
pub(crate) const MAX_SIGNATURE_CONFIG_BYTES: u64 = 64 << 10;

/// The tag of the signatures of a manifest: `sha256-<hex>.sig`.
pub fn signature_tag(manifest_digest: &str) -> Result<String> {
    Ok(format!("sha256-{}.sig", digest::hex_part(manifest_digest)?))
}

/// Whether a store `ref.name` names a signature manifest: `sha256-<hex>.sig`, alone or as
/// the tag of a repository (`registry/repository:sha256-<hex>.sig`).
pub fn is_signature_ref_name(name: &str) -> bool {
    let tag = name.rsplit_once(':').map_or(name, |(_, tag)| tag);
    tag.strip_prefix("sha256-")
        .and_then(|rest| rest.strip_suffix(".sig"))
        .is_some_and(|hex| digest::validate(&format!("{}{hex}", digest::SHA256_PREFIX)).is_ok())
}

/// Whether a store `ref.name` names the signature manifest of `tag` (a [`signature_tag`]).
pub(crate) fn names_signatures_of(name: &str, tag: &str) -> bool {
    name == tag
        || name
            .strip_suffix(tag)
            .is_some_and(|repo| repo.len() > 1 && repo.ends_with(':'))
}

/// One signature as stored: a layer of the signature manifest and its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// The simple-signing payload, byte for byte (the layer's blob).
    pub payload: Vec<u8>,
    /// The base64 signature of the payload, as stored in [`SIGNATURE_ANNOTATION`].
    pub signature: String,
    /// The layer's other annotations, as they are (without [`SIGNATURE_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
    /// `sha256:` digest of the payload: the layer's digest.
    pub layer_digest: String,
}

impl StoredSignature {
    /// A signature of `payload`, its layer digest computed.
    pub fn new(
        payload: Vec<u8>,
        signature: String,
        annotations: BTreeMap<String, String>,
    ) -> StoredSignature {
        let layer_digest = digest::of(&payload);
        StoredSignature {
            payload,
            signature,
            annotations,
            layer_digest,
        }
    }

    /// The same signature (same payload bytes and same signature); other annotations may
    /// differ, they do not make another signature.
    pub fn same_as(&self, other: &StoredSignature) -> bool {
        self.layer_digest == other.layer_digest && self.signature == other.signature
    }

    /// The layer of this signature in a signature manifest.
    fn layer(&self) -> Descriptor {
        let mut layer = Descriptor::new(
            SIMPLE_SIGNING_MEDIA_TYPE,
            self.layer_digest.clone(),
            self.payload.len() as u64,
        );
        layer.annotations = self.annotations.clone();
        layer
            .annotations
            .insert(SIGNATURE_ANNOTATION.to_owned(), self.signature.clone());
        layer
    }

    /// The signature of a checked signature layer (see [`parse_signature_manifest`]) and its
    /// blob, which is verified against the layer's digest and size; `what` names the layer.
    pub fn from_layer(layer: &Descriptor, payload: Vec<u8>, what: &str) -> Result<StoredSignature> {
        digest::verify(what, &payload, &layer.digest, Some(layer.size))?;
        let mut annotations = layer.annotations.clone();
        let signature = annotations.remove(SIGNATURE_ANNOTATION).ok_or_else(|| {
            Error::ForeignSignatureLayer {
                what: what.to_owned(),
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                reason: format!("it has no {SIGNATURE_ANNOTATION} annotation"),
            }
        })?;
        Ok(StoredSignature {
            payload,
            signature,
            annotations,
            layer_digest: layer.digest.clone(),
        })
    }
}

/// The config go-containerregistry writes for an image of uncompressed layers appended to
/// an empty image, which is what cosign pushes; fields in its order.
#[derive(Serialize)]
struct SignatureConfig<'a> {
    architecture: &'a str,
    created: &'a str,
    history: Vec<History<'a>>,
    os: &'a str,
    rootfs: RootFs<'a>,
    config: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The signature manifest holding `signatures` in this order, and its config blob:
/// `(manifest bytes, config bytes)`. Refused: no signatures, more than [`MAX_SIGNATURES`],
/// a payload over [`MAX_SIGNATURE_PAYLOAD_BYTES`], an empty signature, or a `layer_digest`
/// that is not the payload's digest.
pub fn signature_manifest(signatures: &[StoredSignature]) -> Result<(Vec<u8>, Vec<u8>)> {
    let what = "signature manifest";
    if signatures.is_empty() {
        return Err(Error::InvalidSignatureManifest {
            what: what.to_owned(),
            reason: "it would hold no signature".to_owned(),
        });
    }
    check_count(signatures.len(), what)?;
    for s in signatures {
        check_payload_size(s.payload.len() as u64, &s.layer_digest, what)?;
        digest::verify(
            &format!("{what}: signature layer"),
            &s.payload,
            &s.layer_digest,
            None,
        )?;
        if s.signature.is_empty() {
            return Err(Error::InvalidSignatureManifest {
                what: what.to_owned(),
                reason: format!("the signature of layer {} is empty", s.layer_digest),
            });
        }
    }
    let config = SignatureConfig {
        architecture: "",
        created: ZERO_TIME,
        history: signatures
            .iter()
            .map(|_| History { created: ZERO_TIME })
            .collect(),
        os: "",
        rootfs: RootFs {
            kind: "layers",
            // Uncompressed layers: the diff ID is the blob's digest.
            diff_ids: signatures.iter().map(|s| s.layer_digest.as_str()).collect(),
        },
        config: BTreeMap::new(),
    };
    let config = serde_json::to_vec(&config).map_err(|e| Error::InvalidSignatureManifest {
        what: what.to_owned(),
        reason: format!("serializing the config: {e}"),
    })?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor::new(
            SIGNATURE_CONFIG_MEDIA_TYPE,
            digest::of(&config),
            config.len() as u64,
        ),
        layers: signatures.iter().map(StoredSignature::layer).collect(),
        annotations: BTreeMap::new(),
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::InvalidSignatureManifest {
        what: what.to_owned(),
        reason: format!("serializing the manifest: {e}"),
    })?;
    if manifest.len() > MAX_MANIFEST_BYTES {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            reason: format!(
                "{} bytes, over the limit of {MAX_MANIFEST_BYTES}",
                manifest.len()
            ),
        });
    }
    Ok((manifest, config))
}

/// Parses and checks a signature manifest (`what` names it in errors): an OCI or Docker
/// image manifest of at most [`crate::MAX_MANIFEST_BYTES`] with at most [`MAX_SIGNATURES`]
/// layers, each a [`SIMPLE_SIGNING_MEDIA_TYPE`] blob of at most
/// [`MAX_SIGNATURE_PAYLOAD_BYTES`] with a [`SIGNATURE_ANNOTATION`]. Any other layer is an
/// [`Error::ForeignSignatureLayer`] naming it. The blobs are not read here; each is checked
/// against its layer by [`StoredSignature::from_layer`].
pub fn parse_signature_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    let invalid = |reason: String| Error::InvalidSignatureManifest {
        what: what.to_owned(),
        reason,
    };
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            reason: format!(
                "{} bytes, over the limit of {MAX_MANIFEST_BYTES}",
                bytes.len()
            ),
        });
    }
    let manifest: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("it is not an image manifest: {e}")))?;
    match manifest.media_type.as_deref() {
        None | Some(media::OCI_MANIFEST) | Some(media::DOCKER_MANIFEST) => {}
        Some(other) => {
            return Err(invalid(format!(
                "its media type is {other}, not an image manifest"
            )));
        }
    }
    if manifest.schema_version != 2 {
        return Err(invalid(format!(
            "schemaVersion {} (expected 2)",
            manifest.schema_version
        )));
    }
    digest::validate(&manifest.config.digest)?;
    if manifest.config.size > MAX_SIGNATURE_CONFIG_BYTES {
        return Err(Error::TooLarge {
            what: format!("{what}: config {}", manifest.config.digest),
            reason: format!(
                "{} bytes, over the limit of {MAX_SIGNATURE_CONFIG_BYTES}",
                manifest.config.size
            ),
        });
    }
    check_count(manifest.layers.len(), what)?;
    for layer in &manifest.layers {
        digest::validate(&layer.digest)?;
        let foreign = |reason: String| Error::ForeignSignatureLayer {
            what: what.to_owned(),
            digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            reason,
        };
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            return Err(foreign(format!(
                "its media type is not {SIMPLE_SIGNING_MEDIA_TYPE}"
            )));
        }
        if layer.annotation(SIGNATURE_ANNOTATION).is_none() {
            return Err(foreign(format!(
                "it has no {SIGNATURE_ANNOTATION} annotation"
            )));
        }
        check_payload_size(layer.size, &layer.digest, what)?;
    }
    Ok(manifest)
}

fn check_count(count: usize, what: &str) -> Result<()> {
    if count > MAX_SIGNATURES {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            reason: format!("{count} signature layers, over the limit of {MAX_SIGNATURES}"),
        });
    }
    Ok(())
}

fn check_payload_size(size: u64, layer: &str, what: &str) -> Result<()> {
    if size > MAX_SIGNATURE_PAYLOAD_BYTES {
        return Err(Error::TooLarge {
            what: format!("{what}: signature layer {layer}"),
            reason: format!("{size} bytes, over the limit of {MAX_SIGNATURE_PAYLOAD_BYTES}"),
        });
    }
    Ok(())
}

/// Adds `signature` to `existing` unless the same signature is there; returns whether it
/// was added.
pub(crate) fn append_signature(
    existing: &mut Vec<StoredSignature>,
    signature: StoredSignature,
) -> bool {
    if existing.iter().any(|s| s.same_as(&signature)) {
        return false;
    }
    existing.push(signature);
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(n: u8) -> StoredSignature {
        StoredSignature::new(
            format!(r#"{{"critical":{{"n":{n}}}}}"#).into_bytes(),
            format!("MEUCIQ{n}=="),
            BTreeMap::from([("dev.sigstore.cosign/bundle".to_owned(), format!("b{n}"))]),
        )
    }

    #[test]
    fn the_tag_is_cosigns() {
        let d = digest::of(b"m");
        let tag = signature_tag(&d).expect("tag");
        assert_eq!(tag, format!("sha256-{}.sig", &d[7..]));
        assert!(signature_tag("sha256:abc").is_err());
        assert!(is_signature_ref_name(&tag));
        assert!(is_signature_ref_name(&format!(
            "127.0.0.1:5000/cup/x:{tag}"
        )));
        assert!(!is_signature_ref_name("127.0.0.1:5000/cup/x:v1"));
        assert!(names_signatures_of(&format!("reg/x:{tag}"), &tag));
        assert!(names_signatures_of(&tag, &tag));
        assert!(!names_signatures_of(&format!("reg/x{tag}"), &tag));
    }

    #[test]
    fn build_then_parse_gives_the_signatures_back() {
        let sigs = [sample(1), sample(2)];
        let (manifest, config) = signature_manifest(&sigs).expect("build");
        let parsed = parse_signature_manifest(&manifest, "m").expect("parse");
        assert_eq!(parsed.config.digest, digest::of(&config));
        assert_eq!(parsed.config.media_type, SIGNATURE_CONFIG_MEDIA_TYPE);
        let back: Vec<StoredSignature> = parsed
            .layers
            .iter()
            .zip(&sigs)
            .map(|(l, s)| StoredSignature::from_layer(l, s.payload.clone(), "l").expect("layer"))
            .collect();
        assert_eq!(back, sigs);
        let config: serde_json::Value = serde_json::from_slice(&config).expect("json");
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([sigs[0].layer_digest, sigs[1].layer_digest])
        );
        assert_eq!(config["history"].as_array().map(Vec::len), Some(2));
        // Field order is go-containerregistry's.
        let text = String::from_utf8(serde_json::to_vec(&config).expect("json")).expect("utf8");
        assert!(text.contains("\"architecture\":\"\""), "{text}");
    }

    #[test]
    fn foreign_layers_are_reported_and_bounds_kept() {
        let (manifest, _) = signature_manifest(&[sample(1)]).expect("build");
        let mut m: ImageManifest = serde_json::from_slice(&manifest).expect("json");
        let mut other = Descriptor::new("text/plain", digest::of(b"x"), 1);
        m.layers.push(other.clone());
        let err = parse_signature_manifest(&serde_json::to_vec(&m).expect("json"), "m")
            .expect_err("foreign");
        assert!(
            matches!(&err, Error::ForeignSignatureLayer { digest, .. } if *digest == other.digest),
            "{err}"
        );
        other.media_type = SIMPLE_SIGNING_MEDIA_TYPE.to_owned();
        m.layers[1] = other;
        let err = parse_signature_manifest(&serde_json::to_vec(&m).expect("json"), "m")
            .expect_err("no annotation");
        assert!(err.to_string().contains(SIGNATURE_ANNOTATION), "{err}");

        let many: Vec<StoredSignature> = (0..=MAX_SIGNATURES as u8).map(sample).collect();
        assert!(matches!(
            signature_manifest(&many),
            Err(Error::TooLarge { .. })
        ));
        let big = StoredSignature::new(
            vec![b' '; MAX_SIGNATURE_PAYLOAD_BYTES as usize + 1],
            "s".into(),
            BTreeMap::new(),
        );
        assert!(matches!(
            signature_manifest(&[big]),
            Err(Error::TooLarge { .. })
        ));
        let mut wrong = sample(1);
        wrong.layer_digest = digest::of(b"other");
        assert!(matches!(
            signature_manifest(&[wrong]),
            Err(Error::DigestMismatch { .. })
        ));
        let layer = sample(1).layer();
        assert!(matches!(
            StoredSignature::from_layer(&layer, b"tampered".to_vec(), "l"),
            Err(Error::SizeMismatch { .. } | Error::DigestMismatch { .. })
        ));
    }

    #[test]
    fn the_same_signature_is_not_appended_twice() {
        let mut sigs = vec![sample(1)];
        let mut again = sample(1);
        again.annotations.clear();
        assert!(!append_signature(&mut sigs, again));
        assert!(append_signature(&mut sigs, sample(2)));
        assert_eq!(sigs.len(), 2);
    }
}
