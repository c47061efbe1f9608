//! `Braces`: output that is small as bytes but large once the host decodes it. Every `{}`
//! is a whole resource to the host (its absent fields filled in), ~100 bytes re-encoded and
//! more in memory, so a list of them tests the host's bounds on what a list may cost.

use std::io::{self, Write};
use std::process::exit;

/// Writes `n` bytes of `{}` (rounded down to whole pairs) to stdout and exits 0.
pub fn braces(n: u64) {
    let chunk = b"{}".repeat(4096);
    let mut out = io::stdout().lock();
    let mut left = n - n % 2;
    while left > 0 {
        let len = left.min(chunk.len() as u64) as usize;
        if out.write_all(&chunk[..len]).is_err() {
            exit(3);
        }
        left -= len as u64;
    }
    if out.flush().is_err() {
        exit(3);
    }
}
