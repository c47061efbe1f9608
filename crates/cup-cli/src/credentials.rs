//! A context's credentials made ready for requests: the bearer token read from its file or
//! obtained from its exec command, the client certificate and key as one PEM identity, the
//! CA bundle. Done once per command, before the first request.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use reqwest::Url;
use serde::Deserialize;

use crate::contexts::{Credentials, ExecConfig, Secret, Target, TokenSource};

/// How long an exec credential command may run: long enough for a plugin that refreshes a
/// token over the network, short enough that a hung one does not hang cup.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// An exec command's stdout is a small JSON document; more than this is not one.
const EXEC_OUTPUT_MAX: u64 = 1 << 20;

/// What the HTTP client presents.
#[derive(Default)]
pub struct Auth {
    /// The context the credentials come from, for messages (None: `-a` alone).
    pub context: Option<String>,
    pub token: Option<Secret>,
    /// Certificate then key, PEM.
    pub identity_pem: Option<Vec<u8>>,
    /// Extra trusted roots, PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// Whether the context has credentials at all (for the wording of a 401).
    pub configured: bool,
}

/// Reads and runs what `target`'s credentials name. A token bound for plain http to a
/// host other than loopback is refused before it is even obtained.
pub fn resolve(target: &Target) -> Result<Auth> {
    resolve_with(target, EXEC_TIMEOUT)
}

fn resolve_with(target: &Target, exec_timeout: Duration) -> Result<Auth> {
    let Credentials {
        token,
        client_identity,
        certificate_authority,
    } = &target.credentials;
    let context = target.context.clone();
    let name = context.as_deref().unwrap_or("-");
    if token.is_some() {
        check_token_transport(&target.address, name)?;
    }
    let token = match token {
        None => None,
        Some(TokenSource::Literal(secret)) => Some(secret.clone()),
        Some(TokenSource::File(path)) => Some(read_token_file(path, name)?),
        Some(TokenSource::Exec(exec)) => Some(
            exec_token(exec, exec_timeout)
                .with_context(|| format!("getting the token of context {name:?}"))?,
        ),
    };
    let identity_pem = match client_identity {
        None => None,
        Some((cert, key)) => {
            let mut pem = read_pem(cert, "client certificate", name)?;
            if !pem.ends_with(b"\n") {
                pem.push(b'\n');
            }
            pem.extend(read_pem(key, "client key", name)?);
            Some(pem)
        }
    };
    let ca_pem = certificate_authority
        .as_deref()
        .map(|ca| read_pem(ca, "certificate authority", name))
        .transpose()?;
    Ok(Auth {
        configured: !target.credentials.is_empty(),
        context,
        token,
        identity_pem,
        ca_pem,
    })
}

/// A bearer token over plain http can be read and replayed by anyone on the path, so it is
/// only sent over https, or over http to this machine (loopback: a local cupd, a port
/// forward or an SSH tunnel). kubectl refuses the same way.
pub fn check_token_transport(address: &Url, context: &str) -> Result<()> {
    if address.scheme() == "https" || is_loopback(address) {
        return Ok(());
    }
    bail!(
        "refusing to send the token of context {context:?} over plain http to {}: use an https:// address (plain http carries a token only to a loopback address)",
        address.host_str().unwrap_or_default()
    )
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed (`[::1]`).
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

fn read_pem(path: &Path, what: &str, context: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the {what} of context {context:?} ({})",
            path.display()
        )
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        bail!(
            "the {what} of context {context:?} ({}) is not PEM (no -----BEGIN line)",
            path.display()
        );
    }
    Ok(bytes)
}

/// The token in `path`: the whole file without surrounding whitespace (a trailing newline
/// is what editors and `echo` leave).
pub fn read_token_file(path: &Path, context: &str) -> Result<Secret> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the token file of context {context:?} ({})",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "the token file of context {context:?} ({}) is empty",
            path.display()
        );
    }
    if token.chars().any(char::is_whitespace) {
        bail!(
            "the token file of context {context:?} ({}) holds more than one word: expected one token",
            path.display()
        );
    }
    Ok(Secret(token.to_owned()))
}

/// Runs the exec credential command and returns `status.token` of the ExecCredential it
/// prints. No shell is involved; stdin is closed (cup's own stdin may be a resource being
/// applied), stderr is the user's (the plugin's prompts and errors show), stdout is read.
pub fn exec_token(exec: &ExecConfig, timeout: Duration) -> Result<Secret> {
    let command = &exec.command;
    let mut child = Command::new(command)
        .args(&exec.args)
        .envs(&exec.env)
        // What kubectl tells its plugins; cup never runs them interactively.
        .env(
            "KUBERNETES_EXEC_INFO",
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running the exec credential command {command:?}"))?;
    // stdout is read on a thread of its own, so a plugin that fills the pipe cannot block
    // the wait below, and the wait can give up at the deadline.
    let stdout = child.stdout.take().context("the command's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout
            .take(EXEC_OUTPUT_MAX + 1)
            .read_to_end(&mut out)
            .map(|_| out)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the exec command")? {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the exec credential command {command:?} did not finish within {} s",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "a signal".to_owned(),
        };
        bail!("the exec credential command {command:?} failed ({how}; its stderr is above)");
    }
    // A grandchild that keeps stdout open would keep the reader waiting: the same deadline
    // applies to it.
    let remaining = timeout.saturating_sub(started.elapsed());
    let deadline = Instant::now() + remaining;
    while !reader.is_finished() {
        if Instant::now() >= deadline {
            bail!(
                "the exec credential command {command:?} exited but its output did not end within {} s (a process it started keeps stdout open)",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading the exec command's output"))?
        .context("reading the exec command's output")?;
    if output.len() as u64 > EXEC_OUTPUT_MAX {
        bail!(
            "the exec credential command {command:?} printed more than {} bytes: not an ExecCredential",
            EXEC_OUTPUT_MAX
        );
    }
    parse_exec_credential(&output)
        .with_context(|| format!("the output of the exec credential command {command:?}"))
}

/// `status.token` of a Kubernetes ExecCredential (`client.authentication.k8s.io/v1` or
/// `v1beta1`). Errors never quote the output: it may hold a secret.
pub fn parse_exec_credential(output: &[u8]) -> Result<Secret> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ExecCredential {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
        status: Option<Status>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        token: Option<String>,
        client_certificate_data: Option<String>,
    }
    if output.iter().all(u8::is_ascii_whitespace) {
        bail!("is empty: expected an ExecCredential JSON object");
    }
    let credential: ExecCredential = serde_json::from_slice(output).map_err(|e| {
        anyhow::anyhow!(
            "is not an ExecCredential JSON object ({} at line {} column {})",
            classify(&e),
            e.line(),
            e.column()
        )
    })?;
    if credential.kind != "ExecCredential" {
        bail!("has kind {:?}: expected an ExecCredential", credential.kind);
    }
    if !matches!(
        credential.api_version.as_str(),
        "client.authentication.k8s.io/v1" | "client.authentication.k8s.io/v1beta1"
    ) {
        bail!(
            "has apiVersion {:?}: expected client.authentication.k8s.io/v1 (or v1beta1)",
            credential.api_version
        );
    }
    let status = credential
        .status
        .context("has no status: expected status.token")?;
    match status.token {
        Some(token) if !token.trim().is_empty() => Ok(Secret(token.trim().to_owned())),
        _ if status.client_certificate_data.is_some() => bail!(
            "holds a client certificate but no status.token: cup takes only tokens from exec commands (give certificates with --client-certificate and --client-key)"
        ),
        _ => bail!("has no status.token"),
    }
}

/// What kind of JSON error, without serde's message (which can quote the input).
fn classify(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "an I/O error",
        Category::Syntax => "invalid JSON",
        Category::Data => "a field of the wrong type",
        Category::Eof => "JSON cut short",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(script: &str) -> ExecConfig {
        ExecConfig {
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            ..ExecConfig::default()
        }
    }

    const GOOD: &str = r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"s3cret"}}"#;

    #[test]
    fn exec_credentials_give_the_token() {
        let token = exec_token(&exec(&format!("printf '%s' '{GOOD}'")), EXEC_TIMEOUT).unwrap();
        assert_eq!(token.0, "s3cret");
        assert_eq!(format!("{token:?}"), "<redacted>");
        let beta = GOOD.replace("/v1\"", "/v1beta1\"");
        assert_eq!(parse_exec_credential(beta.as_bytes()).unwrap().0, "s3cret");
        // args and env reach the command; the exec info tells it it is not interactive.
        let mut with_env = exec(
            r#"test "$1" = one && test "$CUP_TEST_X" = y && case "$KUBERNETES_EXEC_INFO" in *'"interactive":false'*) printf '%s' "$2";; *) exit 9;; esac"#,
        );
        with_env
            .args
            .extend(["sh".into(), "one".into(), GOOD.into()]);
        with_env.env.insert("CUP_TEST_X".into(), "y".into());
        assert_eq!(exec_token(&with_env, EXEC_TIMEOUT).unwrap().0, "s3cret");
    }

    #[test]
    fn bad_exec_output_is_refused_without_quoting_it() {
        let err = |output: &str| {
            format!(
                "{:#}",
                parse_exec_credential(output.as_bytes()).unwrap_err()
            )
        };
        for (output, expected) in [
            ("", "is empty"),
            ("token s3cret", "invalid JSON"),
            (
                "{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"s3cret\"",
                "JSON cut short",
            ),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"Secret","status":{"token":"s3cret"}}"#,
                "has kind \"Secret\"",
            ),
            (
                r#"{"apiVersion":"v1","kind":"ExecCredential","status":{"token":"s3cret"}}"#,
                "has apiVersion \"v1\"",
            ),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}"#,
                "has no status",
            ),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":""}}"#,
                "has no status.token",
            ),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"s3cret"}}"#,
                "cup takes only tokens",
            ),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":["s3cret"]}}"#,
                "a field of the wrong type",
            ),
        ] {
            let e = err(output);
            assert!(e.contains(expected), "{output}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn failing_slow_and_missing_exec_commands_are_clear_errors() {
        let e = format!(
            "{:#}",
            exec_token(&exec("echo s3cret; exit 3"), EXEC_TIMEOUT).unwrap_err()
        );
        assert!(e.contains("failed (exit status 3"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let started = Instant::now();
        let e = format!(
            "{:#}",
            exec_token(&exec("sleep 20"), Duration::from_millis(300)).unwrap_err()
        );
        assert!(e.contains("did not finish within 0.3 s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "killed at the deadline"
        );
        // Exits at once, but a background process keeps stdout open.
        let e = format!(
            "{:#}",
            exec_token(&exec("sleep 20 & exit 0"), Duration::from_millis(300)).unwrap_err()
        );
        assert!(e.contains("output did not end"), "{e}");
        let missing = ExecConfig {
            command: "/nonexistent/cup-credential".into(),
            ..ExecConfig::default()
        };
        let e = format!("{:#}", exec_token(&missing, EXEC_TIMEOUT).unwrap_err());
        assert!(
            e.starts_with("running the exec credential command \"/nonexistent/cup-credential\""),
            "{e}"
        );
        let e = format!(
            "{:#}",
            exec_token(&exec("printf not-json"), EXEC_TIMEOUT).unwrap_err()
        );
        assert!(e.contains("is not an ExecCredential JSON object"), "{e}");
    }

    fn target(address: &str, token: Option<TokenSource>) -> Target {
        Target {
            context: Some("prod".into()),
            address: Url::parse(address).unwrap(),
            namespace: "default".into(),
            namespace_from_flag: false,
            credentials: Credentials {
                token,
                ..Credentials::default()
            },
        }
    }

    #[test]
    fn a_token_never_goes_over_plain_http_to_another_host() {
        let literal = || Some(TokenSource::Literal(Secret("s3cret".into())));
        for address in [
            "http://cup.example.com:8181",
            "http://10.0.0.1:8181",
            "http://[2001:db8::1]:8181",
            "http://localhost.example.com",
        ] {
            let e = format!("{:#}", resolve(&target(address, literal())).err().unwrap());
            assert!(
                e.starts_with("refusing to send the token of context \"prod\" over plain http to "),
                "{address}: {e}"
            );
            assert!(!e.contains("s3cret"));
            // Nothing is run or read before the refusal.
            let never = Some(TokenSource::Exec(ExecConfig {
                command: "/nonexistent/never-run".into(),
                ..ExecConfig::default()
            }));
            let e = format!("{:#}", resolve(&target(address, never)).err().unwrap());
            assert!(e.starts_with("refusing"), "{e}");
            // Without a token, plain http is fine.
            assert!(resolve(&target(address, None)).is_ok());
        }
        for address in [
            "https://cup.example.com",
            "http://127.0.0.1:8181",
            "http://127.9.9.9",
            "http://[::1]:8181",
            "http://localhost:8181",
            "http://LOCALHOST.:1",
        ] {
            let auth = resolve(&target(address, literal())).unwrap();
            assert_eq!(auth.token.unwrap().0, "s3cret", "{address}");
        }
    }

    #[test]
    fn token_files_are_read_each_time_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let t = target("https://h", Some(TokenSource::File(file.clone())));
        assert_eq!(resolve(&t).unwrap().token.unwrap().0, "s3cret");
        std::fs::write(&file, "rotated\r\n").unwrap();
        assert_eq!(resolve(&t).unwrap().token.unwrap().0, "rotated");
        std::fs::write(&file, "\n").unwrap();
        let e = format!("{:#}", resolve(&t).err().unwrap());
        assert!(e.contains("is empty"), "{e}");
        std::fs::write(&file, "two words").unwrap();
        let e = format!("{:#}", resolve(&t).err().unwrap());
        assert!(
            e.contains("more than one word") && !e.contains("words"),
            "{e}"
        );
        std::fs::remove_file(&file).unwrap();
        let e = format!("{:#}", resolve(&t).err().unwrap());
        assert!(
            e.starts_with("reading the token file of context \"prod\""),
            "{e}"
        );
    }

    #[test]
    fn pem_files_are_checked_and_joined() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let mut t = target("https://h", None);
        t.credentials.client_identity = Some((cert.clone(), key.clone()));
        let pem = String::from_utf8(resolve(&t).unwrap().identity_pem.unwrap()).unwrap();
        assert!(
            pem.contains("-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----"),
            "{pem}"
        );
        std::fs::write(&key, "not pem").unwrap();
        let e = format!("{:#}", resolve(&t).err().unwrap());
        assert!(
            e.contains("client key of context \"prod\"") && e.contains("is not PEM"),
            "{e}"
        );
    }
}
