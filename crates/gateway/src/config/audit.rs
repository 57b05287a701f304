//! `[audit]`: where events go, how they are signed and witnessed, and how much of a
//! statement or its results they hold.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::SecretRef;

/// `[audit]`: where events go and how they are signed. Required: no audit, no access.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// `sqlite:PATH` (or a bare path) for the embedded store; `postgresql://user@host/db`
    /// for a store several gateways share (a control database, never a target).
    pub store: String,
    /// The PostgreSQL store's password: `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// CA certificates the PostgreSQL store's TLS certificate is checked against, beside
    /// the system's (TLS as the URL's `sslmode` says).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `file:PATH` (or `env:NAME`) of the Ed25519 private key, PKCS#8 PEM, that signs
    /// checkpoints (`openssl genpkey -algorithm ed25519`, or `portcullis audit keygen`).
    pub signing_key: SecretRef,
    /// How often the chain's head is signed while events arrive.
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Delete events older than this (down to a checkpoint); unset keeps everything.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// Record the result rows of every session (targets may override).
    #[serde(default)]
    pub record_results: bool,
    /// Most bytes of result values recorded per statement.
    #[serde(default = "default_record_statement_bytes")]
    pub record_statement_bytes: usize,
    /// Most bytes of result values recorded per session.
    #[serde(default = "default_record_session_bytes")]
    pub record_session_bytes: usize,
    /// Most bytes of a statement's text kept in its event (a prefix; the whole text's
    /// length and SHA-256 are always recorded), and of its bound parameters together.
    #[serde(default = "default_statement_text_bytes")]
    pub statement_text_bytes: usize,
    /// Where the chain's signed head is also published at every checkpoint, outside the
    /// store (`file:PATH`), so `audit verify` notices a trail cut back to an older
    /// checkpoint.
    #[serde(default)]
    pub witness: Option<String>,
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_record_statement_bytes() -> usize {
    64 * 1024
}
fn default_record_session_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_statement_text_bytes() -> usize {
    64 * 1024
}

impl AuditSection {
    /// Problems a loaded section can have that its types cannot rule out.
    pub(super) fn validate(&self) -> Result<(), String> {
        if let Some(why) = self.signing_key.invalid() {
            return Err(format!("audit.signing_key: {why}"));
        }
        if let Some(why) = self.password.as_ref().and_then(SecretRef::invalid) {
            return Err(format!("audit.password: {why}"));
        }
        let userinfo = self
            .store
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(u, _)| u);
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(
                "audit.store: put the password in audit.password (env:NAME or file:PATH), not in the URL".into(),
            );
        }
        if self.checkpoint_interval.is_zero() {
            return Err("audit.checkpoint_interval must be more than 0s".into());
        }
        if let Some(w) = &self.witness {
            portcullis_audit::WitnessRef::parse(w).map_err(|e| format!("audit.witness: {e}"))?;
        }
        Ok(())
    }

    /// Makes relative paths relative to the configuration file's directory `dir`.
    pub(super) fn resolve_paths(&mut self, dir: &std::path::Path) {
        let fix_ref = |r: &mut String| {
            if let Some(rest) = r.strip_prefix("file:") {
                let p = std::path::Path::new(rest);
                if p.is_relative() {
                    *r = format!("file:{}", dir.join(p).display());
                }
            }
        };
        if let Some(ca) = &mut self.ca_file
            && ca.is_relative()
        {
            *ca = dir.join(&*ca);
        }
        self.signing_key.relative_to(dir);
        if let Some(p) = &mut self.password {
            p.relative_to(dir);
        }
        if let Some(w) = &mut self.witness {
            fix_ref(w);
        }
        if !self.store.starts_with("postgres://") && !self.store.starts_with("postgresql://") {
            let path = self.store.strip_prefix("sqlite:").unwrap_or(&self.store);
            if std::path::Path::new(path).is_relative() {
                self.store = format!("sqlite:{}", dir.join(path).display());
            }
        }
    }
}
