//! The engine, the epoch thread, and loading modules.

use std::collections::HashMap;
use std::hash::Hasher;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstancePre, Linker, Module, WasmBacktraceDetails};

use crate::component::{ComponentState, CupControllerPre};
use crate::invoke::HostState;
use crate::pool::{Pool, PoolStats, Slot, command_pooling, component_pooling};
use crate::{CodeCache, Limits, LoadError, RuntimeError, ensure_wasi_command};

/// wasmtime's major version, for the readable part of the engine fingerprint. The exact
/// version (and every code-relevant setting) is in the hashed part anyway: wasmtime puts its
/// full version into `precompile_compatibility_hash`.
const WASMTIME_MAJOR: &str = "48";

/// Runs cup controllers. One wasmtime engine (with epoch interruption), the WASI preview 1
/// imports, the limits, and a thread that advances the epoch every
/// [`Limits::epoch_tick`].
///
/// Cheap to clone (all clones share the same engine), `Send + Sync`. The epoch thread stops
/// when the last clone and the last [`LoadedController`] from it are gone: controllers keep the
/// runtime alive because their deadlines depend on that thread.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// The on-demand engine: compiles, names the code cache, and runs what the pool cannot.
    engine: Engine,
    linker: Linker<HostState>,
    /// The WASI 0.2 imports of component controllers (on the on-demand engine).
    component_linker: wasmtime::component::Linker<ComponentState>,
    /// The pooled engine of commands, or why there is none.
    pool: Result<Pool<Linker<HostState>>, String>,
    /// The pooled engine of components, or why there is none.
    component_pool: Result<Pool<wasmtime::component::Linker<ComponentState>>, String>,
    limits: Limits,
    fingerprint: String,
    /// Modules already compiled by this runtime, by wasm sha256, so loading the same bytes
    /// twice (two config entries, a reload) shares one compiled copy.
    loaded: Mutex<HashMap<String, Weak<Compiled>>>,
    _epoch: EpochThread,
}

/// One module's code, linked for the engine(s) that run it. Only one copy of the machine code
/// is kept while nothing needs the other engine: the on-demand copy of a pooled module is made
/// the first time every slot is taken.
struct Compiled {
    digest: String,
    code: Code,
    allocation: Allocation,
}

/// The linked code of one controller, by kind.
pub(crate) enum Code {
    /// A WASI preview 1 command.
    Command {
        /// Linked on the pooled engine; `None` when there is no pool or the module does not fit.
        pooled: Option<InstancePre<HostState>>,
        on_demand: OnceLock<Result<InstancePre<HostState>, String>>,
    },
    /// A component exporting the controller interface.
    Component {
        /// Linked on the component pool's engine; `None` when there is no pool or the
        /// component does not fit its slots.
        pooled: Option<CupControllerPre<ComponentState>>,
        on_demand: OnceLock<Result<CupControllerPre<ComponentState>, String>>,
    },
}

/// What kind of WebAssembly a controller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerKind {
    /// A WASI preview 1 command module (`cup.wasi-p1.v1`, docs/ABI.md).
    Command,
    /// A component exporting [`CONTROLLER_INTERFACE`](crate::CONTROLLER_INTERFACE).
    Component,
}

/// Code (a module or a component) placed on one of the two engines of its kind.
enum Placed<C = Module> {
    Pooled(C),
    /// With the reason it is not pooled.
    OnDemand(C, String),
}

/// Where a controller's instances are allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// In the pool's reused slots (on freshly mapped memory only when all slots are busy).
    Pooled,
    /// Always on freshly mapped memory, and why: no pool, or the module does not fit a slot.
    OnDemand(String),
}

/// Where a loaded module's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Compiled; no cache was given.
    Disabled,
    /// Compiled and written to the cache (unless writing failed, see [`LoadInfo::cache_error`]).
    Miss,
    /// Loaded from the cache, nothing compiled.
    Hit,
    /// The cache file existed but was unusable (corrupt, or written with an incompatible
    /// engine despite the name); it was deleted, and the module compiled and written again.
    Replaced,
    /// This runtime had already loaded the same bytes; the compiled module is shared.
    Shared,
}

/// How a [`Runtime::load`] went, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadInfo {
    /// sha256 of the wasm bytes, lowercase hex.
    pub digest: String,
    /// Where the machine code came from.
    pub cache: CacheStatus,
    /// Wall time of the load (hashing, cache, compilation, checks, linking).
    pub elapsed: Duration,
    /// A cache problem that did not stop the load: why a cache file was [`CacheStatus::Replaced`],
    /// or why writing the cache failed.
    pub cache_error: Option<String>,
    /// Where this controller's instances are allocated, and why not in the pool if they are not.
    pub allocation: Allocation,
    /// A preview 1 command or a component.
    pub kind: ControllerKind,
}

/// A compiled, checked and linked controller, ready to [`invoke`](Self::invoke).
///
/// Cheap to clone, `Send + Sync`; keeps its [`Runtime`] alive.
#[derive(Clone)]
pub struct LoadedController {
    runtime: Arc<Inner>,
    compiled: Arc<Compiled>,
    info: LoadInfo,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.inner.limits)
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoadedController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedController")
            .field("digest", &self.compiled.digest)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine, a pooling engine of [`Limits::pooled_instances`] slots when that is not
    /// zero and the address space can be reserved, and the thread that advances the epoch. Fails
    /// with [`RuntimeError::InvalidLimits`] on a zero `epoch_tick` or `deadline`.
    pub fn new(limits: Limits) -> Result<Runtime, RuntimeError> {
        if limits.epoch_tick.is_zero() {
            return Err(RuntimeError::InvalidLimits(
                "epoch_tick must be above zero".into(),
            ));
        }
        if limits.deadline.is_zero() {
            return Err(RuntimeError::InvalidLimits(
                "deadline must be above zero".into(),
            ));
        }
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Backtraces with function names when the module has them; never let the
        // WASMTIME_BACKTRACE_DETAILS environment variable change behaviour (or the
        // fingerprint) behind our back.
        config.wasm_backtrace_details(WasmBacktraceDetails::Disable);
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let linker = wasi_linker(&engine).map_err(RuntimeError::Linker)?;
        let component_linker =
            crate::component::wasi_linker(&engine).map_err(RuntimeError::Linker)?;
        // Same settings but the allocator, so the same compiled code runs on both engines.
        let pool = Pool::new(&config, &limits, command_pooling(&limits), wasi_linker);
        let component_pool = Pool::new(
            &config,
            &limits,
            component_pooling(&limits),
            crate::component::wasi_linker,
        );

        let fingerprint = fingerprint(&engine);
        let mut engines = vec![engine.clone()];
        engines.extend(pool.as_ref().ok().map(|p| p.engine.clone()));
        engines.extend(component_pool.as_ref().ok().map(|p| p.engine.clone()));
        let epoch = EpochThread::start(&engines, limits.epoch_tick)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                component_linker,
                pool,
                component_pool,
                limits,
                fingerprint,
                loaded: Mutex::new(HashMap::new()),
                _epoch: epoch,
            }),
        })
    }

    /// The limits every invocation of this runtime's controllers runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The pooling allocator's slots and use, or why this runtime has no pool (every instance
    /// then runs on freshly mapped memory).
    pub fn pool_stats(&self) -> Result<PoolStats, &str> {
        self.inner.pool_stats()
    }

    /// Identifies the compiled-code format of this engine: `wt<wasmtime major>-<16 hex>`, the
    /// hex being a sha256 of wasmtime's `Engine::precompile_compatibility_hash` (target, CPU
    /// features, compiler flags, wasm features, exact wasmtime version). Two engines with the
    /// same fingerprint can load each other's code; it names files in a [`CodeCache`].
    pub fn engine_fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Compiles (or fetches from `cache`) a controller, checks that it is a WASI preview 1
    /// command ([`ensure_wasi_command`]), and links it against the WASI imports, once: every
    /// invocation then only instantiates.
    ///
    /// Blocking and CPU-heavy on a cache miss (compilation uses all cores).
    ///
    /// # Loading cached code
    ///
    /// A cache hit is read into memory and loaded with wasmtime's `unsafe` `Module::deserialize`,
    /// which runs it as machine code without verifying it. That is sound here because:
    /// nothing is deserialized before [`CodeCache`] has checked the file's HMAC-SHA256 tag,
    /// keyed by a secret kept outside the cache directory and covering the file's name (the
    /// wasm sha256 and the engine fingerprint) and the code, so only a file this cache wrote
    /// for this module, from `Module::serialize` of an engine with this fingerprint, gets
    /// there (a file that fails is removed and the module recompiled); the cache refuses a
    /// directory others can write (see [`CodeCache`]); files are written atomically (temp
    /// file + rename) and read into memory, never mapped; wasmtime itself checks the header
    /// (version and engine settings) and refuses a mismatch, in which case the file is deleted
    /// and the module recompiled; and the directory is never exposed to guests. What it does
    /// not defend against is someone who can read the key as the server's user, who could
    /// equally replace the server binary.
    pub fn load(
        &self,
        wasm: &[u8],
        cache: Option<&CodeCache>,
    ) -> Result<LoadedController, LoadError> {
        let started = Instant::now();
        let digest = hex::encode(Sha256::digest(wasm));

        if let Some(compiled) = self.shared(&digest) {
            return Ok(self.controller(compiled, CacheStatus::Shared, started, None));
        }
        if wasmparser::Parser::is_component(wasm) {
            return self.load_component(wasm, cache, digest, started);
        }

        let mut cache_error = None;
        let (placed, mut status) = match cache {
            None => (self.compile(wasm)?, CacheStatus::Disabled),
            Some(cache) => {
                let path = cache.path_for(&digest, &self.inner.fingerprint);
                match self.read_cached(cache, &path) {
                    Ok(Some(placed)) => (placed, CacheStatus::Hit),
                    Ok(None) => (self.compile(wasm)?, CacheStatus::Miss),
                    Err(reason) => {
                        cache_error = Some(reason);
                        (self.compile(wasm)?, CacheStatus::Replaced)
                    }
                }
            }
        };

        let (module, linker) = match &placed {
            Placed::Pooled(module) => match &self.inner.pool {
                Ok(pool) => (module, &pool.linker),
                // Cannot happen: only an existing pool places modules.
                Err(_) => (module, &self.inner.linker),
            },
            Placed::OnDemand(module, _) => (module, &self.inner.linker),
        };
        ensure_wasi_command(module)?;
        let pre = linker
            .instantiate_pre(module)
            .map_err(|e| LoadError::NotACommand {
                reason: format!("its imports do not match WASI preview 1: {e:#}"),
            })?;

        // Only modules that passed the checks are cached.
        self.write_cache(cache, &digest, &mut status, &mut cache_error, || {
            module.serialize()
        });

        let compiled = Arc::new(match placed {
            Placed::Pooled(_) => Compiled {
                digest,
                code: Code::Command {
                    pooled: Some(pre),
                    on_demand: OnceLock::new(),
                },
                allocation: Allocation::Pooled,
            },
            Placed::OnDemand(_, why) => Compiled {
                digest,
                code: Code::Command {
                    pooled: None,
                    on_demand: OnceLock::from(Ok(pre)),
                },
                allocation: Allocation::OnDemand(why),
            },
        });
        Ok(self.remember(compiled, status, started, cache_error))
    }

    /// [`load`](Self::load) for a component: compiled (or read from the cache), placed in the
    /// component pool when it fits, checked to export the controller interface, and linked
    /// against WASI 0.2.
    fn load_component(
        &self,
        wasm: &[u8],
        cache: Option<&CodeCache>,
        digest: String,
        started: Instant,
    ) -> Result<LoadedController, LoadError> {
        let mut cache_error = None;
        let (placed, mut status) = match cache {
            None => (self.compile_component(wasm)?, CacheStatus::Disabled),
            Some(cache) => {
                let path = cache.path_for(&digest, &self.inner.fingerprint);
                match self.read_cached_component(cache, &path) {
                    Ok(Some(placed)) => (placed, CacheStatus::Hit),
                    Ok(None) => (self.compile_component(wasm)?, CacheStatus::Miss),
                    Err(reason) => {
                        cache_error = Some(reason);
                        (self.compile_component(wasm)?, CacheStatus::Replaced)
                    }
                }
            }
        };
        let (component, linker, allocation) = match &placed {
            Placed::Pooled(component) => match &self.inner.component_pool {
                Ok(pool) => (component, &pool.linker, Allocation::Pooled),
                // Cannot happen: only an existing pool places components.
                Err(why) => (
                    component,
                    &self.inner.component_linker,
                    Allocation::OnDemand(why.clone()),
                ),
            },
            Placed::OnDemand(component, why) => (
                component,
                &self.inner.component_linker,
                Allocation::OnDemand(why.clone()),
            ),
        };
        let pre = crate::component::link(linker, component)?;
        // Only components that passed the checks are cached.
        self.write_cache(cache, &digest, &mut status, &mut cache_error, || {
            component.serialize()
        });
        let code = match allocation {
            Allocation::Pooled => Code::Component {
                pooled: Some(pre),
                on_demand: OnceLock::new(),
            },
            Allocation::OnDemand(_) => Code::Component {
                pooled: None,
                on_demand: OnceLock::from(Ok(pre)),
            },
        };
        let compiled = Arc::new(Compiled {
            digest,
            code,
            allocation,
        });
        Ok(self.remember(compiled, status, started, cache_error))
    }

    /// Compiles a component on the on-demand engine, then moves the code to the component
    /// pool if it fits there.
    // As for modules: moving code between engines needs wasmtime's unsafe deserialize.
    #[allow(unsafe_code)]
    fn compile_component(&self, wasm: &[u8]) -> Result<Placed<Component>, LoadError> {
        let component = Component::new(&self.inner.engine, wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let pool = match &self.inner.component_pool {
            Ok(pool) => pool,
            Err(why) => return Ok(Placed::OnDemand(component, format!("no pool: {why}"))),
        };
        let bytes = match component.serialize() {
            Ok(bytes) => bytes,
            Err(e) => {
                let why = format!("serializing it for the pool: {e:#}");
                return Ok(Placed::OnDemand(component, why));
            }
        };
        // SAFETY: `bytes` were just produced by `Component::serialize` on the on-demand
        // engine, whose settings are the pool engine's but for the allocator; wasmtime checks
        // the header against the engine and the component against the pool's limits.
        match unsafe { Component::deserialize(&pool.engine, &bytes) } {
            Ok(pooled) => Ok(Placed::Pooled(pooled)),
            Err(e) => Ok(Placed::OnDemand(component, format!("{e:#}"))),
        }
    }

    /// [`read_cached`](Self::read_cached) for a component.
    // See "Loading cached code" on `Runtime::load`.
    #[allow(unsafe_code)]
    fn read_cached_component(
        &self,
        cache: &CodeCache,
        path: &Path,
    ) -> Result<Option<Placed<Component>>, String> {
        let Some(code) = read_authenticated(cache, path)? else {
            return Ok(None);
        };
        let not_pooled = match &self.inner.component_pool {
            // SAFETY: `code` carries this cache's tag for this file name, so
            // `CodeCache::write` wrote it from `Component::serialize` of an engine with this
            // fingerprint; wasmtime rejects version/config mismatches.
            Ok(pool) => match unsafe { Component::deserialize(&pool.engine, &code) } {
                Ok(component) => return Ok(Some(Placed::Pooled(component))),
                Err(e) => format!("{e:#}"),
            },
            Err(why) => format!("no pool: {why}"),
        };
        // SAFETY: as above.
        match unsafe { Component::deserialize(&self.inner.engine, &code) } {
            Ok(component) => Ok(Some(Placed::OnDemand(component, not_pooled))),
            Err(e) => Err(discard(
                path,
                format!("unusable cache file {}: {e:#}", path.display()),
            )),
        }
    }

    /// Writes freshly compiled code to the cache after a miss or a replaced file; a failure is
    /// noted in `cache_error` and never stops the load.
    fn write_cache(
        &self,
        cache: Option<&CodeCache>,
        digest: &str,
        status: &mut CacheStatus,
        cache_error: &mut Option<String>,
        serialize: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
    ) {
        let (Some(cache), CacheStatus::Miss | CacheStatus::Replaced) = (cache, *status) else {
            return;
        };
        let path = cache.path_for(digest, &self.inner.fingerprint);
        let written = serialize()
            .map_err(|e| format!("serializing the compiled code: {e:#}"))
            .and_then(|bytes| {
                cache
                    .write(&path, &bytes)
                    .map_err(|e| format!("writing {}: {e}", path.display()))
            });
        if let Err(e) = written {
            *cache_error = Some(match cache_error.take() {
                Some(before) => format!("{before}; then {e}"),
                None => e,
            });
            if *status == CacheStatus::Replaced {
                // The bad file is gone but no good one replaced it.
                *status = CacheStatus::Miss;
            }
        }
    }

    /// Records a newly loaded controller so loading the same bytes again shares it.
    fn remember(
        &self,
        compiled: Arc<Compiled>,
        status: CacheStatus,
        started: Instant,
        cache_error: Option<String>,
    ) -> LoadedController {
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(compiled.digest.clone(), Arc::downgrade(&compiled));
        self.controller(compiled, status, started, cache_error)
    }

    fn shared(&self, digest: &str) -> Option<Arc<Compiled>> {
        let mut loaded = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget controllers nobody holds any more, so the map does not grow with reloads.
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.get(digest).and_then(Weak::upgrade)
    }

    fn controller(
        &self,
        compiled: Arc<Compiled>,
        cache: CacheStatus,
        started: Instant,
        cache_error: Option<String>,
    ) -> LoadedController {
        LoadedController {
            runtime: self.inner.clone(),
            info: LoadInfo {
                digest: compiled.digest.clone(),
                cache,
                elapsed: started.elapsed(),
                cache_error,
                allocation: compiled.allocation.clone(),
                kind: match compiled.code {
                    Code::Command { .. } => ControllerKind::Command,
                    Code::Component { .. } => ControllerKind::Component,
                },
            },
            compiled,
        }
    }

    /// Compiles on the on-demand engine, then moves the code to the pool if it fits there.
    // Moving code between the two engines goes through wasmtime's unsafe
    // `Module::deserialize`; there is no safe way to share compiled code across engines.
    #[allow(unsafe_code)]
    fn compile(&self, wasm: &[u8]) -> Result<Placed, LoadError> {
        let module = Module::new(&self.inner.engine, wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let pool = match &self.inner.pool {
            Ok(pool) => pool,
            Err(why) => return Ok(Placed::OnDemand(module, format!("no pool: {why}"))),
        };
        let bytes = match module.serialize() {
            Ok(bytes) => bytes,
            Err(e) => {
                let why = format!("serializing it for the pool: {e:#}");
                return Ok(Placed::OnDemand(module, why));
            }
        };
        // SAFETY: `bytes` were just produced by `Module::serialize` on the on-demand engine,
        // whose settings are the pool engine's but for the allocator, which does not change
        // compiled code; wasmtime checks the header against the engine anyway.
        match unsafe { Module::deserialize(&pool.engine, &bytes) } {
            Ok(pooled) => Ok(Placed::Pooled(pooled)),
            Err(e) => Ok(Placed::OnDemand(module, format!("{e:#}"))),
        }
    }

    /// `Ok(None)`: no cache file. `Err`: there was one but it was unusable or not authentic;
    /// it has been removed (the caller recompiles and writes a new one).
    // Loading cached machine code is what the code cache is for, and wasmtime offers it only
    // as the unsafe `Module::deserialize` (see "Loading cached code" on `Runtime::load`).
    #[allow(unsafe_code)]
    fn read_cached(&self, cache: &CodeCache, path: &Path) -> Result<Option<Placed>, String> {
        let Some(code) = read_authenticated(cache, path)? else {
            return Ok(None);
        };
        let code = code.as_slice();
        let not_pooled = match &self.inner.pool {
            // SAFETY: see "Loading cached code" on `Runtime::load`: `code` carries this
            // cache's tag for this file name, so `CodeCache::write` wrote it from
            // `Module::serialize` of an engine with this fingerprint (the pool engine's code
            // is the same), and wasmtime rejects version/config mismatches.
            Ok(pool) => match unsafe { Module::deserialize(&pool.engine, code) } {
                Ok(module) => return Ok(Some(Placed::Pooled(module))),
                Err(e) => format!("{e:#}"),
            },
            Err(why) => format!("no pool: {why}"),
        };
        // SAFETY: as above.
        let loaded = unsafe { Module::deserialize(&self.inner.engine, code) };
        match loaded {
            Ok(module) => Ok(Some(Placed::OnDemand(module, not_pooled))),
            Err(e) => Err(discard(
                path,
                format!("unusable cache file {}: {e:#}", path.display()),
            )),
        }
    }
}

/// The code of a cache file, once its tag proves this cache wrote it for this file name.
/// `Ok(None)`: no cache file. `Err`: there was one but it was unreadable or not authentic; it
/// has been removed.
fn read_authenticated(cache: &CodeCache, path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
        Ok(meta) if !meta.is_file() => {
            return Err(format!("{} is not a regular file", path.display()));
        }
        Ok(_) => {}
    }
    // The bytes are read into memory rather than mapped (`deserialize_file`): a mapped file
    // truncated or overwritten in place by an operator would kill the whole server with
    // SIGBUS, and one bad cache file must only cost a recompile.
    let mut bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading cache file {}: {e}", path.display())),
    };
    let code_len = match cache.authenticate(path, &bytes) {
        Ok(code) => code.len(),
        Err(why) => {
            return Err(discard(
                path,
                format!("refused cache file {}: {why}", path.display()),
            ));
        }
    };
    // The code is the file's tail, after the header and tag.
    bytes.drain(..bytes.len() - code_len);
    Ok(Some(bytes))
}

/// Removes a cache file that will not be loaded (a new one is written after compiling);
/// returns `reason`, with why removing failed if it did.
fn discard(path: &Path, reason: String) -> String {
    match std::fs::remove_file(path) {
        Ok(()) => reason,
        Err(rm) if rm.kind() == std::io::ErrorKind::NotFound => reason,
        Err(rm) => format!("{reason}; removing it: {rm}"),
    }
}

impl Inner {
    fn pool_stats(&self) -> Result<PoolStats, &str> {
        self.pool.as_ref().map(Pool::stats).map_err(String::as_str)
    }
}

/// The WASI preview 1 imports, with cup's bounded sleeps.
fn wasi_linker(engine: &Engine) -> Result<Linker<HostState>, String> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut HostState| &mut s.wasi)
        .and_then(|_| crate::poll::bound_sleeps(&mut linker))
        .map_err(|e| format!("{e:#}"))?;
    Ok(linker)
}

impl LoadedController {
    /// sha256 of the module's wasm bytes, lowercase hex.
    pub fn digest(&self) -> &str {
        &self.compiled.digest
    }

    /// How this controller was loaded (cache hit or miss, time taken).
    pub fn load_info(&self) -> &LoadInfo {
        &self.info
    }

    /// The limits of the runtime that loaded this controller.
    pub fn limits(&self) -> &Limits {
        &self.runtime.limits
    }

    /// The pool's statistics (see [`Runtime::pool_stats`]).
    pub fn pool_stats(&self) -> Result<PoolStats, &str> {
        self.runtime.pool_stats()
    }

    /// The pooled component and a slot to run it in, when this controller is a pooled
    /// component and a slot is free.
    pub(crate) fn pooled_component(&self) -> Option<(&CupControllerPre<ComponentState>, Slot<'_>)> {
        let Code::Component {
            pooled: Some(pre), ..
        } = &self.compiled.code
        else {
            return None;
        };
        let pool = self.runtime.component_pool.as_ref().ok()?;
        pool.try_slot().map(|slot| (pre, slot))
    }

    /// Counts an invocation of a pooled component that ran on freshly mapped memory.
    pub(crate) fn note_component_fallback(&self) {
        if let Ok(pool) = &self.runtime.component_pool {
            pool.note_fallback();
        }
    }

    /// The component linked on the on-demand engine (made from the pooled copy the first time
    /// it is needed), or `None` when this controller is a command.
    // Copying code off the pool engine goes through wasmtime's unsafe deserialize.
    #[allow(unsafe_code)]
    pub(crate) fn component_on_demand(
        &self,
    ) -> Option<Result<&CupControllerPre<ComponentState>, String>> {
        let Code::Component { pooled, on_demand } = &self.compiled.code else {
            return None;
        };
        Some(
            on_demand
                .get_or_init(|| {
                    let pooled = pooled.as_ref().ok_or("no compiled code")?;
                    let bytes = pooled
                        .instance_pre()
                        .component()
                        .serialize()
                        .map_err(|e| format!("copying the code off the pool: {e:#}"))?;
                    // SAFETY: `bytes` were just serialized by the pool engine, whose settings
                    // are the on-demand engine's but for the allocator (no effect on code).
                    let component = unsafe { Component::deserialize(&self.runtime.engine, &bytes) }
                        .map_err(|e| format!("copying the code off the pool: {e:#}"))?;
                    crate::component::link(&self.runtime.component_linker, &component)
                        .map_err(|e| format!("linking the code off the pool: {e}"))
                })
                .as_ref()
                .map_err(Clone::clone),
        )
    }

    /// Whether this controller is a component.
    pub(crate) fn is_component(&self) -> bool {
        matches!(self.compiled.code, Code::Component { .. })
    }

    /// A preview 1 command or a component.
    pub fn kind(&self) -> ControllerKind {
        self.info.kind
    }

    /// The pooled code and a slot to run it in, when this module is pooled and a slot is free.
    pub(crate) fn pooled(&self) -> Option<(&InstancePre<HostState>, Slot<'_>)> {
        let Code::Command {
            pooled: Some(pre), ..
        } = &self.compiled.code
        else {
            return None;
        };
        let pool = self.runtime.pool.as_ref().ok()?;
        pool.try_slot().map(|slot| (pre, slot))
    }

    /// Counts an invocation of a pooled module that ran on freshly mapped memory after all.
    pub(crate) fn note_fallback(&self) {
        if let Ok(pool) = &self.runtime.pool {
            pool.note_fallback();
        }
    }

    /// The code linked on the on-demand engine; for a pooled module, made from the pooled
    /// copy the first time it is needed.
    // Copying code from the pool engine to the on-demand engine goes through wasmtime's
    // unsafe `Module::deserialize`; recompiling instead would cost seconds per controller.
    #[allow(unsafe_code)]
    pub(crate) fn on_demand(&self) -> Result<&InstancePre<HostState>, String> {
        let Code::Command { pooled, on_demand } = &self.compiled.code else {
            return Err("a component has no preview 1 command code".into());
        };
        on_demand
            .get_or_init(|| {
                let pooled = pooled.as_ref().ok_or("no compiled code")?;
                let bytes = pooled
                    .module()
                    .serialize()
                    .map_err(|e| format!("copying the code off the pool: {e:#}"))?;
                // SAFETY: `bytes` were just serialized by the pool engine, whose settings are
                // the on-demand engine's but for the allocator (no effect on code).
                let module = unsafe { Module::deserialize(&self.runtime.engine, &bytes) }
                    .map_err(|e| format!("copying the code off the pool: {e:#}"))?;
                self.runtime
                    .linker
                    .instantiate_pre(&module)
                    .map_err(|e| format!("linking the code off the pool: {e:#}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Feeds `std::hash::Hash` output into sha256, so the fingerprint is stable across processes
/// (unlike `DefaultHasher`, which is randomly keyed).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Unused: the full digest is read with `finalize`. Returning its first bytes keeps the
        // trait contract ("a hash of what was written") honest.
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

fn fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    let digest = hasher.0.finalize();
    format!("wt{WASMTIME_MAJOR}-{}", hex::encode(&digest[..8]))
}

/// The thread that advances the engine's epoch: what turns `set_epoch_deadline` ticks into
/// wall-clock time.
struct EpochThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochThread {
    fn start(engines: &[Engine], tick: Duration) -> Result<Self, RuntimeError> {
        // Weak handles, so the thread never keeps an engine alive on its own.
        let engines: Vec<_> = engines.iter().map(Engine::weak).collect();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cup-runtime-epoch".into())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(tick) {
                        Err(RecvTimeoutError::Timeout) => {
                            for engine in &engines {
                                match engine.upgrade() {
                                    Some(engine) => engine.increment_epoch(),
                                    None => return,
                                }
                            }
                        }
                        // Told to stop, or the runtime is gone.
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(RuntimeError::EpochThread)?;
        Ok(EpochThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochThread {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once; joining makes "stops when dropped" true
        // rather than eventual.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread cannot panic; if it somehow did, there is nothing left to clean up.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process named like the epoch thread (Linux truncates names to 15 bytes).
    #[cfg(target_os = "linux")]
    fn epoch_threads() -> usize {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .filter_map(Result::ok)
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.trim() == "cup-runtime-epo")
            })
            .count()
    }

    // The only test of this binary that creates runtimes, so the thread count is its own.
    #[cfg(target_os = "linux")]
    #[test]
    fn epoch_thread_lives_as_long_as_the_runtime_or_its_controllers() {
        let runtime = Runtime::new(Limits::default()).expect("runtime");
        // The new thread names itself once it runs; give it a moment.
        let started = Instant::now();
        while epoch_threads() == 0 && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(epoch_threads(), 1);
        let wasm =
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
                .expect("wat");
        let controller = runtime.load(&wasm, None).expect("load");
        drop(runtime);
        assert_eq!(
            epoch_threads(),
            1,
            "a controller keeps its deadlines working"
        );
        drop(controller);
        assert_eq!(epoch_threads(), 0, "joined on drop");
    }

    #[test]
    fn fingerprint_is_stable_and_readable() {
        let a = fingerprint(&Engine::new(Config::new().epoch_interruption(true)).expect("engine"));
        let b = fingerprint(&Engine::new(Config::new().epoch_interruption(true)).expect("engine"));
        let other = fingerprint(&Engine::default());
        assert_eq!(a, b);
        assert_ne!(
            a, other,
            "epoch interruption changes the code, so the fingerprint"
        );
        assert!(a.starts_with("wt48-") && a.len() == 5 + 16, "{a}");
    }
}
