//! State shared by every request.

use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;

use crate::access::AccessControl;
use crate::inline_reads::InlineReads;
use crate::listing::ListLimits;
use crate::load::Served;
use crate::metrics::Metrics;
use crate::reload::ReloadBoard;
use crate::source::Source;
use crate::status::StatusBoard;

/// The server's state: the source, what is served (once loaded), status and metrics.
pub struct AppState {
    pub source: Arc<Source>,
    served: RwLock<Option<Arc<Served>>>,
    pub status: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    /// Wasm reads running on async workers right now (see `inline_reads`).
    pub inline_reads: InlineReads,
    /// Bounds of every list response.
    pub list_limits: ListLimits,
    /// One permit: listing a body's schema violations (`api::decode_put`).
    pub schema_errors: Semaphore,
    /// Authentication, authorisation and the audit log.
    pub access: AccessControl,
    /// How reloads of the config directory went.
    pub reload: ReloadBoard,
}

/// The route template of a response, for metrics (set by the resource handler).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

impl AppState {
    pub fn new(
        source: Source,
        status: Arc<StatusBoard>,
        metrics: Arc<Metrics>,
        list_limits: ListLimits,
        access: AccessControl,
    ) -> AppState {
        AppState {
            source: Arc::new(source),
            served: RwLock::new(None),
            status,
            metrics,
            inline_reads: InlineReads::default(),
            list_limits,
            schema_errors: Semaphore::new(1),
            access,
            reload: ReloadBoard::default(),
        }
    }

    /// What is served, or `None` while controllers are loading.
    pub fn served(&self) -> Option<Arc<Served>> {
        self.served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Publishes the loaded routes: from now on the server is ready. A reload publishes
    /// again: requests that already hold the set before it finish on that set.
    pub fn publish(&self, served: Served) {
        *self
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(served));
    }
}
