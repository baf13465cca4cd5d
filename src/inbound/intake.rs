//! `POST /inbound/{id}`: the verification chain (README, "Receiving pushes from a remote agent"), in order — subscription, size,
//! rate, token (both header names, constant time), Authorization or JWT, Standard Webhooks
//! signature and timestamp, replay, body shape, task — then a durable accept and routing.
//! Every request gets a receipt; a caller that fails verification learns nothing but 401.

use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::Inbound;
use super::receipt::receipt;
use super::subscriptions::inbound_url;
use crate::a2a::event::read_push_body;
use crate::domain::DomainError;
use crate::signing::verify::{CapturedRequest, ed25519_keys};
use crate::signing::{jwt, webhooks};
use crate::store::{
    CheckResult, GatewayIntake, InboundAccept, InboundOutcome, InboundRoute, JwtProfile,
    ReceiptRecord, ReplayKey, SubscriptionRecord, now_ms,
};
use crate::trace::TraceContext;

/// The answer to the pushing peer.
#[derive(Debug, Clone)]
pub struct IntakeAnswer {
    pub status: u16,
    pub body: Value,
}

fn answer(status: u16, body: Value) -> IntakeAnswer {
    IntakeAnswer { status, body }
}

fn check(name: &str, passed: bool, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        passed,
        detail: detail.into(),
    }
}

fn equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn now_s() -> i64 {
    (now_ms() / 1000) as i64
}

/// Clock difference accepted on a peer's JWT, seconds.
const JWT_LEEWAY_S: i64 = 60;

/// Runs the authentication checks. Returns the checks, notes, and the identifiers the verified
/// credentials signed (JWT `jti`, a signed `webhook-id`), each with when it stops verifying.
async fn authenticate(
    inbound: &Inbound,
    sub: &SubscriptionRecord,
    request: &CapturedRequest,
) -> (Vec<CheckResult>, Vec<String>, Vec<ReplayKey>) {
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    let mut identity_expected = false;
    let mut identity_shown = false;
    if let Some(expected) = &sub.token {
        identity_expected = true;
        let presented = ["x-a2a-notification-token", "a2a-notification-token"]
            .into_iter()
            .find_map(|name| request.header(name).map(|value| (name, value)));
        match presented {
            Some((name, value)) => {
                let ok = equal(value, expected.expose());
                identity_shown |= ok;
                checks.push(check(
                    "token",
                    ok,
                    if ok {
                        format!("{name} matches")
                    } else {
                        format!("{name} does not match")
                    },
                ));
                let sdk = if name == "x-a2a-notification-token" {
                    "Python, JS and Java SDKs"
                } else {
                    "Go and Rust SDKs"
                };
                notes.push(format!("token sent as {name} (as the {sdk} do)"));
            }
            None => notes.push(
                "no token header (the JS SDK sends only Authorization when both are configured)"
                    .to_string(),
            ),
        }
    }
    if let Some(auth) = &sub.authentication {
        identity_expected = true;
        let expected = auth
            .credentials
            .as_ref()
            .map(|c| c.expose())
            .unwrap_or_default();
        match request.header("authorization") {
            Some(value) => {
                let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
                let ok = scheme.eq_ignore_ascii_case(&auth.scheme) && equal(credentials, expected);
                identity_shown |= ok;
                checks.push(check(
                    "authorization",
                    ok,
                    if ok {
                        "Authorization matches"
                    } else {
                        "Authorization does not match"
                    },
                ));
                if ok && scheme != auth.scheme {
                    notes.push(format!(
                        "Authorization scheme {scheme:?} differs in case from the configured {:?}",
                        auth.scheme
                    ));
                }
            }
            None => notes.push("no Authorization header".to_string()),
        }
    }
    let mut jwks_document = None;
    let mut signed_ids = Vec::new();
    if let Some(jwks_url) = &sub.jwks_url {
        let token = request.header("authorization").and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
        let result = match token {
            None => Err("no Authorization: Bearer JWT".to_string()),
            Some(token) => {
                let kid = jwt::header_field(token, "kid");
                match inbound.jwks.get(jwks_url, kid.as_deref()).await {
                    Err(e) => Err(format!("the peer's JWKS is unavailable: {e}")),
                    Ok(document) => {
                        let verified = verify_jwt(inbound, sub, token, &document, &request.body);
                        jwks_document = Some(document);
                        verified
                    }
                }
            }
        };
        match result {
            Ok((detail, replay_key)) => {
                checks.push(check("jwt", true, detail));
                signed_ids.push(replay_key);
                // A JWT its JWKS verifies identifies the peer as well as a token would: the
                // A2A samples' sender sends only that.
                identity_shown = true;
            }
            Err(reason) => checks.push(check("jwt", false, reason)),
        }
    }
    if identity_expected && !identity_shown && checks.iter().all(|c| c.passed) {
        checks.push(check(
            "credentials",
            false,
            "neither the token nor the Authorization header was presented",
        ));
    }
    let mut public_keys: Vec<Vec<u8>> = sub
        .webhook_public_keys
        .iter()
        .filter_map(|k| webhooks::parse_public_key(k))
        .collect();
    let required = sub.webhook_secret.is_some() || !public_keys.is_empty();
    if let Some(document) = &jwks_document {
        public_keys.extend(ed25519_keys(document));
    }
    let signed = request.header("webhook-signature").is_some();
    if required || (signed && !public_keys.is_empty()) {
        let keys = webhooks::WebhookKeys {
            secrets: sub
                .webhook_secret
                .iter()
                .chain(&sub.more_webhook_secrets)
                .filter_map(|s| webhooks::parse_secret(s.expose()))
                .collect(),
            public_keys,
        };
        let result = webhooks::verify(
            request.header("webhook-id"),
            request.header("webhook-timestamp"),
            request.header("webhook-signature"),
            &request.body,
            &keys,
            now_s(),
            sub.tolerance_s as i64,
        );
        if result.is_ok() {
            // Verified, so both headers are present and the timestamp is a number.
            let id = request.header("webhook-id").unwrap_or_default();
            let at: i64 = request
                .header("webhook-timestamp")
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or_default();
            signed_ids.push(ReplayKey {
                key: format!("webhook-id:{id}"),
                expires_at_ms: seconds_to_ms(at + sub.tolerance_s as i64),
            });
        }
        checks.push(match result {
            Ok(matched) => check(
                "webhook-signature",
                true,
                format!("valid ({matched:?}), timestamp within {}s", sub.tolerance_s),
            ),
            Err(e) => check("webhook-signature", false, e.to_string()),
        });
    }
    (checks, notes, signed_ids)
}

/// Reads the body (a 1.0 `StreamResponse` or a 0.3 Task/event) and notes its shape.
fn parse_body(
    body: &[u8],
    notes: &mut Vec<String>,
) -> Result<
    (
        String,
        a2a::StreamResponse,
        Box<serde_json::value::RawValue>,
    ),
    String,
> {
    let push = read_push_body(body)?;
    notes.push(format!("body: {} ({})", push.shape.name(), push.kind()));
    let raw = serde_json::value::to_raw_value(&push.value).map_err(|e| e.to_string())?;
    Ok((push.event.task_id, push.event.event, raw))
}

async fn refuse(inbound: &Inbound, id: &str, receipt: ReceiptRecord, body: Value) -> IntakeAnswer {
    let status = receipt.status;
    inbound.operator.inbound_rejected(id, &receipt.verdict);
    inbound.metrics.inbound_push(&receipt.verdict);
    if let Err(e) = inbound.store.add_receipt(id.to_string(), receipt).await {
        tracing::warn!(subscription_id = id, error = %e, "could not record a receipt");
    }
    answer(status, body)
}

/// Handles one push. `too_large` is set when the body exceeded the limit (and is empty).
pub async fn intake(
    inbound: &Inbound,
    id: &str,
    request: CapturedRequest,
    too_large: bool,
) -> IntakeAnswer {
    let subscription = match inbound.store.get_subscription(id.to_string()).await {
        Ok(Some(subscription)) => subscription,
        Ok(None) => {
            inbound.metrics.inbound_push("unknown_subscription");
            return answer(404, json!({"error": "unknown subscription"}));
        }
        Err(e) => {
            tracing::error!(error = %e, "store failure at intake");
            inbound.metrics.inbound_push("unavailable");
            return answer(503, json!({"error": "temporarily unavailable; retry"}));
        }
    };
    if !inbound.allow(id).await {
        inbound.metrics.inbound_push("rate_limited");
        return answer(429, json!({"error": "rate limited; retry later"}));
    }
    if too_large {
        let limit = inbound.limits.max_body_bytes;
        let notes = vec![format!(
            "body larger than limits.max_body_bytes ({limit} bytes)"
        )];
        return refuse(
            inbound,
            id,
            receipt(&request, &subscription, "too_large", 413, vec![], notes),
            json!({"error": "body too large"}),
        )
        .await;
    }
    let mut notes = Vec::new();
    match request.header("content-type").map(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }) {
        Some(ct) if ct == "application/json" || ct == "application/a2a+json" => {
            notes.push(format!("content-type {ct}"))
        }
        Some(ct) => notes.push(format!(
            "content-type {ct:?} is neither application/json nor application/a2a+json"
        )),
        None => notes.push("no content-type".to_string()),
    }
    let (checks, auth_notes, signed_ids) = authenticate(inbound, &subscription, &request).await;
    notes.extend(auth_notes);
    if checks.iter().any(|c| !c.passed) {
        tracing::info!(
            subscription_id = id,
            "inbound push refused: verification failed"
        );
        return refuse(
            inbound,
            id,
            receipt(&request, &subscription, "unauthorized", 401, checks, notes),
            json!({"error": "unauthorized"}),
        )
        .await;
    }
    let (task_id, event, body) = match parse_body(&request.body, &mut notes) {
        Ok(parsed) => parsed,
        Err(reason) => {
            notes.push(reason.clone());
            return refuse(
                inbound,
                id,
                receipt(&request, &subscription, "malformed", 400, checks, notes),
                json!({"error": reason}),
            )
            .await;
        }
    };
    if let Some(expected) = &subscription.task_id {
        if *expected != task_id {
            let reason = format!(
                "the event is for task {task_id:?}, this subscription accepts only {expected:?}"
            );
            notes.push(reason.clone());
            return refuse(
                inbound,
                id,
                receipt(&request, &subscription, "malformed", 400, checks, notes),
                json!({"error": reason}),
            )
            .await;
        }
    }
    if subscription.gateway.is_some() {
        if let Err(e) = bind_client_config(inbound, &subscription, &task_id).await {
            tracing::error!(error = %e, "could not store the client's config for a gateway task");
            inbound.metrics.inbound_push("unavailable");
            return answer(503, json!({"error": "temporarily unavailable; retry"}));
        }
    }
    // The peer's own context; a gateway intake's agent usually sends none, and its pushes then
    // join the trace of the client's request that opened the intake.
    let mut trace = TraceContext::received(
        request.header("traceparent"),
        request.header("tracestate"),
        request.header("baggage"),
    )
    .or_else(|| subscription.gateway.as_ref()?.trace.clone());
    let mut span = inbound.telemetry.receive(trace.as_ref(), id, &task_id);
    if let Some(webhook_id) = request.header("webhook-id") {
        span.set("messaging.message.id", webhook_id.to_string());
    }
    if trace.is_none() {
        trace = span.context();
    }
    let accept = InboundAccept {
        subscription_id: id.to_string(),
        replay_keys: replay_keys(&request, signed_ids, subscription.tolerance_s),
        replay_max_entries: inbound.settings.replay_cache_max_entries,
        task_id: task_id.clone(),
        push_sequence: request
            .header("x-a2a-push-sequence")
            .and_then(|v| v.parse().ok()),
        event,
        body,
        route: route_of(&subscription),
        receipt: receipt(&request, &subscription, "accepted", 200, checks, notes),
        trace,
        origin_span: span.span_id(),
    };
    let outcome = inbound.store.accept_inbound(accept).await;
    span.set(
        "a2a.inbound.verdict",
        match &outcome {
            Ok(InboundOutcome::Accepted { .. }) => "accepted",
            Ok(InboundOutcome::Duplicate) => "duplicate",
            Err(_) => "unavailable",
        },
    );
    if outcome.is_err() {
        span.fail("the push could not be stored");
    }
    match outcome {
        Ok(InboundOutcome::Accepted {
            sequence,
            replay_evicted,
            forwarded,
        }) => {
            if replay_evicted > 0 {
                inbound.metrics.replay_evictions(replay_evicted);
                tracing::warn!(
                    subscription_id = id,
                    evicted = replay_evicted,
                    "replay cache full (inbound.replay_cache_max_entries): entries dropped before they expired"
                );
            }
            inbound.notify(id, sequence).await;
            inbound.metrics.inbound_push("accepted");
            if let Some(forwarded) = &forwarded {
                let urls = forwarded.deliveries.iter().map(|d| d.url.as_str());
                let wait = inbound.backpressure.wait_for(urls, now_ms());
                inbound.backpressure.slow_down(wait, &inbound.metrics).await;
            }
            answer(200, json!({"status": "accepted", "sequence": sequence}))
        }
        Ok(InboundOutcome::Duplicate) => {
            inbound.metrics.inbound_push("duplicate");
            answer(200, json!({"status": "duplicate"}))
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store an inbound event");
            inbound.metrics.inbound_push("unavailable");
            answer(503, json!({"error": "temporarily unavailable; retry"}))
        }
    }
}

/// Verifies a push's JWT by the subscription's profile; says what verified, and the key that
/// remembers the token until it stops verifying.
fn verify_jwt(
    inbound: &Inbound,
    sub: &SubscriptionRecord,
    token: &str,
    jwks: &Value,
    body: &[u8],
) -> Result<(String, ReplayKey), String> {
    let algorithm = jwt::header_field(token, "alg").unwrap_or_default();
    match sub.jwt_profile {
        JwtProfile::Hub => {
            let audience = inbound_url(inbound, &sub.id);
            let expect = jwt::Expectations {
                audience: Some(&audience),
                issuer: sub.issuer.as_deref(),
                leeway_s: JWT_LEEWAY_S,
            };
            let claims =
                jwt::verify(token, jwks, &expect, body, now_s()).map_err(|e| e.to_string())?;
            Ok((
                format!(
                    "{algorithm} JWT valid: key, audience, issuer, lifetime and body hash (raw bytes)"
                ),
                ReplayKey {
                    key: format!("jti:{}", claims.jti),
                    expires_at_ms: seconds_to_ms(claims.exp + JWT_LEEWAY_S),
                },
            ))
        }
        JwtProfile::A2aSamples => {
            let tolerance = sub.tolerance_s as i64;
            let now = now_s();
            let verified =
                jwt::verify_sample(token, jwks, body, tolerance, now).map_err(|e| e.to_string())?;
            let spelling = match verified.body_hash {
                jwt::BodyHash::Raw => "the raw bytes",
                jwt::BodyHash::Compact => "the body re-spelled compactly",
            };
            Ok((
                format!(
                    "{algorithm} JWT valid (a2a-samples profile): key, iat {}s old, body hash over {spelling}",
                    now - verified.iat
                ),
                // The profile has no `jti`: the token itself is the push's signed identity.
                ReplayKey {
                    key: format!("jwt-sha256:{}", jwt::body_sha256(token.as_bytes())),
                    expires_at_ms: seconds_to_ms(verified.iat + tolerance),
                },
            ))
        }
    }
}

fn seconds_to_ms(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0).saturating_mul(1000)
}

/// The keys a push is remembered by: every identifier a verified credential signed, until it
/// stops verifying; the `webhook-id` even unsigned (a peer's retry of one event keeps it, while
/// its JWT is new), for the tolerance; a body hash when the push carries no identifier. Any one
/// of them seen before makes the push a duplicate, so an unsigned header can add a reason to
/// refuse but never remove one: a captured push sent again with a fresh `webhook-id` is still
/// caught by its `jti`.
fn replay_keys(
    request: &CapturedRequest,
    signed: Vec<ReplayKey>,
    tolerance_s: u64,
) -> Vec<ReplayKey> {
    let mut keys = signed;
    let window_end = now_ms() + tolerance_s * 1000;
    if let Some(webhook_id) = request.header("webhook-id") {
        let key = format!("webhook-id:{webhook_id}");
        match keys.iter_mut().find(|k| k.key == key) {
            Some(signed) => signed.expires_at_ms = signed.expires_at_ms.max(window_end),
            None => keys.push(ReplayKey {
                key,
                expires_at_ms: window_end,
            }),
        }
    }
    if keys.is_empty() {
        keys.push(ReplayKey {
            key: format!("sha256:{}", jwt::body_sha256(&request.body)),
            expires_at_ms: window_end,
        });
    }
    keys
}

/// Where a subscription's accepted events go.
fn route_of(subscription: &SubscriptionRecord) -> InboundRoute {
    match (&subscription.gateway, &subscription.forward_to) {
        (Some(gateway), _) => InboundRoute::Publish {
            tenant: gateway.tenant.clone(),
        },
        (None, Some(url)) => InboundRoute::Forward {
            tenant: forward_tenant(&subscription.id),
            url: url.clone(),
        },
        (None, None) => InboundRoute::Log,
    }
}

/// The tenant under which a subscription's forwarded deliveries live.
pub fn forward_tenant(subscription_id: &str) -> String {
    format!("{}{subscription_id}", crate::store::FORWARDING_TENANTS)
}

/// A gateway intake's first push for `task_id`: stores the client's inline config for the task
/// (unless it is stored already), so that the task's events reach the client.
pub async fn bind_client_config(
    inbound: &Inbound,
    intake: &SubscriptionRecord,
    task_id: &str,
) -> Result<(), DomainError> {
    let Some(GatewayIntake {
        client_config: Some(template),
        tenant,
        ..
    }) = &intake.gateway
    else {
        return Ok(());
    };
    let existing = inbound
        .store
        .get_config(tenant.clone(), task_id.to_string(), template.id.clone())
        .await?;
    if existing.is_none() {
        let mut config = template.clone();
        config.task_id = task_id.to_string();
        let rules = crate::store::ConfigRules {
            principal: None,
            max_per_task: inbound.limits.max_configs_per_task,
        };
        if inbound.store.put_config(config, rules).await? == crate::store::ConfigWrite::TooMany {
            tracing::warn!(
                task_id,
                "the client's inline push config was not stored: the task has limits.max_configs_per_task configs already"
            );
        }
    }
    Ok(())
}
