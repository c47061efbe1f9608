//! Credentials for HTTP(S) remotes: the URL's userinfo, or a file in git-credential-store's
//! format (`~/.git-credentials`: one `https://user:token@host[:port][/path]` per line).
//!
//! Secrets never leave this module except as the [`Secret`] handed to libgit2: errors name
//! the file and the line, never its text, and `Debug` prints no password.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The credentials file cannot be read.
    #[error("reading git credentials file {path}: {source}")]
    Unreadable {
        /// The credentials file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `why` never quotes the line: it holds a secret.
    #[error(
        "git credentials file {path} line {line}: {why} (expected scheme://USER:TOKEN@HOST[:PORT][/PATH], as git-credential-store writes)"
    )]
    Malformed {
        /// The credentials file.
        path: PathBuf,
        /// The 1-based line number of the bad entry.
        line: usize,
        /// What is wrong with the line.
        why: &'static str,
    },
}

/// Where a credential came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialOrigin {
    /// The remote URL's `user:password@`.
    Url,
    /// Line `line` of a credentials file.
    File {
        /// The credentials file.
        path: PathBuf,
        /// The 1-based line number of the entry used.
        line: usize,
    },
}

impl fmt::Display for CredentialOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialOrigin::Url => write!(f, "credentials from the URL"),
            CredentialOrigin::File { path, line } => {
                write!(f, "credentials from {} line {line}", path.display())
            }
        }
    }
}

/// A user name and password (or token), with where they came from.
#[derive(Clone)]
pub struct Secret {
    /// The user name sent to the remote.
    pub username: String,
    /// The password or token; never printed by `Debug`.
    pub password: String,
    /// Where the pair was found, named in error messages instead of the secret.
    pub origin: CredentialOrigin,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("username", &self.username)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// One usable line of a credentials file.
#[derive(Clone)]
struct Entry {
    line: usize,
    scheme: String,
    /// `host` or `host:port`, lower case.
    host: String,
    /// Path prefix without leading or trailing '/', empty for the whole host.
    path: String,
    username: String,
    password: String,
}

/// A parsed git-credential-store file.
#[derive(Clone)]
pub struct CredentialStore {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("path", &self.path)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl CredentialStore {
    /// Reads and checks the whole file: a malformed line is an error, not skipped, so a
    /// typo is found at startup rather than as a mysterious 401 later.
    pub fn load(path: &Path) -> Result<CredentialStore, CredentialsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CredentialsError::Unreadable {
                path: path.to_owned(),
                source,
            })?;
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let entry = parse_line(line, index + 1).map_err(|why| CredentialsError::Malformed {
                path: path.to_owned(),
                line: index + 1,
                why,
            })?;
            entries.push(entry);
        }
        Ok(CredentialStore {
            path: path.to_owned(),
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential for `url`: same scheme and host (and port); an entry with a path
    /// matches URLs under that path. The longest matching path wins, then the earlier line.
    /// A user name in `url` only matches entries for that user.
    pub fn lookup(&self, url: &str) -> Option<Secret> {
        let target = parse_url(url)?;
        let path = target.path.trim_matches('/');
        self.entries
            .iter()
            .filter(|e| e.scheme == target.scheme && e.host == target.host)
            .filter(|e| target.user.as_ref().is_none_or(|u| *u == e.username))
            .filter(|e| path_has_prefix(path, &e.path))
            .max_by(|a, b| a.path.len().cmp(&b.path.len()).then(b.line.cmp(&a.line)))
            .map(|e| Secret {
                username: e.username.clone(),
                password: e.password.clone(),
                origin: CredentialOrigin::File {
                    path: self.path.clone(),
                    line: e.line,
                },
            })
    }
}

/// `path` equals `prefix` or continues it after a '/'; an empty prefix matches all.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn parse_line(line: &str, number: usize) -> Result<Entry, &'static str> {
    let url = parse_url(line).ok_or("not a URL")?;
    if url.host.is_empty() {
        return Err("no host");
    }
    let username = url.user.ok_or("no user name (USER:TOKEN@ is missing)")?;
    let password = url
        .password
        .ok_or("no password or token after the user name")?;
    if username.is_empty() {
        return Err("empty user name");
    }
    Ok(Entry {
        line: number,
        scheme: url.scheme,
        host: url.host,
        path: url.path.trim_matches('/').to_owned(),
        username,
        password,
    })
}

/// The parts of `scheme://[user[:password]@]host[:port][/path]` this module needs.
pub(crate) struct UrlParts {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `host` or `host:port`, lower case.
    pub host: String,
    pub path: String,
}

/// Parses a URL with an authority (with the `url` crate); `None` for paths, scp-like
/// remotes and strings that do not parse.
pub(crate) fn parse_url(url: &str) -> Option<UrlParts> {
    if !url.contains("://") {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    let password = parsed.password().map(percent_decode);
    let user = Some(parsed.username())
        .filter(|u| !u.is_empty() || password.is_some())
        .map(percent_decode);
    Some(UrlParts {
        scheme: parsed.scheme().to_ascii_lowercase(),
        user,
        password,
        // The port only when it is not the scheme's default (which the parser drops).
        host: match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        },
        path: parsed.path().to_owned(),
    })
}

/// The URL's own `user:password`, if it has both.
pub(crate) fn from_url(url: &str) -> Option<Secret> {
    let parts = parse_url(url)?;
    Some(Secret {
        username: parts.user?,
        password: parts.password?,
        origin: CredentialOrigin::Url,
    })
}

/// `%XX` sequences as bytes (invalid UTF-8 replaced).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(text: &str) -> Result<CredentialStore, CredentialsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, text).unwrap();
        CredentialStore::load(&path)
    }

    #[test]
    fn matches_scheme_host_port_and_path_prefix() {
        let s = store(
            "https://any:t0@git.example\n\n\
             https://team:t1@git.example/team\n\
             http://plain:t2@git.example:8080\n\
             https://other%40x:p%3Aw@other.example/\n",
        )
        .unwrap();
        let hit = |url: &str| s.lookup(url).map(|c| (c.username, c.password));
        assert_eq!(
            hit("https://git.example/a.git"),
            Some(("any".into(), "t0".into()))
        );
        assert_eq!(
            hit("https://GIT.example/team/r.git"),
            Some(("team".into(), "t1".into()))
        );
        assert_eq!(
            hit("https://git.example/teamx/r.git"),
            Some(("any".into(), "t0".into()))
        );
        assert_eq!(
            hit("http://git.example:8080/r"),
            Some(("plain".into(), "t2".into()))
        );
        assert_eq!(hit("http://git.example/r"), None);
        assert_eq!(hit("https://git.example:8443/r"), None);
        assert_eq!(
            hit("https://other.example/r"),
            Some(("other@x".into(), "p:w".into()))
        );
        assert_eq!(hit("https://team@git.example/r"), None);
        assert_eq!(hit("/local/path"), None);
        let origin = s.lookup("https://git.example/team/r").unwrap().origin;
        assert_eq!(
            origin.to_string(),
            format!("credentials from {} line 3", s.path().display())
        );
    }

    #[test]
    fn malformed_lines_are_named_without_their_secret() {
        let err = store("https://u:secret1@h\nhttps://nopassword@h\n")
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("line 2") && text.contains("no password"),
            "{text}"
        );
        assert!(
            !text.contains("secret1") && !text.contains("nopassword"),
            "{text}"
        );
        let err = store("just-a-token-abc\n").err().unwrap();
        assert!(
            matches!(err, CredentialsError::Malformed { line: 1, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("abc"));
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let err = CredentialStore::load(Path::new("/nonexistent/cup-creds")).unwrap_err();
        assert!(matches!(err, CredentialsError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = store("https://u:hunter2@h\n").unwrap();
        let secret = s.lookup("https://h/x").unwrap();
        assert!(!format!("{s:?} {secret:?}").contains("hunter2"));
    }
}
