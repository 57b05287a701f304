//! Startup-phase packets: SSLRequest, GSSENCRequest, CancelRequest and StartupMessage.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Reader, WireError, put_cstr};

/// Largest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;

/// Protocol 3.0, the version the gateway speaks on both legs.
pub const PROTOCOL_3_0: ProtocolVersion = ProtocolVersion { major: 3, minor: 0 };

/// A protocol version as sent in StartupMessage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl ProtocolVersion {
    fn from_code(code: i32) -> Self {
        ProtocolVersion {
            major: (code >> 16) as u16,
            minor: (code & 0xffff) as u16,
        }
    }

    fn code(self) -> i32 {
        ((self.major as i32) << 16) | self.minor as i32
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The cancel key a client presents: the process id and secret from BackendKeyData.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CancelKey {
    pub pid: i32,
    /// Four bytes in protocol 3.0; up to 256 in 3.2.
    pub secret: Bytes,
}

/// Any packet a client may send before the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel(CancelKey),
    Startup(StartupMessage),
}

/// StartupMessage: the requested protocol version and the connection parameters, in order.
#[derive(Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub version: ProtocolVersion,
    /// Parameter names and raw values (values are bytes in the client's encoding).
    pub params: Vec<(String, Bytes)>,
}

impl StartupPacket {
    /// Decodes a packet body as returned by [`crate::FrameReader::next_startup`].
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "startup");
        let code = r.i32()?;
        match code {
            SSL_REQUEST => {
                r.finish()?;
                Ok(StartupPacket::SslRequest)
            }
            GSSENC_REQUEST => {
                r.finish()?;
                Ok(StartupPacket::GssEncRequest)
            }
            CANCEL_REQUEST => {
                let pid = r.i32()?;
                let secret = r.rest();
                if secret.len() < 4 || secret.len() > 256 {
                    return Err(WireError::malformed(
                        "CancelRequest",
                        "cancel key has an invalid length",
                    ));
                }
                Ok(StartupPacket::Cancel(CancelKey {
                    pid,
                    secret: Bytes::copy_from_slice(secret),
                }))
            }
            _ => {
                let version = ProtocolVersion::from_code(code);
                let mut params = Vec::new();
                loop {
                    let name = r.cstr()?;
                    if name.is_empty() {
                        break;
                    }
                    let name = std::str::from_utf8(name).map_err(|_| {
                        WireError::malformed("StartupMessage", "parameter name is not UTF-8")
                    })?;
                    let value = r.cstr()?;
                    params.push((name.to_owned(), Bytes::copy_from_slice(value)));
                }
                r.finish()?;
                Ok(StartupPacket::Startup(StartupMessage { version, params }))
            }
        }
    }
}

impl StartupMessage {
    /// The value of a parameter, if present and valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Encodes a StartupMessage with the given version and parameters.
    pub fn encode(version: ProtocolVersion, params: &[(&str, &[u8])]) -> Bytes {
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        buf.put_i32(version.code());
        for (name, value) in params {
            put_cstr(&mut buf, name.as_bytes());
            put_cstr(&mut buf, value);
        }
        buf.put_u8(0);
        let len = buf.len() as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf.freeze()
    }
}

impl std::fmt::Debug for StartupMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("StartupMessage")
            .field("version", &self.version)
            .field("params", &names)
            .finish()
    }
}

/// Encodes SSLRequest.
pub fn ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8i32.to_be_bytes());
    out[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    out
}

/// Encodes CancelRequest for `key`.
pub fn cancel_request(key: &CancelKey) -> Bytes {
    let mut buf = BytesMut::with_capacity(12 + key.secret.len());
    buf.put_i32((12 + key.secret.len()) as i32);
    buf.put_i32(CANCEL_REQUEST);
    buf.put_i32(key.pid);
    buf.put_slice(&key.secret);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(packet: &[u8]) -> &[u8] {
        &packet[4..]
    }

    #[test]
    fn startup_round_trip() {
        let wire = StartupMessage::encode(
            PROTOCOL_3_0,
            &[
                ("user", b"alice"),
                ("database", b"analytics"),
                ("application_name", b"psql"),
            ],
        );
        let StartupPacket::Startup(m) = StartupPacket::decode(body(&wire)).unwrap() else {
            panic!("not a startup message");
        };
        assert_eq!(m.version, PROTOCOL_3_0);
        assert_eq!(m.get("database"), Some("analytics"));
        assert_eq!(m.params.len(), 3);
    }

    #[test]
    fn special_requests() {
        assert_eq!(
            StartupPacket::decode(body(&ssl_request())).unwrap(),
            StartupPacket::SslRequest
        );
        let key = CancelKey {
            pid: 4242,
            secret: Bytes::from_static(&[1, 2, 3, 4]),
        };
        assert_eq!(
            StartupPacket::decode(body(&cancel_request(&key))).unwrap(),
            StartupPacket::Cancel(key)
        );
        let mut gss = 80877104i32.to_be_bytes().to_vec();
        assert_eq!(
            StartupPacket::decode(&gss).unwrap(),
            StartupPacket::GssEncRequest
        );
        gss.push(0);
        assert!(StartupPacket::decode(&gss).is_err());
    }

    #[test]
    fn hostile_startup_packets() {
        // Missing terminator, truncated code, short cancel key, name without value.
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0, 3],
            [196608i32.to_be_bytes().as_slice(), b"user\0alice"].concat(),
            [196608i32.to_be_bytes().as_slice(), b"user"].concat(),
            [80877102i32.to_be_bytes().as_slice(), &[0, 0, 0, 1, 9]].concat(),
            [196608i32.to_be_bytes().as_slice(), b"\xff\0x\0\0"].concat(),
        ];
        for case in cases {
            assert!(StartupPacket::decode(&case).is_err(), "{case:?} decoded");
        }
    }
}
