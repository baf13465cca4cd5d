//! a2a-push-hub: reliable, signed and observable A2A task push notifications.
//!
//! The library exposes [`Hub`], which starts the same server the `a2a-push-hub serve`
//! command runs (the binary is only a thin CLI over it), [`Settings`] with the types of its
//! fields ([`config`]), and [`verify`], for receivers that check the hub's signatures.
//! `docs/ARCHITECTURE.md` describes the modules behind them and how they fit together.
//!
//! ```no_run
//! # async fn run() -> Result<(), a2a_push_hub::StartError> {
//! let mut settings = a2a_push_hub::Settings::default();
//! settings.server.public_listen = "127.0.0.1:0".parse().unwrap();
//! settings.server.admin_listen = "127.0.0.1:0".parse().unwrap();
//! let hub = a2a_push_hub::Hub::builder(settings).start().await?;
//! println!("A2A endpoint: {}", hub.public_base_url());
//! hub.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod config;
pub mod probe;
pub mod verify;

pub(crate) mod a2a;
pub(crate) mod agent_client;
pub(crate) mod api;
pub(crate) mod backup;
pub(crate) mod delivery;
pub(crate) mod digest;
pub(crate) mod domain;
pub(crate) mod gateway;
pub(crate) mod inbound;
pub(crate) mod listener;
pub(crate) mod mcp;
pub(crate) mod metrics;
pub(crate) mod operator;
pub(crate) mod retention;
pub(crate) mod secret;
pub(crate) mod signing;
pub(crate) mod ssrf;
pub(crate) mod store;
pub(crate) mod telemetry;
pub(crate) mod trace;

#[cfg(test)]
mod property_tests;

/// Not part of the library's API: what the project's own command line, benchmarks and tests
/// reach into. It changes whenever they need it to.
#[doc(hidden)]
pub mod internals {
    pub use crate::store::{StoreError, postgres_schema};

    /// `a2a-push-hub mcp-stdio`.
    pub use crate::mcp::stdio as mcp_stdio;

    /// Signing, for the signing benchmark.
    pub mod signing {
        pub use crate::signing::keys::{ALG_ED25519, ALG_ES256, Signer, generate, jwk};
        pub use crate::signing::{JwtInput, KeySet, SigningInput, jwt, sign_delivery, webhooks};
    }
}

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Settings;
use store::{PostgresStore, RedbStore, Store, StoreError};

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid settings: {0}")]
    Settings(#[from] config::SettingsError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot migrate the database: {0}")]
    Migrate(StoreError),
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    #[error("signing keys are unusable: {0}")]
    Signing(#[from] signing::SigningError),
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error("operator.webhook_url is refused: {0}")]
    OperatorWebhook(String),
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Configures a hub before starting it.
pub struct HubBuilder {
    settings: Settings,
}

impl HubBuilder {
    /// Opens the store, binds both listeners and starts serving.
    pub async fn start(self) -> Result<Hub, StartError> {
        let settings = self.settings;
        let config::Plan {
            store: target,
            sealing,
            upstream,
            public_base_url,
            admin_token,
            content_type,
            telemetry,
        } = settings.plan()?;
        let store = tokio::task::spawn_blocking(move || open_store(target, sealing))
            .await
            .map_err(|e| StoreError::Storage(format!("store open task failed: {e}")))??;
        let chosen = Chosen {
            upstream,
            public_base_url,
            admin_token,
            content_type,
            telemetry,
        };
        match serve(settings, chosen, store.clone()).await {
            Ok(hub) => Ok(hub),
            Err(e) => {
                // Release the store (its file lock, its writer thread) before reporting.
                store.close().await;
                Err(e)
            }
        }
    }
}

/// What the settings chose besides the store (see `config::Plan`).
struct Chosen {
    upstream: Option<url::Url>,
    public_base_url: Option<String>,
    admin_token: Option<config::Secret>,
    content_type: config::ContentType,
    telemetry: Option<config::OtlpExport>,
}

/// Opens the store the settings select. Blocking.
fn open_store(
    target: config::StoreTarget,
    sealing: store::Sealing,
) -> Result<Arc<dyn Store>, StoreError> {
    match target {
        config::StoreTarget::Embedded {
            path,
            cache_bytes,
            journal,
        } => {
            let store = RedbStore::open_sealed(&path, sealing, cache_bytes, journal)?;
            tracing::info!(path = %path.display(), "embedded store open");
            Ok(Arc::new(store))
        }
        config::StoreTarget::Postgres(postgres) => {
            let store = PostgresStore::open(&postgres, sealing)?;
            tracing::info!(
                schema_version = store::postgres_schema::schema_version(),
                "PostgreSQL store open"
            );
            Ok(Arc::new(store))
        }
    }
}

/// Brings the PostgreSQL database `store.url` names up to this build's schema and returns its
/// version; `None` for the embedded store, whose tables are made when it opens. Blocking.
pub fn migrate_store(settings: &Settings) -> Result<Option<i32>, StartError> {
    match settings.plan()?.store {
        config::StoreTarget::Embedded { .. } => Ok(None),
        config::StoreTarget::Postgres(postgres) => {
            let version =
                store::postgres_schema::migrate(&postgres).map_err(StartError::Migrate)?;
            Ok(Some(version))
        }
    }
}

pub use backup::{BackupError, BackupSummary, RestoreError, check_backup, restore_store};

/// How often a node sharing its store with others reloads the signing keys.
const KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(10);

/// Binds the listeners and starts everything on an open store.
async fn serve(
    settings: Settings,
    chosen: Chosen,
    store: Arc<dyn Store>,
) -> Result<Hub, StartError> {
    let bind = |listener: &'static str, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                listener,
                addr,
                source,
            })
    };
    let public = bind("public", settings.server.public_listen).await?;
    let admin = bind("admin", settings.server.admin_listen).await?;
    let public_addr = public.local_addr().map_err(|source| StartError::Bind {
        listener: "public",
        addr: settings.server.public_listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
        listener: "admin",
        addr: settings.server.admin_listen,
        source,
    })?;
    let public_base_url: Arc<str> = chosen
        .public_base_url
        .unwrap_or_else(|| format!("http://{public_addr}"))
        .into();
    let body_limit = DefaultBodyLimit::max(settings.limits.max_body_bytes);
    let policy = Arc::new(ssrf::Policy::from_settings(&settings.security));
    let telemetry = match &chosen.telemetry {
        None => telemetry::Telemetry::default(),
        Some(export) => {
            let collector = url::Url::parse(&export.endpoint)
                .map_err(|e| telemetry::TelemetryError(format!("otlp_endpoint: {e}")))?;
            let client = delivery::client::GuardedClient::opened_to(&policy, &collector)
                .await
                .map_err(|e| telemetry::TelemetryError(format!("the collector {collector} {e}")))?;
            let http = client.http().clone();
            let connect: telemetry::Connect = Arc::new(move |host, port| {
                let client = client.clone();
                Box::pin(async move { client.connect_tcp(&host, port).await })
            });
            telemetry::Telemetry::start(export, http, connect)?
        }
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let shutdown = CancellationToken::new();
    let (operator_notes, noted) = operator::notes();
    operator::configure_webhook(&store, &policy, &settings.operator)
        .await
        .map_err(StartError::OperatorWebhook)?;
    let backpressure =
        delivery::backpressure::Backpressure::new(delivery::backpressure::BackpressureSettings {
            after: settings.delivery.backpressure_after.0,
            max_wait: settings.delivery.backpressure_max_wait.0,
        });
    let events = domain::Events {
        store: store.clone(),
        metrics: metrics.clone(),
        telemetry: telemetry.clone(),
        idempotency_window: settings.retention.idempotency_keys.0,
        backpressure: backpressure.clone(),
    };
    let inbound = Arc::new(
        inbound::Inbound::new(
            store.clone(),
            metrics.clone(),
            public_base_url.clone(),
            policy.clone(),
            delivery::client::GuardedClient::new(policy.clone(), delivery::request::USER_AGENT)
                .map_err(|e| StoreError::Storage(format!("cannot build the HTTP client: {e}")))?,
            settings.inbound.clone(),
            inbound::InboundLimits {
                max_body_bytes: settings.limits.max_body_bytes,
                max_configs_per_task: settings.limits.max_configs_per_task,
            },
        )
        .with_telemetry(telemetry.clone())
        .with_operator(operator_notes.clone())
        .with_backpressure(backpressure.clone()),
    );
    let gateway = match &chosen.upstream {
        None => None,
        Some(upstream) => {
            let services = gateway::Services {
                store: store.clone(),
                events: events.clone(),
                inbound: inbound.clone(),
                metrics: metrics.clone(),
                policy: policy.clone(),
                lane_lease: settings.store.lane_lease.0,
                max_follows: settings.gateway.max_follows,
                shutdown: shutdown.clone(),
            };
            Some(Arc::new(gateway::Gateway::new(upstream, services).await?))
        }
    };
    let keyring =
        Arc::new(signing::Keyring::open(store.clone(), settings.signing.rotation_grace.0).await?);
    let delivery_shutdown = CancellationToken::new();
    if store.shared() {
        // Rotations made by other nodes reach this one within a reload.
        let (keyring, stop) = (keyring.clone(), delivery_shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(KEY_RELOAD);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {
                        if let Err(e) = keyring.reload().await {
                            tracing::warn!(error = %e, "cannot reload the signing keys");
                        }
                    }
                }
            }
        });
    }
    let delivery = delivery::start(
        &settings,
        delivery::Shared {
            store: store.clone(),
            policy: policy.clone(),
            metrics: metrics.clone(),
            keyring: keyring.clone(),
            issuer: public_base_url.to_string(),
            content_type: chosen.content_type,
            telemetry: telemetry.clone(),
            operator: operator_notes,
            backpressure,
        },
        delivery_shutdown.clone(),
    )
    .await?;
    // Started once nothing can fail any more: a failed start must leave the store closed.
    let retention = retention::start(
        store.clone(),
        settings.retention.clone(),
        metrics.clone(),
        delivery_shutdown.clone(),
    );
    let operator = operator::start(
        store.clone(),
        metrics.clone(),
        noted,
        delivery_shutdown.clone(),
    );
    let state = api::AppState::new(api::Shared {
        configs: domain::PushConfigs {
            store: store.clone(),
            policy,
            max_per_task: settings.limits.max_configs_per_task,
        },
        events,
        deliveries: domain::Deliveries {
            store: store.clone(),
        },
        inbound,
        gateway,
        store: store.clone(),
        settings: Arc::new(settings),
        public_base_url,
        scheduler: delivery.handle,
        metrics,
        keyring,
        admin_token: chosen.admin_token,
        shutdown: shutdown.clone(),
    });
    let follows = state.gateway.clone().map(gateway::follow::keep);
    let (public_limits, admin_limits) =
        listener::Limits::of_listeners(&state.settings.server, listener::raise_open_files_limit());
    let servers = vec![
        listener::serve(
            public,
            api::public_router(state.clone()).layer(body_limit),
            public_limits,
            state.metrics.clone(),
            0,
            shutdown.clone(),
        ),
        listener::serve(
            admin,
            api::admin_router(state.clone()).layer(body_limit),
            admin_limits,
            state.metrics.clone(),
            1,
            shutdown.clone(),
        ),
    ];
    warn_about_open_listeners(
        &state.settings,
        state.gateway.is_some(),
        state.admin_token.is_some(),
    );
    tracing::info!(%public_addr, %admin_addr, public_base_url = %state.public_base_url, "a2a-push-hub serving");
    Ok(Hub {
        public_addr,
        admin_addr,
        state,
        shutdown,
        servers,
        delivery_shutdown,
        delivery: delivery.task,
        retention,
        operator,
        follows,
        telemetry,
    })
}

/// Says at start which listener serves without authentication beyond loopback, as the
/// settings allowed it explicitly.
fn warn_about_open_listeners(settings: &Settings, gateway: bool, admin_token: bool) {
    let server = &settings.server;
    if server.public_auth == config::PublicAuth::None && !server.public_listen.ip().is_loopback() {
        if !gateway {
            tracing::warn!(public_listen = %server.public_listen, "the public listener serves push-config methods without authentication (allow_unauthenticated_public): anyone who reaches it can change any task's configs");
        } else {
            tracing::info!(
                "gateway mode: the agent's own authentication decides who may use each task's push configs"
            );
        }
    }
    if !admin_token && !server.admin_listen.ip().is_loopback() {
        tracing::warn!(admin_listen = %server.admin_listen, "the admin listener serves without admin_token (allow_unauthenticated_admin): anyone who reaches it can publish, replay and rotate keys");
    }
}

/// A running hub: both listeners bound and serving.
pub struct Hub {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    state: api::AppState,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<()>>,
    delivery_shutdown: CancellationToken,
    delivery: JoinHandle<()>,
    retention: JoinHandle<()>,
    operator: JoinHandle<()>,
    /// Gateway mode: the keeper of the follows of agents' tasks.
    follows: Option<JoinHandle<()>>,
    telemetry: telemetry::Telemetry,
}

impl Hub {
    pub fn builder(settings: Settings) -> HubBuilder {
        HubBuilder { settings }
    }

    /// The bound address of the public (A2A) listener.
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The bound address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// How peers reach the public listener.
    pub fn public_base_url(&self) -> &str {
        &self.state.public_base_url
    }

    /// Stops accepting connections, finishes in-flight requests and delivery attempts (the
    /// latter bounded by the delivery timeout), then flushes and closes the store.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for server in self.servers {
            let _ = server.await;
        }
        if let Some(follows) = self.follows {
            let _ = follows.await;
        }
        self.delivery_shutdown.cancel();
        let _ = self.delivery.await;
        let _ = self.retention.await;
        let _ = self.operator.await;
        // No attempt is in flight any more: other nodes may take this node's lanes at once.
        if let Err(e) = self.state.store.release_lanes().await {
            tracing::warn!(error = %e, "cannot give up lane leases; other nodes take them when they run out");
        }
        self.state.store.close().await;
        self.telemetry.shutdown().await;
        tracing::info!("a2a-push-hub stopped");
    }
}
