//! The operator's view of tasks: one task (folded, its configs with secrets redacted, its
//! deliveries counted), its events, and searches across tasks and their configs.

use a2a::{Task, TaskState};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::deliveries::{page_limit, rfc3339};
use super::{Deliveries, DomainError};
use crate::a2a::params::InvalidField;
use crate::a2a::version::WireVersion;
use crate::store::{Browse, ConfigRecord, ConfigState, DeliveryCounts, TaskOverview, TaskRecord};

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
    // One snapshot: its last sequence and its delivery counts are of the same moment.
    let TaskOverview {
        task: record,
        configs,
        deliveries,
    } = deliveries
        .store
        .task_overview(tenant.to_string(), task_id.to_string(), MAX_CONFIGS_IN_VIEW)
        .await?;
    if record.is_none() && configs.is_empty() {
        return Err(DomainError::NotFound(format!(
            "task {task_id:?} has no events and no push configs in this hub"
        )));
    }
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

/// Most list entries examined by one call of `search` or `configs`: a filter that matches
/// little answers a short page with a cursor instead of walking the whole store.
pub const SCAN_BUDGET: usize = 10_000;

/// What `search` and `configs` look for; `None` is "any".
#[derive(Debug)]
pub struct Search {
    /// Only this tenant (`""` is the default tenant); `None`: every tenant.
    pub tenant: Option<String>,
    /// Task ids that contain this text.
    pub id_contains: Option<String>,
    /// Tasks in this task state (`search`: `parse_task_state`), configs in this config state
    /// (`configs`: `parse_config_state`).
    pub state: Option<String>,
    /// `nextCursor` of the previous page.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

/// A task as a search lists it: where it stands, not its whole history.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    pub tenant: String,
    pub task_id: String,
    pub context_id: String,
    pub state: TaskState,
    pub last_sequence: u64,
    pub terminal: bool,
    pub artifacts: usize,
    pub updated_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    /// Pass as `after` to go on; `null` when the listing is complete. A page may hold fewer
    /// than `limit` entries and still have a cursor: each call examines at most 10,000.
    pub next_cursor: Option<String>,
}

/// A config with the task it belongs to, as the configs listing shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskConfigView {
    pub tenant: String,
    pub task_id: String,
    #[serde(flatten)]
    pub config: ConfigView,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPage {
    pub configs: Vec<TaskConfigView>,
    /// As in `TaskPage`.
    pub next_cursor: Option<String>,
}

/// One published event of a task, as stored.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub sequence: u64,
    pub event_id: String,
    pub received_at: String,
    pub event: Box<serde_json::value::RawValue>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// The last sequence listed, to pass as `after`; `null` on the last page.
    pub next_cursor: Option<u64>,
}

/// Parses a task state as A2A 1.0 writes it (`TASK_STATE_COMPLETED`) or in short
/// (`completed`, `input-required`).
pub fn parse_task_state(field: &str, text: &str) -> Result<TaskState, InvalidField> {
    let full = if text.starts_with("TASK_STATE_") {
        text.to_string()
    } else {
        format!("TASK_STATE_{}", text.replace('-', "_").to_ascii_uppercase())
    };
    serde_json::from_value(serde_json::Value::String(full)).map_err(|_| {
        InvalidField::new(
            field,
            format!(
                "must be a task state such as working, input-required, completed, failed, canceled (or TASK_STATE_WORKING); got {text:?}"
            ),
        )
    })
}

/// Parses `active|suspended|disabled`.
pub fn parse_config_state(field: &str, text: &str) -> Result<ConfigState, InvalidField> {
    match text {
        "active" => Ok(ConfigState::Active),
        "suspended" => Ok(ConfigState::Suspended),
        "disabled" => Ok(ConfigState::Disabled),
        other => Err(InvalidField::new(
            field,
            format!("must be one of active, suspended, disabled; got {other:?}"),
        )),
    }
}

fn encode_cursor(key: Vec<u8>) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

fn parse_cursor(after: Option<&str>) -> Result<Option<Vec<u8>>, InvalidField> {
    after
        .map(|text| {
            URL_SAFE_NO_PAD.decode(text).map_err(|_| {
                InvalidField::new(
                    "after",
                    "is not a cursor this hub issued (use nextCursor from the previous page)",
                )
            })
        })
        .transpose()
}

/// What the store scans for `search`: where to start, how many, which records to keep.
fn browse<T: 'static, S: Send + 'static>(
    search: Search,
    parse_state: fn(&str, &str) -> Result<S, InvalidField>,
    in_state: fn(&T, &S) -> bool,
    task_id_of: fn(&T) -> &str,
) -> Result<Browse<T>, InvalidField> {
    let state = search
        .state
        .map(|state| parse_state("state", &state))
        .transpose()?;
    let id_contains = search.id_contains;
    Ok(Browse {
        tenant: search.tenant,
        after: parse_cursor(search.after.as_deref())?,
        limit: page_limit(search.limit)?,
        budget: SCAN_BUDGET,
        keep: Box::new(move |record: &T| {
            id_contains
                .as_deref()
                .is_none_or(|text| task_id_of(record).contains(text))
                && state.as_ref().is_none_or(|state| in_state(record, state))
        }),
    })
}

/// Tasks by tenant, id and state, in (tenant, task id) order.
pub async fn search(deliveries: &Deliveries, search: Search) -> Result<TaskPage, DomainError> {
    let browse = browse(
        search,
        parse_task_state,
        |task: &TaskRecord, state| &task.task.status.state == state,
        |task| &task.task_id,
    )?;
    let browsed = deliveries.store.browse_tasks(browse).await?;
    Ok(TaskPage {
        tasks: browsed
            .found
            .into_iter()
            .map(|record| TaskSummary {
                state: record.task.status.state,
                context_id: record.task.context_id.clone(),
                artifacts: record.task.artifacts.as_ref().map_or(0, Vec::len),
                updated_at: rfc3339(record.updated_at_ms),
                tenant: record.tenant,
                task_id: record.task_id,
                last_sequence: record.last_sequence,
                terminal: record.terminal,
            })
            .collect(),
        next_cursor: browsed.resume_after.map(encode_cursor),
    })
}

/// Push configs across tasks by tenant, task id and state, secrets redacted.
pub async fn configs(deliveries: &Deliveries, search: Search) -> Result<ConfigPage, DomainError> {
    let browse = browse(
        search,
        parse_config_state,
        |config: &ConfigRecord, state| config.state == *state,
        |config| &config.task_id,
    )?;
    let browsed = deliveries.store.browse_configs(browse).await?;
    Ok(ConfigPage {
        configs: browsed
            .found
            .iter()
            .map(|config| TaskConfigView {
                tenant: config.tenant.clone(),
                task_id: config.task_id.clone(),
                config: ConfigView::from(config),
            })
            .collect(),
        next_cursor: browsed.resume_after.map(encode_cursor),
    })
}

/// A task's published events after sequence `after`, oldest first.
pub async fn events(
    deliveries: &Deliveries,
    tenant: &str,
    task_id: &str,
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<EventPage, DomainError> {
    let limit = page_limit(limit)?;
    let found = deliveries
        .store
        .task_events(
            tenant.to_string(),
            task_id.to_string(),
            after.unwrap_or(0),
            limit,
        )
        .await?;
    if found.is_empty() && after.is_none() {
        // Tell "no such task" from "no events yet" the way the task view does.
        view(deliveries, tenant, task_id).await?;
    }
    let next_cursor = (found.len() == limit)
        .then(|| found.last().map(|e| e.sequence))
        .flatten();
    Ok(EventPage {
        events: found
            .into_iter()
            .map(|e| EventView {
                sequence: e.sequence,
                event_id: e.event_id,
                received_at: rfc3339(e.received_at_ms),
                event: e.body,
            })
            .collect(),
        next_cursor,
    })
}
