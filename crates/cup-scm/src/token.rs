//! The forge's API token: read from a file or the environment, never shown.

use std::fmt;
use std::path::{Path, PathBuf};

/// The longest token file read: tokens are tens of bytes; anything bigger is not a token.
pub const MAX_TOKEN_BYTES: u64 = 4096;

/// An API token. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("reading the SCM token file {path}: {source}")]
    Unreadable {
        /// The token file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a token: empty, too big, several lines or not UTF-8. Never quotes it.
    #[error("the SCM token file {path} {why}")]
    NotAToken {
        /// The token file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl Token {
    /// A token from its text, trimmed; `None` when empty or when it holds characters that
    /// cannot go in an HTTP header (a control character or a line break).
    pub fn new(text: &str) -> Option<Token> {
        let text = text.trim();
        if text.is_empty() || text.chars().any(|c| c.is_control()) {
            return None;
        }
        Some(Token(text.to_owned()))
    }

    /// Reads a token file: one line, trimmed. A file that others than its owner can read is
    /// read all the same (secrets mounted by orchestrators often are), with a warning.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        use std::io::Read;
        let unreadable = |source| TokenError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        warn_if_shared(path, &file);
        let mut bytes = Vec::new();
        file.take(MAX_TOKEN_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        let not_a_token = |why| TokenError::NotAToken {
            path: path.to_owned(),
            why,
        };
        if bytes.len() as u64 > MAX_TOKEN_BYTES {
            return Err(not_a_token("is larger than 4 KiB"));
        }
        let text = String::from_utf8(bytes).map_err(|_| not_a_token("is not UTF-8"))?;
        if text.trim().lines().count() > 1 {
            return Err(not_a_token("has more than one line"));
        }
        Token::new(&text).ok_or_else(|| not_a_token("is empty or holds control characters"))
    }

    /// The secret, for the request header only.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata()
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the SCM token file can be read by other users than its owner; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &std::fs::File) {}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_it() {
        let t = Token::new(" hunter2\n").unwrap();
        assert_eq!(t.secret(), "hunter2");
        assert!(!format!("{t:?} {t}").contains("hunter2"));
    }

    #[test]
    fn files_are_trimmed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "abc123\n").unwrap();
        assert_eq!(Token::from_file(&path).unwrap().secret(), "abc123");
        std::fs::write(&path, "\n \n").unwrap();
        assert!(matches!(
            Token::from_file(&path),
            Err(TokenError::NotAToken { .. })
        ));
        std::fs::write(&path, "a\nb\n").unwrap();
        let err = Token::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("more than one line"), "{err}");
        std::fs::write(&path, "x".repeat(5000)).unwrap();
        assert!(
            Token::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("4 KiB")
        );
        assert!(matches!(
            Token::from_file(&dir.path().join("missing")),
            Err(TokenError::Unreadable { .. })
        ));
    }
}
