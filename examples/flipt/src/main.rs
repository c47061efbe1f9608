//! The Flipt controller as a WASI preview 1 command (`wasm32-wasip1`); the controller itself
//! is the library (src/lib.rs). See README.md.

fn main() -> std::process::ExitCode {
    cup_controller_sdk::run(&flipt::Flipt::new("/"))
}
