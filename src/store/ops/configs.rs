//! Push configs and who owns a task: a config's write checks the task's owner and the
//! per-task limit in the same transaction.

use super::*;
use crate::a2a::filter::EventFilter;

/// Stores a config if the task is the caller's (or nobody's: then it becomes the caller's)
/// and has room for it.
fn put_config_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    mut config: ConfigRecord,
    rules: ConfigRules,
) -> Result<ConfigWrite, StoreError> {
    let tkey = task_key(&config.tenant, &config.task_id);
    if let Some(principal) = &rules.principal {
        match get_json::<String>(tables, Table::Owners, &tkey)? {
            Some(owner) if owner != *principal => return Ok(ConfigWrite::NotOwner),
            Some(_) => {}
            None => tables.insert(Table::Owners, &tkey, &encode(principal)?)?,
        }
    }
    let key = config_key(&config.tenant, &config.task_id, &config.id);
    match get_record::<ConfigRecord>(sealing, tables, Table::Configs, &key)? {
        Some(existing) => {
            // Registering it again over A2A replaces what A2A says of it, not the hub's own.
            config.created_at_ms = existing.created_at_ms;
            config.filter = existing.filter;
        }
        None => {
            let others = first_under(tables, Table::Configs, &tkey, rules.max_per_task)?;
            if others.len() >= rules.max_per_task {
                return Ok(ConfigWrite::TooMany);
            }
            if let Some(defaults) = get_json::<TenantDefaults>(
                tables,
                Table::TenantDefaults,
                &text_key(&[&config.tenant]),
            )? {
                config.filter = defaults.filter;
            }
        }
    }
    config.owner = rules.principal;
    tables.insert(
        Table::Configs,
        &key,
        &encode_record(sealing, Table::Configs, &config)?,
    )?;
    Ok(ConfigWrite::Stored)
}

/// Removes a config; its pending deliveries are canceled. Whether it existed.
fn remove_config(tables: &dyn TablesMut, key: &[u8], now: u64) -> Result<bool, StoreError> {
    let existed = tables.get(Table::Configs, key)?.is_some();
    tables.remove(Table::Configs, key)?;
    tables.remove(Table::FailingStreaks, key)?;
    for (_, delivery_id) in take_prefix(tables, Table::Pending, key)? {
        update_delivery(tables, &delivery_id, |delivery| {
            delivery.state = DeliveryState::Canceled;
            delivery.last_error = Some("its push config was deleted".to_string());
            delivery.updated_at_ms = now;
        })?;
    }
    Ok(existed)
}

/// Makes `owner` the task's owner, as its publisher declared; configs another principal
/// registered for the task are removed, so they receive nothing of it from now on. Whether it
/// removed any.
pub(super) fn declare_owner(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    tkey: &[u8],
    owner: &str,
    now: u64,
) -> Result<bool, StoreError> {
    if get_json::<String>(tables, Table::Owners, tkey)?.as_deref() == Some(owner) {
        return Ok(false);
    }
    tables.insert(Table::Owners, tkey, &encode(&owner)?)?;
    let mut foreign = Vec::new();
    tables.scan(Table::Configs, tkey, tkey, &mut |key, value| {
        let config: ConfigRecord = decode_record(sealing, Table::Configs, value)?;
        if config.owner.as_deref().is_some_and(|o| o != owner) {
            foreign.push((key.to_vec(), config.id));
        }
        Ok(true)
    })?;
    let removed = !foreign.is_empty();
    for (key, config_id) in foreign {
        remove_config(tables, &key, now)?;
        tracing::warn!(
            config_id,
            "push config removed: the publisher declared another owner for its task"
        );
    }
    Ok(removed)
}

/// Makes a config active again: its failing streak is forgotten and its held deliveries are
/// due now. `None` if there is no such config.
fn enable_config_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    ckey: &[u8],
    now: u64,
) -> Result<Option<Enabled>, StoreError> {
    let Some(config) = get_record::<ConfigRecord>(sealing, tables, Table::Configs, ckey)? else {
        return Ok(None);
    };
    let was = config.state;
    if was == ConfigState::Active {
        return Ok(Some(Enabled {
            was,
            resumed: Vec::new(),
        }));
    }
    super::deliveries::set_config_state(sealing, tables, ckey, was, ConfigState::Active, now)?;
    tables.remove(Table::FailingStreaks, ckey)?;
    let mut resumed = super::deliveries::pending_under(sealing, tables, &[ckey.to_vec()])?;
    for pending in &mut resumed {
        update_delivery(tables, pending.delivery_id.as_bytes(), |delivery| {
            delivery.next_attempt_at_ms = now;
        })?;
        pending.next_attempt_at_ms = now;
        pending.again = true;
    }
    Ok(Some(Enabled { was, resumed }))
}

/// The config with its failing streak, its lane's newest deliveries and attempts, and its
/// pending deliveries; `None` if there is no such config.
fn config_health_in(
    sealing: &Sealing,
    tables: &dyn Tables,
    tenant: &str,
    task_id: &str,
    id: &str,
) -> Result<Option<ConfigHealthData>, StoreError> {
    let ckey = config_key(tenant, task_id, id);
    let Some(config) = get_record::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)? else {
        return Ok(None);
    };
    let streak = get_json(tables, Table::FailingStreaks, &ckey)?;
    // The lane's newest deliveries: from HEALTH_SAMPLE sequence numbers before the task's
    // newest on (a snapshot shares the number of the event before it, so one more fits).
    let last_sequence = get_json::<TaskRecord>(tables, Table::Tasks, &task_key(tenant, task_id))?
        .map_or(0, |t| t.last_sequence);
    let start = with_sequence(
        ckey.clone(),
        last_sequence.saturating_sub(HEALTH_SAMPLE - 1),
    );
    let mut ids = Vec::new();
    tables.scan(Table::Lanes, &ckey, &start, &mut |_, id| {
        ids.push(id.to_vec());
        Ok(ids.len() <= HEALTH_SAMPLE as usize)
    })?;
    let mut recent = Vec::with_capacity(ids.len());
    for delivery in tables
        .get_many(Table::Deliveries, &ids)?
        .into_iter()
        .flatten()
    {
        let delivery: DeliveryRecord = decode(&delivery)?;
        let attempts = super::deliveries::attempt_log(tables, &delivery.id)?;
        recent.push((delivery, attempts));
    }
    let pending_ids = first_under(tables, Table::Pending, &ckey, HEALTH_PENDING_COUNTED)?;
    let oldest_pending = match pending_ids.first() {
        Some((_, id)) => get_json(tables, Table::Deliveries, id)?,
        None => None,
    };
    Ok(Some(ConfigHealthData {
        config,
        streak,
        recent,
        pending: pending_ids.len(),
        oldest_pending,
    }))
}

#[async_trait::async_trait]
pub trait ConfigStore: Send + Sync {
    /// Inserts or replaces the config with the same (tenant, task, id).
    async fn put_config(
        &self,
        config: ConfigRecord,
        rules: ConfigRules,
    ) -> Result<ConfigWrite, StoreError>;
    /// The principal a task belongs to, if any.
    async fn task_owner(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<String>, StoreError>;
    async fn get_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<ConfigRecord>, StoreError>;
    /// Configs of a task in a stable order, starting after config id `after`.
    async fn list_configs(
        &self,
        tenant: String,
        task_id: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ConfigRecord>, StoreError>;
    /// Removes a config and cancels its undelivered deliveries; `false` if it did not exist.
    async fn delete_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<bool, StoreError>;
    /// Makes a suspended (or disabled) config active again; its held deliveries are announced
    /// as due now, in lane order. `None` if there is no such config.
    async fn enable_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<Enabled>, StoreError>;
    /// What a config's health is computed from; `None` if there is no such config.
    async fn config_health(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<ConfigHealthData>, StoreError>;
    /// Sets which events a config receives from its next event on; the config as stored, or
    /// `None` if there is no such config.
    async fn set_config_filter(
        &self,
        tenant: String,
        task_id: String,
        id: String,
        filter: EventFilter,
    ) -> Result<Option<ConfigRecord>, StoreError>;
    /// What a tenant's new configs start with.
    async fn tenant_defaults(&self, tenant: String) -> Result<TenantDefaults, StoreError>;
    async fn set_tenant_defaults(
        &self,
        tenant: String,
        defaults: TenantDefaults,
    ) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> ConfigStore for TableStore<B> {
    async fn put_config(
        &self,
        config: ConfigRecord,
        rules: ConfigRules,
    ) -> Result<ConfigWrite, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| put_config_in(&sealing, tables, config, rules))
            .await
    }

    async fn task_owner(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<String>, StoreError> {
        self.read(move |tables| get_json(tables, Table::Owners, &task_key(&tenant, &task_id)))
            .await
    }

    async fn get_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<ConfigRecord>, StoreError> {
        self.record(Table::Configs, config_key(&tenant, &task_id, &id))
            .await
    }

    async fn list_configs(
        &self,
        tenant: String,
        task_id: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ConfigRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            list_configs_in(&sealing, tables, &tenant, &task_id, after.as_deref(), limit)
        })
        .await
    }

    async fn delete_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<bool, StoreError> {
        self.write(move |tables| {
            remove_config(tables, &config_key(&tenant, &task_id, &id), now_ms())
        })
        .await
    }

    async fn enable_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<Enabled>, StoreError> {
        let sealing = self.sealing.clone();
        self.write_announcing(
            Urgency::Now,
            Vec::new(),
            move |tables| {
                enable_config_in(
                    &sealing,
                    tables,
                    &config_key(&tenant, &task_id, &id),
                    now_ms(),
                )
            },
            |enabled: &Option<Enabled>| {
                enabled
                    .as_ref()
                    .map(|e| e.resumed.clone())
                    .unwrap_or_default()
            },
        )
        .await
    }

    async fn config_health(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<ConfigHealthData>, StoreError> {
        let sealing = self.sealing.clone();
        // Its attempts and its pending deliveries must be of one moment: an outcome committed
        // between the two would show the delivery done but not its attempt.
        self.read_snapshot(move |tables| config_health_in(&sealing, tables, &tenant, &task_id, &id))
            .await
    }

    async fn set_config_filter(
        &self,
        tenant: String,
        task_id: String,
        id: String,
        filter: EventFilter,
    ) -> Result<Option<ConfigRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            let key = config_key(&tenant, &task_id, &id);
            let Some(mut config) =
                get_record::<ConfigRecord>(&sealing, tables, Table::Configs, &key)?
            else {
                return Ok(None);
            };
            config.filter = filter;
            config.updated_at_ms = now_ms();
            tables.insert(
                Table::Configs,
                &key,
                &encode_record(&sealing, Table::Configs, &config)?,
            )?;
            Ok(Some(config))
        })
        .await
    }

    async fn tenant_defaults(&self, tenant: String) -> Result<TenantDefaults, StoreError> {
        self.read(move |tables| {
            get_json(tables, Table::TenantDefaults, &text_key(&[&tenant]))
                .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn set_tenant_defaults(
        &self,
        tenant: String,
        defaults: TenantDefaults,
    ) -> Result<(), StoreError> {
        self.write(move |tables| {
            let key = text_key(&[&tenant]);
            if defaults == TenantDefaults::default() {
                tables.remove(Table::TenantDefaults, &key)
            } else {
                tables.insert(Table::TenantDefaults, &key, &encode(&defaults)?)
            }
        })
        .await
    }
}

/// A task's configs in id order, at most `limit`, after the config `after`.
pub(super) fn list_configs_in(
    sealing: &Sealing,
    tables: &dyn Tables,
    tenant: &str,
    task_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ConfigRecord>, StoreError> {
    let prefix = task_key(tenant, task_id);
    let start = match after {
        // Start just after the last config of the previous page.
        Some(id) => {
            let mut key = config_key(tenant, task_id, id);
            key.push(0);
            key
        }
        None => prefix.clone(),
    };
    page(tables, Table::Configs, &prefix, &start, limit, |value| {
        decode_record(sealing, Table::Configs, value)
    })
}
