//! CopyOutResponse: a COPY TO STDOUT begins; its overall format and each column's.

use crate::{Format, Formats, Message, Reader, WireError};

/// CopyOutResponse, checked once.
#[derive(Debug, Clone)]
pub struct CopyOutResponse {
    /// The overall format: text (text and CSV) or binary.
    pub format: Format,
    /// One code per column.
    pub columns: Formats,
}

impl CopyOutResponse {
    pub fn decode(msg: &Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "CopyOutResponse");
        let format = match r.u8()? {
            0 => Format::Text,
            1 => Format::Binary,
            _ => {
                return Err(WireError::malformed(
                    "CopyOutResponse",
                    "unknown overall format",
                ));
            }
        };
        let n = r.count16()?;
        let codes = (0..n).map(|_| r.i16()).collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(CopyOutResponse {
            format,
            columns: Formats::new(codes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::COPY_OUT_RESPONSE;

    #[test]
    fn decode() {
        let c =
            CopyOutResponse::decode(&Message::new(COPY_OUT_RESPONSE, b"\0\0\x02\0\0\0\0")).unwrap();
        assert_eq!((c.format, c.columns.codes()), (Format::Text, &[0, 0][..]));
        assert!(CopyOutResponse::decode(&Message::new(COPY_OUT_RESPONSE, b"\x02\0\0")).is_err());
        assert!(CopyOutResponse::decode(&Message::new(COPY_OUT_RESPONSE, b"\0\0\x02\0")).is_err());
    }
}
