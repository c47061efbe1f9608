//! The Flipt controller for cup: `Flag` and `Segment` resources (group `flipt.io`, version
//! `v1alpha1`) stored in Flipt's declarative `features.yml` files.
//!
//! One source, two builds (see README.md): for `wasm32-wasip1` the `flipt` binary
//! (src/main.rs) is the preview 1 command; for `wasm32-wasip2` this library, built as a
//! `cdylib`, is the component exporting `cup:controller/controller@0.1.0`. Either way the host
//! mounts the source tree at `/`.

mod model;
mod state;
mod store;
#[cfg(test)]
mod tests;

pub use store::Flipt;

// Only for wasm32-wasip2, where Cargo.toml turns on the SDK's `component` feature: the
// preview 1 command and the host's unit tests link this library without any exports.
#[cfg(all(target_os = "wasi", target_env = "p2"))]
cup_controller_sdk::export_component!(Flipt::new("/"));
