//! cupd's Git plumbing, on libgit2 through `git2`.
//!
//! ```text
//! <cache>/<name>-<hash>.git     bare clone of the remote: refs/remotes/origin/*, refs/tags/*
//!          ├── cup-snapshots/<commit>/   read-only view of one commit's tree (made once,
//!          │                             temp dir + rename, so readers never see half a tree;
//!          │                             leased while read, the least recently used pruned)
//!          └── cup-work/cup-proposal-*   one fresh checkout per write, removed when it ends
//! ```
//!
//! * Everything made there is owner-only, set explicitly whatever the umask: the cache
//!   root, the bare cache, work and snapshot directories 0700, snapshot and checkout files
//!   0600 (0700 when executable). They are copies of the remote's files, and the cache of
//!   compiled code is private too; an existing root open to others is tightened at open.
//! * Reads never check out the cache: a revision's tree is materialised once per commit
//!   into a snapshot directory, because wasm controllers need a real directory to mount.
//! * A commit id names a commit only if a branch or tag of the remote (as of the last fetch)
//!   reaches it, with 7 to 40 hex digits: the cache keeps objects the remote dropped, which
//!   are neither served nor used as write bases, and their snapshots go after a fetch.
//! * A write materialises the base tree into a temp dir, lets the caller change it, builds
//!   a tree from the result with the object database (no index, no worktree state), and if
//!   it differs from the base commits it and pushes it as `cup/proposal/<ULID>`. The local
//!   ref used as the push source is not a branch and is removed whatever the outcome.
//!   The tree is built within [`WriteLimits`] (file and total sizes, entries, depth), from
//!   metadata before any file is read, so a controller's sparse or runaway files are
//!   refused rather than stored and pushed (`tree.rs`).
//! * Writes are serialised per repository ([`GitRepo::propose`], [`GitRepo::propose_all`]
//!   and [`GitRepo::merge`] take one lock); fetches and pushes share another, so ref
//!   updates never race. [`GitRepo::propose_all`] commits several writes one by one and
//!   pushes all their branches at once: a push costs an advertisement of every ref on the
//!   remote, which queued writes then share.
//! * Remote URLs are parsed, never split by hand (`remote_url.rs`); one that does not parse is
//!   refused and never shown, as any part of it may be a password.
//! * HTTP(S) credentials come from the URL's userinfo (`https://user:token@host/...`) or a
//!   git-credential-store file (`credentials.rs`); SSH remotes authenticate through the
//!   ssh-agent after their host key is checked against known_hosts (`ssh.rs`). Secrets are
//!   never written to the cache's config (the remote is anonymous) nor logged.
//! * After a proposal branch is pushed, a [`PullRequests`] implementation is told about it
//!   and may open a pull request for it (`scm.rs`; the forge clients are in `cup-scm`).
//! * Only refs that name a commit are kept: a tag (or branch) of a blob or a tree is dropped
//!   after the fetch that brought it, because libgit2's local transport (path and `file://`
//!   remotes) fails every fetch that has something to download while the cache holds one.
//! * A full fetch is shared: callers that asked for one before it started use it (and its
//!   outcome) instead of starting another ([`GitRepo::fetch_since`]).
//! * Snapshots are leased to readers ([`Snapshot`]); beyond the [`SnapshotRetention`]
//!   bounds the least recently used unleased ones are removed (`snapshot.rs`). The cache is
//!   packed by running `git gc --auto` under the remote lock ([`GitRepo::collect_garbage`]).
//! * After each good fetch the remote's default branch and the time are recorded in the
//!   cache (`cup-remote`), so that [`GitRepo::open`] with an unreachable remote serves the
//!   last fetched state instead of failing ([`GitRepo::fetch_status`] says since when).
//! * Branches of ended proposals (merged into another branch, or whose pull request was
//!   merged or closed) are deleted on the remote after a retention
//!   ([`GitRepo::remove_ended_proposals`], `ended.rs`), only where the remote still has them
//!   at the commit the cache saw.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

mod cache;
mod checkout;
mod credentials;
mod ended;
mod error;
mod fetch;
mod gc;
mod proposals;
mod propose;
mod pull_request_book;
mod reachable;
mod remote;
mod remote_url;
mod revision;
mod scm;
mod snapshot;
mod ssh;
mod tree;

pub use cache::GitRepo;
pub use checkout::{SnapshotLimitExceeded, SnapshotLimits};
pub use credentials::{CredentialOrigin, CredentialStore, CredentialsError};
pub use ended::{MAX_REMOVALS_PER_RUN, RemovedProposals};
pub use error::{AuthProblem, GitError};
pub use fetch::{FetchStatus, FetchTicket};
pub use gc::{Collected, GC_TIMEOUT, ObjectCounts};
pub use proposals::{
    MAX_PULL_REQUEST_LOOKUPS, MergeStrategy, Merged, PULL_REQUEST_LOOKUP_INTERVAL, ProposalDetail,
    ProposalPage, ProposalQuery, ProposalSummary,
};
pub use propose::{Author, ChangedFile, PROPOSAL_PREFIX, Proposal, ProposedWrite};
pub use pull_request_book::{MAX_PULL_REQUESTS, PullRequestBook};
pub use reachable::MAX_REACHABLE_COMMITS;
pub use remote::{RemoteOptions, set_network_timeouts};
pub use remote_url::{UNPARSABLE, UrlError, redact};
pub use revision::Resolved;
pub use scm::{
    BranchesOnly, MergedPullRequest, NewProposal, PullRequest, PullRequestState, PullRequests,
    ScmError,
};
pub use snapshot::{Snapshot, SnapshotRetention, SnapshotUsage};
pub use ssh::{AgentProblem, HostKeyError};
pub use tree::{WriteLimit, WriteLimitExceeded, WriteLimits};

#[cfg(test)]
mod tests;
