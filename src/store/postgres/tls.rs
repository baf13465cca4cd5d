//! TLS to PostgreSQL: the libpq options the driver does not read itself, and the rustls
//! connector they call for.
//!
//! `sslmode=require`, `verify-ca` and `verify-full` all encrypt and verify the server: its
//! certificate must chain to a trusted CA (the system's, plus those of `sslrootcert`) and name
//! the host connected to. (libpq's `require` alone would not verify; a hub that stores webhook
//! credentials in the database should not send them to whoever answers.) `prefer`, the default,
//! and `disable` connect without TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A connection URL without the options handled here, and what those asked for.
pub struct TlsOptions {
    /// The URL to give the driver.
    pub url: String,
    /// `sslrootcert`: CAs to trust besides the system's.
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslrootcert` out of `url` and reads `sslmode=verify-ca|verify-full` as `require`,
/// in both the URL form (`postgres://…?sslmode=…`) and the `key=value` form.
pub fn take_tls_options(url: &str) -> TlsOptions {
    let mut root_cert = None;
    let mut keep = |key: &str, value: &str| -> Option<String> {
        match (key, value) {
            ("sslrootcert", path) => {
                root_cert = Some(PathBuf::from(path));
                None
            }
            ("sslmode", "verify-ca" | "verify-full") => Some("sslmode=require".to_string()),
            _ => Some(format!("{key}={value}")),
        }
    };
    let url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<String> = query
                    .split('&')
                    .filter_map(|pair| {
                        let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
                        match decoded {
                            Some((key, value)) if key == "sslrootcert" || key == "sslmode" => {
                                keep(&key, &value)
                            }
                            _ => Some(pair.to_string()),
                        }
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        url.split_whitespace()
            .filter_map(|pair| match pair.split_once('=') {
                Some((key, value)) => keep(key, value),
                None => Some(pair.to_string()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    TlsOptions { url, root_cert }
}

/// The connector for `sslmode=require`: rustls, verifying against the system's CAs and those
/// in `root_cert`.
pub fn connector(root_cert: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = root_cert {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("sslrootcert {shown}: cannot read PEM certificates ({e})"))?;
        if certs.is_empty() {
            return Err(format!("sslrootcert {shown}: holds no PEM certificate"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {shown}: not a usable CA certificate ({e})"))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "sslmode=require: this system trusts no CA to verify the database with; name the server's CA with sslrootcert=/path/to/ca.pem"
                .to_string(),
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_both_url_forms() {
        let options =
            take_tls_options("postgres://u@db/hub?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(options.url, "postgres://u@db/hub?sslmode=require");
        assert_eq!(options.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let options = take_tls_options("postgres://u@db/hub?sslrootcert=/ca.pem");
        assert_eq!(options.url, "postgres://u@db/hub");
        assert_eq!(options.root_cert, Some(PathBuf::from("/ca.pem")));

        let options = take_tls_options("host=db sslmode=verify-ca sslrootcert=/ca.pem user=u");
        assert_eq!(options.url, "host=db sslmode=require user=u");
        assert_eq!(options.root_cert, Some(PathBuf::from("/ca.pem")));

        let plain = "postgres://u:p@db:5432/hub?application_name=x&sslmode=disable";
        assert_eq!(take_tls_options(plain).url, plain);
        assert_eq!(take_tls_options(plain).root_cert, None);
    }

    #[test]
    fn an_unreadable_or_empty_root_certificate_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = connector(Some(&missing)).err().unwrap();
        assert!(
            error.contains("sslrootcert") && error.contains("missing.pem"),
            "{error}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = connector(Some(&empty)).err().unwrap();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }
}
