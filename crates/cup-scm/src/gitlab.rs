//! GitLab's API (v4): merge requests, reviewers by user id, merges. Every call is an operation
//! of GitLab's published API description (`tests/contract/gitlab/`), checked there.

use cup_git::{
    MergedPullRequest, NewProposal, PullRequest, PullRequestState, PullRequests, ScmError,
};
use serde::Deserialize;
use serde_json::json;

use crate::http::{Api, ApiError, AuthScheme, HttpLimits, Method, encode_segment};
use crate::{RemoteRepository, Settings, Token, base_of, scm_error, title_of};

const NAME: &str = "gitlab";

/// Merge requests on GitLab.
#[derive(Debug)]
pub struct GitLab {
    api: Api,
    /// `group/subgroup/project`, percent-encoded as one path segment.
    project: String,
    settings: Settings,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    web_url: String,
    state: String,
    source_branch: String,
    merge_commit_sha: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    username: String,
}

impl MergeRequest {
    fn to_pull_request(&self) -> PullRequest {
        let state = match self.state.as_str() {
            "merged" => PullRequestState::Merged,
            "closed" => PullRequestState::Closed,
            // `opened`, and `locked` (being merged).
            _ => PullRequestState::Open,
        };
        PullRequest {
            number: self.iid,
            url: self.web_url.clone(),
            state,
            head: self.source_branch.clone(),
        }
    }
}

impl GitLab {
    pub(crate) fn new(
        base: &str,
        repository: &RemoteRepository,
        token: Option<Token>,
        settings: Settings,
        limits: HttpLimits,
    ) -> GitLab {
        GitLab {
            api: Api::new(
                NAME,
                base,
                token,
                AuthScheme::PrivateToken,
                &[("accept", "application/json")],
                limits,
            ),
            project: encode_segment(&repository.full_path()),
            settings,
        }
    }

    /// The API base URL in use.
    pub fn api_base(&self) -> &str {
        self.api.base()
    }

    fn project_path(&self) -> String {
        format!("/projects/{}", self.project)
    }

    fn default_branch(&self) -> Result<String, ApiError> {
        let project: Project = self
            .api
            .json(Method::Get, &self.project_path(), &[], None)?;
        project.default_branch.ok_or_else(|| ApiError::Decode {
            method: "GET",
            path: self.project_path(),
            reason: "the project has no default branch".to_owned(),
        })
    }

    fn find_merge_request(&self, branch: &str) -> Result<Option<MergeRequest>, ApiError> {
        let requests: Vec<MergeRequest> = self.api.json(
            Method::Get,
            &format!("{}/merge_requests", self.project_path()),
            &[
                ("source_branch", branch),
                ("state", "all"),
                ("order_by", "created_at"),
                ("sort", "desc"),
                ("per_page", "10"),
            ],
            None,
        )?;
        Ok(requests.into_iter().find(|m| m.source_branch == branch))
    }

    /// The ids of the configured reviewers among the project's users. The project's user list
    /// (searched by name, matched exactly) is the documented lookup — and a reviewer must be
    /// able to see the project anyway.
    fn reviewer_ids(&self) -> Vec<u64> {
        let mut ids = Vec::new();
        let path = format!("{}/users", self.project_path());
        for name in &self.settings.reviewers {
            match self.api.json::<Vec<User>>(
                Method::Get,
                &path,
                &[("search", name), ("per_page", "100")],
                None,
            ) {
                Ok(users) => match users.into_iter().find(|u| u.username == *name) {
                    Some(user) => ids.push(user.id),
                    None => {
                        tracing::warn!(scm = NAME, reviewer = %name, "no such user in the project; not requested")
                    }
                },
                Err(e) => {
                    tracing::warn!(scm = NAME, reviewer = %name, error = %e, "looking up a reviewer failed")
                }
            }
        }
        ids
    }
}

impl PullRequests for GitLab {
    fn name(&self) -> &str {
        NAME
    }

    fn proposed(&self, proposal: &NewProposal<'_>) -> Result<Option<PullRequest>, ScmError> {
        let target = base_of(NAME, proposal, || self.default_branch())?;
        let mut body = json!({
            "source_branch": proposal.branch,
            "target_branch": target,
            "title": title_of(proposal.message),
            "description": proposal.message,
        });
        if !self.settings.labels.is_empty() {
            // An array of names, as the description types it (GitLab also takes one
            // comma-separated string).
            body["labels"] = json!(self.settings.labels);
        }
        let reviewers = self.reviewer_ids();
        if !reviewers.is_empty() {
            body["reviewer_ids"] = json!(reviewers);
        }
        let created: Result<MergeRequest, ApiError> = self.api.json(
            Method::Post,
            &format!("{}/merge_requests", self.project_path()),
            &[],
            Some(&body),
        );
        match created {
            Ok(request) => Ok(Some(request.to_pull_request())),
            // A retried create whose first attempt went through: 409, one is open already.
            Err(e) if e.status() == Some(409) => {
                match self.find_merge_request(proposal.branch).ok().flatten() {
                    Some(request) if request.state == "opened" => {
                        Ok(Some(request.to_pull_request()))
                    }
                    _ => Err(scm_error(NAME, "creating the merge request", e)),
                }
            }
            Err(e) => Err(scm_error(NAME, "creating the merge request", e)),
        }
    }

    fn find(&self, branch: &str) -> Result<Option<PullRequest>, ScmError> {
        self.find_merge_request(branch)
            .map(|m| m.as_ref().map(MergeRequest::to_pull_request))
            .map_err(|e| scm_error(NAME, "finding the merge request", e))
    }

    fn merge(&self, pull_request: &PullRequest) -> Result<MergedPullRequest, ScmError> {
        let path = format!(
            "{}/merge_requests/{}/merge",
            self.project_path(),
            pull_request.number
        );
        // The description requires a body; an empty one merges with the project's method.
        let merged: MergeRequest = self
            .api
            .json(Method::Put, &path, &[], Some(&json!({})))
            .map_err(|e| scm_error(NAME, "merging the merge request", e))?;
        Ok(MergedPullRequest {
            commit: merged.merge_commit_sha,
        })
    }
}
