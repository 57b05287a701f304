//! The raw message: one tagged frame exactly as it travels on the wire.

use bytes::{BufMut, Bytes, BytesMut};

/// A complete tagged message: type byte, length and body, kept as the bytes that arrived.
///
/// Forwarding a message copies its frame verbatim; typed views decode fields on demand.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    frame: Bytes,
}

impl Message {
    /// Wraps a frame that [`crate::FrameReader`] has already checked (tag, length, body).
    pub(crate) fn from_frame(frame: Bytes) -> Self {
        debug_assert!(frame.len() >= 5);
        Message { frame }
    }

    /// Builds a message from its type byte and body.
    pub fn new(tag: u8, body: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(5 + body.len());
        buf.put_u8(tag);
        buf.put_i32((body.len() + 4) as i32);
        buf.put_slice(body);
        Message {
            frame: buf.freeze(),
        }
    }

    /// Builds a message whose body is written by `f`; the length is filled in afterwards.
    pub fn build(tag: u8, f: impl FnOnce(&mut BytesMut)) -> Self {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u8(tag);
        buf.put_i32(0);
        f(&mut buf);
        let len = (buf.len() - 1) as i32;
        buf[1..5].copy_from_slice(&len.to_be_bytes());
        Message {
            frame: buf.freeze(),
        }
    }

    /// The message type byte.
    pub fn tag(&self) -> u8 {
        self.frame[0]
    }

    /// The body, after the type byte and length.
    pub fn body(&self) -> &[u8] {
        &self.frame[5..]
    }

    /// The whole frame as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.frame
    }

    pub fn into_bytes(self) -> Bytes {
        self.frame
    }

    /// Total size on the wire.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("tag", &(self.tag() as char))
            .field("body_len", &self.body().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_fills_length() {
        let m = Message::build(b'Q', |b| b.put_slice(b"select 1\0"));
        assert_eq!(m, Message::new(b'Q', b"select 1\0"));
        assert_eq!(&m.as_bytes()[1..5], &13i32.to_be_bytes());
        assert_eq!(m.body(), b"select 1\0");
    }
}
