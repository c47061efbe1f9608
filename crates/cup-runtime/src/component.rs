//! Component controllers: the `cup:controller` world of `wit/controller.wit`, the WASI 0.2
//! imports a component gets, and one request run as one typed call.
//!
//! A component answers the same [`Invocation`] a preview 1 command does, and its typed answer
//! becomes the same [`Outcome`]: a get's resource as JSON on `stdout`, a list's one per line,
//! exit code 0, 2 for `not-found` and 1 for the other errors, with the error itself in
//! [`Outcome::error`]. So everything above the runtime treats both kinds of controller alike.

use std::time::Instant;

use cup_model::{Resource, ResourceMeta, StringMap};
use serde_json::value::RawValue;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::invoke::{Attempt, Invocation, Limiter, Outcome};
use crate::output::{CappedOutput, Overflow};
use crate::{InvokeError, LoadError};

mod bindings {
    // The host side of `wit/controller.wit`, generated from that file at build time: the
    // document and the code cannot disagree.
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "cup-controller",
        exports: { default: async },
    });
}

pub(crate) use bindings::CupControllerPre;
use bindings::cup::controller::types as wit;

/// The interface a component controller exports, with the version this host speaks.
pub const CONTROLLER_INTERFACE: &str = "cup:controller/controller@0.1.0";

/// The package of [`CONTROLLER_INTERFACE`] without a version, to recognise other versions.
const CONTROLLER_PACKAGE: &str = "cup:controller/controller";

/// How many linear memories a component's instance may have in all. Toolchains put a few in
/// one component (the program's, an adapter's); [`Limits::memory_bytes`](crate::Limits)
/// bounds their sum.
pub(crate) const COMPONENT_MEMORIES: usize = 16;

/// How many core instances a component may create: one per core module it embeds, plus
/// adapters and shims. Generous for every toolchain's output, small enough to bound memory.
pub(crate) const COMPONENT_INSTANCES: usize = 64;

/// Everything a component's store owns for one request.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The WASI 0.2 imports every component may use. Sockets are linked (toolchains import them
/// whether or not the program uses them) but every address is refused in
/// [`run`], as is name lookup.
pub(crate) fn wasi_linker(engine: &Engine) -> Result<Linker<ComponentState>, String> {
    let mut linker: Linker<ComponentState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("{e:#}"))?;
    Ok(linker)
}

/// Checks that `component` exports the controller interface this host speaks, then links it.
/// A component exporting another version of the interface, or none, is refused with what it
/// does export; one importing something the host does not provide, with wasmtime's message
/// naming the import.
pub(crate) fn link(
    linker: &Linker<ComponentState>,
    component: &Component,
) -> Result<CupControllerPre<ComponentState>, LoadError> {
    let engine = component.engine();
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if !exports.iter().any(|e| e == CONTROLLER_INTERFACE) {
        let others: Vec<&String> = exports
            .iter()
            .filter(|e| e.starts_with(CONTROLLER_PACKAGE))
            .collect();
        let reason = match others.first() {
            Some(other) => format!(
                "it exports {other}, a version of the controller interface this cupd does not \
                 speak (it speaks {CONTROLLER_INTERFACE})"
            ),
            None if exports.is_empty() => {
                format!("it exports nothing; a controller exports {CONTROLLER_INTERFACE}")
            }
            None => format!(
                "it does not export {CONTROLLER_INTERFACE} (it exports {})",
                exports.join(", ")
            ),
        };
        return Err(LoadError::NotAController { reason });
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| LoadError::NotAController {
            reason: format!("its imports cannot be provided: {e:#}"),
        })?;
    CupControllerPre::new(pre).map_err(|e| LoadError::NotAController {
        reason: format!("its exports do not match {CONTROLLER_INTERFACE}: {e:#}"),
    })
}

/// The typed call an [`Invocation`] stands for.
enum Call {
    Get(wit::Request, String),
    List(wit::Request),
    Put(wit::Request, String, wit::Resource),
    Delete(wit::Request, String),
}

/// A controller's answer, before it becomes an [`Outcome`].
enum Answer {
    One(wit::Resource),
    Many(Vec<wit::Resource>),
    Done,
}

/// How a component's failure reaches the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerError {
    /// `error.not-found`: HTTP 404.
    NotFound(String),
    /// `error.invalid`: HTTP 400.
    Invalid(String),
    /// `error.failed`: HTTP 500.
    Failed(String),
}

impl ControllerError {
    /// The controller's message.
    pub fn message(&self) -> &str {
        match self {
            ControllerError::NotFound(m)
            | ControllerError::Invalid(m)
            | ControllerError::Failed(m) => m,
        }
    }

    /// The preview 1 exit code with the same meaning.
    fn exit_code(&self) -> i32 {
        match self {
            ControllerError::NotFound(_) => 2,
            ControllerError::Invalid(_) | ControllerError::Failed(_) => 1,
        }
    }
}

impl From<wit::Error> for ControllerError {
    fn from(error: wit::Error) -> Self {
        match error {
            wit::Error::NotFound(m) => ControllerError::NotFound(m),
            wit::Error::Invalid(m) => ControllerError::Invalid(m),
            wit::Error::Failed(m) => ControllerError::Failed(m),
        }
    }
}

/// Reads the preview 1 form of a request (`["wasi", verb, Kind, namespace, name?]`, the
/// resource JSON on stdin for put) as the typed call.
fn call(invocation: &Invocation) -> Result<Call, InvokeError> {
    let bad = |why: String| InvokeError::BadRequest(why);
    let args = &invocation.args;
    let arg = |i: usize| -> Result<String, InvokeError> {
        args.get(i)
            .cloned()
            .ok_or_else(|| bad(format!("argument {i} is missing")))
    };
    let verb = arg(1)?;
    let req = wit::Request {
        kind: arg(2)?,
        namespace: arg(3)?,
    };
    let expected = if verb == "list" { 4 } else { 5 };
    if args.len() != expected {
        return Err(bad(format!(
            "{verb} takes {expected} arguments, not {}",
            args.len()
        )));
    }
    match verb.as_str() {
        "get" => Ok(Call::Get(req, arg(4)?)),
        "list" => Ok(Call::List(req)),
        "delete" => Ok(Call::Delete(req, arg(4)?)),
        "put" => {
            let resource: Resource = serde_json::from_slice(&invocation.stdin)
                .map_err(|e| bad(format!("the resource to put is not JSON: {e}")))?;
            Ok(Call::Put(req, arg(4)?, to_wit(resource)))
        }
        other => Err(bad(format!("unknown verb {other:?}"))),
    }
}

fn to_wit(resource: Resource) -> wit::Resource {
    let pairs = |map: StringMap| map.map(|m| m.into_iter().collect::<Vec<_>>());
    wit::Resource {
        api_version: resource.api_version,
        kind: resource.kind,
        metadata: wit::Metadata {
            namespace: resource.metadata.namespace,
            name: resource.metadata.name,
            labels: pairs(resource.metadata.labels),
            annotations: pairs(resource.metadata.annotations),
        },
        spec: resource.spec.get().to_owned(),
    }
}

/// A returned resource as the JSON line a preview 1 command would print. A spec that is not
/// one JSON value, or a label or annotation key given twice, is the controller's fault.
fn to_json_line(resource: wit::Resource, out: &mut Vec<u8>) -> Result<(), String> {
    let name = resource.metadata.name.clone();
    let map = |pairs: Option<Vec<(String, String)>>, what: &str| -> Result<StringMap, String> {
        let Some(pairs) = pairs else { return Ok(None) };
        let mut map = std::collections::BTreeMap::new();
        for (key, value) in pairs {
            if map.insert(key.clone(), value).is_some() {
                return Err(format!(
                    "resource {name:?} has the {what} key {key:?} twice"
                ));
            }
        }
        Ok(Some(map))
    };
    let spec = RawValue::from_string(resource.spec)
        .map_err(|e| format!("resource {name:?} has a spec that is not one JSON value: {e}"))?;
    let resource = Resource {
        api_version: resource.api_version,
        kind: resource.kind,
        metadata: ResourceMeta {
            labels: map(resource.metadata.labels, "label")?,
            annotations: map(resource.metadata.annotations, "annotation")?,
            namespace: resource.metadata.namespace,
            name: resource.metadata.name,
        },
        spec,
    };
    serde_json::to_writer(&mut *out, &resource).map_err(|e| format!("encoding {name:?}: {e}"))?;
    out.push(b'\n');
    Ok(())
}

/// Runs one request in a fresh instance of `pre`; [`Attempt::NoSlot`] when `pre` is pooled
/// and the pool had no room after all (nothing ran).
pub(crate) async fn run(
    pre: &CupControllerPre<ComponentState>,
    invocation: &Invocation,
    limits: &crate::Limits,
    started: Instant,
) -> Attempt {
    match run_request(pre, invocation, limits, started).await {
        Err(None) => Attempt::NoSlot,
        Err(Some(e)) => Attempt::Finished(Err(e)),
        Ok(outcome) => Attempt::Finished(Ok(outcome)),
    }
}

/// `Err(None)`: no pool slot.
async fn run_request(
    pre: &CupControllerPre<ComponentState>,
    invocation: &Invocation,
    limits: &crate::Limits,
    started: Instant,
) -> Result<Outcome, Option<InvokeError>> {
    let call = call(invocation)?;
    // stdout and stderr are both logs: one buffer keeps them in the order written.
    let logs = CappedOutput::new(limits.stderr_bytes, Overflow::Truncate);
    let builder = crate::invoke::sandbox(
        &invocation.root,
        invocation.access,
        started,
        MemoryInputPipe::new(bytes::Bytes::new()),
        logs.clone(),
        logs.clone(),
    );
    let mut builder = builder.map_err(Some)?;
    let mut store = Store::new(
        pre.engine(),
        ComponentState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits, COMPONENT_MEMORIES, COMPONENT_INSTANCES),
        },
    );
    store.limiter(|s| &mut s.limiter);
    // Lifting an answer copies every string and list it points to into host memory, and a
    // guest may point many records at the same bytes: without a cap, a list of a million
    // records aliasing one megabyte would make the host allocate a terabyte. wasmtime counts
    // the bytes lifted from the guest in one call against this budget (the same cap as a
    // command's stdout) and fails the call beyond it.
    store.set_hostcall_fuel(limits.stdout_bytes);
    let deadline = started.checked_add(limits.deadline);
    crate::invoke::arm_deadline(&mut store, deadline);

    // Epoch interruption stops wasm code; the host-side waits of WASI 0.2 (a guest blocked in
    // `wasi:io/poll` on a timer) are bounded by this timeout instead.
    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let work = run_call(pre, &mut store, call);
    let result = match remaining {
        Some(remaining) => match tokio::time::timeout(remaining, work).await {
            Ok(result) => result,
            Err(_) => Err((
                crate::invoke::Phase::Run,
                wasmtime::Error::new(wasmtime::Trap::Interrupt),
            )),
        },
        None => work.await,
    };
    let memory_hit = store.data().limiter.memory_hit();
    drop(store);
    let stderr_truncated = logs.overflowed();
    let stderr = logs.take();

    let answer = match result {
        Ok(answer) => answer,
        Err((crate::invoke::Phase::Instantiate, e))
            if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some() =>
        {
            return Err(None);
        }
        Err((crate::invoke::Phase::Run, e)) if copied_too_much(&e) => {
            return Err(Some(InvokeError::OutputTooLarge {
                limit: limits.stdout_bytes,
                stderr,
            }));
        }
        Err((phase, e)) => {
            return Err(Some(crate::invoke::classify(
                phase,
                &e,
                crate::invoke::Flags {
                    stdout_overflowed: false,
                    memory_hit,
                    slept_past_deadline: false,
                },
                limits,
                stderr,
            )));
        }
    };
    let mut stdout = Vec::new();
    let (exit_code, error) = match answer {
        Ok(Answer::Done) => (0, None),
        Ok(Answer::One(resource)) => match to_json_line(resource, &mut stdout) {
            Ok(()) => (0, None),
            Err(why) => (1, Some(ControllerError::Failed(why))),
        },
        Ok(Answer::Many(resources)) => {
            let mut failed = None;
            for resource in resources {
                if let Err(why) = to_json_line(resource, &mut stdout) {
                    failed = Some(ControllerError::Failed(why));
                    break;
                }
                if stdout.len() > limits.stdout_bytes {
                    return Err(Some(InvokeError::OutputTooLarge {
                        limit: limits.stdout_bytes,
                        stderr,
                    }));
                }
            }
            match failed {
                Some(error) => {
                    stdout.clear();
                    (1, Some(error))
                }
                None => (0, None),
            }
        }
        Err(error) => (error.exit_code(), Some(error)),
    };
    if stdout.len() > limits.stdout_bytes {
        return Err(Some(InvokeError::OutputTooLarge {
            limit: limits.stdout_bytes,
            stderr,
        }));
    }
    Ok(Outcome {
        exit_code,
        stdout,
        stderr,
        stderr_truncated,
        elapsed: started.elapsed(),
        error,
    })
}

/// wasmtime's refusal to lift more than the call's budget (`Store::set_hostcall_fuel`). Its
/// error type is private, so it is recognised by its message.
fn copied_too_much(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains("too much data is being copied"))
}

type CallResult = Result<Result<Answer, ControllerError>, (crate::invoke::Phase, wasmtime::Error)>;

async fn run_call(
    pre: &CupControllerPre<ComponentState>,
    store: &mut Store<ComponentState>,
    call: Call,
) -> CallResult {
    use crate::invoke::Phase;
    let bindings = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| (Phase::Instantiate, e))?;
    let guest = bindings.cup_controller_controller();
    let answer = match call {
        Call::Get(req, name) => guest
            .call_get(&mut *store, &req, &name)
            .await
            .map(|r| r.map(Answer::One)),
        Call::List(req) => guest
            .call_list(&mut *store, &req)
            .await
            .map(|r| r.map(Answer::Many)),
        Call::Put(req, name, resource) => guest
            .call_put(&mut *store, &req, &name, &resource)
            .await
            .map(|r| r.map(|()| Answer::Done)),
        Call::Delete(req, name) => guest
            .call_delete(&mut *store, &req, &name)
            .await
            .map(|r| r.map(|()| Answer::Done)),
    };
    answer
        .map(|r| r.map_err(ControllerError::from))
        .map_err(|e| (Phase::Run, e))
}
