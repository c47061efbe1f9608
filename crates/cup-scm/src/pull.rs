//! A pull request as GitHub and Gitea describe one, in REST answers and webhook payloads
//! alike: the fields cupd uses.

use cup_git::{PullRequest, PullRequestState};
use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct Pull {
    pub(crate) number: u64,
    pub(crate) html_url: String,
    /// `open` or `closed`.
    pub(crate) state: String,
    /// Said by Gitea's answers and both forges' payloads; GitHub's list answers say only
    /// `merged_at`.
    #[serde(default)]
    pub(crate) merged: Option<bool>,
    #[serde(default)]
    pub(crate) merged_at: Option<String>,
    /// Gitea: the merge commit of a merged one.
    #[serde(default)]
    pub(crate) merge_commit_sha: Option<String>,
    pub(crate) head: Head,
}

#[derive(Deserialize)]
pub(crate) struct Head {
    #[serde(rename = "ref")]
    pub(crate) branch: String,
}

impl Pull {
    /// Open while `state` is `open`; a closed one is merged when either field says so.
    pub(crate) fn pull_request_state(&self) -> PullRequestState {
        let merged = self.merged.unwrap_or(false) || self.merged_at.is_some();
        match (self.state.as_str(), merged) {
            ("open", _) => PullRequestState::Open,
            (_, true) => PullRequestState::Merged,
            _ => PullRequestState::Closed,
        }
    }

    pub(crate) fn to_pull_request(&self) -> PullRequest {
        PullRequest {
            number: self.number,
            url: self.html_url.clone(),
            state: self.pull_request_state(),
            head: self.head.branch.clone(),
        }
    }
}
