//! Answers that carry a result: its description, its rows, COPY data, and its end, with
//! the rewriter bound to the result (`result.rs`), the recorder, row limits and the
//! tripwire applied.

use portcullis_wire::Message;
use portcullis_wire::backend::{self, CommandComplete, CopyOutResponse, ErrorResponse};

use super::answers::malformed;
use super::attribution::Stop;
use super::{Action, Attribution, Expect, LimitError, LimitReport};
use crate::session::portals::{Bound, Effect};

impl Attribution {
    /// A RowDescription: the answer to a Describe, or a simple Query's statement describing
    /// its result.
    pub(super) fn on_description(&mut self, msg: &Message) -> Action {
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

    pub(super) fn on_data_row(&mut self, msg: &Message) -> Action {
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

    /// CopyOutResponse, CopyData and CopyDone of a COPY TO STDOUT.
    pub(super) fn on_copy_out(&mut self, msg: &Message) -> Action {
        let Some(r) = self.current_rewrite().cloned() else {
            return Action::Forward;
        };
        let rewritten: Result<Action, ErrorResponse> = match msg.tag() {
            backend::COPY_OUT_RESPONSE => CopyOutResponse::decode(msg)
                .map_err(|e| malformed(&e))
                .and_then(|c| self.results.begin_copy(&r, &c))
                .map(|()| Action::Forward),
            backend::COPY_DATA => self.results.copy_data(&r, msg.body()).map(Action::Replace),
            _ => self.results.copy_done(&r).map(|last| match last {
                Some(m) => Action::Prepend(m),
                None => Action::Forward,
            }),
        };
        rewritten.unwrap_or_else(|e| self.unrewritable(e))
    }

    /// CommandComplete, EmptyQueryResponse or PortalSuspended: the result's end (or its
    /// pause), checked against what was decided.
    pub(super) fn on_complete(&mut self, msg: &Message) -> Action {
        let tag = msg.tag();
        let complete = (tag == backend::COMMAND_COMPLETE)
            .then(|| CommandComplete::decode(msg.clone()).ok())
            .flatten();
        let action = match tag {
            // The portal's result goes on at its next Execute.
            backend::PORTAL_SUSPENDED => Action::Forward,
            _ => match self.results.end(complete.as_ref()) {
                Some(m) => Action::Replace(m),
                None => Action::Forward,
            },
        };
        if let Some(c) = &complete
            && let Some(why) = self.contradiction(c)
        {
            let seq = self.current_tracker().map(|t| t.seq).or(self.last_seq);
            self.tripped = Some((Stop::Tripped(why), seq));
            return Action::Swallow;
        }
        let over = match self.pending.front() {
            Some(Expect::Query { .. }) => self.statement_complete(complete.as_ref()),
            Some(Expect::Execute { .. }) => self.execute_complete(tag, complete.as_ref()),
            _ => None,
        };
        match over {
            Some(e) => Action::Replace(e.to_message()),
            None => action,
        }
    }

    /// A statement of the Query at the front completed; the error it is replaced by when
    /// it is over its row limit.
    fn statement_complete(&mut self, complete: Option<&CommandComplete>) -> Option<ErrorResponse> {
        let statement = self.statement;
        let rows = complete.and_then(CommandComplete::rows);
        let Some(Expect::Query {
            limits, effects, ..
        }) = self.pending.front_mut()
        else {
            return None;
        };
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
            over = Some(cap.error(rows));
            self.swallow_rest = true;
        }
        self.finish_current(complete.map(CommandComplete::tag), rows, over.as_ref());
        self.statement += 1;
        if self.copy_in {
            self.end_copy_in(true);
        }
        over
    }

    /// The Execute at the front completed or was suspended; the error it is replaced by
    /// when it is over its row limit.
    fn execute_complete(
        &mut self,
        tag: u8,
        complete: Option<&CommandComplete>,
    ) -> Option<ErrorResponse> {
        let rows = complete.and_then(CommandComplete::rows);
        let suspended = tag == backend::PORTAL_SUSPENDED;
        let Some(Expect::Execute {
            limit,
            effect,
            completed,
            portal,
            ..
        }) = self.pending.front_mut()
        else {
            return None;
        };
        if suspended {
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
            // A write suspended by a row count is over any limit it could report.
            let over = suspended || rows.unwrap_or(0) > cap.max;
            if over {
                error = Some(cap.error((!suspended).then_some(rows.unwrap_or(0))));
            }
            let _ = report.send(if over {
                LimitReport::Exceeded
            } else {
                LimitReport::Within
            });
        }
        let command = match (complete, suspended) {
            (Some(c), _) => Some(c.tag()),
            (None, true) => Some("suspended"),
            _ => None,
        };
        if suspended && error.is_none() && self.current_run.is_some() {
            self.suspend_run();
        } else {
            self.finish_current(command, rows, error.as_ref());
            self.end_run();
        }
        self.pop();
        if self.copy_in {
            self.end_copy_in(false);
        }
        error
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
}
