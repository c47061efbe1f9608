//! The Flipt controller for cup: `Flag` and `Segment` resources (group `flipt.io`, version
//! `v1alpha1`) stored in Flipt's declarative `features.yml` files.
//!
//! Built for `wasm32-wasip1`; the host mounts the source tree at `/`. See README.md.

mod model;
mod state;
mod store;
#[cfg(test)]
mod tests;

fn main() -> std::process::ExitCode {
    cup_controller_sdk::run(&store::Flipt::new("/"))
}
