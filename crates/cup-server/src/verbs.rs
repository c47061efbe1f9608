//! Running one verb on a route's controller, whatever its kind.
//!
//! Template controllers work on the source directory directly (writes are atomic per
//! file). Wasm controllers follow the original's ABI: argv
//! `["wasi", verb, Kind, namespace, name?]`, the resource on stdin for put (compact Go JSON
//! and a newline), the source mounted at `/` read-only for get/list and writable for
//! put/delete (on a scratch copy, see `source`), exit 0 ok, 2 not found, anything else an
//! error whose message carries the guest's stderr.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cup_git::WriteLimits;
use cup_model::Resource;
use cup_model::compact_go_json;
use cup_runtime::{Access, ControllerError, Invocation, InvokeError, LoadedController, Outcome};
use cup_template::Request;

use crate::error::ApiError;
use crate::git::GitSource;
use crate::inline_reads::InlineReads;
use crate::metrics::Metrics;
use crate::routes::{Backend, Route};
use crate::source::{
    LocalSource, ReadView, ScratchPlace, Source, ViewLock, WriteError, with_scratch_copy,
};

/// Longest piece of guest stderr put into an error message.
const STDERR_IN_MESSAGE: usize = 1024;

/// One request: the route, the namespace and where the data lives.
pub struct Call<'a> {
    pub route: &'a Arc<Route>,
    pub namespace: &'a str,
    pub source: &'a Arc<Source>,
    /// `?revision=`: git source only (the default branch when `None`).
    pub revision: Option<&'a str>,
    pub metrics: &'a Metrics,
    /// Which wasm reads may run on this task rather than on the blocking pool.
    pub inline_reads: &'a InlineReads,
    /// Who asked (on a guarded server), for the Git source's commits.
    pub requested_by: Option<&'a cup_access::Caller>,
    /// How Git commits name who asked.
    pub record_user: crate::access::RecordUser,
}

/// What an accepted write did.
pub enum Written {
    /// Local source: applied in place.
    Applied,
    /// Git source: committed and pushed as a proposal branch.
    Proposed(cup_git::Proposal),
    /// Git source: the controller changed nothing.
    Unchanged,
}

#[derive(Clone, Copy)]
enum Verb {
    Get,
    List,
    Put,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }
}

impl Call<'_> {
    pub async fn get(&self, name: &str) -> Result<Resource, ApiError> {
        match self.backend()? {
            Backend::Template(t) => {
                let (req, n) = (self.owned_request(), name.to_owned());
                let out = self
                    .read_in(move |root| t.get(root, &req.borrow(), &n))
                    .await?;
                self.template_result(Verb::Get, Some(name), out)
            }
            Backend::Wasm(c) => {
                let out = self.invoke_read(c, Verb::Get, Some(name)).await?;
                first_resource(&out.stdout).map_err(|e| self.failure(Verb::Get, Some(name), &e))
            }
        }
    }

    /// Every resource of the namespace; a wasm controller may list at most `max_items`
    /// (`listing`).
    pub async fn list(&self, max_items: usize) -> Result<Vec<Resource>, ApiError> {
        match self.backend()? {
            Backend::Template(t) => {
                let req = self.owned_request();
                let out = self
                    .read_in(move |root| t.list(root, &req.borrow()))
                    .await?;
                self.template_result(Verb::List, None, out)
            }
            Backend::Wasm(c) => {
                let out = self.invoke_read(c, Verb::List, None).await?;
                all_resources(&out.stdout, max_items)
                    .map_err(|e| self.failure(Verb::List, None, &e))
            }
        }
    }

    pub async fn put(&self, name: &str, resource: Resource) -> Result<Written, ApiError> {
        let local = match self.local_for_write()? {
            Ok(local) => local,
            Err(git) => return self.git_write(git, Verb::Put, name, Some(resource)).await,
        };
        match self.backend()? {
            Backend::Template(t) => {
                let req = self.owned_request();
                let n = name.to_owned();
                let out = local
                    .write(move |root, view| {
                        let _exclusive = view.exclusive();
                        t.put(root, &req.borrow(), &n, &resource)
                    })
                    .await
                    .map_err(|e| ApiError::internal(format!("put: {e}")))?;
                self.template_result(Verb::Put, Some(name), out)
                    .map(|_| Written::Applied)
            }
            Backend::Wasm(c) => {
                let stdin = put_stdin(&resource)?;
                self.invoke_write(local, c, Verb::Put, name, stdin)
                    .await
                    .map(|()| Written::Applied)
            }
        }
    }

    pub async fn delete(&self, name: &str) -> Result<Written, ApiError> {
        let local = match self.local_for_write()? {
            Ok(local) => local,
            Err(git) => return self.git_write(git, Verb::Delete, name, None).await,
        };
        match self.backend()? {
            Backend::Template(t) => {
                let req = self.owned_request();
                let n = name.to_owned();
                let out = local
                    .write(move |root, view| {
                        let _exclusive = view.exclusive();
                        t.delete(root, &req.borrow(), &n)
                    })
                    .await
                    .map_err(|e| ApiError::internal(format!("delete: {e}")))?;
                self.template_result(Verb::Delete, Some(name), out)
                    .map(|_| Written::Applied)
            }
            Backend::Wasm(c) => self
                .invoke_write(local, c, Verb::Delete, name, Vec::new())
                .await
                .map(|()| Written::Applied),
        }
    }

    /// Runs a blocking read on the directory reads see: the local root (while no write is
    /// applied to it), or the git snapshot of the revision.
    async fn read_in<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Path) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (root, reading) = self.read_view().await?;
        // Held by the read itself too: it may outlive this future (a client gone away).
        let lease = reading.snapshot();
        let out = blocking(move || {
            let _lease = lease;
            read(&root)
        })
        .await;
        finish_read(reading)?;
        out
    }

    /// The tree a read runs on, and what keeps it as it is until [`finish_read`]: for the
    /// local source a share of the view lock, for git the lease on the snapshot (which never
    /// changes, and is not removed while leased).
    async fn read_view(&self) -> Result<(PathBuf, Reading), ApiError> {
        match &**self.source {
            Source::Local(local) => {
                self.no_revision()?;
                let view = local.reading().await;
                Ok((local.root().to_owned(), Reading::Local(view)))
            }
            Source::Git(git) => {
                let snapshot = git.view(self.revision).await?;
                Ok((snapshot.path().to_owned(), Reading::Git(snapshot)))
            }
        }
    }

    /// `Ok(Ok(local))` or `Ok(Err(git))`, so each write path can pick its source.
    fn local_for_write(&self) -> Result<Result<&LocalSource, &GitSource>, ApiError> {
        match &**self.source {
            Source::Local(local) => {
                self.no_revision()?;
                Ok(Ok(local))
            }
            Source::Git(git) => Ok(Err(git)),
        }
    }

    fn no_revision(&self) -> Result<(), ApiError> {
        match self.revision {
            Some(_) => Err(ApiError::bad_request(
                "?revision= needs the git source (-api-source git); the local source has one tree",
            )),
            None => Ok(()),
        }
    }

    /// A put (`resource` given) or delete on a fresh checkout of the revision; the
    /// controller's changes are kept only if it succeeded, and become a proposal.
    async fn git_write(
        &self,
        git: &GitSource,
        verb: Verb,
        name: &str,
        resource: Option<Resource>,
    ) -> Result<Written, ApiError> {
        let route = self.route;
        // The original cup's messages, which existing history and tooling may match on: put
        // names the body's apiVersion and kind, delete the route's group/version/plural.
        let message = match &resource {
            Some(r) => format!(
                "feat: update {}/{} {}/{}",
                r.api_version, r.kind, r.metadata.namespace, r.metadata.name
            ),
            None => format!(
                "feat: delete {}/{}/{} {}/{name}",
                route.group, route.version, route.plural, self.namespace
            ),
        };
        let (message, author) =
            crate::access::commit_identity(self.record_user, self.requested_by, message);
        let proposal = match self.backend()? {
            Backend::Template(t) => {
                let (req, n) = (self.owned_request(), name.to_owned());
                let (out, proposal) = git
                    .propose(self.revision, message, author.clone(), move |dir| {
                        let out = match &resource {
                            Some(r) => t.put(dir, &req.borrow(), &n, r).map(drop),
                            None => t.delete(dir, &req.borrow(), &n).map(drop),
                        };
                        let ok = out.is_ok();
                        (out, ok)
                    })
                    .await?;
                self.template_result(verb, Some(name), out)?;
                proposal
            }
            Backend::Wasm(c) => {
                let args = self.argv(verb, Some(name));
                let stdin = match &resource {
                    Some(r) => put_stdin(r)?,
                    None => Vec::new(),
                };
                let (out, proposal) = git
                    .propose(self.revision, message, author.clone(), move |dir| {
                        let out = c.invoke(Invocation {
                            args,
                            stdin,
                            root: dir.to_owned(),
                            access: Access::ReadWrite,
                        });
                        let ok = matches!(&out, Ok(o) if o.exit_code == 0);
                        (out, ok)
                    })
                    .await?;
                self.judge(verb, Some(name), out)?;
                proposal
            }
        };
        Ok(proposal.map_or(Written::Unchanged, Written::Proposed))
    }

    fn backend(&self) -> Result<Backend, ApiError> {
        let handle = &self.route.controller;
        handle.backend.clone().map_err(|reason| {
            ApiError::unavailable(format!(
                "controller {:?} is unavailable: {reason}",
                handle.name
            ))
        })
    }

    fn owned_request(&self) -> OwnedRequest {
        OwnedRequest {
            group: self.route.group.clone(),
            version: self.route.version.clone(),
            kind: self.route.kind.clone(),
            namespace: self.namespace.to_owned(),
        }
    }

    /// `group/version/Kind/namespace[/name]`, the original's request string.
    fn request_id(&self, name: Option<&str>) -> String {
        let r = &self.route;
        let mut id = format!("{}/{}/{}/{}", r.group, r.version, r.kind, self.namespace);
        if let Some(n) = name {
            id.push('/');
            id.push_str(n);
        }
        id
    }

    fn failure(&self, verb: Verb, name: Option<&str>, why: &str) -> ApiError {
        ApiError::internal(format!(
            "wasm.{}: {}: {why}",
            verb.as_str(),
            self.request_id(name)
        ))
    }

    fn template_result<T>(
        &self,
        verb: Verb,
        name: Option<&str>,
        out: Result<T, cup_template::Error>,
    ) -> Result<T, ApiError> {
        let outcome = match &out {
            Ok(_) => "ok",
            Err(cup_template::Error::NotFound { .. }) => "not_found",
            Err(_) => "error",
        };
        self.metrics
            .invocation(&self.route.controller.name, verb.as_str(), outcome);
        out.map_err(|e| {
            let message = format!("template.{}: {}: {e}", verb.as_str(), self.request_id(name));
            match e {
                cup_template::Error::NotFound { .. } => ApiError::not_found(message),
                _ => ApiError::internal(message),
            }
        })
    }

    fn argv(&self, verb: Verb, name: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "wasi".to_owned(),
            verb.as_str().to_owned(),
            self.route.kind.clone(),
            self.namespace.to_owned(),
        ];
        args.extend(name.map(str::to_owned));
        args
    }

    /// get and list run on this task while the inline budget allows (`inline_reads`): no hand-off
    /// to another thread and back. Beyond it the guest runs on the blocking pool.
    async fn invoke_read(
        &self,
        controller: LoadedController,
        verb: Verb,
        name: Option<&str>,
    ) -> Result<Outcome, ApiError> {
        let (root, reading) = self.read_view().await?;
        let invocation = Invocation {
            args: self.argv(verb, name),
            stdin: Vec::new(),
            root,
            access: Access::ReadOnly,
        };
        let result = match self.inline_reads.try_take() {
            Some(_inline) => controller.invoke_async(invocation).await,
            None => {
                let lease = reading.snapshot();
                blocking(move || {
                    let _lease = lease;
                    controller.invoke(invocation)
                })
                .await?
            }
        };
        finish_read(reading)?;
        self.judge(verb, name, result)
    }

    async fn invoke_write(
        &self,
        local: &LocalSource,
        controller: LoadedController,
        verb: Verb,
        name: &str,
        stdin: Vec<u8>,
    ) -> Result<(), ApiError> {
        let args = self.argv(verb, Some(name));
        let (place, limits) = (local.scratch(), local.limits());
        let result = local
            .write(move |root, view| {
                write_on_scratch(&place, root, view, &limits, &controller, args, stdin)
            })
            .await
            .map_err(|e| ApiError::internal(format!("{}: {e}", verb.as_str())))?;
        let result = result.map_err(|e| {
            let message = format!(
                "wasm.{}: {}: {e}",
                verb.as_str(),
                self.request_id(Some(name))
            );
            if e.is_conflict() {
                ApiError::new(axum::http::StatusCode::CONFLICT, message)
            } else {
                ApiError::internal(message)
            }
        })?;
        self.judge(verb, Some(name), result).map(drop)
    }

    /// Maps an invocation's end to the API: exit 0 ok, 2 not found (404), anything else 500;
    /// a component's `invalid` error is the client's fault (400). A component's error message
    /// takes the place a command's stderr has in the answer.
    fn judge(
        &self,
        verb: Verb,
        name: Option<&str>,
        result: Result<Outcome, InvokeError>,
    ) -> Result<Outcome, ApiError> {
        let controller = &self.route.controller.name;
        let detail = |o: &Outcome| match &o.error {
            Some(error) => with_stderr(error.message().as_bytes()),
            None => with_stderr(&o.stderr),
        };
        let (outcome_label, error) = match &result {
            Ok(o) if o.exit_code == 0 && o.error.is_none() => ("ok", None),
            Ok(
                o @ Outcome {
                    error: Some(ControllerError::Invalid(_)),
                    ..
                },
            ) => (
                "invalid",
                Some(ApiError::bad_request(format!(
                    "wasm.{}: {}: invalid{}",
                    verb.as_str(),
                    self.request_id(name),
                    detail(o)
                ))),
            ),
            Ok(o) if o.exit_code == 2 => (
                "not_found",
                Some(ApiError::not_found(format!(
                    "wasm.{}: {}: resource not found{}",
                    verb.as_str(),
                    self.request_id(name),
                    detail(o)
                ))),
            ),
            Ok(o @ Outcome { error: Some(_), .. }) => (
                "error",
                Some(self.failure(verb, name, &format!("controller failed{}", detail(o)))),
            ),
            Ok(o) => (
                "error",
                Some(self.failure(
                    verb,
                    name,
                    &format!(
                        "controller exited with code {}{}",
                        o.exit_code,
                        with_stderr(&o.stderr)
                    ),
                )),
            ),
            Err(e) => (
                "error",
                Some(self.failure(verb, name, &format!("{e}{}", with_stderr(e.stderr())))),
            ),
        };
        self.metrics
            .invocation(controller, verb.as_str(), outcome_label);
        match (result, error) {
            (Ok(outcome), None) => Ok(outcome),
            (_, Some(error)) => Err(error),
            (Err(_), None) => Err(self.failure(verb, name, "invocation failed")),
        }
    }
}

/// A put's stdin: the resource as compact Go JSON and a newline.
fn put_stdin(resource: &Resource) -> Result<Vec<u8>, ApiError> {
    let mut stdin = compact_go_json(
        &serde_json::to_vec(resource)
            .map_err(|e| ApiError::internal(format!("encoding the resource: {e}")))?,
    );
    stdin.push(b'\n');
    Ok(stdin)
}

/// `cup_template::Request` borrows; blocking closures need owned strings.
struct OwnedRequest {
    group: String,
    version: String,
    kind: String,
    namespace: String,
}

impl OwnedRequest {
    fn borrow(&self) -> Request<'_> {
        Request {
            group: &self.group,
            version: &self.version,
            kind: &self.kind,
            namespace: &self.namespace,
        }
    }
}

/// Runs a put/delete on a scratch copy of `root`; changes reach `root` only on exit 0.
/// A non-zero exit is returned as an `Outcome` (so 2 still means not found), but its
/// changes are dropped.
fn write_on_scratch(
    place: &ScratchPlace,
    root: &Path,
    view: &ViewLock,
    limits: &WriteLimits,
    controller: &LoadedController,
    args: Vec<String>,
    stdin: Vec<u8>,
) -> Result<Result<Outcome, InvokeError>, WriteError> {
    let run = |scratch: &Path| -> Result<Outcome, Result<Outcome, InvokeError>> {
        let outcome = controller.invoke(Invocation {
            args,
            stdin,
            root: scratch.to_owned(),
            access: Access::ReadWrite,
        });
        match outcome {
            Ok(o) if o.exit_code == 0 => Ok(o),
            other => Err(other),
        }
    };
    Ok(match with_scratch_copy(place, root, view, limits, run)? {
        Ok(outcome) => Ok(outcome),
        Err(unapplied) => unapplied,
    })
}

/// What keeps a read's tree as it is while the read runs.
enum Reading {
    /// A share of the local source's view lock.
    Local(ReadView),
    /// The lease on a git snapshot.
    Git(cup_git::Snapshot),
}

impl Reading {
    /// Another hold on the git snapshot, for work that may outlive the request.
    fn snapshot(&self) -> Option<cup_git::Snapshot> {
        match self {
            Reading::Local(_) => None,
            Reading::Git(snapshot) => Some(snapshot.clone()),
        }
    }
}

/// Ends a read: a read of the local tree that outlived its hold on it while a write was
/// applied is answered 503 (the client retries), never with what it read; a git snapshot's
/// lease is given back.
fn finish_read(reading: Reading) -> Result<(), ApiError> {
    match reading {
        Reading::Local(view) => view
            .finish()
            .map_err(|stale| ApiError::unavailable(stale.to_string())),
        Reading::Git(_) => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(worker_failed)
}

fn worker_failed(error: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("request worker failed: {error}"))
}

/// `": <stderr>"` with the guest's stderr trimmed to one line, or nothing.
fn with_stderr(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return String::new();
    }
    let cut: String = line.chars().take(STDERR_IN_MESSAGE).collect();
    format!(": {cut}")
}

/// The first JSON value of a get's stdout (the rest is ignored, as in the original).
fn first_resource(stdout: &[u8]) -> Result<Resource, String> {
    match serde_json::Deserializer::from_slice(stdout)
        .into_iter::<Resource>()
        .next()
    {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(format!("decoding the controller's output: {e}")),
        None => Err("the controller wrote no resource to stdout".into()),
    }
}

/// Every JSON value of a list's stdout, refused past `max_items` values.
fn all_resources(stdout: &[u8], max_items: usize) -> Result<Vec<Resource>, String> {
    crate::listing::decode(stdout, max_items).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_becomes_one_trimmed_line() {
        assert_eq!(
            with_stderr(b"  flag \"x\" not found\n  in file\n"),
            ": flag \"x\" not found in file"
        );
        assert_eq!(with_stderr(b" \n"), "");
    }

    #[test]
    fn outputs_decode_like_the_original() {
        let one = br#"{"apiVersion":"a","kind":"K","metadata":{"name":"x"},"spec":{}} garbage"#;
        assert_eq!(first_resource(one).unwrap().metadata.name, "x");
        assert!(first_resource(b"").is_err());
        let many = b"{\"metadata\":{\"name\":\"a\"}}\n{\"metadata\":{\"name\":\"b\"}}\n";
        assert_eq!(all_resources(many, 2).unwrap().len(), 2);
        assert!(all_resources(many, 1).is_err());
        assert!(all_resources(b"", 1).unwrap().is_empty());
        assert!(all_resources(b"{} {", 9).is_err());
    }
}
