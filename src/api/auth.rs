//! Who calls the public listener's push-config methods (`server.public_auth`): an API key
//! (`Authorization: Bearer <key>` or `X-API-Key`, compared by SHA-256 in constant time) or a
//! bearer JWT verified against the configured JWKS. The principal it yields owns the tasks
//! it registers configs for (`crate::domain::push_configs`).

use a2a::{A2AError, JsonRpcId, error_code};
use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::a2a::errors::jsonrpc_error;
use crate::config::PublicAuth;
use crate::signing::jwt;

/// Clock difference accepted on a caller's JWT, seconds.
const JWT_LEEWAY_S: i64 = 60;

/// Why a caller was refused. Says what to send; never echoes what was sent.
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    #[error(
        "authentication required: send Authorization: Bearer <API key> or X-API-Key: <API key>"
    )]
    MissingKey,
    #[error("the API key is not valid")]
    WrongKey,
    #[error("authentication required: send Authorization: Bearer <JWT>")]
    MissingJwt,
    #[error("the bearer JWT is not valid: {0}")]
    BadJwt(String),
}

/// The caller's principal, `None` when `public_auth = "none"`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<String>, Unauthenticated> {
    let server = &state.settings.server;
    let result = match server.public_auth {
        PublicAuth::None => return Ok(None),
        PublicAuth::ApiKeys => {
            match header_text(headers, "x-api-key").or_else(|| bearer(headers)) {
                None => Err(Unauthenticated::MissingKey),
                Some(key) => {
                    principal_of_key(&server.api_keys, key).ok_or(Unauthenticated::WrongKey)
                }
            }
        }
        PublicAuth::Jwt => verify_jwt(state, headers).await,
    };
    if result.is_err() {
        state.metrics.public_auth_failure();
    }
    result.map(Some)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header_text(headers, header::AUTHORIZATION.as_str())?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// The principal whose key hashes to one of the configured SHA-256 digests. Every configured
/// digest is compared, matched or not, so the time taken says nothing about which was close.
fn principal_of_key(keys: &[crate::config::ApiKey], key: &str) -> Option<String> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let digest: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let mut found = None;
    for configured in keys {
        let matches = configured
            .sha256
            .to_ascii_lowercase()
            .as_bytes()
            .ct_eq(digest.as_bytes());
        if bool::from(matches) && found.is_none() {
            found = Some(configured.principal.clone());
        }
    }
    found
}

async fn verify_jwt(state: &AppState, headers: &HeaderMap) -> Result<String, Unauthenticated> {
    let Some(settings) = &state.settings.server.jwt else {
        return Err(Unauthenticated::BadJwt(
            "no [server.jwt] configured".to_string(),
        ));
    };
    let token = bearer(headers).ok_or(Unauthenticated::MissingJwt)?;
    let kid = jwt::header_field(token, "kid");
    let document = state
        .inbound
        .jwks
        .get(&settings.jwks_url, kid.as_deref())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot fetch the JWKS of server.jwt.jwks_url");
            Unauthenticated::BadJwt("the issuer's keys cannot be fetched right now".to_string())
        })?;
    let now_s = (crate::store::now_ms() / 1000) as i64;
    jwt::verify_caller(
        token,
        &document,
        &settings.issuer,
        &settings.audience,
        JWT_LEEWAY_S,
        now_s,
    )
    .map(|caller| caller.subject)
    .map_err(|e| Unauthenticated::BadJwt(e.to_string()))
}

fn challenge(state: &AppState) -> HeaderValue {
    match state.settings.server.public_auth {
        PublicAuth::ApiKeys => HeaderValue::from_static("Bearer, ApiKey header=\"X-API-Key\""),
        _ => HeaderValue::from_static("Bearer"),
    }
}

/// The JSON-RPC answer to an unauthenticated call: HTTP 401 with a JSON-RPC error.
pub fn jsonrpc_refusal(state: &AppState, id: JsonRpcId, why: &Unauthenticated) -> Response {
    let error = A2AError::new(error_code::INVALID_REQUEST, why.to_string());
    let mut response = (StatusCode::UNAUTHORIZED, Json(jsonrpc_error(id, &error))).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge(state));
    response
}

/// The HTTP+JSON answer to an unauthenticated call: HTTP 401 with a `google.rpc.Status` of
/// `UNAUTHENTICATED` (no A2A error reason: it is not an A2A error, and clients then report the
/// HTTP status).
pub fn rest_refusal(state: &AppState, why: &Unauthenticated) -> Response {
    let body = serde_json::json!({"error": {
        "code": 401,
        "status": "UNAUTHENTICATED",
        "message": why.to_string(),
    }});
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge(state));
    response
}

/// The authenticated caller of a push-config route, set by `rest_guard`.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<String>);

/// In front of the HTTP+JSON push-config routes: the `Host` must be the hub's, a POST must
/// be JSON, and the caller must authenticate; the handler then gets its `Caller`.
pub async fn rest_guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match rest_caller(&state, request.method(), request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refusal,
    }
}

/// The checks in front of an HTTP+JSON push-config call, and its caller when they pass.
pub async fn rest_caller(
    state: &AppState,
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Result<Caller, Response> {
    if let Err(reason) = super::guard::check_host(&state.settings, &state.public_base_url, headers)
    {
        return Err(super::errors::rest_response(
            &A2AError::invalid_request(reason),
            None,
        ));
    }
    if method == axum::http::Method::POST && !super::guard::is_json(headers) {
        return Err(super::errors::rest_response(
            &A2AError::new(
                error_code::CONTENT_TYPE_NOT_SUPPORTED,
                "the request body must be sent with Content-Type: application/json",
            ),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ));
    }
    authenticate(state, headers)
        .await
        .map(Caller)
        .map_err(|why| rest_refusal(state, &why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    #[test]
    fn a_key_yields_the_principal_whose_digest_it_matches() {
        let keys = vec![
            ApiKey {
                principal: "alice".into(),
                // printf %s alice-key | sha256sum
                sha256: "5b5e0c6e3a7e3ca1a3f6c5a0b5ab3f1d0f3e1e1a4cf6f5f8d0b9c1c44aa8b2de".into(),
            },
            ApiKey {
                principal: "bob".into(),
                sha256: {
                    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"bob-key");
                    d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
                },
            },
        ];
        assert_eq!(principal_of_key(&keys, "bob-key").as_deref(), Some("bob"));
        assert_eq!(principal_of_key(&keys, "bob-key2"), None);
        assert_eq!(principal_of_key(&keys, ""), None);
    }

    #[test]
    fn bearer_credentials_are_read_in_any_scheme_case() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "bearer k1".parse().unwrap());
        assert_eq!(bearer(&headers), Some("k1"));
        headers.insert("authorization", "Basic k1".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
