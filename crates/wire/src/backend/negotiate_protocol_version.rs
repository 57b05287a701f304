//! NegotiateProtocolVersion: tells a client the newest minor version and which options were ignored.

use bytes::BufMut;

use crate::{Message, put_cstr};

use super::NEGOTIATE_PROTOCOL_VERSION;

/// Encodes NegotiateProtocolVersion with the newest supported minor version and the
/// unrecognized `_pq_.` options.
pub fn negotiate_protocol_version(newest_minor: u16, unrecognized: &[&str]) -> Message {
    Message::build(NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32(((3i32) << 16) | newest_minor as i32);
        b.put_i32(unrecognized.len() as i32);
        for o in unrecognized {
            put_cstr(b, o.as_bytes());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let m = negotiate_protocol_version(0, &["_pq_.x"]);
        assert_eq!(m.body(), b"\0\x03\0\0\0\0\0\x01_pq_.x\0");
    }
}
