//! Turning what a request carries into a [`Caller`].
//!
//! Tried in this order, the first that applies deciding: the authenticating proxy's headers
//! (only from a trusted source), the client certificate, the bearer token, anonymous
//! access. Credentials that are presented and wrong are refused even when anonymous access
//! is on: a client that sent a token meant to be someone, and silently serving it as
//! nobody would hide the mistake.

use std::net::IpAddr;
use std::path::PathBuf;

use http::{HeaderMap, header};

use crate::certificate::subject_of;
use crate::error::AccessError;
use crate::identity::{Caller, Method};
use crate::request_header::RequestHeaderOptions;
use crate::tokens::TokenSet;
use crate::watched::Watched;

/// Which authenticators are on.
#[derive(Debug, Clone, Default)]
pub struct AuthenticatorOptions {
    /// The static token file (`--token-auth-file`).
    pub token_file: Option<PathBuf>,
    /// Whether verified client certificates identify callers (`--client-ca-file`).
    pub client_certificates: bool,
    /// The authenticating proxy (`--requestheader-*`).
    pub request_header: Option<RequestHeaderOptions>,
    /// Whether requests without credentials are served as `system:anonymous`.
    pub anonymous: bool,
}

/// What one request presents.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The request's headers (`Authorization`, the proxy's headers).
    pub headers: &'a HeaderMap,
    /// The address the connection comes from.
    pub peer: IpAddr,
    /// The client certificate the TLS handshake verified (DER), if one was presented.
    pub client_certificate: Option<&'a [u8]>,
}

/// Why a request is not authenticated (a 401), in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthenticated(pub String);

/// The configured authenticators.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Option<Watched<TokenSet>>,
    client_certificates: bool,
    request_header: Option<RequestHeaderOptions>,
    anonymous: bool,
}

impl Authenticator {
    /// Loads the token file (an error names the file and line).
    pub fn new(options: AuthenticatorOptions) -> Result<Authenticator, AccessError> {
        let tokens = options
            .token_file
            .as_deref()
            .map(|path| Watched::open(path, TokenSet::load))
            .transpose()?;
        Ok(Authenticator {
            tokens,
            client_certificates: options.client_certificates,
            request_header: options.request_header,
            anonymous: options.anonymous,
        })
    }

    /// Whether any way of proving an identity is configured (anonymous access is not one).
    pub fn identifies_callers(&self) -> bool {
        self.tokens.is_some() || self.client_certificates || self.request_header.is_some()
    }

    /// The token file's problem, when its newest version did not load.
    pub fn problem(&self) -> Option<String> {
        self.tokens.as_ref().and_then(Watched::problem)
    }

    /// Who is calling.
    pub fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Caller, Unauthenticated> {
        let subject = match credentials.client_certificate {
            Some(der) if self.client_certificates || self.request_header.is_some() => {
                Some(subject_of(der).map_err(|e| Unauthenticated(e.to_string()))?)
            }
            _ => None,
        };
        let cn = subject.as_ref().and_then(|s| s.common_name.as_deref());

        if let Some(proxy) = &self.request_header
            && proxy.trusts(credentials.peer, cn)
            && let Some((user, groups)) = proxy.identity(credentials.headers)
        {
            return Ok(Caller::authenticated(user, groups, Method::RequestHeader));
        }

        if self.client_certificates
            && let Some(subject) = subject
        {
            let Some(user) = subject.common_name.filter(|cn| !cn.is_empty()) else {
                return Err(Unauthenticated(
                    "the client certificate's subject has no common name (CN) to name the user"
                        .into(),
                ));
            };
            return Ok(Caller::authenticated(
                user,
                subject.organizations,
                Method::ClientCertificate,
            ));
        }

        if let Some(value) = credentials.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Unauthenticated("the Authorization header must be \"Bearer <token>\"".into())
                })?;
            let Some(tokens) = &self.tokens else {
                return Err(Unauthenticated(
                    "this server accepts no bearer tokens (no --token-auth-file)".into(),
                ));
            };
            return tokens
                .get()
                .authenticate(token)
                .ok_or_else(|| Unauthenticated("invalid bearer token".into()));
        }

        if self.anonymous {
            return Ok(Caller::anonymous());
        }
        Err(Unauthenticated(format!(
            "no credentials; this server accepts {}",
            self.accepted()
        )))
    }

    /// The ways in, for a 401's message.
    fn accepted(&self) -> String {
        let mut ways = Vec::new();
        if self.tokens.is_some() {
            ways.push("a bearer token");
        }
        if self.client_certificates {
            ways.push("a client certificate");
        }
        if self.request_header.is_some() {
            ways.push("requests through its authenticating proxy");
        }
        if ways.is_empty() {
            return "no credentials".into();
        }
        ways.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AUTHENTICATED_GROUP;
    use std::io::Write;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn certificate(cn: Option<&str>, orgs: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        for org in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *org);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn all(anonymous: bool) -> (Authenticator, tempfile::NamedTempFile) {
        let mut tokens = tempfile::NamedTempFile::new().unwrap();
        writeln!(tokens, "tok-alice,alice,1,dev").unwrap();
        let authenticator = Authenticator::new(AuthenticatorOptions {
            token_file: Some(tokens.path().to_owned()),
            client_certificates: true,
            request_header: Some(RequestHeaderOptions {
                username_headers: vec!["X-Remote-User".into()],
                group_headers: vec!["X-Remote-Group".into()],
                trusted_sources: vec!["127.0.0.1/32".parse().unwrap()],
                allowed_names: vec!["proxy".into()],
            }),
            anonymous,
        })
        .unwrap();
        (authenticator, tokens)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn who(
        a: &Authenticator,
        h: &HeaderMap,
        peer: IpAddr,
        cert: Option<&[u8]>,
    ) -> Result<Caller, Unauthenticated> {
        a.authenticate(&Credentials {
            headers: h,
            peer,
            client_certificate: cert,
        })
    }

    #[test]
    fn each_way_in() {
        let (a, _f) = all(false);
        let token = headers(&[("authorization", "Bearer tok-alice")]);
        let caller = who(&a, &token, ELSEWHERE, None).unwrap();
        assert_eq!(
            (caller.user.as_str(), caller.method),
            ("alice", Method::Token)
        );
        assert_eq!(caller.groups, ["dev", AUTHENTICATED_GROUP]);

        let cert = certificate(Some("bob"), &["ops"]);
        let caller = who(&a, &HeaderMap::new(), ELSEWHERE, Some(&cert)).unwrap();
        assert_eq!(caller.user, "bob");
        assert_eq!(caller.method, Method::ClientCertificate);
        assert_eq!(caller.groups, ["ops", AUTHENTICATED_GROUP]);

        let proxied = headers(&[("x-remote-user", "carol"), ("x-remote-group", "a,b")]);
        let caller = who(&a, &proxied, LOOPBACK, None).unwrap();
        assert_eq!(caller.user, "carol");
        assert_eq!(caller.method, Method::RequestHeader);

        let proxy = certificate(Some("proxy"), &[]);
        assert_eq!(
            who(&a, &proxied, ELSEWHERE, Some(&proxy)).unwrap().user,
            "carol"
        );
    }

    #[test]
    fn proxy_headers_from_elsewhere_are_ignored() {
        let (a, _f) = all(false);
        let proxied = headers(&[("x-remote-user", "carol")]);
        assert!(who(&a, &proxied, ELSEWHERE, None).is_err());
        // A user's own certificate does not make its headers believed.
        let cert = certificate(Some("bob"), &[]);
        assert_eq!(
            who(&a, &proxied, ELSEWHERE, Some(&cert)).unwrap().user,
            "bob"
        );
        let both = headers(&[
            ("x-remote-user", "carol"),
            ("authorization", "Bearer tok-alice"),
        ]);
        assert_eq!(who(&a, &both, ELSEWHERE, None).unwrap().user, "alice");
    }

    #[test]
    fn wrong_credentials_are_refused_even_with_anonymous_on() {
        let (a, _f) = all(true);
        assert_eq!(
            who(&a, &HeaderMap::new(), ELSEWHERE, None).unwrap().user,
            "system:anonymous"
        );
        for value in ["Bearer nope", "Basic YTpi", "Bearer ", "tok-alice"] {
            let h = headers(&[("authorization", value)]);
            assert!(who(&a, &h, ELSEWHERE, None).is_err(), "{value}");
        }
        let nameless = certificate(None, &["ops"]);
        let error = who(&a, &HeaderMap::new(), ELSEWHERE, Some(&nameless)).unwrap_err();
        assert!(error.0.contains("common name"), "{error}");
    }

    #[test]
    fn no_credentials_say_what_is_accepted() {
        let (a, _f) = all(false);
        let error = who(&a, &HeaderMap::new(), ELSEWHERE, None).unwrap_err();
        assert!(
            error.0.contains("a bearer token or a client certificate"),
            "{error}"
        );
        let tokenless = Authenticator::new(AuthenticatorOptions {
            client_certificates: true,
            ..Default::default()
        })
        .unwrap();
        let h = headers(&[("authorization", "Bearer x")]);
        assert!(
            who(&tokenless, &h, ELSEWHERE, None)
                .unwrap_err()
                .0
                .contains("no bearer tokens")
        );
    }
}
