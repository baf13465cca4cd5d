//! What the first attempt of a just-published delivery needs (the delivery, its config, its
//! event), kept from the publish that made it, so that the attempt does not read back what
//! the publish had in hand: a read transaction on the embedded store, a round trip and three
//! lookups on PostgreSQL (docs/PERFORMANCE.md, "The first attempt reads nothing").
//!
//! A kept context must be what a read would return. Events never change; a delivery and its
//! config change only through a write, so every write other than a publish (or an attempt
//! recorded as delivered, which changes nothing another attempt reads) drops them all as it runs
//! (`TableStore::write*`), and so does a publish that changed what existed before it (its
//! `Handover` says so). A publish records the generation it ran at, and its contexts are kept
//! after its commit only if no such write ran since. Another node's writes (PostgreSQL) are
//! not seen here: a context is used for `FRESH_FOR_MS` at most, less than an attempt already
//! in flight goes on after its config changes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::AttemptContext;

/// How long after its commit a kept context may stand in for a read.
pub const FRESH_FOR_MS: u64 = 1_000;

/// The most contexts kept; the oldest go first.
pub const MAX_KEPT: usize = 4_096;

/// What a publishing write hands over as it runs: the context of each delivery it makes, or
/// word that it also changed a delivery or a config that existed before it (a publisher
/// declaring another owner removes the configs of the one before), after which no context
/// kept is fresh.
#[derive(Default)]
pub struct Handover {
    pub(super) contexts: Vec<AttemptContext>,
    pub(super) changed_existing: bool,
}

impl Handover {
    pub fn made(&mut self, context: AttemptContext) {
        self.contexts.push(context);
    }

    pub fn changed_existing(&mut self) {
        self.changed_existing = true;
    }
}

#[derive(Default)]
pub struct FreshContexts {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    generation: u64,
    /// By delivery id, with when it was kept.
    kept: HashMap<String, (u64, AttemptContext)>,
    /// Delivery ids in the order they were kept, with when; some already taken.
    order: VecDeque<(String, u64)>,
}

impl FreshContexts {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing here is left half-done by a panic: a poisoned lock still holds a usable map.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The generation a publish runs at, for `keep`.
    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Called as a write that may change a delivery or a config runs: every context kept, and
    /// every one a publish before it would keep, is stale.
    pub fn drop_all(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.kept.clear();
        state.order.clear();
    }

    /// Keeps the contexts of a publish that ran at `generation`, once its commit is durable.
    pub fn keep(&self, generation: u64, contexts: Vec<AttemptContext>, now_ms: u64) {
        let mut state = self.state();
        if generation != state.generation || contexts.is_empty() {
            return;
        }
        for context in contexts {
            let id = context.delivery.id.clone();
            state.order.push_back((id.clone(), now_ms));
            state.kept.insert(id, (now_ms, context));
        }
        while let Some((id, kept_at)) = state.order.front() {
            if state.order.len() <= MAX_KEPT && kept_at + FRESH_FOR_MS >= now_ms {
                break;
            }
            let id = id.clone();
            state.order.pop_front();
            state.kept.remove(&id);
        }
    }

    /// The kept context of `delivery_id`, once, if it is still fresh.
    pub fn take(&self, delivery_id: &str, now_ms: u64) -> Option<AttemptContext> {
        let (kept_at, context) = self.state().kept.remove(delivery_id)?;
        (kept_at + FRESH_FOR_MS >= now_ms).then_some(context)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LaneId, new_delivery};
    use super::*;
    use crate::store::EventRecord;

    fn context(n: usize) -> AttemptContext {
        let lane = LaneId {
            tenant: String::new(),
            task_id: format!("t{n}"),
            config_id: "c".into(),
        };
        AttemptContext {
            delivery: new_delivery(&lane, 1, format!("e{n}"), 0),
            config: None,
            event: EventRecord {
                event_id: format!("e{n}"),
                sequence: 1,
                received_at_ms: 0,
                body: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
                trace: None,
                origin_span: None,
            },
        }
    }

    #[test]
    fn a_context_is_handed_once_while_fresh() {
        let fresh = FreshContexts::default();
        let (a, b) = (context(1), context(2));
        let (a_id, b_id) = (a.delivery.id.clone(), b.delivery.id.clone());
        fresh.keep(fresh.generation(), vec![a, b], 1_000);
        assert_eq!(fresh.take(&a_id, 1_500).unwrap().delivery.id, a_id);
        assert!(fresh.take(&a_id, 1_500).is_none(), "handed once");
        assert!(
            fresh.take(&b_id, 1_000 + FRESH_FOR_MS + 1).is_none(),
            "too old to stand in for a read"
        );
    }

    #[test]
    fn a_write_that_ran_after_the_publish_keeps_its_contexts_out() {
        let fresh = FreshContexts::default();
        let kept = context(1);
        let kept_id = kept.delivery.id.clone();
        fresh.keep(fresh.generation(), vec![kept], 0);
        // A publish runs, then a write that may change a config, then the publish commits.
        let generation = fresh.generation();
        fresh.drop_all();
        let late = context(2);
        let late_id = late.delivery.id.clone();
        fresh.keep(generation, vec![late], 0);
        assert!(fresh.take(&kept_id, 0).is_none(), "dropped by the write");
        assert!(
            fresh.take(&late_id, 0).is_none(),
            "published before the write"
        );
        // A publish after the write keeps its own.
        let after = context(3);
        let after_id = after.delivery.id.clone();
        fresh.keep(fresh.generation(), vec![after], 0);
        assert!(fresh.take(&after_id, 0).is_some());
    }

    #[test]
    fn at_most_max_kept_are_kept_the_oldest_going_first() {
        let fresh = FreshContexts::default();
        let contexts: Vec<_> = (0..MAX_KEPT + 10).map(context).collect();
        let ids: Vec<_> = contexts.iter().map(|c| c.delivery.id.clone()).collect();
        for context in contexts {
            fresh.keep(fresh.generation(), vec![context], 0);
        }
        let state = fresh.state();
        assert_eq!((state.kept.len(), state.order.len()), (MAX_KEPT, MAX_KEPT));
        assert!(!state.kept.contains_key(&ids[9]) && state.kept.contains_key(&ids[10]));
        drop(state);
        // Taken ones leave no trace in the map, and the order is trimmed as new ones come.
        for id in &ids[10..] {
            assert!(fresh.take(id, 0).is_some());
        }
        fresh.keep(fresh.generation(), vec![context(0)], FRESH_FOR_MS + 1);
        let state = fresh.state();
        assert_eq!((state.kept.len(), state.order.len()), (1, 1));
    }
}
