//! Static bearer tokens from a file in kube-apiserver's `--token-auth-file` format.
//!
//! One line per token: `token,user,uid[,"group1,group2"]` (CSV; the uid is read and not
//! used). A token may be given hashed as `sha256:<64 hex digits>` (the SHA-256 of the token's
//! bytes), so the file need not hold the secret itself. Blank lines and lines starting with
//! `#` are skipped.
//!
//! Every token is kept only as its SHA-256; a presented token is hashed and compared with
//! every entry in constant time, so neither the comparison nor the position of a match
//! tells anything through timing.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{AccessError, read_bounded};
use crate::identity::{Caller, Method};

/// Largest token file read.
pub const MAX_TOKEN_FILE: u64 = 4 * 1024 * 1024;

/// The tokens of one token file.
#[derive(Debug, Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    hash: [u8; 32],
    user: String,
    groups: Vec<String>,
}

/// `sha256:<hex>` of a token, the form a token file may hold instead of the token.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

impl TokenSet {
    /// Reads and checks a token file.
    pub fn load(path: &Path) -> Result<TokenSet, AccessError> {
        let bytes = read_bounded(path, MAX_TOKEN_FILE)?;
        let invalid = |line: usize, message: String| AccessError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        let text = String::from_utf8(bytes).map_err(|_| invalid(0, "not UTF-8".into()))?;
        let mut entries: Vec<(usize, Entry)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let fields = split_csv(line).map_err(|m| invalid(number, m))?;
            let [token, user, _uid, rest @ ..] = fields.as_slice() else {
                return Err(invalid(
                    number,
                    "expected token,user,uid[,\"group1,group2\"]".into(),
                ));
            };
            if rest.len() > 1 {
                return Err(invalid(
                    number,
                    "more than four fields; quote the groups: token,user,uid,\"g1,g2\"".into(),
                ));
            }
            let hash = if let Some(hex_digest) = token.strip_prefix("sha256:") {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut hash)
                    .map_err(|_| invalid(number, "a sha256: token needs 64 hex digits".into()))?;
                hash
            } else if token.is_empty() {
                return Err(invalid(number, "empty token".into()));
            } else {
                Sha256::digest(token.as_bytes()).into()
            };
            if user.trim().is_empty() {
                return Err(invalid(number, "empty user name".into()));
            }
            let groups = rest
                .first()
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if let Some((first, _)) = entries.iter().find(|(_, e)| e.hash == hash) {
                return Err(invalid(
                    number,
                    format!("the same token as line {first}: a token names one user"),
                ));
            }
            entries.push((
                number,
                Entry {
                    hash,
                    user: user.clone(),
                    groups,
                },
            ));
        }
        Ok(TokenSet {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        })
    }

    /// The caller a token names, if any.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every entry is compared, match or not.
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found.map(|e| Caller::authenticated(e.user.clone(), e.groups.clone(), Method::Token))
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits one CSV line: fields separated by commas, a field in double quotes may hold
/// commas and `""` for a quote. Hand-written: one line format, not worth a CSV crate.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn kube_format_plain_and_hashed() {
        let hashed = hash_token("s3cret-bob");
        let f = file(&format!(
            "# team tokens\nalice-token,alice,1001,\"dev,ops\"\n\n{hashed},bob,1002\ncarol-token,carol,1003,viewers\n"
        ));
        let set = TokenSet::load(f.path()).unwrap();
        assert_eq!(set.len(), 3);
        let alice = set.authenticate("alice-token").unwrap();
        assert_eq!(alice.user, "alice");
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(set.authenticate("s3cret-bob").unwrap().user, "bob");
        assert_eq!(
            set.authenticate("carol-token").unwrap().groups[0],
            "viewers"
        );
        assert!(
            set.authenticate(&hashed).is_none(),
            "the hash is not the token"
        );
        assert!(set.authenticate("alice-token ").is_none());
        assert!(set.authenticate("").is_none());
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line, wanted) in [
            ("a,b\n", 1, "expected token,user,uid"),
            ("ok,u,1\n,u2,2\n", 2, "empty token"),
            ("t,,1\n", 1, "empty user"),
            ("t,u,1,g1,g2\n", 1, "quote the groups"),
            ("t,u,1,\"g1\n", 1, "unterminated"),
            ("sha256:abcd,u,1\n", 1, "64 hex digits"),
            ("t,u,1\nt,v,2\n", 2, "same token as line 1"),
        ] {
            let f = file(text);
            let error = TokenSet::load(f.path()).unwrap_err().to_string();
            assert!(
                error.contains(&format!(":{line}: ")) && error.contains(wanted),
                "{text:?}: {error}"
            );
        }
        let f = file(&format!("{},u,1\nx,u,2\n", hash_token("x")));
        assert!(
            TokenSet::load(f.path())
                .unwrap_err()
                .to_string()
                .contains("same token")
        );
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            split_csv("a,\"b,c\",\"d\"\"e\"").unwrap(),
            ["a", "b,c", "d\"e"]
        );
        assert_eq!(split_csv("a,,").unwrap(), ["a", "", ""]);
        assert!(split_csv("a\"b").is_err());
        assert!(split_csv("\"a\"b").is_err());
    }
}
