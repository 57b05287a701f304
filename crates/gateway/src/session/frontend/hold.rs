//! Statements held by the policy: the session waits for the verdict, and a cancel ends
//! the wait. Pending output is flushed first, so earlier pipelined work proceeds meanwhile.

use portcullis_wire::backend::ErrorResponse;
use tokio::io::AsyncWrite;

use super::refusal::canceled;
use super::{Frontend, FrontendError};
use crate::decision::Verdict;
use crate::session::prepared::Treatment;

impl Frontend<'_> {
    /// What a verdict comes to: how the statement is forwarded, or its refusal.
    pub(super) async fn treatment<W: AsyncWrite + Unpin>(
        &mut self,
        mut verdict: Verdict,
        upstream: &mut W,
    ) -> Result<Result<Treatment, ErrorResponse>, FrontendError> {
        loop {
            match verdict {
                Verdict::Forward(rewrite) => {
                    return Ok(Ok(Treatment {
                        rewrite,
                        ..Treatment::default()
                    }));
                }
                Verdict::ForwardLimited { rewrite, limit } => {
                    return Ok(Ok(Treatment {
                        rewrite,
                        cap: Some(limit),
                        ..Treatment::default()
                    }));
                }
                Verdict::Refuse(error) => return Ok(Err(error)),
                Verdict::Hold(future) => {
                    self.flush(upstream).await?;
                    verdict = tokio::select! {
                        v = future => v,
                        _ = self.ctx.cancels.after(self.cancels_seen) => Verdict::Refuse(canceled()),
                    };
                }
            }
        }
    }
}
