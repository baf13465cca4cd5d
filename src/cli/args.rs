//! The command line as clap parses it: every subcommand, flag and its help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::admin_client::AdminClient;

#[derive(Parser)]
#[command(
    name = "a2a-push-hub",
    version,
    about = "Reliable, signed and observable A2A task push notifications"
)]
pub struct Cli {
    /// Log format on standard error; filter with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the hub: the public A2A listener and the admin listener.
    Serve {
        /// TOML settings file (also A2A_PUSH_HUB_CONFIG).
        #[arg(long, env = "A2A_PUSH_HUB_CONFIG")]
        config: Option<PathBuf>,
        /// Public listener address (server.public_listen).
        #[arg(long)]
        public_listen: Option<SocketAddr>,
        /// Admin listener address (server.admin_listen).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Folder of the embedded store (store.path).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The A2A agent to put the hub in front of (gateway.upstream).
        #[arg(long)]
        upstream: Option<String>,
        /// Allow webhooks on private and loopback networks (security.allow_private_networks).
        #[arg(long)]
        allow_private_networks: bool,
        /// PostgreSQL instead of the embedded store (store.url). A password on the command
        /// line is visible to other users of the machine: prefer A2A_PUSH_HUB_STORE__URL.
        #[arg(long)]
        store_url: Option<String>,
    },
    /// Bring the PostgreSQL schema up to this version's (`serve` does it too at start).
    Migrate {
        /// TOML settings file (also A2A_PUSH_HUB_CONFIG).
        #[arg(long, env = "A2A_PUSH_HUB_CONFIG")]
        config: Option<PathBuf>,
        /// The database (store.url; prefer A2A_PUSH_HUB_STORE__URL for a password).
        #[arg(long)]
        store_url: Option<String>,
    },
    /// List or rotate the hub's signing keys through a running hub's admin API.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Check a captured delivery (headers and body) against the hub's keys or a secret, and
    /// say which checks passed. Exit code 0 when every check passed.
    Verify(VerifyArgs),
    /// Inspect and replay deliveries through a running hub's admin API.
    Deliveries {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: DeliveriesAction,
    },
}

/// Filters shared by `list` and `replay`.
#[derive(clap::Args)]
pub struct DeliveryFilterArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub task_id: Option<String>,
    #[arg(long)]
    pub config_id: Option<String>,
    /// pending, delivered, dead or canceled.
    #[arg(long)]
    pub state: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time.
    #[arg(long)]
    pub created_after: Option<String>,
    /// Only deliveries created before this RFC 3339 time.
    #[arg(long)]
    pub created_before: Option<String>,
}

/// Where the admin API of a running hub is.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The admin listener's URL.
    #[arg(
        long,
        env = "A2A_PUSH_HUB_ADMIN_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub admin_url: String,
    /// The admin token, when the hub has one (server.admin_token).
    #[arg(
        long,
        env = "A2A_PUSH_HUB_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
}

impl AdminArgs {
    pub fn client(self) -> AdminClient {
        AdminClient::new(&self.admin_url, self.admin_token)
    }
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// List the keys in force (never private material).
    List,
    /// Sign with new keys from now on; the old ones stay valid for `signing.rotation_grace`.
    Rotate,
}

#[derive(Subcommand)]
pub enum DeliveriesAction {
    /// List deliveries, oldest first.
    List {
        #[command(flatten)]
        filter: DeliveryFilterArgs,
        #[arg(long)]
        limit: Option<usize>,
        /// The `nextCursor` of the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one delivery with its attempt log.
    Show { delivery_id: String },
    /// Replay one delivery, or (without an id) every delivery matching the filters; by
    /// default the dead ones.
    Replay {
        delivery_id: Option<String>,
        #[command(flatten)]
        filter: DeliveryFilterArgs,
    },
}

impl DeliveryFilterArgs {
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("tenant", &self.tenant),
            ("taskId", &self.task_id),
            ("configId", &self.config_id),
            ("state", &self.state),
            ("createdAfter", &self.created_after),
            ("createdBefore", &self.created_before),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The captured HTTP request: optional request line, headers, blank line, body.
    #[arg(long)]
    pub request: PathBuf,
    /// The JWKS (URL or file) to check `v1a` signatures and the JWT against.
    #[arg(long)]
    pub jwks: Option<String>,
    /// A Standard Webhooks secret (whsec_...) to check the `v1` signature.
    #[arg(long)]
    pub secret: Option<String>,
    /// An Ed25519 public key (whpk_...) to check `v1a` signatures; repeatable.
    #[arg(long)]
    pub public_key: Vec<String>,
    /// The JWT's expected `aud`: the webhook URL the request was sent to.
    #[arg(long)]
    pub audience: Option<String>,
    /// The JWT's expected `iss`: the hub's public base URL.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Accepted age (and clock skew) of `webhook-timestamp`.
    #[arg(long, default_value = "300s")]
    pub tolerance: String,
    /// Allow fetching the JWKS from loopback or private addresses.
    #[arg(long)]
    pub allow_private_networks: bool,
}
