//! A hand-driven protocol client for what drivers never send: pipelines shaped on purpose,
//! garbage, oversized messages, silence, and exact message sequences to assert on.

use bytes::Bytes;
use portcullis_wire::backend::{self, BackendKeyData, ErrorResponse};
use portcullis_wire::startup::{PROTOCOL_3_0, ProtocolVersion, StartupMessage};
use portcullis_wire::{FrameReader, Limits, Message, put_cstr};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A plain-TCP protocol client.
pub struct RawClient {
    reader: FrameReader<TcpStream>,
}

/// What a successful login returned.
#[derive(Debug)]
pub struct Login {
    pub key: BackendKeyData,
    pub parameters: Vec<(String, String)>,
    pub before_auth: Vec<Message>,
}

impl RawClient {
    pub async fn connect(port: u16) -> RawClient {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the gateway");
        RawClient {
            reader: FrameReader::new(tcp, Limits::default()),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(bytes).await?;
        s.flush().await
    }

    pub async fn send(&mut self, msgs: &[Message]) {
        let mut buf = Vec::new();
        for m in msgs {
            buf.extend_from_slice(m.as_bytes());
        }
        self.send_raw(&buf).await.expect("send");
    }

    /// Closes the writing side of the connection (the gateway reads EOF) and keeps reading.
    pub async fn shutdown_write(&mut self) {
        let _ = self.reader.get_mut().shutdown().await;
    }

    /// Every message until the gateway closes the connection.
    pub async fn until_closed(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            out.push(m);
        }
        out
    }

    /// The next message, or `None` when the gateway closed the connection.
    pub async fn recv(&mut self) -> Option<Message> {
        self.reader.next_message().await.ok().flatten()
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            let done = m.tag() == backend::READY_FOR_QUERY;
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// Sends a StartupMessage with `params` in protocol `version`.
    pub async fn send_startup(&mut self, version: ProtocolVersion, params: &[(&str, &str)]) {
        let params: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        let packet = StartupMessage::encode(version, &params);
        self.send_raw(&packet).await.expect("send startup");
    }

    /// Logs in to `db` with `token`; returns the login or the FATAL error.
    pub async fn login(&mut self, db: &str, token: &str) -> Result<Login, ErrorResponse> {
        self.login_with(PROTOCOL_3_0, &[("user", "raw"), ("database", db)], token)
            .await
    }

    pub async fn login_with(
        &mut self,
        version: ProtocolVersion,
        params: &[(&str, &str)],
        token: &str,
    ) -> Result<Login, ErrorResponse> {
        self.send_startup(version, params).await;
        let mut before_auth = Vec::new();
        let mut parameters = Vec::new();
        let mut key = None;
        loop {
            let m = self.recv().await.expect("gateway closed during login");
            match m.tag() {
                backend::ERROR_RESPONSE => return Err(ErrorResponse::decode(&m).expect("error")),
                backend::NEGOTIATE_PROTOCOL_VERSION => before_auth.push(m),
                backend::AUTHENTICATION => match m.body()[..4] {
                    [0, 0, 0, 3] => {
                        let p = Message::build(b'p', |b| put_cstr(b, token.as_bytes()));
                        self.send(&[p]).await;
                    }
                    [0, 0, 0, 0] => {}
                    _ => panic!("unexpected authentication request {m:?}"),
                },
                backend::PARAMETER_STATUS => {
                    let p = backend::ParameterStatus::decode(&m).expect("parameter");
                    parameters.push((p.name, p.value));
                }
                backend::BACKEND_KEY_DATA => key = Some(BackendKeyData::decode(&m).expect("key")),
                backend::READY_FOR_QUERY => {
                    return Ok(Login {
                        key: key.expect("BackendKeyData before ReadyForQuery"),
                        parameters,
                        before_auth,
                    });
                }
                _ => {}
            }
        }
    }
}

/// Tags of `msgs` as characters, for compact assertions.
pub fn tags(msgs: &[Message]) -> String {
    msgs.iter().map(|m| m.tag() as char).collect()
}

/// The ErrorResponses among `msgs`.
pub fn errors(msgs: &[Message]) -> Vec<ErrorResponse> {
    msgs.iter()
        .filter(|m| m.tag() == backend::ERROR_RESPONSE)
        .map(|m| ErrorResponse::decode(m).expect("error"))
        .collect()
}

/// The transaction status of the last ReadyForQuery in `msgs`.
pub fn status(msgs: &[Message]) -> char {
    let last = msgs.last().expect("messages");
    assert_eq!(
        last.tag(),
        backend::READY_FOR_QUERY,
        "last message is not ReadyForQuery"
    );
    last.body()[0] as char
}

/// An empty-bodied message such as Sync or Flush.
pub fn bare(tag: u8) -> Message {
    Message::new(tag, b"")
}

/// A Bind with text parameters and no result formats.
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Message {
    Message::build(b'B', |b| {
        use bytes::BufMut;
        put_cstr(b, portal.as_bytes());
        put_cstr(b, statement.as_bytes());
        b.put_i16(0);
        b.put_i16(params.len() as i16);
        for p in params {
            match p {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v.as_bytes());
                }
            }
        }
        b.put_i16(0);
    })
}

/// An Execute of `portal` with a row limit (0: all).
pub fn execute(portal: &str, max_rows: i32) -> Message {
    Message::build(b'E', |b| {
        use bytes::BufMut;
        put_cstr(b, portal.as_bytes());
        b.put_i32(max_rows);
    })
}

/// A Describe of a portal.
pub fn describe_portal(portal: &str) -> Message {
    Message::build(b'D', |b| {
        use bytes::BufMut;
        b.put_u8(b'P');
        put_cstr(b, portal.as_bytes());
    })
}

/// Values of the DataRows in `msgs`, as text.
pub fn rows(msgs: &[Message]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.tag() == backend::DATA_ROW)
        .map(|m| {
            backend::DataRow::decode(m.clone())
                .expect("row")
                .values()
                .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect()
        })
        .collect()
}

pub use bytes;

/// The raw bytes of a frame with an arbitrary tag and claimed length.
pub fn frame_header(tag: u8, claimed_len: i32) -> Bytes {
    let mut v = vec![tag];
    v.extend_from_slice(&claimed_len.to_be_bytes());
    Bytes::from(v)
}
