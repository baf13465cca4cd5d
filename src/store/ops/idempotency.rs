//! Idempotency keys of the event API: a publisher that retries an event after a timeout gets
//! the first answer again instead of a second event. A key is recorded in the transaction that
//! stores its event, so an answer lost in a crash is still found on the retry.

use std::collections::HashMap;

use super::*;

/// The key's entry in `Table::IdempotencyKeys`.
fn entry_key(tenant: &str, key: &str) -> Vec<u8> {
    text_key(&[tenant, key])
}

/// What `claim`'s key stands for in `tenant`, unless it has expired.
fn live(
    tables: &dyn Tables,
    tenant: &str,
    claim: &IdempotencyClaim,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    Ok(get_json::<IdempotencyRecord>(
        tables,
        Table::IdempotencyKeys,
        &entry_key(tenant, &claim.key),
    )?
    .filter(|record| record.recorded_at_ms >= claim.recorded_after_ms))
}

/// The entries a publish of `events` reads, to fetch them together.
pub(super) fn reads(events: &[NewEvent]) -> impl Iterator<Item = ReadAhead> + '_ {
    events.iter().filter_map(|event| {
        let claim = event.idempotency.as_ref()?;
        Some(ReadAhead::Key(
            Table::IdempotencyKeys,
            entry_key(&event.tenant, &claim.key),
        ))
    })
}

/// The first event of `events` whose key stands for another event — stored earlier, or
/// earlier in the same request. Checked before anything is written, so that a conflict
/// stores nothing.
pub(super) fn conflict(
    tables: &dyn Tables,
    events: &[NewEvent],
) -> Result<Option<KeyConflict>, StoreError> {
    let mut earlier: HashMap<(&str, &str), (usize, &str)> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let Some(claim) = &event.idempotency else {
            continue;
        };
        let conflict = |with| KeyConflict {
            index,
            key: claim.key.clone(),
            with,
        };
        let name = (event.tenant.as_str(), claim.key.as_str());
        if let Some((first, fingerprint)) = earlier.get(&name) {
            if *fingerprint != claim.fingerprint {
                return Ok(Some(conflict(ConflictWith::Batch(*first))));
            }
            continue;
        }
        earlier.insert(name, (index, &claim.fingerprint));
        if let Some(record) = live(tables, &event.tenant, claim)? {
            if record.fingerprint != claim.fingerprint {
                return Ok(Some(conflict(ConflictWith::Stored {
                    event_id: record.event_id,
                    task_id: record.task_id,
                    sequence: record.sequence,
                })));
            }
        }
    }
    Ok(None)
}

/// The answer given for `claim`'s event the first time, when its key is live.
pub(super) fn answered(
    tables: &dyn Tables,
    tenant: &str,
    claim: &IdempotencyClaim,
) -> Result<Option<PublishedEvent>, StoreError> {
    Ok(live(tables, tenant, claim)?.map(|record| PublishedEvent {
        event_id: record.event_id,
        tenant: tenant.to_string(),
        task_id: record.task_id,
        sequence: record.sequence,
        deliveries: record
            .deliveries
            .into_iter()
            .map(|(delivery_id, config_id)| CreatedDelivery {
                delivery_id,
                config_id,
                url: String::new(),
            })
            .collect(),
        replayed: true,
    }))
}

/// Records `claim`'s key for the event just stored, with the time retention purges it by.
pub(super) fn record(
    tables: &dyn TablesMut,
    published: &PublishedEvent,
    claim: IdempotencyClaim,
    now: u64,
) -> Result<(), StoreError> {
    let key = entry_key(&published.tenant, &claim.key);
    let record = IdempotencyRecord {
        fingerprint: claim.fingerprint,
        recorded_at_ms: now,
        event_id: published.event_id.clone(),
        task_id: published.task_id.clone(),
        sequence: published.sequence,
        deliveries: published
            .deliveries
            .iter()
            .map(|d| (d.delivery_id.clone(), d.config_id.clone()))
            .collect(),
    };
    tables.insert(Table::IdempotencyKeys, &key, &encode(&record)?)?;
    tables.insert(Table::IdempotencyByTime, &by_time_key(now, &key), &[])
}

/// The key's entry in `Table::IdempotencyByTime`.
pub(super) fn by_time_key(recorded_at_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut entry = recorded_at_ms.to_be_bytes().to_vec();
    entry.extend_from_slice(key);
    entry
}
