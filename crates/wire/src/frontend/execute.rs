//! Execute: runs a portal, optionally limited to a number of rows.

use crate::{Message, Reader, WireError};

/// Execute a portal.
#[derive(Clone)]
pub struct Execute {
    msg: Message,
    max_rows: i32,
}

impl Execute {
    /// Executes `portal`, returning at most `max_rows` rows (0: all).
    pub fn new(portal: &str, max_rows: i32) -> Self {
        let mut body = Vec::with_capacity(portal.len() + 5);
        body.extend_from_slice(portal.as_bytes());
        body.push(0);
        body.extend_from_slice(&max_rows.to_be_bytes());
        Execute {
            msg: Message::new(super::EXECUTE, &body),
            max_rows,
        }
    }

    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "Execute");
        r.cstr_utf8()?;
        let max_rows = r.i32()?;
        r.finish()?;
        Ok(Execute { msg, max_rows })
    }

    pub fn portal(&self) -> &str {
        let body = self.msg.body();
        std::str::from_utf8(&body[..body.len() - 5]).unwrap_or_default()
    }

    /// Row limit; 0 means no limit.
    pub fn max_rows(&self) -> i32 {
        self.max_rows
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }
}

impl std::fmt::Debug for Execute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execute")
            .field("portal", &self.portal())
            .field("max_rows", &self.max_rows)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::EXECUTE;

    #[test]
    fn decode() {
        let e = Execute::decode(Message::new(EXECUTE, b"p1\0\0\0\0\x0a")).unwrap();
        assert_eq!((e.portal(), e.max_rows()), ("p1", 10));
        assert!(Execute::decode(Message::new(EXECUTE, b"p1\0\0\0")).is_err());
        let built = Execute::new("p1", 10);
        assert_eq!(built.message().body(), b"p1\0\0\0\0\x0a");
        let again = Execute::decode(built.message().clone()).unwrap();
        assert_eq!((again.portal(), again.max_rows()), ("p1", 10));
    }
}
