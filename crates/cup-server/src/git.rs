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
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; open() just fetched
            loop {
                ticker.tick().await;
                let repo = repo.clone();
                match tokio::task::spawn_blocking(move || repo.fetch()).await {
                    Ok(Ok(())) => tracing::debug!("fetched"),
                    Ok(Err(error)) => tracing::warn!(%error, "periodic fetch failed"),
                    Err(error) => tracing::warn!(%error, "periodic fetch task failed"),
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
        run(move || repo.propose(revision.as_deref(), &message, change)).await
    }

    pub async fn proposals(&self, base: Option<&str>) -> Result<Vec<ProposalSummary>, ApiError> {
        let repo = self.repo.clone();
        let base = base.map(str::to_owned);
        run(move || repo.proposals(base.as_deref())).await
    }

    pub async fn proposal(&self, id: &str, base: Option<&str>) -> Result<ProposalDetail, ApiError> {
        let repo = self.repo.clone();
        let (id, base) = (id.to_owned(), base.map(str::to_owned));
        run(move || repo.proposal(&id, base.as_deref())).await
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
        run(move || repo.merge(&id, base.as_deref(), strategy)).await
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
