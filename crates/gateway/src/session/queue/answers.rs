//! Each server message attributed to the entry it answers: forwarded, replaced or
//! swallowed, with the entry's state (limits, trackers, the ledger, the tripwire) updated.

use portcullis_wire::Message;
use portcullis_wire::backend::{self, ErrorResponse, Severity};

use super::attribution::Stop;
use super::{Action, Attribution, Expect, LimitReport, OnError};

use crate::session::portals::Bound;

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
        let started = self.start_execute();
        if tag == backend::ERROR_RESPONSE {
            return self.on_error(msg);
        }
        if tag == backend::READY_FOR_QUERY {
            return self.on_ready(msg);
        }
        if let Some(a) = self
            .check_portals(started)
            .or_else(|| self.gateways_own(msg))
        {
            return a;
        }
        match tag {
            backend::PARSE_COMPLETE => self.on_parse_complete(),
            backend::CLOSE_COMPLETE => self.on_close_complete(),
            backend::BIND_COMPLETE => self.on_bind_complete(),
            backend::NO_DATA => self.on_no_data(),
            backend::ROW_DESCRIPTION => self.on_description(msg),
            backend::DATA_ROW => self.on_data_row(msg),
            backend::COPY_OUT_RESPONSE | backend::COPY_DATA | backend::COPY_DONE => {
                self.on_copy_out(msg)
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

    /// The portals the answer arriving now reads from must still be the ones bound (see
    /// `portals`); otherwise nothing of it goes out and the session trips.
    fn check_portals(&mut self, mut started: Option<Bound>) -> Option<Action> {
        while let Some(bound) = started.take().or_else(|| self.portal_read()) {
            if self.ledger.holds(&bound) {
                continue;
            }
            let name = &bound.0;
            // The name now holds something else: a cursor declared after the bound portal
            // was dropped.
            let seq = self.current_tracker().map(|t| t.seq);
            self.tripped = Some((
                Stop::Tripped(format!(
                    "the server's portal \"{name}\" is no longer the one the gateway bound and decided"
                )),
                seq,
            ));
            return Some(Action::Swallow);
        }
        None
    }

    /// Answers to the gateway's own messages, and what the rest of a failed row-limited
    /// Query says: swallowed.
    fn gateways_own(&mut self, msg: &Message) -> Option<Action> {
        let tag = msg.tag();
        match self.pending.front_mut()? {
            Expect::Internal { .. } => Some(Action::Swallow),
            Expect::Query { .. } if self.swallow_rest => Some(Action::Swallow),
            Expect::Quiet => {
                if matches!(
                    tag,
                    backend::PARSE_COMPLETE | backend::BIND_COMPLETE | backend::CLOSE_COMPLETE
                ) {
                    self.pop();
                }
                Some(Action::Swallow)
            }
            Expect::Settings { row, reply } => {
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
                Some(Action::Swallow)
            }
            _ => None,
        }
    }

    fn on_parse_complete(&mut self) -> Action {
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
            // The refusal is an error: like the server after one, the client now expects
            // everything up to Sync to be skipped; the gateway's next message (a failing
            // Parse) makes the server do so.
            Some(e) => Action::Replace(e.to_message()),
            None => Action::Forward,
        }
    }

    fn on_close_complete(&mut self) -> Action {
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

    fn on_bind_complete(&mut self) -> Action {
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

    fn on_no_data(&mut self) -> Action {
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
        self.error_answers()
    }

    /// The entry at the front failed: the server now skips to Sync (and a COPY FROM
    /// STDIN it was in has ended).
    fn skip_to_sync(&mut self) {
        self.skipping = true;
        let copy = self.copy_in;
        self.pop();
        if copy {
            self.end_copy_in(false);
        }
    }

    /// What the error does to the entry it answers (and, in the extended protocol, to
    /// everything up to Sync, which the server now skips), and what the client sees. One
    /// match over the kinds of entry, so each kind's rule is read beside the others.
    fn error_answers(&mut self) -> Action {
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
                self.skip_to_sync();
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
                self.skip_to_sync();
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
pub(super) fn malformed(e: &portcullis_wire::WireError) -> ErrorResponse {
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
