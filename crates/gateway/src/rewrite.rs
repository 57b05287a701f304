//! The result seam: how a decision rewrites what a statement returns (masking builds on it).
//!
//! A [`ResultRewriter`] is chosen when the statement is decided. For each result set the
//! statement produces it is bound once, to the actual description of that result (the
//! server's RowDescription with the formats the rows will be in), and the [`RowRewriter`]
//! it returns sees every row of that result, however many Executes of a suspended portal
//! they take. A COPY TO STDOUT binds a [`CopyRewriter`] instead.
//!
//! Fail closed: when a result that must be rewritten cannot be bound (a rewriter refuses,
//! rows arrive without a description), none of it reaches the client and the session ends
//! with the rewriter's error.

use portcullis_wire::Message;
use portcullis_wire::backend::{
    CommandComplete, CopyOutResponse, DataRow, ErrorResponse, RowDescription,
};

/// Chosen by the decision; bound to each result set of the statement.
pub trait ResultRewriter: Send + Sync {
    /// Binds to one result set. `description` is the server's, with each column's table,
    /// attribute, type and the format its values arrive in.
    fn begin(&self, description: &RowDescription) -> Result<Box<dyn RowRewriter>, ErrorResponse>;

    /// Binds to a COPY TO STDOUT. By default a copy cannot be rewritten and is refused.
    fn begin_copy(
        &self,
        _response: &CopyOutResponse,
    ) -> Result<Box<dyn CopyRewriter>, ErrorResponse> {
        Err(ErrorResponse::new(
            portcullis_wire::backend::Severity::Error,
            "0A000",
            "this statement's COPY output cannot be rewritten as policy demands",
        ))
    }
}

/// One result set's rewriting: stateful, fed every message of the result in order.
pub trait RowRewriter: Send {
    /// The RowDescription the client receives (for a simple Query, or the client's own
    /// Describe of the portal).
    fn description(&mut self, description: RowDescription) -> Message {
        description.message().clone()
    }

    /// One row; the replacement goes to the client.
    fn row(&mut self, row: DataRow) -> Result<Message, ErrorResponse>;

    /// The result ended; a replacement for its CommandComplete, if any.
    fn finish(&mut self, _complete: &CommandComplete) -> Option<Message> {
        None
    }
}

/// One COPY TO STDOUT's rewriting.
pub trait CopyRewriter: Send {
    /// One CopyData message's payload (the server sends one per row, but a rewriter must
    /// not rely on it); the replacement CopyData goes to the client.
    fn data(&mut self, data: &[u8]) -> Result<Message, ErrorResponse>;

    /// The copy ended (CopyDone): a last CopyData to send before it, if any.
    fn finish(&mut self) -> Result<Option<Message>, ErrorResponse> {
        Ok(None)
    }
}

/// Builds a CopyData message.
pub fn copy_data(data: &[u8]) -> Message {
    Message::new(portcullis_wire::backend::COPY_DATA, data)
}
