//! Each server message attributed to the entry it answers: forwarded, replaced or
//! swallowed, with the entry's state (limits, trackers, the ledger, the tripwire) updated.

use portcullis_wire::Message;
use portcullis_wire::backend::{self, CommandComplete, CopyOutResponse, ErrorResponse, Severity};

use super::attribution::Stop;
use super::{Action, Attribution, Expect, LimitError, LimitReport, OnError};

use crate::session::portals::{Bound, Effect};

fn is_async(tag: u8) -> bool {
    matches!(
        tag,
        backend::NOTICE_RESPONSE | backend::NOTIFICATION_RESPONSE | backend::PARAMETER_STATUS
    )
}

impl Attribution {
    /// Attributes one server message.
    pub fn on_message(&mut self, msg: &Message) -> Action {
        let tag = msg.tag();
        if is_async(tag) {
            return Action::Forward;
        }
        let mut started = self.start_execute();
        if tag == backend::ERROR_RESPONSE {
            return self.on_error(msg);
        }
        if tag == backend::READY_FOR_QUERY {
            return self.on_ready(msg);
        }
        while let Some(bound) = started.take().or_else(|| self.portal_read()) {
            if self.ledger.holds(&bound) {
                continue;
            }
            let name = &bound.0;
            // The name now holds something else: a cursor declared after the bound portal
            // was dropped. Nothing of its answer goes out.
            let seq = self.current_tracker().map(|t| t.seq);
            self.tripped = Some((
                Stop::Tripped(format!(
                    "the server's portal \"{name}\" is no longer the one the gateway bound and decided"
                )),
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
                            self.results.closed(Some(p));
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
            backend::BIND_COMPLETE => {
                if let Some(Expect::Bind {
                    portal: Some(p), ..
                }) = self.pending.front()
                {
                    self.ledger.bound(p);
                    self.results.bound(&p.0);
                    // A name bound again starts a new run.
                    let name = p.0.clone();
                    self.runs.retain(|b, _| b.0 != name);
                }
                self.pop();
                Action::Forward
            }
            backend::NO_DATA => {
                let swallow = matches!(
                    self.pending.front(),
                    Some(Expect::Describe { swallow: true, .. })
                );
                self.pop();
                if swallow {
                    Action::Swallow
                } else {
                    Action::Forward
                }
            }
            backend::ROW_DESCRIPTION => self.on_description(msg),
            backend::DATA_ROW => {
                if let Some(t) = self.current_tracker()
                    && t.wants_rows()
                    && let Some(rec) = t.recorder.as_mut()
                    && let Ok(row) = backend::DataRow::decode(msg.clone())
                {
                    rec.row(&row);
                }
                match self.current_rewrite().cloned() {
                    None => Action::Forward,
                    Some(r) => match backend::DataRow::decode(msg.clone())
                        .map_err(|e| malformed(&e))
                        .and_then(|row| self.results.row(&r, row))
                    {
                        Ok(m) => Action::Replace(m),
                        Err(e) => self.unrewritable(e),
                    },
                }
            }
            backend::COPY_OUT_RESPONSE => match self.current_rewrite().cloned() {
                None => Action::Forward,
                Some(r) => match CopyOutResponse::decode(msg)
                    .map_err(|e| malformed(&e))
                    .and_then(|c| self.results.begin_copy(&r, &c))
                {
                    Ok(()) => Action::Forward,
                    Err(e) => self.unrewritable(e),
                },
            },
            backend::COPY_DATA => match self.current_rewrite().cloned() {
                None => Action::Forward,
                Some(r) => match self.results.copy_data(&r, msg.body()) {
                    Ok(m) => Action::Replace(m),
                    Err(e) => self.unrewritable(e),
                },
            },
            backend::COPY_DONE => match self.current_rewrite().cloned() {
                None => Action::Forward,
                Some(r) => match self.results.copy_done(&r) {
                    Ok(Some(m)) => Action::Prepend(m),
                    Ok(None) => Action::Forward,
                    Err(e) => self.unrewritable(e),
                },
            },
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

    /// A RowDescription: the answer to a Describe, or a simple Query's statement describing
    /// its result.
    fn on_description(&mut self, msg: &Message) -> Action {
        let decoded = backend::RowDescription::decode(msg.clone()).map_err(|e| malformed(&e));
        if let Some(Expect::Describe {
            of,
            rewrite,
            swallow,
        }) = self.pending.front()
        {
            let (portal, name) = of.clone();
            let (rewrite, swallow) = (rewrite.clone(), *swallow);
            self.pop();
            if !portal {
                return Action::Forward;
            }
            let shown = decoded.and_then(|d| self.results.described(&name, d, rewrite.as_ref()));
            return match shown {
                _ if swallow && rewrite.is_none() => Action::Swallow,
                Ok(_) if swallow => Action::Swallow,
                Ok(m) if rewrite.is_some() => Action::Replace(m),
                Ok(_) => Action::Forward,
                Err(e) if rewrite.is_some() => self.unrewritable(e),
                Err(_) => Action::Forward,
            };
        }
        if let Some(rec) = self.current_tracker().and_then(|t| t.recorder.as_mut())
            && let Ok(d) = &decoded
        {
            rec.columns(d);
        }
        match self.current_rewrite().cloned() {
            None => Action::Forward,
            Some(r) => match decoded.and_then(|d| self.results.begin(&r, d)) {
                Ok(m) => Action::Replace(m),
                Err(e) => self.unrewritable(e),
            },
        }
    }

    pub(super) fn on_complete(&mut self, msg: &Message) -> Action {
        let tag = msg.tag();
        let complete = (tag == backend::COMMAND_COMPLETE)
            .then(|| CommandComplete::decode(msg.clone()).ok())
            .flatten();
        let mut action = match tag {
            // The portal's result goes on at its next Execute.
            backend::PORTAL_SUSPENDED => Action::Forward,
            _ => match self.results.end(complete.as_ref()) {
                Some(m) => Action::Replace(m),
                None => Action::Forward,
            },
        };
        let rows = complete.as_ref().and_then(CommandComplete::rows);
        let statement = self.statement;
        if let Some(c) = &complete
            && let Some(why) = self.contradiction(c)
        {
            let seq = self.current_tracker().map(|t| t.seq).or(self.last_seq);
            self.tripped = Some((Stop::Tripped(why), seq));
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
                portal,
                ..
            }) => {
                if tag == backend::PORTAL_SUSPENDED {
                    self.results.suspend(&portal.0);
                }
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
                if tag == backend::PORTAL_SUSPENDED && error.is_none() && self.current_run.is_some()
                {
                    self.suspend_run();
                } else {
                    self.finish_current(command, rows, error.as_ref());
                    self.end_run();
                }
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
    pub(super) fn portal_read(&mut self) -> Option<Bound> {
        let statement = self.statement;
        match self.pending.front_mut()? {
            Expect::Execute { effect, .. } => match std::mem::take(effect) {
                Effect::Reads(b) => Some(b),
                other => {
                    *effect = other;
                    None
                }
            },
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
    pub(super) fn contradiction(&self, complete: &CommandComplete) -> Option<String> {
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

    pub(super) fn on_ready(&mut self, msg: &Message) -> Action {
        if msg.body().first() == Some(&backend::TransactionStatus::Idle.byte()) {
            self.ledger.transaction_ended();
            self.runs.clear();
            self.results.closed(None);
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

    pub(super) fn on_error(&mut self, msg: &Message) -> Action {
        let error = ErrorResponse::decode(msg).ok();
        if error
            .as_ref()
            .and_then(|e| e.severity())
            .is_some_and(|s| matches!(s, Severity::Fatal | Severity::Panic))
        {
            self.fatal = true;
            return Action::Forward;
        }
        self.results.end(None);
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
            Some(
                Expect::Sync
                | Expect::CopyEnd
                | Expect::Barrier(_)
                | Expect::End(_)
                | Expect::Notice(_),
            )
            | None => Action::Forward,
        }
    }
}

/// A server message the gateway must rewrite but cannot read.
fn malformed(e: &portcullis_wire::WireError) -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "XX000",
        format!("the server sent a result the gateway cannot read: {e}"),
    )
}

/// The two text values of the lexer-settings row.
fn settings_row(msg: &Message) -> Option<(String, String)> {
    let row = backend::DataRow::decode(msg.clone()).ok()?;
    let mut values = row
        .values()
        .map(|v| v.and_then(|v| std::str::from_utf8(v).ok().map(str::to_string)));
    Some((values.next()??, values.next()??))
}
