//! Clients of forges' pull-request APIs behind cup-git's [`PullRequests`] seam: GitHub (REST
//! v3, github.com and GitHub Enterprise), Gitea and Forgejo (API v1), GitLab (merge requests,
//! API v4).
//!
//! Each client opens one pull request per proposal branch (`cup/proposal/<id>` into the
//! proposal's base branch, else the repository's default branch), with the commit message's
//! first line as its title and the whole message as its body, then adds the configured
//! labels and requests the configured reviewers; finds the pull request of a branch in any
//! state; and merges one with a merge commit. Labels and reviewers that the forge refuses do
//! not undo the pull request: they are logged.
//!
//! Every call is bounded ([`HttpLimits`]): connect and request timeouts, a cap on the
//! response body, and retries of rate limits (429; 403 with no requests left), server
//! errors and failed connections with exponential backoff and jitter, honouring
//! `Retry-After` and the rate-limit reset headers, within a few attempts and a time budget.
//! The token is sent in a header only, never logged, never in an error.
//!
//! The forges' webhooks are read here too (`webhook.rs`): their signatures checked and the
//! payload fields cupd uses parsed; cup-server serves the hook paths.
#![warn(missing_docs)]

use std::sync::Arc;

use cup_git::{PullRequests, ScmError};

mod gitea;
mod github;
mod gitlab;
mod http;
mod pull;
mod remote;
mod repos_path;
mod token;
mod webhook;

pub use gitea::Gitea;
pub use github::GitHub;
pub use gitlab::GitLab;
pub use http::{ApiError, HttpLimits};
pub use remote::{RemoteError, RemoteRepository};
pub use token::{MAX_TOKEN_BYTES, Token, TokenError};
pub use webhook::{
    WebhookError, WebhookEvent, parse_webhook, truncated, verify_webhook, webhook_header,
};

/// The forges with a client here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forge {
    /// GitHub and GitHub Enterprise (REST v3).
    GitHub,
    /// Gitea and Forgejo (API v1).
    Gitea,
    /// GitLab (API v4).
    GitLab,
}

impl Forge {
    /// `github`, `gitea` or `gitlab`: the `-api-git-scm` value and the 202 body's
    /// `proposal.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
        }
    }

    /// The forge `-api-git-scm` names; `None` for anything else (including `none`).
    pub fn from_name(name: &str) -> Option<Forge> {
        match name {
            "github" => Some(Forge::GitHub),
            "gitea" | "forgejo" => Some(Forge::Gitea),
            "gitlab" => Some(Forge::GitLab),
            _ => None,
        }
    }

    /// The API base a remote implies: GitHub `https://api.github.com` (GitHub Enterprise
    /// `https://HOST/api/v3`), Gitea `<origin>[/<sub-path>]/api/v1`, GitLab `<origin>/api/v4`.
    pub fn default_api_base(self, remote: &RemoteRepository) -> String {
        match self {
            Forge::GitHub if matches!(remote.host.as_str(), "github.com" | "www.github.com") => {
                "https://api.github.com".to_owned()
            }
            Forge::GitHub => format!("{}/api/v3", remote.origin),
            Forge::Gitea => format!("{}{}/api/v1", remote.origin, remote.prefix()),
            Forge::GitLab => format!("{}/api/v4", remote.origin),
        }
    }
}

/// How to reach a forge, as cupd's `-api-git-scm*` flags say.
#[derive(Debug, Clone)]
pub struct ScmOptions {
    /// Which forge.
    pub forge: Forge,
    /// The API base URL; `None` = from the remote URL ([`Forge::default_api_base`]).
    pub api_url: Option<String>,
    /// The API token; `None` = the password of the remote URL's userinfo, if any.
    pub token: Option<Token>,
    /// Labels added to every pull request (names).
    pub labels: Vec<String>,
    /// Users whose review is requested on every pull request (user names).
    pub reviewers: Vec<String>,
    /// Bounds of every call.
    pub limits: HttpLimits,
}

/// Why a forge client could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The remote URL names no repository on a forge.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The API base URL is not an http(s) URL without credentials, query or fragment.
    #[error("the SCM API URL {url:?} {why}")]
    ApiUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A label or reviewer name is empty or too long.
    #[error("SCM {what} {name:?}: {why}")]
    Name {
        /// `label` or `reviewer`.
        what: &'static str,
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The most labels or reviewers configured: each costs a call or an item of one.
pub const MAX_NAMES: usize = 32;

/// The client of `options.forge` for the repository at `remote` (the remote URL cupd
/// clones; its password is the token when `options.token` is `None`).
pub fn open(options: &ScmOptions, remote: &str) -> Result<Arc<dyn PullRequests>, ConfigError> {
    let repository = RemoteRepository::parse(remote)?;
    let base = match &options.api_url {
        Some(url) => check_api_url(url)?,
        None => options.forge.default_api_base(&repository),
    };
    check_names("label", &options.labels)?;
    check_names("reviewer", &options.reviewers)?;
    let token = options
        .token
        .clone()
        .or_else(|| repository.password.as_deref().and_then(Token::new));
    if token.is_none() {
        tracing::warn!(
            scm = options.forge.as_str(),
            "no API token (a token file, the environment or a password in the remote URL): \
             the forge will likely refuse to open pull requests"
        );
    }
    tracing::info!(
        scm = options.forge.as_str(),
        api = %base,
        repository = %repository.full_path(),
        labels = ?options.labels,
        reviewers = ?options.reviewers,
        "pull requests are opened on the forge"
    );
    let settings = Settings {
        labels: options.labels.clone(),
        reviewers: options.reviewers.clone(),
    };
    Ok(match options.forge {
        Forge::GitHub => Arc::new(GitHub::new(
            &base,
            &repository,
            token,
            settings,
            options.limits,
        )),
        Forge::Gitea => Arc::new(Gitea::new(
            &base,
            &repository,
            token,
            settings,
            options.limits,
        )),
        Forge::GitLab => Arc::new(GitLab::new(
            &base,
            &repository,
            token,
            settings,
            options.limits,
        )),
    })
}

fn check_api_url(text: &str) -> Result<String, ConfigError> {
    let fail = |why| ConfigError::ApiUrl {
        url: cup_git::redact(text),
        why,
    };
    let url = url::Url::parse(text).map_err(|_| fail("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail("is not http(s)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "holds credentials: give the token with --api-git-scm-token-file",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail("has a query or fragment"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail("has no host"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn check_names(what: &'static str, names: &[String]) -> Result<(), ConfigError> {
    if names.len() > MAX_NAMES {
        return Err(ConfigError::Name {
            what,
            name: names[MAX_NAMES].clone(),
            why: "more than 32 given",
        });
    }
    for name in names {
        if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(ConfigError::Name {
                what,
                name: name.clone(),
                why: "empty, longer than 255 bytes or holding control characters",
            });
        }
    }
    Ok(())
}

/// What every pull request gets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
}

/// A pull request's title: the message's first non-empty line, cut to 250 characters
/// (GitLab refuses titles over 255).
pub(crate) fn title_of(message: &str) -> String {
    let line = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("cup proposal");
    line.chars().take(250).collect()
}

/// The branch a pull request goes into: the proposal's base, or else the repository's
/// default branch as the forge says (`default_branch` is only asked then).
pub(crate) fn base_of(
    scm: &str,
    proposal: &cup_git::NewProposal<'_>,
    default_branch: impl FnOnce() -> Result<String, ApiError>,
) -> Result<String, ScmError> {
    match proposal.base {
        Some(base) => Ok(base.to_owned()),
        None => default_branch().map_err(|e| scm_error(scm, "reading the default branch", e)),
    }
}

pub(crate) fn scm_error(scm: &str, what: &str, e: ApiError) -> ScmError {
    ScmError {
        scm: scm.to_owned(),
        reason: format!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_api_bases() {
        let r = |u| RemoteRepository::parse(u).unwrap();
        assert_eq!(
            Forge::GitHub.default_api_base(&r("git@github.com:o/r.git")),
            "https://api.github.com"
        );
        assert_eq!(
            Forge::GitHub.default_api_base(&r("https://ghe.corp/o/r")),
            "https://ghe.corp/api/v3"
        );
        assert_eq!(
            Forge::Gitea.default_api_base(&r("http://h:3000/git/o/r.git")),
            "http://h:3000/git/api/v1"
        );
        assert_eq!(
            Forge::GitLab.default_api_base(&r("https://gl.corp/g/s/p.git")),
            "https://gl.corp/api/v4"
        );
    }

    #[test]
    fn api_urls_are_checked() {
        assert_eq!(
            check_api_url("https://ghe.corp/api/v3/").unwrap(),
            "https://ghe.corp/api/v3"
        );
        for bad in [
            "ftp://h/x",
            "https://u:pw@h/api",
            "https://h/api?x=1",
            "not a url",
        ] {
            let err = check_api_url(bad).unwrap_err().to_string();
            assert!(!err.contains("pw"), "{err}");
        }
    }

    #[test]
    fn titles() {
        assert_eq!(title_of("\n  Add flag x\n\nbecause"), "Add flag x");
        assert_eq!(title_of(""), "cup proposal");
        assert_eq!(title_of(&"é".repeat(400)).chars().count(), 250);
    }

    #[test]
    fn names_are_bounded() {
        assert!(check_names("label", &["ok".into()]).is_ok());
        assert!(check_names("label", &[" ".into()]).is_err());
        assert!(check_names("label", &vec!["a".to_owned(); 33]).is_err());
    }
}
