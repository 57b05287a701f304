//! Per-result state: the description each portal's rows have, and the rewriter sink bound
//! to the result arriving now.
//!
//! A simple Query's result describes itself (RowDescription, then rows). An Execute's does
//! not: its description is the answer to a Describe of the portal, the client's own or one
//! the gateway sends before the Execute and swallows (see `frontend::extended`). That
//! description is kept per portal, with the sink a rewriter bound to it, and taken up by
//! each Execute of the portal; a suspended portal's sink waits for the next Execute, so one
//! result is one binding however many Executes it takes.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_wire::Message;
use portcullis_wire::backend::{
    CommandComplete, CopyOutResponse, DataRow, ErrorResponse, RowDescription, Severity,
};

use crate::rewrite::{CopyRewriter, ResultRewriter, RowRewriter};

/// A rewriter's sink, bound to one result.
enum Sink {
    Rows(Box<dyn RowRewriter>),
    Copy(Box<dyn CopyRewriter>),
}

/// A sink and the rewriter that made it: a result is rewritten only by the rewriter its
/// statement was decided with.
struct Binding {
    rewriter: Arc<dyn ResultRewriter>,
    sink: Sink,
}

#[derive(Default)]
struct PortalResult {
    description: Option<RowDescription>,
    binding: Option<Binding>,
}

/// The results of the session's portals, and the one arriving now.
#[derive(Default)]
pub(super) struct Results {
    portals: HashMap<Arc<str>, PortalResult>,
    current: Option<Binding>,
}

/// Rows arrived that must be rewritten but nothing was bound to them.
fn unbound() -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "XX000",
        "a result that policy rewrites arrived without its description",
    )
}

impl Results {
    /// A portal was bound (again): what was known of its result is gone.
    pub fn bound(&mut self, portal: &str) {
        self.portals.remove(portal);
    }

    /// A portal was closed, or every portal was (a transaction's end).
    pub fn closed(&mut self, portal: Option<&str>) {
        match portal {
            Some(p) => {
                self.portals.remove(p);
            }
            None => self.portals.clear(),
        }
    }

    /// A Describe of `portal` was answered. With a rewriter, the result is bound now; the
    /// description the client receives (when it asked) is the sink's.
    pub fn described(
        &mut self,
        portal: &Arc<str>,
        description: RowDescription,
        rewriter: Option<&Arc<dyn ResultRewriter>>,
    ) -> Result<Message, ErrorResponse> {
        let entry = self.portals.entry(portal.clone()).or_default();
        let mut shown = description.message().clone();
        entry.binding = match rewriter {
            Some(r) => {
                let mut sink = r.begin(&description)?;
                shown = sink.description(description.clone());
                Some(Binding {
                    rewriter: r.clone(),
                    sink: Sink::Rows(sink),
                })
            }
            None => None,
        };
        entry.description = Some(description);
        Ok(shown)
    }

    /// What a Describe of `portal` said its rows are.
    pub fn description(&self, portal: &str) -> Option<&RowDescription> {
        self.portals.get(portal)?.description.as_ref()
    }

    /// An Execute of `portal` begins answering: its sink, if bound, takes the stage.
    pub fn resume(&mut self, portal: &str) {
        self.current = self.portals.get_mut(portal).and_then(|p| p.binding.take());
    }

    /// The Execute of `portal` was suspended: its sink waits for the next one.
    pub fn suspend(&mut self, portal: &str) {
        if let Some(p) = self.portals.get_mut(portal) {
            p.binding = self.current.take();
        }
    }

    /// A simple Query's statement describes its result.
    pub fn begin(
        &mut self,
        rewriter: &Arc<dyn ResultRewriter>,
        description: RowDescription,
    ) -> Result<Message, ErrorResponse> {
        let mut sink = rewriter.begin(&description)?;
        let shown = sink.description(description);
        self.current = Some(Binding {
            rewriter: rewriter.clone(),
            sink: Sink::Rows(sink),
        });
        Ok(shown)
    }

    /// A COPY TO STDOUT begins.
    pub fn begin_copy(
        &mut self,
        rewriter: &Arc<dyn ResultRewriter>,
        response: &CopyOutResponse,
    ) -> Result<(), ErrorResponse> {
        let sink = rewriter.begin_copy(response)?;
        self.current = Some(Binding {
            rewriter: rewriter.clone(),
            sink: Sink::Copy(sink),
        });
        Ok(())
    }

    fn sink(&mut self, rewriter: &Arc<dyn ResultRewriter>) -> Option<&mut Sink> {
        let b = self.current.as_mut()?;
        Arc::ptr_eq(&b.rewriter, rewriter).then_some(&mut b.sink)
    }

    /// One row, rewritten by the bound sink.
    pub fn row(
        &mut self,
        rewriter: &Arc<dyn ResultRewriter>,
        row: DataRow,
    ) -> Result<Message, ErrorResponse> {
        match self.sink(rewriter) {
            Some(Sink::Rows(s)) => s.row(row),
            _ => Err(unbound()),
        }
    }

    /// One CopyData, rewritten by the bound copy sink.
    pub fn copy_data(
        &mut self,
        rewriter: &Arc<dyn ResultRewriter>,
        data: &[u8],
    ) -> Result<Message, ErrorResponse> {
        match self.sink(rewriter) {
            Some(Sink::Copy(s)) => s.data(data),
            _ => Err(unbound()),
        }
    }

    /// The copy ended: what the sink still has to send.
    pub fn copy_done(
        &mut self,
        rewriter: &Arc<dyn ResultRewriter>,
    ) -> Result<Option<Message>, ErrorResponse> {
        match self.sink(rewriter) {
            Some(Sink::Copy(s)) => s.finish(),
            _ => Err(unbound()),
        }
    }

    /// The result ended: the sink's last word on its CommandComplete, and the sink goes.
    pub fn end(&mut self, complete: Option<&CommandComplete>) -> Option<Message> {
        let binding = self.current.take()?;
        match (binding.sink, complete) {
            (Sink::Rows(mut s), Some(c)) => s.finish(c),
            _ => None,
        }
    }
}
