//! Listings across tasks for the operator (the admin API, the console): tasks, configs and a
//! task's events. Every listing is a bounded scan: it examines at most `budget` entries and
//! hands back the key to go on from, so a filter that matches little never turns one call
//! into a walk of the whole store.

use super::*;

/// One page of a bounded scan.
#[derive(Debug)]
pub struct Browsed<T> {
    pub found: Vec<T>,
    /// The last key examined, when the scan stopped before the end of what it scans: pass it
    /// back to go on.
    pub resume_after: Option<Vec<u8>>,
}

/// Which records a listing keeps.
pub type Keep<T> = Box<dyn for<'a> Fn(&'a T) -> bool + Send + 'static>;

/// Where a listing across tasks starts and what it keeps.
pub struct Browse<T> {
    /// Only this tenant's entries, or every tenant's.
    pub tenant: Option<String>,
    /// A key handed back in `resume_after`.
    pub after: Option<Vec<u8>>,
    pub limit: usize,
    /// Most entries examined.
    pub budget: usize,
    pub keep: Keep<T>,
}

/// What the operator's view of one task shows, read at one moment.
#[derive(Debug)]
pub struct TaskOverview {
    pub task: Option<TaskRecord>,
    /// Its first configs, in id order.
    pub configs: Vec<ConfigRecord>,
    pub deliveries: DeliveryCounts,
}

#[async_trait::async_trait]
pub trait BrowseStore: Send + Sync {
    /// A task, its first `max_configs` configs and its deliveries counted by state, in one
    /// snapshot: a publish committed meanwhile is in all three or in none.
    async fn task_overview(
        &self,
        tenant: String,
        task_id: String,
        max_configs: usize,
    ) -> Result<TaskOverview, StoreError>;
    /// Folded tasks in (tenant, task id) order.
    async fn browse_tasks(
        &self,
        browse: Browse<TaskRecord>,
    ) -> Result<Browsed<TaskRecord>, StoreError>;
    /// Push configs in (tenant, task id, config id) order.
    async fn browse_configs(
        &self,
        browse: Browse<ConfigRecord>,
    ) -> Result<Browsed<ConfigRecord>, StoreError>;
    /// A task's events after sequence `after`, oldest first.
    async fn task_events(
        &self,
        tenant: String,
        task_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> BrowseStore for TableStore<B> {
    async fn task_overview(
        &self,
        tenant: String,
        task_id: String,
        max_configs: usize,
    ) -> Result<TaskOverview, StoreError> {
        let sealing = self.sealing.clone();
        self.read_snapshot(move |tables| {
            Ok(TaskOverview {
                task: get_json(tables, Table::Tasks, &task_key(&tenant, &task_id))?,
                configs: configs::list_configs_in(
                    &sealing,
                    tables,
                    &tenant,
                    &task_id,
                    None,
                    max_configs,
                )?,
                deliveries: deliveries::delivery_counts_in(tables, &tenant, &task_id)?,
            })
        })
        .await
    }

    async fn browse_tasks(
        &self,
        browse: Browse<TaskRecord>,
    ) -> Result<Browsed<TaskRecord>, StoreError> {
        self.read(move |tables| scan_bounded(tables, Table::Tasks, browse, decode))
            .await
    }

    async fn browse_configs(
        &self,
        browse: Browse<ConfigRecord>,
    ) -> Result<Browsed<ConfigRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            scan_bounded(tables, Table::Configs, browse, |value| {
                decode_record(&sealing, Table::Configs, value)
            })
        })
        .await
    }

    async fn task_events(
        &self,
        tenant: String,
        task_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.read(move |tables| {
            let prefix = task_key(&tenant, &task_id);
            let start = with_sequence(prefix.clone(), after.saturating_add(1));
            let mut found: Vec<EventRecord> = Vec::new();
            if limit == 0 {
                return Ok(found);
            }
            tables.scan(Table::Events, &prefix, &start, &mut |_, value| {
                // Retention leaves `{}` where a purged task's events were: not an event.
                if let Ok(event) = decode::<EventRecord>(value) {
                    found.push(event);
                }
                Ok(found.len() < limit)
            })?;
            Ok(found)
        })
        .await
    }
}

fn scan_bounded<T>(
    tables: &dyn Tables,
    table: Table,
    browse: Browse<T>,
    decode_one: impl Fn(&[u8]) -> Result<T, StoreError>,
) -> Result<Browsed<T>, StoreError> {
    let prefix = browse
        .tenant
        .as_deref()
        .map(|tenant| text_key(&[tenant]))
        .unwrap_or_default();
    let start = match browse.after {
        Some(mut key) => {
            key.push(0);
            key
        }
        None => prefix.clone(),
    };
    let mut found = Vec::new();
    let mut examined = 0usize;
    let mut last_key: Option<Vec<u8>> = None;
    let mut stopped_early = false;
    if browse.limit == 0 || browse.budget == 0 {
        return Ok(Browsed {
            found,
            resume_after: None,
        });
    }
    tables.scan(table, &prefix, &start, &mut |key, value| {
        examined += 1;
        last_key = Some(key.to_vec());
        // Keys that are not records (markers under the empty key) are skipped.
        if !key.is_empty() {
            let record = decode_one(value)?;
            if (browse.keep)(&record) {
                found.push(record);
            }
        }
        let go_on = found.len() < browse.limit && examined < browse.budget;
        stopped_early = !go_on;
        Ok(go_on)
    })?;
    Ok(Browsed {
        found,
        resume_after: if stopped_early { last_key } else { None },
    })
}
