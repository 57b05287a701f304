//! What the audit trail records: session, statement, result, admin and security events,
//! and the columns a store indexes them by.
//!
//! An event is serialised once, to JSON, when it is appended; that text is what the hash
//! chain covers. The indexed columns are derived from it, so `audit verify` can re-derive
//! them and notice an edit to a column the chain does not cover directly.

use serde::{Deserialize, Serialize};

/// One audit event. Built once and moved to the writer, so the variants' sizes differ
/// without cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
    AuthFailure(AuthFailure),
    Statement(StatementEvent),
    Result(ResultEvent),
    Admin(AdminEvent),
    Security(SecurityEvent),
    Hold(HoldEvent),
}

/// A client logged in and was connected to its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    pub session: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub client_addr: String,
    pub tls: bool,
    pub application_name: Option<String>,
    pub target: String,
    pub upstream_role: String,
    pub issuer: String,
    /// When the caller's token expires (RFC 3339).
    pub token_expires: Option<String>,
}

/// A session ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub session: String,
    pub subject: String,
    pub target: String,
    /// Why: `terminated`, `client closed`, `server closed`, or an error.
    pub reason: String,
    pub duration_ms: u64,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub statements: u64,
}

/// A connection was refused before a session began. Never holds the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthFailure {
    pub client_addr: String,
    pub target: Option<String>,
    /// The subject, when the token was readable enough to name one.
    pub subject: Option<String>,
    pub sqlstate: String,
    pub reason: String,
}

/// A statement and its decision, recorded before it is forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementEvent {
    pub session: String,
    /// Position within the session, from 1.
    pub seq: u64,
    pub subject: String,
    pub groups: Vec<String>,
    pub target: String,
    pub upstream_role: String,
    /// `query`, `parse`, `bind` or `function_call`.
    pub origin: String,
    /// The statement's text, or its first `statement_text_bytes` when it is longer (then
    /// `truncated` names `text`).
    pub text: String,
    /// The whole text's length in bytes (UTF-8), also when `text` holds only its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_bytes: Option<u64>,
    /// SHA-256 (hex) of the whole text as UTF-8: which text ran, provably, when only its
    /// start is kept. Absent in events written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_sha256: Option<String>,
    /// Bound parameters: text as sent, binary as `\x…` hex, masked ones as `***`; together
    /// at most `statement_text_bytes`, the rest cut (see `parameter_digests`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Option<String>>,
    /// The whole length and hash of each parameter the trail keeps only the start of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_digests: Vec<ParameterDigest>,
    /// Fields kept only in part because they were larger than the cap: `text`,
    /// `parameters`, `tables`, `functions`, `search_path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
    pub statement_kind: String,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
    /// `allow`, `deny`, `needs_approval` or `mask`.
    pub decision: String,
    /// The policies that decided.
    #[serde(default)]
    pub policies: Vec<String>,
    /// The refusal's SQLSTATE and message, when refused.
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    /// What observe-only policies would have decided, when stricter than the decision.
    pub observed: Option<String>,
    /// The row limit the statement ran under.
    pub max_rows: Option<u64>,
    /// The session's search path when it was decided (unqualified names resolve through
    /// it), for re-deciding it later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search_path: Vec<String>,
    pub approval: Option<Approval>,
}

/// A bound parameter the trail holds only the start of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterDigest {
    /// Its position among the parameters, from 0.
    pub index: usize,
    /// The whole value's length in bytes, as the trail shows values (binary as `\x…` hex).
    pub bytes: u64,
    /// SHA-256 (hex) of the whole value, as the trail shows values.
    pub sha256: String,
}

/// Who approved a held statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub request: String,
    pub approver: Option<String>,
    pub outcome: String,
}

/// How a forwarded statement ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEvent {
    pub session: String,
    pub seq: u64,
    /// The CommandComplete tag (`SELECT 3`), when it completed.
    pub command: Option<String>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub duration_us: u64,
    /// The rows themselves, when the session is recorded.
    pub recording: Option<Recording>,
}

/// Result rows as the client received them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub columns: Vec<String>,
    /// Text values; binary ones as `\x…` hex; `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The size cap cut the recording short.
    pub truncated: bool,
}

/// A change to the gateway itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminEvent {
    /// `config_reload`, `reload_failed`, `secret_rotation`, `gateway_start`, …
    pub action: String,
    pub detail: String,
    /// SHA-256 of the policy set in force after the change.
    pub policy_hash: Option<String>,
    pub actor: Option<String>,
}

/// The server's answer contradicted what the gateway decided (a write's command tag for a
/// statement analysed as a read, more results than statements): the analysis was wrong
/// somewhere, and the session was ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityEvent {
    pub session: String,
    pub subject: String,
    pub target: String,
    /// The statement whose answer tripped it, when known.
    pub seq: Option<u64>,
    /// `tripwire`.
    pub what: String,
    pub detail: String,
}

/// A statement held until someone decides on it: one event when the hold begins and one
/// when it ends, however it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldEvent {
    pub session: String,
    pub subject: String,
    pub target: String,
    /// The approval request the statement waits on.
    pub request: String,
    /// `held`, then one of `approved`, `denied`, `expired`, `canceled`, `withdrawn`
    /// (the client disconnected or the session ended) or `token_expired`.
    pub state: String,
    /// The groups whose members may decide.
    pub approvers: Vec<String>,
    /// The statement held.
    pub text: String,
    pub detail: String,
}

/// The columns a store indexes an event by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexed<'a> {
    pub kind: &'static str,
    pub session: Option<&'a str>,
    pub statement_seq: Option<u64>,
    pub subject: Option<&'a str>,
    pub target: Option<&'a str>,
    pub decision: Option<&'a str>,
    pub statement_kind: Option<&'a str>,
    pub sqlstate: Option<&'a str>,
    /// Text for full-text search.
    pub text: Option<&'a str>,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionStart(_) => "session_start",
            Event::SessionEnd(_) => "session_end",
            Event::AuthFailure(_) => "auth_failure",
            Event::Statement(_) => "statement",
            Event::Result(_) => "result",
            Event::Admin(_) => "admin",
            Event::Security(_) => "security",
            Event::Hold(_) => "hold",
        }
    }

    /// The session this event belongs to, if any.
    pub fn session(&self) -> Option<&str> {
        self.indexed().session
    }

    pub fn indexed(&self) -> Indexed<'_> {
        let mut i = Indexed {
            kind: self.kind(),
            ..Indexed::default()
        };
        match self {
            Event::SessionStart(e) => {
                i.session = Some(&e.session);
                i.subject = Some(&e.subject);
                i.target = Some(&e.target);
            }
            Event::SessionEnd(e) => {
                i.session = Some(&e.session);
                i.subject = Some(&e.subject);
                i.target = Some(&e.target);
            }
            Event::AuthFailure(e) => {
                i.subject = e.subject.as_deref();
                i.target = e.target.as_deref();
                i.sqlstate = Some(&e.sqlstate);
            }
            Event::Statement(e) => {
                i.session = Some(&e.session);
                i.statement_seq = Some(e.seq);
                i.subject = Some(&e.subject);
                i.target = Some(&e.target);
                i.decision = Some(&e.decision);
                i.statement_kind = Some(&e.statement_kind);
                i.sqlstate = e.sqlstate.as_deref();
                i.text = Some(&e.text);
            }
            Event::Result(e) => {
                i.session = Some(&e.session);
                i.statement_seq = Some(e.seq);
                i.sqlstate = e.sqlstate.as_deref();
            }
            Event::Admin(e) => {
                i.subject = e.actor.as_deref();
            }
            Event::Security(e) => {
                i.session = Some(&e.session);
                i.statement_seq = e.seq;
                i.subject = Some(&e.subject);
                i.target = Some(&e.target);
                i.text = Some(&e.detail);
            }
            Event::Hold(e) => {
                i.session = Some(&e.session);
                i.subject = Some(&e.subject);
                i.target = Some(&e.target);
                i.decision = Some(&e.state);
                i.text = Some(&e.text);
            }
        }
        i
    }
}
