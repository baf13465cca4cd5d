//! Push-config management: create (with URL policy and id assignment), get, list with
//! pagination, idempotent delete. Scoped by tenant; without an upstream agent, a config may
//! be registered for a task the hub has not seen yet.
//!
//! With `server.public_auth`, each call names its caller (the authenticated principal): a
//! task's configs belong to the first principal that registered one (or to the owner its
//! publisher declared), and anyone else is told the task does not exist — never that it is
//! someone else's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use std::sync::Arc;

use super::DomainError;
use crate::a2a::params::{InvalidField, check_id};
use crate::a2a::push_config::{ConfigAddress, ConfigInput, ListRequest};
use crate::a2a::version::WireVersion;
use crate::ssrf::Policy;
use crate::store::{ConfigRecord, ConfigRules, ConfigState, ConfigWrite, Store, now_ms};

/// Push-config management: what it needs.
#[derive(Clone)]
pub struct PushConfigs {
    pub store: Arc<dyn Store>,
    /// Which webhook URLs may be registered.
    pub policy: Arc<Policy>,
    /// `limits.max_configs_per_task`.
    pub max_per_task: usize,
}

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 100;

/// The tenant a request addresses: the path's when given, else the params', else the
/// default tenant `""`.
pub fn resolve_tenant(
    path_tenant: Option<&str>,
    param_tenant: Option<&str>,
) -> Result<String, InvalidField> {
    let tenant = path_tenant.or(param_tenant).unwrap_or_default();
    if !tenant.is_empty() {
        check_id("tenant", tenant)?;
    }
    Ok(tenant.to_string())
}

/// The tenant of an A2A push-config request: as `resolve_tenant`, without the tenants where the
/// hub keeps what a subscription forwards — a client registering a config there could receive
/// a peer's pushes.
fn client_tenant(
    path_tenant: Option<&str>,
    param_tenant: Option<&str>,
) -> Result<String, InvalidField> {
    let tenant = resolve_tenant(path_tenant, param_tenant)?;
    if tenant.starts_with(crate::store::FORWARDING_TENANTS) {
        return Err(InvalidField::new(
            "tenant",
            format!(
                "{}… is where the hub keeps what its inbound subscriptions forward; choose another tenant",
                crate::store::FORWARDING_TENANTS
            ),
        ));
    }
    Ok(tenant)
}

/// The answer for a task the caller may not see: the same as for a task that does not exist.
fn not_found(task_id: &str) -> DomainError {
    DomainError::TaskNotFound(format!("task {task_id:?} not found"))
}

/// Refuses, as "not found", a task that is not the caller's. No caller: no ownership.
async fn check_owner(
    configs: &PushConfigs,
    caller: Option<&str>,
    tenant: &str,
    task_id: &str,
) -> Result<(), DomainError> {
    let Some(caller) = caller else {
        return Ok(());
    };
    let owner = configs
        .store
        .task_owner(tenant.to_string(), task_id.to_string())
        .await?;
    match owner {
        Some(owner) if owner == caller => Ok(()),
        _ => Err(not_found(task_id)),
    }
}

/// Creates or replaces a config. The path's task id (REST) wins over the body's.
pub async fn create(
    configs: &PushConfigs,
    caller: Option<&str>,
    path_tenant: Option<&str>,
    path_task_id: Option<&str>,
    input: ConfigInput,
    wire_version: WireVersion,
) -> Result<ConfigRecord, DomainError> {
    let tenant = client_tenant(path_tenant, input.tenant.as_deref())?;
    let task_id = path_task_id
        .map(str::to_string)
        .or(input.task_id)
        .ok_or_else(|| InvalidField::new("taskId", "is required"))?;
    check_id("taskId", &task_id)?;
    configs
        .policy
        .check_url(&input.url)
        .await
        .map_err(|refusal| InvalidField::new("url", format!("is refused: it {refusal}")))?;
    let now = now_ms();
    let config = ConfigRecord {
        tenant,
        task_id,
        id: input.id.unwrap_or_else(|| Uuid::new_v4().to_string()),
        url: input.url,
        token: input.token.map(crate::config::Secret::new),
        authentication: input.authentication,
        wire_version,
        state: ConfigState::Active,
        created_at_ms: now,
        updated_at_ms: now,
        filter: Default::default(),
        owner: caller.map(str::to_string),
    };
    let max_per_task = configs.max_per_task;
    let rules = ConfigRules {
        principal: config.owner.clone(),
        max_per_task,
    };
    match configs.store.put_config(config.clone(), rules).await? {
        ConfigWrite::Stored => {}
        ConfigWrite::NotOwner => return Err(not_found(&config.task_id)),
        ConfigWrite::TooMany => {
            return Err(InvalidField::new(
                "taskId",
                format!(
                    "task {:?} has {max_per_task} push notification configs already, the most limits.max_configs_per_task allows; delete one, or replace one by giving its id",
                    config.task_id
                ),
            )
            .into());
        }
    }
    tracing::info!(tenant = %config.tenant, task_id = %config.task_id, config_id = %config.id, "push config stored");
    Ok(config)
}

pub async fn get(
    configs: &PushConfigs,
    caller: Option<&str>,
    path_tenant: Option<&str>,
    address: ConfigAddress,
) -> Result<ConfigRecord, DomainError> {
    let tenant = client_tenant(path_tenant, address.tenant.as_deref())?;
    check_owner(configs, caller, &tenant, &address.task_id).await?;
    configs
        .store
        .get_config(tenant, address.task_id.clone(), address.id.clone())
        .await?
        .ok_or_else(|| {
            DomainError::TaskNotFound(format!(
                "no push notification config {:?} for task {:?}",
                address.id, address.task_id
            ))
        })
}

/// One page of configs and the token of the next page (`None` on the last page).
pub struct Page {
    pub configs: Vec<ConfigRecord>,
    pub next_page_token: Option<String>,
}

pub async fn list(
    configs: &PushConfigs,
    caller: Option<&str>,
    path_tenant: Option<&str>,
    request: ListRequest,
) -> Result<Page, DomainError> {
    let tenant = client_tenant(path_tenant, request.tenant.as_deref())?;
    check_owner(configs, caller, &tenant, &request.task_id).await?;
    let page_size = match request.page_size {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(n) if n < 0 => {
            return Err(InvalidField::new("pageSize", "must not be negative").into());
        }
        Some(n) => (n as usize).min(MAX_PAGE_SIZE),
    };
    let after = match request.page_token.as_deref() {
        None => None,
        Some(token) => Some(decode_page_token(token)?),
    };
    let mut configs = configs
        .store
        .list_configs(tenant, request.task_id, after, page_size + 1)
        .await?;
    let next_page_token = if configs.len() > page_size {
        configs.truncate(page_size);
        configs
            .last()
            .map(|c| URL_SAFE_NO_PAD.encode(c.id.as_bytes()))
    } else {
        None
    };
    Ok(Page {
        configs,
        next_page_token,
    })
}

fn decode_page_token(token: &str) -> Result<String, InvalidField> {
    let invalid = || {
        InvalidField::new(
            "pageToken",
            "is not a page token issued by this hub; start again without it",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// Deletes a config; deleting one that does not exist succeeds (the operation is idempotent).
pub async fn delete(
    configs: &PushConfigs,
    caller: Option<&str>,
    path_tenant: Option<&str>,
    address: ConfigAddress,
) -> Result<(), DomainError> {
    let tenant = client_tenant(path_tenant, address.tenant.as_deref())?;
    check_owner(configs, caller, &tenant, &address.task_id).await?;
    let existed = configs
        .store
        .delete_config(tenant, address.task_id.clone(), address.id.clone())
        .await?;
    if existed {
        tracing::info!(task_id = %address.task_id, config_id = %address.id, "push config deleted");
    }
    Ok(())
}
