//! The configuration file: one typed struct per section, defaults in one place, and errors
//! that name the file, the line and the setting.

mod audit;
mod identity;
mod secret;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use audit::AuditSection;
pub use identity::IdentitySection;
pub use secret::{Secret, SecretRef, warn_if_shared};

/// Why a configuration cannot be used. Messages name the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: ListenConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    pub identity: IdentitySection,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Required: no policy, no access (checked with a clear message in `Config::parse`).
    pub policy: PolicySection,
    /// Required: no audit, no access.
    pub audit: AuditSection,
    /// Statements held for approval; without it they are refused.
    #[serde(default)]
    pub approval: Option<ApprovalSection>,
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// IdP clients that log in with client-credentials tokens.
    #[serde(default, rename = "service_account")]
    pub service_accounts: Vec<ServiceAccountConfig>,
}

/// `[approval]`: where approval requests are kept and how long a statement waits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSection {
    /// The SQLite file of requests (relative to the configuration file).
    pub store: PathBuf,
    /// How long a held statement waits for a decision.
    #[serde(default = "default_approval_deadline", with = "humantime_serde")]
    pub deadline: std::time::Duration,
}

fn default_approval_deadline() -> std::time::Duration {
    std::time::Duration::from_secs(15 * 60)
}

/// `[admin]`: the control port operators use (listing and ending sessions).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address and port, e.g. `127.0.0.1:6433`.
    pub address: String,
    /// Groups whose members may use it, authenticated with their access token.
    pub groups: Vec<String>,
}

/// `[[service_account]]`: a program that connects with its IdP client's own token.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountConfig {
    /// The IdP client id (the token's `client_id` or `azp` claim); it becomes the subject.
    pub client_id: String,
    /// Groups the client is in, beside any its token carries.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[policy]`: the Cedar policies every statement is decided by.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Policy files, or directories whose `*.cedar` files are loaded in name order.
    pub paths: Vec<PathBuf>,
    /// The time zone of `context.hour`, `minute`, `weekday` and `date`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// `enforce`, or `observe` to report would-be refusals without refusing anything.
    #[serde(default)]
    pub mode: PolicyMode,
    /// Whether a refusal names the permit that would have allowed the statement had its
    /// condition held (`HINT: policy "…" permits this only when its condition holds`).
    /// Turn off where the names and existence of policies are sensitive.
    #[serde(default = "default_true")]
    pub condition_hints: bool,
}

fn default_true() -> bool {
    true
}

fn default_timezone() -> String {
    "UTC".into()
}

/// Whether policy refusals are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    #[default]
    Enforce,
    Observe,
}

/// `[listen]`: where clients connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Address and port, e.g. `0.0.0.0:6432`.
    pub address: String,
    /// Refuse startups that did not negotiate TLS.
    pub require_tls: bool,
    /// Most concurrent client sessions; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// How long a client may take to send each startup packet, including its token.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// A second address whose clients log in with SASL OAUTHBEARER (libpq 18's
    /// `oauth_issuer`/`oauth_client_id`) instead of a token as the password.
    pub oauthbearer_address: Option<String>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            address: "127.0.0.1:6432".into(),
            require_tls: true,
            max_connections: 1000,
            startup_timeout: Duration::from_secs(10),
            oauthbearer_address: None,
        }
    }
}

/// `[tls]`: the gateway's server certificate for client connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

fn default_port() -> u16 {
    5432
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// How the gateway secures its connection to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    Disable,
    /// TLS without certificate verification (protects against passive eavesdropping only).
    Require,
    /// TLS, certificate chain checked against `ca_file` and the host name checked.
    VerifyFull,
}

/// `[[target]]`: a database clients can reach, named by the database name they connect to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// What clients put as the database name.
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The database on the server.
    pub database: String,
    pub tls: UpstreamTls,
    /// CA certificates for `verify-full`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Upstream roles in order of preference: the first whose groups match the caller wins.
    #[serde(rename = "role")]
    pub roles: Vec<RoleConfig>,
    /// Record result rows of sessions on this target (overrides `audit.record_results`).
    #[serde(default)]
    pub record_results: Option<bool>,
}

/// `[[target.role]]`: a database role the gateway logs in as, and who may use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub name: String,
    /// `env:NAME` or `file:PATH`; never the secret itself.
    pub secret: SecretRef,
    /// Groups whose members may use this role.
    pub groups: Vec<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message the gateway buffers whole (queries, Bind). Larger result rows and
    /// COPY data are streamed regardless.
    pub max_message_bytes: usize,
    /// Query strings kept in the parse cache.
    pub parse_cache_entries: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 1024 * 1024 * 1024 - 1,
            parse_cache_entries: 10_000,
        }
    }
}

/// `[reload]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// How often the configuration, secret and certificate files are checked for changes;
    /// `0s` turns watching off (SIGHUP still reloads).
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch_interval: Duration::from_secs(2),
        }
    }
}

impl Config {
    /// Reads, parses and checks a configuration file. Relative paths in it are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            // The sections nobody may leave out, each with what it is for.
            for (section, why) in [
                (
                    "policy",
                    "no [policy] section: every statement is decided by Cedar policies (see policies/ for examples; \
                     a file holding `permit(principal, action, resource);` allows everything)",
                ),
                (
                    "audit",
                    "no [audit] section: every session and statement is audited before it runs \
                     (set audit.store and audit.signing_key)",
                ),
            ] {
                if e.message().contains(&format!("missing field `{section}`")) {
                    return ConfigError::Invalid(format!("{origin}: {why}"));
                }
            }
            parse_error(e)
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(tls) = &mut self.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        if let Some(ca) = &mut self.identity.ca_file {
            fix(ca);
        }
        for path in &mut self.policy.paths {
            fix(path);
        }
        if let Some(a) = &mut self.approval {
            fix(&mut a.store);
        }
        self.audit.resolve_paths(dir);
        for t in &mut self.targets {
            if let Some(ca) = &mut t.ca_file {
                fix(ca);
            }
            for r in &mut t.roles {
                r.secret.relative_to(dir);
            }
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("{origin}: {m}"));
        if self.listen.require_tls && self.tls.is_none() {
            return Err(invalid(
                "listen.require_tls is on but there is no [tls] section with a certificate".into(),
            ));
        }
        if self.listen.max_connections == 0 {
            return Err(invalid("listen.max_connections must be at least 1".into()));
        }
        self.identity.validate().map_err(invalid)?;
        if self.targets.is_empty() {
            return Err(invalid("no [[target]] is configured".into()));
        }
        if self.approval.is_some() && self.admin.is_none() {
            return Err(invalid(
                "[approval] needs an [admin] section: approvers decide on the control port".into(),
            ));
        }
        if self.policy.paths.is_empty() {
            return Err(invalid("policy.paths names no policy files".into()));
        }
        self.audit.validate().map_err(invalid)?;
        if let Some(a) = &self.admin
            && a.groups.is_empty()
        {
            return Err(invalid(
                "admin.groups lists no groups, so nobody could use the control port".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.targets {
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("target '{}' is defined twice", t.name)));
            }
            if t.tls == UpstreamTls::VerifyFull && t.ca_file.is_none() {
                return Err(invalid(format!(
                    "target '{}': tls = \"verify-full\" needs ca_file",
                    t.name
                )));
            }
            if t.roles.is_empty() {
                return Err(invalid(format!(
                    "target '{}' has no [[target.role]]",
                    t.name
                )));
            }
            for r in &t.roles {
                if let Some(why) = r.secret.invalid() {
                    return Err(invalid(format!(
                        "target '{}': role '{}': {why}",
                        t.name, r.name
                    )));
                }
                if r.groups.is_empty() {
                    return Err(invalid(format!(
                        "target '{}': role '{}' lists no groups, so nobody could use it",
                        t.name, r.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Builds the identity verifier configuration.
    pub fn identity_config(&self) -> portcullis_identity::IdentityConfig {
        let s = &self.identity;
        let mut c = portcullis_identity::IdentityConfig::new(&s.issuer, &s.audience);
        c.algorithms = s
            .algorithms
            .iter()
            .filter_map(|a| portcullis_identity::Algorithm::parse(a))
            .collect();
        c.leeway = s.leeway;
        c.subject_claim = s.subject_claim.clone();
        c.groups_claim = s.groups_claim.clone();
        c.ca_file = s.ca_file.clone();
        c.refresh_min_interval = s.refresh_min_interval;
        c.keys_max_age = s.keys_max_age;
        c.http_timeout = s.http_timeout;
        c.groups_prefix = s.groups_prefix.clone();
        c.service_accounts = self
            .service_accounts
            .iter()
            .map(|a| portcullis_identity::ServiceAccount {
                client_id: a.client_id.clone(),
                groups: a.groups.clone(),
            })
            .collect();
        c
    }

    /// Files whose change should trigger a reload (besides the configuration file).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for path in &self.policy.paths {
            // A directory's own stamp changes when files are added or removed.
            out.push(path.clone());
            if path.is_dir()
                && let Ok(files) = portcullis_policy::policy_files(std::slice::from_ref(path))
            {
                out.extend(files);
            }
        }
        if let Some(tls) = &self.tls {
            out.push(tls.cert.clone());
            out.push(tls.key.clone());
        }
        out.extend(self.identity.ca_file.clone());
        for t in &self.targets {
            out.extend(t.ca_file.clone());
            for r in &t.roles {
                if let SecretRef::File(p) = &r.secret {
                    out.push(p.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[listen]
require_tls = false

[identity]
issuer = "https://idp.example.com"

[[target]]
name = "analytics"
host = "db"
database = "analytics"
tls = "disable"

[[target.role]]
name = "reader"
secret = "env:READER_PASSWORD"
groups = ["data-science"]

[policy]
paths = ["policies"]

[audit]
store = "audit.db"
signing_key = "file:audit.key"
"#;

    #[test]
    fn minimal_config_has_defaults() {
        let c = Config::parse(MINIMAL, "test.toml").unwrap();
        assert_eq!(c.listen.max_connections, 1000);
        assert_eq!(c.listen.startup_timeout, Duration::from_secs(10));
        assert_eq!(c.identity.audience, "portcullis");
        assert_eq!(c.targets[0].port, 5432);
        assert_eq!(c.targets[0].roles[0].groups, vec!["data-science"]);
    }

    #[test]
    fn errors_name_the_line_and_setting() {
        let bad = MINIMAL.replace("require_tls = false", "require_tls = false\nbogus = 1");
        let e = Config::parse(&bad, "test.toml").unwrap_err().to_string();
        assert!(
            e.contains("test.toml") && e.contains("line 4") && e.contains("bogus"),
            "{e}"
        );

        let inline = MINIMAL.replace("env:READER_PASSWORD", "hunter2");
        let e = Config::parse(&inline, "test.toml").unwrap_err().to_string();
        assert!(e.contains("role 'reader'") && e.contains("env:NAME"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        // The required sections, left out, say what they are for.
        let no_policy = MINIMAL.replace("[policy]\npaths = [\"policies\"]\n", "");
        let e = Config::parse(&no_policy, "t").unwrap_err().to_string();
        assert!(e.contains("no [policy] section: every statement"), "{e}");
        let no_audit = MINIMAL.replace("[audit]\n", "[junk]\n");
        let e = Config::parse(&no_audit, "t").unwrap_err().to_string();
        assert!(
            !e.contains("no [audit] section"),
            "an unknown section is reported: {e}"
        );
        let no_audit = MINIMAL.split("[audit]").next().unwrap().to_string();
        let e = Config::parse(&no_audit, "t").unwrap_err().to_string();
        assert!(e.contains("no [audit] section: every session"), "{e}");
        let inline_key = MINIMAL.replacen("signing_key = \"", "signing_key = \"hunter3", 1);
        let e = Config::parse(&inline_key, "test.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("audit.signing_key") && e.contains("file:PATH"),
            "{e}"
        );
        assert!(!e.contains("hunter3"), "{e}");

        let tls = MINIMAL.replace("require_tls = false", "require_tls = true");
        assert!(
            Config::parse(&tls, "t")
                .unwrap_err()
                .to_string()
                .contains("[tls]")
        );
        let vf = MINIMAL.replace("tls = \"disable\"", "tls = \"verify-full\"");
        assert!(
            Config::parse(&vf, "t")
                .unwrap_err()
                .to_string()
                .contains("ca_file")
        );
        let alg = MINIMAL.replace("issuer = ", "algorithms = [\"HS256\"]\nissuer = ");
        assert!(
            Config::parse(&alg, "t")
                .unwrap_err()
                .to_string()
                .contains("HS256")
        );
    }

    #[test]
    fn audit_caps_witness_and_subject_matching() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        let a = c.audit.clone();
        assert_eq!(a.statement_text_bytes, 64 * 1024);
        assert_eq!(a.witness, None);
        assert_eq!(
            c.identity.deny_subjects_match,
            portcullis_identity::SubjectMatch::Normalized
        );
        let text = MINIMAL
            .replace(
                "signing_key = ",
                "statement_text_bytes = 1024\nwitness = \"file:w/head.json\"\nsigning_key = ",
            )
            .replace("issuer = ", "deny_subjects_match = \"exact\"\nissuer = ");
        let mut c = Config::parse(&text, "t").unwrap();
        c.resolve_paths(Path::new("/etc/portcullis"));
        let a = c.audit.clone();
        assert_eq!(a.statement_text_bytes, 1024);
        assert_eq!(
            a.witness.as_deref(),
            Some("file:/etc/portcullis/w/head.json")
        );
        assert_eq!(
            c.identity.deny_subjects_match,
            portcullis_identity::SubjectMatch::Exact
        );
        let journal = MINIMAL.replace("signing_key = ", "witness = \"journal:\"\nsigning_key = ");
        let e = Config::parse(&journal, "t").unwrap_err().to_string();
        assert!(
            e.contains("audit.witness") && e.contains("file:PATH"),
            "{e}"
        );
        let bad = MINIMAL.replace("issuer = ", "deny_subjects_match = \"fuzzy\"\nissuer = ");
        assert!(Config::parse(&bad, "t").is_err());
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let text = MINIMAL.replace("env:READER_PASSWORD", "file:secrets/reader");
        let mut c = Config::parse(&text, "t").unwrap();
        c.resolve_paths(Path::new("/etc/portcullis"));
        assert_eq!(
            c.targets[0].roles[0].secret,
            SecretRef::File("/etc/portcullis/secrets/reader".into())
        );
        assert_eq!(
            c.watched_files(),
            vec![
                PathBuf::from("/etc/portcullis/policies"),
                PathBuf::from("/etc/portcullis/secrets/reader")
            ]
        );
        let a = c.audit.clone();
        assert_eq!(a.store, "sqlite:/etc/portcullis/audit.db");
        assert_eq!(
            a.signing_key,
            SecretRef::File("/etc/portcullis/audit.key".into())
        );
        assert_eq!(
            c.policy.paths,
            vec![PathBuf::from("/etc/portcullis/policies")]
        );
    }
}
