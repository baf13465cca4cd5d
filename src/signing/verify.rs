//! Verifying a whole request as a receiver would: the Standard Webhooks signature (`v1` with
//! a `whsec_` secret, `v1a` with Ed25519 public keys) and the JWT profile (against a JWKS).
//! Used by the `verify` command and meant for the inbound role.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::jwt::{self, Expectations};
use super::webhooks::{self, WebhookKeys};

/// A request as captured: headers and the raw body.
#[derive(Debug, Clone, Default)]
pub struct CapturedRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CapturedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses an HTTP/1.1 request as captured on the wire: an optional request line
    /// (`POST /hook HTTP/1.1`), `Name: value` header lines, a blank line, then the body (cut
    /// to `Content-Length` when that header is present).
    pub fn parse(raw: &[u8]) -> Result<CapturedRequest, String> {
        let (head_end, body_start) =
            find_blank_line(raw).ok_or("no blank line between the headers and the body")?;
        let head =
            std::str::from_utf8(&raw[..head_end]).map_err(|_| "the header block is not UTF-8")?;
        let mut headers = Vec::new();
        for (index, line) in head.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || (index == 0 && line.contains(" HTTP/")) {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header line {} has no colon: {line:?}", index + 1))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut request = CapturedRequest {
            headers,
            body: raw[body_start..].to_vec(),
        };
        if let Some(length) = request
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            if length > request.body.len() {
                return Err(format!(
                    "content-length is {length} but the body has {} bytes",
                    request.body.len()
                ));
            }
            request.body.truncate(length);
        }
        Ok(request)
    }
}

fn find_blank_line(raw: &[u8]) -> Option<(usize, usize)> {
    let crlf = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// What to verify against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// A `whsec_` secret, decoded (checks `v1`).
    pub secret: Option<Vec<u8>>,
    /// Raw Ed25519 public keys (checks `v1a`), in addition to the JWKS's.
    pub public_keys: Vec<Vec<u8>>,
    /// A JWKS document: its Ed25519 keys check `v1a`, its P-256 keys the JWT.
    pub jwks: Option<Value>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub tolerance_s: i64,
    pub now_s: i64,
}

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// The Ed25519 public keys of a JWKS document.
pub fn ed25519_keys(jwks: &Value) -> Vec<Vec<u8>> {
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
        .filter_map(|k| k["x"].as_str().and_then(|x| URL_SAFE_NO_PAD.decode(x).ok()))
        .filter(|x| x.len() == 32)
        .collect()
}

/// Runs every check the options allow; a check whose inputs are absent is not run.
pub fn verify_request(request: &CapturedRequest, options: &VerifyOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    let webhook = |keys: &WebhookKeys| {
        webhooks::verify(
            request.header("webhook-id"),
            request.header("webhook-timestamp"),
            request.header("webhook-signature"),
            &request.body,
            keys,
            options.now_s,
            options.tolerance_s,
        )
    };
    if let Some(secret) = &options.secret {
        let result = webhook(&WebhookKeys {
            secrets: vec![secret.clone()],
            public_keys: vec![],
        });
        checks.push(Check {
            name: "webhook-signature v1 (HMAC-SHA256, whsec_ secret)",
            passed: result.is_ok(),
            detail: result
                .map(|_| "valid".to_string())
                .unwrap_or_else(|e| e.to_string()),
        });
    }
    let mut public_keys = options.public_keys.clone();
    if let Some(jwks) = &options.jwks {
        public_keys.extend(ed25519_keys(jwks));
    }
    if !public_keys.is_empty() {
        let result = webhook(&WebhookKeys {
            secrets: vec![],
            public_keys,
        });
        checks.push(Check {
            name: "webhook-signature v1a (Ed25519)",
            passed: result.is_ok(),
            detail: result
                .map(|_| "valid".to_string())
                .unwrap_or_else(|e| e.to_string()),
        });
    }
    let bearer = request
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .filter(|token| token.matches('.').count() == 2);
    if let (Some(jwks), Some(token)) = (&options.jwks, bearer) {
        let expect = Expectations {
            audience: options.audience.as_deref(),
            issuer: options.issuer.as_deref(),
            leeway_s: options.tolerance_s.min(60),
        };
        let result = jwt::verify(token, jwks, &expect, &request.body, options.now_s);
        checks.push(Check {
            name: "Authorization JWT (ES256, JWKS, body hash)",
            passed: result.is_ok(),
            detail: result
                .map(|claims| {
                    format!(
                        "valid: iss {} aud {} taskId {} jti {}",
                        claims.iss, claims.aud, claims.task_id, claims.jti
                    )
                })
                .unwrap_or_else(|e| e.to_string()),
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captured_request_parses_with_crlf_or_lf_and_content_length() {
        let raw = b"POST /hook HTTP/1.1\r\nHost: x\r\nwebhook-id: abc\r\nContent-Length: 4\r\n\r\nbodyEXTRA";
        let request = CapturedRequest::parse(raw).unwrap();
        assert_eq!(request.header("WEBHOOK-ID"), Some("abc"));
        assert_eq!(request.body, b"body");
        let request = CapturedRequest::parse(b"webhook-id: x\n\n{\"a\":1}\n").unwrap();
        assert_eq!(request.body, b"{\"a\":1}\n");
        assert!(CapturedRequest::parse(b"no blank line").is_err());
        assert!(CapturedRequest::parse(b"bad header\r\n\r\nbody").is_err());
    }
}
