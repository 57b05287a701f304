//! Identity settings: which issuer, audience and algorithms to trust and where the claims live.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A signature algorithm the gateway may accept. Only asymmetric algorithms exist here, so
/// a token signed with HMAC using the public key as secret can never verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            _ => return None,
        })
    }

    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// How to verify tokens from one issuer.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Issuer URL exactly as it appears in the `iss` claim.
    pub issuer: String,
    /// Required value in the `aud` claim.
    pub audience: String,
    /// Accepted signature algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Tolerance for clock skew on `exp` and `nbf`.
    pub leeway: Duration,
    /// Dotted path of the subject claim, e.g. `sub` or `preferred_username`.
    pub subject_claim: String,
    /// Dotted path of the groups claim, e.g. `groups` or `realm_access.roles`.
    pub groups_claim: String,
    /// Minimum time between key refreshes triggered by unknown key ids.
    pub refresh_min_interval: Duration,
    /// Age after which cached keys are refreshed on the next login.
    pub keys_max_age: Duration,
    /// Timeout for each request to the issuer.
    pub http_timeout: Duration,
    /// Extra CA certificates (PEM) to trust for the issuer, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// When set, only groups starting with this prefix count, and without it
    /// (`portcullis-dba` → `dba`).
    pub groups_prefix: Option<String>,
    /// IdP clients that connect with client-credentials tokens.
    pub service_accounts: Vec<ServiceAccount>,
}

/// A program that logs in with its own client-credentials token: the subject is its
/// client id, and its groups are these (plus any its token carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub client_id: String,
    pub groups: Vec<String>,
}

impl IdentityConfig {
    /// A configuration with the defaults for everything but issuer and audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        IdentityConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            leeway: Duration::from_secs(30),
            subject_claim: "sub".into(),
            groups_claim: "groups".into(),
            refresh_min_interval: Duration::from_secs(10),
            keys_max_age: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(5),
            ca_file: None,
            groups_prefix: None,
            service_accounts: Vec::new(),
        }
    }
}
