//! Fuzzes what `pull` does with a manifest from a registry before anything is fetched:
//! `cup_oci::classify` (JSON probe, index/shape/media-type checks, the one wasm layer, the
//! digests), plus the reference parser and the store's `index.json` reader on the same bytes.
//!
//! Invariants: nothing panics; an accepted manifest has exactly one layer whose media type is
//! a wasm or compat type and valid digests; re-serialising an accepted manifest (what the
//! store writes) is accepted again with the same result; a parsed reference prints to a
//! string that parses to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((manifest, source)) = cup_oci::classify(data, "fuzz") {
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(&manifest.layers[0], source.layer());
        cup_oci::validate_digest(&manifest.config.digest).expect("accepted config digest");
        cup_oci::validate_digest(&source.layer().digest).expect("accepted layer digest");
        let _ = manifest.definition_keys();
        let again = serde_json::to_vec(&manifest).expect("an accepted manifest serialises");
        let (manifest2, source2) = cup_oci::classify(&again, "fuzz")
            .expect("a re-serialised accepted manifest is accepted");
        assert_eq!(manifest, manifest2);
        assert_eq!(source, source2);
    }
    let _ = serde_json::from_slice::<cup_oci::ImageIndex>(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(reference) = cup_oci::ImageRef::parse(text)
    {
        let printed = reference.whole();
        let reparsed = cup_oci::ImageRef::parse(&printed)
            .unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse: {e}"));
        assert_eq!(reparsed, reference, "{text:?} -> {printed:?}");
    }
});
