//! One delivery attempt: read what to send, send it through the guarded client, classify the
//! answer, let the retry policy decide, and record attempt and decision in one store write.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderValue, RETRY_AFTER};
use tracing::Instrument;

use super::client::{GuardedClient, refusal_in};
use super::request;
use super::retry::{Decision, Outcome, RetryPolicy, parse_retry_after};
use crate::metrics::{DeliveryOutcome, Metrics};
use crate::signing::Keyring;
use crate::store::{
    AttemptRecord, ConfigState, DeliveryState, DeliveryUpdate, LaneId, Store, now_ms,
};

/// Most response bytes read from a receiver; the rest is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Response bytes kept in the attempt log.
const SNIPPET_BYTES: usize = 512;
/// When the store cannot record an attempt, try the lane again after this long.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Everything attempts share.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub client: GuardedClient,
    pub policy: RetryPolicy,
    pub content_type: HeaderValue,
    pub metrics: Arc<Metrics>,
    pub keyring: Arc<Keyring>,
    /// The `iss` of the hub's JWTs.
    pub issuer: String,
    pub telemetry: crate::telemetry::Telemetry,
    /// Where circuits opening and closing are reported.
    pub operator: crate::operator::OperatorNotes,
    /// How each origin has been answering.
    pub origins: Arc<super::origins::OriginStats>,
}

/// What the lane does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneStep {
    /// The head is finished (delivered, dead, or no longer pending): move on.
    Advance,
    /// Attempt the head again at this time (ms since the epoch).
    RetryAt(u64),
    /// The config is disabled: the lane is over.
    Close,
}

/// The result of one attempt, for the scheduler.
#[derive(Debug, Clone)]
pub struct Report {
    pub step: LaneStep,
}

/// What an attempt tells the scheduler as soon as the receiver has answered (or the request
/// failed), before the outcome is recorded.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    /// What the answer says of the origin: `Some(false)` failed (counts toward its circuit),
    /// `Some(true)` answered, `None` neither (the request never left).
    pub healthy: Option<bool>,
    /// The delivery is over (delivered or dead), so its lane may move on while the outcome is
    /// being recorded. Should the hub stop before that record is durable, the delivery is
    /// still pending at the next start and is sent again: a repeat with the same webhook-id,
    /// which at-least-once allows, never a reordering of first arrivals.
    pub lane_free: bool,
}

struct Answer {
    outcome: Outcome,
    status: Option<u16>,
    snippet: Option<String>,
    /// The request's credential and signature headers, masked; empty if none was built.
    credentials: Vec<String>,
}

/// Runs one attempt of `delivery_id`. Once the delivery is read and has something to send,
/// `ready` waits for one of the origin's request slots: `false` means not to send now (the
/// origin's circuit opened, this node's lane leases may not outlast the request, or the hub is
/// stopping), and the lane tries again later. Once the
/// receiver's answer is read (or the request failed), before the outcome is recorded,
/// `answered` is told what it means for the origin and the lane. If recording a finished delivery then fails, the report asks for the delivery
/// to be attempted again (`RetryAt`) although its lane has moved on.
/// `lane` and `sequence` are where the delivery stands in its lane, `origin` the lane's origin
/// (as the scheduler keys it).
pub async fn run(
    engine: &Engine,
    delivery_id: &str,
    (lane, sequence): (&LaneId, u64),
    origin: &str,
    ready: impl AsyncFnOnce() -> bool,
    answered: impl FnOnce(Answered),
) -> Report {
    // Every field known now is given now: each one recorded later costs the log formatter
    // another pass over the span (docs/PERFORMANCE.md, "The first attempt reads nothing").
    let span = tracing::info_span!(
        "delivery_attempt",
        delivery_id,
        task_id = lane.task_id.as_str(),
        sequence,
        attempt = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty
    );
    attempt(
        engine,
        delivery_id,
        (lane, sequence),
        origin,
        ready,
        answered,
        span.clone(),
    )
    .instrument(span)
    .await
}

async fn attempt(
    engine: &Engine,
    delivery_id: &str,
    (lane, sequence): (&LaneId, u64),
    origin: &str,
    ready: impl AsyncFnOnce() -> bool,
    answered: impl FnOnce(Answered),
    span: tracing::Span,
) -> Report {
    let retry_soon = || Report {
        step: LaneStep::RetryAt(now_ms() + STORE_RETRY.as_millis() as u64),
    };
    let context = match engine
        .store
        .attempt_context(delivery_id.to_string(), lane.clone(), sequence)
        .await
    {
        Ok(Some(context)) => context,
        Ok(None) => {
            return Report {
                step: LaneStep::Advance,
            };
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the delivery; trying again shortly");
            return retry_soon();
        }
    };
    let delivery = context.delivery;
    let config = match context.config {
        Some(config) if config.state == ConfigState::Active => config,
        // Held until the config is enabled, which hands the lane over again.
        Some(config) if config.state == ConfigState::Suspended => {
            return Report {
                step: LaneStep::Close,
            };
        }
        _ => {
            return Report {
                step: LaneStep::Advance,
            };
        }
    };
    if delivery.state != DeliveryState::Pending {
        return Report {
            step: LaneStep::Advance,
        };
    }
    if !ready().await {
        return Report {
            step: LaneStep::RetryAt(now_ms()),
        };
    }
    let number = delivery.attempts + 1;
    span.record("attempt", number);
    // The attempt is a span of the publisher's trace, with an id of its own: the exported
    // `send` span's when telemetry is on.
    let mut send_span = context.event.trace.as_ref().map(|trace| {
        engine.telemetry.send(
            trace,
            context.event.origin_span.as_deref(),
            crate::telemetry::SendAttrs {
                delivery_id: &delivery.id,
                task_id: &delivery.task_id,
                config_id: &delivery.config_id,
                sequence: delivery.sequence,
                number,
                url: &config.url,
            },
        )
    });
    let trace = context.event.trace.as_ref().map(|trace| {
        let span_id = send_span
            .as_ref()
            .and_then(|s| s.span_id())
            .unwrap_or_else(crate::trace::new_span_id);
        span.record("trace_id", trace.trace_id());
        span.record("span_id", span_id.as_str());
        request::AttemptTrace {
            traceparent: trace.child(&span_id),
            tracestate: trace.tracestate.as_deref(),
            baggage: trace.baggage.as_deref(),
        }
    });

    let started_at_ms = now_ms();
    let started = Instant::now();
    let attempt = request::Attempt {
        number,
        timestamp_s: started_at_ms / 1000,
        now_ms: started_at_ms,
        issuer: &engine.issuer,
        trace: trace.as_ref(),
    };
    let body = match &delivery.body_v03 {
        Some(task) => task.as_bytes(),
        None => context.event.body.get().as_bytes(),
    };
    let answer = send(engine, &config, &delivery, body, &attempt).await;
    let duration = started.elapsed();
    engine.origins.record(
        origin,
        super::origins::Attempted {
            started_ms: started_at_ms,
            duration_ms: duration.as_millis() as u64,
            succeeded: matches!(answer.outcome.class(), "success"),
            answered: answer.status.is_some(),
            class: answer.outcome.class(),
            status: answer.status,
        },
    );
    let decision = engine
        .policy
        .decide(number, delivery.manual, &answer.outcome);
    answered(Answered {
        healthy: answer.outcome.origin_healthy(),
        lane_free: matches!(decision, Decision::Delivered | Decision::Dead(_)),
    });
    let error = answer.outcome.describe(engine.policy.timeout);
    let (update, mut step, outcome) = match &decision {
        Decision::Delivered => (
            DeliveryUpdate::Delivered,
            LaneStep::Advance,
            DeliveryOutcome::Delivered,
        ),
        Decision::RetryIn(delay) => {
            let at = now_ms() + delay.as_millis() as u64;
            let update = DeliveryUpdate::Retry {
                next_attempt_at_ms: at,
                error: error.clone().unwrap_or_default(),
            };
            (update, LaneStep::RetryAt(at), DeliveryOutcome::Retry)
        }
        Decision::Dead(reason) => (
            DeliveryUpdate::Dead {
                error: reason.clone(),
            },
            LaneStep::Advance,
            DeliveryOutcome::Dead,
        ),
        Decision::Disable(reason) => (
            DeliveryUpdate::DisableConfig {
                error: reason.clone(),
            },
            LaneStep::Close,
            DeliveryOutcome::Dead,
        ),
    };
    if let Some(send) = &mut send_span {
        if let Some(status) = answer.status {
            send.set("http.response.status_code", i64::from(status));
        }
        let class = answer.outcome.class();
        let verdict = match &decision {
            Decision::Delivered => "delivered",
            Decision::RetryIn(delay) => {
                send.set("a2a.delivery.retry_in_ms", delay.as_millis() as i64);
                "retry"
            }
            Decision::Dead(_) => "dead",
            Decision::Disable(_) => "config_disabled",
        };
        send.set("a2a.delivery.decision", verdict);
        if !matches!(decision, Decision::Delivered) {
            send.set("error.type", class);
            // The class and status only: error texts may quote the URL.
            send.fail(match answer.status {
                Some(status) => format!("{class}: HTTP {status}"),
                None => class.to_string(),
            });
        }
    }
    let record = AttemptRecord {
        number,
        started_at_ms,
        duration_ms: duration.as_millis() as u64,
        status: answer.status,
        error_class: answer.outcome.class().to_string(),
        error,
        response_snippet: answer.snippet,
        traceparent: trace.map(|t| t.traceparent),
        credentials: answer.credentials,
    };
    let disable_after_ms = engine.policy.disable_after.as_millis() as u64;
    match engine
        .store
        .record_attempt(delivery_id.to_string(), record, update, disable_after_ms)
        .await
    {
        Ok(recorded) => {
            engine
                .metrics
                .attempt(answer.outcome.class(), duration, outcome);
            engine
                .metrics
                .dead_without_attempt(recorded.killed.len() as u64);
            for kind in &recorded.operator_events {
                engine.metrics.operator_event(kind);
            }
            if recorded.suspended {
                engine.metrics.config_suspended();
                tracing::warn!(
                    config_id = delivery.config_id.as_str(),
                    disable_after = %crate::config::HumanDuration(engine.policy.disable_after),
                    "push config suspended: its deliveries failed continuously; they are held until it is enabled"
                );
                step = LaneStep::Close;
            }
        }
        Err(e) => {
            // The receiver may have the event already; sending it again is the at-least-once
            // contract, and the stable webhook-id lets it de-duplicate.
            tracing::warn!(error = %e, "cannot record the attempt; the delivery will be attempted again");
            return retry_soon();
        }
    }
    match &decision {
        // One line per success would flood an operator's logs at thousands a second; the
        // attempt log and the metrics keep every one of them.
        Decision::Delivered => tracing::debug!(
            status = answer.status,
            duration_ms = duration.as_millis() as u64,
            "delivered"
        ),
        Decision::RetryIn(delay) => tracing::info!(
            class = answer.outcome.class(),
            status = answer.status,
            retry_in_ms = delay.as_millis() as u64,
            "attempt failed; will retry"
        ),
        Decision::Dead(reason) => tracing::warn!(reason, "delivery is dead"),
        Decision::Disable(reason) => tracing::warn!(reason, "config disabled"),
    }
    Report { step }
}

/// The secrets a delivery request carries: the config's token and credentials, and the
/// `Authorization` value sent (a signed JWT included). A receiver that echoes its request must
/// not put them into the attempt log.
fn sent_secrets(
    config: &crate::store::ConfigRecord,
    headers: &reqwest::header::HeaderMap,
) -> Vec<String> {
    let mut secrets: Vec<String> = config
        .token
        .iter()
        .chain(
            config
                .authentication
                .iter()
                .filter_map(|a| a.credentials.as_ref()),
        )
        .map(|s| s.expose().to_string())
        .collect();
    if let Some(value) = headers
        .get(reqwest::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        secrets.push(value.split_once(' ').map_or(value, |(_, c)| c).to_string());
    }
    // Too short to be told from ordinary text; such a credential is not worth hiding by
    // mangling every answer that happens to contain it.
    secrets.retain(|s| s.len() >= 4);
    secrets
}

/// The start of a receiver's answer, as stored: every secret replaced by `****`, then cut to
/// `SNIPPET_BYTES`. `kept` reaches past the snippet by the longest secret, so a secret that
/// starts inside the snippet is always whole in it.
fn redacted_snippet(kept: &[u8], secrets: &[String]) -> String {
    let mut text = String::from_utf8_lossy(kept).into_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), "****");
    }
    let mut end = text.len().min(SNIPPET_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

async fn send(
    engine: &Engine,
    config: &crate::store::ConfigRecord,
    delivery: &crate::store::DeliveryRecord,
    body: &[u8],
    attempt: &request::Attempt<'_>,
) -> Answer {
    let refused = |outcome| Answer {
        outcome,
        status: None,
        snippet: None,
        credentials: Vec::new(),
    };
    let url = match engine.client.check_destination(&config.url) {
        Ok(url) => url,
        Err(refusal) => return refused(Outcome::Refused(refusal.to_string())),
    };
    let keys = engine.keyring.current();
    let headers =
        match request::headers(config, delivery, &engine.content_type, body, &keys, attempt) {
            Ok(headers) => headers,
            Err(reason) => return refused(Outcome::Unusable(reason)),
        };
    let secrets = sent_secrets(config, &headers);
    let credentials = request::masked_credentials(&headers);
    let sent = engine
        .client
        .http()
        .post(url)
        .headers(headers)
        .body(body.to_vec())
        .timeout(engine.policy.timeout)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            return Answer {
                credentials,
                ..refused(classify_error(&error))
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // Kept beyond the snippet by the longest secret, so one cut at the snippet's end is still
    // recognised whole and redacted.
    let keep = SNIPPET_BYTES + secrets.iter().map(String::len).max().unwrap_or(0);
    let mut kept = Vec::new();
    let mut read = 0usize;
    let mut timed_out = false;
    while read < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(error) => {
                timed_out = error.is_timeout();
                break;
            }
        }
    }
    let snippet = (!kept.is_empty()).then(|| redacted_snippet(&kept, &secrets));
    let outcome = match status {
        200..=299 => Outcome::Success(status),
        _ if timed_out => Outcome::Timeout,
        410 => Outcome::Gone,
        300..=399 => Outcome::Redirect(status),
        _ => Outcome::Status {
            status,
            retry_after,
        },
    };
    Answer {
        outcome,
        status: Some(status),
        snippet,
        credentials,
    }
}

fn classify_error(error: &reqwest::Error) -> Outcome {
    if let Some(refusal) = refusal_in(error) {
        return Outcome::Refused(refusal.to_string());
    }
    if error.is_timeout() {
        return Outcome::Timeout;
    }
    if error.is_builder() {
        return Outcome::Unusable(error.to_string());
    }
    Outcome::Connect(super::client::error_chain(error))
}

#[cfg(test)]
mod snippet_tests {
    use super::*;

    #[test]
    fn an_echoed_secret_is_redacted_even_across_the_snippets_end() {
        let secret = "tok-0123456789abcdef".to_string();
        let mut echoed = vec![b'x'; SNIPPET_BYTES - 5];
        echoed.extend_from_slice(secret.as_bytes());
        echoed.extend_from_slice(b" and more");
        let keep = SNIPPET_BYTES + secret.len();
        echoed.truncate(keep);
        let snippet = redacted_snippet(&echoed, std::slice::from_ref(&secret));
        assert!(!snippet.contains("tok-0"), "{snippet}");
        assert!(snippet.contains("****"), "{snippet}");
        assert!(snippet.len() <= SNIPPET_BYTES);
        let plain = redacted_snippet(format!("got {secret}!").as_bytes(), &[secret]);
        assert_eq!(plain, "got ****!");
    }
}
