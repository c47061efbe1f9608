//! Remote URLs as cupd reads them: `scheme://…` URLs (parsed by the `url` crate), Git's
//! scp-like `[user@]host:path`, or a local path.
//!
//! Everything that shows a remote (logs, errors, `/status`, the cache's name) goes through
//! [`redact`]. A string that does not parse is never shown at all: where its userinfo ends
//! cannot be told, so any part of it may be a password (`https://u:pa/ss@h/r`).

use url::{Host, Url};

/// What [`redact`] shows for a remote that does not parse.
pub const UNPARSABLE: &str = "<unparsable URL>";

/// A parsed remote.
#[derive(Debug, Clone)]
pub(crate) enum Remote {
    /// `scheme://…`.
    Url(Url),
    /// `[user@]host:path` (SSH).
    Scp {
        user: Option<String>,
        host: String,
        path: String,
    },
    /// A directory on this machine.
    Path(String),
}

/// Why a remote string is refused; never quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// A `scheme://` remote that does not parse; holds the parser's message (never the URL).
    #[error("the remote URL does not parse ({0}); it is not shown because it may hold a password")]
    Url(String),
    /// An scp-like address with a password, or with an empty host or user.
    #[error(
        "the remote looks like an scp-like SSH address ([user@]host:path) but has a \
         password or an empty host or user; it is not shown because it may hold a password"
    )]
    Scp,
}

impl Remote {
    pub(crate) fn parse(remote: &str) -> Result<Remote, UrlError> {
        if remote.contains("://") {
            return Url::parse(remote)
                .map(Remote::Url)
                .map_err(|e| UrlError::Url(e.to_string()));
        }
        if !is_scp_like(remote) {
            return Ok(Remote::Path(remote.to_owned()));
        }
        parse_scp(remote).ok_or(UrlError::Scp)
    }

    /// Without secrets: userinfo is removed, except an SSH login name, which is no secret
    /// and says who logged in.
    pub(crate) fn redacted(&self) -> String {
        match self {
            Remote::Url(url) => {
                let mut shown = url.clone();
                let keep_user = is_ssh_scheme(url.scheme()) && url.password().is_none();
                // Both only fail for URLs that cannot have userinfo, which then have none.
                let _ = shown.set_password(None);
                if !keep_user {
                    let _ = shown.set_username("");
                }
                shown.to_string()
            }
            Remote::Scp { user, host, path } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                match user {
                    Some(user) => format!("{user}@{host}:{path}"),
                    None => format!("{host}:{path}"),
                }
            }
            Remote::Path(path) => path.clone(),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_ssh(&self) -> bool {
        match self {
            Remote::Url(url) => is_ssh_scheme(url.scheme()),
            Remote::Scp { .. } => true,
            Remote::Path(_) => false,
        }
    }

    /// The host (IPv6 without brackets, lower case) and the explicit port, if any.
    pub(crate) fn host_port(&self) -> Option<(String, Option<u16>)> {
        match self {
            Remote::Url(url) => {
                let host = match url.host()? {
                    Host::Domain(d) => d.to_ascii_lowercase(),
                    Host::Ipv4(a) => a.to_string(),
                    Host::Ipv6(a) => a.to_string(),
                };
                Some((host, url.port()))
            }
            Remote::Scp { host, .. } => Some((host.to_ascii_lowercase(), None)),
            Remote::Path(_) => None,
        }
    }
}

fn is_ssh_scheme(scheme: &str) -> bool {
    matches!(scheme, "ssh" | "git+ssh" | "ssh+git")
}

/// `[user@]host:path`, Git's scp-like SSH syntax: a colon before any slash.
pub(crate) fn is_scp_like(remote: &str) -> bool {
    !remote.contains("://")
        && remote
            .split_once(':')
            .is_some_and(|(host, _)| host.len() > 1 && !host.contains('/'))
}

/// `[user@]host:path` or `[user@][v6:host]:path`. The user ends at the first `@`, which
/// must come before the host's colon; a `:` in the user (`user:password@host:path`) or an
/// `@` left in the host is refused: Git would read such a string differently from a reader.
fn parse_scp(remote: &str) -> Option<Remote> {
    let (user, rest) = match remote.split_once('@') {
        Some((user, rest)) if !user.contains([':', '/', '[']) => (Some(user), rest),
        Some(_) => return None,
        None => (None, remote),
    };
    let (host, path) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':')?)
        }
        None => rest.split_once(':')?,
    };
    if host.is_empty() || host.contains(['@', '/', '[', ']']) || user.is_some_and(str::is_empty) {
        return None;
    }
    Some(Remote::Scp {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        path: path.to_owned(),
    })
}

/// The remote without secrets (for logs, errors and the cache name); [`UNPARSABLE`] when
/// it does not parse.
pub fn redact(remote: &str) -> String {
    Remote::parse(remote).map_or_else(|_| UNPARSABLE.to_owned(), |r| r.redacted())
}
