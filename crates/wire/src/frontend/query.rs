//! Query: a simple-protocol query string, possibly several statements.

use crate::{Message, Reader, WireError, put_cstr};

use super::QUERY;

/// A simple Query. The text is bytes in the client's encoding.
#[derive(Clone)]
pub struct Query {
    msg: Message,
}

impl Query {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "Query");
        r.cstr()?;
        r.finish()?;
        Ok(Query { msg })
    }

    pub fn new(sql: &[u8]) -> Self {
        Query {
            msg: Message::build(QUERY, |b| put_cstr(b, sql)),
        }
    }

    /// The query text, without its terminator.
    pub fn sql(&self) -> &[u8] {
        let body = self.msg.body();
        &body[..body.len() - 1]
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    pub fn into_message(self) -> Message {
        self.msg
    }
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("sql", &String::from_utf8_lossy(self.sql()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let q = Query::new(b"select 1; select 2");
        let again = Query::decode(q.message().clone()).unwrap();
        assert_eq!(again.sql(), b"select 1; select 2");
        assert!(Query::decode(Message::new(QUERY, b"no terminator")).is_err());
        assert!(Query::decode(Message::new(QUERY, b"a\0b\0")).is_err());
    }
}
