//! Subscriptions: what the hub expects from one peer (or one task), created, listed, shown
//! (secrets masked) and deleted — with the registration at the remote agent when asked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::Value;

use super::Inbound;
use super::remote::{self, HTTP_JSON, JSONRPC, Registration};
use crate::a2a::params::{InvalidField, Params, check_id};
use crate::config::Secret;
use crate::domain::DomainError;
use crate::domain::deliveries::page_limit;
use crate::domain::push_configs::resolve_tenant;
use crate::signing::webhooks;
use crate::store::{Authentication, JwtProfile, RemoteAgent, SubscriptionRecord, now_ms};

const DEFAULT_TOLERANCE_S: u64 = 300;

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The inbound URL peers push to.
pub fn inbound_url(inbound: &Inbound, id: &str) -> String {
    format!("{}/inbound/{id}", inbound.public_base_url)
}

/// A subscription as the admin API shows it: secrets masked.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub task_id: Option<String>,
    pub has_token: bool,
    pub authentication_scheme: Option<String>,
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    /// `hub` or `a2a-samples`: the claims the peer's JWTs carry.
    pub jwt_profile: &'static str,
    pub has_webhook_secret: bool,
    pub webhook_public_keys: Vec<String>,
    pub tolerance_seconds: u64,
    pub forward_to: Option<String>,
    pub agent: Option<RemoteAgent>,
    pub created_at_ms: u64,
}

pub fn view(inbound: &Inbound, s: &SubscriptionRecord) -> SubscriptionView {
    SubscriptionView {
        id: s.id.clone(),
        tenant: s.tenant.clone(),
        url: inbound_url(inbound, &s.id),
        task_id: s.task_id.clone(),
        has_token: s.token.is_some(),
        authentication_scheme: s.authentication.as_ref().map(|a| a.scheme.clone()),
        jwks_url: s.jwks_url.clone(),
        issuer: s.issuer.clone(),
        jwt_profile: s.jwt_profile.as_str(),
        has_webhook_secret: s.webhook_secret.is_some(),
        webhook_public_keys: s.webhook_public_keys.clone(),
        tolerance_seconds: s.tolerance_s,
        forward_to: s.forward_to.clone(),
        agent: s.agent.clone(),
        created_at_ms: s.created_at_ms,
    }
}

/// The answer to a create: the settings, and what to give the remote agent (with secrets,
/// once).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    pub push_notification_config: Value,
}

/// Most Standard Webhooks secrets or public keys a subscription holds (a rotation needs two).
const MAX_WEBHOOK_KEYS: usize = 10;

/// `webhookSecret`: one `whsec_…` secret, or a list of them while the peer rotates.
fn webhook_secrets(params: &Params) -> Result<Option<Vec<String>>, InvalidField> {
    const WHAT: &str = "must be whsec_ followed by base64";
    let valid = |k: &str| webhooks::parse_secret(k).is_some();
    match params.raw_array("webhookSecret") {
        Ok(Some(listed)) => keys_of("webhookSecret", &listed, valid, WHAT).map(Some),
        Ok(None) => Ok(None),
        // Not an array: a single secret.
        Err(_) => {
            let single = params.required_string("webhookSecret")?;
            if !valid(&single) {
                return Err(InvalidField::new("webhookSecret", WHAT));
            }
            Ok(Some(vec![single]))
        }
    }
}

/// `webhookPublicKeys`: `whpk_…` Ed25519 keys, any of which may sign.
fn webhook_public_keys(params: &Params) -> Result<Option<Vec<String>>, InvalidField> {
    let Some(listed) = params.raw_array("webhookPublicKeys")? else {
        return Ok(None);
    };
    keys_of(
        "webhookPublicKeys",
        &listed,
        |k| webhooks::parse_public_key(k).is_some(),
        "must be whpk_ followed by the base64 of a 32-byte Ed25519 key",
    )
    .map(Some)
}

fn keys_of(
    field: &str,
    listed: &[Value],
    valid: impl Fn(&str) -> bool,
    what: &str,
) -> Result<Vec<String>, InvalidField> {
    if listed.is_empty() || listed.len() > MAX_WEBHOOK_KEYS {
        return Err(InvalidField::new(
            field,
            format!("must hold 1 to {MAX_WEBHOOK_KEYS} keys"),
        ));
    }
    listed
        .iter()
        .enumerate()
        .map(|(i, key)| {
            key.as_str()
                .filter(|k| valid(k))
                .map(str::to_string)
                .ok_or_else(|| InvalidField::new(format!("{field}[{i}]"), what))
        })
        .collect()
}

/// Replaces a subscription's Standard Webhooks secrets or public keys (a peer's rotation:
/// give the old and the new, then the new alone). Only those two fields may be given.
pub async fn update_keys(
    inbound: &Inbound,
    id: &str,
    body: Value,
) -> Result<SubscriptionView, DomainError> {
    let params = Params::from_value(Some(body))?;
    params.only(&["webhookSecret", "webhookPublicKeys"])?;
    let secrets = webhook_secrets(&params)?;
    let public_keys = webhook_public_keys(&params)?;
    if secrets.is_none() && public_keys.is_none() {
        return Err(InvalidField::new(
            "body",
            "names nothing to change: give webhookSecret and/or webhookPublicKeys",
        )
        .into());
    }
    let mut subscription = get(inbound, id).await?;
    if subscription.gateway.is_some() {
        return Err(DomainError::NotFound(format!("no subscription {id:?}")));
    }
    if let Some(secrets) = secrets {
        let mut secrets = secrets.into_iter().map(Secret::new);
        subscription.webhook_secret = secrets.next();
        subscription.more_webhook_secrets = secrets.collect();
    }
    if let Some(keys) = public_keys {
        subscription.webhook_public_keys = keys;
    }
    inbound.store.put_subscription(subscription.clone()).await?;
    tracing::info!(subscription_id = id, "subscription keys replaced");
    Ok(view(inbound, &subscription))
}

async fn checked_url(
    inbound: &Inbound,
    field: &str,
    url: Option<String>,
) -> Result<Option<String>, InvalidField> {
    match url {
        None => Ok(None),
        Some(url) => {
            inbound
                .policy
                .check_url(&url)
                .await
                .map_err(|refusal| InvalidField::new(field, format!("is refused: it {refusal}")))?;
            Ok(Some(url))
        }
    }
}

/// Creates a subscription from the admin API's JSON body.
pub async fn create(
    inbound: &Inbound,
    tenant: Option<&str>,
    body: Value,
) -> Result<Created, DomainError> {
    let params = Params::from_value(Some(body))?;
    params.only(&[
        "tenant",
        "taskId",
        "token",
        "authentication",
        "jwksUrl",
        "issuer",
        "jwtProfile",
        "webhookSecret",
        "webhookPublicKeys",
        "toleranceSeconds",
        "forwardTo",
        "agent",
    ])?;
    let tenant = resolve_tenant(tenant, params.string("tenant")?.as_deref())?;
    let task_id = params.string("taskId")?;
    if let Some(task_id) = &task_id {
        check_id("taskId", task_id)?;
    }
    let token = params.string("token")?.unwrap_or_else(random_secret);
    let authentication = match params.object("authentication")? {
        None => None,
        Some(auth) => {
            auth.only(&["scheme", "credentials"])?;
            let scheme = auth.required_string("scheme")?;
            let credentials = auth.string("credentials")?.unwrap_or_else(random_secret);
            Some(Authentication {
                scheme,
                credentials: Some(Secret::new(credentials)),
                schemes_v03: Vec::new(),
            })
        }
    };
    let jwks_url = checked_url(inbound, "jwksUrl", params.string("jwksUrl")?).await?;
    if jwks_url.is_some() && authentication.is_some() {
        return Err(InvalidField::new(
            "authentication",
            "cannot be combined with jwksUrl: both define the Authorization header; choose one",
        )
        .into());
    }
    let jwt_profile = match params.string("jwtProfile")?.as_deref() {
        None | Some("hub") => JwtProfile::Hub,
        Some("a2a-samples") => JwtProfile::A2aSamples,
        Some(other) => {
            return Err(InvalidField::new(
                "jwtProfile",
                format!("is {other:?}; must be \"hub\" (the default) or \"a2a-samples\""),
            )
            .into());
        }
    };
    if jwt_profile != JwtProfile::Hub && jwks_url.is_none() {
        return Err(
            InvalidField::new("jwtProfile", "needs jwksUrl: the JWKS verifies those JWTs").into(),
        );
    }
    let mut webhook_secrets = webhook_secrets(&params)?.unwrap_or_default().into_iter();
    let webhook_secret = webhook_secrets.next();
    let more_webhook_secrets = webhook_secrets.map(Secret::new).collect();
    let webhook_public_keys = webhook_public_keys(&params)?.unwrap_or_default();
    let tolerance_s = match params.integer("toleranceSeconds")? {
        None => DEFAULT_TOLERANCE_S,
        Some(n) if (1..=3600).contains(&n) => n as u64,
        Some(_) => {
            return Err(InvalidField::new("toleranceSeconds", "must be between 1 and 3600").into());
        }
    };
    let forward_to = checked_url(inbound, "forwardTo", params.string("forwardTo")?).await?;
    let agent = match params.object("agent")? {
        None => None,
        Some(agent) => {
            agent.only(&["url", "binding"])?;
            let url = checked_url(inbound, "agent.url", Some(agent.required_string("url")?))
                .await?
                .unwrap_or_default();
            let binding = agent
                .string("binding")?
                .unwrap_or_else(|| JSONRPC.to_string());
            if binding != JSONRPC && binding != HTTP_JSON {
                return Err(
                    InvalidField::new("agent.binding", "must be JSONRPC or HTTP+JSON").into(),
                );
            }
            if task_id.is_none() {
                return Err(InvalidField::new(
                    "taskId",
                    "is required to register at a remote agent",
                )
                .into());
            }
            Some(RemoteAgent {
                url,
                binding,
                remote_config_id: None,
            })
        }
    };
    let mut subscription = SubscriptionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant,
        task_id,
        token: Some(Secret::new(token)),
        authentication,
        jwks_url,
        issuer: params.string("issuer")?,
        jwt_profile,
        webhook_secret: webhook_secret.map(Secret::new),
        more_webhook_secrets,
        webhook_public_keys,
        tolerance_s,
        forward_to,
        agent,
        gateway: None,
        delegation: None,
        created_at_ms: now_ms(),
    };
    let url = inbound_url(inbound, &subscription.id);
    // Stored first, so the agent's first push (it may come at once) finds the subscription.
    inbound.store.put_subscription(subscription.clone()).await?;
    if let Some(agent) = subscription.agent.clone() {
        let registration = Registration {
            agent_url: &agent.url,
            binding: &agent.binding,
            task_id: subscription.task_id.as_deref().unwrap_or_default(),
            config_id: &format!("a2a-push-hub-{}", subscription.id),
            url: &url,
            token: subscription.token.as_ref().map(|t| t.expose()),
            authorization: subscription.authentication.as_ref().and_then(|a| {
                a.credentials
                    .as_ref()
                    .map(|c| (a.scheme.as_str(), c.expose()))
            }),
        };
        match remote::register(&inbound.client, &registration).await {
            Ok(remote_id) => {
                subscription.agent = Some(RemoteAgent {
                    remote_config_id: Some(remote_id),
                    ..agent
                });
                inbound.store.put_subscription(subscription.clone()).await?;
            }
            Err(reason) => {
                inbound
                    .store
                    .delete_subscription(subscription.id.clone())
                    .await?;
                return Err(DomainError::Upstream(format!(
                    "registration at the remote agent failed; nothing was kept: {reason}"
                )));
            }
        }
    }
    tracing::info!(subscription_id = %subscription.id, "subscription created");
    let mut config = serde_json::json!({"url": url});
    if let Some(token) = &subscription.token {
        config["token"] = Value::String(token.expose().to_string());
    }
    if let Some(auth) = &subscription.authentication {
        config["authentication"] = serde_json::json!({"scheme": auth.scheme, "credentials": auth.credentials.as_ref().map(|c| c.expose())});
    }
    Ok(Created {
        subscription: view(inbound, &subscription),
        push_notification_config: config,
    })
}

pub async fn get(inbound: &Inbound, id: &str) -> Result<SubscriptionRecord, DomainError> {
    inbound
        .store
        .get_subscription(id.to_string())
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("subscription {id:?} does not exist")))
}

/// A page of the subscriptions, in id order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionPage {
    pub subscriptions: Vec<SubscriptionView>,
    /// The `after` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// The subscriptions after id `after` (from the first without it), at most `limit` of them
/// (`page_limit`).
pub async fn list(
    inbound: &Inbound,
    after: Option<String>,
    limit: Option<usize>,
) -> Result<SubscriptionPage, DomainError> {
    let limit = page_limit(limit)?;
    let found = inbound
        .store
        .list_subscriptions(after.unwrap_or_default(), limit)
        .await?;
    let next_cursor = (found.len() == limit)
        .then(|| found.last().map(|s| s.id.clone()))
        .flatten();
    Ok(SubscriptionPage {
        subscriptions: found.iter().map(|s| view(inbound, s)).collect(),
        next_cursor,
    })
}

/// What deleting did at the remote agent, if there was one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub deleted: bool,
    pub remote: Option<String>,
}

pub async fn delete(inbound: &Inbound, id: &str) -> Result<Deleted, DomainError> {
    let Some(subscription) = inbound.store.get_subscription(id.to_string()).await? else {
        return Ok(Deleted {
            deleted: false,
            remote: None,
        });
    };
    let remote = match (&subscription.agent, &subscription.task_id) {
        (Some(agent), Some(task_id)) => {
            let config_id = agent.remote_config_id.clone().unwrap_or_default();
            Some(
                match remote::unregister(
                    &inbound.client,
                    &agent.url,
                    &agent.binding,
                    task_id,
                    &config_id,
                )
                .await
                {
                    Ok(()) => "the registration at the remote agent was deleted".to_string(),
                    Err(reason) => {
                        tracing::warn!(subscription_id = id, %reason, "could not delete the registration at the remote agent");
                        format!(
                            "the registration at the remote agent could not be deleted: {reason}"
                        )
                    }
                },
            )
        }
        _ => None,
    };
    inbound.store.delete_subscription(id.to_string()).await?;
    inbound.forget(id).await;
    Ok(Deleted {
        deleted: true,
        remote,
    })
}
