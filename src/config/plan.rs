//! Checking settings, and the plan they make: every choice the settings make, parsed once into
//! what it selects (the store to open, the agent behind the hub, the URL peers are told, the
//! admin token, the body's content type), so that nothing after the start parses a setting
//! again or reads an empty string as "not set".

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::store::{LeaseSettings, PostgresSettings, Sealing, postgres_schema};

/// What the settings select, parsed (`Settings::plan`).
pub(crate) struct Plan {
    pub store: StoreTarget,
    /// Seals the records that hold secrets, when `store.encryption_key` is set.
    pub sealing: Sealing,
    /// Gateway mode: the A2A agent behind the hub.
    pub upstream: Option<url::Url>,
    /// How peers reach the public listener, when `server.public_base_url` says so (else the
    /// listener's bound address, known once bound); without a trailing `/`.
    pub public_base_url: Option<String>,
    /// What admin requests must carry as `Authorization: Bearer …`, when set.
    pub admin_token: Option<Secret>,
    /// The `Content-Type` of 1.0 deliveries.
    pub content_type: ContentType,
    /// Where spans are exported, when telemetry is on.
    pub telemetry: Option<super::OtlpExport>,
}

/// The store the hub keeps its state in.
pub(crate) enum StoreTarget {
    /// The embedded store in this folder, with this much page cache, and its journal with
    /// checkpoints every so many bytes when it is on.
    Embedded {
        path: PathBuf,
        cache_bytes: usize,
        journal: Option<u64>,
    },
    /// A PostgreSQL database (its URL parsed, its TLS settings read).
    Postgres(Box<PostgresSettings>),
}

/// The `Content-Type` of 1.0 deliveries (`delivery.content_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentType {
    A2aJson,
    Json,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::A2aJson => "application/a2a+json",
            ContentType::Json => "application/json",
        }
    }
}

/// `value`, or `None` when it is empty (a setting left unset).
fn set(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

impl Settings {
    /// Checks every value, so that an operator never believes a setting is in force when it is
    /// not.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.plan().map(|_| ())
    }

    /// Checks every value and parses what the settings select.
    pub(crate) fn plan(&self) -> Result<Plan, SettingsError> {
        let timeout = self.delivery.timeout.0;
        if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(60) {
            return Err(SettingsError::Invalid {
                key: "delivery.timeout",
                reason: format!("must be between 1s and 60s, got {}", self.delivery.timeout),
            });
        }
        if !(0.0..=1.0).contains(&self.delivery.jitter) {
            return Err(SettingsError::Invalid {
                key: "delivery.jitter",
                reason: format!("must be between 0 and 1, got {}", self.delivery.jitter),
            });
        }
        if self.delivery.retry_schedule.len() > 100 {
            return Err(SettingsError::Invalid {
                key: "delivery.retry_schedule",
                reason: "at most 100 retries".to_string(),
            });
        }
        if self.delivery.max_in_flight == 0 || self.delivery.max_in_flight_per_origin == 0 {
            return Err(SettingsError::Invalid {
                key: "delivery.max_in_flight",
                reason: "limits must be at least 1".to_string(),
            });
        }
        let rate = self.delivery.max_rate_per_origin;
        if !rate.is_finite() || !(0.0..=1_000_000.0).contains(&rate) {
            return Err(SettingsError::Invalid {
                key: "delivery.max_rate_per_origin",
                reason: format!(
                    "must be between 0 (no cap) and 1000000 requests per second, got {rate}"
                ),
            });
        }
        if self.delivery.backpressure_max_wait.0 > Duration::from_secs(10) {
            return Err(SettingsError::Invalid {
                key: "delivery.backpressure_max_wait",
                reason: format!(
                    "must be at most 10s (publishers' own timeouts are often 5-10s), got {}",
                    self.delivery.backpressure_max_wait
                ),
            });
        }
        if self.delivery.backpressure_after.0 > Duration::from_secs(3600) {
            return Err(SettingsError::Invalid {
                key: "delivery.backpressure_after",
                reason: format!(
                    "must be at most 1h (to never slow publishers, set delivery.backpressure_max_wait = \"0s\"), got {}",
                    self.delivery.backpressure_after
                ),
            });
        }
        within("store.cache_mib", self.store.cache_mib, 1..=65_536)?;
        within(
            "store.journal_checkpoint_mib",
            self.store.journal_checkpoint_mib,
            1..=4_096,
        )?;
        for (key, period) in [
            ("retention.finished_tasks", &self.retention.finished_tasks),
            ("retention.inbound_events", &self.retention.inbound_events),
            (
                "retention.idempotency_keys",
                &self.retention.idempotency_keys,
            ),
        ] {
            if period.0 < Duration::from_secs(1) {
                return Err(SettingsError::Invalid {
                    key,
                    reason: format!(
                        "must be at least 1s, got {period} (to keep records for longer, give a longer period, e.g. \"365d\")"
                    ),
                });
            }
        }
        if self.delivery.circuit_threshold == 0 {
            return Err(SettingsError::Invalid {
                key: "delivery.circuit_threshold",
                reason: "must be at least 1".to_string(),
            });
        }
        if self.delivery.circuit_cooldown.0 > self.delivery.circuit_max_cooldown.0
            || self.delivery.circuit_cooldown.0.is_zero()
        {
            return Err(SettingsError::Invalid {
                key: "delivery.circuit_cooldown",
                reason: "must be above zero and at most delivery.circuit_max_cooldown".to_string(),
            });
        }
        let rate = self.inbound.rate_limit_per_second;
        if rate.is_nan() || rate <= 0.0 || self.inbound.rate_limit_burst == 0 {
            return Err(SettingsError::Invalid {
                key: "inbound.rate_limit_per_second",
                reason: "the rate and the burst must be above zero".to_string(),
            });
        }
        let content_type = match self.delivery.content_type.as_str() {
            "application/a2a+json" => ContentType::A2aJson,
            "application/json" => ContentType::Json,
            other => {
                return Err(SettingsError::Invalid {
                    key: "delivery.content_type",
                    reason: format!(
                        "must be \"application/a2a+json\" or \"application/json\", got {other:?}"
                    ),
                });
            }
        };
        within(
            "limits.max_body_bytes",
            self.limits.max_body_bytes,
            1024..=64 * 1024 * 1024,
        )?;
        let public_base_url = set(&self.server.public_base_url)
            .map(|url| match url::Url::parse(url) {
                Ok(_) => Ok(url.trim_end_matches('/').to_string()),
                Err(e) => Err(SettingsError::Invalid {
                    key: "server.public_base_url",
                    reason: format!("not a URL: {e}"),
                }),
            })
            .transpose()?;
        if public_base_url.is_none() && self.server.public_listen.ip().is_unspecified() {
            return Err(SettingsError::Invalid {
                key: "server.public_base_url",
                reason: format!(
                    "must be set when server.public_listen is the wildcard address {}: peers are told this URL and JWTs name it as their issuer, e.g. \"https://hub.example.com\"",
                    self.server.public_listen.ip()
                ),
            });
        }
        self.validate_listeners()?;
        within(
            "limits.max_configs_per_task",
            self.limits.max_configs_per_task,
            1..=1000,
        )?;
        within("gateway.max_follows", self.gateway.max_follows, 1..=100_000)?;
        within(
            "inbound.replay_cache_max_entries",
            self.inbound.replay_cache_max_entries,
            1..=10_000_000,
        )?;
        let postgres = set(self.store.url.expose())
            .map(|url| {
                postgres_schema::parse_url(url).map_err(|reason| SettingsError::Invalid {
                    key: "store.url",
                    reason,
                })
            })
            .transpose()?;
        within("store.pool_size", self.store.pool_size, 1..=256)?;
        // A node starts an attempt only while its lease outlasts the attempt's timeout, and it
        // renews a third of the way through: the lease must leave room for both.
        let least_lease = timeout * 2 + Duration::from_secs(1);
        if self.store.lane_lease.0 < least_lease
            || self.store.lane_lease.0 > Duration::from_secs(3600)
        {
            return Err(SettingsError::Invalid {
                key: "store.lane_lease",
                reason: format!(
                    "must be at least twice delivery.timeout plus 1s ({}) and at most 1h, got {}",
                    HumanDuration(least_lease),
                    self.store.lane_lease
                ),
            });
        }
        let connect_timeout = self.store.connect_timeout.0;
        if connect_timeout < Duration::from_millis(100)
            || connect_timeout > Duration::from_secs(120)
        {
            return Err(SettingsError::Invalid {
                key: "store.connect_timeout",
                reason: format!(
                    "must be between 100ms and 120s, got {}",
                    self.store.connect_timeout
                ),
            });
        }
        let sealing = match set(self.store.encryption_key.expose()) {
            None => Sealing::none(),
            Some(key) if key.len() < 32 => {
                return Err(SettingsError::Invalid {
                    key: "store.encryption_key",
                    reason: "must be at least 32 characters of random text (for example `openssl rand -base64 32`)".to_string(),
                });
            }
            Some(key) => Sealing::with_key(key),
        };
        let upstream = set(&self.gateway.upstream)
            .map(|url| {
                let upstream = url::Url::parse(url).map_err(|e| SettingsError::Invalid {
                    key: "gateway.upstream",
                    reason: format!("not a URL: {e}"),
                })?;
                if !matches!(upstream.scheme(), "http" | "https") || upstream.host().is_none() {
                    return Err(SettingsError::Invalid {
                        key: "gateway.upstream",
                        reason: "must be the agent's http(s) URL, e.g. http://127.0.0.1:9999/"
                            .to_string(),
                    });
                }
                Ok(upstream)
            })
            .transpose()?;
        let store = match postgres {
            None => StoreTarget::Embedded {
                path: self.store.path.clone(),
                cache_bytes: self.store.cache_mib * 1024 * 1024,
                journal: self
                    .store
                    .journal
                    .then_some((self.store.journal_checkpoint_mib as u64) << 20),
            },
            Some(target) => StoreTarget::Postgres(Box::new(PostgresSettings {
                target,
                pool_size: self.store.pool_size,
                connect_timeout: self.store.connect_timeout.0,
                leases: LeaseSettings {
                    node: format!("node-{}", uuid::Uuid::new_v4().simple()),
                    lease: self.store.lane_lease.0,
                },
            })),
        };
        Ok(Plan {
            store,
            sealing,
            upstream,
            public_base_url,
            admin_token: set(self.server.admin_token.expose()).map(Secret::new),
            content_type,
            telemetry: super::OtlpExport::plan(&self.telemetry, |name| std::env::var(name).ok())?,
        })
    }

    /// Who may reach each listener, and how long and how many connections they may hold.
    fn validate_listeners(&self) -> Result<(), SettingsError> {
        let server = &self.server;
        let gateway = !self.gateway.upstream.is_empty();
        if server.public_auth == PublicAuth::None
            && !server.public_listen.ip().is_loopback()
            && !server.allow_unauthenticated_public
            && !gateway
        {
            return Err(SettingsError::Invalid {
                key: "server.public_auth",
                reason: format!(
                    "is \"none\" while server.public_listen ({}) is not a loopback address: anyone who reaches it could replace any task's push configs. Set public_auth = \"api_keys\" (with [[server.api_keys]]) or \"jwt\" (with [server.jwt]), or, on a trusted network only, allow_unauthenticated_public = true",
                    server.public_listen
                ),
            });
        }
        match server.public_auth {
            PublicAuth::None => {}
            PublicAuth::ApiKeys => {
                if server.api_keys.is_empty() {
                    return Err(SettingsError::Invalid {
                        key: "server.api_keys",
                        reason: "public_auth = \"api_keys\" needs at least one [[server.api_keys]] entry with principal and sha256".to_string(),
                    });
                }
                for (i, key) in server.api_keys.iter().enumerate() {
                    if key.principal.is_empty() || key.principal.len() > 256 {
                        return Err(SettingsError::Invalid {
                            key: "server.api_keys",
                            reason: format!("entry {i}: principal must be 1 to 256 characters"),
                        });
                    }
                    if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(SettingsError::Invalid {
                            key: "server.api_keys",
                            reason: format!(
                                "entry {i} ({}): sha256 must be the 64 hex digits of the key's SHA-256 (printf %s \"$KEY\" | sha256sum)",
                                key.principal
                            ),
                        });
                    }
                }
            }
            PublicAuth::Jwt => {
                let Some(jwt) = &server.jwt else {
                    return Err(SettingsError::Invalid {
                        key: "server.jwt",
                        reason: "public_auth = \"jwt\" needs [server.jwt] with jwks_url, issuer and audience".to_string(),
                    });
                };
                let url = url::Url::parse(&jwt.jwks_url).map_err(|e| SettingsError::Invalid {
                    key: "server.jwt.jwks_url",
                    reason: format!("not a URL: {e}"),
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(SettingsError::Invalid {
                        key: "server.jwt.jwks_url",
                        reason: "must be an http(s) URL".to_string(),
                    });
                }
                if jwt.issuer.is_empty() || jwt.audience.is_empty() {
                    return Err(SettingsError::Invalid {
                        key: "server.jwt",
                        reason: "issuer and audience must not be empty".to_string(),
                    });
                }
            }
        }
        if server.admin_token.is_empty()
            && !server.admin_listen.ip().is_loopback()
            && !server.allow_unauthenticated_admin
        {
            return Err(SettingsError::Invalid {
                key: "server.admin_token",
                reason: format!(
                    "must be set while server.admin_listen ({}) is not a loopback address: the admin API publishes events, replays deliveries and rotates keys. Set admin_token (e.g. `openssl rand -base64 32`), or, on a trusted network only, allow_unauthenticated_admin = true",
                    server.admin_listen
                ),
            });
        }
        for (key, limit) in [
            ("server.max_connections", server.max_connections),
            ("server.admin_max_connections", server.admin_max_connections),
        ] {
            if !(1..=1_000_000).contains(&limit) {
                return Err(SettingsError::Invalid {
                    key,
                    reason: format!("must be between 1 and 1000000, got {limit}"),
                });
            }
        }
        for (key, timeout) in [
            ("server.header_read_timeout", server.header_read_timeout),
            ("server.body_read_timeout", server.body_read_timeout),
            ("server.idle_timeout", server.idle_timeout),
        ] {
            if timeout.0 < Duration::from_millis(100) || timeout.0 > Duration::from_secs(3600) {
                return Err(SettingsError::Invalid {
                    key,
                    reason: format!("must be between 100ms and 1h, got {timeout}"),
                });
            }
        }
        for host in &server.allowed_hosts {
            if host.is_empty() || host.contains(['/', ' ', ':']) {
                return Err(SettingsError::Invalid {
                    key: "server.allowed_hosts",
                    reason: format!(
                        "{host:?} is not a host name (give names without scheme or port, e.g. \"hub.example.com\")"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Refuses a count setting outside the range it may take, saying which.
fn within(
    key: &'static str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<(), SettingsError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(SettingsError::Invalid {
            key,
            reason: format!(
                "must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        })
    }
}
