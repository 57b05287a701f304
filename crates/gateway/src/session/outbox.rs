//! Batched output for one direction of the relay: messages accumulate and go out in one
//! write once the input holds no further complete frame, or when the batch is large.

use bytes::BytesMut;
use portcullis_wire::{FrameReader, Message, StreamError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Write once this much is batched, even if more input is ready.
const BATCH: usize = 64 * 1024;

pub struct Outbox {
    buf: BytesMut,
    /// Bytes written so far, for the session's audit record.
    pub written: u64,
}

impl Outbox {
    pub fn new() -> Self {
        Outbox {
            buf: BytesMut::with_capacity(16 * 1024),
            written: 0,
        }
    }

    pub fn push(&mut self, msg: &Message) {
        self.buf.extend_from_slice(msg.as_bytes());
    }

    pub fn is_full(&self) -> bool {
        self.buf.len() >= BATCH
    }

    /// Writes what is batched and flushes the stream (TLS buffers until flushed).
    pub async fn flush<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            out.write_all(&self.buf).await?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        out.flush().await
    }

    /// Passes a large frame through in chunks, after everything batched before it.
    pub async fn stream<R, W>(
        &mut self,
        reader: &mut FrameReader<R>,
        header: [u8; 5],
        remaining: usize,
        out: &mut W,
    ) -> Result<(), StreamError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        self.flush(out).await.map_err(StreamError::Write)?;
        out.write_all(&header).await.map_err(StreamError::Write)?;
        self.written += (header.len() + remaining) as u64;
        reader.stream_to(remaining, out).await
    }
}
