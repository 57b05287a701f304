//! The gateway runtime: accepts PostgreSQL clients, verifies their tokens, logs in to the
//! target with credentials only the gateway holds, and relays the session while showing
//! every statement to a [`decision::Decider`].
//!
//! Data path, in module order: `listener` (this file) accepts; `startup` negotiates TLS,
//! cancel requests and the token; `upstream` logs in to the target; `session` relays with
//! a frontend pump (decisions, expected responses) and a backend pump (attribution,
//! rewriting). `runtime` is the resolved configuration, swapped atomically on reload.

pub mod approvals;
pub mod audit;
pub mod cancel;
pub mod catalog;
pub mod config;
mod control;
pub mod decision;
mod error;
mod fastpath;
pub mod hold;
mod oauth;
mod policy;
pub mod rewrite;
mod runtime;
mod services;
mod session;
pub mod sessions;
mod startup;
mod stream;
mod tls;
mod upstream;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use portcullis_sql::ParseCache;
use tokio::net::TcpListener;

pub use config::{Config, ConfigError};
pub use decision::{Decider, PermitAll};
pub use error::StartupError;
pub use portcullis_policy::{Clock, FixedClock, SystemClock};
pub use runtime::{Policies, Runtime};
pub use upstream::UpstreamError;

use audit::admin_event;
use cancel::CancelRegistry;
use services::Services;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("audit: {0}")]
    Audit(String),
    #[error("approval store: {0}")]
    Approvals(String),
}

/// What the embedding program chooses.
pub struct GatewayOptions {
    /// Decides statements instead of the configured policies (tests of the relay).
    pub decider: Option<Arc<dyn Decider>>,
    /// Where policies read the time from.
    pub clock: Arc<dyn portcullis_policy::Clock>,
    /// Where live sessions read the time their token expires against (tests move it).
    pub session_clock: Arc<dyn portcullis_policy::Clock>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            decider: None,
            clock: Arc::new(portcullis_policy::SystemClock),
            session_clock: Arc::new(portcullis_policy::SystemClock),
        }
    }
}

struct Inner {
    runtime: Arc<ArcSwap<Runtime>>,
    config_path: PathBuf,
    services: Arc<Services>,
    generation: tokio::sync::watch::Sender<u64>,
    reload_lock: std::sync::Mutex<()>,
    next_session: AtomicU64,
}

/// A running gateway. Dropping it stops accepting connections; live sessions run on.
pub struct Gateway {
    inner: Arc<Inner>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    oauth_addr: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// Loads `config_path`, binds the listener and starts accepting. Fails on any
    /// configuration error: a gateway never starts half-configured.
    pub async fn start(config_path: &Path, options: GatewayOptions) -> Result<Gateway, StartError> {
        let config = Config::load(config_path)?;
        let runtime = Runtime::build(config, None)?;
        let address = runtime.config.listen.address.clone();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| StartError::Bind {
                address: address.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { address, source })?;
        let audit = audit::open_log(&runtime).map_err(StartError::Audit)?;
        audit.record(admin_event(
            "gateway_start",
            format!("listening on {addr}"),
            &runtime,
            None,
        ));
        let verifier = runtime.verifier.clone();
        let cache_entries = runtime.config.limits.parse_cache_entries;
        let runtime = Arc::new(ArcSwap::from_pointee(runtime));
        let catalogs = Arc::new(catalog::Catalogs::default());
        let clock = options.session_clock.clone();
        let approvals = match &runtime.load().config.approval {
            Some(a) => Some(Arc::new(
                approvals::Approvals::open(
                    &a.store,
                    approvals::Settings {
                        deadline: a.deadline,
                        same: runtime.load().config.identity.deny_subjects_match,
                    },
                    clock.clone(),
                )
                .map_err(StartError::Approvals)?,
            )),
            None => None,
        };
        let decider = options.decider.unwrap_or_else(|| {
            Arc::new(policy::PolicyDecider::new(
                runtime.clone(),
                catalogs.clone(),
                options.clock,
                approvals.clone(),
            ))
        });
        let inner = Arc::new(Inner {
            runtime,
            config_path: config_path.to_path_buf(),
            services: Arc::new(Services {
                decider,
                audit,
                cache: Arc::new(ParseCache::new(cache_entries)),
                cancels: Arc::new(CancelRegistry::default()),
                active: Arc::new(AtomicUsize::new(0)),
                catalogs,
                sessions: Arc::new(sessions::Sessions::default()),
                clock,
                approvals,
            }),
            generation: tokio::sync::watch::channel(0).0,
            reload_lock: std::sync::Mutex::new(()),
            // Session ids must not repeat across restarts or gateways sharing a store.
            next_session: AtomicU64::new(rand::random::<u64>() >> 1),
        });
        // Fetch the issuer's keys now so the first login does not wait; failures are
        // logged and retried at login.
        tokio::spawn(async move {
            let _ = verifier.refresh(std::time::Duration::ZERO).await;
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let admin_addr = match inner.runtime.load().config.admin.clone() {
            Some(a) => Some(
                control::start(
                    &a.address,
                    inner.runtime.clone(),
                    inner.services.clone(),
                    stopped.clone(),
                )
                .await
                .map_err(|source| StartError::Bind {
                    address: a.address.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        if let (Some(addr), Some(a)) = (admin_addr, &inner.services.approvals) {
            let scheme = if inner.runtime.load().control_acceptor.is_some() {
                "https"
            } else {
                "http"
            };
            a.set_admin_url(format!("{scheme}://{addr}"));
        }
        let oauth_addr = match inner
            .runtime
            .load()
            .config
            .listen
            .oauthbearer_address
            .clone()
        {
            Some(address) => {
                let l = TcpListener::bind(&address)
                    .await
                    .map_err(|source| StartError::Bind {
                        address: address.clone(),
                        source,
                    })?;
                let a = l
                    .local_addr()
                    .map_err(|source| StartError::Bind { address, source })?;
                tokio::spawn(accept_loop(
                    l,
                    inner.clone(),
                    stopped.clone(),
                    startup::AuthMethod::OAuthBearer,
                ));
                tracing::info!(addr = %a, "OAUTHBEARER listener");
                Some(a)
            }
            None => None,
        };
        tokio::spawn(accept_loop(
            listener,
            inner.clone(),
            stopped.clone(),
            startup::AuthMethod::Password,
        ));
        tokio::spawn(watch::watch_files(Arc::downgrade(&inner), stopped));
        tracing::info!(%addr, "gateway listening");
        Ok(Gateway {
            inner,
            addr,
            admin_addr,
            oauth_addr,
            stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where OAUTHBEARER clients connect, when configured.
    pub fn oauthbearer_addr(&self) -> Option<SocketAddr> {
        self.oauth_addr
    }

    /// Where the control port listens, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Re-reads the configuration and secrets. On error the running configuration stays
    /// and the error says why. Returns the new generation number.
    pub fn reload(&self) -> Result<u64, ConfigError> {
        self.inner.reload()
    }

    /// Reload generations: incremented by every successful reload.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Waits until every audit event recorded so far has been written (or failed) and a
    /// checkpoint signed.
    pub async fn flush_audit(&self) {
        self.inner.services.audit.flush().await;
    }

    /// Whether the audit store took the last write.
    pub fn audit_healthy(&self) -> bool {
        self.inner.services.audit.is_healthy()
    }

    /// Sessions currently open.
    pub fn active_sessions(&self) -> usize {
        self.inner.services.active.load(Ordering::Acquire)
    }

    /// Reloads on every SIGHUP until the gateway is dropped.
    pub fn reload_on_sighup(&self) -> std::io::Result<()> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let Some(inner) = inner.upgrade() else { break };
                tracing::info!("SIGHUP: reloading configuration");
                let _ = inner.reload();
            }
        });
        Ok(())
    }
}

/// Logs in to `target` as the role its configuration maps to `groups` (or its first role)
/// and reads the catalog, for tools such as `portcullis policy explain`.
pub async fn fetch_catalog(
    runtime: &Runtime,
    target: &str,
    groups: &[String],
) -> Result<Arc<catalog::Snapshot>, String> {
    let t = runtime
        .targets
        .get(target)
        .ok_or_else(|| format!("target \"{target}\" is not configured"))?;
    let role = t
        .role_for(groups)
        .or_else(|| t.roles.first())
        .ok_or_else(|| format!("target \"{target}\" has no roles"))?;
    let startup = portcullis_wire::startup::StartupMessage {
        version: portcullis_wire::startup::PROTOCOL_3_0,
        params: vec![(
            "application_name".into(),
            bytes::Bytes::from_static(b"portcullis catalog"),
        )],
    };
    let mut upstream = upstream::connect(t, role, &startup, portcullis_wire::Limits::default())
        .await
        .map_err(|e| e.to_string())?;
    let cat = catalog::TargetCatalog::default();
    cat.refresh(target, &mut upstream.reader).await;
    cat.snapshot()
        .ok_or_else(|| format!("cannot read the catalog of target \"{target}\""))
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Inner {
    fn reload(&self) -> Result<u64, ConfigError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = Config::load(&self.config_path).and_then(|config| {
            let current = self.runtime.load();
            if config.listen.address != current.config.listen.address {
                tracing::warn!("listen.address changed; the new address takes effect at restart");
            }
            Runtime::build(config, Some(&current))
        });
        let audit = &self.services.audit;
        match result {
            Ok(runtime) => {
                let current = self.runtime.load();
                for (target, role) in rotated_secrets(&current, &runtime) {
                    audit.record(admin_event(
                        "secret_rotation",
                        format!("target \"{target}\": role \"{role}\" has a new secret"),
                        &runtime,
                        None,
                    ));
                }
                if current.config.audit != runtime.config.audit {
                    tracing::warn!("audit settings changed; the store and key change at restart");
                }
                let detail = format!(
                    "{} policies from {} files",
                    runtime.policies.store.len(),
                    runtime.policies.store.files().len()
                );
                audit.record(admin_event("config_reload", detail, &runtime, None));
                self.runtime.store(Arc::new(runtime));
                let mut generation = 0;
                self.generation.send_modify(|g| {
                    *g += 1;
                    generation = *g;
                });
                tracing::info!(generation, "configuration reloaded");
                Ok(generation)
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; keeping the running configuration");
                audit.record(admin_event(
                    "reload_failed",
                    e.to_string(),
                    &self.runtime.load(),
                    None,
                ));
                Err(e)
            }
        }
    }
}

/// Roles whose secret differs between two generations (never the secrets themselves).
fn rotated_secrets(old: &Runtime, new: &Runtime) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, t) in &new.targets {
        let Some(before) = old.targets.get(name) else {
            continue;
        };
        for r in &t.roles {
            if before
                .roles
                .iter()
                .any(|b| b.name == r.name && b.secret.expose() != r.secret.expose())
            {
                out.push((name.clone(), r.name.clone()));
            }
        }
    }
    out.sort();
    out
}

async fn accept_loop(
    listener: TcpListener,
    inner: Arc<Inner>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    method: startup::AuthMethod,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let id = decision::SessionId(inner.next_session.fetch_add(1, Ordering::Relaxed));
                    let runtime = inner.runtime.load_full();
                    tokio::spawn(session::serve(tcp, peer, runtime, inner.services.clone(), id, method));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}
