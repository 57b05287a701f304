//! What both pumps of one session share: the session's context (who, what decides, where
//! it is audited) and the settings the server reports (atomics the backend writes and the
//! frontend reads).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use arc_swap::ArcSwap;
use portcullis_sql::{ClientEncoding, LexerOptions, ParseCache};
use portcullis_wire::backend::TransactionStatus;
use tokio::sync::Notify;

use super::settled;
use crate::decision::{Decider, SessionInfo};

/// Per-session context shared by both pumps.
pub struct Context {
    pub info: SessionInfo,
    pub decider: Arc<dyn Decider>,
    pub cache: Arc<ParseCache>,
    /// Cancel requests for this session (see `cancel::Cancels`).
    pub cancels: Arc<crate::cancel::Cancels>,
    /// The search path the session started with.
    pub search_path: Vec<String>,
    /// Called when a statement that changes the catalog is forwarded.
    pub catalog_changed: Box<dyn Fn() + Send + Sync>,
    pub audit: crate::audit::SessionAudit,
    /// Notified when an operator revokes the session.
    pub revoked: Arc<Notify>,
    /// When the caller's token expires, and how long the session may outlive it, by
    /// `clock`.
    pub expires_at: jiff::Timestamp,
    pub expiry_grace: std::time::Duration,
    pub clock: Arc<dyn portcullis_policy::Clock>,
}

/// Session settings the server reports and the frontend needs.
pub struct Shared {
    transaction: AtomicU8,
    standard_conforming_strings: AtomicBool,
    encoding: ArcSwap<ClientEncoding>,
    /// How far the server has answered, for `settled::Sent::known`.
    pub readies: settled::Readies,
    /// Whether a statement is held (see `frontend::hold`).
    pub held: HoldWatch,
}

/// A held statement, as the frontend's loop watches it: while one is held the client's
/// socket is read, so a disconnect ends the wait.
#[derive(Default)]
pub struct HoldWatch {
    held: AtomicBool,
    /// Notified when `held` changes.
    pub changed: Notify,
    /// The client disconnected while a statement was held.
    gone: AtomicBool,
    /// The client sent more than the gateway reads while a statement is held: it could
    /// no longer see a disconnect, so the wait ends.
    overflow: AtomicBool,
    overflowed: Notify,
}

impl HoldWatch {
    pub fn set(&self, held: bool) {
        if held {
            self.overflow.store(false, Ordering::SeqCst);
        }
        self.held.store(held, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// The held client's unread bytes reached the limit.
    pub fn overflow(&self) {
        self.overflow.store(true, Ordering::SeqCst);
        self.overflowed.notify_waiters();
    }

    /// Resolves once the held client's unread bytes reached the limit.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.overflowed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.overflow.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    pub fn client_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
    }

    pub fn is_client_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }
}

impl Shared {
    pub(super) fn new(parameters: &std::collections::HashMap<String, String>) -> Self {
        let s = Shared {
            transaction: AtomicU8::new(TransactionStatus::Idle.byte()),
            standard_conforming_strings: AtomicBool::new(true),
            encoding: ArcSwap::from_pointee(ClientEncoding::Utf8),
            readies: settled::Readies::default(),
            held: HoldWatch::default(),
        };
        for (k, v) in parameters {
            s.parameter(k, v);
        }
        s
    }

    pub(super) fn parameter(&self, name: &str, value: &str) {
        match name {
            "client_encoding" => self
                .encoding
                .store(Arc::new(ClientEncoding::from_name(value))),
            "standard_conforming_strings" => self
                .standard_conforming_strings
                .store(value.eq_ignore_ascii_case("on"), Ordering::Relaxed),
            _ => {}
        }
    }

    pub(super) fn set_transaction(&self, status: TransactionStatus) {
        self.transaction.store(status.byte(), Ordering::Relaxed);
    }

    pub fn transaction(&self) -> TransactionStatus {
        TransactionStatus::from_byte(self.transaction.load(Ordering::Relaxed))
            .unwrap_or(TransactionStatus::Idle)
    }

    pub fn encoding(&self) -> ClientEncoding {
        **self.encoding.load()
    }

    pub fn lexer(&self) -> LexerOptions {
        LexerOptions {
            standard_conforming_strings: self.standard_conforming_strings.load(Ordering::Relaxed),
        }
    }
}
