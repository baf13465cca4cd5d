//! Which events a push config receives: its filter (`crate::a2a::filter`), and the tenant's
//! default that a new config starts with.

use serde::Serialize;
use serde_json::Value;

use super::DomainError;
use super::deliveries::Deliveries;
use crate::a2a::filter::EventFilter;
use crate::a2a::params::InvalidField;
use crate::store::{ConfigRecord, TenantDefaults};

/// A config's filter as the admin API answers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFilter {
    pub task_id: String,
    pub config_id: String,
    pub filter: Value,
}

impl From<ConfigRecord> for ConfigFilter {
    fn from(config: ConfigRecord) -> Self {
        ConfigFilter {
            task_id: config.task_id,
            config_id: config.id,
            filter: config.filter.to_json(),
        }
    }
}

fn no_config(task_id: &str, config_id: &str) -> DomainError {
    DomainError::NotFound(format!(
        "task {task_id:?} has no push config {config_id:?} in this hub"
    ))
}

fn parse_json(body: &[u8]) -> Result<Value, InvalidField> {
    serde_json::from_slice(body)
        .map_err(|e| InvalidField::new("body", format!("is not valid JSON: {e}")))
}

pub async fn config_filter(
    deliveries: &Deliveries,
    tenant: &str,
    task_id: &str,
    config_id: &str,
) -> Result<ConfigFilter, DomainError> {
    deliveries
        .store
        .get_config(tenant.into(), task_id.into(), config_id.into())
        .await?
        .map(ConfigFilter::from)
        .ok_or_else(|| no_config(task_id, config_id))
}

/// Sets a config's filter from a request body; it applies from the next published event.
pub async fn set_config_filter(
    deliveries: &Deliveries,
    tenant: &str,
    task_id: &str,
    config_id: &str,
    body: &[u8],
) -> Result<ConfigFilter, DomainError> {
    let filter = EventFilter::parse(&parse_json(body)?)?;
    deliveries
        .store
        .set_config_filter(tenant.into(), task_id.into(), config_id.into(), filter)
        .await?
        .map(ConfigFilter::from)
        .ok_or_else(|| no_config(task_id, config_id))
}

/// The tenant's defaults as the admin API answers them.
fn defaults_view(tenant: &str, defaults: &TenantDefaults) -> Value {
    serde_json::json!({ "tenant": tenant, "filter": defaults.filter.to_json() })
}

pub async fn tenant_defaults(deliveries: &Deliveries, tenant: &str) -> Result<Value, DomainError> {
    let defaults = deliveries.store.tenant_defaults(tenant.into()).await?;
    Ok(defaults_view(tenant, &defaults))
}

/// Sets what the tenant's configs created from now on start with: `{"filter": FILTER}`.
pub async fn set_tenant_defaults(
    deliveries: &Deliveries,
    tenant: &str,
    body: &[u8],
) -> Result<Value, DomainError> {
    let Value::Object(mut fields) = parse_json(body)? else {
        return Err(InvalidField::new("body", r#"must be an object: {"filter": {…}}"#).into());
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "filter") {
        return Err(InvalidField::new(
            unknown.as_str(),
            "is not a tenant default; the defaults are: filter",
        )
        .into());
    }
    let filter = match fields.remove("filter") {
        Some(filter) => EventFilter::parse(&filter).map_err(|e| {
            let field = match e.field.as_str() {
                "body" => "filter".to_string(),
                inner => format!("filter.{inner}"),
            };
            InvalidField::new(field, e.reason)
        })?,
        None => EventFilter::All,
    };
    let defaults = TenantDefaults { filter };
    deliveries
        .store
        .set_tenant_defaults(tenant.into(), defaults.clone())
        .await?;
    Ok(defaults_view(tenant, &defaults))
}
