//! Packing the bare cache. libgit2 has no garbage collection: each fetch adds a pack and
//! each write adds loose objects, without end. `git gc --auto` (the git program) packs them
//! when git's own thresholds are passed, drops objects no ref reaches after git's grace
//! period, and is built to run while other processes read the repository: new packs are
//! complete before old ones go, and libgit2 looks for a missing object again after
//! re-reading the pack directory.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cache::lock;
use crate::{GitError, GitRepo};

/// The longest one garbage collection may run before it is killed (git leaves nothing
/// half-done that breaks the repository: a killed run leaves at most temporary files that a
/// later one removes).
pub const GC_TIMEOUT: Duration = Duration::from_secs(600);

/// How much of the program's error output is kept for the error message.
const STDERR_KEPT: u64 = 4096;

/// Packs and loose objects of the cache, as counted from its object directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    /// `objects/pack/*.pack`.
    pub packs: u64,
    /// Files under `objects/XX/`.
    pub loose: u64,
}

/// What one garbage collection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Objects before it ran.
    pub before: ObjectCounts,
    /// Objects after it ran.
    pub after: ObjectCounts,
    /// How long it took, the wait for the remote lock left out.
    pub took: Duration,
}

impl GitRepo {
    /// Runs `git gc --auto` (the program `git`, from the PATH when it is a bare name) on the
    /// cache under the remote lock, so that no fetch, push or ref update of this process
    /// runs meanwhile. Readers may go on. Git's thresholds (`gc.auto`, `gc.autoPackLimit`
    /// in the cache's config, or git's defaults) decide whether it packs anything; it runs
    /// in the foreground, without hooks, and is killed after [`GC_TIMEOUT`].
    pub fn collect_garbage(&self, git: &Path) -> Result<Collected, GitError> {
        let _remote = lock(&self.remote);
        let before = self.object_counts();
        let started = Instant::now();
        run_gc(git, &self.dir, GC_TIMEOUT)?;
        let collected = Collected {
            before,
            after: self.object_counts(),
            took: started.elapsed(),
        };
        tracing::debug!(
            packs_before = collected.before.packs,
            loose_before = collected.before.loose,
            packs_after = collected.after.packs,
            loose_after = collected.after.loose,
            took_ms = collected.took.as_millis() as u64,
            "git cache garbage-collected"
        );
        Ok(collected)
    }

    /// Packs and loose objects in the cache now.
    pub fn object_counts(&self) -> ObjectCounts {
        let objects = self.dir.join("objects");
        let mut counts = ObjectCounts::default();
        let Ok(entries) = std::fs::read_dir(&objects) else {
            return counts;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == "pack" {
                counts.packs += files_in(&entry.path(), |n| n.ends_with(".pack"));
            } else if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                counts.loose += files_in(&entry.path(), |_| true);
            }
        }
        counts
    }
}

fn files_in(dir: &Path, wanted: impl Fn(&str) -> bool) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| wanted(&e.file_name().to_string_lossy()))
            .count() as u64
    })
}

/// Runs `git gc --auto --quiet` on the bare repository `dir`, within `timeout`.
fn run_gc(git: &Path, dir: &Path, timeout: Duration) -> Result<(), GitError> {
    let failed = |reason: String| GitError::Gc { reason };
    let mut command = Command::new(git);
    command
        .arg("--git-dir")
        .arg(dir)
        // In the foreground, so the remote lock covers the whole run; no hook of the
        // cache's runs (it has none; this says so whatever a global config says).
        .args([
            "-c",
            "gc.autoDetach=false",
            "-c",
            "maintenance.autoDetach=false",
        ])
        .args(["-c", "core.hooksPath=/dev/null"])
        // The objects of deleted proposal branches become unreachable; git's default keeps
        // such objects loose for two weeks, which at a steady write rate is thousands of
        // files. The cache is cupd's alone, and an hour is far longer than any write takes
        // between making its objects and its ref.
        .args(["-c", "gc.pruneExpire=1.hour.ago"])
        .args(["gc", "--auto", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // This process's own git settings would point the program elsewhere.
    for name in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
    ] {
        command.env_remove(name);
    }
    let mut child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => GitError::GcProgramMissing {
            program: git.to_owned(),
        },
        _ => failed(format!("starting {}: {source}", git.display())),
    })?;
    // Read on its own thread so a chatty program never blocks on a full pipe.
    let stderr = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut pipe = pipe;
            let _ = (&mut pipe).take(STDERR_KEPT).read_to_end(&mut kept);
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            String::from_utf8_lossy(&kept).trim().to_owned()
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "git gc ran longer than {}s and was stopped",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(failed(format!("waiting for git gc: {e}"))),
        }
    };
    let stderr = stderr
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    if status.success() {
        if !stderr.is_empty() {
            tracing::debug!(output = stderr, "git gc said");
        }
        return Ok(());
    }
    Err(failed(format!("git gc {status}: {stderr}")))
}
