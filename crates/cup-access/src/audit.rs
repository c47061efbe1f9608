//! The audit log: one JSON line per write, appended whole.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::error::AccessError;

/// Where the audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard error (`--audit-log-path -`).
    Stderr,
    /// A file, created 0600 if missing, appended to.
    File(PathBuf),
}

/// One audited request.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    /// The caller's user name (absent when the request was not authenticated).
    pub user: Option<&'a str>,
    /// The caller's groups.
    pub groups: &'a [String],
    /// put, delete or merge; `webhook` for a forge's delivery.
    pub verb: &'a str,
    /// The definition's group (absent for proposals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'a str>,
    /// The plural, or `proposals`.
    pub resource: &'a str,
    /// The namespace (absent for proposals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    /// The resource's name or the proposal's id.
    pub name: Option<&'a str>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// Why a refused request was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The peer address of the connection.
    pub source: &'a str,
    /// The proposal branch a Git write pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<&'a str>,
    /// The commit a Git write pushed or a merge landed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a AuditEvent<'a>,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    target: AuditTarget,
    file: Option<Mutex<File>>,
    failures: AtomicU64,
}

impl AuditLog {
    /// Opens (creates) the log.
    pub fn open(target: AuditTarget) -> Result<AuditLog, AccessError> {
        let file = match &target {
            AuditTarget::Stderr => None,
            AuditTarget::File(path) => {
                let mut options = OpenOptions::new();
                options.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600).custom_flags(libc_nofollow());
                }
                let file = options.open(path).map_err(|source| AccessError::Io {
                    path: path.clone(),
                    source,
                })?;
                Some(Mutex::new(file))
            }
        };
        Ok(AuditLog {
            target,
            file,
            failures: AtomicU64::new(0),
        })
    }

    /// Appends one line. Each line is written with one `write` under a lock, so concurrent
    /// records never interleave; a failure is logged and counted, never raised: the
    /// request it records has already been answered.
    pub fn record(&self, event: &AuditEvent<'_>) {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = match serde_json::to_vec(&Line { time, event }) {
            Ok(line) => line,
            Err(error) => {
                self.failed(&error.to_string());
                return;
            }
        };
        line.push(b'\n');
        let written = match &self.file {
            Some(file) => file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(&line),
            None => std::io::stderr().lock().write_all(&line),
        };
        if let Err(error) = written {
            self.failed(&error.to_string());
        }
    }

    fn failed(&self, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(target = ?self.target, error, "writing an audit line failed");
    }

    /// Lines that could not be written since the log was opened.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// `O_NOFOLLOW`: the log is not opened through a symlink planted at its path.
#[cfg(unix)]
fn libc_nofollow() -> i32 {
    #[cfg(target_os = "linux")]
    {
        0o400000
    }
    #[cfg(not(target_os = "linux"))]
    {
        0x0100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> AuditEvent<'_> {
        AuditEvent {
            user: Some("alice"),
            groups: &[],
            verb: "put",
            group: Some("flipt.io"),
            resource: "flags",
            namespace: Some("default"),
            name: Some(name),
            status: 200,
            reason: None,
            source: "127.0.0.1:5000",
            branch: None,
            commit: None,
        }
    }

    #[test]
    fn concurrent_records_are_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = std::sync::Arc::new(AuditLog::open(AuditTarget::File(path.clone())).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        log.record(&event(&format!("{t}-{i}-{}", "x".repeat(5000))));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1600);
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["user"], "alice");
            assert!(v["time"].as_str().unwrap().ends_with('Z'));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(log.failures(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "").unwrap();
        let path = dir.path().join("audit.log");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(AuditLog::open(AuditTarget::File(path)).is_err());
    }
}
