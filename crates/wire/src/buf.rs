//! Bounds-checked reading of message bodies and the few writing helpers the encoders share.

use bytes::{BufMut, BytesMut};

use crate::WireError;

/// A cursor over a message body that never reads past its end.
///
/// Every accessor returns [`WireError::Malformed`] naming `message` instead of panicking, so
/// hostile input can only produce an error.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], message: &'static str) -> Self {
        Reader {
            data,
            pos: 0,
            message,
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn short(&self) -> WireError {
        WireError::malformed(self.message, "message is shorter than its fields")
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        let b = *self.data.get(self.pos).ok_or_else(|| self.short())?;
        self.pos += 1;
        Ok(b)
    }

    pub fn i16(&mut self) -> Result<i16, WireError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(self.i32()? as u32)
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A 16-bit count (fields, parameters, format codes, values): unsigned, as PostgreSQL
    /// reads it, so 0 to 65,535.
    pub fn count16(&mut self) -> Result<usize, WireError> {
        self.u16().map(usize::from)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.short())?;
        let out = self.data.get(self.pos..end).ok_or_else(|| self.short())?;
        self.pos = end;
        Ok(out)
    }

    /// A length-prefixed value where -1 means NULL.
    pub fn value(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let len = self.i32()?;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(WireError::malformed(self.message, "negative value length")),
            n => self.bytes(n as usize).map(Some),
        }
    }

    /// A NUL-terminated string, without its terminator.
    pub fn cstr(&mut self) -> Result<&'a [u8], WireError> {
        let rest = &self.data[self.pos..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| WireError::malformed(self.message, "string is not terminated"))?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    /// A NUL-terminated string that must be UTF-8 (names and identifiers the gateway reads).
    pub fn cstr_utf8(&mut self) -> Result<&'a str, WireError> {
        let b = self.cstr()?;
        std::str::from_utf8(b)
            .map_err(|_| WireError::malformed(self.message, "string is not UTF-8"))
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.data[self.pos..];
        self.pos = self.data.len();
        out
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(WireError::malformed(
                self.message,
                "trailing bytes after the last field",
            ))
        }
    }
}

/// Appends `s` and its NUL terminator.
pub fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}
