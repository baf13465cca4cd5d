//! `/inbound/{subscriptionId}` on the public listener: pushes from peer agents (`POST`), and
//! the URL-ownership challenge some senders make first (`GET ?validationToken=`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::inbound::Inbound;
use crate::inbound::challenge::challenge;
use crate::inbound::intake::intake;
use crate::signing::verify::CapturedRequest;

pub async fn receive(
    State(inbound): State<Arc<Inbound>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let too_large =
        matches!(&body, Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE);
    let request = CapturedRequest {
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.map(|b| b.to_vec()).unwrap_or_default(),
    };
    let answer = intake(&inbound, &id, request, too_large).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(answer.body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[derive(serde::Deserialize)]
pub struct Challenge {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

pub async fn answer_challenge(
    State(inbound): State<Arc<Inbound>>,
    Path(id): Path<String>,
    Query(query): Query<Challenge>,
) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    match challenge(&inbound, &id, query.validation_token.as_deref()).await {
        Ok(token) => (headers, token).into_response(),
        Err((status, reason)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, headers, reason).into_response()
        }
    }
}
