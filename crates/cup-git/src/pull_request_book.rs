//! What cupd knows about the pull requests of its proposals: opened by it, reported by a
//! forge's webhook, or looked up. `/proposals` shows them; the removal of proposal branches
//! uses when each one ended (merged or closed) to apply the retention.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::cache::lock;
use crate::{PullRequest, PullRequestState};

/// How many pull requests the book holds: a forge's webhook could otherwise grow it without
/// end. When full, the one that ended longest ago goes first, then the oldest recorded.
pub const MAX_PULL_REQUESTS: usize = 65_536;

/// The pull request of each proposal branch, as last heard of.
#[derive(Debug, Default)]
pub struct PullRequestBook {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    pull_request: PullRequest,
    recorded: SystemTime,
    /// When it was first seen merged or closed.
    ended: Option<SystemTime>,
}

impl PullRequestBook {
    /// Records `pull_request` under its head branch, replacing what was known.
    pub fn record(&self, pull_request: PullRequest) {
        self.record_at(pull_request, SystemTime::now());
    }

    pub(crate) fn record_at(&self, pull_request: PullRequest, now: SystemTime) {
        let mut entries = lock(&self.entries);
        let ended_before = entries
            .get(&pull_request.head)
            .and_then(|e| e.ended)
            .filter(|_| pull_request.state != PullRequestState::Open);
        let ended = match pull_request.state {
            PullRequestState::Open => None,
            _ => Some(ended_before.unwrap_or(now)),
        };
        if entries.len() >= MAX_PULL_REQUESTS && !entries.contains_key(&pull_request.head) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| (e.ended.is_none(), e.ended.unwrap_or(e.recorded)))
                .map(|(branch, _)| branch.clone());
            if let Some(branch) = oldest {
                entries.remove(&branch);
            }
        }
        entries.insert(
            pull_request.head.clone(),
            Entry {
                pull_request,
                recorded: now,
                ended,
            },
        );
    }

    /// The pull request whose head is `branch`, if one is known.
    pub fn get(&self, branch: &str) -> Option<PullRequest> {
        lock(&self.entries)
            .get(branch)
            .map(|e| e.pull_request.clone())
    }

    /// The pull request whose head is `branch` and when it was last recorded, if one is known.
    pub fn get_recorded(&self, branch: &str) -> Option<(PullRequest, SystemTime)> {
        lock(&self.entries)
            .get(branch)
            .map(|e| (e.pull_request.clone(), e.recorded))
    }

    /// Branches whose pull request ended (merged or closed) at or before `cutoff`.
    pub fn ended_by(&self, cutoff: SystemTime) -> Vec<String> {
        let mut branches: Vec<String> = lock(&self.entries)
            .iter()
            .filter(|(_, e)| e.ended.is_some_and(|t| t <= cutoff))
            .map(|(branch, _)| branch.clone())
            .collect();
        branches.sort();
        branches
    }

    /// Forgets `branch` (its branch is gone).
    pub fn forget(&self, branch: &str) {
        lock(&self.entries).remove(branch);
    }

    /// How many pull requests are known.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pr(head: &str, state: PullRequestState) -> PullRequest {
        PullRequest {
            number: 1,
            url: format!("https://forge.example/{head}"),
            state,
            head: head.to_owned(),
        }
    }

    #[test]
    fn an_ended_pull_request_keeps_the_time_it_first_ended() {
        let book = PullRequestBook::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        book.record_at(pr("a", PullRequestState::Open), t0);
        assert!(book.ended_by(t0 + Duration::from_secs(10)).is_empty());
        book.record_at(
            pr("a", PullRequestState::Closed),
            t0 + Duration::from_secs(5),
        );
        // Heard of again later: still ended at t0 + 5.
        book.record_at(
            pr("a", PullRequestState::Closed),
            t0 + Duration::from_secs(50),
        );
        assert_eq!(book.ended_by(t0 + Duration::from_secs(5)), vec!["a"]);
        assert!(book.ended_by(t0 + Duration::from_secs(4)).is_empty());
        // Reopened: no longer ended.
        book.record_at(
            pr("a", PullRequestState::Open),
            t0 + Duration::from_secs(60),
        );
        assert!(book.ended_by(t0 + Duration::from_secs(100)).is_empty());
        book.forget("a");
        assert!(book.get("a").is_none());
    }

    #[test]
    fn a_full_book_drops_what_ended_longest_ago_first() {
        let book = PullRequestBook::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for i in 0..MAX_PULL_REQUESTS {
            let state = if i == 7 {
                PullRequestState::Merged
            } else {
                PullRequestState::Open
            };
            book.record_at(pr(&format!("b{i}"), state), t0);
        }
        book.record_at(pr("new", PullRequestState::Open), t0);
        assert_eq!(book.len(), MAX_PULL_REQUESTS);
        assert!(book.get("b7").is_none());
        assert!(book.get("new").is_some());
        assert!(book.get("b8").is_some());
    }
}
