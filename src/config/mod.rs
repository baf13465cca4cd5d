//! Settings: the contract of the README's "Configuration", loaded from defaults, then a TOML file, then
//! `A2A_PUSH_HUB_<SECTION>__<KEY>` environment variables, then command-line flags.
//!
//! This module only parses and checks values; it never opens sockets or files other than the
//! settings file itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod plan;
mod telemetry;
mod values;

pub use crate::secret::Secret;
pub(crate) use plan::{ContentType, Plan, StoreTarget};
pub(crate) use telemetry::OtlpExport;
pub use values::{HumanDuration, parse_duration};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Every setting of the hub. Field names are the TOML contract of the README's "Configuration".
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub delivery: DeliverySettings,
    pub security: SecuritySettings,
    pub limits: LimitSettings,
    pub gateway: GatewaySettings,
    pub retention: RetentionSettings,
    pub signing: SigningSettings,
    pub inbound: InboundSettings,
    pub telemetry: TelemetrySettings,
    pub operator: OperatorSettings,
}

/// Exporting spans over OTLP (README, "Tracing"). Off unless an endpoint is set here or in
/// the standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector: `http://host:4318` for `http/protobuf` (`/v1/traces` is added to a URL
    /// without a path), `http://host:4317` for `grpc`. Empty: the `OTEL_*` variables decide.
    pub otlp_endpoint: String,
    /// `http/protobuf` or `grpc`; empty: `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
    pub otlp_protocol: String,
    /// The `service.name` of the hub's spans; empty: `OTEL_SERVICE_NAME`, else `a2a-push-hub`.
    pub service_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundSettings {
    /// Sustained requests per second one subscription may send; beyond it, 429.
    pub rate_limit_per_second: f64,
    /// Requests one subscription may send in a burst.
    pub rate_limit_burst: u32,
    /// Replay-cache entries kept per subscription; past it the entries closest to expiring
    /// go first (counted in `a2a_push_hub_inbound_replay_evictions_total`).
    pub replay_cache_max_entries: usize,
}

impl Default for InboundSettings {
    fn default() -> Self {
        InboundSettings {
            rate_limit_per_second: 50.0,
            rate_limit_burst: 100,
            replay_cache_max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSettings {
    /// How long keys replaced by a rotation stay in the JWKS (and Ed25519 keys keep
    /// co-signing) before they retire.
    pub rotation_grace: HumanDuration,
}

impl Default for SigningSettings {
    fn default() -> Self {
        SigningSettings {
            rotation_grace: HumanDuration(Duration::from_secs(24 * 3600)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub public_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// How peers reach the public listener; empty means `http://{public_listen}`.
    pub public_base_url: String,
    /// Non-empty: the admin API requires `Authorization: Bearer <admin_token>`.
    pub admin_token: Secret,
    /// Who may call the push-config methods of the public listener.
    pub public_auth: PublicAuth,
    /// `public_auth = "api_keys"`: the keys, by the SHA-256 of each.
    pub api_keys: Vec<ApiKey>,
    /// `public_auth = "jwt"`: where the callers' JWTs are verified.
    pub jwt: Option<JwtAuthSettings>,
    /// Lets `public_auth = "none"` serve on an address other than loopback (a trusted network).
    pub allow_unauthenticated_public: bool,
    /// Lets the admin listener serve without `admin_token` on an address other than loopback.
    pub allow_unauthenticated_admin: bool,
    /// Host names (besides IP addresses, `localhost` and `public_base_url`'s host) that requests
    /// may name in `Host`; anything else is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Open connections the public listener keeps; more are closed at once.
    pub max_connections: usize,
    /// Open connections the admin listener keeps, apart from the public listener's, so
    /// operators reach `/healthz` and `/metrics` during a flood.
    pub admin_max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: HumanDuration,
    /// How long a client may take to send a request's whole body.
    pub body_read_timeout: HumanDuration,
    /// How long a connection may stay open with no request in progress.
    pub idle_timeout: HumanDuration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            public_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            public_base_url: String::new(),
            admin_token: Secret::default(),
            public_auth: PublicAuth::None,
            api_keys: Vec::new(),
            jwt: None,
            allow_unauthenticated_public: false,
            allow_unauthenticated_admin: false,
            allowed_hosts: Vec::new(),
            max_connections: 10_000,
            admin_max_connections: 256,
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            body_read_timeout: HumanDuration(Duration::from_secs(30)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// How callers of the public listener's push-config methods authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PublicAuth {
    /// Anyone who reaches the listener; allowed only on loopback unless
    /// `allow_unauthenticated_public` is set.
    #[default]
    None,
    /// `Authorization: Bearer <key>` or `X-API-Key: <key>`, one of `api_keys`.
    ApiKeys,
    /// `Authorization: Bearer <JWT>` verified against `jwt.jwks_url`; the principal is `sub`.
    Jwt,
}

impl PublicAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicAuth::None => "none",
            PublicAuth::ApiKeys => "api_keys",
            PublicAuth::Jwt => "jwt",
        }
    }
}

/// One API key of `public_auth = "api_keys"`: the key itself never sits in a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Who calls with this key; owns the tasks it registers configs for.
    pub principal: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
}

/// Where `public_auth = "jwt"` verifies callers' bearer JWTs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthSettings {
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Folder of the embedded store.
    pub path: PathBuf,
    /// `postgres://…` selects PostgreSQL instead of the embedded store.
    pub url: Secret,
    /// Encrypts the records holding secrets (configs, signing keys) at rest when set.
    pub encryption_key: Secret,
    /// Memory the embedded store may use to cache its pages, in MiB.
    pub cache_mib: usize,
    /// PostgreSQL: connections for reads (the writer has one more of its own).
    pub pool_size: usize,
    /// PostgreSQL: how long connecting may take before the store counts as unavailable.
    pub connect_timeout: HumanDuration,
    /// PostgreSQL: how long a node holds a lane without renewing; a node that dies gives its
    /// lanes to the others after this long.
    pub lane_lease: HumanDuration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            path: PathBuf::from("./a2a-push-hub-data"),
            url: Secret::default(),
            encryption_key: Secret::default(),
            cache_mib: 64,
            pool_size: 8,
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            lane_lease: HumanDuration(Duration::from_secs(40)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    pub timeout: HumanDuration,
    pub retry_schedule: Vec<HumanDuration>,
    pub jitter: f64,
    pub max_in_flight: usize,
    /// Requests open at one scheme://host:port; a slot is free again once the receiver answered.
    pub max_in_flight_per_origin: usize,
    /// Attempts per second one scheme://host:port may get (a token bucket; on several nodes,
    /// all of them together); 0: no cap.
    pub max_rate_per_origin: f64,
    pub content_type: String,
    /// Least wait after a 429 or a timeout, whatever the schedule says.
    pub throttle_backoff: HumanDuration,
    /// Consecutive failures of an origin that open its circuit.
    pub circuit_threshold: u32,
    /// First cool-down of an open circuit; doubles after each failed probe.
    pub circuit_cooldown: HumanDuration,
    pub circuit_max_cooldown: HumanDuration,
    /// A config whose attempts have all failed for this long is suspended: its deliveries are
    /// held until it is enabled again. `0s`: never.
    pub disable_after: HumanDuration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        let schedule = [
            "1s", "5s", "30s", "2m", "10m", "30m", "1h", "3h", "6h", "12h", "24h",
        ];
        DeliverySettings {
            timeout: HumanDuration(Duration::from_secs(15)),
            retry_schedule: schedule
                .iter()
                .map(|s| HumanDuration(parse_duration(s).expect("default schedule parses")))
                .collect(),
            jitter: 0.2,
            max_in_flight: 512,
            max_in_flight_per_origin: 32,
            max_rate_per_origin: 0.0,
            content_type: "application/a2a+json".to_string(),
            throttle_backoff: HumanDuration(Duration::from_secs(30)),
            circuit_threshold: 5,
            circuit_cooldown: HumanDuration(Duration::from_secs(5)),
            circuit_max_cooldown: HumanDuration(Duration::from_secs(300)),
            disable_after: HumanDuration(Duration::from_secs(5 * 24 * 3600)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    pub allow_private_networks: bool,
    pub allowed_subnets: Vec<IpNet>,
    pub https_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    pub max_body_bytes: usize,
    /// Push configs one task may have: each is a delivery of every event.
    pub max_configs_per_task: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_body_bytes: 1024 * 1024,
            max_configs_per_task: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// The agent's A2A URL; empty = no gateway.
    pub upstream: String,
}

/// Where operator events are delivered, besides `GET /api/v1/operator/events`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorSettings {
    /// The operator webhook; empty: events are only kept and listed.
    pub webhook_url: String,
    /// Sent as the webhook's token (`X-A2A-Notification-Token`); a `whsec_` secret makes the
    /// hub add a Standard Webhooks `v1` HMAC signature instead.
    pub webhook_token: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// How long a finished task is kept after its last event.
    pub finished_tasks: HumanDuration,
    /// How long an accepted inbound event is kept for pull and SSE.
    pub inbound_events: HumanDuration,
    /// How long the event API remembers an idempotency key: a publish retried with the same
    /// key within this window is answered as the first time.
    pub idempotency_keys: HumanDuration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let week = HumanDuration(Duration::from_secs(7 * 24 * 3600));
        RetentionSettings {
            finished_tasks: week,
            inbound_events: week,
            idempotency_keys: HumanDuration(Duration::from_secs(24 * 3600)),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub public_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub upstream: Option<String>,
    pub allow_private_networks: bool,
    pub store_url: Option<String>,
}

/// Why settings could not be loaded; says which source and which key to fix.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid settings: {0}")]
    Parse(String),
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Settings {
    /// Loads defaults → `file` → environment → `overrides`, then checks every value.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::MissingFile {
                    path: path.to_path_buf(),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only `SECTION__KEY` variables are settings; others with the prefix (such as
        // A2A_PUSH_HUB_CONFIG, the settings file of the CLI) are not.
        figment = figment.merge(
            Env::prefixed("A2A_PUSH_HUB_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| SettingsError::Parse(e.to_string()))?;
        settings.apply(overrides);
        settings.validate()?;
        Ok(settings)
    }

    fn apply(&mut self, overrides: &Overrides) {
        if let Some(addr) = overrides.public_listen {
            self.server.public_listen = addr;
        }
        if let Some(addr) = overrides.admin_listen {
            self.server.admin_listen = addr;
        }
        if let Some(dir) = &overrides.data_dir {
            self.store.path = dir.clone();
        }
        if let Some(upstream) = &overrides.upstream {
            self.gateway.upstream = upstream.clone();
        }
        if overrides.allow_private_networks {
            self.security.allow_private_networks = true;
        }
        if let Some(url) = &overrides.store_url {
            self.store.url = Secret::new(url.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_print_back() {
        for (text, ms) in [
            ("250ms", 250),
            ("15s", 15_000),
            ("2m", 120_000),
            ("3h", 10_800_000),
            ("7d", 604_800_000),
        ] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parsed, Duration::from_millis(ms));
            assert_eq!(HumanDuration(parsed).to_string(), text);
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        assert!(parse_duration("15").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("1.5s").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").unwrap_err().contains("whole number"));
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let settings = Settings::default();
        settings.validate().unwrap();
        assert_eq!(settings.server.public_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.server.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(settings.delivery.retry_schedule.len(), 11);
        let plan = settings.plan().unwrap();
        assert!(plan.public_base_url.is_none() && plan.upstream.is_none());
        assert!(matches!(plan.store, StoreTarget::Embedded { .. }));
        assert_eq!(plan.content_type, ContentType::A2aJson);
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let mut settings = Settings::default();
        settings.server.admin_token = Secret::new("hunter2");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn out_of_range_timeout_names_the_key() {
        let mut settings = Settings::default();
        settings.delivery.timeout = HumanDuration(Duration::from_secs(120));
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("delivery.timeout"), "{err}");
    }
}
