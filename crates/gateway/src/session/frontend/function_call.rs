//! Fast-path FunctionCall: decided as the SQL call of the same function.

use portcullis_wire::Message;
use portcullis_wire::backend::TransactionStatus;
use portcullis_wire::frontend::{self, Query};
use tokio::io::AsyncWrite;

use super::refusal::REFUSED_SQL;
use super::{Frontend, FrontendError};
use crate::audit::{Described, Tracker};
use crate::decision::{Origin, Statement};
use crate::session::queue::{Expect, OnError};

impl Frontend<'_> {
    pub(super) async fn on_function_call<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Message,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let call = frontend::FunctionCall::decode(msg.clone())?;
        let arguments = call.arguments();
        let statement = Statement {
            origin: Origin::FunctionCall {
                oid: call.oid(),
                arguments: &arguments,
            },
            text: None,
            parsed: Err("a fast-path function call has no SQL text"),
            prepared: None,
            transaction: self.shared.transaction(),
            search_path: &self.search_path,
            parameters: &[],
        };
        let (verdict, mut why) = self.verdict(&statement);
        let text = why.text.as_deref().map_or_else(
            || format!("/* fast-path function call */ function oid {}", call.oid()),
            str::to_string,
        );
        let outcome = self.treatment(verdict, &text, &mut why, upstream).await?;
        let outcome = match outcome {
            Ok(_) => {
                let seq = self.next_seq();
                let event = self.event(Described::new(seq, "function_call", &text, &why));
                let sent = self.audit_durable(vec![event], upstream).await?;
                // A fast-path set_config moves the search path as the SQL call would, once
                // it is sent.
                if sent.is_ok()
                    && let Some(facts) = &why.facts
                {
                    let undoable = self.shared.transaction() != TransactionStatus::Idle;
                    self.track_facts(facts, undoable);
                }
                sent.map(|()| seq)
            }
            Err(refusal) => {
                self.record_refusal("function_call", &text, None, &why, &refusal);
                Err(refusal)
            }
        };
        match outcome {
            Ok(seq) => self.send(
                Expect::FunctionCall {
                    on_error: OnError::Forward,
                    audit: Some(Tracker::new(seq, None)),
                },
                &msg,
            ),
            // A failing Query answers exactly like a failed FunctionCall: an error, then
            // ReadyForQuery.
            Err(refusal) => self.send(
                Expect::FunctionCall {
                    on_error: OnError::Replace(refusal),
                    audit: None,
                },
                Query::new(REFUSED_SQL).message(),
            ),
        }
        Ok(())
    }
}
