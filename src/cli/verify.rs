//! `verify`: checks a captured delivery the way a receiver would, without a running hub.

use super::args::VerifyArgs;

pub async fn verify(args: VerifyArgs) -> Result<bool, String> {
    use a2a_push_hub::verify::webhooks;
    use a2a_push_hub::verify::{CapturedRequest, VerifyOptions, verify_request};
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
            Some(a2a_push_hub::verify::fetch_jwks(source, args.allow_private_networks).await?)
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
