//! The `a2a-push-hub` command line: parse, load settings, call the library.

use std::process::ExitCode;

use a2a_push_hub::config::Overrides;
use a2a_push_hub::{Hub, Settings};
use clap::Parser;

mod cli;

use cli::args::{Cli, Command, LogFormat};

/// Under load glibc's allocator took about an eighth of the hub's CPU; with mimalloc the same
/// benchmark delivers about 12 % more per second (docs/PERFORMANCE.md).
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

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal (https://no-color.org).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
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
    for warning in a2a_push_hub::config::unknown_environment(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!("{warning}");
    }
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
        Command::Backup { admin, to } => cli::backup::backup(admin, &to).await,
        Command::Restore { from, data_dir } => cli::backup::restore(&from, &data_dir).await,
        Command::Migrate { config, store_url } => {
            let overrides = Overrides {
                store_url,
                ..Overrides::default()
            };
            match Settings::load(config.as_deref(), &overrides) {
                Ok(settings) => cli::migrate::migrate(settings).await,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Deliveries { admin, action } => cli::admin::deliveries(admin, action).await,
        Command::Configs { admin, action } => cli::admin::configs(admin, action).await,
        Command::Operator { admin, action } => cli::admin::operator(admin, action).await,
        Command::Origins { admin, action } => cli::admin::origins(admin, action).await,
        Command::McpStdio {
            admin,
            subscriptions,
        } => {
            let settings = a2a_push_hub::internals::mcp_stdio::StdioSettings {
                admin_url: admin.admin_url,
                admin_token: admin.admin_token,
                subscriptions,
            };
            match a2a_push_hub::internals::mcp_stdio::run(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Subscriptions { admin, action } => cli::admin::subscriptions(admin, action).await,
        Command::Keys { admin, action } => cli::admin::keys(admin, action).await,
        Command::Probe(args) => cli::probe::probe(args).await,
        Command::Verify(args) => match cli::verify::verify(args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}
