//! `[identity]`: which issuer's tokens are accepted and how their claims are read.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_identity::SubjectMatch;
use serde::Deserialize;

/// `[identity]`: the OIDC issuer whose tokens are accepted.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    pub issuer: String,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_refresh_min_interval", with = "humantime_serde")]
    pub refresh_min_interval: Duration,
    #[serde(default = "default_keys_max_age", with = "humantime_serde")]
    pub keys_max_age: Duration,
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Only groups with this prefix count, without it (`db-dba` → `dba`).
    #[serde(default)]
    pub groups_prefix: Option<String>,
    /// How long a session may outlive its token; after that its next statement outside a
    /// transaction ends it.
    #[serde(default, with = "humantime_serde")]
    pub expiry_grace: Duration,
    /// Subjects refused at login whatever their token says.
    #[serde(default)]
    pub deny_subjects: Vec<String>,
    /// How `deny_subjects` and subjects an operator blocked are compared with a token's
    /// subject: `normalized` (case-insensitive, surrounding whitespace ignored, as identity
    /// providers compare user names) or `exact`.
    #[serde(default)]
    pub deny_subjects_match: SubjectMatch,
    /// The scope OAUTHBEARER clients are told to ask for.
    #[serde(default = "default_oauth_scope")]
    pub oauth_scope: String,
}

fn default_oauth_scope() -> String {
    "openid".into()
}

fn default_audience() -> String {
    "portcullis".into()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_refresh_min_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_keys_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(5)
}

impl IdentitySection {
    /// Problems a loaded section can have that its types cannot rule out.
    pub(super) fn validate(&self) -> Result<(), String> {
        for a in &self.algorithms {
            if portcullis_identity::Algorithm::parse(a).is_none() {
                return Err(format!(
                    "identity.algorithms: '{a}' is not supported (use RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA)"
                ));
            }
        }
        Ok(())
    }
}
