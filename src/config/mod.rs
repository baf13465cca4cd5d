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

/// Exporting spans over OTLP (docs/TRACING.md). Off unless an endpoint is set here or in
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
    /// Embedded store: commits are durable through a journal of their writes, and the file is
    /// synced at checkpoints only (docs/STORAGE.md, "The journal").
    pub journal: bool,
    /// Embedded store with the journal: how much journal (MiB) a checkpoint comes after. Less
    /// makes the start after a crash shorter and checkpoints more frequent.
    pub journal_checkpoint_mib: usize,
    /// PostgreSQL: connections for reads (besides the writer's, the batched reader's, the
    /// leases' and the wake-ups', one each).
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
            journal: false,
            journal_checkpoint_mib: 64,
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
    /// Delivery this far behind at an origin (or everywhere) slows no publisher.
    pub backpressure_after: HumanDuration,
    /// The longest a publish, inbound push or gateway push waits, after its events are
    /// durable, for delivery to catch up; `0s`: never.
    pub backpressure_max_wait: HumanDuration,
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
            backpressure_after: HumanDuration(Duration::from_millis(250)),
            backpressure_max_wait: HumanDuration(Duration::from_secs(1)),
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// The agent's A2A URL; empty = no gateway.
    pub upstream: String,
    /// The most tasks of an agent that does not push this node follows at once: each holds a
    /// stream open at the agent.
    pub max_follows: usize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            upstream: String::new(),
            max_follows: 1000,
        }
    }
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

/// The environment variables this program reads that are not settings.
const PROGRAM_VARIABLES: [&str; 3] = [
    "A2A_PUSH_HUB_CONFIG",
    "A2A_PUSH_HUB_ADMIN_URL",
    "A2A_PUSH_HUB_ADMIN_TOKEN",
];

/// Variables that start with `A2A_PUSH_HUB_` but are neither a setting
/// (`A2A_PUSH_HUB_<SECTION>__<KEY>`) nor one the program reads, each with what it may have
/// meant: a warning, since such a variable is silently ignored otherwise.
pub fn unknown_environment(variables: impl Iterator<Item = String>) -> Vec<String> {
    variables
        .filter(|name| name.starts_with("A2A_PUSH_HUB_") && !name.contains("__"))
        .filter(|name| !PROGRAM_VARIABLES.contains(&name.as_str()))
        .filter(|name| !name.starts_with("A2A_PUSH_HUB_TEST_"))
        .map(|name| {
            let rest = &name["A2A_PUSH_HUB_".len()..];
            let hint = sections()
                .into_iter()
                .find(|section| {
                    rest.to_ascii_lowercase()
                        .strip_prefix(&format!("{section}_"))
                        .is_some()
                })
                .map(|section| {
                    format!(
                        "; did you mean A2A_PUSH_HUB_{}__{}?",
                        section.to_ascii_uppercase(),
                        &rest[section.len() + 1..]
                    )
                })
                .unwrap_or_default();
            format!(
                "environment variable {name} is not a setting and is ignored: settings are A2A_PUSH_HUB_<SECTION>__<KEY>, with two underscores between section and key{hint}"
            )
        })
        .collect()
}

/// The sections of the settings, as in the TOML file: the fields of `Settings`.
fn sections() -> Vec<String> {
    match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Figment's errors as a person fixes them: which key, in which file or variable, and for an
/// unknown key the nearest known one.
fn describe_errors(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let path: Vec<String> = e.path.clone();
            let source = match &e.metadata {
                Some(md) if md.name.contains("environment") => format!(
                    "environment variable A2A_PUSH_HUB_{}",
                    path.iter()
                        .map(|p| p.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join("__")
                ),
                Some(md) => match &md.source {
                    Some(figment::Source::File(file)) => file.display().to_string(),
                    _ => md.name.to_string(),
                },
                None => "the settings".to_string(),
            };
            let key = path.join(".");
            match &e.kind {
                figment::error::Kind::UnknownField(field, expected) => {
                    let section = path[..path.len().saturating_sub(1)].join(".");
                    let nearest = expected
                        .iter()
                        .map(|known| (strsim::levenshtein(field, known), known))
                        .filter(|(distance, _)| *distance <= 3)
                        .min()
                        .map(|(_, known)| format!("did you mean `{known}`? "))
                        .unwrap_or_default();
                    let within = if section.is_empty() {
                        "the sections are".to_string()
                    } else {
                        format!("`[{section}]` has")
                    };
                    format!(
                        "`{key}` (in {source}) is not a setting; {nearest}{within}: {}",
                        expected.join(", ")
                    )
                }
                kind => format!("`{key}` (in {source}): {kind}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
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
            .map_err(|e| SettingsError::Parse(describe_errors(e)))?;
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
    fn a_misspelled_key_is_named_with_its_file_and_the_nearest_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub.toml");
        std::fs::write(&file, "[delivery]\ntimout = \"5s\"\n").unwrap();
        let error = Settings::load(Some(&file), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("`delivery.timout`"), "{error}");
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains("did you mean `timeout`?"), "{error}");
        assert!(!error.contains("default."), "{error}");
        std::fs::write(&file, "[delivry]\ntimeout = \"5s\"\n").unwrap();
        let error = Settings::load(Some(&file), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("did you mean `delivery`?"), "{error}");
    }

    #[test]
    fn a_variable_with_one_underscore_too_few_is_pointed_out() {
        let warnings = unknown_environment(
            [
                "A2A_PUSH_HUB_DELIVERY_TIMEOUT",
                "A2A_PUSH_HUB_DELIVERY__TIMEOUT",
                "A2A_PUSH_HUB_CONFIG",
                "A2A_PUSH_HUB_WHATEVER",
                "PATH",
            ]
            .into_iter()
            .map(String::from),
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("did you mean A2A_PUSH_HUB_DELIVERY__TIMEOUT?"));
        assert!(warnings[1].starts_with("environment variable A2A_PUSH_HUB_WHATEVER"));
    }

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

    #[test]
    fn a_backpressure_wait_longer_than_publishers_wait_is_refused() {
        let mut settings = Settings::default();
        settings.delivery.backpressure_max_wait = HumanDuration(Duration::from_secs(30));
        let err = settings.validate().unwrap_err().to_string();
        assert!(
            err.contains("delivery.backpressure_max_wait") && err.contains("at most 10s"),
            "{err}"
        );
        settings.delivery.backpressure_max_wait = HumanDuration(Duration::ZERO);
        settings.validate().expect("0s switches it off");
    }
}
