//! PostgreSQL wire protocol version 3: framing, startup packets and the messages the gateway reads or writes.
//!
//! Messages stay as the raw bytes that arrived ([`Message`]); typed views such as
//! [`frontend::Parse`] validate a message once and read its fields lazily, so a message the
//! gateway does not rewrite is forwarded byte for byte.

pub mod backend;
mod buf;
mod error;
mod formats;
mod frame;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
mod message;
pub mod startup;

pub use buf::{Reader, put_cstr};
pub use error::WireError;
pub use formats::{Format, Formats};
pub use frame::{Frame, FrameReader, Limits, StreamError};
pub use message::Message;
