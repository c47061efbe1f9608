//! Links `cup` as a non-PIE executable on Linux (glibc).
//!
//! Why: `cup` is started once per command, often from scripts, and DESIGN.md bounds
//! `cup controller definitions` at 2 ms for the whole process. As a position-independent
//! executable `cup` carries ≈ 29,000 relative relocations; the dynamic loader applies them at
//! every start and copies each page they touch: 0.7 ms of a 2.2 ms `cup controller
//! definitions` (hyperfine; bench/notes.md). Linked at a fixed address, the linker resolves
//! them once instead. What it costs: the executable's own code and data are not moved by ASLR
//! (shared libraries, heap and stack still are), as for a Go binary such as the original cup.
//! `cupd`, the long-running process that serves the network, stays PIE, and so does
//! `cup-embed`, whose 15 ms are disk and hashing (no difference measured).
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
