//! Describe and Close: both name a prepared statement or a portal.

use bytes::BufMut;

use crate::{Message, Reader, WireError, put_cstr};

use super::{CLOSE, DESCRIBE};

/// What a Describe or Close refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

fn decode_target(msg: &Message, name: &'static str) -> Result<Target, WireError> {
    let mut r = Reader::new(msg.body(), name);
    let target = match r.u8()? {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        _ => return Err(WireError::malformed(name, "target is neither 'S' nor 'P'")),
    };
    r.cstr_utf8()?;
    r.finish()?;
    Ok(target)
}

fn encode(tag: u8, target: Target, name: &str) -> Message {
    Message::build(tag, |b| {
        b.put_u8(match target {
            Target::Statement => b'S',
            Target::Portal => b'P',
        });
        put_cstr(b, name.as_bytes());
    })
}

fn target_name(msg: &Message) -> &str {
    let body = msg.body();
    std::str::from_utf8(&body[1..body.len() - 1]).unwrap_or_default()
}

/// Describe a prepared statement or portal.
#[derive(Clone)]
pub struct Describe {
    msg: Message,
    target: Target,
}

impl Describe {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let target = decode_target(&msg, "Describe")?;
        Ok(Describe { msg, target })
    }

    pub fn new(target: Target, name: &str) -> Self {
        Describe {
            msg: encode(DESCRIBE, target, name),
            target,
        }
    }

    pub fn target(&self) -> Target {
        self.target
    }

    pub fn name(&self) -> &str {
        target_name(&self.msg)
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }
}

/// Close a prepared statement or portal.
#[derive(Clone)]
pub struct Close {
    msg: Message,
    target: Target,
}

impl Close {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let target = decode_target(&msg, "Close")?;
        Ok(Close { msg, target })
    }

    pub fn new(target: Target, name: &str) -> Self {
        Close {
            msg: encode(CLOSE, target, name),
            target,
        }
    }

    pub fn target(&self) -> Target {
        self.target
    }

    pub fn name(&self) -> &str {
        target_name(&self.msg)
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }
}

impl std::fmt::Debug for Describe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Describe")
            .field("target", &self.target)
            .field("name", &self.name())
            .finish()
    }
}

impl std::fmt::Debug for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Close")
            .field("target", &self.target)
            .field("name", &self.name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Describe::decode(Describe::new(Target::Portal, "p1").message().clone()).unwrap();
        assert_eq!((d.target(), d.name()), (Target::Portal, "p1"));
        let c = Close::decode(Close::new(Target::Statement, "").message().clone()).unwrap();
        assert_eq!((c.target(), c.name()), (Target::Statement, ""));
        assert!(Describe::decode(Message::new(DESCRIBE, b"Xname\0")).is_err());
        assert!(Close::decode(Message::new(CLOSE, b"S")).is_err());
    }
}
