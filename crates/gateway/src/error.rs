//! Errors that end a connection before or during startup, each with the SQLSTATE and the
//! sentence the client receives.

use portcullis_identity::AuthError;
use portcullis_wire::WireError;
use portcullis_wire::backend::{ErrorResponse, Severity};

/// Why a connection could not start a session.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("client sent nothing for {0:?} during startup")]
    Timeout(std::time::Duration),
    #[error("client closed the connection during startup")]
    Closed,
    #[error("invalid startup packet: {0}")]
    Wire(#[from] WireError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("this gateway requires TLS; connect with sslmode=require (or verify-full)")]
    TlsRequired,
    #[error("unsupported frontend protocol {0}: the gateway speaks protocol 3.0")]
    UnsupportedProtocol(String),
    #[error("replication connections are not supported through the gateway")]
    Replication,
    #[error("no database name given; connect with the name of a target as the database")]
    NoTarget,
    #[error("target \"{0}\" does not exist")]
    UnknownTarget(String),
    #[error("expected a password message carrying an access token")]
    ExpectedPassword,
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("none of your groups ({groups}) may use target \"{target}\"")]
    NoRole { target: String, groups: String },
    #[error("sorry, too many clients already (the gateway allows {0} connections)")]
    TooManyConnections(usize),
    #[error("{0}")]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("{0}")]
    Refused(String),
    #[error(
        "the audit store cannot record this session ({0}); the gateway admits nobody it cannot audit"
    )]
    Audit(String),
    #[error("{0}")]
    Revoked(String),
    #[error("OAUTHBEARER: {0}")]
    OAuth(String),
}

impl StartupError {
    pub fn sqlstate(&self) -> &str {
        match self {
            StartupError::Timeout(_) | StartupError::Closed => "08006",
            StartupError::Wire(_) | StartupError::ExpectedPassword => "08P01",
            StartupError::Tls(_) => "08006",
            StartupError::TlsRequired | StartupError::NoRole { .. } => "28000",
            StartupError::UnsupportedProtocol(_) | StartupError::Replication => "0A000",
            StartupError::NoTarget | StartupError::UnknownTarget(_) => "3D000",
            StartupError::Auth(a) => a.sqlstate(),
            StartupError::TooManyConnections(_) => "53300",
            StartupError::Upstream(u) => u.sqlstate(),
            StartupError::Refused(_) => "42501",
            StartupError::Audit(_) => "58030",
            StartupError::Revoked(_) | StartupError::OAuth(_) => "28000",
        }
    }

    /// Whether the refusal belongs in the audit trail: everything past the transport
    /// (a port scan or a dropped connection is not an authentication failure).
    pub fn is_audited(&self) -> bool {
        !matches!(
            self,
            StartupError::Timeout(_)
                | StartupError::Closed
                | StartupError::Tls(_)
                | StartupError::Wire(_)
                | StartupError::Audit(_)
        )
    }

    /// The FATAL ErrorResponse the client receives.
    pub fn to_response(&self) -> ErrorResponse {
        let e = ErrorResponse::new(Severity::Fatal, self.sqlstate(), self.to_string());
        match self {
            StartupError::Auth(AuthError::Expired(_)) => {
                e.hint("get a fresh token from your identity provider and reconnect")
            }
            StartupError::NoRole { .. } => {
                e.hint("ask an administrator to map one of your groups to a role on this target")
            }
            _ => e,
        }
    }

    /// Whether the client can still receive an ErrorResponse.
    pub fn can_reply(&self) -> bool {
        !matches!(
            self,
            StartupError::Timeout(_) | StartupError::Closed | StartupError::Tls(_)
        )
    }
}
