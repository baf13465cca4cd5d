//! The SSRF-guarded HTTP client, used for every outbound request the hub makes.
//!
//! - IP-literal hosts are checked before the request (`check_destination`);
//! - host names go through [`GuardedResolver`], which drops every refused address, so the
//!   address the connection is made to is always one that passed the policy (a name that
//!   resolves somewhere else later — DNS rebinding — is caught at that later connect);
//! - redirects are never followed and environment proxies are ignored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::ssrf::{Policy, Refusal};

/// The error the resolver reports when every address of a name is refused; found again in
/// the error chain to classify the attempt as `refused`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RefusedDestination(pub Refusal);

struct GuardedResolver {
    policy: Arc<Policy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let allowed = allowed_addrs(&policy, host, 0).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `host`'s addresses that `policy` allows, with `port`. A refusal by the policy is a
/// [`RefusedDestination`]; a failed lookup is an ordinary error (worth trying again).
async fn allowed_addrs(
    policy: &Policy,
    host: String,
    port: u16,
) -> Result<Vec<SocketAddr>, BoxError> {
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let resolved: Vec<SocketAddr> = tokio::time::timeout(Duration::from_secs(5), lookup)
        .await
        .map_err(|_| format!("resolving {host} timed out after 5s"))??
        .collect();
    let mut first_refusal = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match policy.check_ip(addr.ip()) {
            Ok(()) => true,
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        let refusal = first_refusal.unwrap_or(Refusal::Unresolvable {
            host,
            reason: "no addresses".to_string(),
        });
        return Err(Box::new(RefusedDestination(refusal)));
    }
    Ok(allowed)
}

/// A `reqwest::Client` bound to the SSRF policy.
#[derive(Clone)]
pub struct GuardedClient {
    http: reqwest::Client,
    policy: Arc<Policy>,
}

impl GuardedClient {
    pub fn new(policy: Arc<Policy>, user_agent: &str) -> Result<GuardedClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(GuardedClient { http, policy })
    }

    /// A client for a destination the operator chose (the gateway's agent, the telemetry
    /// collector): the policy is opened to the addresses `url`'s host resolves to now, and to
    /// nothing else.
    pub async fn opened_to(policy: &Policy, url: &Url) -> Result<GuardedClient, String> {
        let host = url
            .host_str()
            .ok_or_else(|| "has no host".to_string())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot be resolved: {e}"))?;
        let mut opened = policy.clone();
        for addr in addrs {
            opened = opened.allowing(addr.ip());
        }
        GuardedClient::new(Arc::new(opened), super::request::USER_AGENT).map_err(|e| e.to_string())
    }

    /// A TCP connection to `host:port` through the policy, for a protocol the HTTP client does
    /// not speak (gRPC to the telemetry collector): the first allowed address that answers.
    pub async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> std::io::Result<tokio::net::TcpStream> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let allowed = allowed_addrs(&self.policy, host, port)
            .await
            .map_err(std::io::Error::other)?;
        let mut last = None;
        for addr in allowed {
            match tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {addr} timed out"),
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
    }

    /// Checks what can be checked before connecting: scheme, credentials, IP literals.
    pub fn check_destination(&self, url: &str) -> Result<Url, Refusal> {
        self.policy.check_url_syntax(url)
    }

    /// The client itself, for building requests to destinations already checked.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Why a JSON exchange failed; the text says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The SSRF policy refused the destination.
    #[error("{0}")]
    Refused(String),
    /// No answer: connection refused or reset, timeout. Worth one retry for idempotent calls.
    #[error("{0}")]
    Unreachable(String),
    /// An answer that is too large or not JSON, or (for `fetch_json`) not a success.
    #[error("{0}")]
    BadAnswer(String),
}

/// A JSON answer from a peer.
#[derive(Debug, Clone)]
pub struct JsonAnswer {
    pub status: u16,
    pub body: serde_json::Value,
    /// `Cache-Control: max-age`, seconds, when the answer had one.
    pub max_age: Option<u64>,
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::CACHE_CONTROL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|directive| directive.trim().strip_prefix("max-age=")?.parse().ok())
}

impl GuardedClient {
    /// Sends a request with an optional JSON body and reads a JSON answer of at most
    /// `max_bytes` (an empty body reads as `null`), through the policy, within 10 s.
    pub async fn exchange_json(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        max_bytes: usize,
    ) -> Result<JsonAnswer, ExchangeError> {
        self.exchange_json_within(
            method,
            url,
            headers,
            body,
            max_bytes,
            Duration::from_secs(10),
        )
        .await
    }

    /// `exchange_json` with its own time limit, for a peer that may be slow on purpose (an
    /// agent that pushes to a held webhook before it answers).
    pub async fn exchange_json_within(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<JsonAnswer, ExchangeError> {
        let checked = self
            .check_destination(url)
            .map_err(|refusal| ExchangeError::Refused(format!("{url} is refused: it {refusal}")))?;
        let mut request = self.http.request(method, checked).timeout(timeout);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| match refusal_in(&e) {
            Some(refusal) => ExchangeError::Refused(format!("{url} is refused: it {refusal}")),
            None => ExchangeError::Unreachable(format!("cannot reach {url}: {}", error_chain(&e))),
        })?;
        let status = response.status().as_u16();
        let max_age = max_age(response.headers());
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            ExchangeError::Unreachable(format!("cannot read the answer of {url}: {e}"))
        })? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > max_bytes {
                return Err(ExchangeError::BadAnswer(format!(
                    "{url} answered more than {max_bytes} bytes"
                )));
            }
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ExchangeError::BadAnswer(format!("{url} did not answer JSON ({status}): {e}"))
            })?
        };
        Ok(JsonAnswer {
            status,
            body,
            max_age,
        })
    }

    /// GETs a JSON document (a JWKS, say) that must come with a 2xx status.
    pub async fn fetch_json(
        &self,
        url: &str,
        max_bytes: usize,
    ) -> Result<JsonAnswer, ExchangeError> {
        let answer = self
            .exchange_json(reqwest::Method::GET, url, &[], None, max_bytes)
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(ExchangeError::BadAnswer(format!(
                "{url} answered {}",
                answer.status
            )));
        }
        Ok(answer)
    }
}

/// An error with its causes, for messages ("error sending request" alone says little).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The policy refusal inside a request error, if that is why it failed.
pub fn refusal_in(error: &reqwest::Error) -> Option<&Refusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<RefusedDestination>() {
            return Some(&refused.0);
        }
        source = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect() {
        let client = GuardedClient::new(Arc::new(Policy::default()), "test").unwrap();
        let error = client
            .http()
            .get("http://localhost:9/")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_err();
        let refusal = refusal_in(&error).expect("refused by the policy");
        assert!(refusal.to_string().contains("loopback"), "{refusal}");
    }
}
