//! What the hub records of every inbound request: its receipt, with each check's verdict and
//! the request's headers — credentials masked, whatever header carries them.

use crate::secret::masked_header_value;
use crate::signing::verify::CapturedRequest;
use crate::store::{CheckResult, ReceiptRecord, SubscriptionRecord, now_ms};

const MAX_RECEIPT_HEADERS: usize = 64;

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
            (
                name.to_ascii_lowercase(),
                masked_header_value(name, value, &secrets),
            )
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
