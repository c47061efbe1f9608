//! Parsing image references (`registry/repository[:tag][@sha256:…]`) with Docker's rules.
//!
//! oci-client parses references with one large regex whose compilation costs a sizeable
//! share of a whole pull; this hand-written parser applies the same grammar without it.

use crate::{Error, Result, digest};

/// Registry assumed when a reference names none (Docker's rule).
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host, `host[:port]`; `docker.io` when the reference names none.
    pub registry: String,
    /// Repository path; a one-component Docker Hub name gets the `library/` prefix.
    pub repository: String,
    /// The tag; `latest` when the reference has neither tag nor digest, `None` when it has only a
    /// digest.
    pub tag: Option<String>,
    /// The `sha256:` digest after `@`, if any (validated).
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference; with neither tag nor digest the tag is `latest`.
    pub fn parse(reference: &str) -> Result<ImageRef> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        if let Some(d) = digest {
            digest::validate(d)?;
        }
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(bad(
                "a tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            ));
        }
        let (registry, repository) = split_registry(name);
        if !valid_registry(registry) {
            return Err(bad("invalid registry host"));
        }
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(bad(
                "a repository is lowercase letters, digits and separators ('.', '_', '-', '/')",
            ));
        }
        let tag = tag
            .map(str::to_owned)
            .or_else(|| digest.is_none().then(|| "latest".to_owned()));
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository,
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// `registry/repository[:tag][@digest]`, as oci-client prints it.
    pub fn whole(&self) -> String {
        let mut out = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d);
        }
        out
    }

    /// The same reference as oci-client's type.
    pub fn to_oci(&self) -> oci_client::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                t.clone(),
                d.clone(),
            ),
            (None, Some(d)) => oci_client::Reference::with_digest(registry, repository, d.clone()),
            (Some(t), None) => oci_client::Reference::with_tag(registry, repository, t.clone()),
            (None, None) => oci_client::Reference::with_tag(registry, repository, "latest".into()),
        }
    }
}

/// Docker's rule: the first component is a registry if it has a '.' or a ':' or is
/// `localhost`; otherwise the reference is on Docker Hub (`library/` for one component).
fn split_registry(name: &str) -> (&str, String) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first, rest.to_owned())
        }
        Some(_) => (DEFAULT_REGISTRY, name.to_owned()),
        None => (DEFAULT_REGISTRY, format!("library/{name}")),
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_registry(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    name_ok && port_ok
}

/// One path component: lowercase alphanumerics joined by '.', '_', '__' or dashes.
fn valid_component(c: &str) -> bool {
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let starts_and_ends =
        c.chars().next().is_some_and(alnum) && c.chars().last().is_some_and(alnum);
    starts_and_ends
        && c.chars()
            .all(|ch| alnum(ch) || matches!(ch, '.' | '_' | '-'))
        && !c.contains("..")
        && !c.contains("___")
        && !c.contains("._")
        && !c.contains("_.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_oci_client_on_valid_references() {
        let d = digest::of(b"x");
        let cases = [
            "127.0.0.1:5000/cup/flipt:v1".to_owned(),
            "127.0.0.1:5000/cup/flipt".to_owned(),
            format!("127.0.0.1:5000/cup/flipt@{d}"),
            format!("localhost/a/b/c:t@{d}"),
            "ghcr.io/org/ctl-x_y.z:1.2.3".to_owned(),
            "flipt".to_owned(),
            "me/flipt:dev".to_owned(),
            "registry.lan:5000/a__b/c-d:X_1".to_owned(),
        ];
        for case in cases {
            let ours = ImageRef::parse(&case).expect(&case);
            let theirs = oci_client::Reference::try_from(case.as_str()).expect(&case);
            assert_eq!(ours.whole(), theirs.whole(), "{case}");
            assert_eq!(ours.to_oci(), theirs, "{case}");
        }
    }

    #[test]
    fn refuses_what_oci_client_refuses() {
        for case in [
            "",
            "a//b",
            "a/b:",
            "a/b:-x",
            "a/b@sha256:short",
            "a/.b",
            "host:port:x/y",
            "a/b c",
        ] {
            assert!(ImageRef::parse(case).is_err(), "{case:?}");
            assert!(
                oci_client::Reference::try_from(case).is_err(),
                "oci-client accepts {case:?}"
            );
        }
        // Docker refuses uppercase repositories; oci-client lets this one through.
        assert!(ImageRef::parse("Upper/case:v1").is_err());
    }
}
