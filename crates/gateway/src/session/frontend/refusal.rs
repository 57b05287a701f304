//! Refusal by substitution: text the server is certain to reject stands in for a refused
//! statement, and text the gateway cannot parse is probed with a throwaway Parse.
//!
//! Text the gateway's parser rejects is *probed*: sent to the server as a Parse of a
//! throwaway statement. If the server rejects it too, the client gets the server's own
//! syntax error, word for word; if the server accepts it, the gateway refuses it, because
//! it cannot know what it would do.

use portcullis_sql::ClientEncoding;
use portcullis_wire::backend::{ErrorResponse, Severity};
use portcullis_wire::frontend::{self, Bind, Close, Parse, Target};
use tokio::io::AsyncWrite;

use super::{Frontend, FrontendError};
use crate::decision::{Reasons, Verdict};
use crate::session::queue::{Expect, OnError};

/// Text the server is certain to reject at parse time, with no side effects; stands in
/// for a refused statement.
pub(super) const REFUSED_SQL: &[u8] = b"/* portcullis: statement refused */ PORTCULLIS_REFUSED";
/// Names of the gateway's own throwaway prepared statements.
const PROBE: &str = "portcullis_probe";
pub(super) const REFUSED: &str = "portcullis_refused";
/// What the server keeps of a name: NAMEDATALEN - 1 bytes.
const MAX_NAME_BYTES: usize = 63;

pub(super) fn canceled() -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "57014",
        "canceling statement due to user request",
    )
}

/// The refusal of text the gateway's parser rejects but the server's accepts. It carries
/// the parser's own message, as the server would have raised a similar error running it.
pub(super) fn unanalysable(reason: &str) -> ErrorResponse {
    let reason = reason.strip_prefix("Invalid statement: ").unwrap_or(reason);
    ErrorResponse::new(Severity::Error, "42601", reason)
}

impl Frontend<'_> {
    /// Sends text the gateway could not parse to the server as a throwaway Parse: its own
    /// error goes back to the client; if it parses there, the client gets a refusal.
    /// `name` is the statement the client's Parse was creating (`None` for a Query).
    pub(super) fn probe(&mut self, bytes: &[u8], reason: &str, name: Option<&str>) {
        self.send(
            Expect::Parse {
                on_error: OnError::Forward,
                on_success: Some(unanalysable(reason)),
                report: None,
            },
            Parse::new(PROBE, bytes, &[]).message(),
        );
        self.send(
            Expect::Close {
                portal: None,
                swallow: true,
                report: None,
            },
            Close::new(Target::Statement, PROBE).message(),
        );
        // Fails whenever the probe parsed, so that the server skips to Sync and fails an
        // open transaction, as after any error. A failed Parse of the unnamed statement
        // drops it on the server too; a named one is left alone.
        let failing = match name {
            Some("") | None => "",
            Some(_) => REFUSED,
        };
        self.send(
            Expect::Parse {
                on_error: OnError::Swallow,
                on_success: None,
                report: None,
            },
            Parse::new(failing, REFUSED_SQL, &[]).message(),
        );
        if name.is_none() {
            self.send(Expect::Sync, &frontend::sync());
        }
    }

    /// Refuses a protocol message that is not a statement (a Bind, a Describe, an
    /// Execute): recorded, and a failing Bind stands in for it, which makes the server skip
    /// to Sync and leaves its statements and portals as they were.
    pub(super) fn refuse_message(&mut self, origin: &'static str, text: &str, e: ErrorResponse) {
        self.record_refusal(
            origin,
            text,
            None,
            &Reasons::of(&Verdict::Refuse(e.clone())),
            &e,
        );
        self.send(
            Expect::Bind {
                portal: None,
                on_error: OnError::Replace(e),
                audit: None,
            },
            Bind::new("", REFUSED).message(),
        );
    }

    /// Whether the names a protocol message carries are the names the server will read.
    /// The server converts them from `client_encoding`, the gateway keys them as sent (as
    /// UTF-8): the two agree for ASCII, and for anything when the client encoding is
    /// UTF-8. Otherwise two names the gateway tells apart could be one name on the server,
    /// so the message is refused.
    pub(super) async fn names_as_sent<W: AsyncWrite + Unpin>(
        &mut self,
        names: &[&str],
        upstream: &mut W,
    ) -> Result<bool, FrontendError> {
        // The server keeps 63 bytes of a name (NAMEDATALEN): two longer names the gateway
        // tells apart can be one name there, or the name SQL reaches by its first 63.
        let refused = if let Some(long) = names.iter().find(|n| n.len() > MAX_NAME_BYTES) {
            (
                long,
                "42622",
                format!(
                    "are limited to {MAX_NAME_BYTES} bytes, which is all the server keeps of them"
                ),
            )
        } else {
            let Some(foreign) = names.iter().find(|n| !n.is_ascii()) else {
                return Ok(true);
            };
            let (encoding, _) = self.server_lexer(foreign.as_bytes(), upstream).await?;
            if encoding == ClientEncoding::Utf8 {
                return Ok(true);
            }
            (
                foreign,
                "42602",
                "must be ASCII unless client_encoding is UTF8".to_string(),
            )
        };
        let (name, code, rule) = refused;
        let e = ErrorResponse::new(
            Severity::Error,
            code,
            format!(
                "the name \"{name}\" is refused: names of prepared statements and portals {rule}"
            ),
        );
        self.refuse_message(
            "bind",
            &format!("/* protocol message naming \"{name}\" */"),
            e,
        );
        Ok(false)
    }
}
