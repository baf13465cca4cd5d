//! The `a2a-push-hub` command line: parse, load settings, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use a2a_push_hub::admin_client::AdminClient;
use a2a_push_hub::config::Overrides;
use a2a_push_hub::{Hub, Settings};
use clap::{Parser, Subcommand, ValueEnum};

/// Under load glibc's allocator took about an eighth of the hub's CPU; with mimalloc the same
/// benchmark delivers about 12 % more per second (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps the kernel from backing the hub's heap with transparent huge pages.
///
/// The allocator asks for huge pages on its arenas, and the first touch of each one makes the
/// kernel zero 2 MiB at once: under the latency benchmark the store's writer thread stalled
/// about 5 ms at a time, some 50 times in 20 s, in `clear_page_erms`, and every write queued
/// behind it waited too (p99 6–8 ms; 4 ms without huge pages). Databases recommend the same for
/// the same reason. The setting is the process's own (children would inherit it; the hub starts
/// none).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
        let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if result != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "transparent huge pages stay enabled");
        }
    }
}

#[derive(Parser)]
#[command(
    name = "a2a-push-hub",
    version,
    about = "Reliable, signed and observable A2A task push notifications"
)]
struct Cli {
    /// Log format on standard error; filter with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
struct DeliveryFilterArgs {
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    task_id: Option<String>,
    #[arg(long)]
    config_id: Option<String>,
    /// pending, delivered, dead or canceled.
    #[arg(long)]
    state: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time.
    #[arg(long)]
    created_after: Option<String>,
    /// Only deliveries created before this RFC 3339 time.
    #[arg(long)]
    created_before: Option<String>,
}

/// Where the admin API of a running hub is.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener's URL.
    #[arg(
        long,
        env = "A2A_PUSH_HUB_ADMIN_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    admin_url: String,
    /// The admin token, when the hub has one (server.admin_token).
    #[arg(
        long,
        env = "A2A_PUSH_HUB_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,
}

impl AdminArgs {
    fn client(self) -> AdminClient {
        AdminClient::new(&self.admin_url, self.admin_token)
    }
}

#[derive(Subcommand)]
enum KeysAction {
    /// List the keys in force (never private material).
    List,
    /// Sign with new keys from now on; the old ones stay valid for `signing.rotation_grace`.
    Rotate,
}

#[derive(Subcommand)]
enum DeliveriesAction {
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
    fn pairs(&self) -> Vec<(&'static str, String)> {
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

fn print_answer(
    result: Result<serde_json::Value, a2a_push_hub::admin_client::AdminError>,
) -> ExitCode {
    match result {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn keys(admin: AdminArgs, action: KeysAction) -> ExitCode {
    let client = admin.client();
    print_answer(match action {
        KeysAction::List => client.get("/api/v1/keys", &[]).await,
        KeysAction::Rotate => client.post("/api/v1/keys:rotate", &[], None).await,
    })
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The captured HTTP request: optional request line, headers, blank line, body.
    #[arg(long)]
    request: PathBuf,
    /// The JWKS (URL or file) to check `v1a` signatures and the JWT against.
    #[arg(long)]
    jwks: Option<String>,
    /// A Standard Webhooks secret (whsec_...) to check the `v1` signature.
    #[arg(long)]
    secret: Option<String>,
    /// An Ed25519 public key (whpk_...) to check `v1a` signatures; repeatable.
    #[arg(long)]
    public_key: Vec<String>,
    /// The JWT's expected `aud`: the webhook URL the request was sent to.
    #[arg(long)]
    audience: Option<String>,
    /// The JWT's expected `iss`: the hub's public base URL.
    #[arg(long)]
    issuer: Option<String>,
    /// Accepted age (and clock skew) of `webhook-timestamp`.
    #[arg(long, default_value = "300s")]
    tolerance: String,
    /// Allow fetching the JWKS from loopback or private addresses.
    #[arg(long)]
    allow_private_networks: bool,
}

async fn verify(args: VerifyArgs) -> Result<bool, String> {
    use a2a_push_hub::signing::verify::{CapturedRequest, VerifyOptions, verify_request};
    use a2a_push_hub::signing::webhooks;
    let raw = std::fs::read(&args.request)
        .map_err(|e| format!("cannot read {}: {e}", args.request.display()))?;
    let request = CapturedRequest::parse(&raw).map_err(|e| {
        format!(
            "{} is not a captured HTTP request: {e}",
            args.request.display()
        )
    })?;
    let tolerance = a2a_push_hub::config::parse_duration(&args.tolerance)
        .map_err(|e| format!("--tolerance: {e}"))?;
    let secret = match &args.secret {
        None => None,
        Some(s) => {
            Some(webhooks::parse_secret(s).ok_or("--secret must be whsec_ followed by base64")?)
        }
    };
    let public_keys = args
        .public_key
        .iter()
        .map(|k| {
            webhooks::parse_public_key(k).ok_or_else(|| {
                format!("--public-key {k:?} must be whpk_ followed by the base64 of 32 bytes")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let jwks = match &args.jwks {
        None => None,
        Some(source) if source.starts_with("http://") || source.starts_with("https://") => {
            let security = a2a_push_hub::config::SecuritySettings {
                allow_private_networks: args.allow_private_networks,
                ..Default::default()
            };
            let policy = std::sync::Arc::new(a2a_push_hub::ssrf::Policy::from_settings(&security));
            let client = a2a_push_hub::delivery::client::GuardedClient::new(
                policy,
                a2a_push_hub::delivery::request::USER_AGENT,
            )
            .map_err(|e| e.to_string())?;
            Some(
                client
                    .fetch_json(source, 1024 * 1024)
                    .await
                    .map_err(|e| e.to_string())?
                    .body,
            )
        }
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            Some(serde_json::from_slice(&text).map_err(|e| format!("{path} is not JSON: {e}"))?)
        }
    };
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let options = VerifyOptions {
        secret,
        public_keys,
        jwks,
        audience: args.audience,
        issuer: args.issuer,
        tolerance_s: tolerance.as_secs() as i64,
        now_s,
    };
    let checks = verify_request(&request, &options);
    if checks.is_empty() {
        return Err("nothing to verify against: give --secret, --public-key or --jwks (and the request must carry what they check)".to_string());
    }
    for check in &checks {
        println!(
            "{} {}: {}",
            if check.passed { "PASS" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    Ok(checks.iter().all(|c| c.passed))
}

async fn deliveries(admin: AdminArgs, action: DeliveriesAction) -> ExitCode {
    let client = admin.client();
    let result = match action {
        DeliveriesAction::List {
            filter,
            limit,
            after,
        } => {
            let mut query = filter.pairs();
            query.extend(limit.map(|l| ("limit", l.to_string())));
            query.extend(after.map(|a| ("after", a)));
            client.get("/api/v1/deliveries", &query).await
        }
        DeliveriesAction::Show { delivery_id } => {
            client
                .get(&format!("/api/v1/deliveries/{delivery_id}"), &[])
                .await
        }
        DeliveriesAction::Replay {
            delivery_id: Some(id),
            ..
        } => {
            client
                .post(&format!("/api/v1/deliveries/{id}/replay"), &[], None)
                .await
        }
        DeliveriesAction::Replay {
            delivery_id: None,
            filter,
        } => {
            let mut query: Vec<(&str, String)> = filter.pairs();
            let tenant = query
                .iter()
                .position(|(k, _)| *k == "tenant")
                .map(|i| query.remove(i).1);
            let body: serde_json::Map<String, serde_json::Value> = query
                .into_iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                .collect();
            let tenant: Vec<(&str, String)> = tenant.map(|t| ("tenant", t)).into_iter().collect();
            client
                .post(
                    "/api/v1/deliveries:replay",
                    &tenant,
                    Some(serde_json::Value::Object(body)),
                )
                .await
        }
    };
    print_answer(result)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn migrate(settings: Settings) -> ExitCode {
    if settings.store.url.is_empty() {
        println!(
            "the embedded store ({}) needs no migration: its tables are created when it opens; set store.url to migrate a PostgreSQL database",
            settings.store.path.display()
        );
        return ExitCode::SUCCESS;
    }
    let postgres = a2a_push_hub::postgres_settings(&settings.store);
    let migrated = tokio::task::spawn_blocking(move || {
        a2a_push_hub::store::postgres_schema::migrate(&postgres)
    })
    .await;
    match migrated {
        Ok(Ok(version)) => {
            println!("the database schema is at version {version}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: the migration task failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    disable_transparent_huge_pages();
    match cli.command {
        Command::Serve {
            config,
            public_listen,
            admin_listen,
            data_dir,
            upstream,
            allow_private_networks,
            store_url,
        } => {
            let overrides = Overrides {
                public_listen,
                admin_listen,
                data_dir,
                upstream,
                allow_private_networks,
                store_url,
            };
            let settings = match Settings::load(config.as_deref(), &overrides) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let hub = match Hub::builder(settings).start().await {
                Ok(hub) => hub,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            hub.shutdown().await;
            ExitCode::SUCCESS
        }
        Command::Migrate { config, store_url } => {
            let overrides = Overrides {
                store_url,
                ..Overrides::default()
            };
            match Settings::load(config.as_deref(), &overrides) {
                Ok(settings) => migrate(settings).await,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Deliveries { admin, action } => deliveries(admin, action).await,
        Command::Keys { admin, action } => keys(admin, action).await,
        Command::Verify(args) => match verify(args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}
