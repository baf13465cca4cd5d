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
    /// Copy a running hub's embedded store to a file, through its admin API: one consistent
    /// moment of it, checked before the command succeeds. (A PostgreSQL store is backed up
    /// with PostgreSQL's own tools.)
    Backup {
        #[command(flatten)]
        admin: AdminArgs,
        /// The file to write; it must not exist yet.
        #[arg(long)]
        to: PathBuf,
    },
    /// Make a new embedded store folder from a backup file; then serve it with
    /// `serve --data-dir DIR` (and the same store.encryption_key).
    Restore {
        /// The backup file (`a2a-push-hub backup`).
        #[arg(long)]
        from: PathBuf,
        /// The folder to create the store in; it must not hold a store yet.
        #[arg(long)]
        data_dir: PathBuf,
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
    /// Grade how an A2A agent pushes task updates: drive tasks as a client, receive the
    /// pushes on the probe's own webhook (answering with faults on purpose), and report each
    /// check with its evidence. Exit code 1 when a MUST check failed, 2 when the probe could
    /// not run.
    Probe(ProbeArgs),
    /// Inspect and replay deliveries through a running hub's admin API.
    Deliveries {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: DeliveriesAction,
    },
    /// What needs an operator (dead deliveries, configs disabled or recovered, circuits,
    /// rejected inbound pushes), through a running hub's admin API.
    Operator {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// A push config's health and event filter, enabling a suspended one, and a tenant's
    /// default filter, through a running hub's admin API.
    Configs {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: ConfigsAction,
    },
    /// Inbound subscriptions — where peer agents push, verified — through a running hub's
    /// admin API.
    Subscriptions {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: SubscriptionsAction,
    },
    /// The MCP bridge for an agent session (docs/MCP.md): an MCP server on stdin/stdout that
    /// an MCP host spawns. It relays the tools of a running hub's /mcp and sends a
    /// notifications/claude/channel for each push the hub accepts for a followed subscription
    /// (those given here, and those of the tasks the session delegates).
    McpStdio {
        #[command(flatten)]
        admin: AdminArgs,
        /// An inbound subscription to follow from the start (repeat for several).
        #[arg(long = "subscription", value_name = "ID")]
        subscriptions: Vec<String>,
    },
    /// How the origins (scheme://host:port) the hub delivers to are answering, through a
    /// running hub's admin API.
    Origins {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: OriginsAction,
    },
}

#[derive(Subcommand)]
pub enum SubscriptionsAction {
    /// Create one; prints it with its intake URL and the credentials peers must present
    /// (shown this once).
    Create {
        /// The tenant (default: none).
        #[arg(long)]
        tenant: Option<String>,
        /// Accept pushes for this task only.
        #[arg(long)]
        task_id: Option<String>,
        /// The token peers send (X-A2A-Notification-Token); random when not given.
        #[arg(long)]
        token: Option<String>,
        /// A Standard Webhooks secret (whsec_…) the pushes must be signed with.
        #[arg(long)]
        webhook_secret: Option<String>,
        /// Verify the peers' JWTs against this JWKS.
        #[arg(long)]
        jwks_url: Option<String>,
        /// The `iss` those JWTs must carry.
        #[arg(long)]
        issuer: Option<String>,
        /// Forward every accepted event to this webhook (delivered like any push).
        #[arg(long)]
        forward_to: Option<String>,
        /// How old a signed push or JWT may be, in seconds (1 to 3600).
        #[arg(long)]
        tolerance_seconds: Option<u64>,
        /// The whole request body as JSON (see spec/openapi.yaml), instead of the flags.
        #[arg(long, value_name = "JSON", conflicts_with_all = ["task_id", "token", "webhook_secret", "jwks_url", "issuer", "forward_to", "tolerance_seconds"])]
        body: Option<String>,
    },
    /// List the subscriptions in id order (never their secrets), a page at a time.
    List {
        /// At most this many (1 to 1000; 100 unless set).
        #[arg(long)]
        limit: Option<usize>,
        /// The `nextCursor` of the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// One subscription.
    Show {
        /// The subscription's id.
        id: String,
    },
    /// Delete one: its intake URL stops accepting pushes.
    Delete {
        /// The subscription's id.
        id: String,
    },
    /// Its accepted events, oldest first.
    Events {
        /// The subscription's id.
        id: String,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// What each push got: its verdict, every check, the conformance notes.
    Receipts {
        /// The subscription's id.
        id: String,
        /// Only receipts after this number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum OriginsAction {
    /// The origins this node attempted lately, the most recent first.
    List {
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One origin: attempts, success rate and latency over 5 minutes and an hour, failing
    /// streak, circuit and waiting deliveries.
    Health {
        /// A webhook URL or an origin, e.g. https://receiver.example
        url: String,
    },
}

/// A filter to set: `--events` or `--match`; neither shows the current one.
#[derive(clap::Args)]
#[group(multiple = false)]
pub struct FilterArgs {
    /// Which events to deliver.
    #[arg(long, value_parser = ["all", "state_changes", "terminal"])]
    pub events: Option<String>,
    /// Deliver only events matching this JSON pattern (see docs/DELIVERY.md, "Delivery filters").
    #[arg(long = "match", value_name = "JSON")]
    pub pattern: Option<String>,
}

#[derive(Subcommand)]
pub enum OperatorAction {
    /// List operator events, oldest first.
    Events {
        /// Only events after this sequence number (the `nextAfter` of the previous page).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep printing new events as they come, one JSON object per line, until
        /// interrupted.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
pub enum ConfigsAction {
    /// Is this webhook working? Its failing streak, recent attempts (success rate, latency),
    /// pending deliveries and its origin's circuit.
    Health {
        /// The task's id.
        task_id: String,
        /// The push config's id.
        config_id: String,
        /// The tenant (default: none).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Make a suspended (or disabled) config active again: its held deliveries resume in
    /// order.
    Enable {
        /// The task's id.
        task_id: String,
        /// The push config's id.
        config_id: String,
        /// The tenant (default: none).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show which events a config receives, or set it with --events or --match.
    Filter {
        /// The task's id.
        task_id: String,
        /// The push config's id.
        config_id: String,
        /// The tenant (default: none).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        set: FilterArgs,
    },
    /// Show the filter a tenant's new configs start with, or set it with --events or --match.
    Defaults {
        /// The tenant (default: none).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        set: FilterArgs,
    },
}

/// Filters shared by `list` and `replay`.
#[derive(clap::Args)]
pub struct DeliveryFilterArgs {
    /// The tenant (default: none).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The task's id.
    #[arg(long)]
    pub task_id: Option<String>,
    /// The push config's id.
    #[arg(long)]
    pub config_id: Option<String>,
    /// pending, delivered, dead, canceled or skipped.
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
    /// How answers are printed: a table for a person, JSON for a script (default: table on
    /// a terminal, JSON otherwise).
    #[arg(long, value_enum, global = true)]
    pub output: Option<Output>,
}

/// How the admin commands print an answer.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl AdminArgs {
    /// The client, and how to print its answers.
    pub fn open(self) -> (AdminClient, Output) {
        use std::io::IsTerminal;
        let output = self.output.unwrap_or(if std::io::stdout().is_terminal() {
            Output::Table
        } else {
            Output::Json
        });
        (AdminClient::new(&self.admin_url, self.admin_token), output)
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
        /// At most this many (1 to 1000).
        #[arg(long)]
        limit: Option<usize>,
        /// The `nextCursor` of the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one delivery with its attempt log.
    Show {
        /// The delivery's id (its `webhook-id`).
        delivery_id: String,
    },
    /// Replay one delivery, or (without an id) every delivery matching the filters; by
    /// default the dead ones.
    Replay {
        /// The delivery's id (its `webhook-id`).
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

#[derive(Clone, Copy, ValueEnum)]
pub enum BindingChoice {
    Auto,
    #[value(name = "JSONRPC", alias = "jsonrpc")]
    JsonRpc,
    #[value(name = "HTTP+JSON", alias = "http+json", alias = "rest")]
    HttpJson,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum VersionChoice {
    Auto,
    #[value(name = "1.0")]
    V1,
    #[value(name = "0.3")]
    V03,
}

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// The agent: its base URL, or its agent card's URL.
    #[arg(long)]
    pub agent: String,
    /// Which of the card's interfaces to use; auto prefers JSONRPC.
    #[arg(long, value_enum, default_value_t = BindingChoice::Auto)]
    pub binding: BindingChoice,
    /// Which A2A version to speak; auto prefers 1.0 when the card offers it.
    #[arg(long, value_enum, default_value_t = VersionChoice::Auto)]
    pub version: VersionChoice,
    /// The text of the message that starts each task.
    #[arg(
        long,
        default_value = "a2a-push-hub probe: please work on this task and finish it"
    )]
    pub message: String,
    /// A JSON file with the whole message to send instead (its messageId is replaced).
    #[arg(long, conflicts_with = "message")]
    pub message_file: Option<PathBuf>,
    /// A header sent on every request to the agent, as `Name: value` (its own
    /// credentials); repeatable. Never written to the report.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Where the probe's webhook listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub webhook_listen: SocketAddr,
    /// The webhook's base URL as the agent reaches it (a tunnel, a container network),
    /// when not the listen address.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// How long each task may take to finish.
    #[arg(long, default_value = "60s")]
    pub timeout: String,
    /// How long to wait for the retry of a push the webhook failed on purpose.
    #[arg(long, default_value = "20s")]
    pub retry_wait: String,
    /// How long the webhook holds the push it never answers (past 30 s grades the
    /// agent's timeout fully).
    #[arg(long, default_value = "35s")]
    pub hang_for: String,
    /// The agent's JWKS, to verify signed pushes and JWTs (default:
    /// /.well-known/jwks.json at the agent's origin).
    #[arg(long)]
    pub jwks: Option<String>,
    /// Let the probe reach an agent (and its JWKS) on a loopback or private address.
    #[arg(long)]
    pub allow_private_networks: bool,
    /// Write the report as JSON (schema: spec/probe-report.md).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the report as JUnit XML, one test case per check.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the report as a self-contained HTML page.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is in `--help`.
    #[test]
    fn every_option_is_described_in_help() {
        fn undescribed(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                undescribed(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        undescribed(&super::Cli::command(), "a2a-push-hub", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
