//! The operator's view of one task: its folded deliveries, its configs (secrets redacted) and its
//! deliveries by deliveries.

use a2a::Task;
use serde::Serialize;

use super::{Deliveries, DomainError};
use crate::a2a::version::WireVersion;
use crate::store::{ConfigRecord, ConfigState, DeliveryCounts};

/// Most configs listed in a task view.
const MAX_CONFIGS_IN_VIEW: usize = 1000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub tenant: String,
    pub task_id: String,
    /// `null` while no event has been published for the task.
    pub task: Option<Task>,
    pub last_sequence: u64,
    pub terminal: bool,
    pub configs: Vec<ConfigView>,
    pub deliveries: DeliveryCounts,
}

/// A config as the admin API shows it: whether secrets are set, never their values.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    pub id: String,
    pub url: String,
    pub has_token: bool,
    pub authentication_scheme: Option<String>,
    pub has_credentials: bool,
    pub wire_version: WireVersion,
    pub state: ConfigState,
    /// Which events it receives (`PUT …/configs/{configId}/filter`).
    pub filter: serde_json::Value,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl From<&ConfigRecord> for ConfigView {
    fn from(config: &ConfigRecord) -> ConfigView {
        ConfigView {
            id: config.id.clone(),
            url: config.url.clone(),
            has_token: config.token.is_some(),
            authentication_scheme: config.authentication.as_ref().map(|a| a.scheme.clone()),
            has_credentials: config
                .authentication
                .as_ref()
                .is_some_and(|a| a.credentials.is_some()),
            wire_version: config.wire_version,
            state: config.state,
            filter: config.filter.to_json(),
            created_at_ms: config.created_at_ms,
            updated_at_ms: config.updated_at_ms,
        }
    }
}

pub async fn view(
    deliveries: &Deliveries,
    tenant: &str,
    task_id: &str,
) -> Result<TaskView, DomainError> {
    let record = deliveries
        .store
        .get_task(tenant.to_string(), task_id.to_string())
        .await?;
    let configs = deliveries
        .store
        .list_configs(
            tenant.to_string(),
            task_id.to_string(),
            None,
            MAX_CONFIGS_IN_VIEW,
        )
        .await?;
    if record.is_none() && configs.is_empty() {
        return Err(DomainError::NotFound(format!(
            "task {task_id:?} has no events and no push configs in this hub"
        )));
    }
    let deliveries = deliveries
        .store
        .delivery_counts(tenant.to_string(), task_id.to_string())
        .await?;
    Ok(TaskView {
        tenant: tenant.to_string(),
        task_id: task_id.to_string(),
        last_sequence: record.as_ref().map_or(0, |r| r.last_sequence),
        terminal: record.as_ref().is_some_and(|r| r.terminal),
        task: record.map(|r| r.task),
        configs: configs.iter().map(ConfigView::from).collect(),
        deliveries,
    })
}
