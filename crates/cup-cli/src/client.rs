//! The HTTP client of the resource commands.
//!
//! It is the reqwest that `cup` already links for registry access (through oci-client),
//! driven by a current-thread tokio runtime as the OCI verbs are: no new crate, no second
//! TLS stack, nothing extra to compile. A blocking client such as ureq would have added its
//! own TLS provider (ring) beside the aws-lc-rs one already in the binary.
//!
//! The client only moves bytes: it returns every HTTP answer as a [`Reply`] and errs only
//! when there is no answer (server unreachable, timeout, TLS refused) or when the server
//! refuses who is asking (401, 403), which means the same whatever the request. What other
//! statuses mean depends on the request (a 404 is "flag x not found" for a get), so
//! `resources.rs` words those errors.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::{Method, Url, header};

use crate::contexts::Secret;
use crate::credentials::Auth;
use crate::log;

/// How long to wait for a TCP connection: a wrong address should fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request. Writes through a Git source may push and open a pull request, so this is
/// generous; it only guards against a server that never answers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    /// The context the credentials come from, for messages (None: `-a` alone).
    context: Option<String>,
    /// Whether credentials were presented (a 401 then means they were refused).
    has_credentials: bool,
}

/// An HTTP answer, whatever its status.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub method: Method,
    /// The request's URL as messages show it (see [`shown`]).
    pub url: Url,
}

/// `url` as messages, logs and listings show it: a password in its userinfo becomes `***`
/// (the user name stays: it says who is logged in). The request itself keeps the password.
pub fn shown(url: &Url) -> Url {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have a password, which then have none.
        let _ = shown.set_password(Some("***"));
    }
    shown
}

/// `text` with every form of `url`'s password replaced by `***`: for messages that come
/// from elsewhere (an HTTP library's error) and may quote the URL.
pub fn scrub(text: &str, url: &Url) -> String {
    let Some(encoded) = url.password().filter(|p| !p.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(url.as_str(), shown(url).as_str());
    let decoded = percent_decode(encoded);
    for secret in [encoded, decoded.as_str()] {
        if !secret.is_empty() {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// `%XX` sequences as bytes (invalid UTF-8 replaced).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Reply {
    /// The body as one line of text for an error message: lines joined with `; `, capped;
    /// an HTML page is named by its title instead of being quoted tag by tag.
    pub fn text(&self) -> String {
        if self.is_html() {
            return match html_title(&self.body) {
                Some(title) => format!("an HTML page titled {title:?}"),
                None => "an HTML page".to_owned(),
            };
        }
        one_line(&String::from_utf8_lossy(&self.body))
    }

    /// Whether the body is an HTML page: cupd never answers with one, so whatever answered
    /// is some other server (a web server, a proxy's error page).
    pub fn is_html(&self) -> bool {
        let start = self.body.trim_ascii_start();
        let head = start[..start.len().min(15)].to_ascii_lowercase();
        head.starts_with(b"<!doctype html") || head.starts_with(b"<html")
    }
}

/// The text of an HTML page's `<title>`, trimmed and capped, if it has one.
fn html_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(64 << 10)]);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title = one_line(text[open_end..close].trim());
    (!title.is_empty()).then(|| title.chars().take(120).collect())
}

/// Collapses text to one line (errors must stay on one line) and caps its length.
pub fn one_line(text: &str) -> String {
    const MAX: usize = 600;
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.chars().count() > MAX {
        let cut: String = joined.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

impl Client {
    /// A client that presents no credentials (other than a URL's userinfo).
    #[cfg(test)]
    pub fn new(base: Url) -> Result<Client> {
        Client::with_auth(base, Auth::default())
    }

    /// A client that presents `auth`: the bearer token on every request, the client
    /// certificate in the TLS handshake, and trusts the CA bundle besides the system roots.
    pub fn with_auth(base: Url, auth: Auth) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let context = auth.context.as_deref().unwrap_or("-");
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("cup/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &auth.ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).with_context(|| {
                format!("the certificate authority of context {context:?} is not a PEM bundle")
            })?;
            builder = builder.tls_certs_merge(roots);
        }
        if let Some(pem) = &auth.identity_pem {
            let identity = reqwest::Identity::from_pem(pem).with_context(|| {
                format!(
                    "the client certificate and key of context {context:?} are not usable (expected PEM certificates and one PEM private key)"
                )
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().context("creating the HTTP client")?;
        Ok(Client {
            runtime,
            http,
            base,
            has_credentials: auth.configured,
            token: auth.token,
            context: auth.context,
        })
    }

    /// The server address as the user gave it, without its password (for messages).
    pub fn address(&self) -> String {
        shown(&self.base).as_str().trim_end_matches('/').to_owned()
    }

    /// The URL of `segments` under the address (each segment percent-encoded, so a name
    /// with `/` or `?` cannot change the route).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends one request and waits for the whole answer. JSON is asked for, so list answers
    /// come as one array from cupd (the original's NDJSON is handled by the caller too).
    pub fn send(&self, method: Method, segments: &[&str], body: Option<Vec<u8>>) -> Result<Reply> {
        let url = self.url(segments);
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            let mut value = header::HeaderValue::try_from(format!("Bearer {}", token.0))
                .context("the token holds characters an HTTP header cannot carry")?;
            // Keeps the value out of any debug output of the HTTP stack.
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let started = Instant::now();
        let answer = self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body.to_vec()))
        });
        let (status, body) = answer.map_err(|e| self.transport_error(&e))?;
        let url = shown(&url);
        log::debug(format_args!(
            "{method} {url} -> {status} ({} bytes, {:.1} ms)",
            body.len(),
            started.elapsed().as_secs_f64() * 1000.0
        ));
        let reply = Reply {
            status,
            body,
            method,
            url,
        };
        match reply.status {
            401 => Err(self.unauthorized(&reply)),
            403 => Err(anyhow::anyhow!(
                "{} {} is forbidden (403): {}",
                reply.method,
                reply.url.path(),
                reason(&reply)
            )),
            _ => Ok(reply),
        }
    }

    /// A 401: no credentials, or refused ones. Says which context and how to give it
    /// credentials.
    fn unauthorized(&self, reply: &Reply) -> anyhow::Error {
        let address = self.address();
        let add = format!(
            "`cup config context add NAME --address {address} --token-file FILE` (or --exec-command, --client-certificate and --client-key)"
        );
        let why = reason(reply);
        match (&self.context, self.has_credentials) {
            (Some(context), true) => anyhow::anyhow!(
                "cupd at {address} refused the credentials of context {context:?} (401: {why}); check them, or set others: `cup --context {context} config context set token_file=FILE`, or {add}"
            ),
            (Some(context), false) => anyhow::anyhow!(
                "cupd at {address} asks for credentials (401: {why}) and context {context:?} has none; give it some: `cup --context {context} config context set token_file=FILE`, or {add}"
            ),
            (None, _) => anyhow::anyhow!(
                "cupd at {address} asks for credentials (401: {why}) and -a alone sends none; add a context with credentials: {add}"
            ),
        }
    }

    /// One line that names the address and the innermost cause (e.g. "Connection refused").
    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let mut chain = Vec::new();
        let reason = if e.is_timeout() {
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
        } else {
            let mut cause: &dyn std::error::Error = e;
            chain.push(cause.to_string());
            while let Some(next) = cause.source() {
                cause = next;
                chain.push(cause.to_string());
            }
            cause.to_string()
        };
        let hint = match tls_problem(&chain.join(": ")) {
            Some(TlsProblem::ServerCertificate) => {
                "the server's TLS certificate is not trusted here; if a private CA signed it, give the context that CA: `cup config context add NAME --address URL --certificate-authority CA.pem`"
            }
            Some(TlsProblem::WrongName) => {
                "the server's TLS certificate is not for the host name of the address: use an address with a name the certificate lists (a private CA is given with --certificate-authority CA.pem)"
            }
            Some(TlsProblem::Refused) => {
                "the server ended the TLS handshake; if it asks for a client certificate, give the context one with --client-certificate and --client-key"
            }
            None => {
                "is it running? the address comes from -a or the context, see `cup config context`"
            }
        };
        anyhow::anyhow!(
            "cannot reach cupd at {}: {} ({hint})",
            self.address(),
            one_line(&scrub(&reason, &self.base))
        )
    }
}

/// The reason in a refusal's body: cupd's text, or the `reason`/`message`/`error` of a
/// JSON body (a Kubernetes Status has `message`).
fn reason(reply: &Reply) -> String {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(&reply.body)
        && let Some(text) = ["message", "reason", "error"]
            .iter()
            .find_map(|k| o.get(*k).and_then(serde_json::Value::as_str))
    {
        return one_line(text);
    }
    match reply.text() {
        text if text.is_empty() => "no reason given".to_owned(),
        text => text,
    }
}

/// What went wrong in a TLS handshake, from the error chain's text (rustls's errors reach
/// here only as text through reqwest and hyper).
#[derive(Debug, PartialEq, Eq)]
enum TlsProblem {
    /// The server's certificate was refused: unknown issuer, expired, not for TLS servers.
    ServerCertificate,
    /// The server's certificate is valid but names other hosts.
    WrongName,
    /// The server sent an alert: typically, it wanted a client certificate it did not get
    /// or refused the one it got.
    Refused,
}

fn tls_problem(chain: &str) -> Option<TlsProblem> {
    let lower = chain.to_ascii_lowercase();
    if lower.contains("not valid for name") {
        Some(TlsProblem::WrongName)
    } else if lower.contains("invalid peer certificate")
        || lower.contains("certificate verify failed")
    {
        Some(TlsProblem::ServerCertificate)
    } else if lower.contains("received fatal alert") {
        Some(TlsProblem::Refused)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_segment_and_keep_a_path_prefix() {
        let c = Client::new(Url::parse("http://h:1/prefix/").unwrap()).unwrap();
        assert_eq!(
            c.url(&[
                "apis",
                "g.io",
                "v1",
                "namespaces",
                "default",
                "flags",
                "a/b?c"
            ])
            .as_str(),
            "http://h:1/prefix/apis/g.io/v1/namespaces/default/flags/a%2Fb%3Fc"
        );
        let c = Client::new(Url::parse("http://h:1").unwrap()).unwrap();
        assert_eq!(c.url(&["apis"]).as_str(), "http://h:1/apis");
        assert_eq!(c.address(), "http://h:1");
    }

    #[test]
    fn html_pages_are_named_by_their_title() {
        let reply = |body: &str| Reply {
            status: 404,
            body: body.as_bytes().to_vec(),
            method: Method::GET,
            url: Url::parse("http://h/apis").unwrap(),
        };
        let page = reply(
            "\n<!DOCTYPE HTML>\n<html><head><TITLE>\n Error response\n</TITLE></head><body><p>Nope</p></body></html>",
        );
        assert!(page.is_html());
        assert_eq!(page.text(), "an HTML page titled \"Error response\"");
        assert_eq!(reply("<html><body>x</body></html>").text(), "an HTML page");
        let json = reply("{\"error\":\"x\"}\n");
        assert!(!json.is_html());
        assert_eq!(json.text(), "{\"error\":\"x\"}");
    }

    #[test]
    fn unreachable_is_one_line_with_the_address() {
        // Port 1 on loopback: nothing listens there.
        let c = Client::new(Url::parse("http://127.0.0.1:1").unwrap()).unwrap();
        let e = format!("{:#}", c.send(Method::GET, &["apis"], None).err().unwrap());
        assert!(
            e.starts_with("cannot reach cupd at http://127.0.0.1:1: "),
            "{e}"
        );
        assert!(e.to_lowercase().contains("refused"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn passwords_never_show_in_addresses_or_transport_errors() {
        for (address, expected) in [
            ("http://u:s3cret@h:1/", "http://u:***@h:1/"),
            ("http://u:p%40ss@h:1/", "http://u:***@h:1/"),
            ("http://u:pa%2Fss@[::1]:1/", "http://u:***@[::1]:1/"),
            ("http://u:p:w@h:1/", "http://u:***@h:1/"),
            ("http://only-user@h:1/", "http://only-user@h:1/"),
            ("http://h:1/", "http://h:1/"),
        ] {
            let url = Url::parse(address).unwrap();
            assert_eq!(shown(&url).as_str(), expected, "{address}");
        }
        let url = Url::parse("http://u:pa%2Fss@h/").unwrap();
        assert_eq!(
            scrub("error for url (http://u:pa%2Fss@h/x): pa/ss", &url),
            "error for url (http://u:***@h/x): ***"
        );
        let c = Client::new(Url::parse("http://u:s3cret@127.0.0.1:1").unwrap()).unwrap();
        assert_eq!(c.address(), "http://u:***@127.0.0.1:1");
        let e = format!("{:#}", c.send(Method::GET, &["apis"], None).err().unwrap());
        assert!(e.contains("http://u:***@127.0.0.1:1"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn bodies_become_one_capped_line() {
        assert_eq!(one_line("a\n\n  b  \nc\n"), "a; b; c");
        assert_eq!(one_line(&"x".repeat(700)).chars().count(), 601);
    }

    /// A one-shot HTTP server on loopback: answers one request with `status` and `body`,
    /// and hands back the request head it received.
    fn one_answer(status: u16, body: &'static str) -> (Url, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            head
        });
        (url, handle)
    }

    fn auth(context: Option<&str>, token: Option<&str>) -> Auth {
        Auth {
            context: context.map(str::to_owned),
            configured: token.is_some(),
            token: token.map(|t| Secret(t.to_owned())),
            ..Auth::default()
        }
    }

    #[test]
    fn the_token_goes_in_the_authorization_header() {
        let (url, server) = one_answer(200, "[]");
        let c = Client::with_auth(url, auth(Some("prod"), Some("s3cret"))).unwrap();
        assert_eq!(c.send(Method::GET, &["apis"], None).unwrap().status, 200);
        let head = server.join().unwrap().to_ascii_lowercase();
        assert!(
            head.contains("\r\nauthorization: bearer s3cret\r\n"),
            "{head}"
        );
        let (url, server) = one_answer(200, "[]");
        Client::new(url)
            .unwrap()
            .send(Method::GET, &["apis"], None)
            .unwrap();
        assert!(
            !server
                .join()
                .unwrap()
                .to_ascii_lowercase()
                .contains("authorization")
        );
    }

    #[test]
    fn refusals_name_the_context_and_the_fix() {
        let (url, _server) = one_answer(401, "invalid bearer token\n");
        let c = Client::with_auth(url.clone(), auth(Some("prod"), Some("s3cret"))).unwrap();
        let e = format!("{:#}", c.send(Method::GET, &["apis"], None).err().unwrap());
        let address = c.address();
        assert_eq!(
            e,
            format!(
                "cupd at {address} refused the credentials of context \"prod\" (401: invalid bearer token); check them, or set others: `cup --context prod config context set token_file=FILE`, or `cup config context add NAME --address {address} --token-file FILE` (or --exec-command, --client-certificate and --client-key)"
            )
        );
        assert!(!e.contains("s3cret"));
        let (url, _server) = one_answer(401, "");
        let c = Client::with_auth(url, auth(Some("default"), None)).unwrap();
        let e = format!("{:#}", c.send(Method::GET, &["apis"], None).err().unwrap());
        assert!(
            e.contains("asks for credentials (401: no reason given) and context \"default\" has none; give it some: `cup --context default config context set token_file=FILE`, or `cup config context add NAME --address"),
            "{e}"
        );
        let (url, _server) = one_answer(401, "no credentials");
        let e = format!(
            "{:#}",
            Client::new(url)
                .unwrap()
                .send(Method::GET, &["apis"], None)
                .err()
                .unwrap()
        );
        assert!(e.contains("and -a alone sends none"), "{e}");
        let (url, _server) = one_answer(
            403,
            "user \"alice\" may not delete flags in namespace \"default\"\n",
        );
        let c = Client::with_auth(url, auth(Some("prod"), Some("s3cret"))).unwrap();
        let e = format!(
            "{:#}",
            c.send(
                Method::DELETE,
                &[
                    "apis",
                    "flipt.io",
                    "v1",
                    "namespaces",
                    "default",
                    "flags",
                    "x"
                ],
                None
            )
            .err()
            .unwrap()
        );
        assert_eq!(
            e,
            "DELETE /apis/flipt.io/v1/namespaces/default/flags/x is forbidden (403): user \"alice\" may not delete flags in namespace \"default\""
        );
    }

    #[test]
    fn tls_failures_are_told_apart() {
        assert_eq!(
            tls_problem(
                "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
            ),
            Some(TlsProblem::ServerCertificate)
        );
        assert_eq!(
            tls_problem(
                "invalid peer certificate: certificate not valid for name \"cup.example.com\"; certificate is only valid for DnsName(\"other\")"
            ),
            Some(TlsProblem::WrongName)
        );
        assert_eq!(
            tls_problem("client error (Connect): received fatal alert: CertificateRequired"),
            Some(TlsProblem::Refused)
        );
        assert_eq!(
            tls_problem("tcp connect error: Connection refused (os error 111)"),
            None
        );
    }

    #[test]
    fn unusable_certificates_are_named() {
        let base = Url::parse("https://h").unwrap();
        let with = |identity: Option<&str>, ca: Option<&str>| Auth {
            context: Some("prod".into()),
            identity_pem: identity.map(|p| p.as_bytes().to_vec()),
            ca_pem: ca.map(|p| p.as_bytes().to_vec()),
            ..Auth::default()
        };
        let e = format!(
            "{:#}",
            Client::with_auth(
                base.clone(),
                with(
                    Some("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
                    None
                )
            )
            .err()
            .unwrap()
        );
        assert!(
            e.starts_with("the client certificate and key of context \"prod\" are not usable"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Client::with_auth(
                base,
                with(
                    None,
                    Some("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
                )
            )
            .err()
            .unwrap()
        );
        assert!(
            e.starts_with("the certificate authority of context \"prod\" is not a PEM bundle"),
            "{e}"
        );
    }

    /// A CA, a server certificate for `localhost` and a client certificate, all made here,
    /// and an HTTPS server on loopback that requires a client certificate from that CA.
    mod tls {
        use std::io::{Read, Write};
        use std::sync::Arc;

        pub struct Pki {
            pub ca_pem: String,
            pub client_pem: String,
            pub port: u16,
        }

        pub fn start() -> Pki {
            use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
            let server_key = KeyPair::generate().unwrap();
            let server = CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .signed_by(&server_key, &ca)
                .unwrap();
            let client_key = KeyPair::generate().unwrap();
            let client = CertificateParams::new(vec!["alice".to_owned()])
                .unwrap()
                .signed_by(&client_key, &ca)
                .unwrap();

            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .unwrap();
            let key =
                rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![server.der().clone()], key)
                .unwrap();
            let config = Arc::new(config);
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            std::thread::spawn(move || {
                for tcp in listener.incoming() {
                    let Ok(tcp) = tcp else { continue };
                    let config = config.clone();
                    std::thread::spawn(move || {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        let mut tls = rustls::StreamOwned::new(conn, tcp);
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            match tls.read(&mut byte) {
                                Ok(1) => head.push(byte[0]),
                                _ => return,
                            }
                        }
                        let _ = tls.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
                        );
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    });
                }
            });
            Pki {
                ca_pem: ca.pem(),
                client_pem: format!("{}{}", client.pem(), client_key.serialize_pem()),
                port,
            }
        }
    }

    #[test]
    fn tls_with_a_private_ca_and_a_client_certificate() {
        let pki = tls::start();
        let auth = |ca: bool, identity: bool| Auth {
            context: Some("prod".into()),
            ca_pem: ca.then(|| pki.ca_pem.clone().into_bytes()),
            identity_pem: identity.then(|| pki.client_pem.clone().into_bytes()),
            ..Auth::default()
        };
        let localhost = Url::parse(&format!("https://localhost:{}", pki.port)).unwrap();
        let c = Client::with_auth(localhost.clone(), auth(true, true)).unwrap();
        assert_eq!(c.send(Method::GET, &["apis"], None).unwrap().status, 200);

        let failure = |url: &Url, ca: bool, identity: bool| {
            let c = Client::with_auth(url.clone(), auth(ca, identity)).unwrap();
            format!("{:#}", c.send(Method::GET, &["apis"], None).err().unwrap())
        };
        // Unknown CA.
        let e = failure(&localhost, false, true);
        assert!(e.contains("--certificate-authority CA.pem"), "{e}");
        // The certificate is for localhost, not 127.0.0.1.
        let by_ip = Url::parse(&format!("https://127.0.0.1:{}", pki.port)).unwrap();
        let e = failure(&by_ip, true, true);
        assert!(
            e.contains("not for the host name of the address")
                && e.contains("--certificate-authority"),
            "{e}"
        );
        // No client certificate: the server ends the handshake.
        let e = failure(&localhost, true, false);
        assert!(e.contains("--client-certificate"), "{e}");
    }
}
