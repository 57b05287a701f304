//! The resolved configuration a connection runs with: certificates loaded, secrets read,
//! the verifier built. Swapped atomically on reload; a session keeps the snapshot it began
//! with, so rotation affects only new connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_identity::Verifier;
use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use portcullis_policy::{Mode, PolicyStore};

use crate::config::{Config, ConfigError, PolicyMode, Secret, UpstreamTls};
use crate::tls;

/// A database role the gateway may log in as.
pub struct Role {
    pub name: String,
    pub secret: Secret,
    pub groups: Vec<String>,
}

/// A target with everything needed to connect to it.
pub struct Target {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub tls: UpstreamTls,
    pub connector: Option<TlsConnector>,
    pub server_name: ServerName<'static>,
    pub connect_timeout: Duration,
    pub roles: Vec<Role>,
}

impl Target {
    /// The first role, in file order, that one of `groups` may use.
    pub fn role_for(&self, groups: &[String]) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.groups.iter().any(|g| groups.contains(g)))
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The loaded policies and the time zone they read the clock in.
pub struct Policies {
    pub store: PolicyStore,
    pub timezone: jiff::tz::TimeZone,
    /// `[policy] condition_hints`.
    pub condition_hints: bool,
}

/// One consistent generation of the configuration.
pub struct Runtime {
    pub config: Config,
    /// TLS for client connections.
    pub acceptor: Option<TlsAcceptor>,
    /// TLS for the control port.
    pub control_acceptor: Option<TlsAcceptor>,
    pub verifier: Arc<Verifier>,
    pub targets: HashMap<String, Arc<Target>>,
    pub policies: Arc<Policies>,
}

impl Runtime {
    /// Resolves `config`. The verifier (and its cached keys) is kept from `previous` when
    /// the identity settings did not change.
    pub fn build(config: Config, previous: Option<&Runtime>) -> Result<Runtime, ConfigError> {
        let invalid = ConfigError::Invalid;
        let (acceptor, control_acceptor) = match &config.tls {
            Some(t) => {
                let (postgres, http) = tls::server_configs(&t.cert, &t.key).map_err(invalid)?;
                (
                    Some(TlsAcceptor::from(postgres)),
                    Some(TlsAcceptor::from(http)),
                )
            }
            None => (None, None),
        };
        let verifier = match previous {
            Some(p)
                if p.config.identity == config.identity
                    && p.config.service_accounts == config.service_accounts =>
            {
                p.verifier.clone()
            }
            _ => Verifier::new(config.identity_config())
                .map_err(|e| invalid(format!("identity: {e}")))?,
        };
        let mut targets = HashMap::new();
        for t in &config.targets {
            let connector = tls::upstream_config(t.tls, t.ca_file.as_deref())
                .map_err(|e| invalid(format!("target '{}': {e}", t.name)))?
                .map(TlsConnector::from);
            let server_name = tls::server_name(&t.host)
                .map_err(|e| invalid(format!("target '{}': {e}", t.name)))?;
            let mut roles = Vec::new();
            for r in &t.roles {
                let secret = r
                    .secret
                    .resolve()
                    .map_err(|e| invalid(format!("target '{}': role '{}': {e}", t.name, r.name)))?;
                roles.push(Role {
                    name: r.name.clone(),
                    secret,
                    groups: r.groups.clone(),
                });
            }
            targets.insert(
                t.name.clone(),
                Arc::new(Target {
                    name: t.name.clone(),
                    host: t.host.clone(),
                    port: t.port,
                    database: t.database.clone(),
                    tls: t.tls,
                    connector,
                    server_name,
                    connect_timeout: t.connect_timeout,
                    roles,
                }),
            );
        }
        let section = &config.policy;
        let mode = match section.mode {
            PolicyMode::Enforce => Mode::Enforce,
            PolicyMode::Observe => Mode::Observe,
        };
        let store =
            PolicyStore::load(&section.paths, mode).map_err(|e| invalid(format!("policy: {e}")))?;
        let condition_hints = section.condition_hints;
        let timezone = jiff::tz::TimeZone::get(&section.timezone).map_err(|e| {
            invalid(format!(
                "policy.timezone: '{}' is not a time zone: {e}",
                section.timezone
            ))
        })?;
        tracing::info!(
            policies = store.len(),
            files = store.files().len(),
            fingerprint = format!("{:016x}", store.fingerprint()),
            mode = ?section.mode,
            "policies loaded"
        );
        Ok(Runtime {
            config,
            acceptor,
            control_acceptor,
            verifier,
            targets,
            policies: Arc::new(Policies {
                store,
                timezone,
                condition_hints,
            }),
        })
    }
}
