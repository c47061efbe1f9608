//! What `/status` reports about each controller, updated while controllers load.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// Where a controller is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Loading,
    Loaded,
    Failed,
}

/// One controller's entry in `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ControllerStatus {
    pub name: String,
    /// `template` or `wasm`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The config file that defines it.
    pub file: String,
    /// `spec.path` of a wasm controller (relative to the config directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `spec.image` of a wasm controller, as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The manifest digest an image resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The signature that let an image be run, when one was required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signatures::VerifiedSignature>,
    /// `sha256:<hex>` of the wasm module that runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How cupd talks to a loaded wasm controller: `cup.wasi-p1.v1` (a WASI preview 1
    /// command) or the component interface it exports (`cup:controller/controller@0.1.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abi: Option<&'static str>,
    /// `group/version/plural` keys this controller serves.
    pub definitions: Vec<String>,
    /// Definitions embedded in the module (`metadata.name`).
    pub embedded_definitions: Vec<String>,
    pub state: State,
    /// Why it failed (its routes answer 503 with this).
    pub error: Option<String>,
    /// Problems that did not stop it (a binding naming an unknown definition, a route
    /// already served by another controller).
    pub warnings: Vec<String>,
    /// How the compiled code was obtained: `hit`, `miss`, `replaced`, `shared`, `disabled`,
    /// or `reused` (a reload kept the module the set before it had compiled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_error: Option<String>,
    /// Wall time of the load (fetch, verification, compilation or cache read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
}

/// All controllers' statuses, by name, and what is off with the configuration as a whole.
#[derive(Debug, Default)]
pub struct StatusBoard {
    controllers: Mutex<BTreeMap<String, ControllerStatus>>,
    warnings: Mutex<Vec<String>>,
}

impl StatusBoard {
    /// Records a problem of the whole configuration (not of one controller) and logs it.
    pub fn warn(&self, warning: String) {
        tracing::warn!(%warning, "configuration problem");
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(warning);
    }

    /// The problems recorded with [`StatusBoard::warn`], oldest first.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, status: ControllerStatus) {
        self.lock().insert(status.name.clone(), status);
    }

    pub fn update(&self, name: &str, change: impl FnOnce(&mut ControllerStatus)) {
        if let Some(status) = self.lock().get_mut(name) {
            change(status);
        }
    }

    /// Takes over everything `other` recorded (a reloaded set's statuses and warnings), in
    /// place of what this board held.
    pub fn replace_with(&self, other: &StatusBoard) {
        let controllers = std::mem::take(&mut *other.lock());
        let warnings = std::mem::take(
            &mut *other
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        *self.lock() = controllers;
        *self
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = warnings;
    }

    pub fn snapshot(&self) -> Vec<ControllerStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ControllerStatus>> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.controllers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
