//! Kinds whose `put` leaves a checkout too big to keep, cheaply for the guest: what a host
//! does with the written tree is what they test (see the list in main.rs).
//!
//! - `Sparse`: `put` sets the length of `/sparse.bin` to 2 GiB, or to the resource name's
//!   number of bytes. The file is sparse: it costs the guest no memory and the disk nothing.
//! - `Nest`: `put` creates as many nested directories as the resource name says (`n/n/…`)
//!   with a file at the bottom.
//!
//! Other verbs exit 0 with nothing on stdout (an empty answer).

use std::fs::{self, File};
use std::process::exit;

pub fn abuse(verb: &str, kind: &str, name: &str) {
    if verb != "put" {
        return;
    }
    let done = match kind {
        "Sparse" => {
            File::create("/sparse.bin").and_then(|f| f.set_len(name.parse().unwrap_or(2 << 30)))
        }
        _ => nest(name.parse().unwrap_or(100)),
    };
    if let Err(e) = done {
        eprintln!("probe {kind}: {e}");
        exit(1);
    }
}

fn nest(levels: usize) -> std::io::Result<()> {
    let mut path = String::new();
    for _ in 0..levels {
        path.push_str("/n");
        fs::create_dir(&path)?;
    }
    fs::write(format!("{path}/bottom.txt"), "the bottom\n")
}
