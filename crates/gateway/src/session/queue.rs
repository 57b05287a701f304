//! The expected-response queue: what the server owes for each message sent to it, so
//! every server message is attributed to the statement it answers.
//!
//! The frontend pushes an [`Expect`] before it forwards a message; the backend pops as the
//! server answers. The server's own rules are mirrored: after an error in the extended
//! protocol it skips everything up to Sync; during COPY FROM STDIN it ignores Sync and Flush
//! until the copy ends; asynchronous messages (notices, notifications, parameter changes)
//! belong to nobody. Entries also say what to do with an answer: forward it, replace it (a
//! refusal standing in for the server's error), or swallow it (messages the gateway sent
//! on its own).

use std::collections::VecDeque;
use std::sync::Arc;

use portcullis_wire::Message;
use portcullis_wire::backend::{self, CommandComplete, ErrorResponse, Severity};
use tokio::sync::oneshot;

use super::portals::{Bound, Effect, Ledger};
use super::tripwire::Expected;
use crate::audit::{Finished, Tracker};
use crate::decision::Rewrite;

/// What to do with an ErrorResponse answering an entry.
pub enum OnError {
    Forward,
    /// Send this instead: the error was provoked to stand in for a refusal.
    Replace(ErrorResponse),
    /// The gateway's own message failed on purpose; the client never sent it.
    Swallow,
}

/// How a row-limited statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReport {
    Within,
    /// It changed more rows than allowed; the client got the limit error instead of its
    /// CommandComplete and the change must be undone.
    Exceeded,
    /// The server raised an error of its own.
    Failed,
}

/// A row limit on one statement.
pub struct RowCap {
    pub max: u64,
    pub policy: String,
}

impl RowCap {
    pub fn error(&self, rows: Option<u64>) -> ErrorResponse {
        let what = match rows {
            Some(n) => format!("statement would change {n} rows"),
            None => "statement was fetched in parts".into(),
        };
        ErrorResponse::new(
            Severity::Error,
            "54000",
            format!(
                "{what}, more than the {} allowed by policy \"{}\"; nothing was changed",
                self.max, self.policy
            ),
        )
        .hint("narrow the WHERE clause, or ask for a larger limit")
    }
}

/// Row limits on the statements of one simple Query.
pub struct QueryLimits {
    /// Per statement, in order.
    pub caps: Vec<Option<RowCap>>,
    /// The gateway opened a transaction block for this query (the client was idle): the
    /// query's ReadyForQuery is swallowed and the COMMIT or ROLLBACK's is forwarded.
    pub began: bool,
    pub report: Option<oneshot::Sender<LimitReport>>,
    exceeded: bool,
    failed: bool,
}

impl QueryLimits {
    pub fn new(
        caps: Vec<Option<RowCap>>,
        began: bool,
        report: oneshot::Sender<LimitReport>,
    ) -> Self {
        QueryLimits {
            caps,
            began,
            report: Some(report),
            exceeded: false,
            failed: false,
        }
    }
}

/// What the server owes for one message.
pub enum Expect {
    /// A simple Query: one result per statement, then ReadyForQuery.
    Query {
        /// Per statement, what its completion does to the server's portals (empty when
        /// nothing).
        effects: Vec<Effect>,
        statements: Vec<Option<Arc<dyn Rewrite>>>,
        /// Per statement, what its result may report (the tripwire).
        expected: Vec<Expected>,
        on_error: OnError,
        limits: Option<QueryLimits>,
        /// Told, at ReadyForQuery, how many statements completed.
        completed: Option<oneshot::Sender<usize>>,
        /// Per statement, followed for the audit trail.
        audit: Vec<Option<Tracker>>,
    },
    /// ParseComplete or an error. `on_success` replaces ParseComplete with an error: a
    /// probe of text the gateway could not parse, which the server could. `report` is
    /// told whether the statement was created (true) or the Parse failed (false); it is
    /// dropped unsent when the Parse is skipped.
    Parse {
        on_error: OnError,
        on_success: Option<ErrorResponse>,
        report: Option<oneshot::Sender<bool>>,
    },
    /// BindComplete, or the refusal standing in for the server's error. A server error
    /// ends the statement `audit` follows.
    Bind {
        /// The portal a BindComplete creates (`None` for the gateway's stand-ins).
        portal: Option<Bound>,
        on_error: OnError,
        audit: Option<Tracker>,
    },
    /// ParameterDescription (statements), then RowDescription or NoData.
    Describe {
        /// What is described: `(true, name)` for a portal, `(false, name)` for a statement.
        of: (bool, Arc<str>),
        rewrite: Option<Arc<dyn Rewrite>>,
    },
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        /// A portal bound through the gateway: it must still be the one bound (see
        /// `portals`). Taken when checked.
        portal: Option<Bound>,
        /// What its completion does to the server's portals.
        effect: Effect,
        /// Told when it completes (dropped when it fails or is skipped).
        completed: Option<oneshot::Sender<()>>,
        /// The portal's name and the statement it was bound from: a Describe of either
        /// names the columns of its rows.
        names: Option<(Arc<str>, Arc<str>)>,
        rewrite: Option<Arc<dyn Rewrite>>,
        expected: Expected,
        limit: Option<(RowCap, oneshot::Sender<LimitReport>)>,
        audit: Option<Tracker>,
    },
    Close {
        /// A portal's Close.
        portal: Option<Arc<str>>,
        swallow: bool,
        report: Option<oneshot::Sender<bool>>,
    },
    Sync,
    /// FunctionCallResponse then ReadyForQuery.
    FunctionCall {
        on_error: OnError,
        audit: Option<Tracker>,
    },
    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail).
    CopyEnd,
    /// A simple Query the gateway sent on its own (BEGIN, COMMIT, ROLLBACK, a failure).
    Internal {
        forward_errors: bool,
        forward_ready: bool,
    },
    /// Answered once every earlier entry has been: the server has caught up. The reply
    /// says whether it is discarding messages until Sync (an error came first).
    Barrier(Option<oneshot::Sender<bool>>),
    /// A Parse, Bind or Close the gateway sent on its own: its answer is swallowed, an
    /// error is forwarded (the client's pipeline has failed).
    Quiet,
    /// The Execute of the gateway's own query of the server's lexer settings
    /// (`client_encoding`, `standard_conforming_strings`): its row goes to `reply`, every
    /// answer is swallowed, an error is forwarded and `reply` dropped.
    Settings {
        row: Option<(String, String)>,
        reply: Option<oneshot::Sender<(String, String)>>,
    },
    /// Once every earlier entry is answered, the session ends with this FATAL error (an
    /// expired token): the client receives every answer it was owed first.
    End(ErrorResponse),
}

/// What the backend does with a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    Replace(Message),
    Swallow,
}

/// Attribution state on the backend side.
#[derive(Default)]
pub struct Attribution {
    pending: VecDeque<Expect>,
    /// The server is discarding messages until Sync after an extended-protocol error.
    skipping: bool,
    /// The server is in COPY FROM STDIN and ignores Sync and Flush.
    copy_in: bool,
    /// Index of the current statement within the Query at the front.
    statement: usize,
    /// A row limit was exceeded in the Query at the front: its remaining answers are
    /// swallowed until ReadyForQuery.
    swallow_rest: bool,
    /// Set after a FATAL error: the server will close.
    pub fatal: bool,
    /// Statements that ended, for the audit trail; drained by the backend.
    pub finished: Vec<Finished>,
    /// The RowDescription of the last portal or statement Describe, for recordings of the
    /// Execute that usually follows (its own answer has no RowDescription).
    described: Option<((bool, Arc<str>), Message)>,
    /// Entries that end with a ReadyForQuery (Query, Sync, FunctionCall, Internal) and are
    /// done: answered, or a Sync the server swallowed during COPY (see `settled`).
    pub readies: u64,
    /// The server answered something the gateway did not decide (see `tripwire`): why,
    /// and the statement's number in the trail when known. Taken by the backend, which
    /// ends the session.
    pub tripped: Option<(String, Option<u64>)>,
    /// The trail's number of the statement that ended last: the one whose text produced
    /// a result beyond those analysed.
    last_seq: Option<u64>,
    /// The portals bound through the gateway that the server still holds.
    ledger: Ledger,
}

fn is_async(tag: u8) -> bool {
    matches!(
        tag,
        backend::NOTICE_RESPONSE | backend::NOTIFICATION_RESPONSE | backend::PARAMETER_STATUS
    )
}

impl Attribution {
    pub fn push(&mut self, e: Expect) {
        self.pending.push_back(e);
        self.settle();
    }

    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Answers barriers that reached the front and drops what the server will never
    /// answer: entries skipped after an error, and COPY end markers outside a copy.
    fn settle(&mut self) {
        loop {
            match self.pending.front_mut() {
                Some(Expect::Barrier(reply)) => {
                    if let Some(tx) = reply.take() {
                        let _ = tx.send(self.skipping);
                    }
                }
                Some(Expect::Sync | Expect::End(_)) | None => return,
                Some(Expect::CopyEnd) if !self.copy_in => {}
                Some(_) if self.skipping => {}
                Some(_) => return,
            }
            self.pending.pop_front();
        }
    }

    /// The error to end the session with, once everything before it is answered.
    pub fn ending(&self) -> Option<&ErrorResponse> {
        match self.pending.front()? {
            Expect::End(e) => Some(e),
            _ => None,
        }
    }

    /// The rewrite for rows arriving now, if any.
    pub fn current_rewrite(&self) -> Option<&Arc<dyn Rewrite>> {
        match self.pending.front()? {
            Expect::Query { statements, .. } => statements.get(self.statement)?.as_ref(),
            Expect::Execute { rewrite, .. } | Expect::Describe { rewrite, .. } => rewrite.as_ref(),
            _ => None,
        }
    }

    /// The tracker of the statement whose answers arrive now, if any.
    fn current_tracker(&mut self) -> Option<&mut Tracker> {
        let statement = self.statement;
        match self.pending.front_mut()? {
            Expect::Query { audit, .. } => audit.get_mut(statement)?.as_mut(),
            Expect::Execute { audit, .. } => audit.as_mut(),
            _ => None,
        }
    }

    /// Ends the current statement's tracker, if any.
    fn finish_current(
        &mut self,
        command: Option<&str>,
        rows: Option<u64>,
        error: Option<&ErrorResponse>,
    ) {
        let statement = self.statement;
        let tracker = match self.pending.front_mut() {
            Some(Expect::Query { audit, .. }) => audit.get_mut(statement).and_then(Option::take),
            Some(
                Expect::Execute { audit, .. }
                | Expect::Bind { audit, .. }
                | Expect::FunctionCall { audit, .. },
            ) => audit.take(),
            _ => None,
        };
        if let Some(t) = tracker {
            self.last_seq = Some(t.seq);
            self.finished.push(t.finish(command, rows, error));
        }
    }

    /// Whether the message at hand may be streamed through unseen: not when it could be
    /// rewritten, recorded or must be swallowed.
    pub fn may_stream(&self) -> bool {
        let statement = self.statement;
        let recording = match self.pending.front() {
            Some(Expect::Query { audit, .. }) => audit
                .get(statement)
                .and_then(Option::as_ref)
                .is_some_and(Tracker::wants_rows),
            Some(Expect::Execute { audit, .. }) => audit.as_ref().is_some_and(Tracker::wants_rows),
            _ => false,
        };
        self.current_rewrite().is_none()
            && !recording
            && !self.swallow_rest
            && !matches!(self.pending.front(), Some(Expect::Internal { .. }))
    }

    fn pop(&mut self) {
        self.pending.pop_front();
        self.statement = 0;
        self.settle();
    }

    /// The copy ended: Syncs the client sent during it were swallowed by the server.
    fn end_copy_in(&mut self, keep_front: bool) {
        self.copy_in = false;
        let at = usize::from(keep_front);
        while let Some(Expect::Sync) = self.pending.get(at) {
            self.pending.remove(at);
            self.readies += 1;
        }
        if let Some(Expect::CopyEnd) = self.pending.get(at) {
            self.pending.remove(at);
        }
        self.settle();
    }

    /// Attributes one server message.
    pub fn on_message(&mut self, msg: &Message) -> Action {
        let tag = msg.tag();
        if is_async(tag) {
            return Action::Forward;
        }
        if tag == backend::ERROR_RESPONSE {
            return self.on_error(msg);
        }
        if tag == backend::READY_FOR_QUERY {
            return self.on_ready(msg);
        }
        while let Some(bound) = self.portal_read() {
            if self.ledger.holds(&bound) {
                continue;
            }
            let name = &bound.0;
            // The name now holds something else: a cursor declared after the bound portal
            // was dropped. Nothing of its answer goes out.
            let seq = self.current_tracker().map(|t| t.seq);
            self.tripped = Some((
                format!(
                    "the server's portal \"{name}\" is no longer the one the gateway bound and decided"
                ),
                seq,
            ));
            return Action::Swallow;
        }
        match self.pending.front_mut() {
            Some(Expect::Internal { .. }) => return Action::Swallow,
            Some(Expect::Query { .. }) if self.swallow_rest => return Action::Swallow,
            Some(Expect::Quiet) => {
                if matches!(
                    tag,
                    backend::PARSE_COMPLETE | backend::BIND_COMPLETE | backend::CLOSE_COMPLETE
                ) {
                    self.pop();
                }
                return Action::Swallow;
            }
            Some(Expect::Settings { row, reply }) => {
                match tag {
                    backend::DATA_ROW => *row = settings_row(msg),
                    backend::COMMAND_COMPLETE => {
                        if let (Some(r), Some(tx)) = (row.take(), reply.take()) {
                            let _ = tx.send(r);
                        }
                        self.pop();
                    }
                    _ => {}
                }
                return Action::Swallow;
            }
            _ => {}
        }
        match tag {
            backend::PARSE_COMPLETE => {
                let replace = match self.pending.front_mut() {
                    Some(Expect::Parse {
                        on_success, report, ..
                    }) => {
                        if let Some(tx) = report.take() {
                            let _ = tx.send(true);
                        }
                        on_success.take()
                    }
                    _ => None,
                };
                self.pop();
                match replace {
                    // The refusal is an error: like the server after one, the client now
                    // expects everything up to Sync to be skipped; the gateway's next
                    // message (a failing Parse) makes the server do so.
                    Some(e) => Action::Replace(e.to_message()),
                    None => Action::Forward,
                }
            }
            backend::CLOSE_COMPLETE => {
                let swallow = match self.pending.front_mut() {
                    Some(Expect::Close {
                        portal,
                        swallow,
                        report,
                    }) => {
                        if let Some(tx) = report.take() {
                            let _ = tx.send(true);
                        }
                        if let Some(p) = portal {
                            self.ledger.closed(p);
                        }
                        *swallow
                    }
                    _ => false,
                };
                self.pop();
                if swallow {
                    Action::Swallow
                } else {
                    Action::Forward
                }
            }
            backend::BIND_COMPLETE | backend::NO_DATA => {
                if let Some(Expect::Bind {
                    portal: Some(p), ..
                }) = self.pending.front()
                {
                    self.ledger.bound(p);
                }
                self.pop();
                Action::Forward
            }
            backend::ROW_DESCRIPTION => {
                let replacement = self.rewrite_with(msg, |r, m| {
                    let d = backend::RowDescription::decode(m.clone()).ok()?;
                    r.row_description(&d)
                });
                if let Some(Expect::Describe { of, .. }) = self.pending.front() {
                    // Kept undecoded (a reference count): decoded only if a recording needs it.
                    self.described = Some((of.clone(), msg.clone()));
                    self.pop();
                } else if let Some(rec) = self.current_tracker().and_then(|t| t.recorder.as_mut())
                    && let Ok(d) = backend::RowDescription::decode(msg.clone())
                {
                    rec.columns(&d);
                }
                replacement
            }
            backend::DATA_ROW => {
                // The last Describe names these rows only if it described this portal or
                // the statement it was bound from.
                let described = self.described.take().filter(|(of, _)| {
                    matches!(self.pending.front(), Some(Expect::Execute { names: Some((portal, statement)), .. })
                        if *of == (true, portal.clone()) || *of == (false, statement.clone()))
                });
                if let Some(t) = self.current_tracker()
                    && t.wants_rows()
                    && let Some(rec) = t.recorder.as_mut()
                    && let Ok(row) = backend::DataRow::decode(msg.clone())
                {
                    if let Some(d) =
                        described.and_then(|(_, m)| backend::RowDescription::decode(m).ok())
                    {
                        rec.named(d.fields().iter().map(|f| f.name.clone()).collect());
                    }
                    rec.row(&row);
                }
                self.rewrite_with(msg, |r, m| {
                    let row = backend::DataRow::decode(m.clone()).ok()?;
                    r.data_row(&row)
                })
            }
            backend::FUNCTION_CALL_RESPONSE => {
                self.finish_current(Some("function call"), None, None);
                Action::Forward
            }
            backend::COMMAND_COMPLETE
            | backend::EMPTY_QUERY_RESPONSE
            | backend::PORTAL_SUSPENDED => self.on_complete(msg),
            backend::COPY_IN_RESPONSE => {
                self.copy_in = true;
                Action::Forward
            }
            _ => Action::Forward,
        }
    }

    fn on_complete(&mut self, msg: &Message) -> Action {
        let tag = msg.tag();
        let complete = (tag == backend::COMMAND_COMPLETE)
            .then(|| CommandComplete::decode(msg.clone()).ok())
            .flatten();
        let mut action = match &complete {
            Some(c) => match self.current_rewrite().and_then(|r| r.command_complete(c)) {
                Some(m) => Action::Replace(m),
                None => Action::Forward,
            },
            None => Action::Forward,
        };
        let rows = complete.as_ref().and_then(CommandComplete::rows);
        let statement = self.statement;
        if let Some(c) = &complete
            && let Some(why) = self.contradiction(c)
        {
            let seq = self.current_tracker().map(|t| t.seq).or(self.last_seq);
            self.tripped = Some((why, seq));
            return Action::Swallow;
        }
        match self.pending.front_mut() {
            Some(Expect::Query {
                limits, effects, ..
            }) => {
                if complete.is_some()
                    && let Some(e) = effects.get(statement)
                {
                    self.ledger.completed(e);
                }
                let mut over = None;
                if let Some(l) = limits
                    && let Some(Some(cap)) = l.caps.get(statement)
                    && rows.unwrap_or(0) > cap.max
                {
                    l.exceeded = true;
                    let e = cap.error(rows);
                    action = Action::Replace(e.to_message());
                    over = Some(e);
                    self.swallow_rest = true;
                }
                self.finish_current(
                    complete.as_ref().map(CommandComplete::tag),
                    rows,
                    over.as_ref(),
                );
                self.statement += 1;
                if self.copy_in {
                    self.end_copy_in(true);
                }
            }
            Some(Expect::Execute {
                limit,
                effect,
                completed,
                ..
            }) => {
                if complete.is_some() {
                    self.ledger.completed(effect);
                    if let Some(tx) = completed.take() {
                        let _ = tx.send(());
                    }
                }
                let mut error = None;
                if let Some((cap, report)) = limit.take() {
                    let over = tag == backend::PORTAL_SUSPENDED || rows.unwrap_or(0) > cap.max;
                    if over {
                        let shown = (tag != backend::PORTAL_SUSPENDED).then_some(rows.unwrap_or(0));
                        let e = cap.error(shown);
                        action = Action::Replace(e.to_message());
                        error = Some(e);
                    }
                    let _ = report.send(if over {
                        LimitReport::Exceeded
                    } else {
                        LimitReport::Within
                    });
                }
                let command = match (&complete, tag) {
                    (Some(c), _) => Some(c.tag()),
                    (None, backend::PORTAL_SUSPENDED) => Some("suspended"),
                    _ => None,
                };
                self.finish_current(command, rows, error.as_ref());
                self.pop();
                if self.copy_in {
                    self.end_copy_in(false);
                }
            }
            _ => {}
        }
        action
    }

    /// The portal bound through the gateway that the answer arriving now reads from, taken
    /// so it is checked once: an Execute's, or a SQL FETCH's (see `portals`).
    fn portal_read(&mut self) -> Option<Bound> {
        let statement = self.statement;
        match self.pending.front_mut()? {
            Expect::Execute { portal, effect, .. } => {
                portal.take().or_else(|| match std::mem::take(effect) {
                    Effect::Reads(b) => Some(b),
                    other => {
                        *effect = other;
                        None
                    }
                })
            }
            Expect::Query { effects, .. } => match effects.get_mut(statement)? {
                e @ Effect::Reads(_) => match std::mem::take(e) {
                    Effect::Reads(b) => Some(b),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether a CommandComplete contradicts what the gateway decided: a write's tag for
    /// a statement that was not analysed as one, or a result beyond the statements of a
    /// Query.
    fn contradiction(&self, complete: &CommandComplete) -> Option<String> {
        match self.pending.front()? {
            Expect::Query { expected, .. } => match expected.get(self.statement) {
                Some(e) => e.contradiction(complete.tag()),
                None => Some(format!(
                    "the server reported a result (\"{}\") beyond the {} statements the gateway analysed",
                    complete.tag(),
                    expected.len()
                )),
            },
            Expect::Execute { expected, .. } => expected.contradiction(complete.tag()),
            _ => None,
        }
    }

    fn on_ready(&mut self, msg: &Message) -> Action {
        if msg.body().first() == Some(&backend::TransactionStatus::Idle.byte()) {
            self.ledger.transaction_ended();
        }
        let mut action = Action::Forward;
        let completed_statements = self.statement;
        while let Some(e) = self.pending.pop_front() {
            if let Expect::End(_) = e {
                // Only the backend takes the end off the queue.
                self.pending.push_front(e);
                break;
            }
            if matches!(
                e,
                Expect::Sync
                    | Expect::FunctionCall { .. }
                    | Expect::Internal { .. }
                    | Expect::Query { .. }
            ) {
                self.readies += 1;
            }
            match e {
                Expect::Sync | Expect::FunctionCall { .. } => break,
                Expect::Internal { forward_ready, .. } => {
                    if !forward_ready {
                        action = Action::Swallow;
                    }
                    break;
                }
                Expect::Query {
                    limits, completed, ..
                } => {
                    if let Some(tx) = completed {
                        let _ = tx.send(completed_statements);
                    }
                    if let Some(mut l) = limits {
                        let report = if l.exceeded {
                            LimitReport::Exceeded
                        } else if l.failed {
                            LimitReport::Failed
                        } else {
                            LimitReport::Within
                        };
                        if l.began || l.exceeded {
                            action = Action::Swallow;
                        }
                        if let Some(tx) = l.report.take() {
                            let _ = tx.send(report);
                        }
                    }
                    break;
                }
                Expect::Barrier(Some(tx)) => {
                    let _ = tx.send(false);
                }
                _ => {}
            }
        }
        self.skipping = false;
        self.copy_in = false;
        self.swallow_rest = false;
        self.statement = 0;
        self.settle();
        action
    }

    fn rewrite_with(
        &self,
        msg: &Message,
        f: impl FnOnce(&Arc<dyn Rewrite>, &Message) -> Option<Message>,
    ) -> Action {
        match self.current_rewrite().and_then(|r| f(r, msg)) {
            Some(m) => Action::Replace(m),
            None => Action::Forward,
        }
    }

    fn on_error(&mut self, msg: &Message) -> Action {
        let error = ErrorResponse::decode(msg).ok();
        if error
            .as_ref()
            .and_then(|e| e.severity())
            .is_some_and(|s| matches!(s, Severity::Fatal | Severity::Panic))
        {
            self.fatal = true;
            return Action::Forward;
        }
        if !self.swallow_rest {
            let error = error.unwrap_or_else(|| {
                ErrorResponse::new(
                    Severity::Error,
                    "XX000",
                    "an error the gateway could not read",
                )
            });
            self.finish_current(None, None, Some(&error));
        }
        let disposition =
            |on_error: &mut OnError| match std::mem::replace(on_error, OnError::Forward) {
                OnError::Forward => Action::Forward,
                OnError::Replace(r) => Action::Replace(r.to_message()),
                OnError::Swallow => Action::Swallow,
            };
        let swallow_rest = self.swallow_rest;
        match self.pending.front_mut() {
            Some(Expect::Query {
                on_error, limits, ..
            }) => {
                let action = if swallow_rest {
                    Action::Swallow
                } else {
                    if let Some(l) = limits {
                        l.failed = true;
                    }
                    disposition(on_error)
                };
                if self.copy_in {
                    self.end_copy_in(true);
                }
                action
            }
            Some(Expect::Internal { forward_errors, .. }) => {
                if *forward_errors {
                    Action::Forward
                } else {
                    Action::Swallow
                }
            }
            Some(Expect::FunctionCall { on_error, .. }) => disposition(on_error),
            Some(Expect::Parse {
                on_error, report, ..
            }) => {
                if let Some(tx) = report.take() {
                    let _ = tx.send(false);
                }
                let action = disposition(on_error);
                self.skipping = true;
                self.pop();
                action
            }
            Some(Expect::Execute { limit, .. }) => {
                if let Some((_, report)) = limit.take() {
                    let _ = report.send(LimitReport::Failed);
                }
                self.skipping = true;
                let copy = self.copy_in;
                self.pop();
                if copy {
                    self.end_copy_in(false);
                }
                Action::Forward
            }
            Some(Expect::Bind { on_error, .. }) => {
                let action = disposition(on_error);
                self.skipping = true;
                self.pop();
                action
            }
            Some(
                Expect::Describe { .. }
                | Expect::Close { .. }
                | Expect::Quiet
                | Expect::Settings { .. },
            ) => {
                self.skipping = true;
                let copy = self.copy_in;
                self.pop();
                if copy {
                    self.end_copy_in(false);
                }
                Action::Forward
            }
            // An error at Sync (a deferred constraint at commit): ReadyForQuery follows.
            Some(Expect::Sync | Expect::CopyEnd | Expect::Barrier(_) | Expect::End(_)) | None => {
                Action::Forward
            }
        }
    }
}

/// The two text values of the lexer-settings row.
fn settings_row(msg: &Message) -> Option<(String, String)> {
    let row = backend::DataRow::decode(msg.clone()).ok()?;
    let mut values = row
        .values()
        .map(|v| v.and_then(|v| std::str::from_utf8(v).ok().map(str::to_string)));
    Some((values.next()??, values.next()??))
}

impl Expect {
    /// Whether the server answers this entry with a ReadyForQuery.
    pub fn ends_with_ready(&self) -> bool {
        matches!(
            self,
            Expect::Query { .. }
                | Expect::Sync
                | Expect::FunctionCall { .. }
                | Expect::Internal { .. }
        )
    }
}

#[cfg(test)]
mod tests;
