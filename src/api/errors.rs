//! Domain errors on the wire, one mapping per binding: A2A errors (JSON-RPC and REST share
//! the `A2AError` value) and the admin API's `application/problem+json` (RFC 9457).

use a2a::{A2AError, FieldViolation, TypedDetail, error_code};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::a2a::errors::rest_error_with_status;
use crate::a2a::params::InvalidField;
use crate::domain::DomainError;
use crate::store::StoreError;

pub fn invalid_params(field: &InvalidField) -> A2AError {
    A2AError::invalid_params(field.to_string()).with_details(vec![TypedDetail::bad_request(vec![
        FieldViolation {
            field: field.field.clone(),
            description: field.reason.clone(),
        },
    ])])
}

/// The A2A error for a domain error.
pub fn to_a2a(error: &DomainError) -> A2AError {
    match error {
        DomainError::InvalidArgument(field) => invalid_params(field),
        DomainError::TaskNotFound(message) | DomainError::NotFound(message) => {
            A2AError::new(error_code::TASK_NOT_FOUND, message.clone())
        }
        DomainError::Conflict(message) => A2AError::invalid_request(message.clone()),
        DomainError::ConflictingField(field) => A2AError::invalid_request(field.to_string()),
        DomainError::Upstream(message) => A2AError::internal(message.clone()),
        DomainError::Store(StoreError::Busy) => {
            A2AError::internal("the hub is overloaded; retry shortly")
        }
        DomainError::Store(e) => {
            tracing::error!(error = %e, "store failure while answering an A2A request");
            A2AError::internal(
                "the hub could not complete the request because of a storage failure",
            )
        }
    }
}

/// A REST-binding error response.
pub fn rest_response(error: &A2AError, status: Option<StatusCode>) -> Response {
    let status = status.unwrap_or_else(|| {
        StatusCode::from_u16(error.http_status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    });
    let (_, body) = rest_error_with_status(error, status.as_u16());
    (status, Json(body)).into_response()
}

/// An `application/problem+json` answer of the admin API.
pub fn problem(status: StatusCode, detail: impl Into<String>, field: Option<&str>) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The admin API's answer for a domain error.
pub fn problem_for(error: &DomainError) -> Response {
    match error {
        DomainError::InvalidArgument(field) => problem(
            StatusCode::BAD_REQUEST,
            field.to_string(),
            Some(&field.field),
        ),
        DomainError::TaskNotFound(message) | DomainError::NotFound(message) => {
            problem(StatusCode::NOT_FOUND, message.clone(), None)
        }
        DomainError::Conflict(message) => problem(StatusCode::CONFLICT, message.clone(), None),
        DomainError::ConflictingField(field) => {
            problem(StatusCode::CONFLICT, field.to_string(), Some(&field.field))
        }
        DomainError::Upstream(message) => problem(StatusCode::BAD_GATEWAY, message.clone(), None),
        DomainError::Store(StoreError::Busy) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store's write queue is full; nothing was stored, retry shortly",
            None,
        ),
        DomainError::Store(e) => {
            tracing::error!(error = %e, "store failure while answering an admin request");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub could not store the request; nothing was accepted, retry shortly",
                None,
            )
        }
    }
}
