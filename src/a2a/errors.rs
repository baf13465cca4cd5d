//! The A2A error model on the wire: JSON-RPC error objects and REST `google.rpc.Status`
//! bodies, both carrying a `google.rpc.ErrorInfo` with the A2A reason.

use a2a::{A2AError, JsonRpcId, JsonRpcResponse, error_code, error_reason};
use serde_json::{Value, json};

/// The gRPC status name the REST binding puts in `error.status`.
fn grpc_status(code: i32) -> &'static str {
    match code {
        error_code::TASK_NOT_FOUND => "NOT_FOUND",
        error_code::INVALID_PARAMS | error_code::PARSE_ERROR | error_code::INVALID_REQUEST => {
            "INVALID_ARGUMENT"
        }
        error_code::METHOD_NOT_FOUND => "UNIMPLEMENTED",
        error_code::INTERNAL_ERROR => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// A JSON-RPC response carrying `error`.
pub fn jsonrpc_error(id: JsonRpcId, error: &A2AError) -> JsonRpcResponse {
    JsonRpcResponse::error(id, error.to_jsonrpc_error())
}

/// The REST binding's error: HTTP status and a `google.rpc.Status` JSON body.
pub fn rest_error(error: &A2AError) -> (u16, Value) {
    rest_error_with_status(error, error.http_status_code())
}

/// As [`rest_error`], with an HTTP status chosen by the caller (413, 503, …).
pub fn rest_error_with_status(error: &A2AError, http_status: u16) -> (u16, Value) {
    let mut details: Vec<Value> = error
        .details
        .iter()
        .flatten()
        .filter(|d| d.type_url != a2a::ERROR_INFO_TYPE)
        .filter_map(|d| serde_json::to_value(d).ok())
        .collect();
    details.push(json!({
        "@type": a2a::ERROR_INFO_TYPE,
        "reason": error_reason(error.code),
        "domain": a2a::PROTOCOL_DOMAIN,
    }));
    let body = json!({
        "error": {
            "code": http_status,
            "status": grpc_status(error.code),
            "message": error.message,
            "details": details,
        }
    });
    (http_status, body)
}
