//! Go's `path.Match` and `fs.Glob`, which the original's list operation uses: `*` and `?`
//! never match `/`, `[...]` classes (with `^` negation and ranges), `\` escapes, and no
//! `**`. Results are in directory-walk order with each directory's entries sorted, which
//! makes the whole list sorted by path.

use std::path::Path;

/// A pattern Go would reject with `path.ErrBadPattern`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern")]
pub struct BadPattern;

/// `path.Match(pattern, name)`.
pub fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_chars(&pattern, &name)
}

fn match_chars(mut pattern: &[char], mut name: &[char]) -> Result<bool, BadPattern> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&'/'));
        }
        let (remaining, ok) = match_chunk(chunk, name)?;
        // The last chunk must consume the whole name.
        if ok && (remaining.is_empty() || !pattern.is_empty()) {
            name = remaining;
            continue;
        }
        if star {
            // Let the star swallow i+1 characters, never a `/`.
            let mut i = 0;
            while i < name.len() && name[i] != '/' {
                let (remaining, ok) = match_chunk(chunk, &name[i + 1..])?;
                if ok && (remaining.is_empty() || !pattern.is_empty()) {
                    name = remaining;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        // No match; still report a malformed remainder as Go does.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, &[])?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next star outside a class.
fn scan_chunk(pattern: &[char]) -> (bool, &[char], &[char]) {
    let stars = pattern.iter().take_while(|&&c| c == '*').count();
    let pattern = &pattern[stars..];
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '\\' if i + 1 < pattern.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (stars > 0, &pattern[..i], &pattern[i..])
}

/// Matches one chunk at the start of `s`; returns the rest of `s` and whether it matched.
fn match_chunk<'a>(
    mut chunk: &[char],
    mut s: &'a [char],
) -> Result<(&'a [char], bool), BadPattern> {
    // After a failure Go keeps scanning the chunk, only to detect a malformed pattern.
    let mut failed = false;
    while let Some(&first) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match first {
            '[' => {
                let r = if failed { None } else { Some(s[0]) };
                if !failed {
                    s = &s[1..];
                }
                chunk = &chunk[1..];
                let (matched, negated, rest) = match_class(chunk, r)?;
                chunk = rest;
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == '/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let literal = if first == '\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(BadPattern)?
                } else {
                    first
                };
                if !failed {
                    if s[0] != literal {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { (&[], false) } else { (s, true) })
}

/// Parses a class body (after `[`) and tests `r` against it.
fn match_class(mut chunk: &[char], r: Option<char>) -> Result<(bool, bool, &[char]), BadPattern> {
    let negated = chunk.first() == Some(&'^');
    if negated {
        chunk = &chunk[1..];
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        if chunk.first() == Some(&']') && ranges > 0 {
            return Ok((matched, negated, &chunk[1..]));
        }
        let (lo, rest) = class_char(chunk)?;
        chunk = rest;
        let mut hi = lo;
        if chunk.first() == Some(&'-') {
            let (h, rest) = class_char(&chunk[1..])?;
            hi = h;
            chunk = rest;
        }
        if r.is_some_and(|r| lo <= r && r <= hi) {
            matched = true;
        }
        ranges += 1;
    }
}

fn class_char(mut chunk: &[char]) -> Result<(char, &[char]), BadPattern> {
    match chunk.first() {
        None | Some('-') | Some(']') => return Err(BadPattern),
        Some('\\') => chunk = &chunk[1..],
        Some(_) => {}
    }
    let c = *chunk.first().ok_or(BadPattern)?;
    let rest = &chunk[1..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((c, rest))
}

/// `s` as a pattern that matches exactly `s`: each of `*`, `?`, `[` and `\` gets a `\` in
/// front, which is how Go's `path.Match` spells a literal metacharacter (`]` and `-` are
/// literal outside a class already).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// `fs.Glob` over the directory `root`: the `/`-separated relative paths that match.
/// Unreadable directories are skipped (as Go does); only a malformed pattern is an error.
pub fn glob(root: &Path, pattern: &str) -> Result<Vec<String>, BadPattern> {
    glob_depth(root, pattern, 0)
}

fn glob_depth(root: &Path, pattern: &str, depth: usize) -> Result<Vec<String>, BadPattern> {
    // Go's guard against patterns with absurdly many separators.
    if depth > 10_000 {
        return Err(BadPattern);
    }
    matches(pattern, "")?;
    if !has_meta(pattern) {
        let exists = std::fs::symlink_metadata(root.join(pattern)).is_ok();
        return Ok(if exists {
            vec![pattern.to_owned()]
        } else {
            Vec::new()
        });
    }
    let (dir, file) = match pattern.rfind('/') {
        Some(at) => (&pattern[..at], &pattern[at + 1..]),
        None => (".", pattern),
    };
    let dir = if dir.is_empty() { "/" } else { dir };
    if !has_meta(dir) {
        return read_matching(root, dir, file, Vec::new());
    }
    if dir == pattern {
        return Err(BadPattern);
    }
    let mut found = Vec::new();
    for d in glob_depth(root, dir, depth + 1)? {
        found = read_matching(root, &d, file, found)?;
    }
    Ok(found)
}

fn read_matching(
    root: &Path,
    dir: &str,
    pattern: &str,
    mut found: Vec<String>,
) -> Result<Vec<String>, BadPattern> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return Ok(found);
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        if matches(pattern, &name)? {
            found.push(if dir == "." {
                name
            } else {
                format!("{dir}/{name}")
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match_cases() {
        // A selection of Go's own path.Match test table.
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[-x]", "x", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("a[", "x", Err(BadPattern)),
            ("a/b[", "x", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                &matches(pattern, name),
                want,
                "Match({pattern:?}, {name:?})"
            );
        }
    }

    #[test]
    fn glob_is_single_segment_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("default/sub")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        for f in [
            "default/g-v-K-foo.json",
            "default/g-v-K-bar.json",
            "default/sub/g-v-K-x.json",
            "other/g-v-K-z.json",
            "default/g-v-L-a.json",
        ] {
            std::fs::write(root.join(f), "{}").unwrap();
        }
        assert_eq!(
            glob(root, "default/g-v-K-*.json").unwrap(),
            ["default/g-v-K-bar.json", "default/g-v-K-foo.json"]
        );
        assert_eq!(
            glob(root, "*/g-v-K-*.json").unwrap(),
            [
                "default/g-v-K-bar.json",
                "default/g-v-K-foo.json",
                "other/g-v-K-z.json"
            ]
        );
        assert_eq!(
            glob(root, "default/g-v-K-foo.json").unwrap(),
            ["default/g-v-K-foo.json"]
        );
        assert!(glob(root, "missing/*.json").unwrap().is_empty());
        assert_eq!(glob(root, "default/[").unwrap_err(), BadPattern);
    }

    #[test]
    fn escaped_values_match_only_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["*", "?", "[", "\\", "a", "ab", "a*b"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("x.json"), "{}").unwrap();
        }
        for d in ["*", "?", "[", "\\", "a", "a*b"] {
            let pattern = format!("{}/*.json", escape(d));
            assert_eq!(
                glob(root, &pattern).unwrap(),
                [format!("{d}/x.json")],
                "{d:?}"
            );
            assert!(matches(&escape(d), d).unwrap(), "{d:?}");
        }
        assert!(!matches(&escape("a*b"), "axxb").unwrap());
    }
}
