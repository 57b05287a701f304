//! The audit trail: who ran what, what was decided, and how it ended, durable before a
//! statement runs and provably unedited afterwards.
//!
//! - [`event`]: what is recorded.
//! - [`chain`]: the hash chain and signed checkpoints that make edits detectable.
//! - [`store`]: SQLite (embedded) and PostgreSQL (shared) stores behind one interface.
//! - [`writer`]: the group-committing writer the gateway appends through.
//! - [`bound`]: size caps on what one event holds.
//! - [`witness`]: the chain's signed head, published outside the store.
//! - [`verify`], [`search`], [`replay`], [`export`]: what auditors run.

pub mod bound;
pub mod chain;
pub mod event;
pub mod export;
pub mod replay;
pub mod search;
pub mod store;
pub mod verify;
pub mod witness;
pub mod writer;

pub use chain::{Checkpoint, CheckpointKey, PublicKey, Record};
pub use event::{
    AdminEvent, Approval, AuthFailure, Event, HoldEvent, ParameterDigest, Recording, ResultEvent,
    SecurityEvent, SessionEnd, SessionStart, StatementEvent,
};
pub use search::Filter;
pub use store::{Hit, Store, StoreError};
pub use verify::{Verification, WitnessCheck, check_witness, verify};
pub use witness::{FileWitness, Witness, WitnessError, WitnessRef};
pub use writer::{AuditError, AuditLog, Durable, LogOptions};
