//! Bind: creates a portal from a prepared statement and parameter values.

use crate::{Formats, Message, Reader, WireError};

/// Bind: the portal and statement names, checked to be well formed down to the last byte.
#[derive(Clone)]
pub struct Bind {
    msg: Message,
    portal_end: usize,
    statement_end: usize,
}

impl Bind {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "Bind");
        r.cstr_utf8()?;
        let portal_end = r.position() - 1;
        r.cstr_utf8()?;
        let statement_end = r.position() - 1;
        let formats = r.count16()?;
        r.bytes(formats * 2)?;
        let params = r.count16()?;
        for _ in 0..params {
            r.value()?;
        }
        let results = r.count16()?;
        r.bytes(results * 2)?;
        r.finish()?;
        Ok(Bind {
            msg,
            portal_end,
            statement_end,
        })
    }

    /// A Bind without parameters or result formats.
    pub fn new(portal: &str, statement: &str) -> Self {
        let msg = Message::build(super::BIND, |b| {
            crate::put_cstr(b, portal.as_bytes());
            crate::put_cstr(b, statement.as_bytes());
            b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        });
        Bind {
            msg,
            portal_end: portal.len(),
            statement_end: portal.len() + 1 + statement.len(),
        }
    }

    /// The portal name; empty for the unnamed portal.
    pub fn portal(&self) -> &str {
        std::str::from_utf8(&self.msg.body()[..self.portal_end]).unwrap_or_default()
    }

    /// The prepared statement name; empty for the unnamed statement.
    pub fn statement(&self) -> &str {
        std::str::from_utf8(&self.msg.body()[self.portal_end + 1..self.statement_end])
            .unwrap_or_default()
    }

    /// The parameter values, each with whether it is in binary format; `None` is NULL.
    pub fn parameters(&self) -> Vec<(bool, Option<&[u8]>)> {
        let mut r = Reader::new(&self.msg.body()[self.statement_end + 1..], "Bind");
        // The message was checked when decoded, so this cannot fail.
        super::values::read(&mut r).unwrap_or_default()
    }

    /// The result-column formats.
    pub fn result_formats(&self) -> Formats {
        Formats::new(self.result_format_codes())
    }

    fn result_format_codes(&self) -> Vec<i16> {
        let mut out = Vec::new();
        let _ = (|| -> Result<(), WireError> {
            let mut r = Reader::new(&self.msg.body()[self.statement_end + 1..], "Bind");
            let n = r.count16()?;
            r.bytes(n * 2)?;
            for _ in 0..r.count16()? {
                r.value()?;
            }
            for _ in 0..r.count16()? {
                out.push(r.i16()?);
            }
            Ok(())
        })();
        out
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    pub fn into_message(self) -> Message {
        self.msg
    }
}

impl std::fmt::Debug for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bind")
            .field("portal", &self.portal())
            .field("statement", &self.statement())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::BIND;

    #[test]
    fn decodes_names_and_checks_values() {
        let body = b"p1\0s1\0\0\x01\0\x01\0\x02\0\0\0\x02hi\xff\xff\xff\xff\0\0";
        let b = Bind::decode(Message::new(BIND, body)).unwrap();
        assert_eq!((b.portal(), b.statement()), ("p1", "s1"));
        assert_eq!(
            b.parameters(),
            vec![(true, Some(&b"hi"[..])), (true, None)],
            "one format code applies to every parameter"
        );
        assert!(Bind::new("p", "s").parameters().is_empty());
        assert!(b.result_formats().codes().is_empty());
        let with_formats = b"\0s\0\0\0\0\0\0\x02\0\x01\0\0";
        let f = Bind::decode(Message::new(BIND, with_formats)).unwrap();
        assert_eq!(f.result_formats().codes(), [1, 0]);
        // A value length running past the end, and a count past the end.
        assert!(Bind::decode(Message::new(BIND, b"\0\0\0\0\0\x01\0\0\0\x09ab\0\0")).is_err());
        assert!(Bind::decode(Message::new(BIND, b"\0\0\xff\xfe")).is_err());
        // Counts are unsigned: 32,768 and 65,535 parameters are legal.
        for n in [32_767usize, 32_768, 65_535] {
            let mut body = b"\0s\0\0\0".to_vec();
            body.extend_from_slice(&(n as u16).to_be_bytes());
            for _ in 0..n {
                body.extend_from_slice(&1i32.to_be_bytes());
                body.push(b'7');
            }
            body.extend_from_slice(&[0, 0]);
            let b = Bind::decode(Message::new(BIND, &body)).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(b.parameters().len(), n);
        }
        let made = Bind::new("p", "s");
        let again = Bind::decode(made.message().clone()).unwrap();
        assert_eq!((again.portal(), again.statement()), ("p", "s"));
    }
}
