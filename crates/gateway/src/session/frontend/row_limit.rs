//! Row limits: a limited statement runs inside a transaction the gateway can undo, and
//! is undone when its CommandComplete count is over the limit, before anyone can commit it.

use portcullis_wire::backend::TransactionStatus;
use portcullis_wire::frontend::Query;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::plan::{PerStatement, after_limited};
use super::{Frontend, FrontendError};
use crate::audit::Tracker;
use crate::session::queue::{Expect, QueryLimits, RowLimit};

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
        if let Some((sql, forward_errors)) = after_limited(began, report) {
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
