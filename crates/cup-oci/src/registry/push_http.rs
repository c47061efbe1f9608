//! cup's own HTTP requests to a registry, on one reqwest client: the push's blob HEADs,
//! upload sessions, single-PUT uploads and manifest PUT; the pull's and inspect's manifest,
//! config and blob GETs; and the credential challenge ([`super::token`]).
//!
//! Why not oci-client here: its `Client` always builds a second, default reqwest client
//! next to the configured one, and that one loads the system's TLS roots (≈ 150 files)
//! even for a plain-HTTP loopback registry; with our own requests a push builds exactly
//! one client, whose connections (keep-alive) serve every request of the push. A pull
//! reads a manifest only up to its cap (oci-client reads any body whole before its size
//! can be judged), and credentials go only where cup decided they may go (oci-client would
//! send them to whatever token service a registry names). oci-client is still used for
//! chunked uploads to registries that refuse a single PUT.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::errors::{OciEnvelope, OciErrorCode};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::{Blame, Target, chain, loopback_trust_roots};
use crate::progress::Progress;
use crate::retry::{Failure, Verdict, status_verdict};
use crate::{Error, Result};

/// Longest registry error body kept in a message (a misconfigured proxy may answer with a
/// whole HTML page).
const MAX_ERROR_BODY: usize = 1024;

/// How cup's own requests to the registry authenticate.
#[derive(Clone)]
pub(super) enum RequestAuth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

/// A registry's answer that was not the one expected: what a failure is judged and
/// described from.
pub(super) struct Refusal {
    pub status: StatusCode,
    pub url: String,
    pub body: String,
}

impl Refusal {
    pub async fn from(mut response: reqwest::Response) -> Refusal {
        let status = response.status();
        let url = response.url().to_string();
        // The body only explains the status: read no more than a message's worth of it (a
        // hostile registry may send gigabytes), and a body that cannot be read leaves it
        // empty.
        let mut raw = Vec::new();
        while raw.len() <= MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let mut body = String::from_utf8_lossy(&raw).into_owned();
        if body.len() > MAX_ERROR_BODY {
            let mut end = MAX_ERROR_BODY;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push('…');
        }
        Refusal { status, url, body }
    }

    /// Whether the registry's error body carries one of these distribution-spec codes.
    pub fn has_code(&self, wanted: &[OciErrorCode]) -> bool {
        serde_json::from_str::<OciEnvelope>(&self.body)
            .is_ok_and(|envelope| envelope.errors.iter().any(|e| wanted.contains(&e.code)))
    }

    /// Whether a refused single-PUT upload means the registry does not take them (so
    /// chunked PATCHes may work), rather than a transient or a permanent failure. A
    /// registry that computed another digest than the one named (`DIGEST_INVALID`)
    /// received other bytes: sending them again in chunks would not help.
    pub fn refuses_single_put(&self) -> bool {
        if self.has_code(&[OciErrorCode::DigestInvalid]) {
            return false;
        }
        // A success other than 201 Created does not commit the blob (spec violation).
        self.status.is_success()
            || matches!(self.status.as_u16(), 400 | 405 | 411 | 413 | 415 | 416)
            || self.has_code(&[
                OciErrorCode::Unsupported,
                OciErrorCode::SizeInvalid,
                OciErrorCode::BlobUploadInvalid,
            ])
    }

    /// The failure to report: retried or not, described with registry and reference.
    pub fn failure(&self, target: &Target, doing: &str) -> Failure {
        let detail = if self.body.trim().is_empty() {
            format!("{doing}: {} answered {}", self.url, self.status)
        } else {
            format!(
                "{doing}: {} answered {}: {}",
                self.url,
                self.status,
                self.body.trim()
            )
        };
        let code = self.status.as_u16();
        let blame = if self.has_code(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
            Blame::Unauthorized
        } else {
            Blame::of_status(code)
        };
        let error = target.error(blame, detail);
        let verdict = if self.has_code(&[OciErrorCode::Toomanyrequests]) {
            status_verdict(429)
        } else if self.status.is_success() {
            Verdict::Fail
        } else {
            status_verdict(code)
        };
        Failure { error, verdict }
    }
}

/// One failed request: no answer at all (transport), an unexpected answer, or an answer
/// that breaks the protocol (no usable Location).
pub(super) enum Failed {
    Transport(reqwest::Error),
    Answer(Refusal),
    Protocol(String),
    /// What arrived is refused as it is (too large); the same registry would send it again.
    Content(Error),
}

impl Failed {
    pub fn failure(self, target: &Target, doing: &str) -> Failure {
        match self {
            Failed::Answer(refusal) => refusal.failure(target, doing),
            Failed::Transport(e) => transport_failure(target, doing, &e),
            // The same registry would break it the same way again.
            Failed::Protocol(what) => {
                Failure::permanent(target.error(Blame::Registry, format!("{doing}: {what}")))
            }
            Failed::Content(error) => Failure::permanent(error),
        }
    }
}

impl From<reqwest::Error> for Failed {
    fn from(e: reqwest::Error) -> Failed {
        Failed::Transport(e)
    }
}

/// A request that got no answer: connection refused or reset, a timeout (the registry went
/// silent), a body cut short. Worth repeating, except a redirect loop or a request built
/// wrong.
pub(super) fn transport_failure(target: &Target, doing: &str, e: &reqwest::Error) -> Failure {
    let blame = if e.is_connect() || e.is_timeout() {
        Blame::Unreachable
    } else {
        Blame::Registry
    };
    let error = target.error(blame, format!("{doing}: {}", chain(e)));
    let verdict = if e.is_redirect() || e.is_builder() {
        Verdict::Fail
    } else {
        Verdict::Retry { after: None }
    };
    Failure { error, verdict }
}

/// The requests of one push.
pub(super) struct PushHttp<'a> {
    http: reqwest::Client,
    target: &'a Target,
    /// `scheme://registry/v2/<repository>/`.
    base: Url,
    auth: RequestAuth,
}

/// How a push client is set up.
pub(super) struct ClientSettings<'a> {
    pub registry: &'a str,
    pub user_agent: &'static str,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// The one HTTP client of a push, trusting what oci-client's is told to trust
/// ([`loopback_trust_roots`]: for a loopback registry only a dead certificate, else the
/// system's roots).
pub(super) fn client(
    settings: &ClientSettings<'_>,
) -> std::result::Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(settings.user_agent)
        .connect_timeout(settings.connect_timeout)
        // A stalled registry (connection open, nothing sent) fails the request after this
        // long; the step is then retried. Not a total timeout: a big blob on a slow link
        // may take longer as long as the registry keeps reading.
        .read_timeout(settings.read_timeout);
    let roots = loopback_trust_roots(settings.registry);
    if !roots.is_empty() {
        let roots = roots
            .iter()
            .map(|root| reqwest::Certificate::from_pem(&root.data))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| chain(&e))?;
        builder = builder.tls_certs_only(roots);
    }
    builder.build().map_err(|e| chain(&e))
}

impl<'a> PushHttp<'a> {
    pub fn new(
        http: reqwest::Client,
        target: &'a Target,
        scheme: &str,
        auth: RequestAuth,
    ) -> Result<PushHttp<'a>> {
        let r = &target.reference;
        let text = format!("{scheme}://{}/v2/{}/", r.resolve_registry(), r.repository());
        let base = Url::parse(&text).map_err(|e| Error::InvalidReference {
            reference: target.whole.clone(),
            reason: format!("it gives no valid registry URL ({text}: {e})"),
        })?;
        Ok(PushHttp {
            http,
            target,
            base,
            auth,
        })
    }

    /// The same client and credentials for another reference of the same repository (the
    /// signatures' tag of a controller).
    pub fn for_target<'b>(&self, target: &'b Target) -> Result<PushHttp<'b>> {
        PushHttp::new(
            self.http.clone(),
            target,
            self.base.scheme(),
            self.auth.clone(),
        )
    }

    /// The credentials these requests carry.
    pub fn auth(&self) -> &RequestAuth {
        &self.auth
    }

    fn url(&self, path: &str) -> std::result::Result<Url, Failed> {
        self.base
            .join(path)
            .map_err(|e| Failed::Protocol(format!("cannot form the URL {path:?}: {e}")))
    }

    /// A request with the push's credentials, which are sent to the registry itself only
    /// (never to another host a Location header names; CVE-2020-15157).
    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let same_origin = url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default();
        let builder = self.http.request(method, url);
        match (&self.auth, same_origin) {
            (RequestAuth::Basic { username, password }, true) => {
                builder.basic_auth(username, Some(password))
            }
            (RequestAuth::Bearer(token), true) => builder.bearer_auth(token),
            _ => builder,
        }
    }

    /// Whether the repository already has the blob (`HEAD …/blobs/<digest>`).
    pub async fn blob_exists(&self, digest: &str) -> std::result::Result<bool, Failed> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let response = self.request(Method::HEAD, url).send().await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Failed::Answer(Refusal::from(response).await)),
        }
    }

    /// Opens an upload session (`POST …/blobs/uploads/`: 202 and a Location).
    pub async fn start_upload(&self) -> std::result::Result<Url, Failed> {
        let url = self.url("blobs/uploads/")?;
        let response = self
            .request(Method::POST, url)
            // Some registries want a length on every upload request, even an empty one.
            .header(CONTENT_LENGTH, 0)
            .send()
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Failed::Answer(Refusal::from(response).await));
        }
        location(&response)
            .ok_or_else(|| Failed::Protocol("202 Accepted without a usable Location".into()))
    }

    /// The whole blob in one PUT to the session (`?digest=`: 201 Created); the body is the
    /// blob's bytes without a copy, in 1 MiB slices that move the progress bar.
    pub async fn put_blob(
        &self,
        session: Url,
        data: &Bytes,
        digest: &str,
        progress: &Arc<dyn Progress>,
    ) -> std::result::Result<(), Failed> {
        let mut url = session;
        url.query_pairs_mut().append_pair("digest", digest);
        let response = self
            .request(Method::PUT, url)
            .header(CONTENT_LENGTH, data.len())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(progress_stream(
                data.clone(),
                progress.clone(),
            )))
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(Failed::Answer(Refusal::from(response).await));
        }
        Ok(())
    }

    /// The manifest the reference names (`GET …/manifests/<digest or tag>`), at most `cap`
    /// bytes, with the `Docker-Content-Digest` the registry sent, if any.
    pub async fn get_manifest(
        &self,
        accept: &[&str],
        cap: u64,
        what: &str,
    ) -> std::result::Result<(Vec<u8>, Option<String>), Failed> {
        let r = &self.target.reference;
        let name = r.digest().or(r.tag()).unwrap_or("latest");
        let url = self.url(&format!("manifests/{name}"))?;
        let response = self
            .request(Method::GET, url)
            .header(ACCEPT, accept.join(", "))
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            return Err(Failed::Answer(Refusal::from(response).await));
        }
        let digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((read_capped(response, cap, what).await?, digest))
    }

    /// A blob (`GET …/blobs/<digest>`; redirects to blob storage are followed, without the
    /// credentials when they leave the registry): the response, to be streamed or read
    /// with [`read_capped`].
    pub async fn get_blob(&self, digest: &str) -> std::result::Result<reqwest::Response, Failed> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let response = self.request(Method::GET, url).send().await?;
        if response.status() != StatusCode::OK {
            return Err(Failed::Answer(Refusal::from(response).await));
        }
        Ok(response)
    }

    /// The referrers of the manifest `subject` with `artifact_type` (OCI 1.1:
    /// `GET …/referrers/<digest>?artifactType=`), an image index of at most `cap` bytes;
    /// `None` when the registry has no referrers API (it answers 404 there).
    pub async fn get_referrers(
        &self,
        subject: &str,
        artifact_type: &str,
        cap: u64,
        what: &str,
    ) -> std::result::Result<Option<Vec<u8>>, Failed> {
        let mut url = self.url(&format!("referrers/{subject}"))?;
        url.query_pairs_mut()
            .append_pair("artifactType", artifact_type);
        let response = self
            .request(Method::GET, url)
            .header(ACCEPT, "application/vnd.oci.image.index.v1+json")
            .send()
            .await?;
        match response.status() {
            StatusCode::OK => Ok(Some(read_capped(response, cap, what).await?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Failed::Answer(Refusal::from(response).await)),
        }
    }

    /// PUTs the manifest under the reference's digest, else its tag; returns where the
    /// registry says it stored it (`…/manifests/<digest it computed>`), if it says.
    pub async fn put_manifest(
        &self,
        body: Vec<u8>,
        content_type: &str,
    ) -> std::result::Result<Option<String>, Failed> {
        let r = &self.target.reference;
        let name = r.digest().or(r.tag()).unwrap_or("latest");
        let url = self.url(&format!("manifests/{name}"))?;
        let response = self
            .request(Method::PUT, url)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(Failed::Answer(Refusal::from(response).await));
        }
        // Both name the digest the registry computed; Location is the one the spec requires.
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(header(LOCATION.as_str()).or_else(|| {
            header("Docker-Content-Digest").map(|digest| format!("/manifests/{digest}"))
        }))
    }
}

/// Reads a body of at most `cap` bytes: a `Content-Length` over it is refused before any
/// byte is read, and the transfer stops at the first byte past it (a chunked body has no
/// length to check up front). `what` names the content in the error.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    what: &str,
) -> std::result::Result<Vec<u8>, Failed> {
    let too_large = |reason: String| {
        Failed::Content(Error::TooLarge {
            what: what.to_owned(),
            reason,
        })
    };
    if let Some(announced) = response.content_length()
        && announced > cap
    {
        return Err(too_large(format!(
            "its Content-Length {announced} is over the limit of {cap} bytes (not read)"
        )));
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = response.chunk().await? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(too_large(format!(
                "the body did not end within the limit of {cap} bytes (read no further)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A Location header, absolute or relative to the request's URL.
fn location(response: &reqwest::Response) -> Option<Url> {
    let value = response.headers().get(LOCATION)?.to_str().ok()?;
    response.url().join(value).ok()
}

/// A stream of the blob in 1 MiB slices (no copies) that reports progress as it goes.
fn progress_stream(
    data: Bytes,
    progress: Arc<dyn Progress>,
) -> impl futures_util::Stream<Item = std::result::Result<Bytes, std::convert::Infallible>>
+ Send
+ 'static {
    const SLICE: usize = 1 << 20;
    let slices: Vec<Bytes> = (0..data.len())
        .step_by(SLICE)
        .map(|start| data.slice(start..(start + SLICE).min(data.len())))
        .collect();
    futures_util::stream::iter(slices).map(move |slice| {
        progress.advance(slice.len() as u64);
        Ok(slice)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, body: &str) -> Refusal {
        Refusal {
            status: StatusCode::from_u16(status).expect("status"),
            url: "http://127.0.0.1:5000/v2/cup/x/blobs/uploads/u".into(),
            body: body.into(),
        }
    }

    fn envelope(code: &str) -> String {
        format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#)
    }

    #[test]
    fn refused_single_puts_fall_back_to_chunks_unless_the_bytes_were_wrong() {
        for status in [400, 405, 411, 413, 415, 416, 200, 202] {
            assert!(refusal(status, "").refuses_single_put(), "{status}");
        }
        assert!(refusal(500, &envelope("UNSUPPORTED")).refuses_single_put());
        assert!(refusal(409, &envelope("BLOB_UPLOAD_INVALID")).refuses_single_put());
        assert!(!refusal(400, &envelope("DIGEST_INVALID")).refuses_single_put());
        for status in [401, 403, 404, 429, 500, 502, 503] {
            assert!(!refusal(status, "").refuses_single_put(), "{status}");
        }
    }

    #[test]
    fn answers_are_judged_and_described() {
        let target = Target::parse("127.0.0.1:5000/cup/x:v1").expect("target");
        let f = refusal(503, "busy").failure(&target, "uploading wasm layer sha256:ab");
        assert_eq!(f.verdict, Verdict::Retry { after: None });
        let text = f.error.to_string();
        for part in [
            "127.0.0.1:5000",
            "cup/x:v1",
            "uploading wasm layer",
            "503",
            "busy",
        ] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
        let f = refusal(401, "").failure(&target, "checking");
        assert!(matches!(f.error, Error::Unauthorized { .. }));
        assert_eq!(f.verdict, Verdict::Fail);
        let f = refusal(404, "").failure(&target, "checking");
        assert!(matches!(f.error, Error::NotFound { .. }));
        let f = refusal(400, &envelope("TOOMANYREQUESTS")).failure(&target, "x");
        assert!(matches!(f.verdict, Verdict::Retry { after: Some(_) }));
        let f = refusal(400, &envelope("DIGEST_INVALID")).failure(&target, "x");
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(f.error.to_string().contains("DIGEST_INVALID"));
        // A success other than the one expected is a protocol breach, not retried.
        assert_eq!(
            refusal(200, "").failure(&target, "x").verdict,
            Verdict::Fail
        );
    }
}
