//! Splitting a byte stream into frames, with size limits and streaming of large opaque messages.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Message, WireError};

/// Size limits applied while framing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message body that is buffered whole; larger ones are refused unless streamable.
    pub max_message: usize,
    /// Streamable messages whose body is larger than this are passed through in chunks.
    pub stream_threshold: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // PostgreSQL's own ceiling for a single message (MaxAllocSize).
            max_message: 1024 * 1024 * 1024 - 1,
            stream_threshold: 1024 * 1024,
        }
    }
}

/// What [`FrameReader`] produced.
#[derive(Debug)]
pub enum Frame {
    /// A whole message, buffered.
    Message(Message),
    /// A large message the caller asked to stream: its 5-byte header has been consumed and
    /// `remaining` body bytes follow; pass them on with [`FrameReader::stream_to`].
    Stream { header: [u8; 5], remaining: usize },
}

/// Which side failed while a streamed frame was passed through.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Read(WireError),
    #[error("write failed: {0}")]
    Write(std::io::Error),
}

/// Largest read-ahead reservation made at once, so a peer announcing a huge message cannot
/// make the gateway allocate memory it never sends.
const MAX_RESERVE: usize = 4 * 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// Reads frames from one direction of a connection.
///
/// Bytes are read into one buffer and split off without copying. [`try_next`](Self::try_next)
/// never does I/O, so a relay can drain every complete frame, write them in one batch, and
/// only then wait for more input.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    limits: Limits,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R, limits: Limits) -> Self {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            limits,
        }
    }

    /// Wraps `io` with bytes that were already read from it.
    pub fn with_buffer(io: R, limits: Limits, buf: BytesMut) -> Self {
        FrameReader { io, buf, limits }
    }

    pub fn limits_mut(&mut self) -> &mut Limits {
        &mut self.limits
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// Gives back the stream and any bytes read ahead of the last frame.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buf)
    }

    /// Number of bytes read but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next tagged frame if it is complete in the buffer; never does I/O.
    ///
    /// `streamable(tag)` says whether a message of that type may be streamed rather than
    /// buffered when it is large.
    pub fn try_next(
        &mut self,
        streamable: impl Fn(u8) -> bool,
    ) -> Result<Option<Frame>, WireError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len < 4 {
            return Err(WireError::InvalidLength(len as i64));
        }
        let body = len as usize - 4;
        if body > self.limits.stream_threshold && streamable(tag) {
            let mut header = [0u8; 5];
            header.copy_from_slice(&self.buf[..5]);
            self.buf.advance(5);
            return Ok(Some(Frame::Stream {
                header,
                remaining: body,
            }));
        }
        if body > self.limits.max_message {
            return Err(WireError::TooLarge {
                len: body,
                limit: self.limits.max_message,
            });
        }
        let total = 5 + body;
        if self.buf.len() < total {
            self.buf
                .reserve((total - self.buf.len()).clamp(READ_CHUNK, MAX_RESERVE));
            return Ok(None);
        }
        Ok(Some(Frame::Message(Message::from_frame(
            self.buf.split_to(total).freeze(),
        ))))
    }

    /// Reads more bytes into the buffer. Returns `false` at end of stream when no partial
    /// frame is pending, and [`WireError::UnexpectedEof`] when one is.
    pub async fn fill(&mut self) -> Result<bool, WireError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        let n = self.io.read_buf(&mut self.buf).await?;
        if n == 0 {
            return if self.buf.is_empty() {
                Ok(false)
            } else {
                Err(WireError::UnexpectedEof)
            };
        }
        Ok(true)
    }

    /// The next tagged frame, reading as needed; `None` at a clean end of stream.
    pub async fn next(
        &mut self,
        streamable: impl Fn(u8) -> bool + Copy,
    ) -> Result<Option<Frame>, WireError> {
        loop {
            if let Some(frame) = self.try_next(streamable)? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next whole message, never streamed; `None` at a clean end of stream.
    pub async fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        match self.next(|_| false).await? {
            Some(Frame::Message(m)) => Ok(Some(m)),
            // The predicate above never asks for streaming.
            Some(Frame::Stream { .. }) => {
                Err(WireError::malformed("message", "unexpected streamed frame"))
            }
            None => Ok(None),
        }
    }

    /// Copies `n` body bytes of a streamed frame to `out`, first from the buffer, then from the
    /// stream, in chunks, without holding more than one chunk.
    pub async fn stream_to<W: AsyncWrite + Unpin>(
        &mut self,
        mut n: usize,
        out: &mut W,
    ) -> Result<(), StreamError> {
        while n > 0 {
            if self.buf.is_empty() && !self.fill().await.map_err(StreamError::Read)? {
                return Err(StreamError::Read(WireError::UnexpectedEof));
            }
            let take = n.min(self.buf.len());
            out.write_all(&self.buf[..take])
                .await
                .map_err(StreamError::Write)?;
            self.buf.advance(take);
            n -= take;
        }
        Ok(())
    }

    /// Reads one untagged startup-phase packet (length, then body) of at most `max` bytes.
    /// `None` at a clean end of stream.
    pub async fn next_startup(&mut self, max: usize) -> Result<Option<bytes::Bytes>, WireError> {
        loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len < 8 {
                    return Err(WireError::InvalidLength(len as i64));
                }
                let len = len as usize;
                if len > max {
                    return Err(WireError::TooLarge { len, limit: max });
                }
                if self.buf.len() >= len {
                    let mut packet = self.buf.split_to(len);
                    packet.advance(4);
                    return Ok(Some(packet.freeze()));
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        Message::new(tag, body).as_bytes().to_vec()
    }

    #[tokio::test]
    async fn splits_frames_across_reads() {
        let mut wire = frame(b'Q', b"select 1\0");
        wire.extend(frame(b'S', b""));
        let (client, mut server) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            server.write_all(&wire).await.unwrap();
        });
        let mut reader = FrameReader::new(client, Limits::default());
        let a = reader.next_message().await.unwrap().unwrap();
        let b = reader.next_message().await.unwrap().unwrap();
        assert_eq!((a.tag(), a.body()), (b'Q', &b"select 1\0"[..]));
        assert_eq!((b.tag(), b.body()), (b'S', &b""[..]));
        assert!(reader.next_message().await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[test]
    fn rejects_lengths_below_four() {
        for len in [-1i32, 0, 3, i32::MIN] {
            let mut bytes = vec![b'Q'];
            bytes.extend(len.to_be_bytes());
            let mut r = FrameReader::new(tokio::io::empty(), Limits::default());
            r.buf.extend_from_slice(&bytes);
            assert!(matches!(
                r.try_next(|_| false),
                Err(WireError::InvalidLength(_))
            ));
        }
    }

    #[test]
    fn refuses_oversized_buffered_message() {
        let limits = Limits {
            max_message: 100,
            stream_threshold: 50,
        };
        let mut r = FrameReader::new(tokio::io::empty(), limits);
        r.buf.extend_from_slice(&[b'Q', 0, 0, 1, 0]);
        assert!(matches!(
            r.try_next(|_| false),
            Err(WireError::TooLarge {
                len: 252,
                limit: 100
            })
        ));
    }

    #[tokio::test]
    async fn streams_large_messages_in_chunks() {
        let body = vec![7u8; 300_000];
        let mut wire = frame(b'D', &body);
        wire.extend(frame(b'C', b"SELECT 1\0"));
        let limits = Limits {
            max_message: 1000,
            stream_threshold: 1000,
        };
        let mut r = FrameReader::new(&wire[..], limits);
        let Some(Frame::Stream { header, remaining }) = r.next(|t| t == b'D').await.unwrap() else {
            panic!("expected a streamed frame");
        };
        assert_eq!(header[0], b'D');
        let mut out = Vec::new();
        r.stream_to(remaining, &mut out).await.unwrap();
        assert_eq!(out, body);
        let next = r.next_message().await.unwrap().unwrap();
        assert_eq!(next.tag(), b'C');
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error() {
        let wire = &frame(b'Q', b"select 1\0")[..7];
        let mut r = FrameReader::new(wire, Limits::default());
        assert!(matches!(
            r.next_message().await,
            Err(WireError::UnexpectedEof)
        ));
    }

    #[tokio::test]
    async fn startup_packet_limits() {
        let mut wire = 8i32.to_be_bytes().to_vec();
        wire.extend(80877103i32.to_be_bytes());
        let mut r = FrameReader::new(&wire[..], Limits::default());
        let p = r.next_startup(10_000).await.unwrap().unwrap();
        assert_eq!(&p[..], &80877103i32.to_be_bytes());
        let huge = 1_000_000i32.to_be_bytes();
        let mut r = FrameReader::new(&huge[..], Limits::default());
        assert!(matches!(
            r.next_startup(10_000).await,
            Err(WireError::TooLarge { .. })
        ));
    }
}
