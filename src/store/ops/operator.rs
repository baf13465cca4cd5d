//! Operator events: what needs an operator (a dead delivery, a config disabled or recovered, a
//! circuit opened or closed, bursts of rejected inbound pushes), numbered in one sequence,
//! the newest `OPERATOR_EVENTS_KEPT` kept. When an operator webhook is configured (the config
//! of the operator lane), each event is also a delivery of that lane — the same engine as every
//! webhook: ordered, retried, signed. Events are written in the transaction of what they
//! report, so none is lost or invented by a crash.

use super::*;

/// The operator webhook's config key.
pub fn operator_config_key() -> Vec<u8> {
    config_key(OPERATOR_TENANT, OPERATOR_TASK, OPERATOR_CONFIG)
}

fn event_key(sequence: u64) -> Vec<u8> {
    sequence.to_be_bytes().to_vec()
}

/// The key of the next sequence number (sorts before every event).
const NEXT: &[u8] = &[];

/// Numbers and stores `events` (and their webhook deliveries, returned for the scheduler),
/// dropping the oldest beyond `OPERATOR_EVENTS_KEPT`.
pub(super) fn append(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    events: Vec<NewOperatorEvent>,
    now: u64,
) -> Result<Vec<PendingDelivery>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ckey = operator_config_key();
    let webhook = get_record::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)?
        .filter(|config| config.state.takes_events());
    let mut next: u64 = get_json(tables, Table::OperatorEvents, NEXT)?.unwrap_or(1);
    let mut pending = Vec::new();
    for event in events {
        let sequence = next;
        next += 1;
        let mut record = OperatorEvent {
            sequence,
            kind: event.kind.to_string(),
            at_ms: now,
            data: event.data,
            delivery_id: None,
        };
        if let Some(config) = &webhook {
            let body = serde_json::json!({"type": record.kind, "sequence": sequence,
                "atMs": now, "data": record.data});
            let lane = LaneId {
                tenant: OPERATOR_TENANT.to_string(),
                task_id: OPERATOR_TASK.to_string(),
                config_id: OPERATOR_CONFIG.to_string(),
            };
            let delivery = DeliveryRecord {
                snapshot: Some(body.to_string()),
                ..new_delivery(&lane, sequence, Uuid::now_v7().to_string(), now)
            };
            add_pending(tables, &delivery)?;
            if config.state == ConfigState::Active {
                pending.push(PendingDelivery {
                    tenant: delivery.tenant,
                    task_id: delivery.task_id,
                    config_id: delivery.config_id,
                    delivery_id: delivery.id.clone(),
                    sequence,
                    next_attempt_at_ms: now,
                    url: config.url.clone(),
                    again: false,
                });
            }
            record.delivery_id = Some(delivery.id);
        }
        tables.insert(
            Table::OperatorEvents,
            &event_key(sequence),
            &encode(&record)?,
        )?;
        if let Some(old) = sequence.checked_sub(OPERATOR_EVENTS_KEPT) {
            forget(tables, old)?;
        }
    }
    tables.insert(Table::OperatorEvents, NEXT, &encode(&next)?)?;
    Ok(pending)
}

/// Removes an operator event that is no longer among the newest, with its webhook delivery.
fn forget(tables: &dyn TablesMut, sequence: u64) -> Result<(), StoreError> {
    let key = event_key(sequence);
    let Some(old) = get_json::<OperatorEvent>(tables, Table::OperatorEvents, &key)? else {
        return Ok(());
    };
    tables.remove(Table::OperatorEvents, &key)?;
    if let Some(id) = old.delivery_id {
        let lane = with_sequence(operator_config_key(), sequence);
        remove_delivery(tables, &lane, id.as_bytes())?;
    }
    Ok(())
}

#[async_trait::async_trait]
pub trait OperatorEventStore: Send + Sync {
    /// Numbers and stores events that happened outside any other write (a circuit, inbound
    /// rejections); their webhook deliveries are announced.
    async fn record_operator_events(&self, events: Vec<NewOperatorEvent>)
    -> Result<(), StoreError>;
    /// Operator events after sequence `after`, oldest first, at most `limit`.
    async fn operator_events(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OperatorEvent>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> OperatorEventStore for TableStore<B> {
    async fn record_operator_events(
        &self,
        events: Vec<NewOperatorEvent>,
    ) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write_announcing(
            Urgency::Linger,
            Vec::new(),
            move |tables| append(&sealing, tables, events, now_ms()),
            |pending: &Vec<PendingDelivery>| pending.clone(),
        )
        .await?;
        Ok(())
    }

    async fn operator_events(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OperatorEvent>, StoreError> {
        self.read(move |tables| {
            let start = event_key(after.saturating_add(1));
            page(tables, Table::OperatorEvents, &[], &start, limit, decode)
        })
        .await
    }
}
