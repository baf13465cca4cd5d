//! What the hub records of every inbound request: its receipt, with each check's verdict and
//! the request's headers — credentials masked, whatever header carries them.

use crate::signing::verify::CapturedRequest;
use crate::store::{CheckResult, ReceiptRecord, SubscriptionRecord, now_ms};

const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "x-a2a-notification-token",
    "a2a-notification-token",
    "cookie",
    "proxy-authorization",
];
/// Parts of header names that suggest the value is a credential (`x-api-key`,
/// `x-session-token`, `x-client-secret`, …): masked whatever the header is.
const SECRET_NAME_PARTS: [&str; 8] = [
    "auth",
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "session",
    "credential",
];
const MAX_RECEIPT_HEADERS: usize = 64;
const MAX_HEADER_VALUE: usize = 512;

/// Headers for a receipt: values of credential headers masked (the Authorization scheme is
/// kept), and any value holding one of the subscription's own secrets masked whatever its
/// header is called; long values cut.
fn masked_headers(request: &CapturedRequest, sub: &SubscriptionRecord) -> Vec<(String, String)> {
    let secrets: Vec<&str> = sub
        .token
        .iter()
        .chain(sub.webhook_secret.iter())
        .chain(sub.more_webhook_secrets.iter())
        .chain(
            sub.authentication
                .iter()
                .filter_map(|a| a.credentials.as_ref()),
        )
        .map(|s| s.expose())
        .filter(|s| !s.is_empty())
        .collect();
    request
        .headers
        .iter()
        .take(MAX_RECEIPT_HEADERS)
        .map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            let named_secret = SECRET_HEADERS.contains(&lower.as_str())
                || SECRET_NAME_PARTS.iter().any(|part| lower.contains(part));
            let shown = if named_secret || secrets.iter().any(|s| value.contains(s)) {
                match (lower.as_str(), value.split_once(' ')) {
                    ("authorization" | "proxy-authorization", Some((scheme, _))) => {
                        format!("{scheme} ****")
                    }
                    _ => "****".to_string(),
                }
            } else {
                value.chars().take(MAX_HEADER_VALUE).collect()
            };
            (lower, shown)
        })
        .collect()
}

/// A receipt of a request, numbered when it is stored.
pub(super) fn receipt(
    request: &CapturedRequest,
    sub: &SubscriptionRecord,
    verdict: &str,
    status: u16,
    checks: Vec<CheckResult>,
    notes: Vec<String>,
) -> ReceiptRecord {
    ReceiptRecord {
        number: 0,
        received_at_ms: now_ms(),
        verdict: verdict.to_string(),
        status,
        checks,
        headers: masked_headers(request, sub),
        notes,
        task_id: None,
        event_sequence: None,
    }
}
