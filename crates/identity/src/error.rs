//! Why a token was refused, or why the identity configuration is unusable.

/// A refused login. Messages are shown to the connecting person; they never contain the token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no access token was given; connect with an OIDC access token as the password")]
    NoToken,
    #[error("the password is not an access token (expected a JWT issued by {issuer})")]
    NotAToken { issuer: String },
    #[error(
        "token too large: {len} bytes were sent, and an access token may be at most {limit} bytes"
    )]
    TokenTooLarge { len: usize, limit: usize },
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm '{0}' is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("token key id '{0}' is not published by the issuer")]
    UnknownKey(String),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token expired {0} ago")]
    Expired(String),
    #[error("token is not valid yet (valid in {0})")]
    NotYetValid(String),
    #[error("token issuer '{got}' is not '{want}'")]
    WrongIssuer { got: String, want: String },
    #[error("token audience '{got}' is not '{want}'")]
    WrongAudience { got: String, want: String },
    #[error("token has no usable '{0}' claim")]
    MissingClaim(String),
    #[error("{0}")]
    BadClaim(String),
    #[error("issuer unreachable and no cached keys")]
    IssuerUnreachable,
    #[error(
        "token does not carry your groups: the identity provider left out the '{0}' claim because you are in too many groups (Entra ID group overage) and points to the Graph API instead, which the gateway does not query; ask an administrator to limit the groups emitted for this application (for example \"groups assigned to the application\") or to use app roles"
    )]
    GroupsOverage(String),
}

impl AuthError {
    /// The SQLSTATE a client receives: 28P01 when the credential itself is bad,
    /// 28000 when a valid credential does not authorize this login.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AuthError::NoToken
            | AuthError::NotAToken { .. }
            | AuthError::TokenTooLarge { .. }
            | AuthError::Malformed(_)
            | AuthError::AlgorithmNotAllowed(_)
            | AuthError::UnknownKey(_)
            | AuthError::BadSignature => "28P01",
            _ => "28000",
        }
    }
}

/// An identity configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("issuer '{0}' is not a valid URL")]
    BadIssuer(String),
    #[error("issuer '{0}' must use https (plain http is allowed only for loopback addresses)")]
    InsecureIssuer(String),
    #[error("no token algorithms are allowed; set at least one of RS256, ES256, EdDSA")]
    NoAlgorithms,
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot build HTTP client: {0}")]
    Http(String),
}
