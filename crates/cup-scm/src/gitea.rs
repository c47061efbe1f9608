//! Gitea's and Forgejo's API (v1): pulls, labels by id, requested reviewers, merges.

use std::collections::HashMap;

use cup_git::{MergedPullRequest, NewProposal, PullRequest, PullRequests, ScmError};
use serde::Deserialize;
use serde_json::json;

use crate::http::{Api, ApiError, AuthScheme, HttpLimits, Method};
use crate::pull::Pull;
use crate::repos_path::ReposPath;
use crate::{RemoteRepository, Settings, Token, base_of, scm_error, title_of};

const NAME: &str = "gitea";

/// Pages of 50 read when looking for a pull request or a label: Gitea's pull list has no
/// head-branch filter, so a branch whose pull request is older than the 500 most recently
/// updated ones is not found.
const MAX_PAGES: u32 = 10;
const PAGE_SIZE: &str = "50";

/// Pull requests on Gitea or Forgejo.
#[derive(Debug)]
pub struct Gitea {
    api: Api,
    repo: ReposPath,
    settings: Settings,
}

#[derive(Deserialize)]
struct Label {
    id: i64,
    name: String,
}

impl Gitea {
    pub(crate) fn new(
        base: &str,
        repository: &RemoteRepository,
        token: Option<Token>,
        settings: Settings,
        limits: HttpLimits,
    ) -> Gitea {
        Gitea {
            api: Api::new(
                NAME,
                base,
                token,
                AuthScheme::Token,
                &[("accept", "application/json")],
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

    fn find_pull(&self, branch: &str) -> Result<Option<Pull>, ApiError> {
        let path = format!("{}/pulls", self.repo.path());
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let pulls: Vec<Pull> = self.api.json(
                Method::Get,
                &path,
                &[
                    ("state", "all"),
                    ("sort", "recentupdate"),
                    ("page", &page),
                    ("limit", PAGE_SIZE),
                ],
                None,
            )?;
            let last = pulls.len() < 50;
            if let Some(pull) = pulls
                .into_iter()
                .filter(|p| p.head.branch == branch)
                .max_by_key(|p| p.number)
            {
                return Ok(Some(pull));
            }
            if last {
                break;
            }
        }
        Ok(None)
    }

    /// The ids of the configured labels that exist in the repository.
    fn label_ids(&self) -> Result<Vec<i64>, ApiError> {
        let mut wanted: HashMap<&str, Option<i64>> = self
            .settings
            .labels
            .iter()
            .map(|l| (l.as_str(), None))
            .collect();
        let path = format!("{}/labels", self.repo.path());
        for page in 1..=MAX_PAGES {
            let page = page.to_string();
            let labels: Vec<Label> = self.api.json(
                Method::Get,
                &path,
                &[("page", &page), ("limit", PAGE_SIZE)],
                None,
            )?;
            let last = labels.len() < 50;
            for label in labels {
                if let Some(id) = wanted.get_mut(label.name.as_str()) {
                    *id = Some(label.id);
                }
            }
            if last || wanted.values().all(Option::is_some) {
                break;
            }
        }
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(_, id)| id.is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            tracing::warn!(scm = NAME, labels = ?missing, "labels not found in the repository; not added");
        }
        let mut ids: Vec<i64> = wanted.into_values().flatten().collect();
        ids.sort_unstable();
        Ok(ids)
    }
}

impl PullRequests for Gitea {
    fn name(&self) -> &str {
        NAME
    }

    fn proposed(&self, proposal: &NewProposal<'_>) -> Result<Option<PullRequest>, ScmError> {
        let base = base_of(NAME, proposal, || self.repo.default_branch(&self.api))?;
        let labels = if self.settings.labels.is_empty() {
            Vec::new()
        } else {
            self.label_ids().unwrap_or_else(|e| {
                tracing::warn!(scm = NAME, error = %e, "reading labels failed; none added");
                Vec::new()
            })
        };
        let mut body = json!({
            "head": proposal.branch,
            "base": base,
            "title": title_of(proposal.message),
            "body": proposal.message,
        });
        if !labels.is_empty() {
            body["labels"] = json!(labels);
        }
        let created: Result<Pull, ApiError> = self.api.json(
            Method::Post,
            &format!("{}/pulls", self.repo.path()),
            &[],
            Some(&body),
        );
        let pull = match created {
            Ok(pull) => pull.to_pull_request(),
            // A retried create whose first attempt went through: 409, the pull request exists.
            Err(e) if e.status() == Some(409) => {
                match self.find_pull(proposal.branch).ok().flatten() {
                    Some(pull) if pull.state == "open" => pull.to_pull_request(),
                    _ => return Err(scm_error(NAME, "creating the pull request", e)),
                }
            }
            Err(e) => return Err(scm_error(NAME, "creating the pull request", e)),
        };
        if !self.settings.reviewers.is_empty() {
            let path = format!(
                "{}/pulls/{}/requested_reviewers",
                self.repo.path(),
                pull.number
            );
            let body = json!({ "reviewers": self.settings.reviewers });
            if let Err(e) = self.api.call(Method::Post, &path, &[], Some(&body)) {
                tracing::warn!(scm = NAME, pull_request = pull.number, error = %e, "requesting reviewers failed");
            }
        }
        Ok(Some(pull))
    }

    fn find(&self, branch: &str) -> Result<Option<PullRequest>, ScmError> {
        self.find_pull(branch)
            .map(|p| p.as_ref().map(Pull::to_pull_request))
            .map_err(|e| scm_error(NAME, "finding the pull request", e))
    }

    fn merge(&self, pull_request: &PullRequest) -> Result<MergedPullRequest, ScmError> {
        let path = format!("{}/pulls/{}", self.repo.path(), pull_request.number);
        self.api
            .call(
                Method::Post,
                &format!("{path}/merge"),
                &[],
                Some(&json!({ "do": "merge" })),
            )
            .map_err(|e| scm_error(NAME, "merging the pull request", e))?;
        // The merge answers with no body; the pull request then names its merge commit.
        let commit = match self.api.json::<Pull>(Method::Get, &path, &[], None) {
            Ok(pull) => pull.merge_commit_sha,
            Err(e) => {
                tracing::warn!(scm = NAME, pull_request = pull_request.number, error = %e, "reading the merged pull request failed");
                None
            }
        };
        Ok(MergedPullRequest { commit })
    }
}
