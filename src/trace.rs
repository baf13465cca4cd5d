//! W3C Trace Context (`traceparent`, `tracestate`) and W3C Baggage: what the hub takes from
//! the requests that start work, keeps with that work, and passes on to the webhooks it calls
//! (docs/TRACING.md).
//!
//! The hub is a hop in the publisher's trace: each delivery attempt is a span of that trace
//! with an id of its own, so a receiver that continues the trace shows every attempt — the
//! retries too — under the request that published the event.

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

/// Longest `tracestate` kept: what the specification asks every hop to pass on at least.
pub const MAX_TRACESTATE: usize = 512;
/// Most `tracestate` list members.
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `baggage` kept, as the Baggage specification limits it.
pub const MAX_BAGGAGE: usize = 8192;

/// A trace context as received, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceContext {
    /// Version 00 form: `00-<trace id>-<parent id>-<flags>`, lowercase hex.
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
}

/// Why a trace context was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error(
        "traceparent must be `00-<32 hex digits trace id>-<16 hex digits parent id>-<2 hex digits flags>` in lowercase, with ids that are not all zeros"
    )]
    Traceparent,
    #[error(
        "tracestate must be at most {MAX_TRACESTATE} characters and {MAX_TRACESTATE_MEMBERS} comma-separated `key=value` members of printable ASCII"
    )]
    Tracestate,
    #[error("baggage must be at most {MAX_BAGGAGE} characters of printable ASCII")]
    Baggage,
    #[error("tracestate and baggage need a traceparent")]
    Orphan,
}

impl TraceContext {
    /// The context given by the three values, each checked; `None` when none is given.
    pub fn parse(
        traceparent: Option<&str>,
        tracestate: Option<&str>,
        baggage: Option<&str>,
    ) -> Result<Option<TraceContext>, TraceError> {
        let Some(traceparent) = traceparent else {
            return match (tracestate, baggage) {
                (None, None) => Ok(None),
                _ => Err(TraceError::Orphan),
            };
        };
        let traceparent = parse_traceparent(traceparent).ok_or(TraceError::Traceparent)?;
        let tracestate = checked(tracestate, valid_tracestate, TraceError::Tracestate)?;
        let baggage = checked(baggage, valid_baggage, TraceError::Baggage)?;
        Ok(Some(TraceContext {
            traceparent,
            tracestate,
            baggage,
        }))
    }

    /// The context of a request's headers (see [`TraceContext::received`]); several
    /// `traceparent`s make it ambiguous, so none is taken.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let single = |name: &str| -> Option<&str> {
            let mut values = headers.get_all(name).iter();
            let first = values.next()?.to_str().ok()?;
            values.next().is_none().then_some(first)
        };
        TraceContext::received(
            single("traceparent"),
            single("tracestate"),
            single("baggage"),
        )
    }

    /// The context a hop received. As the specification asks of every hop, an invalid
    /// `traceparent` is ignored (the work starts no trace), and an invalid `tracestate` or
    /// `baggage` is dropped while the `traceparent` is kept.
    pub fn received(
        traceparent: Option<&str>,
        tracestate: Option<&str>,
        baggage: Option<&str>,
    ) -> Option<TraceContext> {
        let traceparent = parse_traceparent(traceparent?)?;
        let tracestate = checked(tracestate, valid_tracestate, TraceError::Tracestate)
            .ok()
            .flatten();
        let baggage = checked(baggage, valid_baggage, TraceError::Baggage)
            .ok()
            .flatten();
        Some(TraceContext {
            traceparent,
            tracestate,
            baggage,
        })
    }

    /// The 32 hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The `traceparent` of a new span of this trace, with the id `span_id` (16 hex digits).
    pub fn child(&self, span_id: &str) -> String {
        format!(
            "00-{}-{span_id}-{}",
            self.trace_id(),
            &self.traceparent[53..55]
        )
    }
}

/// A new random span id: 16 hex digits, never all zeros.
pub fn new_span_id() -> String {
    let id = fastrand::u64(1..);
    format!("{id:016x}")
}

/// The version 00 form of a `traceparent`, or `None` when it is not valid. A later version's
/// value is read as its version 00 prefix, as the specification asks.
fn parse_traceparent(value: &str) -> Option<String> {
    let value = value.trim();
    let bytes = value.as_bytes();
    if bytes.len() < 55 {
        return None;
    }
    let version = &value[..2];
    let exact = bytes.len() == 55;
    if !is_hex(version) || version == "ff" || (version == "00" && !exact) {
        return None;
    }
    if !exact && bytes[55] != b'-' {
        return None;
    }
    let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    let dashes = bytes[2] == b'-' && bytes[35] == b'-' && bytes[52] == b'-';
    let nonzero = |id: &str| id.bytes().any(|b| b != b'0');
    (dashes
        && is_hex(trace_id)
        && is_hex(parent_id)
        && is_hex(flags)
        && nonzero(trace_id)
        && nonzero(parent_id))
    .then(|| format!("00-{trace_id}-{parent_id}-{flags}"))
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn printable(text: &str) -> bool {
    text.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// An optional value, trimmed: `None` when absent or empty, `error` when `valid` refuses it.
fn checked(
    value: Option<&str>,
    valid: fn(&str) -> bool,
    error: TraceError,
) -> Result<Option<String>, TraceError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) if valid(text) => Ok(Some(text.to_string())),
        Some(_) => Err(error),
    }
}

fn valid_baggage(value: &str) -> bool {
    value.len() <= MAX_BAGGAGE && printable(value)
}

fn valid_tracestate(value: &str) -> bool {
    let members: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    value.len() <= MAX_TRACESTATE
        && printable(value)
        && members.len() <= MAX_TRACESTATE_MEMBERS
        && members.iter().all(|m| {
            m.split_once('=')
                .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_kept_and_a_child_keeps_trace_id_and_flags() {
        let context = TraceContext::parse(Some(PARENT), Some("vendor=abc,other=1"), None)
            .unwrap()
            .unwrap();
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            context.child("0123456789abcdef"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0123456789abcdef-01"
        );
        assert_eq!(context.tracestate.as_deref(), Some("vendor=abc,other=1"));
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(
                TraceContext::parse(Some(bad), None, None),
                Err(TraceError::Traceparent),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_later_version_is_read_as_its_version_00_prefix() {
        let context = TraceContext::parse(
            Some("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds"),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(context.traceparent, PARENT);
    }

    #[test]
    fn oversized_or_malformed_tracestate_and_baggage_are_refused_in_fields_and_dropped_from_headers()
     {
        let long_state = format!("k={}", "v".repeat(MAX_TRACESTATE));
        assert_eq!(
            TraceContext::parse(Some(PARENT), Some(&long_state), None),
            Err(TraceError::Tracestate)
        );
        assert_eq!(
            TraceContext::parse(Some(PARENT), Some("novalue"), None),
            Err(TraceError::Tracestate)
        );
        let long_baggage = "a=b,".repeat(MAX_BAGGAGE);
        assert_eq!(
            TraceContext::parse(Some(PARENT), None, Some(&long_baggage)),
            Err(TraceError::Baggage)
        );
        assert_eq!(
            TraceContext::parse(None, Some("k=v"), None),
            Err(TraceError::Orphan)
        );

        let mut headers = HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        headers.insert("tracestate", long_state.parse().unwrap());
        headers.insert("baggage", "user=alice".parse().unwrap());
        let context = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(context.tracestate, None);
        assert_eq!(context.baggage.as_deref(), Some("user=alice"));
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert_eq!(TraceContext::from_headers(&headers), None);
        headers.append("traceparent", PARENT.parse().unwrap());
        assert_eq!(
            TraceContext::from_headers(&headers),
            None,
            "two traceparents"
        );
    }

    #[test]
    fn span_ids_are_16_hex_digits_and_not_zero() {
        for _ in 0..100 {
            let id = new_span_id();
            assert_eq!(id.len(), 16);
            assert!(is_hex(&id) && id != "0000000000000000");
        }
    }
}
