//! `-l/--level`: diagnostics on stderr (never stdout, which carries the command's output;
//! the original logged to stdout and so corrupted `-o json` pipes).

use std::sync::atomic::{AtomicU8, Ordering};

use clap::ValueEnum;

/// How much to report on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Level {
    /// Every HTTP request with its status and time, and the resolved context.
    Debug,
    /// Notices such as "no change" (the default).
    Info,
    /// Only warnings and errors (hides notices such as "no change").
    Warn,
    /// Errors only.
    Error,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

pub fn debug(message: std::fmt::Arguments<'_>) {
    if enabled(Level::Debug) {
        eprintln!("debug: {message}");
    }
}

pub fn info(message: std::fmt::Arguments<'_>) {
    if enabled(Level::Info) {
        eprintln!("{message}");
    }
}

pub fn warn(message: std::fmt::Arguments<'_>) {
    if enabled(Level::Warn) {
        eprintln!("warning: {message}");
    }
}
