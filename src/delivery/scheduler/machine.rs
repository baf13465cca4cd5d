//! The scheduler's decisions (docs/ARCHITECTURE.md, "Lane order"), as a state machine with no
//! I/O and no clock of its own: the actor (`mod.rs`) feeds it what happened (`on_enqueue`,
//! `on_answered`, `on_finished`, …) with the time it happened, and asks it what to start now
//! (`tick`) and when to ask again (`next_wake`). Its invariants are unit-tested in simulated time (`machine_tests.rs`):
//!
//! - a lane (tenant, task, config) has at most one attempt in flight, always of its head (the
//!   lowest pending sequence number), so event n+1 is never attempted before event n is over;
//! - at most `max_in_flight` attempts run, and at most `max_in_flight_per_origin` requests
//!   are open at one origin (from the request until the receiver's answer is read); as many
//!   more of its attempts may be reading their delivery meanwhile, then wait their turn
//!   (`on_ready`), so that a slot is never held for a store read — but not at an origin that
//!   `stalled` (every slot taken, no answer for `STALL_MS`), so that receivers that hang hold
//!   no more attempts than they have requests open;
//! - an origin whose circuit is open parks its lanes until the cool-down ends, then lets one
//!   probe through;
//! - with `max_rate_per_origin`, an origin starts attempts no faster than its token bucket
//!   (`rate_limit.rs`) allows; lanes wait parked for the next token;
//! - a head to retry waits until its due time; a head the answer finished frees its lane at
//!   once, and is not queued again while its outcome is being recorded;
//! - on a shared store, new deliveries of a lane are queued without reading the lane only when
//!   they go on from the last sequence number the lane was handed, one after the other.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};

use super::super::attempt::{Answered, LaneStep};
use super::super::backpressure::Lag;
use super::super::circuit::{Admission, Circuit, CircuitReport, CircuitSettings};
use super::super::origins::origin_of;
use super::super::rate_limit::TokenBucket;
use crate::metrics::SchedulerStats;
use crate::store::{LaneId, PendingDelivery};

/// How long a lane waits before trying again when this node may not start attempts (its lane
/// leases are not known to be valid long enough).
pub(super) const LEASE_WAIT_MS: u64 = 250;

/// An origin with every request slot taken that has not answered any request for this long
/// reads no delivery ahead: its waiting attempts give their place back and its lanes park
/// until a request ends. A receiver that answers at all answers one of its requests much
/// sooner (at 16 slots and 5 s an answer, one every ~300 ms).
pub const STALL_MS: u64 = 1_000;

/// One attempt the machine started, known by this id until it finishes.
pub type AttemptId = u64;

/// An attempt to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub attempt: AttemptId,
    pub delivery_id: String,
    /// Its lane and sequence number, which name what the attempt reads with the delivery.
    pub lane: LaneId,
    pub sequence: u64,
    /// Its lane's origin, for the origin's statistics.
    pub origin: String,
}

/// A circuit of this node opened (until when) or closed (`None`), for the other nodes.
pub type CircuitChange = (String, Option<u64>);

/// An origin as this node's scheduler has it.
#[derive(Debug, Clone, Default)]
pub struct OriginQueue {
    pub circuit: CircuitReport,
    /// Deliveries waiting in its lanes on this node.
    pub pending: u64,
    /// When the earliest of its lanes' heads was (or is) due.
    pub oldest_due_ms: Option<u64>,
    pub in_flight: usize,
}

/// The limits the machine enforces.
#[derive(Debug, Clone, Copy)]
pub struct MachineLimits {
    pub max_in_flight: usize,
    pub max_in_flight_per_origin: usize,
    /// Attempts an origin may start per second, on all nodes together; 0: no cap.
    pub max_rate_per_origin: f64,
    pub circuit: CircuitSettings,
}

struct Queued {
    delivery_id: String,
    due_ms: u64,
}

struct Lane {
    /// Pending deliveries by sequence number.
    queue: BTreeMap<u64, Queued>,
    /// The sequence number up to which the lane was handed every pending delivery it has in
    /// the store (`None`: not known, as after its queue was closed with deliveries left in the
    /// store). An offer that goes on from it needs no read of the lane (`on_offer`).
    tail: Option<u64>,
    origin: String,
    /// Sequence number of the attempt in flight.
    in_flight: Option<u64>,
    /// Waiting for its origin (limit or open circuit).
    parked: bool,
    /// Token of the lane's current entry in the timer heap; older entries are stale.
    wake: u64,
}

struct Origin {
    /// Requests open at the receiver.
    in_flight: usize,
    /// Attempts started that may not send yet: reading their delivery, or `waiting`.
    preparing: usize,
    /// Attempts ready to send, waiting for a request slot, first come first served.
    waiting: VecDeque<AttemptId>,
    /// When a request last ended (or the origin was first seen): how long it has not answered.
    last_answer_ms: u64,
    /// It has an entry in the machine's `stall_checks` (one at most).
    stall_check_scheduled: bool,
    circuit: Circuit,
    /// The throughput cap, when there is one.
    bucket: Option<TokenBucket>,
    parked: VecDeque<LaneId>,
    wake_scheduled: bool,
}

impl Origin {
    fn new(limits: &MachineLimits, nodes: usize, now: u64) -> Origin {
        Origin {
            in_flight: 0,
            preparing: 0,
            waiting: VecDeque::new(),
            last_answer_ms: now,
            stall_check_scheduled: false,
            circuit: Circuit::new(&limits.circuit),
            bucket: (limits.max_rate_per_origin > 0.0)
                .then(|| TokenBucket::new(limits.max_rate_per_origin / nodes as f64, now)),
            parked: VecDeque::new(),
            wake_scheduled: false,
        }
    }
}

enum Wake {
    Lane(LaneId),
    Origin(String),
}

/// Where a running attempt stands with its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading its delivery; counted in the origin's `preparing`.
    Preparing,
    /// Ready to send, in the origin's `waiting`; still counted in `preparing`.
    Waiting,
    /// Holding a request slot (`in_flight`).
    Sending,
    /// Holds nothing of its origin's any more: answered, or told not to send.
    Done,
}

struct Running {
    lane: LaneId,
    origin: String,
    sequence: u64,
    delivery_id: String,
    phase: Phase,
    /// Admitted as the probe of a half-open circuit: it may send while the circuit is not
    /// closed.
    probe: bool,
    /// The head was finished at the answer and the lane moved on.
    lane_released: bool,
}

/// Whether the origin stopped answering: every request slot taken, none ended for `STALL_MS`.
fn stalled(origin: &Origin, max_per_origin: usize, now: u64) -> bool {
    origin.in_flight >= max_per_origin && now >= origin.last_answer_ms + STALL_MS
}

/// How many of the origin's attempts may be preparing (reading their delivery or waiting for a
/// slot): as many as it has slots, none while it is `stalled`.
fn preparing_limit(origin: &Origin, max_per_origin: usize, now: u64) -> usize {
    if stalled(origin, max_per_origin, now) {
        0
    } else {
        max_per_origin
    }
}

/// Whether an attempt that has read its delivery may send: not while its origin's circuit is
/// open, unless it is the probe.
fn may_send(origin: &Origin, running: &Running) -> bool {
    !origin.circuit.is_open() || running.probe
}

/// The attempt stops preparing: it takes a request slot if it `may_send`, else it is done.
fn leave_preparing(origin: &mut Origin, running: &mut Running, may_send: bool) {
    origin.preparing -= 1;
    if may_send {
        origin.in_flight += 1;
        running.phase = Phase::Sending;
    } else {
        running.phase = Phase::Done;
    }
}

/// Every lane, origin and attempt in flight of one node.
pub struct Machine {
    limits: MachineLimits,
    lanes: HashMap<LaneId, Lane>,
    origins: HashMap<String, Origin>,
    timers: BinaryHeap<Reverse<(u64, u64)>>,
    wakes: HashMap<u64, Wake>,
    next_token: u64,
    pending: u64,
    running: HashMap<AttemptId, Running>,
    next_attempt: AttemptId,
    /// Deliveries whose lane moved on while their outcome is being recorded: still pending in
    /// the store for a moment, not to be queued again.
    recording: HashSet<String>,
    /// Circuit changes not yet taken by the actor.
    circuit_changes: Vec<CircuitChange>,
    /// Waiting attempts told whether to send (`on_ready`), not yet taken by the actor.
    clearances: Vec<(AttemptId, bool)>,
    /// When to look whether an origin with waiting attempts `stalled`; kept apart from the
    /// lanes' timers because it is due even while every attempt slot is taken (hanging
    /// receivers holding them is what it is for).
    stall_checks: BinaryHeap<Reverse<(u64, String)>>,
    /// Nodes sharing the store: each takes this share of `max_rate_per_origin`.
    nodes: usize,
    /// The tails of lanes that emptied (every delivery handed to them done), at most
    /// `MAX_TAILS_KEPT`: an offer that goes on from one is queued without a read. Kept only
    /// on a shared store (`keeping_tails`); alone, nothing is offered.
    tails: Option<HashMap<LaneId, u64>>,
}

/// Emptied lanes whose tail is kept; past it they are all forgotten (each then needs one read
/// at its next offer).
const MAX_TAILS_KEPT: usize = 100_000;

impl Machine {
    pub fn new(limits: MachineLimits) -> Machine {
        Machine {
            limits,
            lanes: HashMap::new(),
            origins: HashMap::new(),
            timers: BinaryHeap::new(),
            wakes: HashMap::new(),
            next_token: 0,
            pending: 0,
            running: HashMap::new(),
            next_attempt: 0,
            recording: HashSet::new(),
            circuit_changes: Vec::new(),
            clearances: Vec::new(),
            stall_checks: BinaryHeap::new(),
            nodes: 1,
            tails: None,
        }
    }

    /// The machine of a node sharing its store, which remembers emptied lanes' tails for
    /// `on_offer`.
    pub fn keeping_tails(mut self) -> Machine {
        self.tails = Some(HashMap::new());
        self
    }

    /// The nodes sharing the store changed: each origin's rate is shared among `nodes`.
    pub fn set_nodes(&mut self, nodes: usize, now: u64) {
        let nodes = nodes.max(1);
        if nodes == self.nodes {
            return;
        }
        self.nodes = nodes;
        let rate = self.limits.max_rate_per_origin / nodes as f64;
        for bucket in self.origins.values_mut().filter_map(|o| o.bucket.as_mut()) {
            bucket.set_rate(rate, now);
        }
    }

    /// The origin's state, made when first needed (its name is copied only then: this runs
    /// for every attempt).
    fn origin_mut(&mut self, origin: &str, now: u64) -> &mut Origin {
        if !self.origins.contains_key(origin) {
            let fresh = Origin::new(&self.limits, self.nodes, now);
            self.origins.insert(origin.to_string(), fresh);
        }
        self.origins.get_mut(origin).expect("inserted above")
    }

    /// When `tick` has something to do next (ms since the epoch): `None` while nothing is
    /// scheduled, or while every slot is taken and no origin is to be looked at (a finished
    /// attempt is the next event then).
    pub fn next_wake(&self) -> Option<u64> {
        let stall_check = self.stall_checks.peek().map(|Reverse((due, _))| *due);
        let timer = (self.running.len() < self.limits.max_in_flight)
            .then(|| self.timers.peek().map(|Reverse((due, _))| *due))
            .flatten();
        stall_check.into_iter().chain(timer).min()
    }

    /// Circuit changes since the last call, for the other nodes.
    pub fn take_circuit_changes(&mut self) -> Vec<CircuitChange> {
        std::mem::take(&mut self.circuit_changes)
    }

    /// The attempts that waited in `on_ready` and now may send (`true`) or must not (`false`).
    pub fn take_clearances(&mut self) -> Vec<(AttemptId, bool)> {
        std::mem::take(&mut self.clearances)
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Deliveries durably pending in the store, new or found again: on a shared store, every
    /// pending delivery of their lanes (a read of the lanes), so each lane's tail moves up to
    /// the last of them.
    pub fn on_enqueue(&mut self, items: Vec<PendingDelivery>) {
        for item in items {
            let PendingDelivery {
                tenant,
                task_id,
                config_id,
                delivery_id,
                sequence,
                next_attempt_at_ms,
                url,
                again: _,
            } = item;
            let key = LaneId {
                tenant,
                task_id,
                config_id,
            };
            if self.recording.contains(&delivery_id) {
                self.extend_tail(&key, sequence);
                continue;
            }
            let queued = Queued {
                delivery_id,
                due_ms: next_attempt_at_ms,
            };
            self.insert(key, || origin_of(&url), sequence, queued);
        }
    }

    /// New deliveries of lanes this node holds on a shared store (`taken`: lanes among them it
    /// took just now rather than kept, whose tails no longer hold). A lane whose offer goes on
    /// from its tail, one sequence number after the other, takes them at once; the lanes
    /// returned must be read from the store instead, because the store may hold deliveries of
    /// them this node was not handed (another node's, or ones made pending again).
    ///
    /// A new delivery at or below the tail was handed already: the tail comes from a read or
    /// from offers, and a lane's new deliveries are numbered in the order they are committed,
    /// so a read that saw a later one saw it too. Offers trail the commits (each waits for a
    /// claim), so a read often gets ahead of them; without this, each such offer would read
    /// the lane again, and under load a lane with a backlog would be read over and over.
    pub fn on_offer(&mut self, items: Vec<PendingDelivery>, taken: &[LaneId]) -> Vec<LaneId> {
        for key in taken {
            self.forget_tail(key);
            if let Some(lane) = self.lanes.get_mut(key) {
                lane.tail = None;
            }
        }
        let mut by_lane: BTreeMap<LaneId, Vec<PendingDelivery>> = BTreeMap::new();
        for item in items {
            by_lane.entry(item.lane()).or_default().push(item);
        }
        let mut to_read = Vec::new();
        for (key, mut offered) in by_lane {
            let tail = match self.lanes.get(&key) {
                Some(lane) => lane.tail,
                None => self.tails.as_ref().and_then(|t| t.get(&key).copied()),
            };
            let Some(tail) = tail.filter(|_| !offered.iter().any(|item| item.again)) else {
                to_read.push(key);
                continue;
            };
            offered.retain(|item| item.sequence > tail);
            offered.sort_by_key(|item| item.sequence);
            let goes_on = offered
                .iter()
                .zip(tail + 1..)
                .all(|(item, next)| item.sequence == next);
            if goes_on {
                self.on_enqueue(offered);
            } else {
                to_read.push(key);
            }
        }
        to_read
    }

    /// A read handed `key` a delivery at `sequence` that it did not queue (its outcome is
    /// being recorded): the tail moves up all the same.
    fn extend_tail(&mut self, key: &LaneId, sequence: u64) {
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.tail = Some(lane.tail.map_or(sequence, |tail| tail.max(sequence)));
        } else if let Some(tail) = self.tails.as_mut().and_then(|t| t.get_mut(key)) {
            *tail = (*tail).max(sequence);
        }
    }

    fn forget_tail(&mut self, key: &LaneId) -> Option<u64> {
        self.tails.as_mut().and_then(|tails| tails.remove(key))
    }

    /// Remembers the tail of a lane that emptied, on a shared store.
    fn keep_tail(&mut self, key: &LaneId, tail: u64) {
        if let Some(tails) = self.tails.as_mut() {
            if tails.len() >= MAX_TAILS_KEPT {
                tails.clear();
            }
            tails.insert(key.clone(), tail);
        }
    }

    /// Adds a delivery to its lane (creating the lane), unless the lane has it already; the
    /// lane's tail moves up to it either way.
    fn insert(
        &mut self,
        key: LaneId,
        origin: impl FnOnce() -> String,
        sequence: u64,
        queued: Queued,
    ) {
        let tails = &mut self.tails;
        let lane = self.lanes.entry(key.clone()).or_insert_with(|| Lane {
            queue: BTreeMap::new(),
            tail: tails.as_mut().and_then(|tails| tails.remove(&key)),
            origin: origin(),
            in_flight: None,
            parked: false,
            wake: 0,
        });
        lane.tail = Some(lane.tail.map_or(sequence, |tail| tail.max(sequence)));
        if lane.queue.contains_key(&sequence) {
            return;
        }
        let head_before = lane.queue.keys().next().copied();
        lane.queue.insert(sequence, queued);
        self.pending += 1;
        if head_before.is_none_or(|head| sequence < head) {
            self.schedule(&key);
        }
    }

    /// Puts the lane's head on the timer heap, unless the lane is busy or parked; forgets
    /// lanes with nothing left.
    fn schedule(&mut self, key: &LaneId) {
        let token = self.token();
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        if lane.in_flight.is_some() || lane.parked {
            return;
        }
        let Some(head) = lane.queue.values().next() else {
            if let Some(tail) = self.lanes.remove(key).and_then(|lane| lane.tail) {
                self.keep_tail(key, tail);
            }
            return;
        };
        lane.wake = token;
        self.timers.push(Reverse((head.due_ms, token)));
        self.wakes.insert(token, Wake::Lane(key.clone()));
    }

    fn wake_origin_at(&mut self, origin: &str, at_ms: u64) {
        let token = self.token();
        let Some(state) = self.origins.get_mut(origin) else {
            return;
        };
        if state.wake_scheduled {
            return;
        }
        state.wake_scheduled = true;
        self.timers.push(Reverse((at_ms, token)));
        self.wakes.insert(token, Wake::Origin(origin.to_string()));
    }

    /// The attempts to start at `now`. `may_start` says whether this node may start attempts
    /// at all (on a shared store, while its lane leases are known to outlast an attempt); when
    /// not, due lanes look again a little later.
    pub fn tick(&mut self, now: u64, may_start: bool) -> Vec<Start> {
        self.check_stalls(now);
        let mut starts = Vec::new();
        while self.running.len() < self.limits.max_in_flight {
            let Some(Reverse((due, token))) = self.timers.peek().copied() else {
                break;
            };
            if due > now {
                break;
            }
            self.timers.pop();
            match self.wakes.remove(&token) {
                Some(Wake::Lane(key))
                    if self.lanes.get(&key).is_some_and(|lane| lane.wake == token) =>
                {
                    if !may_start {
                        self.wake_lane_at(&key, now + LEASE_WAIT_MS);
                    } else if let Some(start) = self.try_start(key, now) {
                        starts.push(start);
                    }
                }
                Some(Wake::Origin(origin)) => {
                    if let Some(state) = self.origins.get_mut(&origin) {
                        state.wake_scheduled = false;
                    }
                    self.unpark(&origin, now);
                    self.forget_origin_if_idle(&origin, now);
                }
                Some(Wake::Lane(_)) | None => {}
            }
        }
        starts
    }

    /// Origins whose stall check is due: a stalled one's waiting attempts are told not to
    /// send, so that they end and give their attempt slots back; one that answered since is
    /// looked at again a `STALL_MS` after its last answer, while attempts still wait.
    fn check_stalls(&mut self, now: u64) {
        let max_per_origin = self.limits.max_in_flight_per_origin;
        while let Some(Reverse((due, _))) = self.stall_checks.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, origin))) = self.stall_checks.pop() else {
                break;
            };
            let Some(state) = self.origins.get_mut(&origin) else {
                continue;
            };
            state.stall_check_scheduled = false;
            if state.waiting.is_empty() {
                continue;
            }
            if !stalled(state, max_per_origin, now) {
                let again = state.last_answer_ms + STALL_MS;
                state.stall_check_scheduled = true;
                self.stall_checks
                    .push(Reverse((again.max(now + 1), origin)));
                continue;
            }
            tracing::debug!(
                origin,
                waiting = state.waiting.len(),
                "the origin answers nothing: its waiting attempts give their places back"
            );
            while let Some(attempt) = state.waiting.pop_front() {
                if let Some(running) = self.running.get_mut(&attempt) {
                    leave_preparing(state, running, false);
                    self.clearances.push((attempt, false));
                }
            }
        }
    }

    fn park(&mut self, key: LaneId, origin: &str) {
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.parked = true;
        }
        if let Some(state) = self.origins.get_mut(origin) {
            state.parked.push_back(key);
        }
    }

    /// Lets parked lanes of `origin` compete again, as many as it has room for.
    fn unpark(&mut self, origin: &str, now: u64) {
        let Some(state) = self.origins.get_mut(origin) else {
            return;
        };
        let mut room = if state.circuit.is_open() {
            usize::from(state.in_flight + state.preparing == 0)
        } else {
            preparing_limit(state, self.limits.max_in_flight_per_origin, now)
                .saturating_sub(state.preparing)
        };
        // Lanes left parked for want of a token look again when the next one is there.
        let mut next_token_at = None;
        if let Some(bucket) = state.bucket.as_mut() {
            let tokens = bucket.available(now);
            if tokens < room.min(state.parked.len()) {
                next_token_at = bucket.ready(now).err().or(Some(now + 1));
            }
            room = room.min(tokens);
        }
        let released: Vec<LaneId> = (0..room).map_while(|_| state.parked.pop_front()).collect();
        for key in released {
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.parked = false;
                self.schedule(&key);
            }
        }
        if let Some(at) = next_token_at {
            self.wake_origin_at(origin, at);
        }
    }

    /// The lanes the machine has (queued or in flight).
    pub fn lane_ids(&self) -> Vec<LaneId> {
        self.lanes.keys().cloned().collect()
    }

    /// Drops lanes another node holds now. An attempt in flight finishes (it started while
    /// the lease was known to outlast it); what it decides for its lane is dropped with the
    /// lane, because the lane's new holder reads the delivery's state from the store.
    pub fn forget(&mut self, lanes: Vec<LaneId>) {
        for key in lanes {
            self.forget_tail(&key);
            if let Some(state) = self.lanes.remove(&key) {
                self.pending -= state.queue.len() as u64;
            }
        }
    }

    /// Wakes the lane again at `at_ms`.
    fn wake_lane_at(&mut self, key: &LaneId, at_ms: u64) {
        let token = self.token();
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.wake = token;
            self.timers.push(Reverse((at_ms, token)));
            self.wakes.insert(token, Wake::Lane(key.clone()));
        }
    }

    fn try_start(&mut self, key: LaneId, now: u64) -> Option<Start> {
        let origin = self.lanes.get(&key)?.origin.clone();
        let max_per_origin = self.limits.max_in_flight_per_origin;
        let state = self.origin_mut(&origin, now);
        let next_token_at = state.bucket.as_mut().and_then(|b| b.ready(now).err());
        if state.preparing >= preparing_limit(state, max_per_origin, now) || next_token_at.is_some()
        {
            self.park(key, &origin);
            if let Some(at) = next_token_at {
                self.wake_origin_at(&origin, at);
            }
            return None;
        }
        let probe = match state.circuit.admit(now) {
            Admission::Allow => false,
            Admission::Probe => true,
            Admission::Wait(until) => {
                self.park(key, &origin);
                if let Some(until) = until {
                    self.wake_origin_at(&origin, until);
                }
                return None;
            }
        };
        state.preparing += 1;
        if let Some(bucket) = state.bucket.as_mut() {
            bucket.spend();
        }
        let lane = self.lanes.get_mut(&key)?;
        let (&sequence, head) = lane.queue.iter().next()?;
        lane.in_flight = Some(sequence);
        let delivery_id = head.delivery_id.clone();
        self.next_attempt += 1;
        let attempt = self.next_attempt;
        self.running.insert(
            attempt,
            Running {
                lane: key.clone(),
                origin: origin.clone(),
                sequence,
                delivery_id: delivery_id.clone(),
                phase: Phase::Preparing,
                probe,
                lane_released: false,
            },
        );
        Some(Start {
            attempt,
            delivery_id,
            lane: key,
            sequence,
            origin,
        })
    }

    /// The attempt read its delivery and is about to send: `Some(true)` it may now (it holds
    /// one of its origin's request slots until `on_answered`), `Some(false)` it must not (the
    /// circuit opened meanwhile, or the origin `stalled`; its lane tries again when it closes
    /// or a request ends), `None` it waits for a slot and learns which from `take_clearances`.
    pub fn on_ready(&mut self, attempt: AttemptId, now: u64) -> Option<bool> {
        let max_per_origin = self.limits.max_in_flight_per_origin;
        let running = self.running.get_mut(&attempt)?;
        if running.phase != Phase::Preparing {
            return Some(false);
        }
        let state = self.origins.get_mut(&running.origin)?;
        let mut may_send = may_send(state, running);
        if may_send && (!state.waiting.is_empty() || state.in_flight >= max_per_origin) {
            if stalled(state, max_per_origin, now) {
                may_send = false;
            } else {
                running.phase = Phase::Waiting;
                state.waiting.push_back(attempt);
                if !state.stall_check_scheduled {
                    state.stall_check_scheduled = true;
                    let check = (state.last_answer_ms + STALL_MS).max(now + 1);
                    self.stall_checks
                        .push(Reverse((check, running.origin.clone())));
                }
                return None;
            }
        }
        leave_preparing(state, running, may_send);
        // Its place among those reading is free for a parked lane.
        let origin = running.origin.clone();
        self.unpark(&origin, now);
        Some(may_send)
    }

    /// Hands the origin's free request slots to its waiting attempts, in the order they came;
    /// while its circuit is open, they are told not to send.
    fn clear_waiting(&mut self, origin: &str) {
        let max_per_origin = self.limits.max_in_flight_per_origin;
        let Some(state) = self.origins.get_mut(origin) else {
            return;
        };
        while let Some(&attempt) = state.waiting.front() {
            let Some(running) = self.running.get_mut(&attempt) else {
                state.waiting.pop_front();
                continue;
            };
            let may_send = may_send(state, running);
            if may_send && state.in_flight >= max_per_origin {
                break;
            }
            state.waiting.pop_front();
            leave_preparing(state, running, may_send);
            self.clearances.push((attempt, may_send));
        }
    }

    /// The receiver is done with the attempt: its origin gets the slot back and learns, for
    /// its circuit, whether it answered well; a finished head frees its lane.
    pub fn on_answered(&mut self, attempt: AttemptId, answer: Answered, now: u64) {
        let Some(running) = self.running.get_mut(&attempt) else {
            return;
        };
        if running.phase != Phase::Sending {
            return;
        }
        running.phase = Phase::Done;
        running.lane_released = answer.lane_free;
        if answer.lane_free {
            self.recording.insert(running.delivery_id.clone());
        }
        let (origin, key, sequence, probe) = (
            running.origin.clone(),
            running.lane.clone(),
            running.sequence,
            running.probe,
        );
        self.release_origin(&origin, answer.healthy, probe, now);
        if answer.lane_free {
            self.step_lane(&key, Some(sequence), LaneStep::Advance);
        }
    }

    /// Applies an attempt's `step` to its lane and schedules the lane's next head.
    fn step_lane(&mut self, key: &LaneId, sequence: Option<u64>, step: LaneStep) {
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        lane.in_flight = None;
        match step {
            LaneStep::Advance => {
                if sequence.and_then(|s| lane.queue.remove(&s)).is_some() {
                    self.pending -= 1;
                }
            }
            LaneStep::RetryAt(at) => {
                if let Some(head) = sequence.and_then(|s| lane.queue.get_mut(&s)) {
                    head.due_ms = at;
                }
            }
            LaneStep::Close => {
                // The store keeps the rest of the lane; enabling the config hands it over again.
                lane.tail = None;
                self.pending -= lane.queue.len() as u64;
                lane.queue.clear();
            }
        }
        self.schedule(key);
    }

    /// A request of the origin is over; `healthy` is what it said of the origin (`None`:
    /// nothing, which lets another probe go only if it was the probe).
    fn release_origin(&mut self, origin: &str, healthy: Option<bool>, probe: bool, now: u64) {
        let circuit_settings = self.limits.circuit;
        let mut change = None;
        if let Some(state) = self.origins.get_mut(origin) {
            state.in_flight = state.in_flight.saturating_sub(1);
            state.last_answer_ms = now;
            match healthy {
                Some(true) => {
                    if state.circuit.is_open() {
                        change = Some(None);
                    }
                    state.circuit.on_success(&circuit_settings);
                }
                Some(false) => {
                    if let Some(until) = state.circuit.on_failure(now, &circuit_settings) {
                        tracing::warn!(
                            origin,
                            reopen_in_ms = until - now,
                            "circuit open: the origin keeps failing"
                        );
                        change = Some(Some(until));
                        self.wake_origin_at(origin, until);
                    }
                }
                None if probe => state.circuit.on_inconclusive(),
                None => {}
            }
        }
        if let Some(change) = change {
            self.circuit_changes.push((origin.to_string(), change));
        }
        self.clear_waiting(origin);
        self.unpark(origin, now);
    }

    /// An attempt that had not sent ended: it gives back its place among those preparing.
    fn release_preparing(&mut self, attempt: AttemptId, origin: &str, phase: Phase, probe: bool) {
        let Some(state) = self.origins.get_mut(origin) else {
            return;
        };
        if phase == Phase::Waiting {
            state.waiting.retain(|&waiting| waiting != attempt);
        }
        state.preparing = state.preparing.saturating_sub(1);
        if probe {
            // It had nothing to send: another probe may go.
            state.circuit.on_inconclusive();
        }
    }

    /// Opens the circuits other nodes found open, for as long as they said.
    pub fn open_circuits(&mut self, open: Vec<(String, u64)>, now: u64) {
        for (origin, until) in open {
            if until <= now {
                continue;
            }
            if self.origin_mut(&origin, now).circuit.open_until(until) {
                tracing::info!(
                    origin,
                    reopen_in_ms = until - now,
                    "circuit open: another node found the origin failing"
                );
                self.wake_origin_at(&origin, until);
                self.clear_waiting(&origin);
            }
        }
    }

    /// The attempt ended: `step` is what its lane does next (for an attempt that failed
    /// unexpectedly, the actor asks for a retry shortly).
    pub fn on_finished(&mut self, attempt: AttemptId, step: LaneStep, now: u64) {
        let Some(Running {
            lane: key,
            origin,
            sequence,
            delivery_id,
            phase,
            probe,
            lane_released,
        }) = self.running.remove(&attempt)
        else {
            return;
        };
        match phase {
            // It sent nothing, or failed before the request left: inconclusive.
            Phase::Sending => self.release_origin(&origin, None, probe, now),
            Phase::Preparing | Phase::Waiting => {
                self.release_preparing(attempt, &origin, phase, probe)
            }
            Phase::Done => {}
        }
        self.recording.remove(&delivery_id);
        match (lane_released, step) {
            // The outcome of a head the lane already left could not be recorded: the delivery
            // is still pending in the store, so it goes back to its lane to be sent again.
            (true, LaneStep::RetryAt(at)) => {
                let queued = Queued {
                    delivery_id,
                    due_ms: at,
                };
                let lane_origin = origin.clone();
                self.insert(key, move || lane_origin, sequence, queued);
            }
            (true, _) => {}
            (false, step) => self.step_lane(&key, Some(sequence), step),
        }
        self.unpark(&origin, now);
        self.forget_origin_if_idle(&origin, now);
    }

    /// Forgets an origin with nothing going on, so that idle origins cost no memory; one
    /// whose token bucket is still refilling is looked at again once it is full (forgetting it
    /// earlier would hand it a full bucket too soon).
    fn forget_origin_if_idle(&mut self, origin: &str, now: u64) {
        let Some(state) = self.origins.get(origin) else {
            return;
        };
        if state.in_flight + state.preparing > 0
            || !state.parked.is_empty()
            || !state.circuit.is_pristine()
            || state.wake_scheduled
        {
            return;
        }
        match state.bucket.as_ref().map(|b| b.full_at()) {
            Some(full_at) if full_at > now => self.wake_origin_at(origin, full_at),
            _ => {
                self.origins.remove(origin);
            }
        }
    }

    /// How far delivery is behind (`delivery/backpressure.rs`): while every attempt slot is
    /// taken, since when the oldest due lane has waited; and for each origin that answers well
    /// (closed circuit, no failure since its last success, not stalled, no rate cap) and has
    /// lanes waiting for its request slots, since when the head of the one parked longest is
    /// due.
    pub fn lag(&mut self, now: u64) -> Lag {
        let max_per_origin = self.limits.max_in_flight_per_origin;
        let mut all_since = None;
        if self.running.len() >= self.limits.max_in_flight {
            // Lanes rescheduled since leave stale entries; the first live one is the oldest.
            while let Some(&Reverse((due, token))) = self.timers.peek() {
                let live = match self.wakes.get(&token) {
                    Some(Wake::Lane(key)) => self.lanes.get(key).is_some_and(|l| l.wake == token),
                    Some(Wake::Origin(_)) => true,
                    None => false,
                };
                if live {
                    all_since = (due <= now).then_some(due);
                    break;
                }
                self.timers.pop();
                self.wakes.remove(&token);
            }
        }
        let origins = self
            .origins
            .iter()
            .filter(|(_, state)| {
                state.circuit.is_pristine()
                    && state.bucket.is_none()
                    && !stalled(state, max_per_origin, now)
            })
            .filter_map(|(origin, state)| {
                // The first lane still parked (entries of lanes forgotten since are skipped).
                let since = state
                    .parked
                    .iter()
                    .take(8)
                    .filter_map(|key| self.lanes.get(key).filter(|lane| lane.parked))
                    .find_map(|lane| lane.queue.values().next().map(|head| head.due_ms))?;
                (since <= now).then(|| (origin.clone(), since))
            })
            .collect();
        Lag { all_since, origins }
    }

    /// Each origin's circuit (closed, with no failure, for an origin it has no record of)
    /// and what its lanes hold on this node.
    pub fn origin_queues(&self, origins: &[String]) -> Vec<OriginQueue> {
        let mut queues: HashMap<&str, OriginQueue> = origins
            .iter()
            .map(|origin| {
                let circuit = match self.origins.get(origin) {
                    Some(state) => state.circuit.report(),
                    None => Circuit::new(&self.limits.circuit).report(),
                };
                let queue = OriginQueue {
                    circuit,
                    pending: 0,
                    oldest_due_ms: None,
                    in_flight: self.origins.get(origin).map_or(0, |o| o.in_flight),
                };
                (origin.as_str(), queue)
            })
            .collect();
        for lane in self.lanes.values() {
            if let Some(queue) = queues.get_mut(lane.origin.as_str()) {
                queue.pending += lane.queue.len() as u64;
                if let Some(head) = lane.queue.values().next() {
                    queue.oldest_due_ms = Some(
                        queue
                            .oldest_due_ms
                            .map_or(head.due_ms, |due| due.min(head.due_ms)),
                    );
                }
            }
        }
        origins
            .iter()
            .map(|origin| queues.remove(origin.as_str()).unwrap_or_default())
            .collect()
    }

    pub fn stats(&self, now: u64) -> SchedulerStats {
        let mut stats = SchedulerStats {
            pending: self.pending,
            in_flight: self.running.len() as u64,
            open_circuits: self
                .origins
                .values()
                .filter(|o| o.circuit.is_open())
                .count() as u64,
            rate_limited_origins: self
                .origins
                .values()
                .filter(|o| {
                    o.bucket.is_some()
                        && !o.parked.is_empty()
                        && !o.circuit.is_open()
                        && o.preparing < self.limits.max_in_flight_per_origin
                })
                .count() as u64,
            nodes: self.nodes as u64,
            ..SchedulerStats::default()
        };
        for lane in self.lanes.values().filter(|lane| lane.in_flight.is_none()) {
            if let Some(head) = lane.queue.values().next().filter(|head| head.due_ms <= now) {
                stats.due += 1;
                stats.oldest_due_age_ms = stats.oldest_due_age_ms.max(now - head.due_ms);
            }
        }
        stats
    }
}
