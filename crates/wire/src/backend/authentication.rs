//! Authentication requests: Ok, cleartext, MD5 and the SASL exchange.

use bytes::{BufMut, Bytes};

use crate::{Message, Reader, WireError, put_cstr};

use super::AUTHENTICATION;

/// An Authentication message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<String>,
    },
    SaslContinue(Bytes),
    SaslFinal(Bytes),
    /// Kerberos, SSPI, GSS and others the gateway does not implement.
    Unsupported(i32),
}

impl Authentication {
    pub fn decode(msg: &Message) -> Result<Self, WireError> {
        if msg.tag() != AUTHENTICATION {
            return Err(WireError::UnexpectedTag(msg.tag() as char));
        }
        let mut r = Reader::new(msg.body(), "Authentication");
        let kind = r.i32()?;
        let out = match kind {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.bytes(4)?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr_utf8()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m.to_owned());
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue(Bytes::copy_from_slice(r.rest())),
            12 => Authentication::SaslFinal(Bytes::copy_from_slice(r.rest())),
            other => {
                r.rest();
                Authentication::Unsupported(other)
            }
        };
        r.finish()?;
        Ok(out)
    }

    /// Encodes the variants the gateway sends to clients.
    pub fn to_message(&self) -> Message {
        Message::build(AUTHENTICATION, |b| match self {
            Authentication::Ok => b.put_i32(0),
            Authentication::CleartextPassword => b.put_i32(3),
            Authentication::Md5Password { salt } => {
                b.put_i32(5);
                b.put_slice(salt);
            }
            Authentication::Sasl { mechanisms } => {
                b.put_i32(10);
                for m in mechanisms {
                    put_cstr(b, m.as_bytes());
                }
                b.put_u8(0);
            }
            Authentication::SaslContinue(data) => {
                b.put_i32(11);
                b.put_slice(data);
            }
            Authentication::SaslFinal(data) => {
                b.put_i32(12);
                b.put_slice(data);
            }
            Authentication::Unsupported(code) => b.put_i32(*code),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for a in [
            Authentication::Ok,
            Authentication::CleartextPassword,
            Authentication::Md5Password { salt: [1, 2, 3, 4] },
            Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
            },
            Authentication::SaslContinue(Bytes::from_static(b"r=abc")),
            Authentication::SaslFinal(Bytes::from_static(b"v=xyz")),
        ] {
            assert_eq!(Authentication::decode(&a.to_message()).unwrap(), a);
        }
        assert!(Authentication::decode(&Message::new(AUTHENTICATION, &[0, 0, 0, 5, 1])).is_err());
        assert!(Authentication::decode(&Message::new(AUTHENTICATION, &[0, 0, 0, 0, 1])).is_err());
    }
}
