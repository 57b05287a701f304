//! RowDescription: the columns of a result, with each column's source table and attribute.

use crate::{Formats, Message, Reader, WireError};

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    pub name: String,
    /// OID of the table the column comes from, or 0.
    pub table_oid: u32,
    /// Attribute number within that table, or 0.
    pub column: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// RowDescription, decoded on demand.
#[derive(Clone)]
pub struct RowDescription {
    msg: Message,
    fields: Vec<FieldDescription>,
}

impl RowDescription {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "RowDescription");
        let n = r.count16()?;
        let mut fields = Vec::with_capacity(n.min(1664));
        for _ in 0..n {
            fields.push(FieldDescription {
                name: String::from_utf8_lossy(r.cstr()?).into_owned(),
                table_oid: r.u32()?,
                column: r.i16()?,
                type_oid: r.u32()?,
                type_size: r.i16()?,
                type_modifier: r.i32()?,
                format: r.i16()?,
            });
        }
        r.finish()?;
        Ok(RowDescription { msg, fields })
    }

    pub fn fields(&self) -> &[FieldDescription] {
        &self.fields
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    /// The format of each column's values.
    pub fn formats(&self) -> Formats {
        Formats::new(self.fields.iter().map(|f| f.format).collect::<Vec<_>>())
    }
}

impl std::fmt::Debug for RowDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RowDescription").field(&self.fields).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ROW_DESCRIPTION;

    #[test]
    fn decode() {
        let body = b"\0\x01id\0\0\0\x40\x01\0\x02\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0";
        let d = RowDescription::decode(Message::new(ROW_DESCRIPTION, body)).unwrap();
        let f = &d.fields()[0];
        assert_eq!(
            (f.name.as_str(), f.table_oid, f.column, f.type_oid),
            ("id", 16385, 2, 23)
        );
        assert!(RowDescription::decode(Message::new(ROW_DESCRIPTION, b"\0\x02id\0")).is_err());
        assert!(RowDescription::decode(Message::new(ROW_DESCRIPTION, b"\x80\0")).is_err());
    }
}
