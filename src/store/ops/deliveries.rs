//! Deliveries and their attempt logs: what the scheduler loads, what an attempt reads and
//! records, listing and replay.

use super::fresh::Handover;
use super::*;

/// Attempts kept per delivery; older ones are dropped from the log.
const MAX_ATTEMPTS_LOGGED: u32 = 50;

/// The pending deliveries whose lane keys start with one of `prefixes`, prefix by prefix, each
/// in lane and sequence order. The pending entries, the deliveries and their configs are each
/// read for all prefixes at once (on PostgreSQL a round trip each, not three per lane).
pub(super) fn pending_under(
    sealing: &Sealing,
    tables: &dyn Tables,
    prefixes: &[Vec<u8>],
) -> Result<Vec<PendingDelivery>, StoreError> {
    let ahead: Vec<ReadAhead> = prefixes
        .iter()
        .map(|prefix| ReadAhead::Prefix(Table::Pending, prefix.clone()))
        .collect();
    tables.prefetch(&ahead)?;
    let mut ids = Vec::new();
    for prefix in prefixes {
        ids.extend(
            collect_prefix(tables, Table::Pending, prefix)?
                .into_iter()
                .map(|(_, id)| id),
        );
    }
    let deliveries = tables
        .get_many(Table::Deliveries, &ids)?
        .into_iter()
        .flatten()
        .map(|delivery| decode::<DeliveryRecord>(&delivery))
        .collect::<Result<Vec<_>, _>>()?;
    let mut configs: Vec<ReadAhead> = deliveries
        .iter()
        .map(|d| {
            ReadAhead::Key(
                Table::Configs,
                config_key(&d.tenant, &d.task_id, &d.config_id),
            )
        })
        .collect();
    configs.dedup();
    tables.prefetch(&configs)?;
    let mut found = Vec::new();
    let mut url_of_lane: Option<(Vec<u8>, String)> = None;
    for delivery in deliveries {
        let ckey = config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id);
        let url = match &url_of_lane {
            Some((key, url)) if *key == ckey => url.clone(),
            _ => {
                let Some(config) =
                    get_record::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)?
                else {
                    continue;
                };
                url_of_lane = Some((ckey, config.url.clone()));
                config.url
            }
        };
        found.push(PendingDelivery {
            tenant: delivery.tenant,
            task_id: delivery.task_id,
            config_id: delivery.config_id,
            delivery_id: delivery.id,
            sequence: delivery.sequence,
            next_attempt_at_ms: delivery.next_attempt_at_ms,
            url,
            again: false,
        });
    }
    Ok(found)
}

/// A failing streak at least this long that ends is reported as `config.recovered`.
const RECOVERY_REPORTED_AFTER_MS: u64 = 60_000;

/// A delivery's attempt log, oldest first.
pub(super) fn attempt_log(
    tables: &dyn Tables,
    delivery_id: &str,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let prefix = text_key(&[delivery_id]);
    page(
        tables,
        Table::Attempts,
        &prefix,
        &prefix,
        usize::MAX,
        decode,
    )
}

fn record_attempt_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    delivery_id: &str,
    attempt: AttemptRecord,
    update: DeliveryUpdate,
    disable_after_ms: u64,
) -> Result<(Recorded, Vec<PendingDelivery>), StoreError> {
    let now = now_ms();
    let number = attempt.number;
    tables.insert(
        Table::Attempts,
        &attempt_key(delivery_id, number),
        &encode(&attempt)?,
    )?;
    if number > MAX_ATTEMPTS_LOGGED {
        tables.remove(
            Table::Attempts,
            &attempt_key(delivery_id, number - MAX_ATTEMPTS_LOGGED),
        )?;
    }
    let Some(current) =
        get_json::<DeliveryRecord>(tables, Table::Deliveries, delivery_id.as_bytes())?
    else {
        return Ok(Default::default());
    };
    let still_pending = current.state == DeliveryState::Pending;
    let failed = !matches!(update, DeliveryUpdate::Delivered);
    // Changed from the record just read rather than read again (`update_delivery`).
    let mut updated = current.clone();
    updated.attempts = updated.attempts.max(number);
    updated.manual = false;
    updated.updated_at_ms = now;
    // Canceled while the attempt was in flight: keep the log, not the outcome.
    if still_pending {
        updated.lane_failing |= failed;
        match &update {
            DeliveryUpdate::Delivered => {
                updated.state = DeliveryState::Delivered;
                updated.last_error = None;
            }
            DeliveryUpdate::Retry {
                next_attempt_at_ms,
                error,
            } => {
                updated.next_attempt_at_ms = *next_attempt_at_ms;
                updated.last_error = Some(error.clone());
            }
            DeliveryUpdate::Dead { error } | DeliveryUpdate::DisableConfig { error } => {
                updated.state = DeliveryState::Dead;
                updated.last_error = Some(error.clone());
            }
        }
    }
    tables.insert(
        Table::Deliveries,
        delivery_id.as_bytes(),
        &encode(&updated)?,
    )?;
    if !still_pending {
        return Ok(Default::default());
    }
    if !matches!(update, DeliveryUpdate::Retry { .. }) {
        tables.remove(Table::Pending, &lane_key(&current))?;
    }
    let ckey = config_key(&current.tenant, &current.task_id, &current.config_id);
    // Built only for an event, which most outcomes do not make.
    let with_ids = |extra: serde_json::Value| {
        let mut data = serde_json::json!({"tenant": current.tenant, "taskId": current.task_id,
            "configId": current.config_id});
        if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
            data.extend(extra);
        }
        data
    };
    let mut recorded = Recorded::default();
    let mut events = Vec::new();
    if matches!(
        update,
        DeliveryUpdate::Dead { .. } | DeliveryUpdate::DisableConfig { .. }
    ) {
        events.push(NewOperatorEvent {
            kind: "delivery.dead",
            data: with_ids(serde_json::json!({"deliveryId": current.id,
                "sequence": current.sequence, "attempts": number,
                "errorClass": attempt.error_class, "status": attempt.status})),
        });
    }
    if let DeliveryUpdate::DisableConfig { error } = &update {
        for (_, other) in take_prefix(tables, Table::Pending, &ckey)? {
            update_delivery(tables, &other, |delivery| {
                delivery.state = DeliveryState::Dead;
                delivery.last_error = Some(format!("its push config was disabled: {error}"));
                delivery.updated_at_ms = now;
            })?;
            recorded
                .killed
                .push(String::from_utf8_lossy(&other).into_owned());
        }
        tables.remove(Table::FailingStreaks, &ckey)?;
        set_config_state(
            sealing,
            tables,
            &ckey,
            ConfigState::Active,
            ConfigState::Disabled,
            now,
        )?;
        events.push(NewOperatorEvent {
            kind: "config.disabled",
            data: with_ids(
                serde_json::json!({"reason": "gone", "status": attempt.status,
                "deadDeliveries": recorded.killed.len() + 1}),
            ),
        });
    } else {
        let (ended, streak) = track_streak(tables, &ckey, &current, &attempt, &update)?;
        if streak.is_some() && matches!(update, DeliveryUpdate::Dead { .. }) {
            // The lane's next delivery carries the streak on.
            if let Some((_, next)) = first_under(tables, Table::Pending, &ckey, 1)?.pop() {
                update_delivery(tables, &next, |delivery| delivery.lane_failing = true)?;
            }
        }
        if let Some(ended) = ended.filter(|s| {
            attempt.started_at_ms.saturating_sub(s.since_ms) >= RECOVERY_REPORTED_AFTER_MS
        }) {
            events.push(NewOperatorEvent {
                kind: "config.recovered",
                data: with_ids(serde_json::json!({"failingSinceMs": ended.since_ms,
                    "failures": ended.failures,
                    "downForMs": attempt.started_at_ms.saturating_sub(ended.since_ms)})),
            });
        }
        if let Some(streak) = streak.filter(|s| {
            disable_after_ms > 0
                && attempt.started_at_ms.saturating_sub(s.since_ms) >= disable_after_ms
        }) {
            recorded.suspended = set_config_state(
                sealing,
                tables,
                &ckey,
                ConfigState::Active,
                ConfigState::Suspended,
                now,
            )?;
            if recorded.suspended {
                events.push(NewOperatorEvent {
                    kind: "config.disabled",
                    data: with_ids(serde_json::json!({"reason": "failing",
                        "failingSinceMs": streak.since_ms, "failures": streak.failures,
                        "errorClass": streak.last_class, "status": streak.last_status})),
                });
            }
        }
    }
    // The operator webhook's own troubles are not reported to it.
    if current.tenant == OPERATOR_TENANT {
        events.clear();
    }
    recorded.operator_events = events.iter().map(|e| e.kind).collect();
    let announce = super::operator::append(sealing, tables, events, now)?;
    Ok((recorded, announce))
}

/// Keeps the config's failing streak: a failure starts or extends it, a success ends it. Only
/// a delivery that carries the streak (`lane_failing`) extends or ends one, so a success of any
/// other reads and writes nothing; a streak such a success left behind is never extended (a
/// failure of an unmarked delivery starts afresh), so it can only delay a suspension, never
/// hasten it. The streak a success ended, and the one going on after this attempt.
fn track_streak(
    tables: &dyn TablesMut,
    ckey: &[u8],
    delivery: &DeliveryRecord,
    attempt: &AttemptRecord,
    update: &DeliveryUpdate,
) -> Result<(Option<FailingStreak>, Option<FailingStreak>), StoreError> {
    let streak: Option<FailingStreak> = if delivery.lane_failing {
        get_json(tables, Table::FailingStreaks, ckey)?
    } else {
        None
    };
    if matches!(update, DeliveryUpdate::Delivered) {
        if streak.is_some() {
            tables.remove(Table::FailingStreaks, ckey)?;
        }
        return Ok((streak, None));
    }
    let mut streak = streak.unwrap_or(FailingStreak {
        since_ms: attempt.started_at_ms,
        failures: 0,
        last_failure_at_ms: 0,
        last_class: String::new(),
        last_status: None,
    });
    streak.failures += 1;
    streak.last_failure_at_ms = attempt.started_at_ms;
    streak.last_class = attempt.error_class.clone();
    streak.last_status = attempt.status;
    tables.insert(Table::FailingStreaks, ckey, &encode(&streak)?)?;
    Ok((None, Some(streak)))
}

/// Moves the config from state `from` to `to`; whether it was in `from`.
pub(super) fn set_config_state(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    ckey: &[u8],
    from: ConfigState,
    to: ConfigState,
    now: u64,
) -> Result<bool, StoreError> {
    let Some(mut config) = get_record::<ConfigRecord>(sealing, tables, Table::Configs, ckey)?
    else {
        return Ok(false);
    };
    if config.state != from {
        return Ok(false);
    }
    config.state = to;
    config.updated_at_ms = now;
    tables.insert(
        Table::Configs,
        ckey,
        &encode_record(sealing, Table::Configs, &config)?,
    )?;
    Ok(true)
}

fn replay_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    delivery_id: &str,
    now: u64,
) -> Result<Result<PendingDelivery, ReplayRefusal>, StoreError> {
    let Some(delivery) =
        get_json::<DeliveryRecord>(tables, Table::Deliveries, delivery_id.as_bytes())?
    else {
        return Ok(Err(ReplayRefusal::NotFound(delivery_id.to_string())));
    };
    if delivery.state == DeliveryState::Pending {
        return Ok(Err(ReplayRefusal::AlreadyPending(delivery_id.to_string())));
    }
    let ckey = config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id);
    let Some(config) = get_record::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)? else {
        return Ok(Err(ReplayRefusal::ConfigDeleted(delivery_id.to_string())));
    };
    match config.state {
        ConfigState::Active => {}
        ConfigState::Disabled => {
            return Ok(Err(ReplayRefusal::ConfigDisabled(delivery_id.to_string())));
        }
        ConfigState::Suspended => {
            return Ok(Err(ReplayRefusal::ConfigSuspended(delivery_id.to_string())));
        }
    }
    update_delivery(tables, delivery_id.as_bytes(), |d| {
        d.state = DeliveryState::Pending;
        d.skipped_by = None;
        d.manual = true;
        d.next_attempt_at_ms = now;
        d.updated_at_ms = now;
    })?;
    tables.insert(Table::Pending, &lane_key(&delivery), delivery_id.as_bytes())?;
    Ok(Ok(PendingDelivery {
        tenant: delivery.tenant,
        task_id: delivery.task_id,
        config_id: delivery.config_id,
        delivery_id: delivery.id,
        sequence: delivery.sequence,
        next_attempt_at_ms: now,
        url: config.url,
        again: true,
    }))
}

#[async_trait::async_trait]
pub trait DeliveryStore: Send + Sync {
    async fn get_delivery(&self, id: String) -> Result<Option<DeliveryRecord>, StoreError>;
    /// Every pending delivery, grouped by lane and in sequence order within a lane (the
    /// scheduler's state at start).
    async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError>;
    /// The delivery, its config and its event, or `None` if the delivery does not exist.
    /// What an attempt of `delivery_id`, number `sequence` of `lane`, needs, read together.
    async fn attempt_context(
        &self,
        delivery_id: String,
        lane: LaneId,
        sequence: u64,
    ) -> Result<Option<AttemptContext>, StoreError>;
    /// Appends to the attempt log (bounded per delivery) and applies `update`, atomically,
    /// keeping the config's failing streak: a config failing for `disable_after_ms`
    /// (0: never) is suspended. Returns the ids of other deliveries it made dead (410 Gone
    /// kills the whole lane) and whether it suspended the config. Nobody answers a client with
    /// it, so an implementation may hold it briefly to commit it together with other writes.
    async fn record_attempt(
        &self,
        delivery_id: String,
        attempt: AttemptRecord,
        update: DeliveryUpdate,
        disable_after_ms: u64,
    ) -> Result<Recorded, StoreError>;
    /// The attempt log of a delivery, oldest first.
    async fn attempts(&self, delivery_id: String) -> Result<Vec<AttemptRecord>, StoreError>;
    /// Deliveries matching `filter`, oldest first, starting after delivery id `after`.
    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Makes each delivery pending again for one manual attempt. Per id: the pending
    /// delivery, or why it was not replayed.
    async fn replay(
        &self,
        delivery_ids: Vec<String>,
    ) -> Result<Vec<Result<PendingDelivery, ReplayRefusal>>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> DeliveryStore for TableStore<B> {
    async fn get_delivery(&self, id: String) -> Result<Option<DeliveryRecord>, StoreError> {
        self.read(move |tables| get_json(tables, Table::Deliveries, id.as_bytes()))
            .await
    }

    async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| pending_under(&sealing, tables, &[Vec::new()]))
            .await
    }

    async fn attempt_context(
        &self,
        delivery_id: String,
        lane: LaneId,
        sequence: u64,
    ) -> Result<Option<AttemptContext>, StoreError> {
        if let Some(context) = self.fresh.take(&delivery_id, now_ms()) {
            return Ok(Some(context));
        }
        let sealing = self.sealing.clone();
        // One round trip on a database, shared with the attempts starting at the same time:
        // the config's and the event's keys follow from the lane and the sequence, which never
        // change for a delivery.
        let reads = vec![
            ReadAhead::Key(Table::Deliveries, delivery_id.as_bytes().to_vec()),
            ReadAhead::Key(
                Table::Configs,
                config_key(&lane.tenant, &lane.task_id, &lane.config_id),
            ),
            ReadAhead::Key(
                Table::Events,
                with_sequence(task_key(&lane.tenant, &lane.task_id), sequence),
            ),
        ];
        self.read_ahead(reads, move |tables| {
            let Some(delivery) =
                get_json::<DeliveryRecord>(tables, Table::Deliveries, delivery_id.as_bytes())?
            else {
                return Ok(None);
            };
            let config = get_record(
                &sealing,
                tables,
                Table::Configs,
                &config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id),
            )?;
            let event = match &delivery.snapshot {
                Some(snapshot) => EventRecord {
                    event_id: delivery.event_id.clone(),
                    sequence: delivery.sequence,
                    received_at_ms: delivery.created_at_ms,
                    trace: delivery.snapshot_trace.clone(),
                    origin_span: None,
                    body: serde_json::value::RawValue::from_string(snapshot.clone()).map_err(
                        |e| {
                            StoreError::Corrupt(format!(
                                "snapshot of delivery {}: {e}",
                                delivery.id
                            ))
                        },
                    )?,
                },
                None => {
                    let event_key = with_sequence(
                        task_key(&delivery.tenant, &delivery.task_id),
                        delivery.sequence,
                    );
                    get_json(tables, Table::Events, &event_key)?.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "event {} of delivery {} is missing",
                            delivery.sequence, delivery.id
                        ))
                    })?
                }
            };
            Ok(Some(AttemptContext {
                delivery,
                config,
                event,
            }))
        })
        .await
    }

    async fn record_attempt(
        &self,
        delivery_id: String,
        attempt: AttemptRecord,
        update: DeliveryUpdate,
        disable_after_ms: u64,
    ) -> Result<Recorded, StoreError> {
        let sealing = self.sealing.clone();
        let reads = vec![ReadAhead::Key(
            Table::Deliveries,
            delivery_id.as_bytes().to_vec(),
        )];
        // A delivered attempt changes nothing another attempt reads; any other outcome may
        // suspend or disable the config, or kill the lane's other deliveries.
        let delivered = matches!(update, DeliveryUpdate::Delivered);
        let job = move |tables: &dyn TablesMut, handover: &mut Handover| {
            if !delivered {
                handover.changed_existing();
            }
            record_attempt_in(
                &sealing,
                tables,
                &delivery_id,
                attempt,
                update,
                disable_after_ms,
            )
        };
        let (recorded, _) = self
            .write_keeping_fresh(Urgency::Linger, reads, job, |(_, announce)| {
                announce.clone()
            })
            .await?;
        Ok(recorded)
    }

    async fn attempts(&self, delivery_id: String) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |tables| attempt_log(tables, &delivery_id))
            .await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.read(move |tables| {
            let mut found: Vec<DeliveryRecord> = Vec::new();
            if limit == 0 {
                return Ok(found);
            }
            if let Some(task_id) = &filter.task_id {
                // A task's deliveries through the lane index, then in id (creation) order.
                let prefix = match &filter.config_id {
                    Some(config_id) => config_key(&filter.tenant, task_id, config_id),
                    None => task_key(&filter.tenant, task_id),
                };
                let mut ids: Vec<Vec<u8>> = collect_prefix(tables, Table::Lanes, &prefix)?
                    .into_iter()
                    .map(|(_, id)| id)
                    .filter(|id| {
                        after
                            .as_ref()
                            .is_none_or(|after| id.as_slice() > after.as_bytes())
                    })
                    .collect();
                ids.sort();
                // Read a page's worth at a time (one statement on a database), more only
                // while the filter leaves the page short.
                for chunk in ids.chunks(limit.min(READ_TOGETHER)) {
                    for delivery in deliveries_of(tables, chunk)? {
                        if filter.matches(&delivery) {
                            found.push(delivery);
                            if found.len() >= limit {
                                return Ok(found);
                            }
                        }
                    }
                }
                return Ok(found);
            }
            let start: Vec<u8> = match &after {
                Some(after) => {
                    let mut key = after.as_bytes().to_vec();
                    key.push(0);
                    key
                }
                None => Vec::new(),
            };
            tables.scan(Table::Deliveries, &[], &start, &mut |_, value| {
                let delivery: DeliveryRecord = decode(value)?;
                if filter.matches(&delivery) {
                    found.push(delivery);
                }
                Ok(found.len() < limit)
            })?;
            Ok(found)
        })
        .await
    }

    async fn replay(
        &self,
        delivery_ids: Vec<String>,
    ) -> Result<Vec<Result<PendingDelivery, ReplayRefusal>>, StoreError> {
        let sealing = self.sealing.clone();
        self.write_announcing(
            Urgency::Now,
            Vec::new(),
            move |tables| {
                let now = now_ms();
                delivery_ids
                    .iter()
                    .map(|id| replay_in(&sealing, tables, id, now))
                    .collect()
            },
            |results: &Vec<Result<PendingDelivery, ReplayRefusal>>| {
                results
                    .iter()
                    .filter_map(|r| r.as_ref().ok().cloned())
                    .collect()
            },
        )
        .await
    }
}

/// Deliveries read by id at most this many at a time: a statement each on a database, where
/// reading them one by one cost a round trip per delivery (a task's view with 20,000
/// deliveries made 20,000 statements).
const READ_TOGETHER: usize = 1000;

/// The deliveries of `ids` that exist, in the order of `ids`.
fn deliveries_of(tables: &dyn Tables, ids: &[Vec<u8>]) -> Result<Vec<DeliveryRecord>, StoreError> {
    tables
        .get_many(Table::Deliveries, ids)?
        .into_iter()
        .flatten()
        .map(|value| decode(&value))
        .collect()
}

/// A task's deliveries counted by state.
pub(super) fn delivery_counts_in(
    tables: &dyn Tables,
    tenant: &str,
    task_id: &str,
) -> Result<DeliveryCounts, StoreError> {
    let mut counts = DeliveryCounts::default();
    let ids: Vec<Vec<u8>> = collect_prefix(tables, Table::Lanes, &task_key(tenant, task_id))?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    for chunk in ids.chunks(READ_TOGETHER) {
        for delivery in deliveries_of(tables, chunk)? {
            match delivery.state {
                DeliveryState::Pending => counts.pending += 1,
                DeliveryState::Delivered => counts.delivered += 1,
                DeliveryState::Dead => counts.dead += 1,
                DeliveryState::Canceled => counts.canceled += 1,
                DeliveryState::Skipped => counts.skipped += 1,
            }
        }
    }
    Ok(counts)
}
