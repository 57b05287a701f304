//! Parse: creates a prepared statement from query text in the extended protocol.

use bytes::BufMut;

use crate::{Message, Reader, WireError, put_cstr};

use super::PARSE;

/// Parse: statement name, query text and declared parameter types.
#[derive(Clone)]
pub struct Parse {
    msg: Message,
    name_end: usize,
    query_end: usize,
}

impl Parse {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "Parse");
        r.cstr_utf8()?;
        let name_end = r.position() - 1;
        r.cstr()?;
        let query_end = r.position() - 1;
        let n = r.count16()?;
        r.bytes(n * 4)?;
        r.finish()?;
        Ok(Parse {
            msg,
            name_end,
            query_end,
        })
    }

    pub fn new(name: &str, sql: &[u8], param_types: &[u32]) -> Self {
        let msg = Message::build(PARSE, |b| {
            put_cstr(b, name.as_bytes());
            put_cstr(b, sql);
            // The count is 16 bits unsigned; the gateway's own Parses name few types.
            b.put_u16(u16::try_from(param_types.len()).unwrap_or(u16::MAX));
            for t in param_types {
                b.put_u32(*t);
            }
        });
        Parse {
            msg,
            name_end: name.len(),
            query_end: name.len() + 1 + sql.len(),
        }
    }

    /// The statement name; empty for the unnamed statement.
    pub fn name(&self) -> &str {
        // Validated as UTF-8 in decode.
        std::str::from_utf8(&self.msg.body()[..self.name_end]).unwrap_or_default()
    }

    /// The query text in the client's encoding.
    pub fn sql(&self) -> &[u8] {
        &self.msg.body()[self.name_end + 1..self.query_end]
    }

    /// Declared parameter type OIDs (0 means unspecified).
    pub fn param_types(&self) -> impl Iterator<Item = u32> + '_ {
        let types = &self.msg.body()[self.query_end + 3..];
        types
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    pub fn into_message(self) -> Message {
        self.msg
    }
}

impl std::fmt::Debug for Parse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parse")
            .field("name", &self.name())
            .field("sql", &String::from_utf8_lossy(self.sql()))
            .field("param_types", &self.param_types().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Parse::new("s1", b"select $1::int", &[23]);
        let again = Parse::decode(p.message().clone()).unwrap();
        assert_eq!(again.name(), "s1");
        assert_eq!(again.sql(), b"select $1::int");
        assert_eq!(again.param_types().collect::<Vec<_>>(), vec![23]);
    }

    #[test]
    fn hostile() {
        for body in [
            &b"s1\0select\0"[..],
            b"s1\0select\0\xff\xff",
            b"s1\0select\0\0\x02\0\0\0\x17",
            b"s1\0select",
        ] {
            assert!(
                Parse::decode(Message::new(PARSE, body)).is_err(),
                "{body:?}"
            );
        }
    }
}
