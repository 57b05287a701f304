//! Statements held for someone's decision (see `crate::hold`): the client is told which
//! request its statement waits on, pending output is flushed first (earlier pipelined work
//! proceeds meanwhile), and the wait ends on a decision, the deadline, a cancel, the
//! token's expiry, a disconnect or the session's end, each recorded in the trail.

use portcullis_audit::Approval;
use portcullis_wire::backend::ErrorResponse;
use tokio::io::AsyncWrite;

use super::refusal::canceled;
use super::{Frontend, FrontendError};
use crate::audit::hold_event;
use crate::decision::{Reasons, Verdict};
use crate::hold::{Hold, HoldRequest, Resolution};
use crate::session::Context;
use crate::session::context::HoldWatch;
use crate::session::prepared::Treatment;
use crate::session::queue::Expect;

/// How a wait ended.
enum Ended {
    Decided(Resolution),
    Expired,
    Canceled,
    TokenExpired,
    /// The client sent too much while the statement waited.
    Overflowed,
}

/// Records the end of a hold; dropped without an end (the session ended under it, or the
/// client disconnected) it records the withdrawal.
struct Waiting<'a> {
    ctx: &'a Context,
    watch: &'a HoldWatch,
    request: &'a HoldRequest,
    text: &'a str,
    ended: bool,
}

impl<'a> Waiting<'a> {
    fn begin(
        ctx: &'a Context,
        watch: &'a HoldWatch,
        request: &'a HoldRequest,
        text: &'a str,
    ) -> Self {
        ctx.audit.log.record(hold_event(
            &ctx.info,
            request,
            text,
            "held",
            &request.approve_at,
        ));
        watch.set(true);
        Waiting {
            ctx,
            watch,
            request,
            text,
            ended: false,
        }
    }

    fn end(&mut self, state: &str, detail: &str) {
        self.ended = true;
        self.watch.set(false);
        self.ctx.audit.log.record(hold_event(
            &self.ctx.info,
            self.request,
            self.text,
            state,
            detail,
        ));
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let why = if self.watch.is_client_gone() {
                "the client disconnected"
            } else {
                "the session ended"
            };
            self.end("withdrawn", why);
        }
    }
}

impl Frontend<'_> {
    /// What a verdict comes to: how the statement is forwarded, or its refusal. `text` is
    /// the statement, for the trail; a hold's outcome is added to `why`.
    pub(super) async fn treatment<W: AsyncWrite + Unpin>(
        &mut self,
        mut verdict: Verdict,
        text: &str,
        why: &mut Reasons,
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
                Verdict::Hold(hold) => match self.wait(hold, text, why, upstream).await? {
                    Ok(next) => verdict = next,
                    Err(refusal) => return Ok(Err(refusal)),
                },
            }
        }
    }

    /// Waits out one hold: the verdict an approval leads to, or the refusal.
    async fn wait<W: AsyncWrite + Unpin>(
        &mut self,
        hold: Hold,
        text: &str,
        why: &mut Reasons,
        upstream: &mut W,
    ) -> Result<Result<Verdict, ErrorResponse>, FrontendError> {
        let Hold { request, decision } = hold;
        self.flush(upstream).await?;
        let until = self.ctx.clock.now() + request.wait;
        // An asynchronous message: the backend sends it between two of the server's.
        let _ = self
            .queue
            .send(Expect::Notice(request.notice(until).to_notice()));
        let token_left = self
            .ctx
            .expires_at
            .duration_since(self.ctx.clock.now())
            .try_into()
            .unwrap_or(std::time::Duration::ZERO)
            + self.ctx.expiry_grace;
        let mut waiting = Waiting::begin(self.ctx, &self.shared.held, &request, text);
        let ended = tokio::select! {
            r = decision => Ended::Decided(r),
            () = tokio::time::sleep(request.wait) => Ended::Expired,
            () = self.ctx.cancels.after(self.cancels_seen) => Ended::Canceled,
            () = tokio::time::sleep(token_left) => Ended::TokenExpired,
            () = self.shared.held.overflowed() => Ended::Overflowed,
        };
        let approval = |approver: Option<&str>, outcome: &str| Approval {
            request: request.id.to_string(),
            approver: approver.map(str::to_string),
            outcome: outcome.into(),
        };
        let outcome = match ended {
            Ended::Decided(Resolution::Approved { by, verdict }) => {
                waiting.end("approved", &format!("approved by {by}"));
                why.approval = Some(approval(Some(&by), "approved"));
                Ok(verdict)
            }
            Ended::Decided(Resolution::Denied { by, reason }) => {
                waiting.end("denied", &format!("denied by {by}: {reason}"));
                why.approval = Some(approval(Some(&by), "denied"));
                Err(request.denied(&by, &reason))
            }
            Ended::Expired => {
                waiting.end("expired", "nobody decided before the deadline");
                why.approval = Some(approval(None, "expired"));
                Err(request.expired())
            }
            Ended::Overflowed => {
                waiting.end(
                    "withdrawn",
                    "the client sent more than 1 MiB while the statement waited",
                );
                why.approval = Some(approval(None, "withdrawn"));
                Err(ErrorResponse::new(
                    portcullis_wire::backend::Severity::Error,
                    "54000",
                    "the statement's wait for approval ended: more than 1 MiB arrived meanwhile, which the gateway does not buffer",
                ))
            }
            Ended::Canceled => {
                waiting.end("canceled", "the client canceled the statement");
                why.approval = Some(approval(None, "canceled"));
                Err(canceled())
            }
            Ended::TokenExpired => {
                waiting.end("token_expired", "the caller's token expired");
                drop(waiting);
                self.end_expired(upstream).await?;
                return Err(FrontendError::Ended);
            }
        };
        Ok(outcome)
    }
}
