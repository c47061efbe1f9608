//! The Git source (`-api-source git`): reads from per-commit snapshots of a revision,
//! writes as proposal branches pushed to the remote (see `cup_git`). This module adds the
//! async side: every call that talks to the remote runs on one thread, where writes that
//! queue up while a push is on the wire go out together in the next push; reads run on the
//! blocking pool; a background task fetches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::time::SystemTime;

use axum::http::StatusCode;
use cup_git::{
    AuthProblem, Author, CredentialStore, GitError, GitRepo, HostKeyError, MergeStrategy, Merged,
    Proposal, ProposalDetail, ProposalPage, ProposalQuery, ProposedWrite, PullRequests,
    RemoteOptions, Snapshot, SnapshotLimits, SnapshotRetention, SnapshotUsage, WriteLimits,
};

use crate::error::ApiError;
use crate::hooks::{WebhookSecret, Webhooks};

/// How to open the Git source.
#[derive(Clone)]
pub struct GitOptions {
    /// Remote URL: a path, `file://`, `git://`, `http(s)://` (credentials in the URL or
    /// `credentials`), `ssh://` or scp-like `user@host:path` (through the ssh-agent).
    pub url: String,
    /// Parent directory of the bare cache.
    pub cache: PathBuf,
    /// Name and email of the commits cupd makes (proposals and merges).
    pub author: Author,
    /// Background fetch period; zero disables it.
    pub fetch_interval: Duration,
    /// A git-credential-store file for HTTP(S) remotes (read at startup).
    pub credentials: Option<PathBuf>,
    /// known_hosts for SSH remotes; `None` = `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Told about every pushed proposal: `cup_git::BranchesOnly` opens nothing, the
    /// `cup-scm` clients open pull requests on a forge (cupd's `-api-git-scm`).
    pub pull_requests: Arc<dyn PullRequests>,
    /// What one write may put in its tree (a controller's checkout is read within these).
    pub write_limits: WriteLimits,
    /// What a commit's tree may hold to be read or written on.
    pub snapshot_limits: SnapshotLimits,
    /// How many snapshots (and bytes of them) are kept once no read uses them.
    pub snapshot_retention: SnapshotRetention,
    /// How often `git gc --auto` runs on the cache; zero disables it.
    pub gc_interval: Duration,
    /// How long the branch of an ended proposal (merged, or its pull request merged or
    /// closed) stays on the remote once that is seen; `None` keeps them for good.
    pub proposal_retention: Option<Duration>,
    /// The secret of the forge webhooks (`/hooks/*`); `None` disables them.
    pub webhook_secret: Option<WebhookSecret>,
}

impl std::fmt::Debug for GitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL with its credentials.
        f.debug_struct("GitOptions")
            .field("url", &cup_git::redact(&self.url))
            .field("cache", &self.cache)
            .field("author", &self.author)
            .field("fetch_interval", &self.fetch_interval)
            .field("credentials", &self.credentials)
            .field("known_hosts", &self.known_hosts)
            .field("pull_requests", &self.pull_requests.name())
            .field("write_limits", &self.write_limits)
            .field("snapshot_limits", &self.snapshot_limits)
            .field("snapshot_retention", &self.snapshot_retention)
            .field("gc_interval", &self.gc_interval)
            .field("proposal_retention", &self.proposal_retention)
            .field("webhook_secret", &self.webhook_secret)
            .finish()
    }
}

/// What the fetches of the remote did lately, as `/status` shows them.
#[derive(Debug, Clone, Default)]
pub struct FetchReport {
    /// When a fetch last succeeded: in this run, or in an earlier one as the cache recorded.
    pub last_success: Option<SystemTime>,
    /// Why the last fetch failed, with what to do about it; `None` when it succeeded.
    pub error: Option<String>,
    /// When the last fetch failed.
    pub error_at: Option<SystemTime>,
}

/// What the last garbage collection of the cache did, as `/status` shows it.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// When it last ran (or found the git program missing).
    pub at: Option<SystemTime>,
    /// Its outcome: `ok`, or why it failed (the git program missing included).
    pub outcome: Option<String>,
    /// Packs and loose objects after it ran.
    pub after: Option<cup_git::ObjectCounts>,
    /// How long it held the remote lock (fetches, pushes and merges wait meanwhile).
    pub took: Option<Duration>,
}

/// An opened Git source.
#[derive(Debug)]
pub struct GitSource {
    repo: Arc<GitRepo>,
    remote_thread: RemoteThread,
    gc: Arc<std::sync::Mutex<GcReport>>,
    removals: Removals,
    /// Wakes the background fetcher early (a webhook said the remote changed). A `Notify`
    /// holds at most one wake-up: a burst of them while a fetch runs queues one more fetch.
    fetch_nudge: Arc<tokio::sync::Notify>,
    /// The forge webhooks, when a secret is configured.
    webhooks: Option<Webhooks>,
}

/// When the branches of ended proposals are deleted: after each periodic fetch, after each
/// merge, and after a proposal call's fetch when no run happened for [`REMOVAL_GAP`].
#[derive(Debug, Clone)]
struct Removals {
    /// `None`: never.
    retention: Option<Duration>,
    /// A run is queued on the remote thread.
    queued: Arc<std::sync::atomic::AtomicBool>,
    /// When the last run ended.
    last: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// The least time between two runs queued after proposal calls (each run walks the history
/// of every proposal branch).
const REMOVAL_GAP: Duration = Duration::from_secs(5);

impl Removals {
    /// Deletes the branches of ended proposals whose retention has passed (on the remote
    /// thread). A failure is logged: the next run tries again.
    fn run(&self, repo: &GitRepo) {
        let Some(retention) = self.retention else {
            return;
        };
        if let Err(error) = repo.remove_ended_proposals(retention) {
            tracing::warn!(
                error = with_remedy(&error),
                "deleting the branches of ended proposals failed"
            );
        }
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    /// Queues a run behind the jobs waiting for the remote thread, unless one is queued or
    /// ran within [`REMOVAL_GAP`].
    fn queue(&self, repo: &Arc<GitRepo>, remote_thread: &RemoteThread) {
        use std::sync::atomic::Ordering;
        if self.retention.is_none() {
            return;
        }
        let recent = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < REMOVAL_GAP);
        if recent || self.queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let (removals, repo) = (self.clone(), repo.clone());
        let job = RemoteJob::Call(Box::new(move || {
            removals.queued.store(false, Ordering::SeqCst);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| removals.run(&repo)));
        }));
        if remote_thread.send(job).is_err() {
            self.queued.store(false, Ordering::SeqCst);
        }
    }
}

impl GitSource {
    /// Clones or updates the cache (blocking: called once at startup). A remote that cannot
    /// be fetched is an error only when the cache holds nothing from an earlier run.
    pub fn open(options: &GitOptions) -> Result<GitSource, GitError> {
        let credentials = match &options.credentials {
            Some(path) => Some(CredentialStore::load(path)?),
            None => None,
        };
        let remote = RemoteOptions {
            credentials,
            known_hosts: options.known_hosts.clone(),
            pull_requests: options.pull_requests.clone(),
            write_limits: options.write_limits,
            snapshot_limits: options.snapshot_limits,
            snapshot_retention: options.snapshot_retention,
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
        let repo = Arc::new(repo);
        Ok(GitSource {
            remote_thread: RemoteThread::start(repo.clone(), options.cache.clone()).map_err(
                |source| GitError::Io {
                    what: "starting the remote thread for the git cache",
                    path: options.cache.clone(),
                    source,
                },
            )?,
            repo,
            gc: Arc::default(),
            removals: Removals {
                retention: options.proposal_retention,
                queued: Arc::default(),
                last: Arc::default(),
            },
            fetch_nudge: Arc::new(tokio::sync::Notify::new()),
            webhooks: options.webhook_secret.clone().map(Webhooks::new),
        })
    }

    /// The forge webhooks, when they are enabled.
    pub fn webhooks(&self) -> Option<&Webhooks> {
        self.webhooks.as_ref()
    }

    /// What is known of the pull requests of proposals.
    pub fn pull_request_book(&self) -> &cup_git::PullRequestBook {
        self.repo.pull_request_book()
    }

    /// Asks the background fetcher to fetch now, without waiting for it: wake-ups that
    /// arrive while a fetch runs are coalesced into one more fetch.
    pub fn nudge_fetch(&self) {
        self.fetch_nudge.notify_one();
    }

    /// The remote URL without credentials.
    pub fn url(&self) -> &str {
        self.repo.redacted_url()
    }

    /// The remote's default branch as of the last fetch.
    pub fn default_branch(&self) -> Option<String> {
        self.repo.default_branch()
    }

    /// The last good fetch and the last failure, paths under the cache root hidden.
    pub fn fetch_status(&self) -> FetchReport {
        let status = self.repo.fetch_status();
        FetchReport {
            last_success: status.last_success,
            error: status
                .error
                .map(|e| hide_cache(&with_remedy(&e), &self.remote_thread.cache)),
            error_at: status.error_at,
        }
    }

    /// Starts the background fetch (needs a tokio runtime): every `interval` (zero: never
    /// on a timer) and whenever [`GitSource::nudge_fetch`] asks. Not started when neither
    /// can happen.
    pub fn spawn_fetcher(&self, interval: Duration) {
        if interval.is_zero() && self.webhooks.is_none() {
            return;
        }
        let repo = self.repo.clone();
        let remote_thread = self.remote_thread.clone();
        let removals = self.removals.clone();
        let nudge = self.fetch_nudge.clone();
        tokio::spawn(async move {
            let mut ticker = (!interval.is_zero()).then(|| {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker
            });
            if let Some(ticker) = &mut ticker {
                ticker.tick().await; // the first tick is immediate; open() just fetched
            }
            loop {
                let trigger = match &mut ticker {
                    Some(ticker) => tokio::select! {
                        _ = ticker.tick() => "periodic",
                        () = nudge.notified() => "webhook",
                    },
                    None => {
                        nudge.notified().await;
                        "webhook"
                    }
                };
                let repo = repo.clone();
                let removals = removals.clone();
                let fetched = remote_thread
                    .run(move || {
                        repo.fetch()?;
                        removals.run(&repo);
                        Ok(())
                    })
                    .await;
                match fetched {
                    Ok(()) => tracing::debug!(trigger, "fetched"),
                    Err(error) => {
                        tracing::warn!(error = error.message, trigger, "background fetch failed")
                    }
                }
            }
        });
    }

    /// What the snapshots on disk hold now.
    pub fn snapshot_usage(&self) -> SnapshotUsage {
        self.repo.snapshot_usage()
    }

    /// What the last garbage collection of the cache did, paths under the cache root hidden.
    pub fn gc_report(&self) -> GcReport {
        let mut report = self.gc.lock().unwrap_or_else(|e| e.into_inner()).clone();
        report.outcome = report
            .outcome
            .map(|o| hide_cache(&o, &self.remote_thread.cache));
        report
    }

    /// Starts the periodic `git gc --auto` of the cache on the remote thread (needs a tokio
    /// runtime). Without a git program it is said once (log and `/status`) and not tried
    /// again.
    pub fn spawn_gc(&self, interval: Duration) {
        if interval.is_zero() {
            return;
        }
        let repo = self.repo.clone();
        let remote_thread = self.remote_thread.clone();
        let report = self.gc.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; nothing to pack yet
            loop {
                ticker.tick().await;
                let repo = repo.clone();
                let outcome = remote_thread
                    .run_raw(move || repo.collect_garbage(Path::new("git")))
                    .await;
                let missing = matches!(outcome, Some(Err(GitError::GcProgramMissing { .. })));
                let mut now = report.lock().unwrap_or_else(|e| e.into_inner());
                now.at = Some(SystemTime::now());
                match outcome {
                    Some(Ok(collected)) => {
                        if collected.after != collected.before {
                            tracing::info!(
                                loose_before = collected.before.loose,
                                loose_after = collected.after.loose,
                                packs_before = collected.before.packs,
                                packs_after = collected.after.packs,
                                took_ms = collected.took.as_secs_f64() * 1000.0,
                                "git cache packed"
                            );
                        }
                        now.outcome = Some("ok".into());
                        now.after = Some(collected.after);
                        now.took = Some(collected.took);
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "garbage-collecting the git cache failed");
                        now.outcome = Some(error.to_string());
                    }
                    None => {
                        now.outcome = Some(
                            "did not run: the remote thread was busy or stopped, or it panicked"
                                .into(),
                        )
                    }
                }
                if missing {
                    return;
                }
            }
        });
    }

    /// The snapshot of `revision` (default branch when `None`), leased for as long as the
    /// returned value lives.
    pub async fn view(&self, revision: Option<&str>) -> Result<Snapshot, ApiError> {
        let repo = self.repo.clone();
        let revision = revision.map(str::to_owned);
        let cache = self.remote_thread.cache.clone();
        run(&cache, move || repo.view(revision.as_deref())).await
    }

    /// Runs `change` on a fresh checkout and proposes the result (see `GitRepo::propose`;
    /// writes queued together share one push, see `GitRepo::propose_all`).
    pub async fn propose<T, F>(
        &self,
        revision: Option<&str>,
        message: String,
        author: Option<Author>,
        change: F,
    ) -> Result<(T, Option<Proposal>), ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> (T, bool) + Send + 'static,
    {
        let (outcome_tx, outcome) = std::sync::mpsc::sync_channel(1);
        let change = Box::new(move |dir: &Path| {
            let (value, keep) = change(dir);
            let _ = outcome_tx.send(value);
            keep
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.remote_thread.send(RemoteJob::Write(QueuedWrite {
            revision: revision.map(str::to_owned),
            message,
            author,
            change,
            reply,
        }))?;
        let proposal = answer.await.map_err(|_| stopped())??;
        let value = outcome
            .try_recv()
            .map_err(|_| ApiError::internal("the write's change did not run"))?;
        Ok((value, proposal))
    }

    /// One page of open proposals: at most `limit`, with ids after `after`. The fetch
    /// before it is shared with every listing that waited for the same turn (the ticket is
    /// taken now, as the request arrives; see `GitRepo::fetch_since`).
    pub async fn proposals(
        &self,
        base: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ProposalPage, ApiError> {
        let repo = self.repo.clone();
        let ticket = repo.fetch_ticket();
        let (base, after) = (base.map(str::to_owned), after.map(str::to_owned));
        let page = self
            .remote_thread
            .run(move || {
                let query = ProposalQuery {
                    revision: base.as_deref(),
                    after: after.as_deref(),
                    limit,
                };
                repo.proposals_since(ticket, &query)
            })
            .await;
        self.removals.queue(&self.repo, &self.remote_thread);
        page
    }

    pub async fn proposal(&self, id: &str, base: Option<&str>) -> Result<ProposalDetail, ApiError> {
        let repo = self.repo.clone();
        let ticket = repo.fetch_ticket();
        let (id, base) = (id.to_owned(), base.map(str::to_owned));
        let detail = self
            .remote_thread
            .run(move || repo.proposal_since(ticket, &id, base.as_deref()))
            .await;
        self.removals.queue(&self.repo, &self.remote_thread);
        detail
    }

    pub async fn merge(
        &self,
        id: &str,
        base: Option<&str>,
        strategy: MergeStrategy,
    ) -> Result<Merged, ApiError> {
        let repo = self.repo.clone();
        let removals = self.removals.clone();
        let (id, base) = (id.to_owned(), base.map(str::to_owned));
        self.remote_thread
            .run(move || {
                let merged = repo.merge(&id, base.as_deref(), strategy)?;
                // With no retention the merged branch goes before the answer; otherwise
                // this records when it was seen merged.
                removals.run(&repo);
                Ok(merged)
            })
            .await
    }
}

/// Work for the [`RemoteThread`].
enum RemoteJob {
    /// Any call; runs alone.
    Call(Box<dyn FnOnce() + Send>),
    /// A write; runs with the writes queued behind it (one push for all).
    Write(QueuedWrite),
}

/// A write waiting for the remote thread.
struct QueuedWrite {
    revision: Option<String>,
    message: String,
    /// Who asked, as the commit's author (`None`: cupd's own author).
    author: Option<Author>,
    change: Box<dyn FnOnce(&Path) -> bool + Send>,
    reply: tokio::sync::oneshot::Sender<Result<Option<Proposal>, ApiError>>,
}

/// At most this many writes share a push, so the first of them waits for at most this
/// many controller runs before its answer.
const MAX_WRITES_PER_PUSH: usize = 32;

/// The one thread that runs every libgit2 call that talks to the remote (fetch, push,
/// merge, proposal listings; they take the remote's lock in turn anyway).
///
/// Why not the blocking pool: libgit2's working memory for these grows with the number of
/// refs the remote advertises (a push walks every one of them). Spread over the pool's
/// threads, each thread's glibc arena grew to that peak and kept it: under the Git load
/// run cupd's RSS rose ≈ 20 MiB/min as proposal branches accumulated (docs/RELIABILITY.md),
/// and `malloc_trim` after each push did not give it back (2 ms per call, live allocations
/// pin the arenas' pages). On one thread the peak is paid once.
///
/// Writes are taken in batches: every write already queued when the thread picks one up
/// goes with it (up to [`MAX_WRITES_PER_PUSH`]), so the cost of a push, which grows with the
/// remote's refs, is shared by the writes that waited for the previous one.
///
/// A job whose client has gone away by the time the thread takes it up is dropped, not run:
/// a write abandoned while it waited is never pushed (one taken up before its client left
/// is pushed, and listed by `/proposals`). At most [`MAX_QUEUED_JOBS`] wait; more are a 503.
#[derive(Debug, Clone)]
struct RemoteThread {
    jobs: std::sync::mpsc::Sender<RemoteJob>,
    /// Jobs sent and not yet taken up.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// The cache root (`--git-cache`), kept out of API errors by [`api_error`].
    cache: Arc<Path>,
}

/// Jobs that may wait for the remote thread; a stalled remote must not let them pile up
/// without bound.
const MAX_QUEUED_JOBS: usize = 512;

impl RemoteThread {
    /// Starts the thread; it ends when the last sender (the `GitSource`) is dropped.
    fn start(repo: Arc<GitRepo>, cache: PathBuf) -> std::io::Result<RemoteThread> {
        let (jobs, queue) = std::sync::mpsc::channel::<RemoteJob>();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let taken = queued.clone();
        let cache: Arc<Path> = cache.into();
        let thread_cache = cache.clone();
        std::thread::Builder::new()
            .name("cupd-git-remote".into())
            .spawn(move || serve_remote_jobs(&repo, &thread_cache, &queue, &taken))?;
        Ok(RemoteThread {
            jobs,
            queued,
            cache,
        })
    }

    fn send(&self, job: RemoteJob) -> Result<(), ApiError> {
        use std::sync::atomic::Ordering;
        if self.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED_JOBS {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::unavailable(format!(
                "{MAX_QUEUED_JOBS} requests are already waiting for the git remote; retry later"
            )));
        }
        self.jobs.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            stopped()
        })
    }

    /// Runs `work` on the thread and gives back its own result; `None` when the thread
    /// cannot take it (too many jobs queued, stopped) or it panicked.
    async fn run_raw<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
    ) -> Option<Result<T, GitError>> {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.send(RemoteJob::Call(Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = reply.send(outcome);
        })))
        .ok()?;
        result.await.ok()?.ok()
    }

    /// Runs `work` on the thread and waits (asynchronously) for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.send(RemoteJob::Call(Box::new(move || {
            // Nobody waits for the answer any more (the client went away).
            if reply.is_closed() {
                return;
            }
            // A panic in libgit2's bindings must not take the thread (and every later
            // write) down with it: it becomes this request's 500.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = reply.send(outcome);
        })))?;
        match result.await.map_err(|_| stopped())? {
            Ok(outcome) => outcome.map_err(|e| api_error(&self.cache, e)),
            Err(_) => Err(panicked()),
        }
    }
}

fn stopped() -> ApiError {
    ApiError::internal("the git remote thread has stopped")
}

fn panicked() -> ApiError {
    ApiError::internal("the git operation panicked; see the log")
}

/// The remote thread's loop: calls one by one, writes in batches of those queued.
fn serve_remote_jobs(
    repo: &GitRepo,
    cache: &Path,
    queue: &std::sync::mpsc::Receiver<RemoteJob>,
    queued: &std::sync::atomic::AtomicUsize,
) {
    let take = |job: RemoteJob| {
        queued.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        job
    };
    let mut next = queue.recv().ok().map(take);
    while let Some(job) = next.take() {
        match job {
            RemoteJob::Call(call) => call(),
            RemoteJob::Write(first) => {
                let mut batch = vec![first];
                while batch.len() < MAX_WRITES_PER_PUSH {
                    match queue.try_recv().map(take) {
                        Ok(RemoteJob::Write(write)) => batch.push(write),
                        // A call queued after these writes runs after them, in order.
                        Ok(call) => {
                            next = Some(call);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                propose_batch(repo, cache, batch);
            }
        }
        if next.is_none() {
            next = queue.recv().ok().map(take);
        }
    }
}

/// Proposes `batch` with one push and answers each write.
fn propose_batch(repo: &GitRepo, cache: &Path, batch: Vec<QueuedWrite>) {
    // A write whose client went away while it waited is not run, so never pushed.
    let batch: Vec<QueuedWrite> = batch.into_iter().filter(|w| !w.reply.is_closed()).collect();
    if batch.is_empty() {
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut texts = Vec::with_capacity(batch.len());
    let mut changes = Vec::with_capacity(batch.len());
    for write in batch {
        replies.push(write.reply);
        texts.push((write.revision, write.message, write.author));
        changes.push(write.change);
    }
    let answers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let writes = texts
            .iter()
            .zip(changes)
            .map(|((revision, message, author), change)| ProposedWrite {
                revision: revision.as_deref(),
                message,
                author: author.as_ref(),
                change,
            })
            .collect();
        repo.propose_all(writes)
    }));
    match answers {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer.map_err(|e| api_error(cache, e)));
            }
        }
        Err(_) => {
            for reply in replies {
                let _ = reply.send(Err(panicked()));
            }
        }
    }
}

async fn run<T: Send + 'static>(
    cache: &Path,
    work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("git worker failed: {e}")))?
        .map_err(|e| api_error(cache, e))
}

/// A Git failure as an API error (the message names the cause, e.g. the remote's refusal).
/// Host paths under the cache root `cache` (an I/O error's path, one libgit2 quotes) are
/// shown as `<git cache>`: a client learns nothing of the host's layout from an error. The
/// whole message goes to the log when something was hidden.
fn api_error(cache: &Path, error: GitError) -> ApiError {
    let full = with_remedy(&error);
    let message = hide_cache(&full, cache);
    if message != full {
        tracing::warn!(error = full, "git operation failed");
    }
    ApiError::new(status_of(&error), message)
}

/// The answer to a Git failure: the client's own mistakes (a malformed revision, a revision
/// or proposal that does not exist, a merge that conflicts) are 4xx; anything else, the
/// remote's refusals included, is the server's 500.
fn status_of(error: &GitError) -> StatusCode {
    match error {
        GitError::InvalidRevision { .. } => StatusCode::BAD_REQUEST,
        GitError::RevisionNotFound { .. }
        | GitError::NoDefaultBranch { .. }
        | GitError::ProposalNotFound(_) => StatusCode::NOT_FOUND,
        GitError::MergeConflict { .. } => StatusCode::CONFLICT,
        GitError::ScmUnavailable { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `error`'s message with, when there is one, the flag or query parameter that is the way
/// out: `cup-git` speaks of settings in its own terms and knows nothing of cupd's.
pub(crate) fn with_remedy(error: &GitError) -> String {
    match remedy(error) {
        Some(remedy) => format!("{error} ({remedy})"),
        None => error.to_string(),
    }
}

/// The cupd flag (or query parameter) that answers `error`, if one does.
fn remedy(error: &GitError) -> Option<&'static str> {
    match error {
        GitError::WriteLimit(over) => Some(crate::limit_flag(over.limit)),
        GitError::SnapshotLimit(over) => Some(crate::snapshot_limit_flag(over.limit)),
        GitError::NoDefaultBranch { .. } => Some("?revision=BRANCH"),
        GitError::Auth { problem, .. } => match &**problem {
            AuthProblem::NoCredentials { file: None } => Some("--api-git-credentials FILE"),
            AuthProblem::HostKey(HostKeyError::NoFile { .. }) => Some("--api-git-known-hosts FILE"),
            _ => None,
        },
        _ => None,
    }
}

/// `text` with the cache root (resolved, then as given) shown as `<git cache>` wherever it
/// leads a path.
fn hide_cache(text: &str, cache: &Path) -> String {
    let mut out = text.to_owned();
    let resolved = std::fs::canonicalize(cache).ok();
    // The resolved form first: it may contain the given one when that is relative.
    for root in resolved.as_deref().into_iter().chain([cache]) {
        let root = root.to_str().map(|r| r.trim_end_matches('/'));
        // `/` as the root would hide every path's separators, and nothing of the host.
        if let Some(root) = root.filter(|r| !r.is_empty()) {
            out = out.replace(&format!("{root}/"), "<git cache>/");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_show_no_path_under_the_cache_root() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let inside = cache.join("r.git/cup-snapshots/.tmp-x/d");
        let error = GitError::Io {
            what: "creating",
            path: inside.clone(),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        };
        let text = api_error(&cache, error).message;
        assert!(
            text.starts_with("creating <git cache>/r.git/cup-snapshots/.tmp-x/d:"),
            "{text}"
        );
        assert!(!text.contains(tmp.path().to_str().unwrap()), "{text}");
        // The root given with a trailing slash, or `/`, changes nothing else.
        assert_eq!(hide_cache("a/b: x", Path::new("/")), "a/b: x");
        let given = format!("{}/", cache.display());
        assert_eq!(
            hide_cache(&format!("{}: x", inside.display()), Path::new(&given)),
            "<git cache>/r.git/cup-snapshots/.tmp-x/d: x"
        );
    }

    /// The statuses `cup-git`'s error classes had when it classified them itself.
    #[test]
    fn git_failures_keep_their_statuses() {
        let cache = Path::new("/nonexistent-cache");
        let status = |error: GitError| api_error(cache, error).status;
        let url = || "file:///r".to_owned();
        assert_eq!(
            status(GitError::InvalidRevision {
                revision: "a..b".into(),
                why: "not a branch, tag or commit name",
            }),
            StatusCode::BAD_REQUEST
        );
        for not_found in [
            GitError::RevisionNotFound {
                revision: "x".into(),
                url: url(),
            },
            GitError::NoDefaultBranch {
                url: url(),
                why: "the remote has no HEAD".into(),
            },
            GitError::ProposalNotFound("x".into()),
        ] {
            assert_eq!(status(not_found), StatusCode::NOT_FOUND);
        }
        assert_eq!(
            status(GitError::MergeConflict {
                id: "x".into(),
                why: "conflicts".into(),
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(GitError::ScmUnavailable {
                id: "x".into(),
                scm: "gitea".into(),
                reason: "connection refused".into(),
            }),
            StatusCode::BAD_GATEWAY
        );
        for internal in [
            GitError::Push {
                url: url(),
                reason: "refused".into(),
            },
            GitError::BadTree {
                commit: "c".into(),
                entry: "d/dup".into(),
                reason: "two entries of one name".into(),
            },
            GitError::SharedPush("the remote hung up".into()),
        ] {
            assert_eq!(status(internal), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }

    /// `cup-git` names no cupd flag; where cupd reports its errors (an API answer, the
    /// startup error), the flag that is the way out is added.
    #[test]
    fn git_errors_name_the_flag_that_answers_them() {
        let auth = |problem| GitError::Auth {
            operation: "fetching from",
            url: "https://h/r".into(),
            problem: Box::new(problem),
        };
        let cases = [
            (
                auth(AuthProblem::NoCredentials { file: None }),
                "put USER:TOKEN@ in the URL or name a credentials file (--api-git-credentials FILE)",
            ),
            (
                auth(AuthProblem::HostKey(HostKeyError::NoFile {
                    host: "h".into(),
                })),
                "HOME is unset and no file is named (--api-git-known-hosts FILE)",
            ),
            (
                GitError::NoDefaultBranch {
                    url: "file:///r".into(),
                    why: "the remote has no HEAD".into(),
                },
                "name a branch (?revision=BRANCH)",
            ),
        ];
        for (error, expected) in cases {
            let plain = error.to_string();
            assert!(!plain.contains("--") && !plain.contains('?'), "{plain}");
            let api = api_error(Path::new("/nonexistent-cache"), error).message;
            assert!(api.ends_with(expected), "{api}");
        }
        let startup = crate::ServerError::Git(auth(AuthProblem::NoCredentials { file: None }));
        assert!(
            startup
                .to_string()
                .ends_with("(--api-git-credentials FILE)"),
            "{startup}"
        );
        // Credentials that match nothing in a named file need no flag.
        let named = auth(AuthProblem::NoCredentials {
            file: Some("/etc/creds".into()),
        });
        assert_eq!(with_remedy(&named), named.to_string());
    }
}
