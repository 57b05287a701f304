//! SQL analysis with the real PostgreSQL grammar (libpg_query): a query string becomes the
//! statements the server will run, each with its parse tree and the session effects the
//! gateway must track (SQL-level PREPARE, EXECUTE, DEALLOCATE).
//!
//! Text arrives in the client's encoding and is converted to UTF-8 first, as the server
//! does before parsing. Results are cached by text and lexer options.

pub mod analysis;
mod cache;
mod encoding;
mod parse;

pub use cache::{Lookup, ParseCache, normalized_key};
pub use encoding::ClientEncoding;
pub use parse::{LexerOptions, ParsedQuery, ParsedStatement, PreparedOp, parse};
