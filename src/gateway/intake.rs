//! The gateway's intake: for each request that carried an inline push config, and for each
//! task given a config later, an intake subscription whose URL and per-intake token replace
//! the client's webhook at the agent. What the agent pushes there is verified by the token and
//! published as the task's event, exactly as through the event API.

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::{Value, json};

use super::Gateway;
use super::upstream::{self, UpstreamError};
use crate::a2a::push_config::ConfigInput;
use crate::a2a::version::WireVersion;
use crate::config::Secret;
use crate::domain::DomainError;
use crate::inbound::subscriptions::inbound_url;
use crate::store::{ConfigRecord, ConfigState, GatewayIntake, SubscriptionRecord, now_ms};
use crate::trace::TraceContext;

/// The config id the hub registers its intake under at the agent.
pub const INTAKE_CONFIG_ID: &str = "a2a-push-hub";

fn token() -> String {
    let mut bytes = [0u8; 32];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The hub's config for the agent: where and with which token to push.
pub struct Intake {
    pub subscription_id: String,
    pub url: String,
    pub token: String,
}

impl Intake {
    /// The `TaskPushNotificationConfig` to give the agent.
    pub fn config(&self, task_id: Option<&str>) -> Value {
        let mut config = json!({"id": INTAKE_CONFIG_ID, "url": self.url, "token": self.token});
        if let Some(task_id) = task_id {
            config["taskId"] = json!(task_id);
        }
        config
    }
}

/// Creates an intake for one request. `client` is the client's inline config, to be stored
/// for the task when the task is known; `task_id` is set when it already is. What the agent
/// pushes there joins the trace of the request's `headers`.
pub async fn open(
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: Option<&str>,
    client: Option<(ConfigInput, WireVersion)>,
) -> Result<Intake, DomainError> {
    let client_config = match client {
        None => None,
        Some((input, wire_version)) => {
            gateway
                .services
                .policy
                .check_url(&input.url)
                .await
                .map_err(|refusal| {
                    crate::a2a::params::InvalidField::new(
                        "configuration.taskPushNotificationConfig.url",
                        format!("is refused: it {refusal}"),
                    )
                })?;
            let now = now_ms();
            Some(ConfigRecord {
                tenant: tenant.to_string(),
                task_id: String::new(),
                id: input.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                url: input.url,
                token: input.token.map(Secret::new),
                authentication: input.authentication,
                wire_version,
                state: ConfigState::Active,
                created_at_ms: now,
                updated_at_ms: now,
                filter: Default::default(),
                owner: None,
            })
        }
    };
    let token = token();
    let subscription = SubscriptionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant: tenant.to_string(),
        task_id: task_id.map(str::to_string),
        token: Some(Secret::new(token.clone())),
        authentication: None,
        jwks_url: None,
        issuer: None,
        jwt_profile: Default::default(),
        webhook_secret: None,
        more_webhook_secrets: Vec::new(),
        webhook_public_keys: Vec::new(),
        tolerance_s: 300,
        forward_to: None,
        agent: None,
        gateway: Some(GatewayIntake {
            tenant: tenant.to_string(),
            client_config,
            trace: TraceContext::from_headers(headers),
        }),
        delegation: None,
        created_at_ms: now_ms(),
    };
    gateway
        .services
        .store
        .put_subscription(subscription.clone())
        .await?;
    Ok(Intake {
        subscription_id: subscription.id.clone(),
        url: inbound_url(&gateway.services.inbound, &subscription.id),
        token,
    })
}

/// Makes sure the agent pushes `task_id` to the hub: registers an intake there (with the
/// caller's credentials) unless one is registered already.
pub async fn ensure_agent_pushes(
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
) -> Result<(), DomainError> {
    let registered = gateway
        .services
        .store
        .subscriptions_of_task(task_id.to_string())
        .await?
        .into_iter()
        .any(|s| s.gateway.is_some() && s.tenant == tenant);
    if registered {
        return Ok(());
    }
    let intake = open(gateway, headers, tenant, Some(task_id), None).await?;
    let mut params = intake.config(Some(task_id));
    if !tenant.is_empty() {
        params["tenant"] = json!(tenant);
    }
    let refused =
        match upstream::call(gateway, headers, "CreateTaskPushNotificationConfig", params).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => DomainError::Upstream(format!(
                "the agent refused the hub's webhook for task {task_id:?}: {error}"
            )),
            Err(UpstreamError::Unreachable(reason)) => DomainError::Upstream(reason),
        };
    // An intake the agent does not know would make the next attempt believe it registered.
    if let Err(e) = gateway
        .services
        .store
        .delete_subscription(intake.subscription_id.clone())
        .await
    {
        tracing::warn!(error = %e, task_id, "cannot remove an intake the agent refused");
    }
    Err(refused)
}
