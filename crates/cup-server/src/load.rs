//! Loading controllers and building the routes (docs/API.md, "Loading controllers" and
//! "Routes"; the rules of loading by digest are in docs/PRODUCT.md).
//!
//! For each Controller of the config directory, in name order: a template controller
//! parses its templates; a wasm controller gets its module (a file under the config
//! directory, or an OCI image from the store or a registry), checks the package's
//! integrity, compares embedded definitions with config-directory ones, and compiles the
//! module once (or reads the compiled code from the cache). A failure marks that
//! controller failed; it never stops the others.
//!
//! Routes: each Binding binds the definitions it names (from the config directory or
//! embedded in its controller's module) with every version; a wasm controller that no
//! Binding names is bound to all of its embedded definitions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cup_model::{Implementation, ResourceDefinition, WasmSpec};
use cup_runtime::{CacheStatus, CodeCache, LoadedController, Runtime};
use cup_sections::Integrity;
use cup_template::TemplateController;

use crate::config_dir::{ConfigDir, ConfiguredController};
use crate::discovery;
use crate::image::ImageSource;
use crate::metrics::Metrics;
use crate::routes::{Backend, ControllerHandle, Route, RouteTable};
use crate::signatures::SignaturePolicy;
use crate::status::{ControllerStatus, State, StatusBoard};

/// What is served once loading is over.
pub struct Served {
    pub routes: RouteTable,
    /// The `/apis` body.
    pub discovery: Vec<u8>,
    /// `group/version/plural` → its `/apis` JSON, for bodies filtered by caller.
    pub definitions: BTreeMap<String, String>,
    /// Every controller of the set, routed or not: a reload reuses their compiled modules.
    pub controllers: Vec<Arc<ControllerHandle>>,
}

impl Served {
    /// The loaded wasm modules of this set by the sha256 (lowercase hex) of their bytes.
    pub fn wasm_modules(&self) -> HashMap<String, LoadedController> {
        self.controllers
            .iter()
            .filter_map(|c| match &c.backend {
                Ok(Backend::Wasm(loaded)) => {
                    Some((loaded.load_info().digest.clone(), loaded.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

/// What loading needs besides the config directory: the same for the first load and for
/// every reload.
pub struct LoadTools {
    pub runtime: Result<Runtime, String>,
    pub cache: Option<CodeCache>,
    pub images: ImageSource,
    pub metrics: Arc<Metrics>,
    /// Which controllers must be signed, by which keys.
    pub signatures: SignaturePolicy,
}

/// Everything one load of a config directory needs.
pub struct Loader {
    pub config: ConfigDir,
    pub tools: Arc<LoadTools>,
    /// Where each controller's progress and outcome are recorded.
    pub status: Arc<StatusBoard>,
    /// Modules already compiled (those of the set served now, on a reload), by the sha256
    /// of their bytes: a module with one of these digests is used as it is, not compiled
    /// again. Everything before compiling (fetch, digest and signature checks, package
    /// integrity) still runs.
    pub reusable: HashMap<String, LoadedController>,
}

/// A controller after loading: its handle for routes, and its embedded definitions.
struct Prepared {
    handle: Arc<ControllerHandle>,
    embedded: Vec<ResourceDefinition>,
    /// The config file that defines it.
    file: String,
}

impl Loader {
    /// Records every controller as loading (so `/status` lists them from the start).
    pub fn announce(&self) {
        for c in self.config.controllers.values() {
            self.status.set(initial_status(c));
        }
        if self.config.controllers.is_empty() {
            self.status.warn(format!(
                "the config directory {} holds no Controller, so no resource type is served: \
                 add a Controller file (kind Controller, spec.type wasm or template) or point \
                 -api-resources at the directory that holds one",
                self.config.root.display()
            ));
        }
    }

    /// Loads every controller, then builds the routes and the discovery document. A
    /// controller that fails, or a Binding that cannot be honoured, is reported in the
    /// status board and in the second value (one sentence each, naming the config file):
    /// the set is served anyway at startup, and refused by a reload.
    pub async fn load_all(&self) -> (Served, Vec<String>) {
        let mut prepared = Vec::new();
        for controller in self.config.controllers.values() {
            prepared.push(self.prepare(controller).await);
        }
        // What compiling the modules allocated is free now; hand it back (see heap::trim).
        crate::heap::trim();
        let mut problems: Vec<String> = prepared
            .iter()
            .filter_map(|p| {
                let error = p.handle.backend.as_ref().err()?;
                Some(format!(
                    "controller {:?} ({}) failed to load: {error}",
                    p.handle.name, p.file
                ))
            })
            .collect();
        let (served, bindings) = self.build(&prepared);
        problems.extend(bindings);
        (served, problems)
    }

    async fn prepare(&self, c: &ConfiguredController) -> Prepared {
        let started = Instant::now();
        let result = match &c.implementation {
            Implementation::Template(spec) => TemplateController::new(spec)
                .map(|t| (Backend::Template(Arc::new(t)), Vec::new()))
                .map_err(|e| format!("invalid template: {e}")),
            Implementation::Wasm(spec) => self.prepare_wasm(&c.name, spec).await,
        };
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        self.tools
            .metrics
            .controller_loaded(&c.name, result.is_ok());
        let (backend, embedded) = match result {
            Ok((backend, embedded)) => {
                tracing::info!(controller = %c.name, load_ms = elapsed, "controller loaded");
                (Ok(backend), embedded)
            }
            Err(error) => {
                tracing::error!(controller = %c.name, %error, "controller failed to load");
                (Err(error), Vec::new())
            }
        };
        self.status.update(&c.name, |s| {
            s.state = if backend.is_ok() {
                State::Loaded
            } else {
                State::Failed
            };
            s.error = backend.as_ref().err().cloned();
            s.load_ms = Some(elapsed);
            s.embedded_definitions = embedded.iter().map(|d| d.metadata.name.clone()).collect();
        });
        Prepared {
            handle: Arc::new(ControllerHandle {
                name: c.name.clone(),
                backend,
            }),
            embedded,
            file: c.file.clone(),
        }
    }

    async fn prepare_wasm(
        &self,
        name: &str,
        spec: &WasmSpec,
    ) -> Result<(Backend, Vec<ResourceDefinition>), String> {
        // Decided before any byte is fetched, so a bad key fails the controller at once.
        let requirement = self
            .tools
            .signatures
            .requirement_for(spec, &self.config.root)?;
        let wasm = match (&spec.path, &spec.image) {
            (Some(_), _) if requirement.is_some() => {
                return Err(
                    "signature required: a controller loaded from a file (spec.path) \
                     carries no signature; add it to the store (`cup controller add`) or push \
                     it, sign it (`cup controller sign`) and name it by spec.image"
                        .into(),
                );
            }
            (Some(path), _) => read_module_file(&self.config.root, path).await?,
            (None, Some(image)) => {
                let fetched = self.tools.images.fetch(image).await?;
                let digest = fetched.manifest_digest.clone();
                self.status
                    .update(name, |s| s.manifest_digest = Some(digest.clone()));
                // The digest checked is the one whose layer was just read and verified:
                // nothing is compiled or run before its signature is.
                if let Some(requirement) = requirement {
                    let verified = self
                        .tools
                        .images
                        .verify_signature(
                            image,
                            &digest,
                            &requirement,
                            self.tools.signatures.trusted_root(),
                        )
                        .await?;
                    tracing::info!(controller = %name, key = %verified.key,
                        "controller signature verified");
                    self.status.update(name, |s| s.signature = Some(verified));
                }
                fetched.wasm
            }
            (None, None) => return Err("wasm controller has neither path nor image".into()),
        };
        let embedded = embedded_definitions(&wasm)?;
        self.check_agreement(&embedded)?;
        let digest = cup_sections::sha256_digest(&wasm);
        let reused = digest
            .strip_prefix("sha256:")
            .and_then(|hex| self.reusable.get(hex));
        let (loaded, cache) = match reused {
            Some(loaded) => (loaded.clone(), REUSED),
            None => {
                let runtime = self.tools.runtime.clone()?;
                let cache = self.tools.cache.clone();
                let loaded =
                    tokio::task::spawn_blocking(move || runtime.load(&wasm, cache.as_ref()))
                        .await
                        .map_err(|e| format!("loading the module: {e}"))?
                        .map_err(|e| e.to_string())?;
                let cache = cache_label(loaded.load_info().cache);
                (loaded, cache)
            }
        };
        let info = loaded.load_info().clone();
        if let cup_runtime::Allocation::OnDemand(reason) = &info.allocation
            && cache != REUSED
        {
            // Still served; only the per-request cost of fresh memory comes back.
            tracing::info!(controller = %name, %reason, "instances not pooled");
        }
        self.tools.metrics.code_cache(cache);
        self.status.update(name, |s| {
            s.digest = Some(format!("sha256:{}", info.digest));
            s.abi = Some(match info.kind {
                cup_runtime::ControllerKind::Command => cup_sections::ABI_WASI_P1,
                cup_runtime::ControllerKind::Component => cup_runtime::CONTROLLER_INTERFACE,
            });
            s.cache = Some(cache);
            s.cache_error = info.cache_error.clone();
        });
        Ok((Backend::Wasm(loaded), embedded))
    }

    /// A definition both in the config directory and in a module must be the same
    /// definition (canonical JSON), or the controller is refused with the differing names.
    fn check_agreement(&self, embedded: &[ResourceDefinition]) -> Result<(), String> {
        let mut differ = Vec::new();
        for def in embedded {
            let configured = self.config.definitions.iter().find(|c| {
                c.definition.metadata.name == def.metadata.name
                    || def.keys().any(|k| c.definition.keys().any(|ck| ck == k))
            });
            if let Some(c) = configured {
                let same = cup_model::to_canonical_json(&c.definition).ok()
                    == cup_model::to_canonical_json(def).ok();
                if !same {
                    differ.push(format!("{} (config file {:?})", def.metadata.name, c.file));
                }
            }
        }
        if differ.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "definitions embedded in the module differ from the config directory's: {}",
                differ.join(", ")
            ))
        }
    }

    /// The routes and discovery document of the loaded controllers, and what in the
    /// Bindings could not be honoured (see [`Loader::load_all`]).
    fn build(&self, prepared: &[Prepared]) -> (Served, Vec<String>) {
        let mut build = Build::default();
        for c in &self.config.definitions {
            for key in c.definition.keys() {
                build
                    .definitions
                    .insert(key, (c.definition.clone(), c.discovery.clone()));
            }
        }
        for p in prepared.iter().filter(|p| p.handle.backend.is_ok()) {
            for def in &p.embedded {
                build.add_definition(def);
            }
        }
        let by_name: HashMap<&str, &Prepared> = prepared
            .iter()
            .map(|p| (p.handle.name.as_str(), p))
            .collect();
        for b in self.config.bindings.values() {
            let Some(p) = by_name.get(b.binding.spec.controller.as_str()) else {
                continue;
            };
            let origin = format!("binding {:?} ({})", b.binding.metadata.name, b.file);
            for key in &b.binding.spec.resources {
                match build.definitions.get(key).map(|(d, _)| d.clone()) {
                    Some(def) => build.bind(&def, &p.handle, &origin),
                    None => {
                        let warning = format!(
                            "binding {:?} names {key}, which no definition serves (neither in the config directory nor embedded in a module)",
                            b.binding.metadata.name
                        );
                        build.problems.push(format!("{origin}: names {key}, which no definition serves (neither in the config directory nor embedded in a module)"));
                        build.warn(&p.handle.name, warning);
                    }
                }
            }
        }
        for p in prepared {
            if !self.config.is_bound(&p.handle.name) {
                let origin = format!(
                    "controller {:?} ({}), bound to the definitions its module embeds",
                    p.handle.name, p.file
                );
                for def in &p.embedded {
                    build.bind(def, &p.handle, &origin);
                }
            }
        }
        for p in prepared.iter().filter(|p| p.handle.backend.is_ok()) {
            if !self.config.is_bound(&p.handle.name) && p.embedded.is_empty() {
                build.warn(&p.handle.name, serves_nothing(&p.handle.backend));
            }
        }
        self.publish(&build);
        let definitions: BTreeMap<String, String> = build
            .definitions
            .iter()
            .map(|(k, (_, json))| (k.clone(), json.clone()))
            .collect();
        let served = Served {
            discovery: discovery::body(&definitions),
            definitions,
            routes: build.routes,
            controllers: prepared.iter().map(|p| p.handle.clone()).collect(),
        };
        (served, build.problems)
    }

    fn publish(&self, build: &Build) {
        for (name, keys) in &build.served {
            self.status.update(name, |s| s.definitions = keys.clone());
        }
        for (name, warnings) in &build.warnings {
            for w in warnings {
                tracing::warn!(controller = %name, warning = %w, "controller problem");
            }
            self.status.update(name, |s| s.warnings = warnings.clone());
        }
    }
}

/// Why a loaded controller that no Binding names, and that embeds no definition, serves
/// nothing: its routes come from neither.
fn serves_nothing(backend: &Result<Backend, String>) -> String {
    match backend {
        Ok(Backend::Wasm(_)) => "serves no resource type: its module embeds no definitions \
             (embed them with `cup-embed DEF.json... MODULE.wasm`) and no Binding names it"
            .to_owned(),
        _ => "serves no resource type: no Binding names it (a template controller serves the \
             resource types its Bindings list)"
            .to_owned(),
    }
}

/// Routes and definitions being assembled.
#[derive(Default)]
struct Build {
    /// key → (definition, `/apis` JSON).
    definitions: BTreeMap<String, (ResourceDefinition, String)>,
    routes: RouteTable,
    validators: HashMap<(String, String), Arc<jsonschema::Validator>>,
    served: BTreeMap<String, Vec<String>>,
    warnings: BTreeMap<String, Vec<String>>,
    /// What could not be bound as the config directory asks, naming the file that asks.
    problems: Vec<String>,
}

impl Build {
    fn add_definition(&mut self, def: &ResourceDefinition) {
        let Ok(json) = discovery::encode(def) else {
            return;
        };
        for key in def.keys() {
            self.definitions
                .entry(key)
                .or_insert_with(|| (def.clone(), json.clone()));
        }
    }

    fn warn(&mut self, controller: &str, warning: String) {
        self.warnings
            .entry(controller.to_owned())
            .or_default()
            .push(warning);
    }

    /// Routes for every version of `def` to `handle`, as `origin` (a Binding, or the
    /// controller's embedded definitions) asks.
    fn bind(&mut self, def: &ResourceDefinition, handle: &Arc<ControllerHandle>, origin: &str) {
        for (version, schema) in &def.spec.versions {
            let key = format!("{}/{version}/{}", def.spec.group, def.names.plural);
            let validator = match self.validator(def, version, schema) {
                Ok(v) => v,
                Err(e) => {
                    let warning = format!("{key}: schema does not compile: {e}");
                    self.problems.push(format!("{origin}: {warning}"));
                    self.warn(&handle.name, warning);
                    continue;
                }
            };
            let route = Route {
                group: def.spec.group.clone(),
                version: version.clone(),
                plural: def.names.plural.clone(),
                kind: def.names.kind.clone(),
                validator,
                controller: handle.clone(),
            };
            match self.routes.insert(route) {
                Ok(()) => self
                    .served
                    .entry(handle.name.clone())
                    .or_default()
                    .push(key),
                Err(owner) if owner == handle.name => {}
                Err(owner) => {
                    let warning =
                        format!("{key} is already served by controller {owner:?}; not bound here");
                    self.problems.push(format!("{origin}: {warning}"));
                    self.warn(&handle.name, warning);
                }
            }
        }
    }

    fn validator(
        &mut self,
        def: &ResourceDefinition,
        version: &str,
        schema: &serde_json::Value,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        let id = (def.metadata.name.clone(), version.to_owned());
        if let Some(v) = self.validators.get(&id) {
            return Ok(v.clone());
        }
        let compiled = Arc::new(cup_model::compile_schema(schema)?);
        self.validators.insert(id, compiled.clone());
        Ok(compiled)
    }
}

/// Reads `path` (relative to the config directory, never leaving it).
async fn read_module_file(root: &Path, path: &str) -> Result<Vec<u8>, String> {
    let full =
        cup_template::resolve_path(root, path).map_err(|e| format!("wasm path {path:?}: {e}"))?;
    tokio::fs::read(&full)
        .await
        .map_err(|e| format!("reading {}: {e}", full.display()))
}

/// The verified embedded definitions; a plain module has none. A stripped or tampered
/// package is refused.
fn embedded_definitions(wasm: &[u8]) -> Result<Vec<ResourceDefinition>, String> {
    let package =
        cup_sections::read_package(wasm).map_err(|e| format!("reading the module: {e}"))?;
    match package.integrity {
        Integrity::NoCupSections => Ok(Vec::new()),
        _ => package
            .verified_definitions()
            .map_err(|e| format!("controller package refused: {e}")),
    }
}

/// The `cache` of a module compiled for the set served before a reload and used again.
const REUSED: &str = "reused";

fn cache_label(status: CacheStatus) -> &'static str {
    match status {
        CacheStatus::Disabled => "disabled",
        CacheStatus::Miss => "miss",
        CacheStatus::Hit => "hit",
        CacheStatus::Replaced => "replaced",
        CacheStatus::Shared => "shared",
    }
}

fn initial_status(c: &ConfiguredController) -> ControllerStatus {
    let (kind, path, image) = match &c.implementation {
        Implementation::Template(_) => ("template", None, None),
        Implementation::Wasm(w) => ("wasm", w.path.clone(), w.image.clone()),
    };
    ControllerStatus {
        name: c.name.clone(),
        kind,
        file: c.file.clone(),
        path,
        image,
        manifest_digest: None,
        signature: None,
        digest: None,
        abi: None,
        definitions: Vec::new(),
        embedded_definitions: Vec::new(),
        state: State::Loading,
        error: None,
        warnings: Vec::new(),
        cache: None,
        cache_error: None,
        load_ms: None,
    }
}
