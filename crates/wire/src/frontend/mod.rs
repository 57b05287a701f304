//! Messages a client sends after startup, with typed views over the ones the gateway inspects.

mod bind;
mod describe;
mod execute;
mod function_call;
mod parse;
mod password;
mod query;
mod values;

pub use bind::Bind;
pub use describe::{Close, Describe, Target};
pub use execute::Execute;
pub use function_call::{Argument, FunctionCall};
pub use parse::Parse;
pub use password::PasswordMessage;
pub use query::Query;

use crate::Message;

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const DESCRIBE: u8 = b'D';
pub const EXECUTE: u8 = b'E';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FLUSH: u8 = b'H';
pub const FUNCTION_CALL: u8 = b'F';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
pub const TERMINATE: u8 = b'X';
pub const PASSWORD: u8 = b'p';

/// A Sync message.
pub fn sync() -> Message {
    Message::new(SYNC, b"")
}

/// A Flush message.
pub fn flush() -> Message {
    Message::new(FLUSH, b"")
}

/// A Terminate message.
pub fn terminate() -> Message {
    Message::new(TERMINATE, b"")
}

/// The protocol name of a frontend message type, for errors and logs.
pub fn name(tag: u8) -> &'static str {
    match tag {
        QUERY => "Query",
        PARSE => "Parse",
        BIND => "Bind",
        DESCRIBE => "Describe",
        EXECUTE => "Execute",
        CLOSE => "Close",
        SYNC => "Sync",
        FLUSH => "Flush",
        FUNCTION_CALL => "FunctionCall",
        COPY_DATA => "CopyData",
        COPY_DONE => "CopyDone",
        COPY_FAIL => "CopyFail",
        TERMINATE => "Terminate",
        PASSWORD => "PasswordMessage",
        _ => "unknown",
    }
}
