//! BackendKeyData: the process id and secret a client uses to cancel.

use bytes::{BufMut, Bytes};

use crate::{Message, Reader, WireError};

use super::BACKEND_KEY_DATA;

/// BackendKeyData. The secret is 4 bytes in protocol 3.0 and up to 256 in 3.2.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    pub pid: i32,
    pub secret: Bytes,
}

impl BackendKeyData {
    pub fn decode(msg: &Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "BackendKeyData");
        let pid = r.i32()?;
        let secret = r.rest();
        if secret.len() < 4 || secret.len() > 256 {
            return Err(WireError::malformed(
                "BackendKeyData",
                "secret has an invalid length",
            ));
        }
        Ok(BackendKeyData {
            pid,
            secret: Bytes::copy_from_slice(secret),
        })
    }

    pub fn to_message(&self) -> Message {
        Message::build(BACKEND_KEY_DATA, |b| {
            b.put_i32(self.pid);
            b.put_slice(&self.secret);
        })
    }
}

impl std::fmt::Debug for BackendKeyData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendKeyData")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = BackendKeyData {
            pid: 77,
            secret: Bytes::from_static(&[9, 8, 7, 6]),
        };
        assert_eq!(BackendKeyData::decode(&k.to_message()).unwrap(), k);
        assert!(BackendKeyData::decode(&Message::new(BACKEND_KEY_DATA, &[0, 0, 0, 1, 2])).is_err());
    }
}
