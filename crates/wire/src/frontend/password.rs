//! PasswordMessage: the cleartext password, which for the gateway carries an access token.

use crate::{Message, Reader, WireError};

/// A cleartext PasswordMessage. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct PasswordMessage {
    msg: Message,
}

impl PasswordMessage {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        if msg.tag() != super::PASSWORD {
            return Err(WireError::UnexpectedTag(msg.tag() as char));
        }
        let mut r = Reader::new(msg.body(), "PasswordMessage");
        r.cstr()?;
        r.finish()?;
        Ok(PasswordMessage { msg })
    }

    /// The password bytes, without the terminator.
    pub fn password(&self) -> &[u8] {
        let body = self.msg.body();
        &body[..body.len() - 1]
    }
}

impl std::fmt::Debug for PasswordMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordMessage")
            .field("len", &self.password().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_secret() {
        let p = PasswordMessage::decode(Message::new(b'p', b"eyJ.secret\0")).unwrap();
        assert_eq!(p.password(), b"eyJ.secret");
        assert!(!format!("{p:?}").contains("secret"));
        assert!(PasswordMessage::decode(Message::new(b'Q', b"x\0")).is_err());
    }
}
