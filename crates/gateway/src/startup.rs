//! The client side of startup: TLS negotiation, cancel requests, protocol version, target
//! lookup and the token in the password message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_identity::{AuthError, Principal};
use portcullis_wire::backend::{Authentication, negotiate_protocol_version};
use portcullis_wire::frontend::PasswordMessage;
use portcullis_wire::startup::{MAX_STARTUP_PACKET, StartupMessage, StartupPacket};
use portcullis_wire::{FrameReader, Limits, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::cancel::{self, CancelRegistry};
use crate::error::StartupError;
use crate::runtime::{Runtime, Target};
use crate::stream::Stream;

/// A client that completed the startup packet exchange.
pub struct Greeted {
    pub reader: FrameReader<Stream>,
    pub startup: StartupMessage,
    pub tls: bool,
    /// Messages owed to the client before authentication (NegotiateProtocolVersion).
    pub preamble: Vec<Message>,
}

/// The largest password (or SASL) message read: the longest token accepted, with room for
/// the message's own framing (a NUL, a SASL mechanism name and GS2 header).
const MAX_PASSWORD_MESSAGE: usize = portcullis_identity::MAX_TOKEN_BYTES + 256;

/// A Terminate message ('X', length 4) read as the length of a startup packet: what a
/// client sends when it gives up before its startup packet (node-postgres's
/// `connect(); end()`). No startup packet is this long.
const TERMINATE_AS_LENGTH: usize = u32::from_be_bytes(*b"X\0\0\0") as usize;

/// What one startup packet leads to.
enum Step {
    /// Answer 'S' and run the TLS handshake.
    UpgradeTls,
    /// Read the next packet.
    Next,
    /// A cancel request was served; close.
    Done,
    Startup(StartupMessage),
}

/// Reads startup packets until a StartupMessage arrives. Cancel requests are served here
/// and end the connection (`Ok(None)`). Refusals the client can still read are sent as a
/// FATAL ErrorResponse before returning.
pub async fn greet(
    tcp: TcpStream,
    runtime: &Runtime,
    cancels: &CancelRegistry,
    peer: SocketAddr,
) -> Result<Option<Greeted>, StartupError> {
    let timeout = runtime.config.listen.startup_timeout;
    let limits = Limits {
        max_message: MAX_STARTUP_PACKET,
        stream_threshold: usize::MAX,
    };
    let (mut reader, mut tls) = match direct_tls(tcp, runtime, timeout).await? {
        Ok(tls) => (FrameReader::new(tls, limits), true),
        Err(tcp) => (FrameReader::new(Stream::Plain(tcp), limits), false),
    };
    loop {
        match next_step(&mut reader, tls, runtime, cancels, peer).await {
            Ok(Step::Next) => {}
            Ok(Step::Done) => {
                // Closed properly: over TLS, libpq 17's encrypted cancel waits for the
                // close_notify and reports an error without it.
                let _ = with_timeout(timeout, reader.get_mut().shutdown()).await;
                return Ok(None);
            }
            Ok(Step::UpgradeTls) => {
                let Some(acceptor) = &runtime.acceptor else {
                    return Err(StartupError::Closed);
                };
                let (stream, _) = reader.into_parts();
                let Stream::Plain(mut tcp) = stream else {
                    return Err(StartupError::Closed);
                };
                tcp.write_all(b"S").await.map_err(StartupError::Tls)?;
                let tls_stream = with_timeout(timeout, acceptor.accept(tcp))
                    .await?
                    .map_err(StartupError::Tls)?;
                reader = FrameReader::new(Stream::Server(Box::new(tls_stream)), limits);
                tls = true;
            }
            Ok(Step::Startup(startup)) => {
                let unknown: Vec<&str> = startup
                    .params
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .filter(|n| n.starts_with("_pq_."))
                    .collect();
                let mut preamble = Vec::new();
                if startup.version.minor > 0 || !unknown.is_empty() {
                    preamble.push(negotiate_protocol_version(0, &unknown));
                }
                return Ok(Some(Greeted {
                    reader,
                    startup,
                    tls,
                    preamble,
                }));
            }
            Err(e) => {
                if e.can_reply() {
                    let stream = reader.get_mut();
                    let _ = stream
                        .write_all(e.to_response().to_message().as_bytes())
                        .await;
                    let _ = stream.flush().await;
                }
                return Err(e);
            }
        }
    }
}

/// The first byte of a TLS handshake record; a startup packet starts with its length,
/// whose first byte is 0 for any packet the gateway reads.
const TLS_HANDSHAKE: u8 = 0x16;

/// PostgreSQL 17's direct TLS (`sslnegotiation=direct`): the client starts the handshake
/// at once instead of sending SSLRequest, and must offer ALPN `postgresql`. Returns the
/// TLS stream, or the TCP stream untouched for the usual negotiation.
async fn direct_tls(
    tcp: TcpStream,
    runtime: &Runtime,
    timeout: Duration,
) -> Result<Result<Stream, TcpStream>, StartupError> {
    let mut first = [0u8; 1];
    let peeked = with_timeout(timeout, tcp.peek(&mut first)).await?;
    if !matches!(peeked, Ok(1)) || first[0] != TLS_HANDSHAKE {
        return Ok(Err(tcp));
    }
    let Some(acceptor) = &runtime.acceptor else {
        // No certificate: a TLS handshake cannot be answered.
        return Err(StartupError::Closed);
    };
    let tls = with_timeout(timeout, acceptor.accept(tcp))
        .await?
        .map_err(StartupError::Tls)?;
    let alpn = tls.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_POSTGRESQL);
    let mut stream = Stream::Server(Box::new(tls));
    if !alpn {
        let e = StartupError::Wire(portcullis_wire::WireError::Malformed {
            message: "direct TLS",
            reason: "a direct TLS connection must negotiate ALPN \"postgresql\"",
        });
        let _ = stream
            .write_all(e.to_response().to_message().as_bytes())
            .await;
        let _ = stream.shutdown().await;
        return Err(e);
    }
    Ok(Ok(stream))
}

async fn next_step(
    reader: &mut FrameReader<Stream>,
    tls: bool,
    runtime: &Runtime,
    cancels: &CancelRegistry,
    peer: SocketAddr,
) -> Result<Step, StartupError> {
    let timeout = runtime.config.listen.startup_timeout;
    let packet = match with_timeout(timeout, reader.next_startup(MAX_STARTUP_PACKET)).await? {
        Ok(Some(packet)) => packet,
        Ok(None) => return Err(StartupError::Closed),
        // PostgreSQL closes such a connection without a word; so does the gateway.
        Err(portcullis_wire::WireError::TooLarge {
            len: TERMINATE_AS_LENGTH,
            ..
        }) => {
            tracing::debug!(%peer, "client terminated before its startup packet");
            return Ok(Step::Done);
        }
        Err(e) => return Err(e.into()),
    };
    match StartupPacket::decode(&packet)? {
        StartupPacket::SslRequest => {
            if tls {
                return Err(StartupError::Wire(portcullis_wire::WireError::Malformed {
                    message: "SSLRequest",
                    reason: "TLS was already negotiated",
                }));
            }
            if runtime.acceptor.is_none() {
                reader
                    .get_mut()
                    .write_all(b"N")
                    .await
                    .map_err(StartupError::Tls)?;
                return Ok(Step::Next);
            }
            // Bytes sent after SSLRequest but before the handshake would be read as if
            // they had been encrypted (CVE-2021-23214); refuse them.
            if reader.buffered() > 0 {
                return Err(StartupError::Wire(portcullis_wire::WireError::Malformed {
                    message: "SSLRequest",
                    reason: "unencrypted data after SSLRequest",
                }));
            }
            Ok(Step::UpgradeTls)
        }
        StartupPacket::GssEncRequest => {
            reader
                .get_mut()
                .write_all(b"N")
                .await
                .map_err(StartupError::Tls)?;
            Ok(Step::Next)
        }
        StartupPacket::Cancel(key) => {
            match cancels.lookup(&key) {
                Some(entry) => {
                    tracing::info!(pid = key.pid, %peer, "cancel request");
                    // Forwarded, and sent again while needed, without keeping the client's
                    // cancel connection open for it.
                    let pid = key.pid;
                    tokio::spawn(async move {
                        if let Err(e) = cancel::cancel(&entry).await {
                            tracing::warn!(pid, error = %e, "cannot forward cancel request");
                        }
                    });
                }
                None => {
                    tracing::info!(pid = key.pid, %peer, "cancel request with an unknown key ignored")
                }
            }
            Ok(Step::Done)
        }
        StartupPacket::Startup(startup) => {
            if startup.version.major != 3 {
                return Err(StartupError::UnsupportedProtocol(
                    startup.version.to_string(),
                ));
            }
            Ok(Step::Startup(startup))
        }
    }
}

/// Checks what the StartupMessage asks for and finds the target.
pub fn choose_target(greeted: &Greeted, runtime: &Runtime) -> Result<Arc<Target>, StartupError> {
    if runtime.config.listen.require_tls && !greeted.tls {
        return Err(StartupError::TlsRequired);
    }
    let s = &greeted.startup;
    if let Some(r) = s.get("replication")
        && !matches!(
            r.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        )
    {
        return Err(StartupError::Replication);
    }
    // Like the server, an absent database name defaults to the user name.
    let name = s
        .get("database")
        .filter(|d| !d.is_empty())
        .or_else(|| s.get("user"))
        .ok_or(StartupError::NoTarget)?;
    runtime
        .targets
        .get(name)
        .cloned()
        .ok_or_else(|| StartupError::UnknownTarget(name.to_string()))
}

/// How a listener's clients present their token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The token as a cleartext password (over TLS): every libpq version and driver.
    Password,
    /// SASL OAUTHBEARER: libpq 18 runs the device flow itself.
    OAuthBearer,
}

/// Asks for the token, by `method`, and verifies it as of `now` (the clock live sessions
/// check expiry against, so login and session agree on when the token ends).
pub async fn authenticate(
    greeted: &mut Greeted,
    runtime: &Runtime,
    method: AuthMethod,
    now: std::time::SystemTime,
) -> Result<Principal, StartupError> {
    let timeout = runtime.config.listen.startup_timeout;
    let mut out = Vec::new();
    for m in greeted.preamble.drain(..) {
        out.extend_from_slice(m.as_bytes());
    }
    let request = match method {
        AuthMethod::Password => Authentication::CleartextPassword,
        AuthMethod::OAuthBearer => Authentication::Sasl {
            mechanisms: vec![crate::oauth::MECHANISM.into()],
        },
    };
    out.extend_from_slice(request.to_message().as_bytes());
    let stream = greeted.reader.get_mut();
    stream
        .write_all(&out)
        .await
        .map_err(|_| StartupError::Closed)?;
    stream.flush().await.map_err(|_| StartupError::Closed)?;

    greeted.reader.limits_mut().max_message = MAX_PASSWORD_MESSAGE;
    let msg = match with_timeout(timeout, greeted.reader.next_message()).await? {
        Ok(Some(msg)) => msg,
        Ok(None) => return Err(StartupError::Closed),
        // An oversized token is a bad credential, not a broken protocol: say so, and
        // audit it, without reading it.
        Err(portcullis_wire::WireError::TooLarge { len, .. }) => {
            return Err(StartupError::Auth(AuthError::TokenTooLarge {
                len,
                limit: portcullis_identity::MAX_TOKEN_BYTES,
            }));
        }
        Err(e) => return Err(e.into()),
    };
    if msg.tag() != portcullis_wire::frontend::PASSWORD {
        return Err(StartupError::ExpectedPassword);
    }
    if method == AuthMethod::OAuthBearer {
        return oauth_bearer(greeted, runtime, &msg, now).await;
    }
    let password = PasswordMessage::decode(msg)?;
    let token = std::str::from_utf8(password.password()).map_err(|_| {
        StartupError::Auth(AuthError::NotAToken {
            issuer: runtime.verifier.config().issuer.clone(),
        })
    })?;
    Ok(runtime.verifier.verify_at(token, now).await?)
}

/// The rest of an OAUTHBEARER exchange, from the client's first message.
async fn oauth_bearer(
    greeted: &mut Greeted,
    runtime: &Runtime,
    first: &Message,
    now: std::time::SystemTime,
) -> Result<Principal, StartupError> {
    use crate::oauth::{ClientFirst, InitialResponse, challenge, client_first, is_ack};
    let initial = InitialResponse::decode(first)?;
    if initial.mechanism != crate::oauth::MECHANISM {
        return Err(StartupError::OAuth(format!(
            "SASL mechanism \"{}\" is not offered here; this port speaks OAUTHBEARER",
            initial.mechanism
        )));
    }
    let data = initial.data.unwrap_or_default();
    let parsed = client_first(&data).map_err(|e| StartupError::OAuth(e.to_string()))?;
    let verified = match parsed {
        ClientFirst::Bearer(token) => match runtime.verifier.verify_at(token, now).await {
            Ok(p) => return Ok(p),
            Err(e) => Err(StartupError::Auth(e)),
        },
        ClientFirst::Discovery => Err(StartupError::OAuth(
            "no token was sent; libpq 18 now logs in at the issuer and reconnects".into(),
        )),
    };
    // Tell the client where tokens come from; it acknowledges, then the attempt fails.
    let issuer = &runtime.verifier.config().issuer;
    let scope = &runtime.config.identity.oauth_scope;
    let stream = greeted.reader.get_mut();
    stream
        .write_all(
            Authentication::SaslContinue(challenge(issuer, scope))
                .to_message()
                .as_bytes(),
        )
        .await
        .map_err(|_| StartupError::Closed)?;
    stream.flush().await.map_err(|_| StartupError::Closed)?;
    let timeout = runtime.config.listen.startup_timeout;
    let ack = with_timeout(timeout, greeted.reader.next_message())
        .await??
        .ok_or(StartupError::Closed)?;
    if ack.tag() != portcullis_wire::frontend::PASSWORD || !is_ack(ack.body()) {
        return Err(StartupError::OAuth(
            "the client did not acknowledge the OAUTHBEARER error".into(),
        ));
    }
    verified
}

async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = T>,
) -> Result<T, StartupError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| StartupError::Timeout(d))
}
