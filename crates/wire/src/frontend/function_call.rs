//! FunctionCall: the fast-path protocol's call of a function by OID, with its arguments.

use crate::{Message, Reader, WireError};

/// FunctionCall, checked to be well formed down to the last byte.
#[derive(Clone)]
pub struct FunctionCall {
    msg: Message,
    oid: u32,
}

/// One argument: whether it is in binary format, and its bytes (`None` is NULL).
pub type Argument<'a> = super::values::Value<'a>;

impl FunctionCall {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "FunctionCall");
        let oid = r.u32()?;
        let formats = r.count16()?;
        r.bytes(formats * 2)?;
        let args = r.count16()?;
        for _ in 0..args {
            r.value()?;
        }
        r.i16()?;
        r.finish()?;
        Ok(FunctionCall { msg, oid })
    }

    /// The called function's OID.
    pub fn oid(&self) -> u32 {
        self.oid
    }

    /// The arguments, with the format each is in.
    pub fn arguments(&self) -> Vec<Argument<'_>> {
        let mut r = Reader::new(&self.msg.body()[4..], "FunctionCall");
        // The message was checked when decoded, so this cannot fail.
        super::values::read(&mut r).unwrap_or_default()
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }
}

impl std::fmt::Debug for FunctionCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionCall")
            .field("oid", &self.oid)
            .field("arguments", &self.arguments().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::FUNCTION_CALL;

    #[test]
    fn decodes_the_oid_and_arguments() {
        // set_config('role', 'x', false): text, text, binary bool.
        let body =
            b"\0\0\x08\x1e\0\x03\0\0\0\0\0\x01\0\x03\0\0\0\x04role\0\0\0\x01x\0\0\0\x01\0\0\0";
        let c = FunctionCall::decode(Message::new(FUNCTION_CALL, body)).unwrap();
        assert_eq!(c.oid(), 2078);
        assert_eq!(
            c.arguments(),
            vec![
                (false, Some(&b"role"[..])),
                (false, Some(&b"x"[..])),
                (true, Some(&b"\0"[..]))
            ]
        );
        // One format code for all, a NULL.
        let body = b"\0\0\0\x01\0\x01\0\x01\0\x01\xff\xff\xff\xff\0\x01";
        let c = FunctionCall::decode(Message::new(FUNCTION_CALL, body)).unwrap();
        assert_eq!(c.arguments(), vec![(true, None)]);
        // Truncated, trailing bytes, a value running past the end.
        for bad in [
            &b"\0\0\0"[..],
            b"\0\0\0\x01\0\0\0\0\0\0\0",
            b"\0\0\0\x01\0\0\0\x01\0\0\0\x09ab\0\0",
        ] {
            assert!(FunctionCall::decode(Message::new(FUNCTION_CALL, bad)).is_err());
        }
    }
}
