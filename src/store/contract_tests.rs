//! The store's contract: one suite of tests of what the operations promise, run against every
//! backend — memory, the embedded redb file, and PostgreSQL (ignored without a database: set
//! `A2A_PUSH_HUB_TEST_POSTGRES_URL` and run with `--ignored`; CI does).

use std::sync::{Arc, Mutex};

use serde_json::json;

use super::ops::{Backend, TableStore, Urgency};
use super::tables::{Table, TablesMut};
use super::*;
use crate::a2a::event::parse_event;
use crate::config::Secret;

const HOOK: &str = "https://receiver.example/hook";

fn config(task_id: &str, id: &str) -> ConfigRecord {
    ConfigRecord {
        tenant: String::new(),
        task_id: task_id.to_string(),
        id: id.to_string(),
        url: format!("{HOOK}/{id}"),
        token: Some(Secret::new("tok".to_string())),
        authentication: None,
        wire_version: crate::a2a::version::WireVersion::V1_0,
        state: ConfigState::Active,
        created_at_ms: 1,
        updated_at_ms: 1,
        filter: Default::default(),
        owner: None,
    }
}

fn anyone(max_per_task: usize) -> ConfigRules {
    ConfigRules {
        principal: None,
        max_per_task,
    }
}

fn status_event(task_id: &str, state: &str) -> NewEvent {
    let value = json!({"statusUpdate": {"taskId": task_id, "contextId": "ctx", "status": {"state": state}}});
    let parsed = parse_event(&value, "").unwrap();
    NewEvent {
        tenant: String::new(),
        task_id: parsed.task_id,
        event: parsed.event,
        body: serde_json::value::to_raw_value(&value).unwrap(),
        owner: None,
        trace: None,
        origin_span: None,
        idempotency: None,
    }
}

/// The events a publish stored (it had no conflicting idempotency key).
trait Stored {
    fn stored(self) -> Vec<PublishedEvent>;
}

impl Stored for Published {
    fn stored(self) -> Vec<PublishedEvent> {
        match self {
            Published::Events(events) => events,
            conflict => panic!("nothing was stored: {conflict:?}"),
        }
    }
}

/// An attempt the receiver answered with `status`: a failure unless it is 2xx.
/// Asserts that an attempt's context is of a canceled delivery, its config gone.
fn assert_canceled_without_config(handed: AttemptContext) {
    assert_eq!(
        (handed.delivery.state, handed.config),
        (DeliveryState::Canceled, None)
    );
}

fn answered(number: u32, started_at_ms: u64, status: u16) -> AttemptRecord {
    let ok = (200..300).contains(&status);
    AttemptRecord {
        number,
        started_at_ms,
        duration_ms: 3,
        status: Some(status),
        error_class: if ok { "success" } else { "http_status" }.into(),
        error: (!ok).then(|| format!("HTTP {status}")),
        response_snippet: None,
        traceparent: None,
        credentials: Vec::new(),
    }
}

/// Collects what the store announces as newly pending.
fn announced<B: Backend>(store: &TableStore<B>) -> Arc<Mutex<Vec<PendingDelivery>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    store.announce_pending_to(Box::new(move |pending| {
        sink.lock().unwrap().extend(pending);
    }));
    seen
}

async fn configs_are_kept_in_order_paged_and_removed<B: Backend>(store: TableStore<B>) {
    for id in ["c", "a", "b"] {
        let written = store.put_config(config("t", id), anyone(10)).await.unwrap();
        assert_eq!(written, ConfigWrite::Stored);
    }
    let ids = |configs: Vec<ConfigRecord>| configs.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let all = store
        .list_configs(String::new(), "t".into(), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(all), ["a", "b", "c"]);
    let page = store
        .list_configs(String::new(), "t".into(), Some("a".into()), 1)
        .await
        .unwrap();
    assert_eq!(ids(page), ["b"]);
    let got = store
        .get_config(String::new(), "t".into(), "b".into())
        .await
        .unwrap();
    assert_eq!(
        got.unwrap().token.unwrap().expose(),
        "tok",
        "secrets come back unsealed"
    );
    assert!(
        store
            .delete_config(String::new(), "t".into(), "b".into())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_config(String::new(), "t".into(), "b".into())
            .await
            .unwrap()
    );
    let left = store
        .list_configs(String::new(), "t".into(), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(left), ["a", "c"]);
}

async fn a_task_belongs_to_its_first_principal_and_holds_a_bounded_number_of_configs<B: Backend>(
    store: TableStore<B>,
) {
    let rules = |principal: &str| ConfigRules {
        principal: Some(principal.to_string()),
        max_per_task: 2,
    };
    assert_eq!(
        store
            .put_config(config("t", "1"), rules("alice"))
            .await
            .unwrap(),
        ConfigWrite::Stored
    );
    assert_eq!(
        store
            .put_config(config("t", "2"), rules("bob"))
            .await
            .unwrap(),
        ConfigWrite::NotOwner
    );
    assert_eq!(
        store
            .put_config(config("t", "2"), rules("alice"))
            .await
            .unwrap(),
        ConfigWrite::Stored
    );
    assert_eq!(
        store
            .put_config(config("t", "3"), rules("alice"))
            .await
            .unwrap(),
        ConfigWrite::TooMany
    );
    assert_eq!(
        store
            .put_config(config("t", "2"), rules("alice"))
            .await
            .unwrap(),
        ConfigWrite::Stored,
        "replacing a config is always allowed"
    );
    let owner = store.task_owner(String::new(), "t".into()).await.unwrap();
    assert_eq!(owner.as_deref(), Some("alice"));
    let listed = store
        .list_configs(String::new(), "t".into(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "nothing of the refused writes was stored");
}

async fn publishing_numbers_events_per_task_and_announces_one_delivery_per_active_config<
    B: Backend,
>(
    store: TableStore<B>,
) {
    let announced = announced(&store);
    store
        .put_config(config("t", "a"), anyone(10))
        .await
        .unwrap();
    store
        .put_config(config("t", "b"), anyone(10))
        .await
        .unwrap();
    let published = store
        .publish(vec![
            status_event("t", "TASK_STATE_WORKING"),
            status_event("t", "TASK_STATE_COMPLETED"),
        ])
        .await
        .unwrap()
        .stored();
    assert_eq!(
        published.iter().map(|p| p.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(published.iter().all(|p| p.deliveries.len() == 2));
    let pending = store.pending_deliveries().await.unwrap();
    let lanes: Vec<(String, u64)> = pending
        .iter()
        .map(|p| (p.config_id.clone(), p.sequence))
        .collect();
    assert_eq!(
        lanes,
        [
            ("a".into(), 1),
            ("a".into(), 2),
            ("b".into(), 1),
            ("b".into(), 2)
        ],
        "pending deliveries by lane, in sequence order"
    );
    let mut seen = announced.lock().unwrap().clone();
    seen.sort_by_key(|p| (p.config_id.clone(), p.sequence));
    let mut stored = pending.clone();
    for p in seen.iter_mut().chain(stored.iter_mut()) {
        p.next_attempt_at_ms = 0;
    }
    assert_eq!(
        seen, stored,
        "the commit announced exactly what it made pending"
    );
    let task = store
        .get_task(String::new(), "t".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.last_sequence, 2);
    assert!(task.terminal);
}

async fn an_attempt_is_logged_and_its_outcome_applied_together<B: Backend>(store: TableStore<B>) {
    store
        .put_config(config("t", "a"), anyone(10))
        .await
        .unwrap();
    let trace = crate::trace::TraceContext::parse(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("vendor=1"),
        None,
    )
    .unwrap();
    let published = store
        .publish(vec![NewEvent {
            trace: trace.clone(),
            ..status_event("t", "TASK_STATE_WORKING")
        }])
        .await
        .unwrap()
        .stored();
    let id = published[0].deliveries[0].delivery_id.clone();
    let lane = LaneId {
        tenant: String::new(),
        task_id: "t".to_string(),
        config_id: "a".to_string(),
    };
    let context = store
        .attempt_context(id.clone(), lane, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(context.config.unwrap().id, "a");
    assert_eq!(context.event.sequence, 1);
    assert_eq!(
        context.event.trace, trace,
        "the event's trace is kept with it"
    );
    let attempt = |number| answered(number, 10, 500);
    let retry = DeliveryUpdate::Retry {
        next_attempt_at_ms: 99,
        error: "HTTP 500".into(),
    };
    store
        .record_attempt(id.clone(), attempt(1), retry, 0)
        .await
        .unwrap();
    let delivery = store.get_delivery(id.clone()).await.unwrap().unwrap();
    assert_eq!(
        (
            delivery.state,
            delivery.attempts,
            delivery.next_attempt_at_ms
        ),
        (DeliveryState::Pending, 1, 99)
    );
    let mut ok = attempt(2);
    ok.status = Some(200);
    ok.error_class = "success".into();
    store
        .record_attempt(id.clone(), ok, DeliveryUpdate::Delivered, 0)
        .await
        .unwrap();
    let log = store.attempts(id.clone()).await.unwrap();
    assert_eq!(log.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2]);
    assert!(store.pending_deliveries().await.unwrap().is_empty());
    let counts = store
        .task_overview(String::new(), "t".into(), 10)
        .await
        .unwrap()
        .deliveries;
    assert_eq!((counts.pending, counts.delivered), (0, 1));
}

async fn attempt_contexts_read_at_once_are_each_their_own_deliverys<B: Backend>(
    store: TableStore<B>,
) {
    let mut deliveries = Vec::new();
    for t in 0..24 {
        let task = format!("t{t}");
        store
            .put_config(config(&task, &format!("c{t}")), anyone(10))
            .await
            .unwrap();
        let state = if t % 2 == 0 {
            "TASK_STATE_WORKING"
        } else {
            "TASK_STATE_COMPLETED"
        };
        let published = store
            .publish(vec![status_event(&task, state)])
            .await
            .unwrap()
            .stored();
        let lane = LaneId {
            tenant: String::new(),
            task_id: task.clone(),
            config_id: format!("c{t}"),
        };
        deliveries.push((published[0].deliveries[0].delivery_id.clone(), lane, state));
    }
    let gone = LaneId {
        tenant: String::new(),
        task_id: "t0".to_string(),
        config_id: "c0".to_string(),
    };
    // Started together, as the scheduler starts attempts: a store may read them as one.
    let reads = deliveries
        .iter()
        .map(|(id, lane, _)| store.attempt_context(id.clone(), lane.clone(), 1))
        .chain([store.attempt_context("no-such-delivery".to_string(), gone, 1)]);
    let mut contexts = futures_util::future::join_all(reads).await;
    assert!(
        contexts.pop().unwrap().unwrap().is_none(),
        "a delivery that does not exist has no context"
    );
    for ((id, lane, state), context) in deliveries.iter().zip(contexts) {
        let context = context.unwrap().unwrap();
        assert_eq!(&context.delivery.id, id);
        assert_eq!(context.config.unwrap().task_id, lane.task_id);
        assert!(
            context.event.body.get().contains(state)
                && context
                    .event
                    .body
                    .get()
                    .contains(&format!("\"{}\"", lane.task_id)),
            "{id}: {}",
            context.event.body.get()
        );
    }
}

/// The first attempt of a delivery just published is handed what the publish had in hand
/// instead of reading it back; what it is handed must be what a read would give, whatever
/// changed in between.
async fn a_first_attempt_sees_what_a_read_would_whatever_changed_since_the_publish<B: Backend>(
    store: TableStore<B>,
) {
    store
        .put_config(config("t", "a"), anyone(10))
        .await
        .unwrap();
    let lane = |task: &str, config: &str| LaneId {
        tenant: String::new(),
        task_id: task.to_string(),
        config_id: config.to_string(),
    };
    let publish_to = |task: &'static str| {
        let store = &store;
        async move {
            let published = store
                .publish(vec![status_event(task, "TASK_STATE_WORKING")])
                .await
                .unwrap()
                .stored();
            (
                published[0].deliveries[0].delivery_id.clone(),
                published[0].sequence,
            )
        }
    };
    let publish = || publish_to("t");
    let context = |id: String, sequence| store.attempt_context(id, lane("t", "a"), sequence);

    // Nothing changed: the same delivery, config and event as the store holds.
    let (id, sequence) = publish().await;
    let handed = context(id.clone(), sequence).await.unwrap().unwrap();
    assert_eq!(
        Some(handed.delivery.clone()),
        store.get_delivery(id.clone()).await.unwrap()
    );
    assert_eq!(
        handed.config,
        store
            .get_config(String::new(), "t".into(), "a".into())
            .await
            .unwrap()
    );
    assert_eq!(
        (handed.event.sequence, handed.event.body.get()),
        (sequence, status_event("t", "TASK_STATE_WORKING").body.get())
    );
    // Handed once: the next attempt reads what its first one recorded.
    store
        .record_attempt(
            id.clone(),
            answered(1, 10, 503),
            DeliveryUpdate::Retry {
                next_attempt_at_ms: 99,
                error: "HTTP 503".into(),
            },
            0,
        )
        .await
        .unwrap();
    let again = context(id, sequence).await.unwrap().unwrap();
    assert_eq!(
        (again.delivery.attempts, again.delivery.next_attempt_at_ms),
        (1, 99)
    );

    // The config moved to another URL after the publish: the attempt goes there.
    let (id, sequence) = publish().await;
    let mut moved = config("t", "a");
    moved.url = format!("{HOOK}/moved");
    store.put_config(moved, anyone(10)).await.unwrap();
    let handed = context(id, sequence).await.unwrap().unwrap();
    assert_eq!(handed.config.unwrap().url, format!("{HOOK}/moved"));

    // The config deleted after the publish: the delivery is canceled and has no config.
    let (id, sequence) = publish().await;
    store
        .delete_config(String::new(), "t".into(), "a".into())
        .await
        .unwrap();
    assert_canceled_without_config(context(id, sequence).await.unwrap().unwrap());

    // A publisher declaring another owner removes the configs of the one before, in its own
    // publish: the delivery to such a config is canceled by then.
    let alice = ConfigRules {
        principal: Some("alice".into()),
        max_per_task: 10,
    };
    store.put_config(config("t", "a"), alice).await.unwrap();
    let (id, sequence) = publish().await;
    store
        .publish(vec![NewEvent {
            owner: Some("bob".into()),
            ..status_event("t", "TASK_STATE_WORKING")
        }])
        .await
        .unwrap();
    assert_canceled_without_config(context(id, sequence).await.unwrap().unwrap());

    // A config suspended for failing holds its new events; enabling it again (a write that
    // announces the deliveries it resumes) is seen by an attempt of one published meanwhile.
    store
        .put_config(config("u", "c"), anyone(10))
        .await
        .unwrap();
    let (failing, _) = publish_to("u").await;
    let retry = || DeliveryUpdate::Retry {
        next_attempt_at_ms: 1_000_000,
        error: "HTTP 503".into(),
    };
    for (number, at) in [(1, 10_000), (2, 11_000)] {
        store
            .record_attempt(failing.clone(), answered(number, at, 503), retry(), 1_000)
            .await
            .unwrap();
    }
    let (held, sequence) = publish_to("u").await;
    store
        .enable_config(String::new(), "u".into(), "c".into())
        .await
        .unwrap()
        .unwrap();
    let handed = store
        .attempt_context(held, lane("u", "c"), sequence)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(handed.config.unwrap().state, ConfigState::Active);
}

async fn replay_makes_a_finished_delivery_pending_again_and_refuses_a_pending_one<B: Backend>(
    store: TableStore<B>,
) {
    store
        .put_config(config("t", "a"), anyone(10))
        .await
        .unwrap();
    let first = store
        .publish(vec![status_event("t", "TASK_STATE_WORKING")])
        .await
        .unwrap()
        .stored();
    let second = store
        .publish(vec![status_event("t", "TASK_STATE_WORKING")])
        .await
        .unwrap()
        .stored();
    let (dead, pending) = (
        first[0].deliveries[0].delivery_id.clone(),
        second[0].deliveries[0].delivery_id.clone(),
    );
    let failed = AttemptRecord {
        number: 1,
        started_at_ms: 1,
        duration_ms: 1,
        status: None,
        error_class: "connect".into(),
        error: Some("refused".into()),
        response_snippet: None,
        traceparent: None,
        credentials: Vec::new(),
    };
    store
        .record_attempt(
            dead.clone(),
            failed,
            DeliveryUpdate::Dead {
                error: "refused".into(),
            },
            0,
        )
        .await
        .unwrap();
    let announced = announced(&store);
    let results = store
        .replay(vec![dead.clone(), pending.clone(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap().delivery_id, dead);
    assert_eq!(results[1], Err(ReplayRefusal::AlreadyPending(pending)));
    assert_eq!(results[2], Err(ReplayRefusal::NotFound("nope".into())));
    let seen: Vec<String> = announced
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.delivery_id.clone())
        .collect();
    assert_eq!(
        seen,
        std::slice::from_ref(&dead),
        "only the replayed delivery is announced"
    );
    let delivery = store.get_delivery(dead).await.unwrap().unwrap();
    assert!(delivery.manual && delivery.state == DeliveryState::Pending);
}

async fn deleting_a_config_cancels_its_pending_deliveries<B: Backend>(store: TableStore<B>) {
    store
        .put_config(config("t", "a"), anyone(10))
        .await
        .unwrap();
    let published = store
        .publish(vec![status_event("t", "TASK_STATE_WORKING")])
        .await
        .unwrap()
        .stored();
    store
        .delete_config(String::new(), "t".into(), "a".into())
        .await
        .unwrap();
    assert!(store.pending_deliveries().await.unwrap().is_empty());
    let delivery = store
        .get_delivery(published[0].deliveries[0].delivery_id.clone())
        .await
        .unwrap();
    assert_eq!(delivery.unwrap().state, DeliveryState::Canceled);
    let more = store
        .publish(vec![status_event("t", "TASK_STATE_WORKING")])
        .await
        .unwrap()
        .stored();
    assert!(more[0].deliveries.is_empty(), "no config, no delivery");
}

pub(crate) fn subscription(id: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        id: id.to_string(),
        tenant: String::new(),
        task_id: None,
        token: Some(Secret::new("sub-token".to_string())),
        authentication: None,
        jwks_url: None,
        issuer: None,
        jwt_profile: JwtProfile::Hub,
        webhook_secret: None,
        more_webhook_secrets: Vec::new(),
        webhook_public_keys: Vec::new(),
        tolerance_s: 300,
        forward_to: None,
        agent: None,
        gateway: None,
        delegation: None,
        created_at_ms: 1,
    }
}

pub(super) fn push(subscription_id: &str, replay_key: &str, route: InboundRoute) -> InboundAccept {
    let event = status_event("t", "TASK_STATE_WORKING");
    InboundAccept {
        subscription_id: subscription_id.to_string(),
        replay_keys: vec![ReplayKey {
            key: replay_key.to_string(),
            expires_at_ms: u64::MAX / 2,
        }],
        replay_max_entries: 100,
        task_id: "t".into(),
        push_sequence: None,
        event: event.event,
        body: event.body,
        trace: None,
        origin_span: None,
        route,
        receipt: ReceiptRecord {
            number: 0,
            received_at_ms: 1,
            verdict: "accepted".into(),
            status: 200,
            checks: Vec::new(),
            headers: Vec::new(),
            notes: Vec::new(),
            task_id: Some("t".into()),
            event_sequence: None,
        },
    }
}

async fn an_inbound_push_is_accepted_once_and_a_forwarded_one_is_announced<B: Backend>(
    store: TableStore<B>,
) {
    store.put_subscription(subscription("s")).await.unwrap();
    let announced = announced(&store);
    let route = || InboundRoute::Forward {
        tenant: String::new(),
        url: HOOK.to_string(),
    };
    let first = store
        .accept_inbound(push("s", "webhook-id:1", route()))
        .await
        .unwrap();
    assert!(
        matches!(first, InboundOutcome::Accepted { sequence: 1, .. }),
        "{first:?}"
    );
    let again = store
        .accept_inbound(push("s", "webhook-id:1", route()))
        .await
        .unwrap();
    assert!(matches!(again, InboundOutcome::Duplicate), "{again:?}");
    let events = store.inbound_events("s".into(), 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let receipts = store.receipts("s".into(), 0, 10).await.unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.number).collect::<Vec<_>>(),
        [1, 2]
    );
    let seen = announced.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "the accepted push's forwarding delivery, once: {seen:?}"
    );
    assert_eq!(seen[0].url, HOOK);
    assert!(store.delete_subscription("s".into()).await.unwrap());
    assert!(
        store
            .inbound_events("s".into(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

fn refused() -> ReceiptRecord {
    ReceiptRecord {
        verdict: "unauthorized".into(),
        status: 401,
        task_id: None,
        ..push("s", "", InboundRoute::Log).receipt
    }
}

/// Writes to the store's tables as they are, past its operations: what an earlier version, or
/// something outside the hub, left there.
async fn write_directly<B: Backend>(
    store: &TableStore<B>,
    job: impl FnOnce(&dyn TablesMut) -> Result<(), StoreError> + Send + 'static,
) {
    store
        .backend
        .write(Urgency::Now, Vec::new(), Box::new(job), None)
        .await
        .unwrap();
}

async fn numbers<B: Backend>(
    store: &TableStore<B>,
    id: &str,
    after: u64,
    limit: usize,
) -> Vec<(u64, String, Option<u64>)> {
    store
        .receipts(id.into(), after, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.number, r.verdict, r.event_sequence))
        .collect()
}

async fn receipts_are_numbered_across_requests_and_an_accepted_ones_is_kept_with_its_event<
    B: Backend,
>(
    store: TableStore<B>,
) {
    store.put_subscription(subscription("s")).await.unwrap();
    let accepted = store
        .accept_inbound(push("s", "a", InboundRoute::Log))
        .await
        .unwrap();
    assert!(matches!(
        accepted,
        InboundOutcome::Accepted { sequence: 1, .. }
    ));
    assert_eq!(
        store
            .add_receipt("s".into(), refused())
            .await
            .unwrap()
            .number,
        2
    );
    let again = store
        .accept_inbound(push("s", "a", InboundRoute::Log))
        .await
        .unwrap();
    assert!(matches!(again, InboundOutcome::Duplicate));
    store
        .accept_inbound(push("s", "b", InboundRoute::Log))
        .await
        .unwrap();
    let all = numbers(&store, "s", 0, 10).await;
    assert_eq!(
        all,
        [
            (1, "accepted".into(), Some(1)),
            (2, "unauthorized".into(), None),
            (3, "duplicate".into(), None),
            (4, "accepted".into(), Some(2)),
        ]
    );
    for after in 0..=4 {
        for limit in 1..=3 {
            let expected: Vec<_> = all
                .iter()
                .filter(|r| r.0 > after)
                .take(limit)
                .cloned()
                .collect();
            assert_eq!(
                numbers(&store, "s", after, limit).await,
                expected,
                "after {after}, at most {limit}"
            );
        }
    }
    let events = store.inbound_events("s".into(), 0, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2],
        "events keep their own numbers"
    );
    // An event that retention removed takes its receipt with it.
    write_directly(&store, |tables| {
        tables.remove(
            Table::InboundEvents,
            &super::keys::with_sequence(super::keys::text_key(&["s"]), 1),
        )
    })
    .await;
    assert_eq!(
        numbers(&store, "s", 0, 10)
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );

    // A subscription from before receipts were kept with events: its accepted receipt is in
    // the receipts table and its event has none.
    store.put_subscription(subscription("old")).await.unwrap();
    write_directly(&store, |tables| {
            let key = |n| super::keys::with_sequence(super::keys::text_key(&["old"]), n);
            let event = json!({"sequence": 1, "received_at_ms": 1, "task_id": "t",
                "event": {"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}});
            tables.insert(Table::InboundEvents, &key(1), &serde_json::to_vec(&event).unwrap())?;
            let receipt = |number, verdict: &str, event_sequence| ReceiptRecord {
                number,
                verdict: verdict.into(),
                event_sequence,
                ..refused()
            };
            for receipt in [receipt(1, "accepted", Some(1)), receipt(2, "unauthorized", None)] {
                tables.insert(
                    Table::Receipts,
                    &key(receipt.number),
                    &serde_json::to_vec(&receipt).unwrap(),
                )?;
            }
            tables.insert(
                Table::InboundCounters,
                b"old",
                &serde_json::to_vec(&json!({"last_event": 1, "last_receipt": 2})).unwrap(),
            )
        }).await;
    store
        .accept_inbound(push("old", "new", InboundRoute::Log))
        .await
        .unwrap();
    assert_eq!(
        numbers(&store, "old", 0, 10).await,
        [
            (1, "accepted".into(), Some(1)),
            (2, "unauthorized".into(), None),
            (3, "accepted".into(), Some(2)),
        ]
    );
    assert_eq!(
        numbers(&store, "old", 1, 1).await,
        [(2, "unauthorized".into(), None)]
    );
    assert_eq!(
        numbers(&store, "old", 2, 10).await,
        [(3, "accepted".into(), Some(2))]
    );
}

fn bound(id: &str, task_id: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        task_id: Some(task_id.to_string()),
        ..subscription(id)
    }
}

async fn ids_of_task<B: Backend>(store: &TableStore<B>, task_id: &str) -> Vec<String> {
    store
        .subscriptions_of_task(task_id.into())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

async fn a_tasks_subscriptions_are_found_through_an_index_kept_by_every_change<B: Backend>(
    store: TableStore<B>,
) {
    // Stored as a store from before the index would have them: no index entries at all.
    write_directly(&store, |tables| {
        for record in [
            bound("old-b", "t1"),
            bound("old-a", "t1"),
            bound("old-c", "t2"),
        ] {
            tables.insert(
                Table::Subscriptions,
                record.id.as_bytes(),
                &serde_json::to_vec(&record).unwrap(),
            )?;
        }
        Ok(())
    })
    .await;
    assert_eq!(
        ids_of_task(&store, "t1").await,
        ["old-a", "old-b"],
        "before the index is complete, every subscription is read"
    );
    let mut from = Some(Vec::new());
    let mut steps = 0;
    while let Some(start) = from {
        from = store.index_subscriptions(start).await.unwrap();
        steps += 1;
    }
    assert_eq!(steps, 1);
    store.put_subscription(bound("new", "t1")).await.unwrap();
    store
        .put_subscription(subscription("any-task"))
        .await
        .unwrap();
    store.put_subscription(bound("t", "t")).await.unwrap();
    assert_eq!(ids_of_task(&store, "t1").await, ["new", "old-a", "old-b"]);
    assert_eq!(
        ids_of_task(&store, "t").await,
        ["t"],
        "a task whose id is the start of another's has only its own"
    );
    // Bound to another task, then deleted: the index follows.
    store.put_subscription(bound("old-a", "t2")).await.unwrap();
    assert!(store.delete_subscription("old-b".into()).await.unwrap());
    assert_eq!(ids_of_task(&store, "t1").await, ["new"]);
    assert_eq!(ids_of_task(&store, "t2").await, ["old-a", "old-c"]);
    assert!(ids_of_task(&store, "nobody's").await.is_empty());
    assert_eq!(
        store.index_subscriptions(Vec::new()).await.unwrap(),
        None,
        "a complete index is not built again"
    );
}

async fn signing_keys_are_replaced_and_retired_together<B: Backend>(store: TableStore<B>) {
    let key = |kid: &str| KeyRecord {
        kid: kid.to_string(),
        alg: "EdDSA".into(),
        private_pkcs8: Secret::new(format!("private-{kid}")),
        public_key: format!("public-{kid}"),
        created_at_ms: 1,
        retire_at_ms: None,
    };
    store
        .put_signing_keys(vec![key("k1")], Vec::new())
        .await
        .unwrap();
    store
        .put_signing_keys(vec![key("k2")], vec!["k1".into()])
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].kid.as_str(), keys[0].private_pkcs8.expose()),
        ("k2", "private-k2")
    );
}

async fn a_follow_is_held_by_one_node_until_its_lease_ends<B: Backend>(store: TableStore<B>) {
    let follow = |node: &str, lease_until_ms| FollowRecord {
        tenant: String::new(),
        task_id: "t".into(),
        headers: vec![("authorization".into(), Secret::new("Bearer x".to_string()))],
        node: node.to_string(),
        lease_until_ms,
    };
    let far = now_ms() + 60_000;
    assert!(store.start_follow(follow("a", far)).await.unwrap());
    assert!(
        !store.start_follow(follow("b", far)).await.unwrap(),
        "a holds it"
    );
    let held = store
        .hold_follows("b".into(), far, false, 10)
        .await
        .unwrap();
    assert!(held.is_empty());
    // a gives its follows up (a lease in the past): b takes the task at its next round.
    store.hold_follows("a".into(), 0, false, 0).await.unwrap();
    let held = store
        .hold_follows("b".into(), far, false, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].headers[0].1.expose(), "Bearer x");
    store
        .end_follow(String::new(), "t".into(), "b".into())
        .await
        .unwrap();
    assert!(
        store
            .hold_follows("b".into(), far, true, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_node_takes_no_more_free_follows_than_it_can_run<B: Backend>(store: TableStore<B>) {
    let follow = |task: &str, node: &str, lease_until_ms| FollowRecord {
        tenant: String::new(),
        task_id: task.into(),
        headers: Vec::new(),
        node: node.to_string(),
        lease_until_ms,
    };
    let far = now_ms() + 60_000;
    for task in ["t1", "t2", "t3"] {
        assert!(store.start_follow(follow(task, "gone", 1)).await.unwrap());
    }
    assert!(store.start_follow(follow("mine", "b", far)).await.unwrap());
    let held = store.hold_follows("b".into(), far, false, 1).await.unwrap();
    let mut tasks: Vec<&str> = held.iter().map(|f| f.task_id.as_str()).collect();
    tasks.sort_unstable();
    assert_eq!(tasks.len(), 2, "its own and one free one: {tasks:?}");
    assert!(tasks.contains(&"mine"));
    let held = store
        .hold_follows("c".into(), far, false, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 2, "the two b left are free for c");
    assert!(held.iter().all(|f| f.task_id != "mine"));
}

async fn a_failing_write_leaves_nothing_behind<B: Backend>(store: TableStore<B>) {
    let failed: Result<(), StoreError> = store
        .backend
        .write(
            Urgency::Now,
            Vec::new(),
            Box::new(|tables| {
                tables.insert(
                    Table::Tasks,
                    &super::keys::text_key(&["", "written-then-failed"]),
                    b"{}",
                )?;
                Err(StoreError::Corrupt("a record does not decode".into()))
            }),
            None,
        )
        .await;
    assert!(matches!(failed, Err(StoreError::Corrupt(_))), "{failed:?}");
    let left = store
        .backend
        .read(Box::new(|tables| {
            tables.get(
                Table::Tasks,
                &super::keys::text_key(&["", "written-then-failed"]),
            )
        }))
        .await
        .unwrap();
    assert_eq!(left, None);
    store.ping().await.unwrap();
}

/// `event` with idempotency key `key` saying `fingerprint`, live for keys recorded from
/// `recorded_after_ms` on.
fn keyed(event: NewEvent, key: &str, fingerprint: &str, recorded_after_ms: u64) -> NewEvent {
    NewEvent {
        idempotency: Some(IdempotencyClaim {
            key: key.to_string(),
            fingerprint: fingerprint.to_string(),
            recorded_after_ms,
        }),
        ..event
    }
}

async fn an_idempotency_key_answers_its_first_event_and_refuses_another<B: Backend>(
    store: TableStore<B>,
) {
    store
        .put_config(config("t", "a"), anyone(10))
        .await
        .unwrap();
    let announced = announced(&store);
    let working = || status_event("t", "TASK_STATE_WORKING");
    let first = store
        .publish(vec![keyed(working(), "k1", "f1", 0)])
        .await
        .unwrap()
        .stored();
    assert!(!first[0].replayed);
    assert_eq!(announced.lock().unwrap().len(), 1);

    let again = store
        .publish(vec![keyed(working(), "k1", "f1", 0)])
        .await
        .unwrap()
        .stored();
    assert!(again[0].replayed);
    assert_eq!(
        (
            &again[0].event_id,
            again[0].sequence,
            &again[0].deliveries[0].delivery_id
        ),
        (&first[0].event_id, 1, &first[0].deliveries[0].delivery_id),
        "the first answer, again"
    );
    assert_eq!(announced.lock().unwrap().len(), 1, "nothing new to deliver");

    let other = store
        .publish(vec![keyed(working(), "k1", "f2", 0)])
        .await
        .unwrap();
    assert_eq!(
        other,
        Published::KeyConflict(KeyConflict {
            index: 0,
            key: "k1".to_string(),
            with: ConflictWith::Stored {
                event_id: first[0].event_id.clone(),
                task_id: "t".to_string(),
                sequence: 1,
            },
        })
    );
    // A batch: a new event, then a key taken by another event of the batch — nothing stored.
    let batch = store
        .publish(vec![
            keyed(working(), "k2", "f2", 0),
            keyed(working(), "k2", "f3", 0),
        ])
        .await
        .unwrap();
    assert!(matches!(
        batch,
        Published::KeyConflict(KeyConflict {
            index: 1,
            with: ConflictWith::Batch(0),
            ..
        })
    ));
    let task = store
        .get_task(String::new(), "t".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.last_sequence, 1, "a conflict stores nothing");

    // The same event twice in one batch is one event; another tenant's key is its own; an
    // expired key is free again.
    let mixed = store
        .publish(vec![
            keyed(working(), "k3", "f3", 0),
            keyed(working(), "k3", "f3", 0),
            NewEvent {
                tenant: "other".to_string(),
                ..keyed(working(), "k1", "f9", 0)
            },
            keyed(working(), "k1", "f4", u64::MAX),
        ])
        .await
        .unwrap()
        .stored();
    let sequences: Vec<(u64, bool)> = mixed.iter().map(|e| (e.sequence, e.replayed)).collect();
    assert_eq!(sequences, [(2, false), (2, true), (1, false), (3, false)]);
}

async fn retention_removes_expired_idempotency_keys_and_keeps_newer_ones<B: Backend>(
    store: TableStore<B>,
) {
    let working = || status_event("t", "TASK_STATE_WORKING");
    store
        .publish(vec![keyed(working(), "old", "f", 0)])
        .await
        .unwrap()
        .stored();
    let cut = now_ms() + 1;
    while now_ms() <= cut {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    store
        .publish(vec![keyed(working(), "new", "f", 0)])
        .await
        .unwrap()
        .stored();
    let mut purged = 0;
    let mut from = Some(Vec::new());
    while let Some(start) = from {
        let step = store.purge_idempotency_keys(cut, start).await.unwrap();
        purged += step.purged;
        from = step.next;
    }
    assert_eq!(purged, 1);
    let again = store
        .publish(vec![
            keyed(working(), "old", "f", 0),
            keyed(working(), "new", "f", 0),
        ])
        .await
        .unwrap()
        .stored();
    assert_eq!(
        again
            .iter()
            .map(|e| (e.sequence, e.replayed))
            .collect::<Vec<_>>(),
        [(3, false), (2, true)],
        "the purged key is free, the newer one still answers"
    );
}

async fn a_config_failing_for_its_limit_is_suspended_holds_new_events_and_resumes_in_order<
    B: Backend,
>(
    store: TableStore<B>,
) {
    store
        .put_config(config("t", "a"), anyone(10))
        .await
        .unwrap();
    let published = store
        .publish(vec![status_event("t", "TASK_STATE_WORKING")])
        .await
        .unwrap()
        .stored();
    let first = published[0].deliveries[0].delivery_id.clone();
    let failed_at = |number, started_at_ms| answered(number, started_at_ms, 503);
    let retry = || DeliveryUpdate::Retry {
        next_attempt_at_ms: 1_000_000,
        error: "HTTP 503".into(),
    };
    let record =
        |number, at| store.record_attempt(first.clone(), failed_at(number, at), retry(), 1_000);
    assert!(!record(1, 10_000).await.unwrap().suspended);
    assert!(
        !record(2, 10_999).await.unwrap().suspended,
        "999 ms of failing"
    );
    assert!(
        record(3, 11_000).await.unwrap().suspended,
        "1,000 ms of failing"
    );
    let health = store
        .config_health(String::new(), "t".into(), "a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(health.config.state, ConfigState::Suspended);
    let streak = health.streak.unwrap();
    assert_eq!(
        (streak.since_ms, streak.failures, streak.last_status),
        (10_000, 3, Some(503))
    );
    assert_eq!(health.recent.len(), 1);
    assert_eq!(health.recent[0].1.len(), 3, "the delivery's attempts");

    // A suspended config still gets its events, held; replay waits for enabling.
    let held = store
        .publish(vec![status_event("t", "TASK_STATE_COMPLETED")])
        .await
        .unwrap()
        .stored();
    let second = held[0].deliveries[0].delivery_id.clone();
    assert_eq!(
        store.replay(vec![second.clone()]).await.unwrap()[0],
        Err(ReplayRefusal::AlreadyPending(second.clone()))
    );
    let health = store
        .config_health(String::new(), "t".into(), "a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(health.pending, 2);
    assert_eq!(health.oldest_pending.unwrap().id, first);

    let announced = announced(&store);
    let enabled = store
        .enable_config(String::new(), "t".into(), "a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(enabled.was, ConfigState::Suspended);
    let resumed: Vec<String> = enabled
        .resumed
        .iter()
        .map(|p| p.delivery_id.clone())
        .collect();
    assert_eq!(resumed, [first.clone(), second.clone()], "in lane order");
    assert!(
        enabled
            .resumed
            .iter()
            .all(|p| p.next_attempt_at_ms > 1_000_000),
        "due now"
    );
    assert_eq!(
        announced.lock().unwrap().len(),
        2,
        "handed to the scheduler"
    );
    let health = store
        .config_health(String::new(), "t".into(), "a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(health.config.state, ConfigState::Active);
    assert!(health.streak.is_none(), "enabling forgets the streak");

    // A success ends a streak; enabling an active config changes nothing.
    record(4, 20_000).await.unwrap();
    let mut ok = failed_at(5, 20_100);
    ok.status = Some(200);
    ok.error_class = "success".into();
    store
        .record_attempt(first.clone(), ok, DeliveryUpdate::Delivered, 1_000)
        .await
        .unwrap();
    let health = store
        .config_health(String::new(), "t".into(), "a".into())
        .await
        .unwrap()
        .unwrap();
    assert!(health.streak.is_none());
    let again = store
        .enable_config(String::new(), "t".into(), "a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.was, again.resumed.len()), (ConfigState::Active, 0));
    assert!(
        store
            .enable_config(String::new(), "t".into(), "nope".into())
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_failing_streak_outlives_a_dead_delivery_and_is_never_extended_past_an_unseen_success<
    B: Backend,
>(
    store: TableStore<B>,
) {
    for id in ["a", "b"] {
        store.put_config(config("t", id), anyone(10)).await.unwrap();
    }
    let failure = |number, started_at_ms| answered(number, started_at_ms, 500);
    let retry = || DeliveryUpdate::Retry {
        next_attempt_at_ms: 0,
        error: "HTTP 500".into(),
    };
    let dead = || DeliveryUpdate::Dead {
        error: "HTTP 500".into(),
    };
    let delivery_of = |published: Vec<PublishedEvent>, config: &str| {
        published[0]
            .deliveries
            .iter()
            .find(|d| d.config_id == config)
            .unwrap()
            .delivery_id
            .clone()
    };
    let publish = || async {
        store
            .publish(vec![status_event("t", "TASK_STATE_WORKING")])
            .await
            .unwrap()
            .stored()
    };
    let (first, second) = (publish().await, publish().await);
    let (a1, a2) = (
        delivery_of(first.clone(), "a"),
        delivery_of(second.clone(), "a"),
    );
    store
        .record_attempt(a1.clone(), failure(1, 1_000), retry(), 1_000)
        .await
        .unwrap();
    store
        .record_attempt(a1, failure(2, 1_500), dead(), 1_000)
        .await
        .unwrap();
    let recorded = store
        .record_attempt(a2, failure(1, 2_000), retry(), 1_000)
        .await
        .unwrap();
    assert!(
        recorded.suspended,
        "the streak went on from the dead delivery to the next"
    );

    // Config b: its first delivery dies with nothing behind it; the next one, published
    // later, succeeds unseen; a failure after that starts a new streak.
    let b1 = delivery_of(first, "b");
    store
        .record_attempt(b1.clone(), failure(1, 1_000), retry(), 10_000)
        .await
        .unwrap();
    store
        .record_attempt(b1, failure(2, 1_500), dead(), 10_000)
        .await
        .unwrap();
    let b2 = delivery_of(second, "b");
    store
        .record_attempt(b2, failure(1, 2_000), dead(), 10_000)
        .await
        .unwrap();
    let b3 = delivery_of(publish().await, "b");
    let mut ok = failure(1, 5_000);
    ok.error_class = "success".into();
    store
        .record_attempt(b3, ok, DeliveryUpdate::Delivered, 10_000)
        .await
        .unwrap();
    let b4 = delivery_of(publish().await, "b");
    let recorded = store
        .record_attempt(b4, failure(1, 20_000), retry(), 10_000)
        .await
        .unwrap();
    assert!(
        !recorded.suspended,
        "not suspended on a streak a success ended"
    );
    let streak = store
        .config_health(String::new(), "t".into(), "b".into())
        .await
        .unwrap()
        .unwrap()
        .streak
        .unwrap();
    assert_eq!((streak.since_ms, streak.failures), (20_000, 1));
}

/// Declares each contract test once per backend.
async fn a_filtered_config_gets_skipped_deliveries_and_a_new_config_its_tenants_default<
    B: Backend,
>(
    store: TableStore<B>,
) {
    use crate::a2a::filter::EventFilter;
    let announced = announced(&store);
    store
        .put_config(config("t", "all"), anyone(10))
        .await
        .unwrap();
    store
        .set_tenant_defaults(
            String::new(),
            TenantDefaults {
                filter: EventFilter::StateChanges,
            },
        )
        .await
        .unwrap();
    store
        .put_config(config("t", "changes"), anyone(10))
        .await
        .unwrap();
    let stored = store
        .get_config(String::new(), "t".into(), "changes".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.filter,
        EventFilter::StateChanges,
        "the tenant's default"
    );
    // Registered again (as A2A clients do), the config keeps its filter.
    store
        .put_config(config("t", "changes"), anyone(10))
        .await
        .unwrap();
    let published = store
        .publish(vec![
            status_event("t", "TASK_STATE_WORKING"),
            status_event("t", "TASK_STATE_WORKING"),
            status_event("t", "TASK_STATE_COMPLETED"),
        ])
        .await
        .unwrap()
        .stored();
    let made: Vec<usize> = published.iter().map(|p| p.deliveries.len()).collect();
    assert_eq!(made, [2, 1, 2], "the skipped one is not a delivery to make");
    let pending: Vec<(String, u64)> = store
        .pending_deliveries()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.config_id, p.sequence))
        .collect();
    assert_eq!(
        pending,
        [
            ("all".into(), 1),
            ("all".into(), 2),
            ("all".into(), 3),
            ("changes".into(), 1),
            ("changes".into(), 3)
        ]
    );
    assert_eq!(
        announced.lock().unwrap().len(),
        5,
        "nothing skipped is announced"
    );
    let overview = store
        .task_overview(String::new(), "t".into(), 1)
        .await
        .unwrap();
    assert_eq!(
        (overview.deliveries.pending, overview.deliveries.skipped),
        (5, 1)
    );
    assert_eq!(overview.task.map(|t| t.last_sequence), Some(3));
    let configs: Vec<&str> = overview.configs.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(configs, ["all"], "the first config only, in id order");
    let skipped = store
        .list_deliveries(
            DeliveryFilter {
                tenant: String::new(),
                task_id: Some("t".into()),
                config_id: Some("changes".into()),
                state: Some(DeliveryState::Skipped),
                created_after_ms: None,
                created_before_ms: None,
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].sequence, 2);
    assert_eq!(skipped[0].skipped_by.as_deref(), Some("state_changes"));
    assert_eq!(
        store.tenant_defaults("other".into()).await.unwrap(),
        TenantDefaults::default()
    );
}

async fn a_tasks_deliveries_are_listed_a_page_at_a_time_past_those_the_filter_leaves_out<
    B: Backend,
>(
    store: TableStore<B>,
) {
    for id in ["c1", "c2"] {
        store.put_config(config("t", id), anyone(10)).await.unwrap();
    }
    let earlier: Vec<NewEvent> = (0..3)
        .map(|_| status_event("t", "TASK_STATE_WORKING"))
        .collect();
    store.publish(earlier).await.unwrap();
    let between = now_ms();
    while now_ms() == between {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    store
        .publish(vec![status_event("t", "TASK_STATE_COMPLETED")])
        .await
        .unwrap();
    let filter = |created_after_ms| DeliveryFilter {
        tenant: String::new(),
        task_id: Some("t".into()),
        config_id: None,
        state: None,
        created_after_ms,
        created_before_ms: None,
    };
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_deliveries(filter(None), after, 3).await.unwrap();
        after = page.last().map(|d| d.id.clone());
        pages.push(page.iter().map(|d| d.id.clone()).collect::<Vec<_>>());
        if page.len() < 3 {
            break;
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 2],
        "8 deliveries"
    );
    let listed: Vec<String> = pages.concat();
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(listed, sorted, "in id order, each once");
    // One a page, and the first six leave the filter out: the page reads on past them.
    let mut newer = Vec::new();
    let mut after = None;
    while let Some(delivery) = store
        .list_deliveries(filter(Some(between + 1)), after.clone(), 1)
        .await
        .unwrap()
        .pop()
    {
        after = Some(delivery.id.clone());
        newer.push(delivery.sequence);
    }
    assert_eq!(newer, [4, 4], "the last event's delivery to each config");
}

async fn tasks_configs_and_events_are_browsed_in_key_order_within_a_scan_budget<B: Backend>(
    store: TableStore<B>,
) {
    // Tasks t0..t4 in the default tenant, t5 in tenant "acme"; t1 and t3 completed.
    for n in 0..6 {
        let task_id = format!("t{n}");
        let mut event = status_event(&task_id, "TASK_STATE_WORKING");
        if n == 5 {
            event.tenant = "acme".to_string();
        }
        let mut events = vec![event];
        if n % 2 == 1 && n != 5 {
            events.push(status_event(&task_id, "TASK_STATE_COMPLETED"));
        }
        store.publish(events).await.unwrap().stored();
        let mut config = config(&task_id, "cfg");
        config.tenant = if n == 5 {
            "acme".to_string()
        } else {
            String::new()
        };
        if n == 2 {
            config.state = ConfigState::Suspended;
        }
        store.put_config(config, anyone(10)).await.unwrap();
    }
    let everything = |tenant: Option<&str>, after: Option<Vec<u8>>, limit, budget| Browse {
        tenant: tenant.map(str::to_string),
        after,
        limit,
        budget,
        keep: Box::new(|_: &TaskRecord| true),
    };
    let ids = |tasks: &[TaskRecord]| -> Vec<String> {
        tasks
            .iter()
            .map(|t| format!("{}/{}", t.tenant, t.task_id))
            .collect()
    };

    let all = store
        .browse_tasks(everything(None, None, 100, 100))
        .await
        .unwrap();
    assert_eq!(
        ids(&all.found),
        ["/t0", "/t1", "/t2", "/t3", "/t4", "acme/t5"]
    );
    assert!(all.resume_after.is_none(), "the whole listing in one page");
    let acme = store
        .browse_tasks(everything(Some("acme"), None, 100, 100))
        .await
        .unwrap();
    assert_eq!(ids(&acme.found), ["acme/t5"]);

    // Pages of two, continued from the key handed back, see every task once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .browse_tasks(everything(None, after, 2, 100))
            .await
            .unwrap();
        seen.extend(ids(&page.found));
        match page.resume_after {
            Some(key) => after = Some(key),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all.found));

    // A filter that matches little stops at the budget and says where to go on.
    let completed = |after, budget| Browse {
        tenant: None,
        after,
        limit: 100,
        budget,
        keep: Box::new(|t: &TaskRecord| t.task.status.state == a2a::TaskState::Completed),
    };
    let first = store.browse_tasks(completed(None, 3)).await.unwrap();
    assert_eq!(ids(&first.found), ["/t1"]);
    let rest = store
        .browse_tasks(completed(first.resume_after.clone(), 100))
        .await
        .unwrap();
    assert_eq!(ids(&rest.found), ["/t3"]);
    assert!(rest.resume_after.is_none());

    let suspended = store
        .browse_configs(Browse {
            tenant: None,
            after: None,
            limit: 100,
            budget: 100,
            keep: Box::new(|c: &ConfigRecord| c.state == ConfigState::Suspended),
        })
        .await
        .unwrap();
    assert_eq!(suspended.found.len(), 1);
    assert_eq!(suspended.found[0].task_id, "t2");
    assert_eq!(suspended.found[0].token.as_ref().unwrap().expose(), "tok");

    let events = store
        .task_events(String::new(), "t1".to_string(), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    let after_first = store
        .task_events(String::new(), "t1".to_string(), 1, 10)
        .await
        .unwrap();
    assert_eq!(after_first.len(), 1);
    assert!(after_first[0].body.get().contains("TASK_STATE_COMPLETED"));
    assert!(
        store
            .task_events(String::new(), "t9".to_string(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::MemoryStore::new(super::Sealing::none())).await;
                }
            )*
        }

        mod redb {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::RedbStore::open_sealed(dir.path(), super::Sealing::none(), 1 << 20, Some(super::journal::DEFAULT_CHECKPOINT_BYTES)).unwrap();
                    super::$test(store).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
                async fn $test() {
                    let (store, schema) = super::postgres_store().await;
                    super::$test(store).await;
                    schema.drop();
                }
            )*
        }
    };
}

contract!(
    configs_are_kept_in_order_paged_and_removed,
    a_task_belongs_to_its_first_principal_and_holds_a_bounded_number_of_configs,
    publishing_numbers_events_per_task_and_announces_one_delivery_per_active_config,
    an_attempt_is_logged_and_its_outcome_applied_together,
    attempt_contexts_read_at_once_are_each_their_own_deliverys,
    a_first_attempt_sees_what_a_read_would_whatever_changed_since_the_publish,
    replay_makes_a_finished_delivery_pending_again_and_refuses_a_pending_one,
    deleting_a_config_cancels_its_pending_deliveries,
    an_inbound_push_is_accepted_once_and_a_forwarded_one_is_announced,
    a_tasks_subscriptions_are_found_through_an_index_kept_by_every_change,
    receipts_are_numbered_across_requests_and_an_accepted_ones_is_kept_with_its_event,
    signing_keys_are_replaced_and_retired_together,
    a_follow_is_held_by_one_node_until_its_lease_ends,
    a_node_takes_no_more_free_follows_than_it_can_run,
    a_failing_write_leaves_nothing_behind,
    an_idempotency_key_answers_its_first_event_and_refuses_another,
    retention_removes_expired_idempotency_keys_and_keeps_newer_ones,
    a_config_failing_for_its_limit_is_suspended_holds_new_events_and_resumes_in_order,
    a_failing_streak_outlives_a_dead_delivery_and_is_never_extended_past_an_unseen_success,
    a_filtered_config_gets_skipped_deliveries_and_a_new_config_its_tenants_default,
    tasks_configs_and_events_are_browsed_in_key_order_within_a_scan_budget,
    a_tasks_deliveries_are_listed_a_page_at_a_time_past_those_the_filter_leaves_out,
);

/// On PostgreSQL a batch's writes and its `COMMIT` are sent together (`postgres/sql.rs`): a
/// batch whose writes the database refuses must leave nothing behind all the same, whether its
/// writes were one statement of one table or of several, and the next batch must go through on
/// the same connection.
#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn postgres_a_batch_whose_writes_the_database_refuses_commits_nothing() {
    let (store, schema) = postgres_store().await;
    let refused = super::keys::text_key(&["", "refused"]);
    let hex: String = refused.iter().map(|b| format!("{b:02x}")).collect();
    let url = postgres_schema::in_schema(&schema.url, &schema.name);
    tokio::task::spawn_blocking(move || {
        let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        client
            .batch_execute(&format!(
                "CREATE FUNCTION refuse_a_task() RETURNS trigger AS $$ BEGIN
                   IF NEW.k = '\\x{hex}'::bytea THEN RAISE EXCEPTION 'refused by the test'; END IF;
                   RETURN NEW;
                 END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER refuse_a_task BEFORE INSERT ON hub_tasks
                   FOR EACH ROW EXECUTE FUNCTION refuse_a_task();"
            ))
            .unwrap();
    })
    .await
    .unwrap();
    let write = |records: Vec<(Table, Vec<u8>)>| {
        store.backend.write(
            Urgency::Now,
            Vec::new(),
            Box::new(move |tables: &dyn TablesMut| {
                for (table, key) in &records {
                    tables.insert(*table, key, b"{}")?;
                }
                Ok(())
            }),
            None,
        )
    };
    let beside = super::keys::text_key(&["", "beside-the-refused"]);
    let event = super::keys::text_key(&["", "with-the-refused"]);
    // Puts to one table (a prepared statement), then to two (one statement of two parts).
    for records in [
        [
            (Table::Tasks, beside.clone()),
            (Table::Tasks, refused.clone()),
        ],
        [
            (Table::Events, event.clone()),
            (Table::Tasks, refused.clone()),
        ],
    ] {
        let outcome = write(records.to_vec()).await;
        assert!(
            matches!(outcome, Err(StoreError::Storage(_))),
            "{outcome:?}"
        );
    }
    let after = super::keys::text_key(&["", "after"]);
    write(vec![(Table::Tasks, after.clone())]).await.unwrap();
    let found = store
        .backend
        .read(Box::new(move |tables| {
            Ok([
                tables.get(Table::Tasks, &beside)?,
                tables.get(Table::Tasks, &refused)?,
                tables.get(Table::Events, &event)?,
                tables.get(Table::Tasks, &after)?,
            ])
        }))
        .await
        .unwrap();
    assert_eq!(found, [None, None, None, Some(b"{}".to_vec())]);
    schema.drop();
}

/// A schema of the test database made for one test, dropped by `drop`.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn drop(self) {
        let _ =
            std::thread::spawn(move || postgres_schema::drop_schema(&self.url, &self.name)).join();
    }
}

/// A PostgreSQL store in a fresh schema of the database `A2A_PUSH_HUB_TEST_POSTGRES_URL` names.
async fn postgres_store() -> (PostgresStore, Schema) {
    let url = std::env::var("A2A_PUSH_HUB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("the PostgreSQL contract tests need A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh starts a database)");
    let name = format!("contract_{}", uuid::Uuid::new_v4().simple());
    let (create_url, create_name) = (url.clone(), name.clone());
    // The synchronous client runs its own runtime: on a thread of its own.
    tokio::task::spawn_blocking(move || {
        postgres_schema::create_schema(&create_url, &create_name)?;
        PostgresStore::open(
            &PostgresSettings {
                target: postgres_schema::parse_url(&postgres_schema::in_schema(
                    &create_url,
                    &create_name,
                ))
                .map_err(StoreError::Storage)?,
                pool_size: 2,
                connect_timeout: std::time::Duration::from_secs(10),
                leases: LeaseSettings {
                    node: "contract".into(),
                    lease: std::time::Duration::from_secs(30),
                },
            },
            Sealing::none(),
        )
    })
    .await
    .unwrap()
    .map(|store| (store, Schema { url, name }))
    .unwrap()
}
