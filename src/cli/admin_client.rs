//! A small client of the admin API, used by the subcommands that talk to a running hub.

use std::time::Duration;

use serde_json::Value;

/// Why an admin API call failed; the text is printed to the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the admin API answered {status}: {detail}")]
    Refused { status: u16, detail: String },
    /// The command line asked for something malformed.
    #[error("{0}")]
    Usage(String),
}

/// A path of the admin API from its segments, each percent-encoded (task and config ids are
/// the clients' own strings).
pub fn path(segments: &[&str]) -> String {
    let mut url = url::Url::parse("http://admin/").expect("a fixed URL parses");
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().extend(segments);
    }
    url.path().to_string()
}

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<String>) -> AdminClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .unwrap_or_default();
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            http,
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, AdminError> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        // State-changing admin calls are JSON, with or without content.
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .query(query)
            .json(&body.unwrap_or_else(|| Value::Object(Default::default())));
        self.send(request).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, AdminError> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn put(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Value,
    ) -> Result<Value, AdminError> {
        let request = self
            .http
            .put(format!("{}{path}", self.base))
            .query(query)
            .json(&body);
        self.send(request).await
    }

    /// GETs `path` and writes the answer's body to `out` as it arrives; how many bytes. No
    /// overall timeout: a large body may take long, as long as it keeps coming.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, AdminError> {
        use tokio::io::AsyncWriteExt;
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| AdminError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(AdminError::Refused {
                status: status.as_u16(),
                detail: body["detail"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| body.to_string()),
            });
        }
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            out.write_all(&chunk)
                .await
                .map_err(|e| AdminError::Usage(format!("cannot write the file: {e}")))?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<Value, AdminError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| AdminError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let detail = body["detail"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        Err(AdminError::Refused {
            status: status.as_u16(),
            detail,
        })
    }
}
