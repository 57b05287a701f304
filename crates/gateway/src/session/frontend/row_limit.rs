//! Row limits: a limited statement runs inside a transaction the gateway can undo, and
//! is undone when its CommandComplete count is over the limit, before anyone can commit it.

use std::sync::Arc;

use portcullis_wire::backend::TransactionStatus;
use portcullis_wire::frontend::Query;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::refusal::REFUSED_SQL;
use super::{Frontend, FrontendError};
use crate::audit::Tracker;
use crate::session::portals::Effect;
use crate::session::queue::{Expect, LimitReport, OnError, QueryLimits, RowLimit};
use crate::session::tripwire::Expected;

/// What the queue needs of each statement of a Query.
pub(super) struct PerStatement {
    pub rewrites: Vec<Option<Arc<dyn crate::rewrite::ResultRewriter>>>,
    pub expected: Vec<Expected>,
    pub effects: Vec<Effect>,
}

impl PerStatement {
    /// What the server owes for the Query these statements are, forwarded as sent.
    pub(super) fn forwarded(
        self,
        limits: Option<QueryLimits>,
        completed: Option<oneshot::Sender<usize>>,
        audit: Vec<Option<Tracker>>,
    ) -> Expect {
        Expect::Query {
            effects: self.effects,
            statements: self.rewrites,
            expected: self.expected,
            on_error: OnError::Forward,
            limits,
            completed,
            audit,
        }
    }
}

impl Frontend<'_> {
    /// Runs a query holding row-limited statements inside a transaction the gateway can
    /// undo: its own when the client is not in one, else the client's, failed on purpose.
    pub(super) async fn limited_query<W: AsyncWrite + Unpin>(
        &mut self,
        query: Query,
        per: PerStatement,
        caps: Vec<Option<RowLimit>>,
        completed: Option<oneshot::Sender<usize>>,
        audit: Vec<Option<Tracker>>,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let status = self.catch_up(upstream).await?.status;
        if status == TransactionStatus::Failed {
            // The server refuses everything but the end of the transaction anyway.
            self.send(per.forwarded(None, completed, audit), query.message());
            return Ok(());
        }
        let began = status == TransactionStatus::Idle;
        if began {
            self.send(
                Expect::Internal {
                    forward_errors: false,
                    forward_ready: false,
                },
                Query::new(b"BEGIN").message(),
            );
        }
        let (tx, rx) = oneshot::channel();
        let limits = QueryLimits::new(caps, began, tx);
        self.send(
            per.forwarded(Some(limits), completed, audit),
            query.message(),
        );
        self.flush(upstream).await?;
        let report = rx.await.map_err(|_| FrontendError::Ended)?;
        let follow_up: Option<(&[u8], bool)> = match (began, report) {
            (true, LimitReport::Within) => Some((b"COMMIT", true)),
            (true, _) => Some((b"ROLLBACK", false)),
            (false, LimitReport::Exceeded) => Some((REFUSED_SQL, false)),
            (false, _) => None,
        };
        if let Some((sql, forward_errors)) = follow_up {
            self.send(
                Expect::Internal {
                    forward_errors,
                    forward_ready: true,
                },
                Query::new(sql).message(),
            );
        }
        Ok(())
    }
}
