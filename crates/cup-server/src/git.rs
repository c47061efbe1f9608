//! The Git source (`-api-source git`): reads from per-commit snapshots of a revision,
//! writes as proposal branches pushed to the remote (see `cup_git`). This module adds the
//! async side: writes queue on an async mutex (no blocking thread is parked per waiting
//! request), every libgit2 call runs on the blocking pool, and a background task fetches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cup_git::{
    Author, BranchesOnly, CredentialStore, ErrorKind, GitError, GitRepo, MergeStrategy, Merged,
    Proposal, ProposalDetail, ProposalSummary, PullRequests, RemoteOptions,
};
use tokio::sync::Mutex;

use crate::error::ApiError;

/// How to open the Git source.
#[derive(Debug, Clone)]
pub struct GitOptions {
    /// Remote URL: a path, `file://`, `git://`, `http(s)://` (credentials in the URL or
    /// `credentials`), `ssh://` or scp-like `user@host:path` (through the ssh-agent).
    pub url: String,
    /// Parent directory of the bare cache.
    pub cache: PathBuf,
    pub author: Author,
    /// Background fetch period; zero disables it.
    pub fetch_interval: Duration,
    /// A git-credential-store file for HTTP(S) remotes (read at startup).
    pub credentials: Option<PathBuf>,
    /// known_hosts for SSH remotes; `None` = `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Told about every pushed proposal (`cup_git::BranchesOnly` opens nothing).
    pub pull_requests: Arc<dyn PullRequests>,
}

impl GitOptions {
    /// The pull-request interface `-api-git-scm` names: empty or `none` = proposals are
    /// branches only. A forge name is refused, never accepted and silently ignored, until
    /// its [`PullRequests`] implementation exists (see `cup_git::scm` for the drop-in).
    pub fn pull_requests_for(scm: &str) -> Result<Arc<dyn PullRequests>, String> {
        match scm {
            "" | "none" => Ok(Arc::new(BranchesOnly)),
            "github" | "gitea" => Err(format!(
                "opening pull requests on {scm} is not wired yet; proposals are the \
                 cup/proposal/* branches pushed to the remote and served under /proposals \
                 (list, show, merge): use -api-git-scm none"
            )),
            _ => Err("unknown SCM (expected \"none\"; github and gitea are not wired yet)".into()),
        }
    }
}

/// An opened Git source.
#[derive(Debug)]
pub struct GitSource {
    repo: Arc<GitRepo>,
    writes: Mutex<()>,
    remote_thread: RemoteThread,
}

impl GitSource {
    /// Clones or updates the cache (blocking: called once at startup).
    pub fn open(options: &GitOptions) -> Result<GitSource, GitError> {
        let credentials = match &options.credentials {
            Some(path) => Some(CredentialStore::load(path)?),
            None => None,
        };
        let remote = RemoteOptions {
            credentials,
            known_hosts: options.known_hosts.clone(),
            pull_requests: options.pull_requests.clone(),
        };
        let scm = options.pull_requests.name().to_owned();
        let repo = GitRepo::open(&options.url, &options.cache, options.author.clone(), remote)?;
        tracing::info!(
            url = repo.redacted_url(),
            cache = %repo.cache_dir().display(),
            default_branch = repo.default_branch().as_deref().unwrap_or("<none>"),
            scm,
            "git source ready"
        );
        Ok(GitSource {
            repo: Arc::new(repo),
            writes: Mutex::new(()),
            remote_thread: RemoteThread::start().map_err(|source| GitError::Io {
                what: "starting the remote thread for the git cache",
                path: options.cache.clone(),
                source,
            })?,
        })
    }

    /// The remote URL without credentials.
    pub fn url(&self) -> &str {
        self.repo.redacted_url()
    }

    /// The remote's default branch as of the last fetch.
    pub fn default_branch(&self) -> Option<String> {
        self.repo.default_branch()
    }

    /// Starts the periodic fetch (needs a tokio runtime).
    pub fn spawn_fetcher(&self, interval: Duration) {
        if interval.is_zero() {
            return;
        }
        let repo = self.repo.clone();
        let remote_thread = self.remote_thread.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; open() just fetched
            loop {
                ticker.tick().await;
                let repo = repo.clone();
                match remote_thread.run(move || repo.fetch()).await {
                    Ok(()) => tracing::debug!("fetched"),
                    Err(error) => tracing::warn!(error = error.message, "periodic fetch failed"),
                }
            }
        });
    }

    /// The snapshot directory of `revision` (default branch when `None`).
    pub async fn view(&self, revision: Option<&str>) -> Result<PathBuf, ApiError> {
        let repo = self.repo.clone();
        let revision = revision.map(str::to_owned);
        run(move || repo.view(revision.as_deref())).await
    }

    /// Runs `change` on a fresh checkout and proposes the result (see `GitRepo::propose`).
    pub async fn propose<T, F>(
        &self,
        revision: Option<&str>,
        message: String,
        change: F,
    ) -> Result<(T, Option<Proposal>), ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> (T, bool) + Send + 'static,
    {
        let _guard = self.writes.lock().await;
        let repo = self.repo.clone();
        let revision = revision.map(str::to_owned);
        self.remote_thread
            .run(move || repo.propose(revision.as_deref(), &message, change))
            .await
    }

    pub async fn proposals(&self, base: Option<&str>) -> Result<Vec<ProposalSummary>, ApiError> {
        let repo = self.repo.clone();
        let base = base.map(str::to_owned);
        self.remote_thread
            .run(move || repo.proposals(base.as_deref()))
            .await
    }

    pub async fn proposal(&self, id: &str, base: Option<&str>) -> Result<ProposalDetail, ApiError> {
        let repo = self.repo.clone();
        let (id, base) = (id.to_owned(), base.map(str::to_owned));
        self.remote_thread
            .run(move || repo.proposal(&id, base.as_deref()))
            .await
    }

    pub async fn merge(
        &self,
        id: &str,
        base: Option<&str>,
        strategy: MergeStrategy,
    ) -> Result<Merged, ApiError> {
        let _guard = self.writes.lock().await;
        let repo = self.repo.clone();
        let (id, base) = (id.to_owned(), base.map(str::to_owned));
        self.remote_thread
            .run(move || repo.merge(&id, base.as_deref(), strategy))
            .await
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The one thread that runs every libgit2 call that talks to the remote (fetch, push,
/// merge, proposal listings; they take the remote's lock in turn anyway).
///
/// Why not the blocking pool: libgit2's working memory for these grows with the number of
/// refs the remote advertises (a push walks every one of them). Spread over the pool's
/// threads, each thread's glibc arena grew to that peak and kept it: under the Git load
/// run cupd's RSS rose ≈ 20 MiB/min as proposal branches accumulated (docs/RELIABILITY.md),
/// and `malloc_trim` after each push did not give it back (2 ms per call, live allocations
/// pin the arenas' pages). On one thread the peak is paid once.
#[derive(Debug, Clone)]
struct RemoteThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl RemoteThread {
    /// Starts the thread; it ends when the last sender (the `GitSource`) is dropped.
    fn start() -> std::io::Result<RemoteThread> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("cupd-git-remote".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })?;
        Ok(RemoteThread { jobs })
    }

    /// Runs `work` on the thread and waits (asynchronously) for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic in libgit2's bindings must not take the thread (and every later
            // write) down with it: it becomes this request's 500.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = reply.send(outcome);
        });
        let gone = || ApiError::internal("the git remote thread has stopped");
        self.jobs.send(job).map_err(|_| gone())?;
        match result.await.map_err(|_| gone())? {
            Ok(outcome) => outcome.map_err(api_error),
            Err(_) => Err(ApiError::internal(
                "the git operation panicked; see the log",
            )),
        }
    }
}

async fn run<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("git worker failed: {e}")))?
        .map_err(api_error)
}

/// A Git failure as an API error (the message names the cause, e.g. the remote's refusal).
pub fn api_error(error: GitError) -> ApiError {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::BadRequest => ApiError::bad_request(message),
        ErrorKind::NotFound => ApiError::not_found(message),
        ErrorKind::Conflict => ApiError::new(axum::http::StatusCode::CONFLICT, message),
        ErrorKind::Internal => ApiError::internal(message),
    }
}
