//! SSH remotes: the host key is checked against a known_hosts file (never accepted blindly)
//! and the user authenticates with a key held by the system's ssh-agent (`SSH_AUTH_SOCK`).
//!
//! libgit2 (libssh2) does the protocol; this module decides whether to trust the host and
//! whether an agent is there to ask, so failures say which of the two went wrong.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::remote_url::Remote;

/// The known_hosts file used when none is configured: `~/.ssh/known_hosts`.
pub fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".ssh").join("known_hosts"))
}

/// Whether `url` is an SSH remote: `ssh://…`, `git+ssh://…` or scp-like `user@host:path`.
/// Libgit2 picks the transport itself; only the tests ask.
#[cfg(test)]
pub fn is_ssh_url(url: &str) -> bool {
    Remote::parse(url).is_ok_and(|r| r.is_ssh())
}

/// The name an SSH remote's host has in known_hosts: `host`, or `[host]:port` when the
/// port is not 22.
pub fn known_hosts_name(url: &str) -> Option<String> {
    let (host, port) = Remote::parse(url).ok()?.host_port()?;
    Some(match port.filter(|p| *p != 22) {
        Some(port) => format!("[{host}]:{port}"),
        None => host,
    })
}

/// Why a host key is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// The host is not in the known_hosts file.
    #[error(
        "host key of {host} ({key_type} {fingerprint}) is not in {known_hosts}: refusing to connect to an unknown host; after checking the fingerprint out of band, add it (e.g. `ssh-keyscan -p PORT HOST >> {known_hosts}`)"
    )]
    Unknown {
        /// The host, as named in known_hosts (`host` or `[host]:port`).
        host: String,
        /// The presented key's type (`ssh-ed25519`, ...).
        key_type: String,
        /// The presented key's SHA-256 fingerprint.
        fingerprint: String,
        /// The known_hosts file checked.
        known_hosts: String,
    },
    /// The host is in the known_hosts file with another key: it changed its key, or the connection
    /// is intercepted.
    #[error(
        "host key of {host} ({key_type} {fingerprint}) does not match {known_hosts} line {line}: the host changed its key or someone is intercepting the connection; refusing"
    )]
    Mismatch {
        /// The host, as named in known_hosts.
        host: String,
        /// The presented key's type.
        key_type: String,
        /// The presented key's SHA-256 fingerprint.
        fingerprint: String,
        /// The known_hosts file checked.
        known_hosts: String,
        /// The 1-based line that holds the other key.
        line: usize,
    },
    /// The presented key is marked `@revoked` in the known_hosts file.
    #[error("host key of {host} is revoked in {known_hosts} line {line}; refusing")]
    Revoked {
        /// The host, as named in known_hosts.
        host: String,
        /// The known_hosts file checked.
        known_hosts: String,
        /// The 1-based line that revokes the key.
        line: usize,
    },
    /// The known_hosts file cannot be read.
    #[error("cannot read known_hosts file {known_hosts}: {reason}; refusing to connect to {host}")]
    Unreadable {
        /// The host being connected to.
        host: String,
        /// The known_hosts file.
        known_hosts: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// No known_hosts file is named and `HOME` is unset, so there is nothing to check against.
    #[error("no known_hosts file to check {host} against: HOME is unset and no file is named")]
    NoFile {
        /// The host being connected to.
        host: String,
    },
    /// The server presented no host key libgit2 can hand over for checking.
    #[error("the SSH server {host} did not present a raw host key libgit2 can check")]
    NoKey {
        /// The host being connected to.
        host: String,
    },
}

/// Checks the key `host` (its known_hosts name) presented against `known_hosts`.
pub fn check_host_key(
    known_hosts: &Path,
    host: &str,
    key_type: &str,
    key: &[u8],
) -> Result<(), HostKeyError> {
    let file = known_hosts.display().to_string();
    let text = std::fs::read_to_string(known_hosts).map_err(|e| HostKeyError::Unreadable {
        host: host.to_owned(),
        known_hosts: file.clone(),
        reason: e.to_string(),
    })?;
    let encoded = base64_encode(key);
    let mut mismatch = None;
    for (index, line) in text.lines().enumerate() {
        let Some(entry) = KnownHost::parse(line) else {
            continue;
        };
        if !entry.matches(host) {
            continue;
        }
        if entry.marker == Some("@revoked") && entry.key == encoded {
            return Err(HostKeyError::Revoked {
                host: host.to_owned(),
                known_hosts: file,
                line: index + 1,
            });
        }
        if entry.marker.is_some() {
            continue; // @cert-authority: host certificates are not supported
        }
        if entry.key_type == key_type && entry.key == encoded {
            return Ok(());
        }
        if entry.key_type == key_type {
            mismatch.get_or_insert(index + 1);
        }
    }
    let fingerprint = fingerprint(key);
    Err(match mismatch {
        Some(line) => HostKeyError::Mismatch {
            host: host.to_owned(),
            key_type: key_type.to_owned(),
            fingerprint,
            known_hosts: file,
            line,
        },
        None => HostKeyError::Unknown {
            host: host.to_owned(),
            key_type: key_type.to_owned(),
            fingerprint,
            known_hosts: file,
        },
    })
}

/// One `[marker] patterns keytype base64 [comment]` line.
struct KnownHost<'a> {
    marker: Option<&'a str>,
    patterns: &'a str,
    key_type: &'a str,
    key: &'a str,
}

impl<'a> KnownHost<'a> {
    fn parse(line: &'a str) -> Option<KnownHost<'a>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next()?;
        let marker = if first.starts_with('@') {
            let m = first;
            first = fields.next()?;
            Some(m)
        } else {
            None
        };
        Some(KnownHost {
            marker,
            patterns: first,
            key_type: fields.next()?,
            key: fields.next()?,
        })
    }

    /// OpenSSH's rule: some pattern matches and no negated (`!`) pattern does. A hashed
    /// entry (`|1|salt|hash`, from `HashKnownHosts yes`) matches if HMAC-SHA1(salt, host)
    /// is the hash.
    fn matches(&self, host: &str) -> bool {
        if let Some(hashed) = self.patterns.strip_prefix("|1|") {
            return hashed_host_matches(hashed, host);
        }
        let mut matched = false;
        for pattern in self.patterns.split(',') {
            match pattern.strip_prefix('!') {
                Some(negated) if glob(&negated.to_ascii_lowercase(), host) => return false,
                Some(_) => {}
                None => matched |= glob(&pattern.to_ascii_lowercase(), host),
            }
        }
        matched
    }
}

/// `salt|hash` (both base64) against `host`.
fn hashed_host_matches(hashed: &str, host: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    match (base64_decode(salt), base64_decode(hash)) {
        (Some(salt), Some(hash)) => hmac_sha1(&salt, host.as_bytes()).as_slice() == hash,
        _ => false,
    }
}

/// `*` and `?` wildcards, as in known_hosts patterns.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            resume = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            resume += 1;
            ti = resume;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `SHA256:…`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    format!("SHA256:{}", base64_encode(&digest).trim_end_matches('='))
}

fn base64_encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// HMAC-SHA1: the hash OpenSSH uses for hashed known_hosts names (`|1|salt|hash`).
fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Why the ssh-agent cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentProblem {
    /// `SSH_AUTH_SOCK` is not set.
    NotSet,
    /// Nothing answers as an agent on the socket.
    Unreachable {
        /// The socket path from `SSH_AUTH_SOCK`.
        socket: String,
        /// Why it could not be reached.
        reason: String,
    },
    /// The agent holds no keys.
    NoKeys {
        /// The socket path from `SSH_AUTH_SOCK`.
        socket: String,
    },
}

impl fmt::Display for AgentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentProblem::NotSet => write!(
                f,
                "no ssh-agent: SSH_AUTH_SOCK is not set (start ssh-agent and ssh-add the key the server accepts)"
            ),
            AgentProblem::Unreachable { socket, reason } => {
                write!(f, "no ssh-agent at SSH_AUTH_SOCK={socket}: {reason}")
            }
            AgentProblem::NoKeys { socket } => write!(
                f,
                "the ssh-agent at {socket} holds no keys (ssh-add the key the server accepts)"
            ),
        }
    }
}

/// Asks the agent named by `SSH_AUTH_SOCK` how many keys it holds (the agent protocol's
/// REQUEST_IDENTITIES), so "no agent" and "no keys" are told apart from a refusal.
pub fn agent_socket() -> Result<String, AgentProblem> {
    let socket = std::env::var("SSH_AUTH_SOCK")
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or(AgentProblem::NotSet)?;
    let unreachable = |e: std::io::Error| AgentProblem::Unreachable {
        socket: socket.clone(),
        reason: e.to_string(),
    };
    let count = agent_key_count(&socket).map_err(unreachable)?;
    if count == 0 {
        return Err(AgentProblem::NoKeys { socket });
    }
    Ok(socket)
}

#[cfg(unix)]
fn agent_key_count(socket: &str) -> std::io::Result<u32> {
    const REQUEST_IDENTITIES: u8 = 11;
    const IDENTITIES_ANSWER: u8 = 12;
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(&[0, 0, 0, 1, REQUEST_IDENTITIES])?;
    // length (4) + type (1) + count (4); the key blobs that follow are not needed.
    let mut head = [0u8; 9];
    stream.read_exact(&mut head)?;
    if head[4] != IDENTITIES_ANSWER {
        return Err(std::io::Error::other(format!(
            "unexpected agent answer type {}",
            head[4]
        )));
    }
    Ok(u32::from_be_bytes([head[5], head[6], head[7], head[8]]))
}

#[cfg(not(unix))]
fn agent_key_count(_: &str) -> std::io::Result<u32> {
    Err(std::io::Error::other(
        "ssh-agent sockets need a Unix system",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_and_known_hosts_names() {
        assert!(is_ssh_url("ssh://git@h/r.git"));
        assert!(is_ssh_url("git@github.com:o/r.git"));
        assert!(!is_ssh_url("/tmp/a:b"));
        assert!(!is_ssh_url("https://h/r"));
        assert!(!is_ssh_url("C:/x"));
        assert_eq!(
            known_hosts_name("ssh://u@127.0.0.1:2222/r").unwrap(),
            "[127.0.0.1]:2222"
        );
        assert_eq!(known_hosts_name("ssh://u@Host:22/r").unwrap(), "host");
        assert_eq!(known_hosts_name("ssh://host/r").unwrap(), "host");
        assert_eq!(
            known_hosts_name("ssh://u@[::1]:2200/r").unwrap(),
            "[::1]:2200"
        );
        assert_eq!(
            known_hosts_name("git@github.com:o/r").unwrap(),
            "github.com"
        );
    }

    #[test]
    fn host_keys_known_unknown_mismatched_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let key = b"\x00\x00\x00\x0bssh-ed25519key-one";
        let other = b"\x00\x00\x00\x0bssh-ed25519key-two";
        std::fs::write(
            &file,
            format!(
                "# comment\n[127.0.0.1]:2222,!bad ssh-ed25519 {}\n*.example ssh-ed25519 {}\n@revoked evil ssh-ed25519 {}\n",
                base64_encode(key),
                base64_encode(other),
                base64_encode(key)
            ),
        )
        .unwrap();
        check_host_key(&file, "[127.0.0.1]:2222", "ssh-ed25519", key).unwrap();
        check_host_key(&file, "git.example", "ssh-ed25519", other).unwrap();
        let unknown = check_host_key(&file, "[127.0.0.1]:2223", "ssh-ed25519", key).unwrap_err();
        assert!(matches!(unknown, HostKeyError::Unknown { .. }), "{unknown}");
        let changed = check_host_key(&file, "git.example", "ssh-ed25519", key).unwrap_err();
        assert!(
            matches!(changed, HostKeyError::Mismatch { line: 3, .. }),
            "{changed}"
        );
        let revoked = check_host_key(&file, "evil", "ssh-ed25519", key).unwrap_err();
        assert!(
            matches!(revoked, HostKeyError::Revoked { line: 4, .. }),
            "{revoked}"
        );
        let negated = check_host_key(&file, "bad", "ssh-ed25519", key).unwrap_err();
        assert!(matches!(negated, HostKeyError::Unknown { .. }), "{negated}");
        let missing = check_host_key(&dir.path().join("none"), "h", "ssh-ed25519", key);
        assert!(matches!(missing, Err(HostKeyError::Unreadable { .. })));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 test cases 1, 2 and 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(&hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn hashed_known_hosts_entries_match() {
        let salt = b"0123456789abcdefghij";
        let hash = hmac_sha1(salt, b"[127.0.0.1]:2222");
        let key = b"\x00\x00\x00\x0bssh-ed25519key-one";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            format!(
                "|1|{}|{} ssh-ed25519 {}\n",
                base64_encode(salt),
                base64_encode(&hash),
                base64_encode(key)
            ),
        )
        .unwrap();
        check_host_key(&file, "[127.0.0.1]:2222", "ssh-ed25519", key).unwrap();
        assert!(check_host_key(&file, "[127.0.0.1]:2223", "ssh-ed25519", key).is_err());
        assert_eq!(base64_decode(&base64_encode(salt)).unwrap(), salt);
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Z!==").is_none());
    }

    #[test]
    fn base64_and_fingerprints_match_openssh() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            fingerprint(b"abc"),
            "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"
        );
    }

    #[test]
    fn agent_problems_are_told_apart() {
        // Not set: checked without touching the process environment (tests run in threads).
        assert!(
            AgentProblem::NotSet
                .to_string()
                .contains("SSH_AUTH_SOCK is not set")
        );
        let err = agent_key_count("/nonexistent/agent.sock").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
