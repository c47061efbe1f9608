//! Links `cup` as a non-PIE executable on Linux (glibc).
//!
//! Why: `cup` is started once per command, often from scripts, and reading a package's
//! definitions (`cup controller definitions`) has a budget of 2 ms for the whole process
//! (docs/PRODUCT.md, "Speed targets"). As a position-independent executable `cup` carries
//! tens of thousands of relative relocations; the dynamic loader applies them at every start
//! and copies each page they touch, a large share of that budget. Linked at a fixed address,
//! the linker resolves them once instead. What it costs: the executable's own code and data are not moved by ASLR
//! (shared libraries, heap and stack still are), as for a Go binary such as the original cup.
//! `cupd`, the long-running process that serves the network, stays PIE, and so does
//! `cup-embed`, whose time is disk and hashing (linking it at a fixed address made no
//! measurable difference).
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
