//! Push, pull and inspect against an OCI registry (oci-client underneath).
//!
//! * Plain HTTP only for loopback registries (127.0.0.0/8, `localhost`, `::1`) and for hosts
//!   named in [`RegistryOptions::plain_http`]; everything else is HTTPS.
//! * Credentials: cup runs the registry's challenge itself ([`token`]) and sends them to a
//!   token service only on the registry's own host (or one named in
//!   [`RegistryOptions::token_realms`]), and never over plain HTTP for an HTTPS registry.
//! * Push ([`push`]): refuses a module whose `cup.*` sections are not intact (unless forced), skips
//!   blobs the registry already has (HEAD), uploads each blob in one request (POST for the
//!   session, one PUT with the whole body: the fewest round trips) and falls back to
//!   chunked PATCHes if the registry refuses that. The manifest goes last, so a tag never
//!   names a manifest whose blobs are missing. These requests are our own, on one reqwest
//!   client ([`push_http`]), as are the pull's and inspect's; oci-client serves only the
//!   chunked uploads.
//! * Every request step is retried when the failure is transient, bounded and with
//!   backoff ([`crate::retry`]); a failed upload restarts with a fresh session.
//! * Pull ([`pull`]): accepted layouts are in [`crate::accept`]; sizes are checked against the
//!   descriptors while streaming (the transfer stops at the first byte too many), digests
//!   are checked before anything reaches the store, and blobs are committed before the
//!   `index.json` entry that names them. A manifest is read up to its cap (a larger
//!   `Content-Length` is refused unread), a config up to its descriptor's size.
//! * Inspect ([`inspect`]): the manifest (and a small config) only; the wasm is never downloaded.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::auth::{self, Credentials};
use crate::reference::ImageRef;
use crate::retry::{Retrier, RetryPolicy};
use crate::{Error, MAX_MANIFEST_BYTES, Result, digest, media};
use push_http::{PushHttp, RequestAuth};

mod inspect;
mod pull;
mod push;
mod push_http;
mod signatures;
pub use signatures::SIGNATURE_ARTIFACT_TYPE;
mod token;

pub use inspect::RemoteInspect;
pub use pull::{PullReport, PulledLayout};
pub use push::PushReport;

/// `User-Agent` of every registry request.
const USER_AGENT: &str = concat!("cup/", env!("CARGO_PKG_VERSION"));
/// How long a connection to a registry may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) reached over plain HTTP besides loopback ones.
    pub plain_http: Vec<String>,
    /// Which credentials to send, and where they come from.
    pub credentials: Credentials,
    /// Token services (`host` or `host:port`) on another host than the registry's that may
    /// receive its credentials when the registry's challenge names them (Docker Hub's
    /// `auth.docker.io` is always allowed for Docker Hub).
    pub token_realms: Vec<String>,
    /// Retries and the per-request timeout.
    pub retry: RetryPolicy,
}

/// A registry client (one per command; it holds only options).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    options: RegistryOptions,
}

/// A parsed reference with the names used in messages.
struct Target {
    reference: Reference,
    registry: String,
    whole: String,
}

/// Which registry-side error a failure is; [`Target::error`] makes it name the registry and
/// the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    NotFound,
    Unauthorized,
    Unreachable,
    Registry,
}

impl Blame {
    /// What an HTTP status says on its own: 401/403 refused, 404 missing, else the registry's.
    fn of_status(code: u16) -> Blame {
        match code {
            401 | 403 => Blame::Unauthorized,
            404 => Blame::NotFound,
            _ => Blame::Registry,
        }
    }
}

impl Target {
    /// An error of kind `blame` about this target's registry and reference.
    fn error(&self, blame: Blame, detail: String) -> Error {
        let (registry, reference) = (self.registry.clone(), self.whole.clone());
        match blame {
            Blame::NotFound => Error::NotFound {
                registry,
                reference,
                detail,
            },
            Blame::Unauthorized => Error::Unauthorized {
                registry,
                reference,
                detail,
            },
            Blame::Unreachable => Error::Unreachable {
                registry,
                reference,
                detail,
            },
            Blame::Registry => Error::Registry {
                registry,
                reference,
                detail,
            },
        }
    }

    fn parse(reference: &str) -> Result<Target> {
        let parsed = ImageRef::parse(reference)?;
        Ok(Target {
            registry: parsed.registry.clone(),
            whole: parsed.whole(),
            reference: parsed.to_oci(),
        })
    }

    fn what(&self, part: &str) -> String {
        format!("registry {}: {}: {part}", self.registry, self.whole)
    }

    /// `registry/repository@digest`.
    fn pinned(&self, digest: &str) -> String {
        format!(
            "{}/{}@{digest}",
            self.reference.registry(),
            self.reference.repository()
        )
    }
}

impl Registry {
    /// A client with these options; nothing is connected until a request is made.
    pub fn new(options: RegistryOptions) -> Registry {
        Registry { options }
    }

    /// Whether `registry` (`host[:port]`) is reached over plain HTTP.
    pub fn allows_plain_http(&self, registry: &str) -> bool {
        let host = host_of(registry);
        is_loopback(host)
            || self
                .options
                .plain_http
                .iter()
                .any(|h| h == registry || h == host)
    }

    /// oci-client, for pulls, inspections, credential challenges and chunked uploads.
    fn client(&self, target: &Target) -> Result<Client> {
        let registry = target.reference.resolve_registry();
        let protocol = if self.allows_plain_http(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_owned()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            tls_certs_only: loopback_trust_roots(registry),
            connect_timeout: Some(CONNECT_TIMEOUT),
            // A stalled registry (connection open, nothing sent) fails the request after
            // this long; the step is then retried. Not a total timeout: a big blob on a
            // slow link may take longer as long as bytes keep arriving.
            read_timeout: Some(self.options.retry.request_timeout),
            user_agent: USER_AGENT,
            // A controller is one manifest; an index is refused, not resolved.
            platform_resolver: None,
            ..Default::default()
        };
        // oci-client 0.18 also builds a default reqwest client, which panics when the
        // machine has no usable CA certificates (reqwest's `Client::default`). That is an
        // environment problem to report, not a crash.
        quiet_catch_unwind(AssertUnwindSafe(|| Client::new(config)))
            .map_err(|panic| https_setup_error(registry, target, panic_message(&panic)))
    }

    /// oci-client with the credentials cup's own challenge settled on ([`Registry::request_auth`]):
    /// a token (oci-client then asks nothing itself) or, for a registry that takes basic
    /// auth, the user's credentials.
    async fn oci_client(&self, target: &Target, auth: &RequestAuth) -> Result<Client> {
        let client = self.client(target)?;
        let auth = match auth {
            // oci-client asks `GET /v2/` before every request when anonymous credentials
            // are stored (it caches tokens only); storing none skips those round trips.
            RequestAuth::None => return Ok(client),
            RequestAuth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            RequestAuth::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        };
        client
            .store_auth_if_needed(target.reference.resolve_registry(), &auth)
            .await;
        Ok(client)
    }

    /// cup's own HTTP client for `target`, authenticated for `op`.
    async fn connect_http<'t>(
        &self,
        target: &'t Target,
        op: RegistryOperation,
        retrier: &Retrier<'_>,
    ) -> Result<PushHttp<'t>> {
        let registry = target.reference.resolve_registry();
        let settings = push_http::ClientSettings {
            registry,
            user_agent: USER_AGENT,
            connect_timeout: CONNECT_TIMEOUT,
            read_timeout: self.options.retry.request_timeout,
        };
        let http = push_http::client(&settings)
            .map_err(|detail| https_setup_error(registry, target, &detail))?;
        let scheme = self.scheme(registry);
        let auth = self
            .request_auth(target, &http, scheme, op, retrier)
            .await?;
        PushHttp::new(http, target, scheme, auth)
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.allows_plain_http(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// How cup's requests authenticate. Anonymous requests send nothing and ask nothing (a
    /// registry that wants credentials answers 401, reported as such). With credentials,
    /// the registry's challenge (`GET /v2/`) is run once: a Bearer challenge names a token
    /// service, which gets the credentials only if [`Registry::check_realm`] allows it, and
    /// the token is used from then on; otherwise the registry gets HTTP basic auth.
    async fn request_auth(
        &self,
        target: &Target,
        http: &reqwest::Client,
        scheme: &str,
        op: RegistryOperation,
        retrier: &Retrier<'_>,
    ) -> Result<RequestAuth> {
        let (username, password) = match auth::resolve(&self.options.credentials, &target.registry)?
        {
            RegistryAuth::Anonymous => return Ok(RequestAuth::None),
            RegistryAuth::Bearer(token) => return Ok(RequestAuth::Bearer(token)),
            RegistryAuth::Basic(username, password) => (username, password),
        };
        let registry = target.reference.resolve_registry();
        let base = format!("{scheme}://{registry}");
        let step = "authenticating";
        let challenge = retrier
            .run(step, || async {
                token::challenge(http, &base)
                    .await
                    .map_err(|f| f.failure(target, step))
            })
            .await?;
        let Some(challenge) = challenge else {
            return Ok(RequestAuth::Basic { username, password });
        };
        let realm = self.check_realm(registry, scheme, &challenge.realm)?;
        let scope = match op {
            RegistryOperation::Pull => format!("repository:{}:pull", target.reference.repository()),
            RegistryOperation::Push => {
                format!("repository:{}:pull,push", target.reference.repository())
            }
        };
        let step = format!("authenticating at {realm}");
        let token = retrier
            .run(&step, || async {
                token::fetch(
                    http,
                    realm.clone(),
                    &challenge,
                    &scope,
                    (&username, &password),
                )
                .await
                .map_err(|f| f.failure(target, &step))
            })
            .await?;
        Ok(RequestAuth::Bearer(token))
    }

    /// The token service a registry's challenge names, if the registry's credentials may go
    /// there: over HTTPS (plain HTTP only when the registry itself is spoken to in plain
    /// HTTP and the realm's host may be), on the registry's own host or one the user
    /// allowed ([`RegistryOptions::token_realms`]; Docker Hub's is built in).
    fn check_realm(&self, registry: &str, scheme: &str, realm: &str) -> Result<reqwest::Url> {
        let refuse = |detail: String| Error::Credentials {
            registry: registry.to_owned(),
            detail,
        };
        let url = reqwest::Url::parse(realm).map_err(|e| {
            refuse(format!(
                "the registry names the token service {realm:?}, which is not a URL ({e})"
            ))
        })?;
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        match url.scheme() {
            "https" => {}
            "http" if scheme == "http" && self.allows_plain_http(&authority) => {}
            "http" => {
                return Err(refuse(format!(
                    "the registry names the token service {realm} over plain HTTP; its \
                     credentials are not sent there (only a registry spoken to in plain HTTP \
                     may name a plain-HTTP token service, on a host allowed plain HTTP)"
                )));
            }
            other => {
                return Err(refuse(format!(
                    "the registry names the token service {realm}, whose scheme {other} is \
                     neither https nor http"
                )));
            }
        }
        let registry_host = host_of(registry)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let realm_host = host.trim_start_matches('[').trim_end_matches(']');
        let docker_hub = ["docker.io", "index.docker.io", "registry-1.docker.io"]
            .contains(&registry_host)
            && realm_host.eq_ignore_ascii_case("auth.docker.io");
        let allowed =
            realm_host.eq_ignore_ascii_case(registry_host)
                || docker_hub
                || self.options.token_realms.iter().any(|h| {
                    h.eq_ignore_ascii_case(&authority) || h.eq_ignore_ascii_case(realm_host)
                });
        if !allowed {
            return Err(refuse(format!(
                "the registry names the token service {realm}, on another host ({realm_host}); \
                 its credentials are not sent there unless that host is allowed with \
                 --allow-token-realm {realm_host}"
            )));
        }
        Ok(url)
    }
}

thread_local! {
    static PANIC_EXPECTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `catch_unwind` without the panic hook's report (and backtrace) on stderr: the caller turns
/// the panic into an error message of its own. Other threads' panics are reported as before.
fn quiet_catch_unwind<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PANIC_EXPECTED.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    PANIC_EXPECTED.with(|expected| expected.set(true));
    let result = std::panic::catch_unwind(f);
    PANIC_EXPECTED.with(|expected| expected.set(false));
    result
}

/// The text of a caught panic, when it has one.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panicked")
}

/// The TLS trust roots for a loopback registry: only a certificate whose key was thrown
/// away. A loopback registry is spoken to in plain HTTP, so the system's roots would never
/// be used, yet loading them (one file per root) is a measurable part of a short `cup` run. A
/// redirect from such a registry to an HTTPS host then fails verification: closed, not open.
/// Other registries get the system's roots (empty list).
fn loopback_trust_roots(registry: &str) -> Vec<Certificate> {
    if !is_loopback(host_of(registry)) {
        return Vec::new();
    }
    vec![Certificate {
        encoding: CertificateEncoding::Pem,
        data: include_bytes!("loopback-root.pem").to_vec(),
    }]
}

/// Fetches a manifest (at most [`MAX_MANIFEST_BYTES`], never more read), checks its digest
/// and returns it with its digest.
async fn fetch_manifest(
    http: &PushHttp<'_>,
    target: &Target,
    retrier: &Retrier<'_>,
) -> Result<(Vec<u8>, String)> {
    let step = "fetching the manifest";
    let what = target.what("manifest");
    let (body, announced) = retrier
        .run(step, || async {
            http.get_manifest(&media::ACCEPTED_MANIFESTS, MAX_MANIFEST_BYTES as u64, &what)
                .await
                .map_err(|f| f.failure(target, step))
        })
        .await?;
    // The digest is our own hash of the bytes, whatever headers said.
    let actual = digest::of(&body);
    if let Some(expected) = target.reference.digest()
        && expected != actual
    {
        return Err(Error::DigestMismatch {
            what: target.what("manifest"),
            expected: expected.to_owned(),
            actual,
        });
    }
    // A registry whose own digest of the bytes differs sent other bytes than it stored.
    if let Some(announced) = announced.filter(|d| d.starts_with(digest::SHA256_PREFIX))
        && announced != actual
    {
        return Err(Error::DigestMismatch {
            what: target.what("fetching the manifest: its Docker-Content-Digest"),
            expected: announced,
            actual,
        });
    }
    Ok((body, actual))
}

/// An HTTP client could not be built (no usable CA certificates, most likely): an environment
/// problem, said with its usual cause. `registry` is the one actually contacted.
fn https_setup_error(registry: &str, target: &Target, cause: &str) -> Error {
    Error::Registry {
        registry: registry.to_owned(),
        reference: target.whole.clone(),
        detail: format!(
            "cannot set up the HTTPS client ({cause}); is the ca-certificates package installed, or SSL_CERT_FILE set to a readable bundle?"
        ),
    }
}

/// An error and its sources, joined with ": ".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `host` of `host[:port]` (or of `[v6]:port`).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::pull::tag_name;
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_hosts() {
        let r = Registry::new(RegistryOptions {
            plain_http: vec!["reg.lan".into(), "other.lan:5000".into()],
            ..Default::default()
        });
        for yes in [
            "127.0.0.1:5000",
            "127.8.9.10",
            "localhost:5000",
            "[::1]:5000",
            "::1",
            "reg.lan:5000",
            "reg.lan",
            "other.lan:5000",
        ] {
            assert!(r.allows_plain_http(yes), "{yes}");
        }
        for no in [
            "128.0.0.1:5000",
            "example.com",
            "other.lan:5001",
            "localhost.example.com",
            "ghcr.io",
        ] {
            assert!(!r.allows_plain_http(no), "{no}");
        }
    }

    #[test]
    fn credentials_go_only_to_token_services_on_the_registrys_host_or_allowed_ones() {
        let r = Registry::new(RegistryOptions {
            token_realms: vec!["auth.example".into(), "127.0.0.3:7000".into()],
            ..Default::default()
        });
        let ok = |registry: &str, scheme: &str, realm: &str| {
            r.check_realm(registry, scheme, realm)
                .map(|u| u.to_string())
                .map_err(|e| e.to_string())
        };
        // The registry's own host, any port; an allowed host; Docker Hub's own service.
        for (registry, scheme, realm) in [
            ("ghcr.io", "https", "https://ghcr.io/token"),
            (
                "reg.example:5000",
                "https",
                "https://REG.example:5001/token",
            ),
            ("reg.example", "https", "https://auth.example/token"),
            ("index.docker.io", "https", "https://auth.docker.io/token"),
            ("127.0.0.1:5000", "http", "http://127.0.0.1:5001/token"),
            ("127.0.0.1:5000", "http", "http://127.0.0.3:7000/token"),
            ("[::1]:5000", "http", "http://[::1]:5001/token"),
        ] {
            ok(registry, scheme, realm).unwrap_or_else(|e| panic!("{realm}: {e}"));
        }
        // Another host; plain HTTP for an HTTPS registry (even on its own host); odd URLs.
        for (registry, scheme, realm, says) in [
            (
                "127.0.0.1:5999",
                "http",
                "http://127.0.0.2:5998/token",
                "--allow-token-realm 127.0.0.2",
            ),
            (
                "reg.example",
                "https",
                "https://evil.example/token",
                "another host",
            ),
            (
                "reg.example",
                "https",
                "http://reg.example/token",
                "plain HTTP",
            ),
            (
                "reg.example",
                "https",
                "http://auth.example/token",
                "plain HTTP",
            ),
            (
                "ghcr.io",
                "https",
                "https://auth.docker.io/token",
                "another host",
            ),
            (
                "127.0.0.1:5000",
                "http",
                "http://10.0.0.1/token",
                "plain HTTP",
            ),
            (
                "reg.example",
                "https",
                "file:///etc/passwd",
                "neither https nor http",
            ),
            ("reg.example", "https", "/token", "not a URL"),
        ] {
            let err = ok(registry, scheme, realm).expect_err(realm);
            assert!(err.contains(says), "{realm}: {err}");
        }
    }

    #[test]
    fn pinned_reference_keeps_registry_and_repository() {
        let t = Target::parse("127.0.0.1:5000/cup/flipt:v1").expect("parse");
        assert_eq!(t.pinned("sha256:ab"), "127.0.0.1:5000/cup/flipt@sha256:ab");
        assert_eq!(tag_name(&t).as_deref(), Some("127.0.0.1:5000/cup/flipt:v1"));
        assert!(Target::parse("Bad Ref").is_err());
    }
}
