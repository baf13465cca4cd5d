//! The delivery console (docs/CONSOLE.md): static pages embedded in the binary, served by the
//! admin listener at `/console/`. The pages hold no data and no secret: everything they show
//! they fetch from the documented admin API in the browser, with the admin token the person
//! typed (kept in the tab's session storage, sent as `Authorization: Bearer`). So serving the
//! shell needs no token, and the console adds no endpoint and no state of its own.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;
use super::errors::problem;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// Only the console's own files: no inline script or style, no other origin, no framing
/// (clickjacking a replay button), and no referrer leaving the page.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(stylesheet))
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    asset(&state, &headers, "text/html; charset=utf-8", INDEX_HTML)
}

async fn script(State(state): State<AppState>, headers: HeaderMap) -> Response {
    asset(
        &state,
        &headers,
        "text/javascript; charset=utf-8",
        CONSOLE_JS,
    )
}

async fn stylesheet(State(state): State<AppState>, headers: HeaderMap) -> Response {
    asset(&state, &headers, "text/css; charset=utf-8", CONSOLE_CSS)
}

fn asset(
    state: &AppState,
    headers: &HeaderMap,
    content_type: &'static str,
    body: &'static str,
) -> Response {
    // The same DNS-rebinding check as the API: a page served under a foreign host name could
    // read the API as same-origin.
    if let Err(reason) = super::guard::check_host(&state.settings, &state.public_base_url, headers)
    {
        return problem(StatusCode::BAD_REQUEST, reason, Some("Host"));
    }
    let mut response = (StatusCode::OK, body).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary may bring new pages: revalidate rather than run a stale script.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
