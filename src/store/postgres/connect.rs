//! Reaching the database: parsing the URL (with its TLS options, `tls.rs`), connecting with a
//! timeout, and closing synchronous connections off the async runtime. Errors never repeat the
//! URL (it may hold a password).
//!
//! Two kinds of connection: the blocking client of the `postgres` driver (reads of the pool,
//! lanes, schema), and [`Pipelined`], the batch threads' (`pool.rs`), which sends statements
//! that follow one another without waiting for each answer.

use super::*;

/// Where the database is and how to reach it: the driver's settings, and the TLS connector
/// when the URL asks for TLS (`tls.rs`).
#[derive(Clone)]
pub struct Target {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: Option<MakeRustlsConnect>,
}

/// Parses a connection URL (and reads its `sslrootcert`); the error never repeats the URL (it
/// may hold a password).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let options = tls::take_tls_options(url);
    let config = tokio_postgres::Config::from_str(&options.url)
        .map_err(|e| format!("not a PostgreSQL connection URL ({e})"))?;
    if config.get_hosts().is_empty() {
        return Err("names no host".to_string());
    }
    let tls = match config.get_ssl_mode() {
        SslMode::Require => Some(tls::connector(options.root_cert.as_deref())?),
        _ => None,
    };
    Ok(Target { config, tls })
}

/// Where a connection goes, for messages: host and port, never credentials.
pub(super) fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "?".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

pub(super) fn pg_error(e: postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        StoreError::Unavailable(format!("the database connection failed: {e}"))
    } else {
        StoreError::Storage(format!("the database refused a statement: {e}"))
    }
}

/// What every connection of the hub sets at once: the longest a statement may run (a lock
/// wait included) before it fails, so that no store call waits for ever on a stuck database.
pub(super) const SESSION_SETTINGS: &str = "SET statement_timeout = '30s'";

/// The driver's settings for a connection of the hub.
pub(super) fn configured(target: &Target, timeout: Duration) -> tokio_postgres::Config {
    let mut config = target.config.clone();
    config
        .connect_timeout(timeout)
        .application_name("a2a-push-hub")
        // A connection whose peer vanished is noticed within about a minute.
        .keepalives_idle(Duration::from_secs(30));
    config
}

/// A blocking client.
pub(super) fn connect(target: &Target, timeout: Duration) -> Result<Client, StoreError> {
    let config = configured(target, timeout);
    let blocking = Config::from(config.clone());
    let connected = match &target.tls {
        Some(tls) => blocking.connect(tls.clone()),
        None => blocking.connect(NoTls),
    };
    let mut client = connected.map_err(|e| unreachable(target, &config, e))?;
    client.batch_execute(SESSION_SETTINGS).map_err(pg_error)?;
    Ok(client)
}

/// The error of a connection that could not be opened.
pub(super) fn unreachable(
    target: &Target,
    config: &tokio_postgres::Config,
    e: postgres::Error,
) -> StoreError {
    {
        // The driver's message names the step that failed; its sources say why.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        let hint = if target.tls.is_some() && reason.contains("certificate") {
            " (name the CA that signed the server's certificate with sslrootcert=/path/to/ca.pem)"
        } else {
            ""
        };
        StoreError::Unavailable(format!(
            "cannot reach the database at {}: {reason}{hint}",
            describe(config)
        ))
    }
}

/// happen on a thread that drives async tasks, so there it happens on a thread of its own.
pub(super) fn close<T: Send + 'static>(connections: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::Builder::new()
            .name("store-close".to_string())
            .spawn(move || drop(connections));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_error_never_repeats_the_url() {
        let error = parse_url("postgres://hub:s3cret@db:notaport/hub")
            .err()
            .unwrap();
        assert!(!error.contains("s3cret"), "{error}");
        let error =
            parse_url("postgres://hub:s3cret@db/hub?sslmode=require&sslrootcert=/no/ca.pem")
                .err()
                .unwrap();
        assert!(error.contains("sslrootcert /no/ca.pem"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
}
