//! Where a remote's repository lives on its forge, from the remote URL.

use url::Url;

/// A remote URL taken apart: the web origin of its forge and the repository's path there.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteRepository {
    /// `https://host[:port]` (`http` when the remote is `http://`; `https` for ssh remotes,
    /// whose port is not the web's).
    pub origin: String,
    /// The host name.
    pub host: String,
    /// Path segments before the repository's own path: a forge served under a sub-path.
    /// Only GitHub and Gitea split this off (their repositories are always `owner/repo`).
    pub path: Vec<String>,
    /// The password (or token) in the URL's userinfo, percent-decoded.
    pub(crate) password: Option<String>,
}

impl std::fmt::Debug for RemoteRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRepository")
            .field("origin", &self.origin)
            .field("path", &self.path)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a remote URL names no repository on a forge.
#[derive(Debug, thiserror::Error)]
#[error("the remote URL {url} names no repository on a forge: {why}")]
pub struct RemoteError {
    /// The URL without credentials.
    pub url: String,
    /// What is missing.
    pub why: &'static str,
}

impl RemoteRepository {
    /// Parses `https://[user[:password]@]host[:port]/a/b[.git]`, `ssh://[user@]host[:port]/a/b`
    /// and scp-like `[user@]host:a/b[.git]`. Local paths and `file://` have no forge.
    pub fn parse(remote: &str) -> Result<RemoteRepository, RemoteError> {
        let fail = |why| RemoteError {
            url: cup_git::redact(remote),
            why,
        };
        let url = match Url::parse(remote) {
            Ok(url) => url,
            Err(_) => scp_like(remote).ok_or_else(|| fail("not a URL nor user@host:path"))?,
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| fail("no host"))?
            .to_owned();
        let origin = match url.scheme() {
            "http" | "https" => {
                let mut origin = format!("{}://{}", url.scheme(), bracket(&host));
                if let Some(port) = url.port() {
                    origin.push_str(&format!(":{port}"));
                }
                origin
            }
            "ssh" | "git+ssh" | "ssh+git" | "git" => format!("https://{}", bracket(&host)),
            _ => return Err(fail("only http(s), ssh and git remotes are on a forge")),
        };
        let mut path: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(decode).collect())
            .unwrap_or_default();
        if let Some(last) = path.last_mut()
            && let Some(stripped) = last.strip_suffix(".git")
        {
            *last = stripped.to_owned();
        }
        if path.len() < 2 || path.iter().any(|s| s.is_empty()) {
            return Err(fail("the path needs at least an owner and a repository"));
        }
        let password = url.password().map(decode).filter(|p| !p.is_empty());
        Ok(RemoteRepository {
            origin,
            host,
            path,
            password,
        })
    }

    /// The last two path segments: GitHub's and Gitea's owner and repository name.
    pub fn owner_and_name(&self) -> (&str, &str) {
        let n = self.path.len();
        (&self.path[n - 2], &self.path[n - 1])
    }

    /// The segments before owner and repository (a forge under a sub-path), joined with `/`
    /// and led by one; empty when there are none.
    pub fn prefix(&self) -> String {
        let n = self.path.len();
        self.path[..n - 2].iter().map(|s| format!("/{s}")).collect()
    }

    /// The whole path: GitLab's project path (`group/subgroup/project`).
    pub fn full_path(&self) -> String {
        self.path.join("/")
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `[user@]host:path` as git reads it: no `://`, a colon before any slash.
fn scp_like(remote: &str) -> Option<Url> {
    if remote.contains("://") {
        return None;
    }
    let (before, path) = remote.split_once(':')?;
    if before.contains('/') || before.is_empty() || path.is_empty() {
        return None;
    }
    let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
    Url::parse(&format!("ssh://{host}/{}", path.trim_start_matches('/'))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_with_token_and_dot_git() {
        let r =
            RemoteRepository::parse("https://x-access-token:s%40cret@github.com/o/r.git").unwrap();
        assert_eq!(r.origin, "https://github.com");
        assert_eq!(r.owner_and_name(), ("o", "r"));
        assert_eq!(r.password.as_deref(), Some("s@cret"));
        assert!(!format!("{r:?}").contains("cret"));
    }

    #[test]
    fn scp_like_and_ssh() {
        let r = RemoteRepository::parse("git@gitea.example:team/app.git").unwrap();
        assert_eq!(r.origin, "https://gitea.example");
        assert_eq!(r.owner_and_name(), ("team", "app"));
        let r = RemoteRepository::parse("ssh://git@gitlab.example:2222/g/sub/p.git").unwrap();
        assert_eq!(r.origin, "https://gitlab.example");
        assert_eq!(r.full_path(), "g/sub/p");
        assert_eq!(r.prefix(), "/g");
    }

    #[test]
    fn ports_and_sub_paths_are_kept() {
        let r = RemoteRepository::parse("http://127.0.0.1:3000/git/o/r").unwrap();
        assert_eq!(r.origin, "http://127.0.0.1:3000");
        assert_eq!(r.prefix(), "/git");
        assert_eq!(r.owner_and_name(), ("o", "r"));
    }

    #[test]
    fn local_and_short_paths_are_refused() {
        for bad in ["/srv/repo.git", "file:///srv/o/r", "https://h/r.git", "h:"] {
            assert!(RemoteRepository::parse(bad).is_err(), "{bad}");
        }
        let err = RemoteRepository::parse("https://u:pw@h/r")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
    }
}
