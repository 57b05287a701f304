//! CommandComplete: the command tag, from which the affected row count is read.

use crate::{Message, Reader, WireError, put_cstr};

use super::COMMAND_COMPLETE;

/// CommandComplete, e.g. `UPDATE 3` or `INSERT 0 1`.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandComplete {
    msg: Message,
}

impl CommandComplete {
    pub fn decode(msg: Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "CommandComplete");
        r.cstr_utf8()?;
        r.finish()?;
        Ok(CommandComplete { msg })
    }

    pub fn new(tag: &str) -> Self {
        CommandComplete {
            msg: Message::build(COMMAND_COMPLETE, |b| put_cstr(b, tag.as_bytes())),
        }
    }

    /// The whole tag.
    pub fn tag(&self) -> &str {
        let body = self.msg.body();
        std::str::from_utf8(&body[..body.len() - 1]).unwrap_or_default()
    }

    /// The command word(s) without the counts, e.g. `INSERT` or `CREATE TABLE`.
    pub fn command(&self) -> &str {
        let tag = self.tag();
        tag.trim_end_matches(|c: char| c.is_ascii_digit() || c == ' ')
    }

    /// Rows affected or returned, when the tag carries a count.
    pub fn rows(&self) -> Option<u64> {
        let last = self.tag().rsplit(' ').next()?;
        if self.tag().contains(' ') {
            last.parse().ok()
        } else {
            None
        }
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }
}

impl std::fmt::Debug for CommandComplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CommandComplete").field(&self.tag()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let c =
            CommandComplete::decode(CommandComplete::new("INSERT 0 12").message().clone()).unwrap();
        assert_eq!((c.command(), c.rows()), ("INSERT", Some(12)));
        assert_eq!(CommandComplete::new("UPDATE 3").rows(), Some(3));
        assert_eq!(CommandComplete::new("CREATE TABLE").rows(), None);
        assert_eq!(
            CommandComplete::new("CREATE TABLE").command(),
            "CREATE TABLE"
        );
        assert!(CommandComplete::decode(Message::new(COMMAND_COMPLETE, b"x")).is_err());
    }
}
