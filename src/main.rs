//! The `a2a-push-hub` command line: parse, load settings, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use a2a_push_hub::config::Overrides;
use a2a_push_hub::{Hub, Settings};
use clap::{Parser, Subcommand, ValueEnum};

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
    },
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve {
            config,
            public_listen,
            admin_listen,
            data_dir,
            upstream,
            allow_private_networks,
        } => {
            let overrides = Overrides {
                public_listen,
                admin_listen,
                data_dir,
                upstream,
                allow_private_networks,
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
    }
}
