//! What every session needs from the gateway: the decider, the audit log, the caches and
//! registries shared by all sessions. Built once by the gateway, handed to each session and
//! to the control port.

use std::sync::Arc;

use portcullis_sql::ParseCache;

use crate::cancel::CancelRegistry;
use crate::catalog::Catalogs;
use crate::decision::Decider;

/// What a session needs from the gateway.
pub struct Services {
    pub decider: Arc<dyn Decider>,
    pub audit: portcullis_audit::AuditLog,
    pub cache: Arc<ParseCache>,
    pub cancels: Arc<CancelRegistry>,
    pub active: Arc<std::sync::atomic::AtomicUsize>,
    pub catalogs: Arc<Catalogs>,
    pub sessions: Arc<crate::sessions::Sessions>,
    /// The clock live sessions check their token's expiry against.
    pub clock: Arc<dyn portcullis_policy::Clock>,
    /// Statements held for approval, when `[approval]` is configured.
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
}
