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
    /// The algorithm named `s` in a token header or the configuration.
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
    /// Tolerance for clock skew on `exp` and `nbf`; a token is accepted, and a session's
    /// token is live, until `exp` plus this.
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

/// How a subject is compared with a configured or operator-given name (`deny_subjects`,
/// blocked subjects). Identity providers treat `Mallory`, `mallory` and `mallory ` as one
/// user name, so a deny list compared byte for byte is a deny list with holes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectMatch {
    /// Case-insensitive (Unicode lowercase) and ignoring surrounding whitespace.
    #[default]
    Normalized,
    /// Byte for byte, for IdPs whose subjects are case-sensitive opaque ids.
    Exact,
}

impl SubjectMatch {
    /// The form two subjects are compared in.
    pub fn key(self, subject: &str) -> std::borrow::Cow<'_, str> {
        match self {
            SubjectMatch::Exact => subject.into(),
            SubjectMatch::Normalized => subject.trim().to_lowercase().into(),
        }
    }

    /// Whether `a` and `b` name the same subject.
    pub fn matches(self, a: &str, b: &str) -> bool {
        self.key(a) == self.key(b)
    }
}

/// A program that logs in with its own client-credentials token: the subject is its
/// client id, and its groups are these (plus any its token carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The token's `client_id` (or `azp`).
    pub client_id: String,
    /// Groups the client is in, beside any its token carries.
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

#[cfg(test)]
mod tests {
    use super::SubjectMatch;

    #[test]
    fn subjects_match_as_identity_providers_compare_them() {
        let n = SubjectMatch::Normalized;
        assert!(n.matches("mallory", "Mallory"));
        assert!(n.matches("mallory", " mallory\t"));
        assert!(n.matches("ÉMILE", "émile"));
        assert!(!n.matches("mallory", "mallory2"));
        let e = SubjectMatch::Exact;
        assert!(e.matches("mallory", "mallory"));
        assert!(!e.matches("mallory", "Mallory"));
        assert!(!e.matches("mallory", "mallory "));
    }
}
