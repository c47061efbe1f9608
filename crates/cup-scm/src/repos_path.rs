//! The repository part of GitHub's and Gitea's REST paths (`/repos/{owner}/{repo}`): Gitea
//! keeps GitHub's layout, so both clients address a repository the same way.

use serde::Deserialize;

use crate::RemoteRepository;
use crate::http::{Api, ApiError, Method, encode_segment};

/// A repository as GitHub and Gitea address it.
#[derive(Debug)]
pub(crate) struct ReposPath {
    /// The owner (user or organisation), as in the remote URL.
    pub owner: String,
    /// `/repos/{owner}/{repo}`, each part percent-encoded.
    path: String,
}

#[derive(Deserialize)]
struct Repository {
    default_branch: String,
}

impl ReposPath {
    pub fn new(repository: &RemoteRepository) -> ReposPath {
        let (owner, repo) = repository.owner_and_name();
        ReposPath {
            owner: owner.to_owned(),
            path: format!("/repos/{}/{}", encode_segment(owner), encode_segment(repo)),
        }
    }

    /// `/repos/{owner}/{repo}`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The repository's default branch, as the forge says.
    pub fn default_branch(&self, api: &Api) -> Result<String, ApiError> {
        let repo: Repository = api.json(Method::Get, &self.path, &[], None)?;
        Ok(repo.default_branch)
    }
}
