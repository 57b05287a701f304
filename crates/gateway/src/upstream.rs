//! Logging in to a target with held credentials: TCP, optional TLS, StartupMessage, then
//! SCRAM-SHA-256 (with channel binding over TLS), MD5, cleartext or trust.

use std::collections::HashMap;

use bytes::BufMut;
use portcullis_wire::backend::{
    self, Authentication, BackendKeyData, ErrorResponse, ParameterStatus,
};
use portcullis_wire::startup::{self, PROTOCOL_3_0, StartupMessage};
use portcullis_wire::{FrameReader, Limits, Message, put_cstr};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::runtime::{Role, Target};
use crate::stream::Stream;
use crate::tls;

/// Why the gateway could not log in to a target. Messages name the target, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach target \"{target}\" at {address}: {reason}")]
    Unreachable {
        target: String,
        address: String,
        reason: String,
    },
    #[error("timed out logging in to target \"{target}\" at {address}")]
    Timeout { target: String, address: String },
    #[error(
        "target \"{target}\" does not accept TLS connections, but its configuration requires TLS"
    )]
    TlsRefused { target: String },
    #[error("TLS with target \"{target}\" failed: {reason}")]
    Tls { target: String, reason: String },
    #[error("target \"{target}\" refused the gateway's login as role \"{role}\": {message}")]
    Refused {
        target: String,
        role: String,
        message: String,
    },
    #[error("target \"{target}\": {message}")]
    Server {
        target: String,
        code: String,
        message: String,
    },
    #[error(
        "target \"{target}\" asks for an authentication method the gateway does not support ({method})"
    )]
    UnsupportedAuth { target: String, method: String },
    #[error("target \"{target}\" broke the protocol during login: {reason}")]
    Protocol { target: String, reason: String },
}

impl UpstreamError {
    pub fn sqlstate(&self) -> &str {
        match self {
            UpstreamError::Unreachable { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::TlsRefused { .. }
            | UpstreamError::Tls { .. } => "08001",
            UpstreamError::Refused { .. } | UpstreamError::UnsupportedAuth { .. } => "08006",
            UpstreamError::Server { code, .. } => code,
            UpstreamError::Protocol { .. } => "08P01",
        }
    }
}

/// A logged-in upstream connection, with what the server said during startup.
pub struct Upstream {
    pub reader: FrameReader<Stream>,
    /// ParameterStatus and NoticeResponse messages to replay to the client, in order.
    pub startup_messages: Vec<Message>,
    pub parameters: HashMap<String, String>,
    pub key: BackendKeyData,
    pub ready: Message,
    /// The authentication method the server asked for and got.
    pub auth: &'static str,
}

/// Startup parameters the gateway sets itself rather than forwarding.
fn is_reserved(name: &str) -> bool {
    matches!(name, "user" | "database" | "replication") || name.starts_with("_pq_.")
}

/// Connects and logs in as `role`, forwarding the client's other startup parameters.
pub async fn connect(
    target: &Target,
    role: &Role,
    client: &StartupMessage,
    limits: Limits,
) -> Result<Upstream, UpstreamError> {
    let address = target.address();
    match tokio::time::timeout(target.connect_timeout, login(target, role, client, limits)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout {
            target: target.name.clone(),
            address,
        }),
    }
}

async fn login(
    target: &Target,
    role: &Role,
    client: &StartupMessage,
    limits: Limits,
) -> Result<Upstream, UpstreamError> {
    let name = || target.name.clone();
    let protocol = |reason: String| UpstreamError::Protocol {
        target: target.name.clone(),
        reason,
    };
    let mut tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| UpstreamError::Unreachable {
            target: name(),
            address: target.address(),
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);

    let (stream, end_point) = match &target.connector {
        None => (Stream::Plain(tcp), None),
        Some(connector) => {
            let io_err = |e: std::io::Error| UpstreamError::Tls {
                target: name(),
                reason: e.to_string(),
            };
            tcp.write_all(&startup::ssl_request())
                .await
                .map_err(io_err)?;
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer).await.map_err(io_err)?;
            match answer[0] {
                b'S' => {}
                b'N' => return Err(UpstreamError::TlsRefused { target: name() }),
                other => {
                    return Err(protocol(format!(
                        "unexpected answer {other:#x} to SSLRequest"
                    )));
                }
            }
            let tls = connector
                .connect(target.server_name.clone(), tcp)
                .await
                .map_err(io_err)?;
            let end_point = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| tls::server_end_point_hash(c));
            (Stream::Client(Box::new(tls)), end_point)
        }
    };
    let tls_on = stream.is_tls();
    let mut reader = FrameReader::new(stream, limits);

    let mut params: Vec<(&str, &[u8])> = vec![
        ("user", role.name.as_bytes()),
        ("database", target.database.as_bytes()),
    ];
    params.extend(
        client
            .params
            .iter()
            .filter(|(n, _)| !is_reserved(n))
            .map(|(n, v)| (n.as_str(), v.as_ref())),
    );
    let packet = StartupMessage::encode(PROTOCOL_3_0, &params);
    write(&mut reader, &packet)
        .await
        .map_err(|e| protocol(e.to_string()))?;

    let mut scram: Option<ScramSha256> = None;
    let mut auth_method = "trust";
    loop {
        let msg = next(&mut reader, target).await?;
        match msg.tag() {
            backend::AUTHENTICATION => {}
            backend::ERROR_RESPONSE => return Err(startup_error(&msg, target, role)),
            backend::NEGOTIATE_PROTOCOL_VERSION => continue,
            other => {
                return Err(protocol(format!(
                    "unexpected {} during authentication",
                    backend::name(other)
                )));
            }
        }
        let auth = Authentication::decode(&msg).map_err(|e| protocol(e.to_string()))?;
        let secret = role.secret.expose().as_bytes();
        match auth {
            Authentication::Ok => break,
            Authentication::CleartextPassword => {
                auth_method = "password";
                let m = Message::build(b'p', |b| put_cstr(b, secret));
                write(&mut reader, m.as_bytes())
                    .await
                    .map_err(|e| protocol(e.to_string()))?;
            }
            Authentication::Md5Password { salt } => {
                auth_method = "md5";
                let hash =
                    postgres_protocol::authentication::md5_hash(role.name.as_bytes(), secret, salt);
                let m = Message::build(b'p', |b| put_cstr(b, hash.as_bytes()));
                write(&mut reader, m.as_bytes())
                    .await
                    .map_err(|e| protocol(e.to_string()))?;
            }
            Authentication::Sasl { mechanisms } => {
                let plus = mechanisms.iter().any(|m| m == "SCRAM-SHA-256-PLUS");
                let plain = mechanisms.iter().any(|m| m == "SCRAM-SHA-256");
                let (mechanism, binding) = match (&end_point, plus, plain) {
                    (Some(hash), true, _) => (
                        "SCRAM-SHA-256-PLUS",
                        ChannelBinding::tls_server_end_point(hash.clone()),
                    ),
                    (_, _, true) if tls_on && end_point.is_some() => {
                        ("SCRAM-SHA-256", ChannelBinding::unrequested())
                    }
                    (_, _, true) => ("SCRAM-SHA-256", ChannelBinding::unsupported()),
                    _ => {
                        return Err(UpstreamError::UnsupportedAuth {
                            target: name(),
                            method: mechanisms.join(", "),
                        });
                    }
                };
                auth_method = mechanism;
                let s = ScramSha256::new(secret, binding);
                let m = Message::build(b'p', |b| {
                    put_cstr(b, mechanism.as_bytes());
                    b.put_i32(s.message().len() as i32);
                    b.put_slice(s.message());
                });
                write(&mut reader, m.as_bytes())
                    .await
                    .map_err(|e| protocol(e.to_string()))?;
                scram = Some(s);
            }
            Authentication::SaslContinue(data) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| protocol("SASL continue without SASL start".into()))?;
                s.update(&data)
                    .map_err(|e| refused(target, role, &format!("SCRAM exchange failed: {e}")))?;
                let m = Message::new(b'p', s.message());
                write(&mut reader, m.as_bytes())
                    .await
                    .map_err(|e| protocol(e.to_string()))?;
            }
            Authentication::SaslFinal(data) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| protocol("SASL final without SASL start".into()))?;
                s.finish(&data).map_err(|e| {
                    refused(
                        target,
                        role,
                        &format!("server signature did not verify: {e}"),
                    )
                })?;
            }
            Authentication::Unsupported(code) => {
                return Err(UpstreamError::UnsupportedAuth {
                    target: name(),
                    method: auth_method_name(code).into(),
                });
            }
        }
    }

    let mut startup_messages = Vec::new();
    let mut parameters = HashMap::new();
    let mut key = None;
    loop {
        let msg = next(&mut reader, target).await?;
        match msg.tag() {
            backend::PARAMETER_STATUS => {
                let p = ParameterStatus::decode(&msg).map_err(|e| protocol(e.to_string()))?;
                parameters.insert(p.name, p.value);
                startup_messages.push(msg);
            }
            backend::NOTICE_RESPONSE => startup_messages.push(msg),
            backend::BACKEND_KEY_DATA => {
                key = Some(BackendKeyData::decode(&msg).map_err(|e| protocol(e.to_string()))?);
            }
            backend::READY_FOR_QUERY => {
                let key =
                    key.ok_or_else(|| protocol("no BackendKeyData before ReadyForQuery".into()))?;
                return Ok(Upstream {
                    reader,
                    startup_messages,
                    parameters,
                    key,
                    ready: msg,
                    auth: auth_method,
                });
            }
            backend::ERROR_RESPONSE => return Err(startup_error(&msg, target, role)),
            other => {
                return Err(protocol(format!(
                    "unexpected {} after authentication",
                    backend::name(other)
                )));
            }
        }
    }
}

fn refused(target: &Target, role: &Role, message: &str) -> UpstreamError {
    UpstreamError::Refused {
        target: target.name.clone(),
        role: role.name.clone(),
        message: message.to_string(),
    }
}

fn startup_error(msg: &Message, target: &Target, role: &Role) -> UpstreamError {
    let Ok(err) = ErrorResponse::decode(msg) else {
        return UpstreamError::Protocol {
            target: target.name.clone(),
            reason: "malformed ErrorResponse".into(),
        };
    };
    if err.code().starts_with("28") {
        refused(target, role, err.message())
    } else {
        UpstreamError::Server {
            target: target.name.clone(),
            code: err.code().to_string(),
            message: err.message().to_string(),
        }
    }
}

fn auth_method_name(code: i32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        6 => "SCM credentials",
        7 | 8 => "GSSAPI",
        9 => "SSPI",
        _ => "unknown",
    }
}

async fn next(reader: &mut FrameReader<Stream>, target: &Target) -> Result<Message, UpstreamError> {
    match reader.next_message().await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(UpstreamError::Protocol {
            target: target.name.clone(),
            reason: "connection closed during login".into(),
        }),
        Err(e) => Err(UpstreamError::Protocol {
            target: target.name.clone(),
            reason: e.to_string(),
        }),
    }
}

async fn write(reader: &mut FrameReader<Stream>, bytes: &[u8]) -> std::io::Result<()> {
    let s = reader.get_mut();
    s.write_all(bytes).await?;
    s.flush().await
}
