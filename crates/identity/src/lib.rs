//! Verifies OIDC access tokens (JWTs) and turns them into a [`Principal`]: subject and groups.
//!
//! The issuer's signing keys come from OIDC discovery and its JWKS, fetched over HTTPS
//! (plain HTTP only for loopback issuers), cached, refreshed when a token names an unknown
//! key (rate limited) and kept when the issuer is down. Algorithms are pinned by
//! configuration; `none` and HMAC are never accepted.

mod claims;
mod config;
mod error;
mod jwks;
mod verifier;

pub use config::{Algorithm, IdentityConfig, ServiceAccount, SubjectMatch};
pub use error::{AuthError, ConfigError};
pub use verifier::{Principal, Verifier};

/// The longest access token accepted, in bytes (PostgreSQL's own limit for an
/// authentication message's payload is the same).
pub const MAX_TOKEN_BYTES: usize = 65_535;

/// Formats a duration the way error messages say it: `45s`, `4m`, `3h`, `2d`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 5)), "3h");
        assert_eq!(human_duration(Duration::from_secs(5 * 86_400)), "5d");
    }
}
