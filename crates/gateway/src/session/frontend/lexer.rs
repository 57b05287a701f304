//! The lexer settings the server will read a statement's text with: as last reported,
//! or, when something sent since may have changed them, asked of the server itself.

use portcullis_sql::{ClientEncoding, LexerOptions};
use portcullis_wire::backend::TransactionStatus;
use portcullis_wire::frontend::{self, Bind, Close, Execute, Parse, Target};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::{Frontend, FrontendError};
use crate::session::queue::Expect;

/// The gateway's own query of the settings the server's lexer reads.
const LEXER_SETTINGS_SQL: &[u8] = b"SELECT pg_catalog.current_setting('client_encoding'), pg_catalog.current_setting('standard_conforming_strings')";

/// The server after a barrier: its transaction status, and whether it is discarding
/// messages until Sync (so that it will not parse the next one).
pub(super) struct CaughtUp {
    pub status: TransactionStatus,
    pub skipping: bool,
}

impl Frontend<'_> {
    /// Asks the server to send what it has buffered, and waits until every earlier answer
    /// has been read: afterwards the transaction status is the server's current one.
    pub(super) async fn catch_up<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<CaughtUp, FrontendError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.queue.send(Expect::Barrier(Some(tx)));
        self.push(&frontend::flush());
        self.flush(upstream).await?;
        let skipping = rx.await.map_err(|_| FrontendError::Ended)?;
        Ok(CaughtUp {
            status: self.shared.transaction(),
            skipping,
        })
    }

    /// The client encoding and lexer options the server will read `bytes` with, when it
    /// parses the message being decided. The settings the server last reported hold
    /// unless something sent since may have changed them (`settled`); text that reads the
    /// same under every setting (ASCII without a backslash) needs no more. Otherwise the
    /// gateway waits for the server to catch up, and when that leaves it mid-pipeline
    /// (the settings are reported only before ReadyForQuery) it asks the server, with a
    /// query of its own sent just before the client's message.
    pub(super) async fn server_lexer<W: AsyncWrite + Unpin>(
        &mut self,
        bytes: &[u8],
        upstream: &mut W,
    ) -> Result<(ClientEncoding, LexerOptions), FrontendError> {
        let reported = (self.shared.encoding(), self.shared.lexer());
        let depends = !bytes.is_ascii() || bytes.contains(&b'\\');
        if !depends || self.settled.known(&self.shared.readies) {
            return Ok(reported);
        }
        let caught = self.catch_up(upstream).await?;
        if caught.skipping || self.settled.known(&self.shared.readies) {
            // Skipping: the server discards the message unparsed, whatever it says.
            return Ok((self.shared.encoding(), self.shared.lexer()));
        }
        self.lexer_queries += 1;
        let name = format!("portcullis_lexer_{}", self.lexer_queries);
        let (tx, rx) = oneshot::channel();
        // Sent without `settled` noting them: they change nothing.
        for (expect, msg) in [
            (
                Expect::Quiet,
                Parse::new(&name, LEXER_SETTINGS_SQL, &[]).message().clone(),
            ),
            (Expect::Quiet, Bind::new(&name, &name).message().clone()),
            (
                Expect::Settings {
                    row: None,
                    reply: Some(tx),
                },
                Execute::new(&name, 0).message().clone(),
            ),
            (
                Expect::Quiet,
                Close::new(Target::Portal, &name).message().clone(),
            ),
            (
                Expect::Quiet,
                Close::new(Target::Statement, &name).message().clone(),
            ),
        ] {
            let _ = self.queue.send(expect);
            self.out.push(&msg);
        }
        self.out.push(&frontend::flush());
        self.flush(upstream).await?;
        Ok(match rx.await {
            Ok((encoding, scs)) => (
                ClientEncoding::from_name(&encoding),
                LexerOptions {
                    standard_conforming_strings: scs.eq_ignore_ascii_case("on"),
                },
            ),
            // The query failed: the error went to the client and the server now discards
            // everything until Sync, this message included.
            Err(_) => reported,
        })
    }
}
