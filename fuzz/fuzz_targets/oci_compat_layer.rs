//! Fuzzes the unpacking of a docker-buildable "compat" image's layer:
//! `cup_oci::extract_wasm` on arbitrary bytes as tar+gzip (gzip header and stream,
//! tar headers, long names, entry types, sizes).
//!
//! Random bytes rarely survive gzip decoding, so each input is also compressed first and
//! the tar reader gets it directly (the registry controls both layers of the format).
//!
//! Invariants: nothing panics, memory stays bounded (the reader caps every entry), and what
//! comes out is a wasm module (starts with `\0asm`) no larger than the cap.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fn check(layer: &[u8]) {
    if let Ok(wasm) = cup_oci::extract_wasm(layer, "fuzz") {
        assert!(wasm.starts_with(cup_oci::WASM_MAGIC));
        assert!(wasm.len() as u64 <= cup_oci::MAX_WASM_BYTES);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gz.write_all(data).is_ok()
        && let Ok(compressed) = gz.finish()
    {
        check(&compressed);
    }
});
