//! The inbound role: subscriptions, accepted events with their replay cache, receipts and
//! counters.

use super::events::{self, publish_one};
use super::fresh::Handover;
use super::*;
use crate::store::keys::parse_text_key;

/// Receipts kept per subscription; older ones are dropped.
const MAX_RECEIPTS: u64 = 1000;
/// Expired replay entries removed per pruning (bounds the work of one request).
const REPLAY_PRUNE_BATCH: usize = 256;
/// A subscription's expired replay entries are pruned once every this many of its receipts:
/// a push adds at most three keys, so a pruning of `REPLAY_PRUNE_BATCH` keeps up, and the
/// pushes between prunings skip a scan of the cache. On PostgreSQL that scan is a round trip
/// inside the write turn (and another to send the cache's new entries before it, if any):
/// every 16th push, it was a third of a turn's round trips in a run of (h) (docs/PERFORMANCE.md,
/// "A write turn in two round trips"). Until then, an expired entry refuses nothing (its time
/// is checked) and still counts toward `replay_max_entries`, where it is the first to go.
const REPLAY_PRUNE_EVERY: u64 = 64;
/// How many of a subscription's newest replay keys its counters hold before they move to the
/// replay tables together. Every push rewrites the counters anyway, while a key written to the
/// tables on its own lands on a page of its own in each commit (a key is a hash or a peer's id,
/// in no order): moved eight at a time, those pages are written once per eight pushes
/// instead of at each (docs/PERFORMANCE.md).
const REPLAY_RECENT: usize = 8;
/// Longer keys (a peer chooses its ids) go to the tables at once, so that the counters,
/// rewritten at every push, stay small.
const REPLAY_RECENT_KEY_MAX: usize = 100;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct InboundCounters {
    last_event: u64,
    last_receipt: u64,
    /// Entries in the subscription's replay cache, in the tables and in `recent_replay`
    /// (those written before it was counted are not: they expire soon after an upgrade).
    #[serde(default)]
    replay_entries: u64,
    /// The newest entries of the replay cache, not yet in the tables (`REPLAY_RECENT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recent_replay: Vec<RecentReplay>,
}

/// A replay cache entry held with the counters.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RecentReplay {
    key: String,
    until_ms: u64,
}

fn counters(tables: &dyn Tables, subscription_id: &str) -> Result<InboundCounters, StoreError> {
    Ok(get_json(tables, Table::InboundCounters, subscription_id.as_bytes())?.unwrap_or_default())
}

fn save_counters(
    tables: &dyn TablesMut,
    subscription_id: &str,
    counters: &InboundCounters,
) -> Result<(), StoreError> {
    tables.insert(
        Table::InboundCounters,
        subscription_id.as_bytes(),
        &encode(counters)?,
    )
}

/// Numbers and stores the receipt of a request that was not accepted (an accepted push's is
/// kept with its event), dropping those `MAX_RECEIPTS` numbers older or more.
fn insert_receipt(
    tables: &dyn TablesMut,
    subscription_id: &str,
    counters: &mut InboundCounters,
    mut receipt: ReceiptRecord,
) -> Result<ReceiptRecord, StoreError> {
    counters.last_receipt += 1;
    receipt.number = counters.last_receipt;
    let prefix = text_key(&[subscription_id]);
    tables.insert(
        Table::Receipts,
        &with_sequence(prefix.clone(), receipt.number),
        &encode(&receipt)?,
    )?;
    // Every number below the bound, not just the one that fell out now: that one may have
    // been an accepted push's, kept elsewhere.
    let oldest_kept = receipt.number.saturating_sub(MAX_RECEIPTS - 1);
    let mut dropped = Vec::new();
    tables.scan(Table::Receipts, &prefix, &prefix, &mut |key, _| {
        let number = sequence_of(key, &prefix)?;
        if number < oldest_kept {
            dropped.push(key.to_vec());
        }
        Ok(number < oldest_kept)
    })?;
    for key in dropped {
        tables.remove(Table::Receipts, &key)?;
    }
    Ok(receipt)
}

/// The number that ends a key made by `with_sequence(prefix, number)`.
fn sequence_of(key: &[u8], prefix: &[u8]) -> Result<u64, StoreError> {
    key.get(prefix.len()..)
        .and_then(|number| number.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("a numbered key does not end in its number".into()))
}

/// What bisecting the events reads of each: its receipt's number.
#[derive(serde::Deserialize)]
struct ReceiptStamp {
    receipt: Option<Numbered>,
}

#[derive(serde::Deserialize)]
struct Numbered {
    number: u64,
}

/// The sequence from which a subscription's events carry receipts numbered above `after`.
/// Receipts are numbered in the order of their events, and events kept before receipts were
/// (none of theirs) come first, so the first such event is found by bisecting the sequences.
/// Retention removes a subscription's oldest events first, so a missing one is older than
/// any kept.
fn first_event_receipted_after(
    tables: &dyn Tables,
    prefix: &[u8],
    last_event: u64,
    after: u64,
) -> Result<u64, StoreError> {
    let (mut low, mut high) = (1, last_event.saturating_add(1));
    while low < high {
        let middle = low + (high - low) / 2;
        let event = tables.get(
            Table::InboundEvents,
            &with_sequence(prefix.to_vec(), middle),
        )?;
        let above = match event {
            Some(value) => decode::<ReceiptStamp>(&value)?
                .receipt
                .is_some_and(|receipt| receipt.number > after),
            None => false,
        };
        if above {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(low)
}

/// The subscription's receipts numbered above `after`, oldest first, at most `limit`: those
/// of refused and duplicate requests, and those kept with accepted events.
fn receipts_in(
    tables: &dyn Tables,
    subscription_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<ReceiptRecord>, StoreError> {
    let prefix = text_key(&[subscription_id]);
    let start = with_sequence(prefix.clone(), after.saturating_add(1));
    let mut found: Vec<ReceiptRecord> =
        page(tables, Table::Receipts, &prefix, &start, limit, decode)?;
    let last_event = counters(tables, subscription_id)?.last_event;
    let from = first_event_receipted_after(tables, &prefix, last_event, after)?;
    let mut kept_with_events = 0;
    tables.scan(
        Table::InboundEvents,
        &prefix,
        &with_sequence(prefix.clone(), from),
        &mut |_, value| {
            let event: InboundEventRecord = decode(value)?;
            if let Some(receipt) = event.receipt {
                found.push(receipt);
                kept_with_events += 1;
            }
            Ok(kept_with_events < limit)
        },
    )?;
    found.sort_by_key(|receipt| receipt.number);
    found.truncate(limit);
    Ok(found)
}

/// The live replay entry of `key`, if any: until when it lasts.
fn replay_entry(tables: &dyn Tables, replay_key: &[u8]) -> Result<Option<u64>, StoreError> {
    tables
        .get(Table::Replay, replay_key)?
        .map(|value| {
            value
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    StoreError::Corrupt("a replay entry is not an 8-byte time".to_string())
                })
        })
        .transpose()
}

/// Removes up to `limit` entries of the subscription's replay cache, soonest to expire first,
/// stopping at the first that lasts until `until_ms` or later. How many it removed.
fn drop_replay_entries(
    tables: &dyn TablesMut,
    prefix: &[u8],
    until_ms: u64,
    limit: usize,
) -> Result<usize, StoreError> {
    let mut due = Vec::new();
    tables.scan(
        Table::ReplayByTime,
        prefix,
        prefix,
        &mut |time_key, replay_key| {
            let at = u64::from_be_bytes(
                time_key[prefix.len()..prefix.len() + 8]
                    .try_into()
                    .unwrap_or_default(),
            );
            if at >= until_ms || due.len() >= limit {
                return Ok(false);
            }
            due.push((time_key.to_vec(), replay_key.to_vec()));
            Ok(true)
        },
    )?;
    for (time_key, replay_key) in &due {
        tables.remove(Table::ReplayByTime, time_key)?;
        tables.remove(Table::Replay, replay_key)?;
    }
    Ok(due.len())
}

/// What the replay cache said of a push.
struct ReplayVerdict {
    duplicate: bool,
    /// Entries dropped before they expired, to stay within the bound.
    evicted: u64,
}

impl ReplayVerdict {
    const DUPLICATE: ReplayVerdict = ReplayVerdict {
        duplicate: true,
        evicted: 0,
    };
}

/// A replay entry's key in `Table::ReplayByTime`: the subscription, the expiry, the key.
fn replay_time_key(subscription_id: &str, until_ms: u64, key: &str) -> Vec<u8> {
    let mut time_key = with_sequence(text_key(&[subscription_id]), until_ms);
    time_key.extend_from_slice(key.as_bytes());
    time_key
}

/// Writes a replay entry to the tables: by key, and by expiry for pruning.
fn insert_replay_entry(
    tables: &dyn TablesMut,
    subscription_id: &str,
    key: &str,
    until_ms: u64,
) -> Result<(), StoreError> {
    let replay_key = text_key(&[subscription_id, key]);
    tables.insert(Table::Replay, &replay_key, &until_ms.to_be_bytes())?;
    tables.insert(
        Table::ReplayByTime,
        &replay_time_key(subscription_id, until_ms, key),
        &replay_key,
    )
}

/// Moves the entries held with the counters into the tables.
fn move_recent_replay(
    tables: &dyn TablesMut,
    subscription_id: &str,
    counters: &mut InboundCounters,
) -> Result<(), StoreError> {
    for entry in std::mem::take(&mut counters.recent_replay) {
        insert_replay_entry(tables, subscription_id, &entry.key, entry.until_ms)?;
    }
    Ok(())
}

/// Refuses a push any of whose keys is live in the cache; otherwise records every key until
/// its own expiry, keeping at most `max_entries` for the subscription.
fn replay_check(
    tables: &dyn TablesMut,
    subscription_id: &str,
    keys: &[ReplayKey],
    max_entries: usize,
    counters: &mut InboundCounters,
    now: u64,
) -> Result<ReplayVerdict, StoreError> {
    let prefix = text_key(&[subscription_id]);
    if counters.last_receipt % REPLAY_PRUNE_EVERY == 0 {
        let expired = drop_replay_entries(tables, &prefix, now, REPLAY_PRUNE_BATCH)?;
        counters.replay_entries = counters.replay_entries.saturating_sub(expired as u64);
    }
    // The counters are rewritten in any case: their expired entries go at every push.
    let held = counters.recent_replay.len();
    counters.recent_replay.retain(|entry| entry.until_ms >= now);
    let expired = held - counters.recent_replay.len();
    counters.replay_entries = counters.replay_entries.saturating_sub(expired as u64);
    let mut entries: Vec<(&ReplayKey, Vec<u8>, Option<u64>)> = Vec::with_capacity(keys.len());
    for key in keys {
        if entries.iter().any(|(seen, ..)| seen.key == key.key) {
            continue;
        }
        // What the counters hold is live: the expired went above.
        if counters.recent_replay.iter().any(|e| e.key == key.key) {
            return Ok(ReplayVerdict::DUPLICATE);
        }
        let replay_key = text_key(&[subscription_id, &key.key]);
        let until = replay_entry(tables, &replay_key)?;
        if until.is_some_and(|until| until >= now) {
            return Ok(ReplayVerdict::DUPLICATE);
        }
        entries.push((key, replay_key, until));
    }
    for (key, replay_key, until) in entries {
        match until {
            // Expired but not yet pruned: it goes, and the key is written anew.
            Some(until) => {
                let old = replay_time_key(subscription_id, until, &key.key);
                tables.remove(Table::ReplayByTime, &old)?;
                tables.remove(Table::Replay, &replay_key)?;
            }
            None => counters.replay_entries += 1,
        }
        if key.key.len() <= REPLAY_RECENT_KEY_MAX {
            counters.recent_replay.push(RecentReplay {
                key: key.key.clone(),
                until_ms: key.expires_at_ms,
            });
        } else {
            insert_replay_entry(tables, subscription_id, &key.key, key.expires_at_ms)?;
        }
    }
    let mut evicted = 0;
    let excess = counters.replay_entries.saturating_sub(max_entries as u64);
    // Over the bound, the soonest to expire go first wherever they are held: all go to the
    // tables, which keep them in order of expiry.
    if counters.recent_replay.len() >= REPLAY_RECENT || excess > 0 {
        move_recent_replay(tables, subscription_id, counters)?;
    }
    if excess > 0 {
        let limit = (excess as usize).min(REPLAY_PRUNE_BATCH);
        evicted = drop_replay_entries(tables, &prefix, u64::MAX, limit)? as u64;
        counters.replay_entries -= evicted;
    }
    Ok(ReplayVerdict {
        duplicate: false,
        evicted,
    })
}

/// What accepting `accept` reads, so that a batch's pushes are read together (one round trip
/// per table on PostgreSQL instead of several per push).
fn accept_reads(accept: &InboundAccept) -> Vec<ReadAhead> {
    let id = accept.subscription_id.as_str();
    let mut reads = vec![
        ReadAhead::Key(Table::InboundCounters, id.as_bytes().to_vec()),
        ReadAhead::Key(Table::InboundTasks, text_key(&[id, &accept.task_id])),
    ];
    reads.extend(
        accept
            .replay_keys
            .iter()
            .map(|key| ReadAhead::Key(Table::Replay, text_key(&[id, &key.key]))),
    );
    match &accept.route {
        InboundRoute::Log => {}
        InboundRoute::Publish { tenant } | InboundRoute::Forward { tenant, .. } => {
            reads.extend(events::publish_reads(tenant, &accept.task_id));
        }
    }
    reads
}

fn accept_inbound_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    accept: InboundAccept,
    fresh: &mut Handover,
) -> Result<InboundOutcome, StoreError> {
    let now = now_ms();
    let id = accept.subscription_id.clone();
    let mut counters = counters(tables, &id)?;
    let mut receipt = accept.receipt;
    receipt.task_id = Some(accept.task_id.clone());
    let replay = replay_check(
        tables,
        &id,
        &accept.replay_keys,
        accept.replay_max_entries,
        &mut counters,
        now,
    )?;
    if replay.duplicate {
        receipt.verdict = "duplicate".to_string();
        receipt
            .notes
            .push("already accepted within its window: acknowledged, not routed again".to_string());
        insert_receipt(tables, &id, &mut counters, receipt)?;
        save_counters(tables, &id, &counters)?;
        return Ok(InboundOutcome::Duplicate);
    }
    let task_key = text_key(&[&id, &accept.task_id]);
    let progress: fold::Progress =
        get_json(tables, Table::InboundTasks, &task_key)?.unwrap_or_default();
    let (notes, progress) = fold::progress_notes(&progress, &accept.event, accept.push_sequence);
    tables.insert(Table::InboundTasks, &task_key, &encode(&progress)?)?;
    receipt.notes.extend(notes);
    counters.last_event += 1;
    let sequence = counters.last_event;
    counters.last_receipt += 1;
    receipt.number = counters.last_receipt;
    receipt.event_sequence = Some(sequence);
    let record = InboundEventRecord {
        sequence,
        received_at_ms: now,
        task_id: accept.task_id.clone(),
        event: accept.body.clone(),
        receipt: Some(receipt),
    };
    tables.insert(
        Table::InboundEvents,
        &with_sequence(text_key(&[&id]), sequence),
        &encode(&record)?,
    )?;
    let forwarded = match accept.route {
        InboundRoute::Log => None,
        InboundRoute::Publish { tenant } => {
            let event = NewEvent {
                tenant,
                task_id: accept.task_id.clone(),
                event: accept.event,
                body: accept.body,
                owner: None,
                trace: accept.trace,
                origin_span: accept.origin_span,
                idempotency: None,
            };
            Some(publish_one(sealing, tables, event, now, fresh)?)
        }
        InboundRoute::Forward { tenant, url } => {
            let ckey = config_key(&tenant, &accept.task_id, FORWARD_CONFIG_ID);
            if tables.get(Table::Configs, &ckey)?.is_none() {
                let config = ConfigRecord::hub_made(
                    tenant.clone(),
                    accept.task_id.clone(),
                    FORWARD_CONFIG_ID,
                    url,
                    now,
                );
                tables.insert(
                    Table::Configs,
                    &ckey,
                    &encode_record(sealing, Table::Configs, &config)?,
                )?;
            }
            let event = NewEvent {
                tenant,
                task_id: accept.task_id.clone(),
                event: accept.event,
                body: accept.body,
                owner: None,
                trace: accept.trace,
                origin_span: accept.origin_span,
                idempotency: None,
            };
            Some(publish_one(sealing, tables, event, now, fresh)?)
        }
    };
    save_counters(tables, &id, &counters)?;
    Ok(InboundOutcome::Accepted {
        sequence,
        forwarded,
        replay_evicted: replay.evicted,
    })
}

/// `Table::SubscriptionsByTask`'s key of a subscription bound to a task.
fn by_task_key(task_id: &str, subscription_id: &str) -> Vec<u8> {
    text_key(&[task_id, subscription_id])
}

/// `Table::SubscriptionsByTask`'s empty key: present once every subscription stored before the
/// index existed is in it.
const BY_TASK_COMPLETE: &[u8] = &[];

/// Subscriptions indexed per step of `index_subscriptions_step`: each is unsealed, so a step
/// stays a short write.
const INDEX_PER_STEP: usize = 500;

fn subscription_in(
    sealing: &Sealing,
    tables: &dyn Tables,
    id: &str,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    tables
        .get(Table::Subscriptions, id.as_bytes())?
        .map(|value| decode_record(sealing, Table::Subscriptions, &value))
        .transpose()
}

/// Stores a subscription (new, or replacing the one with its id) and keeps the index of
/// subscriptions by task in step.
fn put_subscription_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    subscription: &SubscriptionRecord,
) -> Result<(), StoreError> {
    if let Some(old) = subscription_in(sealing, tables, &subscription.id)?
        && let Some(task_id) = old
            .task_id
            .filter(|old| Some(old) != subscription.task_id.as_ref())
    {
        tables.remove(
            Table::SubscriptionsByTask,
            &by_task_key(&task_id, &subscription.id),
        )?;
    }
    tables.insert(
        Table::Subscriptions,
        subscription.id.as_bytes(),
        &encode_record(sealing, Table::Subscriptions, subscription)?,
    )?;
    index_by_task(tables, subscription)
}

/// Adds a subscription bound to a task to the index by task.
fn index_by_task(
    tables: &dyn TablesMut,
    subscription: &SubscriptionRecord,
) -> Result<(), StoreError> {
    match &subscription.task_id {
        Some(task_id) => tables.insert(
            Table::SubscriptionsByTask,
            &by_task_key(task_id, &subscription.id),
            &[],
        ),
        None => Ok(()),
    }
}

/// Removes a subscription with its events, receipts, replay cache and index entry; whether it
/// existed.
pub(super) fn delete_subscription_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    id: &str,
) -> Result<bool, StoreError> {
    let Some(subscription) = subscription_in(sealing, tables, id)? else {
        return Ok(false);
    };
    tables.remove(Table::Subscriptions, id.as_bytes())?;
    if let Some(task_id) = &subscription.task_id {
        tables.remove(Table::SubscriptionsByTask, &by_task_key(task_id, id))?;
    }
    let prefix = text_key(&[id]);
    for table in [
        Table::InboundEvents,
        Table::Receipts,
        Table::InboundTasks,
        Table::ReplayByTime,
        Table::Replay,
    ] {
        take_prefix(tables, table, &prefix)?;
    }
    tables.remove(Table::InboundCounters, id.as_bytes())?;
    Ok(true)
}

/// The subscriptions bound to `task_id`, in id order: from the index once it is complete,
/// else from every subscription.
fn subscriptions_of_task_in(
    sealing: &Sealing,
    tables: &dyn Tables,
    task_id: &str,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    let bound = |s: &SubscriptionRecord| s.task_id.as_deref() == Some(task_id);
    if tables
        .get(Table::SubscriptionsByTask, BY_TASK_COMPLETE)?
        .is_none()
    {
        let all: Vec<SubscriptionRecord> = page(
            tables,
            Table::Subscriptions,
            &[],
            &[],
            usize::MAX,
            |value| decode_record(sealing, Table::Subscriptions, value),
        )?;
        return Ok(all.into_iter().filter(bound).collect());
    }
    let mut found = Vec::new();
    for (key, _) in collect_prefix(tables, Table::SubscriptionsByTask, &text_key(&[task_id]))? {
        let id = parse_text_key(&key)
            .and_then(|mut parts| parts.pop())
            .ok_or_else(|| {
                StoreError::Corrupt("a subscription's task index key is not (task, id)".into())
            })?;
        // On a database each read is its own statement: one deleted in between is gone.
        if let Some(subscription) = subscription_in(sealing, tables, &id)?.filter(bound) {
            found.push(subscription);
        }
    }
    Ok(found)
}

/// Adds up to a step's worth of subscriptions, from subscription key `from` on, to the index
/// by task; where the next step starts, or `None` once every subscription is in it (which is
/// then recorded).
fn index_subscriptions_step(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    from: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    if tables
        .get(Table::SubscriptionsByTask, BY_TASK_COMPLETE)?
        .is_some()
    {
        return Ok(None);
    }
    let mut seen = Vec::new();
    tables.scan(Table::Subscriptions, &[], from, &mut |key, value| {
        seen.push((key.to_vec(), value.to_vec()));
        Ok(seen.len() < INDEX_PER_STEP)
    })?;
    for (_, value) in &seen {
        index_by_task(
            tables,
            &decode_record(sealing, Table::Subscriptions, value)?,
        )?;
    }
    match seen.last() {
        Some((last, _)) if seen.len() == INDEX_PER_STEP => {
            let mut next = last.clone();
            next.push(0);
            Ok(Some(next))
        }
        _ => {
            tables.insert(Table::SubscriptionsByTask, BY_TASK_COMPLETE, &[1])?;
            Ok(None)
        }
    }
}

#[async_trait::async_trait]
pub trait InboundStore: Send + Sync {
    async fn put_subscription(&self, subscription: SubscriptionRecord) -> Result<(), StoreError>;
    async fn get_subscription(&self, id: String) -> Result<Option<SubscriptionRecord>, StoreError>;
    /// Subscriptions in id order: at most `limit`, those whose id comes after `after` (from
    /// the first if it is empty).
    async fn list_subscriptions(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// The subscriptions bound to `task_id` (made for it), in id order.
    async fn subscriptions_of_task(
        &self,
        task_id: String,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// One bounded step of adding the subscriptions stored before the index by task existed
    /// to it. Start with an empty `from`, go on from each step's answer until it is `None`.
    async fn index_subscriptions(&self, from: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes a subscription with its events, receipts and replay cache.
    async fn delete_subscription(&self, id: String) -> Result<bool, StoreError>;
    /// In one transaction: the replay check, the event, its forwarding deliveries, the receipt
    /// (numbered here, with order notes added).
    async fn accept_inbound(&self, accept: InboundAccept) -> Result<InboundOutcome, StoreError>;
    /// Records a refused request; returns the receipt as numbered.
    async fn add_receipt(
        &self,
        subscription_id: String,
        receipt: ReceiptRecord,
    ) -> Result<ReceiptRecord, StoreError>;
    /// Accepted events after `after`, oldest first.
    async fn inbound_events(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboundEventRecord>, StoreError>;
    /// Receipts after number `after`, oldest first.
    async fn receipts(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ReceiptRecord>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> InboundStore for TableStore<B> {
    async fn put_subscription(&self, subscription: SubscriptionRecord) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| put_subscription_in(&sealing, tables, &subscription))
            .await
    }

    async fn get_subscription(&self, id: String) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.record(Table::Subscriptions, id.into_bytes()).await
    }

    async fn list_subscriptions(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            let mut start = after.into_bytes();
            if !start.is_empty() {
                start.push(0);
            }
            page(tables, Table::Subscriptions, &[], &start, limit, |value| {
                decode_record(&sealing, Table::Subscriptions, value)
            })
        })
        .await
    }

    async fn subscriptions_of_task(
        &self,
        task_id: String,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| subscriptions_of_task_in(&sealing, tables, &task_id))
            .await
    }

    async fn index_subscriptions(&self, from: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        let sealing = self.sealing.clone();
        self.write_lingering(move |tables| index_subscriptions_step(&sealing, tables, &from))
            .await
    }

    async fn delete_subscription(&self, id: String) -> Result<bool, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| delete_subscription_in(&sealing, tables, &id))
            .await
    }

    async fn accept_inbound(&self, accept: InboundAccept) -> Result<InboundOutcome, StoreError> {
        let sealing = self.sealing.clone();
        let reads = accept_reads(&accept);
        self.write_keeping_fresh(
            Urgency::Now,
            reads,
            move |tables, fresh| accept_inbound_in(&sealing, tables, accept, fresh),
            |outcome| match outcome {
                InboundOutcome::Accepted {
                    forwarded: Some(published),
                    ..
                } => published.pending(now_ms()),
                _ => Vec::new(),
            },
        )
        .await
    }

    async fn add_receipt(
        &self,
        subscription_id: String,
        receipt: ReceiptRecord,
    ) -> Result<ReceiptRecord, StoreError> {
        self.write(move |tables| {
            let mut counters = counters(tables, &subscription_id)?;
            let receipt = insert_receipt(tables, &subscription_id, &mut counters, receipt)?;
            save_counters(tables, &subscription_id, &counters)?;
            Ok(receipt)
        })
        .await
    }

    async fn inbound_events(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboundEventRecord>, StoreError> {
        self.read(move |tables| {
            let prefix = text_key(&[&subscription_id]);
            let start = with_sequence(prefix.clone(), after.saturating_add(1));
            page(tables, Table::InboundEvents, &prefix, &start, limit, decode)
        })
        .await
    }

    async fn receipts(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ReceiptRecord>, StoreError> {
        self.read_snapshot(move |tables| receipts_in(tables, &subscription_id, after, limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryTables;

    fn logged_push(replay_key: &str, expires_at_ms: u64) -> InboundAccept {
        let mut push = crate::store::contract_tests::push("s", replay_key, InboundRoute::Log);
        push.replay_keys[0].expires_at_ms = expires_at_ms;
        push.replay_max_entries = 1000;
        push
    }

    #[test]
    fn refused_receipts_go_once_a_thousand_numbers_old_even_when_accepted_pushes_took_the_numbers()
    {
        let tables = MemoryTables::default();
        let mut counters = InboundCounters::default();
        let receipt = || crate::store::contract_tests::push("s", "k", InboundRoute::Log).receipt;
        let refuse = |counters: &mut InboundCounters| {
            insert_receipt(&tables, "s", counters, receipt())
                .unwrap()
                .number
        };
        assert_eq!(refuse(&mut counters), 1);
        assert_eq!(refuse(&mut counters), 2);
        // Accepted pushes number their receipts (kept with their events) meanwhile.
        counters.last_receipt += MAX_RECEIPTS;
        assert_eq!(refuse(&mut counters), MAX_RECEIPTS + 3);
        let kept: Vec<u64> = page(
            &tables,
            Table::Receipts,
            &[],
            &[],
            10,
            decode::<ReceiptRecord>,
        )
        .unwrap()
        .iter()
        .map(|r| r.number)
        .collect();
        assert_eq!(
            kept,
            [MAX_RECEIPTS + 3],
            "both older ones, not only the number that fell out now"
        );
        assert_eq!(refuse(&mut counters), MAX_RECEIPTS + 4);
        assert_eq!(tables.count(Table::Receipts), 2);
    }

    /// Every replay entry of subscription "s": those in the tables and those held with its
    /// counters, with the counters' own count of them.
    fn replay_cache(tables: &MemoryTables) -> (usize, usize, u64) {
        let counted: InboundCounters = get_json(tables, Table::InboundCounters, b"s")
            .unwrap()
            .unwrap();
        assert_eq!(
            tables.count(Table::ReplayByTime),
            tables.count(Table::Replay),
            "every entry of the tables is in both"
        );
        (
            tables.count(Table::Replay),
            counted.recent_replay.len(),
            counted.replay_entries,
        )
    }

    #[test]
    fn an_expired_replay_entry_refuses_nothing_and_is_pruned_within_a_pruning_period() {
        let tables = MemoryTables::default();
        let sealing = Sealing::none();
        let accept = |key: &str, expires_at_ms: u64| {
            accept_inbound_in(
                &sealing,
                &tables,
                logged_push(key, expires_at_ms),
                &mut Default::default(),
            )
            .unwrap()
        };
        let live = u64::MAX / 2;
        // A key longer than the counters hold goes to the tables at once.
        let long_expired = "x".repeat(REPLAY_RECENT_KEY_MAX + 1);
        for key in ["expired", long_expired.as_str()] {
            assert!(matches!(accept(key, 1), InboundOutcome::Accepted { .. }));
            assert!(
                matches!(accept(key, 1), InboundOutcome::Accepted { .. }),
                "an expired entry is no duplicate, pruned or not"
            );
        }
        assert!(matches!(
            accept("live", live),
            InboundOutcome::Accepted { .. }
        ));
        assert!(matches!(accept("live", live), InboundOutcome::Duplicate));
        for n in 0..REPLAY_PRUNE_EVERY {
            accept(&format!("live-{n}"), live);
        }
        let (in_tables, held, counted) = replay_cache(&tables);
        assert_eq!(
            (in_tables + held, counted),
            (1 + REPLAY_PRUNE_EVERY as usize, 1 + REPLAY_PRUNE_EVERY),
            "the live entries stay, the expired ones went"
        );
        assert!(
            in_tables > 0 && held > 0,
            "{in_tables} in the tables, {held} held"
        );
    }

    #[test]
    fn a_replay_entry_refuses_its_key_whether_held_with_the_counters_or_moved_to_the_tables() {
        let tables = MemoryTables::default();
        let sealing = Sealing::none();
        let accept = |key: &str| {
            accept_inbound_in(
                &sealing,
                &tables,
                logged_push(key, u64::MAX / 2),
                &mut Default::default(),
            )
            .unwrap()
        };
        let long = "y".repeat(REPLAY_RECENT_KEY_MAX + 1);
        let mut keys: Vec<String> = (0..REPLAY_RECENT * 2 + 3)
            .map(|n| format!("k{n}"))
            .collect();
        keys.push(long);
        for key in &keys {
            assert!(
                matches!(accept(key), InboundOutcome::Accepted { .. }),
                "{key}"
            );
        }
        let (in_tables, held, counted) = replay_cache(&tables);
        assert_eq!((in_tables + held, counted), (keys.len(), keys.len() as u64));
        assert!(held > 0 && in_tables >= REPLAY_RECENT * 2);
        for key in &keys {
            assert!(matches!(accept(key), InboundOutcome::Duplicate), "{key}");
        }
        assert_eq!(replay_cache(&tables), (in_tables, held, counted));
    }

    #[test]
    fn a_full_replay_cache_drops_the_soonest_to_expire_even_when_the_counters_hold_it() {
        let tables = MemoryTables::default();
        let sealing = Sealing::none();
        let far = u64::MAX / 2;
        let accept = |key: &str, until: u64| {
            let mut push = logged_push(key, until);
            push.replay_max_entries = 3;
            accept_inbound_in(&sealing, &tables, push, &mut Default::default()).unwrap()
        };
        for (key, until) in [("k1", far + 3), ("k2", far + 1), ("k3", far + 2)] {
            assert!(matches!(
                accept(key, until),
                InboundOutcome::Accepted {
                    replay_evicted: 0,
                    ..
                }
            ));
        }
        assert!(matches!(
            accept("k4", far + 4),
            InboundOutcome::Accepted {
                replay_evicted: 1,
                ..
            }
        ));
        for key in ["k1", "k3", "k4"] {
            assert!(
                matches!(accept(key, far), InboundOutcome::Duplicate),
                "{key}"
            );
        }
        assert!(
            matches!(accept("k2", far + 1), InboundOutcome::Accepted { .. }),
            "the soonest to expire went"
        );
        assert_eq!(replay_cache(&tables).2, 3);
    }
}
