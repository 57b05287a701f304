//! ReadyForQuery: the end of a request cycle, with the transaction status.

use crate::{Message, Reader, WireError};

use super::READY_FOR_QUERY;

/// Transaction status reported by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block; statements are refused until it ends.
    Failed,
}

impl TransactionStatus {
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'I' => Some(TransactionStatus::Idle),
            b'T' => Some(TransactionStatus::InTransaction),
            b'E' => Some(TransactionStatus::Failed),
            _ => None,
        }
    }
}

/// ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery {
    pub status: TransactionStatus,
}

impl ReadyForQuery {
    pub fn decode(msg: &Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "ReadyForQuery");
        let status = TransactionStatus::from_byte(r.u8()?)
            .ok_or_else(|| WireError::malformed("ReadyForQuery", "unknown transaction status"))?;
        r.finish()?;
        Ok(ReadyForQuery { status })
    }

    pub fn to_message(&self) -> Message {
        Message::new(READY_FOR_QUERY, &[self.status.byte()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for status in [
            TransactionStatus::Idle,
            TransactionStatus::InTransaction,
            TransactionStatus::Failed,
        ] {
            let r = ReadyForQuery { status };
            assert_eq!(ReadyForQuery::decode(&r.to_message()).unwrap(), r);
        }
        assert!(ReadyForQuery::decode(&Message::new(READY_FOR_QUERY, b"X")).is_err());
    }
}
