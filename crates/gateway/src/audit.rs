//! The gateway's side of the audit trail: which events a session writes and when.
//!
//! A statement's event is made durable before the statement is forwarded (the frontend
//! waits on it); if the store cannot write, the statement is refused with SQLSTATE 58030.
//! How it ended is recorded when the server answers (the backend reports
//! [`Finished`] statements), and, where recording is on, the rows the client received.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use portcullis_audit::{AuditError, AuditLog, Event, Recording, ResultEvent, StatementEvent};
use portcullis_sql::analysis::Facts;
use portcullis_wire::backend::{DataRow, ErrorResponse, RowDescription, Severity};
use portcullis_wire::{Format, Formats};

use crate::decision::{Reasons, SessionInfo};

/// What a session needs to write its events.
pub struct SessionAudit {
    pub log: AuditLog,
    /// Record the result rows of every statement (the target or the whole gateway asks
    /// for it); otherwise only of statements a `@record` policy allowed.
    pub record_all: bool,
    /// Caps on what is recorded.
    pub limits: RecordLimits,
}

impl SessionAudit {
    /// The limits to record a statement's rows within, if they are recorded.
    pub fn recording(&self, reasons: &Reasons) -> Option<&RecordLimits> {
        (self.record_all || reasons.record).then_some(&self.limits)
    }
}

/// Size caps on recorded rows.
#[derive(Clone)]
pub struct RecordLimits {
    pub statement_bytes: usize,
    /// Bytes the session may still record; shared by all its statements.
    pub session_left: Arc<AtomicI64>,
}

/// Opens the configured store and starts its writer.
pub fn open_log(runtime: &crate::Runtime) -> Result<AuditLog, String> {
    let a = &runtime.config.audit;
    let pem = a
        .signing_key
        .resolve()
        .map_err(|e| format!("signing_key: {e}"))?;
    let key = portcullis_audit::CheckpointKey::from_pem(pem.expose())
        .map_err(|e| format!("signing_key: {e}"))?;
    let password = match &a.password {
        Some(p) => Some(
            p.resolve()
                .map_err(|e| format!("password: {e}"))?
                .expose()
                .to_string(),
        ),
        None => None,
    };
    let witness = match &a.witness {
        Some(w) => {
            Some(portcullis_audit::WitnessRef::parse(w).map_err(|e| format!("witness: {e}"))?)
        }
        None => None,
    };
    let options = portcullis_audit::LogOptions {
        checkpoint_interval: a.checkpoint_interval,
        retention: a.retention,
        ca_file: a.ca_file.clone(),
        max_text_bytes: a.statement_text_bytes,
        witness,
        ..Default::default()
    };
    AuditLog::start(&a.store, password, key, options)
        .map_err(|e| format!("cannot open the store {}: {e}", a.store))
}

/// The error a statement gets when its event cannot be made durable.
pub fn unavailable(e: &AuditError) -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "58030",
        format!("statement refused: {e}; nothing was run"),
    )
    .hint("the gateway runs nothing it cannot audit; retry once the audit store is back")
}

/// Text fit for the trail: statements that carry a password have their literals replaced
/// by placeholders.
pub fn redacted(text: &str, facts: Option<&Facts>) -> String {
    let secret = facts.is_some_and(|f| {
        matches!(
            f.node.as_str(),
            "CreateRoleStmt" | "AlterRoleStmt" | "CreateUserMappingStmt" | "AlterUserMappingStmt"
        )
    });
    if secret {
        pg_query::normalize(text).unwrap_or_else(|_| "/* redacted */".into())
    } else {
        text.to_string()
    }
}

/// Bound parameters as the trail shows them: text as sent, binary as `\x…` hex, and
/// `***` for every non-NULL value when a policy marks them sensitive.
pub fn parameters(bind: &portcullis_wire::frontend::Bind, sensitive: bool) -> Vec<Option<String>> {
    shown_parameters(&bind.parameters(), sensitive)
}

/// Parameter values as people read them: text as sent, binary as `\x` hex, `***` for
/// all when a policy marks them sensitive.
pub fn shown_parameters(values: &[(bool, Option<&[u8]>)], sensitive: bool) -> Vec<Option<String>> {
    values
        .iter()
        .map(|&(binary, v)| {
            v.map(|b| match (binary, std::str::from_utf8(b)) {
                _ if sensitive => "***".to_string(),
                (false, Ok(s)) => s.to_string(),
                _ => format!("\\x{}", hex_string(b)),
            })
        })
        .collect()
}

fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What the statement event holds beyond the session.
pub struct Described<'a> {
    pub seq: u64,
    pub origin: &'static str,
    pub text: &'a str,
    pub parameters: Vec<Option<String>>,
    pub facts: Option<&'a Facts>,
    pub reasons: &'a Reasons,
    pub refusal: Option<&'a ErrorResponse>,
    pub max_rows: Option<u64>,
    pub search_path: &'a [String],
}

impl<'a> Described<'a> {
    /// A statement as decided, with no facts, parameters, refusal or row limit yet; the
    /// session fills in its search path when it writes the event.
    pub fn new(seq: u64, origin: &'static str, text: &'a str, reasons: &'a Reasons) -> Self {
        Described {
            seq,
            origin,
            text,
            parameters: Vec::new(),
            facts: None,
            reasons,
            refusal: None,
            max_rows: None,
            search_path: &[],
        }
    }

    pub fn facts(self, facts: Option<&'a Facts>) -> Self {
        Described { facts, ..self }
    }

    pub fn parameters(self, parameters: Vec<Option<String>>) -> Self {
        Described { parameters, ..self }
    }

    pub fn refused(self, refusal: &'a ErrorResponse) -> Self {
        Described {
            refusal: Some(refusal),
            ..self
        }
    }

    pub fn max_rows(self, max_rows: Option<u64>) -> Self {
        Described { max_rows, ..self }
    }
}

/// The statement event for a decided statement.
pub fn statement_event(info: &SessionInfo, d: Described<'_>) -> Event {
    let facts = d.reasons.facts.as_deref().or(d.facts);
    let mut tables: Vec<String> = Vec::new();
    let mut functions: Vec<String> = Vec::new();
    if let Some(f) = facts {
        for a in &f.accesses {
            let t = a.relation.to_string();
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
        for func in &f.functions {
            let n = func.to_string();
            if !functions.contains(&n) {
                functions.push(n);
            }
        }
    }
    Event::Statement(StatementEvent {
        session: info.id.to_string(),
        seq: d.seq,
        subject: info.subject.clone(),
        groups: info.groups.clone(),
        target: info.target.clone(),
        upstream_role: info.upstream_role.clone(),
        origin: d.origin.to_string(),
        text: redacted(d.text, facts),
        // Filled in, and the text cut to size, as the event is appended.
        text_bytes: None,
        text_sha256: None,
        parameters: d.parameters,
        parameter_digests: Vec::new(),
        truncated: Vec::new(),
        statement_kind: facts.map_or("unknown", |f| f.kind.as_str()).to_string(),
        tables,
        functions,
        decision: d.reasons.decision.as_str().to_string(),
        policies: d.reasons.policies.to_vec(),
        sqlstate: d.refusal.map(|e| e.code().to_string()),
        message: d.refusal.map(|e| e.message().to_string()),
        observed: d.reasons.observed.as_deref().map(str::to_string),
        max_rows: d.max_rows,
        search_path: d.search_path.to_vec(),
        approval: d.reasons.approval.clone(),
    })
}

/// The start of a session: durable before the client is welcomed.
pub fn session_start(info: &SessionInfo, principal: &portcullis_identity::Principal) -> Event {
    Event::SessionStart(portcullis_audit::SessionStart {
        session: info.id.to_string(),
        subject: info.subject.clone(),
        groups: info.groups.clone(),
        client_addr: info.client_addr.to_string(),
        tls: info.tls,
        application_name: info.application_name.clone(),
        target: info.target.clone(),
        upstream_role: info.upstream_role.clone(),
        issuer: principal.issuer.clone(),
        token_expires: jiff::Timestamp::try_from(principal.expires_at)
            .ok()
            .map(|t| t.to_string()),
    })
}

/// How a relayed session ended.
pub struct Ended {
    pub reason: String,
    pub statements: u64,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
}

/// The end of a session.
pub fn session_end(info: &SessionInfo, ended: Ended, duration_ms: u64) -> Event {
    Event::SessionEnd(portcullis_audit::SessionEnd {
        session: info.id.to_string(),
        subject: info.subject.clone(),
        target: info.target.clone(),
        reason: ended.reason,
        duration_ms,
        bytes_from_client: ended.bytes_from_client,
        bytes_to_client: ended.bytes_to_client,
        statements: ended.statements,
    })
}

/// A refused login: `subject` once the token was verified.
pub fn auth_failure(
    client_addr: std::net::SocketAddr,
    target: Option<String>,
    subject: Option<String>,
    e: &crate::error::StartupError,
) -> Event {
    Event::AuthFailure(portcullis_audit::AuthFailure {
        client_addr: client_addr.to_string(),
        target,
        subject,
        sqlstate: e.sqlstate().to_string(),
        reason: e.to_string(),
    })
}

/// An administrative action (a reload, a revocation), naming the policy set in force and
/// who acted, when a person did.
pub fn admin_event(
    action: &str,
    detail: String,
    runtime: &crate::Runtime,
    actor: Option<String>,
) -> Event {
    Event::Admin(portcullis_audit::AdminEvent {
        action: action.to_string(),
        detail,
        policy_hash: Some(runtime.policies.store.sha256().to_string()),
        actor,
    })
}

/// A security event: the server answered something the gateway did not decide (the
/// tripwire); `seq` is the statement whose answer it was, when known.
pub fn security_event(info: &SessionInfo, seq: Option<u64>, what: &str, detail: &str) -> Event {
    Event::Security(portcullis_audit::SecurityEvent {
        session: info.id.to_string(),
        subject: info.subject.clone(),
        target: info.target.clone(),
        seq,
        what: what.into(),
        detail: detail.into(),
    })
}

/// A held statement's hold began (`state` `held`) or ended (how, in `state`).
pub fn hold_event(
    info: &SessionInfo,
    request: &crate::hold::HoldRequest,
    text: &str,
    state: &str,
    detail: &str,
) -> Event {
    Event::Hold(portcullis_audit::HoldEvent {
        session: info.id.to_string(),
        subject: info.subject.clone(),
        target: info.target.clone(),
        request: request.id.to_string(),
        state: state.into(),
        approvers: request.approvers.clone(),
        text: text.into(),
        detail: detail.into(),
    })
}

/// A forwarded statement, followed until the server says how it ended.
pub struct Tracker {
    pub seq: u64,
    pub started: Instant,
    pub recorder: Option<Recorder>,
    /// Rows of a portal's earlier Executes, each suspended after its row count.
    pub rows_before: u64,
}

impl Tracker {
    /// The recorder learns the columns and their formats from the result's description.
    pub fn new(seq: u64, recording: Option<&RecordLimits>) -> Self {
        Tracker {
            seq,
            started: Instant::now(),
            rows_before: 0,
            recorder: recording.map(|l| Recorder {
                limits: l.clone(),
                recording: Recording::default(),
                bytes: 0,
                formats: Formats::default(),
            }),
        }
    }

    /// Whether rows must be seen whole (to be recorded) rather than streamed.
    pub fn wants_rows(&self) -> bool {
        self.recorder
            .as_ref()
            .is_some_and(|r| !r.recording.truncated)
    }

    /// The statement ended; `error` is what the client received instead of success.
    pub fn finish(
        self,
        command: Option<&str>,
        rows: Option<u64>,
        error: Option<&ErrorResponse>,
    ) -> Finished {
        Finished(ResultEvent {
            session: String::new(),
            seq: self.seq,
            command: command.map(str::to_string),
            rows: match (rows, self.rows_before) {
                (r, 0) => r,
                (r, before) => Some(r.unwrap_or(0) + before),
            },
            sqlstate: error.map(|e| e.code().to_string()),
            message: error.map(|e| e.message().to_string()),
            duration_us: self.started.elapsed().as_micros() as u64,
            // Statements without a result set (UPDATE, SET) have nothing to record.
            recording: self
                .recorder
                .map(|r| r.recording)
                .filter(|r| !r.columns.is_empty() || !r.rows.is_empty()),
        })
    }
}

/// A statement's end, as the backend saw it; the session id is filled in when written.
pub struct Finished(pub ResultEvent);

impl Finished {
    pub fn into_event(mut self, info: &SessionInfo) -> Event {
        self.0.session = info.id.to_string();
        Event::Result(self.0)
    }
}

/// Collects result rows up to the caps.
pub struct Recorder {
    limits: RecordLimits,
    recording: Recording,
    bytes: usize,
    formats: Formats,
}

impl Recorder {
    /// The result's columns: their names, and the format their values arrive in.
    pub fn columns(&mut self, d: &RowDescription) {
        self.recording.columns = d.fields().iter().map(|f| f.name.clone()).collect();
        self.formats = d.formats();
    }

    fn is_binary(&self, column: usize) -> bool {
        self.formats.of(column) == Format::Binary
    }

    pub fn row(&mut self, row: &DataRow) {
        if self.recording.truncated {
            return;
        }
        let size: usize = row.values().map(|v| v.map_or(0, <[u8]>::len)).sum();
        let left = self
            .limits
            .session_left
            .fetch_sub(size as i64, Ordering::Relaxed);
        if self.bytes + size > self.limits.statement_bytes || left < size as i64 {
            self.limits
                .session_left
                .fetch_add(size as i64, Ordering::Relaxed);
            self.recording.truncated = true;
            return;
        }
        self.bytes += size;
        let values = row
            .values()
            .enumerate()
            .map(|(i, v)| {
                v.map(|b| match std::str::from_utf8(b) {
                    Ok(s) if !self.is_binary(i) => s.to_string(),
                    _ => format!("\\x{}", hex_string(b)),
                })
            })
            .collect();
        self.recording.rows.push(values);
    }

    /// A row too large to be seen whole went by.
    pub fn missed(&mut self) {
        self.recording.truncated = true;
    }
}
