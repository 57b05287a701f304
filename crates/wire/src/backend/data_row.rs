//! DataRow: one result row, read value by value and rebuilt when a value is rewritten.

use bytes::BufMut;

use crate::{Message, Reader, WireError};

use super::DATA_ROW;

/// A DataRow whose column count and value lengths have been checked.
#[derive(Clone)]
pub struct DataRow {
    msg: Message,
    columns: usize,
}

impl DataRow {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "DataRow");
        let columns = r.count16()?;
        for _ in 0..columns {
            r.value()?;
        }
        r.finish()?;
        Ok(DataRow { msg, columns })
    }

    /// Builds a DataRow from values (`None` is NULL).
    pub fn new<'a>(values: impl IntoIterator<Item = Option<&'a [u8]>>) -> Self {
        let mut columns = 0usize;
        let msg = Message::build(DATA_ROW, |b| {
            b.put_i16(0);
            for v in values {
                columns += 1;
                match v {
                    None => b.put_i32(-1),
                    Some(v) => {
                        b.put_i32(v.len() as i32);
                        b.put_slice(v);
                    }
                }
            }
            // PostgreSQL's limit is 1,664 columns; a count past 65,535 cannot be sent.
            let n = u16::try_from(columns).unwrap_or(u16::MAX).to_be_bytes();
            b[5..7].copy_from_slice(&n);
        });
        DataRow { msg, columns }
    }

    pub fn len(&self) -> usize {
        self.columns
    }

    pub fn is_empty(&self) -> bool {
        self.columns == 0
    }

    /// The values in column order.
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        let mut r = Reader::new(self.msg.body(), "DataRow");
        // Lengths were validated in decode, so these reads cannot fail.
        let _ = r.count16();
        (0..self.columns).map(move |_| r.value().ok().flatten())
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    pub fn into_message(self) -> Message {
        self.msg
    }
}

impl std::fmt::Debug for DataRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataRow")
            .field("columns", &self.columns)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let row = DataRow::new([Some(&b"42"[..]), None, Some(b"")]);
        let d = DataRow::decode(row.message().clone()).unwrap();
        assert_eq!(
            d.values().collect::<Vec<_>>(),
            vec![Some(&b"42"[..]), None, Some(&b""[..])]
        );
        assert!(DataRow::decode(Message::new(DATA_ROW, b"\0\x01\0\0\0\x05ab")).is_err());
        assert!(DataRow::decode(Message::new(DATA_ROW, b"\0\x01\xff\xff\xff\xfe")).is_err());
    }
}
