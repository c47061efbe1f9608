//! Reaching the remote: the network timeouts of every connection, how a remote is reached
//! ([`RemoteOptions`]), and the callbacks of each fetch or push, which offer credentials
//! (the URL's, a credentials file's, the ssh-agent's), check SSH host keys, and record why
//! authentication failed so the error can say so.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

use crate::{
    AuthProblem, BranchesOnly, CredentialStore, GitError, GitRepo, HostKeyError, PullRequests,
    SnapshotLimits, SnapshotRetention, WriteLimits, credentials, ssh,
};

/// Bounds every connection libgit2 makes to a remote (HTTP(S), `git://`, SSH): a connect
/// may take at most `connect`, and a connection may stay silent at most `silence` before the
/// fetch or push fails. Without them a remote that accepts and never answers holds the one
/// thread cupd runs remote calls on forever.
///
/// # Safety
/// libgit2 keeps these in unsynchronised globals: call this before any thread that may use
/// libgit2 is started (cupd does, first thing in `main`).
// git2 offers these settings only as unsafe setters of libgit2's globals.
#[allow(unsafe_code)]
pub unsafe fn set_network_timeouts(
    connect: std::time::Duration,
    silence: std::time::Duration,
) -> Result<(), GitError> {
    let millis = |d: std::time::Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: the caller promises no other thread uses libgit2 yet.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect))?;
        git2::opts::set_server_timeout_in_milliseconds(millis(silence))?;
    }
    Ok(())
}

/// How cupd reaches a remote and what it does with the proposals it pushes.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// HTTP(S) credentials for remotes whose URL has none.
    pub credentials: Option<CredentialStore>,
    /// known_hosts for SSH remotes; `None` = `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Told about every pushed proposal.
    pub pull_requests: Arc<dyn PullRequests>,
    /// What one write may put in its tree.
    pub write_limits: WriteLimits,
    /// What a commit's tree may hold to be read or written on.
    pub snapshot_limits: SnapshotLimits,
    /// How many snapshots (and bytes of them) are kept once unused.
    pub snapshot_retention: SnapshotRetention,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            credentials: None,
            known_hosts: None,
            pull_requests: Arc::new(BranchesOnly),
            write_limits: WriteLimits::default(),
            snapshot_limits: SnapshotLimits::default(),
            snapshot_retention: SnapshotRetention::default(),
        }
    }
}

/// What the callbacks of one remote operation learnt about a failure.
#[derive(Default)]
pub(crate) struct AuthState {
    problem: Option<AuthProblem>,
    /// `(user, socket)` once the agent was offered to the server.
    agent_offered: Option<(String, String)>,
}

/// Records why authentication failed; returns the error handed back to libgit2.
fn record(state: &Rc<RefCell<AuthState>>, problem: AuthProblem) -> git2::Error {
    let error = git2::Error::from_str(&problem.to_string());
    state.borrow_mut().problem = Some(problem);
    error
}

/// Offers the ssh-agent's keys for `user`, or says why not.
fn offer_agent(
    user: String,
    tried: bool,
    state: &Rc<RefCell<AuthState>>,
) -> Result<Cred, git2::Error> {
    if tried {
        let socket = std::env::var("SSH_AUTH_SOCK").unwrap_or_default();
        return Err(record(state, AuthProblem::KeyRefused { user, socket }));
    }
    let socket = ssh::agent_socket().map_err(|p| record(state, AuthProblem::Agent(p)))?;
    let credential = Cred::ssh_key_from_agent(&user);
    state.borrow_mut().agent_offered = Some((user, socket));
    credential
}

/// Offers the HTTP(S) user and password, or says why not.
fn offer_secret(
    secret: Option<&credentials::Secret>,
    tried: bool,
    file: Option<&PathBuf>,
    state: &Rc<RefCell<AuthState>>,
) -> Result<Cred, git2::Error> {
    match (secret, tried) {
        (Some(secret), false) => Cred::userpass_plaintext(&secret.username, &secret.password),
        (Some(secret), true) => Err(record(
            state,
            AuthProblem::Refused {
                origin: secret.origin.clone(),
            },
        )),
        (None, _) => Err(record(
            state,
            AuthProblem::NoCredentials {
                file: file.cloned(),
            },
        )),
    }
}

/// The login name SSH uses when the URL names no user, like `ssh` does.
fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "git".to_owned())
}

impl GitRepo {
    /// `text` (a libgit2 message) without the URL's secrets, should libgit2 quote them.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.display_url);
        let encoded = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned));
        let decoded = credentials::from_url(&self.url).map(|s| s.password);
        for secret in [encoded, decoded].into_iter().flatten() {
            if !secret.is_empty() {
                out = out.replace(&secret, "***");
            }
        }
        out
    }

    /// Callbacks for one remote operation; what goes wrong is recorded in `state`.
    pub(crate) fn callbacks(&self, state: &Rc<RefCell<AuthState>>) -> RemoteCallbacks<'static> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(self.credential_provider(state.clone()));
        callbacks.certificate_check(self.host_key_checker(state.clone()));
        callbacks
    }

    /// Answers libgit2's credential requests: the ssh-agent for SSH; for HTTP(S) the URL's
    /// userinfo, else the credentials file's matching line. Each is offered once: libgit2
    /// asks again after a refusal, and answering forever would hang the request.
    fn credential_provider(
        &self,
        state: Rc<RefCell<AuthState>>,
    ) -> impl FnMut(&str, Option<&str>, CredentialType) -> Result<Cred, git2::Error> + 'static {
        let store = self.options.credentials.as_ref();
        let secret = credentials::from_url(&self.url)
            .or_else(|| store.and_then(|store| store.lookup(&self.url)));
        let file = store.map(|s| s.path().to_owned());
        let (mut http_tried, mut ssh_tried) = (false, false);
        move |_, url_user, allowed| {
            let user = url_user.map_or_else(local_user, str::to_owned);
            if allowed.contains(CredentialType::SSH_KEY) {
                let offered = offer_agent(user, ssh_tried, &state);
                ssh_tried = true;
                offered
            } else if allowed.contains(CredentialType::USERNAME) {
                Cred::username(&user)
            } else {
                let offered = offer_secret(secret.as_ref(), http_tried, file.as_ref(), &state);
                http_tried = true;
                offered
            }
        }
    }

    /// Checks SSH host keys against known_hosts; TLS certificates are left to libgit2 and
    /// OpenSSL (the system roots).
    fn host_key_checker(
        &self,
        state: Rc<RefCell<AuthState>>,
    ) -> impl FnMut(&git2::cert::Cert<'_>, &str) -> Result<CertificateCheckStatus, git2::Error> + 'static
    {
        let known_hosts = self
            .options
            .known_hosts
            .clone()
            .or_else(ssh::default_known_hosts);
        let host_name = ssh::known_hosts_name(&self.url);
        move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let name = host_name.clone().unwrap_or_else(|| host.to_owned());
            let verdict = match (&known_hosts, hostkey.hostkey(), hostkey.hostkey_type()) {
                (None, _, _) => Err(HostKeyError::NoFile { host: name }),
                (Some(file), Some(key), Some(kind)) => {
                    ssh::check_host_key(file, &name, kind.name(), key)
                }
                (Some(_), _, _) => Err(HostKeyError::NoKey { host: name }),
            };
            verdict
                .map(|()| CertificateCheckStatus::CertificateOk)
                .map_err(|problem| record(&state, AuthProblem::HostKey(problem)))
        }
    }

    /// A failed fetch or push: the recorded authentication problem if there is one.
    pub(crate) fn remote_error(
        &self,
        operation: &'static str,
        error: &git2::Error,
        state: &Rc<RefCell<AuthState>>,
    ) -> Option<GitError> {
        let mut state = state.borrow_mut();
        let problem = state.problem.take().or_else(|| {
            // libssh2 may give up on the agent's keys without asking for more credentials.
            let refused =
                error.class() == git2::ErrorClass::Ssh && error.code() == git2::ErrorCode::Auth;
            let (user, socket) = state.agent_offered.take().filter(|_| refused)?;
            Some(AuthProblem::KeyRefused { user, socket })
        })?;
        Some(GitError::Auth {
            operation,
            url: self.display_url.clone(),
            problem: Box::new(problem),
        })
    }

    /// A failed push: the recorded authentication problem, else the error libgit2 gave
    /// (without anything secret in its message).
    pub(crate) fn push_error(
        &self,
        error: &git2::Error,
        state: &Rc<RefCell<AuthState>>,
    ) -> GitError {
        self.remote_error("pushing to", error, state)
            .unwrap_or_else(|| GitError::Push {
                url: self.display_url.clone(),
                reason: self.scrub(error.message()),
            })
    }
}
