//! GitHub's REST API (v3): pulls, issue labels, requested reviewers, merges.

use cup_git::{
    MergedPullRequest, NewProposal, PullRequest, PullRequestState, PullRequests, ScmError,
};
use serde::Deserialize;
use serde_json::json;

use crate::http::{Api, ApiError, AuthScheme, HttpLimits, Method};
use crate::pull::Pull;
use crate::repos_path::ReposPath;
use crate::{RemoteRepository, Settings, Token, base_of, scm_error, title_of};

const NAME: &str = "github";

/// Pull requests on GitHub or GitHub Enterprise.
#[derive(Debug)]
pub struct GitHub {
    api: Api,
    repo: ReposPath,
    settings: Settings,
}

#[derive(Deserialize)]
struct MergeResult {
    sha: Option<String>,
    merged: bool,
    #[serde(default)]
    message: String,
}

impl GitHub {
    pub(crate) fn new(
        base: &str,
        repository: &RemoteRepository,
        token: Option<Token>,
        settings: Settings,
        limits: HttpLimits,
    ) -> GitHub {
        GitHub {
            api: Api::new(
                NAME,
                base,
                token,
                AuthScheme::Bearer,
                &[
                    ("accept", "application/vnd.github+json"),
                    ("x-github-api-version", "2022-11-28"),
                ],
                limits,
            ),
            repo: ReposPath::new(repository),
            settings,
        }
    }

    /// The API base URL in use.
    pub fn api_base(&self) -> &str {
        self.api.base()
    }

    fn find_pull(&self, branch: &str) -> Result<Option<PullRequest>, ApiError> {
        let head = format!("{}:{branch}", self.repo.owner);
        let pulls: Vec<Pull> = self.api.json(
            Method::Get,
            &format!("{}/pulls", self.repo.path()),
            &[
                ("head", &head),
                ("state", "all"),
                ("sort", "created"),
                ("direction", "desc"),
                ("per_page", "10"),
            ],
            None,
        )?;
        Ok(pulls
            .into_iter()
            .find(|p| p.head.branch == branch)
            .map(|pull| pull.to_pull_request()))
    }

    fn decorate(&self, number: u64) {
        if !self.settings.labels.is_empty() {
            let path = format!("{}/issues/{number}/labels", self.repo.path());
            let body = json!({ "labels": self.settings.labels });
            if let Err(e) = self.api.call(Method::Post, &path, &[], Some(&body)) {
                tracing::warn!(scm = NAME, pull_request = number, error = %e, "adding labels failed");
            }
        }
        if !self.settings.reviewers.is_empty() {
            let path = format!("{}/pulls/{number}/requested_reviewers", self.repo.path());
            let body = json!({ "reviewers": self.settings.reviewers });
            if let Err(e) = self.api.call(Method::Post, &path, &[], Some(&body)) {
                tracing::warn!(scm = NAME, pull_request = number, error = %e, "requesting reviewers failed");
            }
        }
    }
}

impl PullRequests for GitHub {
    fn name(&self) -> &str {
        NAME
    }

    fn proposed(&self, proposal: &NewProposal<'_>) -> Result<Option<PullRequest>, ScmError> {
        let base = base_of(NAME, proposal, || self.repo.default_branch(&self.api))?;
        let body = json!({
            "title": title_of(proposal.message),
            "head": proposal.branch,
            "base": base,
            "body": proposal.message,
        });
        let created: Result<Pull, ApiError> = self.api.json(
            Method::Post,
            &format!("{}/pulls", self.repo.path()),
            &[],
            Some(&body),
        );
        let pull = match created {
            Ok(pull) => pull.to_pull_request(),
            // A retried create whose first attempt went through: GitHub refuses a second
            // pull request for the same head with 422.
            Err(e) if e.status() == Some(422) => {
                match self.find_pull(proposal.branch).ok().flatten() {
                    Some(pull) if pull.state == PullRequestState::Open => pull,
                    _ => return Err(scm_error(NAME, "creating the pull request", e)),
                }
            }
            Err(e) => return Err(scm_error(NAME, "creating the pull request", e)),
        };
        self.decorate(pull.number);
        Ok(Some(pull))
    }

    fn find(&self, branch: &str) -> Result<Option<PullRequest>, ScmError> {
        self.find_pull(branch)
            .map_err(|e| scm_error(NAME, "finding the pull request", e))
    }

    fn merge(&self, pull_request: &PullRequest) -> Result<MergedPullRequest, ScmError> {
        let path = format!("{}/pulls/{}/merge", self.repo.path(), pull_request.number);
        let result: MergeResult = self
            .api
            .json(
                Method::Put,
                &path,
                &[],
                Some(&json!({ "merge_method": "merge" })),
            )
            .map_err(|e| scm_error(NAME, "merging the pull request", e))?;
        if !result.merged {
            return Err(ScmError {
                scm: NAME.to_owned(),
                reason: format!(
                    "merging pull request {}: not merged: {}",
                    pull_request.number, result.message
                ),
            });
        }
        Ok(MergedPullRequest { commit: result.sha })
    }
}
