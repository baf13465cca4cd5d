//! `GET /inbound/{id}?validationToken=…`: the URL-ownership challenge some senders make before
//! they push.

use super::Inbound;

/// Longest `validationToken` echoed back.
const MAX_VALIDATION_TOKEN: usize = 256;

/// The URL-ownership challenge of the A2A samples' sender: before it pushes, it sends
/// `GET <url>?validationToken=<token>` and expects the token back as the body. Answered for an
/// existing subscription only, within its rate limit, and only for a token of URL-safe
/// characters (a reflected value is never markup). `Err` holds the status and the reason.
pub async fn challenge(
    inbound: &Inbound,
    id: &str,
    token: Option<&str>,
) -> Result<String, (u16, &'static str)> {
    let Some(token) = token else {
        return Err((
            405,
            "pushes are POSTed; a GET only answers ?validationToken=",
        ));
    };
    let valid = (1..=MAX_VALIDATION_TOKEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if !valid {
        return Err((
            400,
            "validationToken must be 1 to 256 characters of A-Z a-z 0-9 - _ . ~",
        ));
    }
    match inbound.store.get_subscription(id.to_string()).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err((404, "unknown subscription")),
        Err(e) => {
            tracing::error!(error = %e, "store failure at an inbound challenge");
            return Err((503, "temporarily unavailable; retry"));
        }
    }
    if !inbound.allow(id).await {
        return Err((429, "rate limited; retry later"));
    }
    Ok(token.to_string())
}
