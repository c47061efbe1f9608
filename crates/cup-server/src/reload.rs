//! Reloading the config directory while serving (SIGHUP in cupd).
//!
//! A reload reads the directory again and loads every controller exactly as startup does
//! (fetch by digest, signature policy, package checks), except that a module whose bytes
//! have the digest of one the served set already compiled is used as it is. Only a whole
//! set is swapped in: a file that does not parse, a controller that does not load or
//! verify, a Binding that names an unknown definition or a route another Binding holds,
//! and the reload is refused — the set served before keeps serving, and `/status` says why.
//! The swap replaces one `Arc`: a request that already looked up its route finishes on the
//! set it started with.
//!
//! Reloads run one at a time on one task. Requests arriving while one runs are coalesced
//! into one more reload after it ([`tokio::sync::Notify`] keeps at most one permit), so a
//! burst of signals costs at most two loads and the last request is never lost.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::Notify;

use crate::config_dir;
use crate::load::{LoadTools, Loader, Served};
use crate::state::AppState;
use crate::status::StatusBoard;

/// At most this many problems are named in a refused reload's reason (each names its
/// file); the rest are counted.
const MAX_PROBLEMS_SHOWN: usize = 8;
/// A refused reload's reason is cut to this many bytes: `/status` and the log stay small
/// however many controllers fail.
const MAX_REASON_BYTES: usize = 8 * 1024;

/// Asks the server to reload its config directory. Cheap to clone; requests made while a
/// reload runs are coalesced into one more.
#[derive(Clone, Debug)]
pub struct ReloadHandle {
    pub(crate) wake: Arc<Notify>,
}

impl ReloadHandle {
    /// Queues a reload (a no-op if one is queued already). Reloads start once the first
    /// load of the controllers is published.
    pub fn request(&self) {
        self.wake.notify_one();
    }
}

/// How the last reload ended.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// When it ended.
    pub at: SystemTime,
    /// Why it was refused; `None` when the new set is served.
    pub error: Option<String>,
    /// Wall time of the reload, in milliseconds.
    pub duration_ms: f64,
}

/// What `/status` says about reloads.
#[derive(Debug, Clone, Default)]
pub struct ReloadState {
    /// Reloads ended since start, refused or not.
    pub count: u64,
    /// Whether one runs now.
    pub running: bool,
    /// The last one to end.
    pub last: Option<ReloadOutcome>,
}

/// The reload state shared with `/status`.
#[derive(Debug, Default)]
pub struct ReloadBoard {
    state: Mutex<ReloadState>,
}

impl ReloadBoard {
    /// The state now; `None` before the first reload was started.
    pub fn snapshot(&self) -> Option<ReloadState> {
        let state = self.lock().clone();
        (state.running || state.count > 0).then_some(state)
    }

    fn started(&self) {
        self.lock().running = true;
    }

    fn ended(&self, outcome: ReloadOutcome) {
        let mut state = self.lock();
        state.running = false;
        state.count += 1;
        state.last = Some(outcome);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadState> {
        // Plain data: after a panic elsewhere it is still worth serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs the reloads of one server.
pub struct Reloader {
    resources: PathBuf,
    tools: Arc<LoadTools>,
    state: Arc<AppState>,
    wake: Arc<Notify>,
}

impl Reloader {
    /// A reloader of the config directory `resources`, loading with `tools` into `state`.
    pub fn new(resources: PathBuf, tools: Arc<LoadTools>, state: Arc<AppState>) -> Reloader {
        Reloader {
            resources,
            tools,
            state,
            wake: Arc::new(Notify::new()),
        }
    }

    /// A handle that requests reloads.
    pub fn handle(&self) -> ReloadHandle {
        ReloadHandle {
            wake: self.wake.clone(),
        }
    }

    /// Serves reload requests, one at a time, forever.
    pub async fn serve(self) {
        loop {
            self.wake.notified().await;
            self.reload_once().await;
        }
    }

    async fn reload_once(&self) {
        let started = Instant::now();
        self.state.reload.started();
        tracing::info!(dir = %self.resources.display(), "reloading the config directory");
        let loaded = self.load().await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let error = match loaded {
            Ok((served, status)) => {
                let routes = served.routes.len();
                self.state.publish(served);
                self.state.status.replace_with(&status);
                self.tools.metrics.config_reload("ok");
                tracing::info!(
                    routes,
                    duration_ms,
                    "config directory reloaded; serving the new set"
                );
                None
            }
            Err(reason) => {
                self.tools.metrics.config_reload("refused");
                tracing::warn!(%reason, duration_ms,
                    "config reload refused; the set loaded before keeps serving");
                Some(reason)
            }
        };
        self.state.reload.ended(ReloadOutcome {
            at: SystemTime::now(),
            error,
            duration_ms,
        });
    }

    /// The new set and its statuses, or why it must not be served.
    async fn load(&self) -> Result<(Served, Arc<StatusBoard>), String> {
        let root = self.resources.clone();
        let config = tokio::task::spawn_blocking(move || config_dir::load(&root))
            .await
            .map_err(|e| format!("reading the config directory: {e}"))?
            .map_err(|e| e.to_string())?;
        let status = Arc::new(StatusBoard::default());
        let loader = Loader {
            config,
            tools: self.tools.clone(),
            status: status.clone(),
            reusable: self
                .state
                .served()
                .map(|served| served.wasm_modules())
                .unwrap_or_default(),
        };
        loader.announce();
        let (served, problems) = loader.load_all().await;
        if !problems.is_empty() {
            return Err(refusal(&problems));
        }
        Ok((served, status))
    }
}

/// One bounded sentence naming the first problems.
fn refusal(problems: &[String]) -> String {
    let mut reason = problems
        .iter()
        .take(MAX_PROBLEMS_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_PROBLEMS_SHOWN {
        reason.push_str(&format!(
            "; and {} more problems",
            problems.len() - MAX_PROBLEMS_SHOWN
        ));
    }
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_first_problems_and_counts_the_rest() {
        let problems: Vec<String> = (0..20)
            .map(|i| format!("binding {i} (b{i}.json)"))
            .collect();
        let reason = refusal(&problems);
        assert!(
            reason.starts_with("binding 0 (b0.json); binding 1"),
            "{reason}"
        );
        assert!(reason.ends_with("; and 12 more problems"), "{reason}");
        let long = vec!["é".repeat(10_000)];
        let reason = refusal(&long);
        assert!(
            reason.len() <= MAX_REASON_BYTES + '…'.len_utf8(),
            "{}",
            reason.len()
        );
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn the_board_says_nothing_before_the_first_reload() {
        let board = ReloadBoard::default();
        assert!(board.snapshot().is_none());
        board.started();
        assert!(board.snapshot().is_some_and(|s| s.running && s.count == 0));
        board.ended(ReloadOutcome {
            at: SystemTime::now(),
            error: Some("x".into()),
            duration_ms: 1.0,
        });
        let state = board.snapshot().unwrap();
        assert!(!state.running);
        assert_eq!(state.count, 1);
        assert_eq!(state.last.unwrap().error.as_deref(), Some("x"));
    }
}
