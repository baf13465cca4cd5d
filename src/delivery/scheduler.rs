//! The scheduler: one task that owns every lane and decides which delivery is attempted when.
//!
//! A lane is (tenant, task, config) and holds its pending deliveries in sequence order. Only
//! the head is ever attempted, and at most one attempt per lane is in flight, so event n+1
//! is never attempted before event n is delivered or dead. Lanes are independent: each
//! attempt is its own task, bounded by a global and a per-origin limit, and an origin whose
//! circuit is open parks only its own lanes. The per-origin limit counts requests at the
//! receiver: an attempt gives its origin slot back as soon as the answer is read. A delivered
//! (or dead) head frees its lane at that moment too, while its outcome is being recorded; a
//! head to retry keeps its lane until the retry is recorded. The scheduler sleeps until the
//! next due time or until new work arrives; an idle hub uses no CPU. Its state is rebuilt from
//! the store at start, so attempts in flight at a crash, and outcomes not yet durable, are
//! attempted again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::attempt::{self, Answered, Engine, LaneStep, Report};
use super::circuit::{Admission, Circuit, CircuitSettings};
use crate::metrics::SchedulerStats;
use crate::store::{LaneId, PendingDelivery, now_ms};

/// How long a lane waits before trying again when this node may not start attempts (its lane
/// leases are not known to be valid long enough).
const LEASE_WAIT_MS: u64 = 250;

/// Limits the scheduler enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_in_flight: usize,
    pub max_in_flight_per_origin: usize,
    pub circuit: CircuitSettings,
    /// How long shutdown waits for attempts in flight.
    pub drain_timeout: Duration,
}

/// What the scheduler shares with other nodes on a shared store.
pub struct Sharing {
    pub window: AttemptWindow,
    pub circuit_changes: Option<mpsc::UnboundedSender<CircuitChange>>,
}

impl Sharing {
    /// A node alone with its store.
    pub fn alone() -> Sharing {
        Sharing {
            window: AttemptWindow::always(),
            circuit_changes: None,
        }
    }
}

/// Until when (ms since the epoch) this node may start attempts: always, on a store of one
/// node; on a shared store, while its lane leases are known to outlast an attempt.
#[derive(Clone)]
pub struct AttemptWindow(Arc<AtomicU64>);

impl AttemptWindow {
    pub fn always() -> AttemptWindow {
        AttemptWindow(Arc::new(AtomicU64::new(u64::MAX)))
    }

    pub fn closed() -> AttemptWindow {
        AttemptWindow(Arc::new(AtomicU64::new(0)))
    }

    pub fn open_until(&self, at_ms: u64) {
        self.0.store(at_ms, Ordering::Relaxed);
    }

    fn is_open(&self, now_ms: u64) -> bool {
        now_ms < self.0.load(Ordering::Relaxed)
    }
}

enum Command {
    Enqueue(Vec<PendingDelivery>),
    Stats(oneshot::Sender<SchedulerStats>),
    Lanes(oneshot::Sender<Vec<LaneId>>),
    Forget(Vec<LaneId>),
    OpenCircuits(Vec<(String, u64)>),
}

/// A circuit of this node opened (until when) or closed (`None`), for the other nodes.
pub type CircuitChange = (String, Option<u64>);

/// How the rest of the hub talks to the scheduler.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// On a shared store, new deliveries go to the lane leases first (`store/postgres_lanes.rs`), which
    /// passes on those of lanes this node holds.
    offers: Option<mpsc::UnboundedSender<Vec<PendingDelivery>>>,
}

impl SchedulerHandle {
    /// Hands over deliveries that are durably stored as pending.
    pub fn enqueue(&self, deliveries: Vec<PendingDelivery>) {
        if deliveries.is_empty() {
            return;
        }
        // After shutdown nothing is lost: the deliveries are in the store and the next
        // start picks them up.
        match &self.offers {
            Some(offers) => {
                let _ = offers.send(deliveries);
            }
            None => {
                let _ = self.commands.send(Command::Enqueue(deliveries));
            }
        }
    }

    /// Sends new deliveries through `offers` instead of straight to the scheduler.
    pub(crate) fn offering_to(
        mut self,
        offers: mpsc::UnboundedSender<Vec<PendingDelivery>>,
    ) -> SchedulerHandle {
        self.offers = Some(offers);
        self
    }

    /// Hands over deliveries of lanes this node holds.
    pub(crate) fn enqueue_held(&self, deliveries: Vec<PendingDelivery>) {
        if !deliveries.is_empty() {
            let _ = self.commands.send(Command::Enqueue(deliveries));
        }
    }

    /// The lanes the scheduler has (queued or in flight).
    pub(crate) async fn lanes(&self) -> Vec<LaneId> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Lanes(reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Circuits other nodes found open: this node's lanes of those origins wait too.
    pub(crate) fn open_circuits(&self, open: Vec<(String, u64)>) {
        if !open.is_empty() {
            let _ = self.commands.send(Command::OpenCircuits(open));
        }
    }

    /// Drops the queued deliveries of lanes this node no longer holds.
    pub(crate) fn forget(&self, lanes: Vec<LaneId>) {
        if !lanes.is_empty() {
            let _ = self.commands.send(Command::Forget(lanes));
        }
    }

    pub async fn stats(&self) -> SchedulerStats {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Stats(reply)).is_err() {
            return SchedulerStats::default();
        }
        answer.await.unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LaneKey {
    tenant: String,
    task_id: String,
    config_id: String,
}

struct Queued {
    delivery_id: String,
    due_ms: u64,
}

struct Lane {
    /// Pending deliveries by sequence number.
    queue: BTreeMap<u64, Queued>,
    origin: String,
    /// Sequence number of the attempt in flight.
    in_flight: Option<u64>,
    /// Waiting for its origin (limit or open circuit).
    parked: bool,
    /// Token of the lane's current entry in the timer heap; older entries are stale.
    wake: u64,
}

struct Origin {
    in_flight: usize,
    circuit: Circuit,
    parked: VecDeque<LaneKey>,
    wake_scheduled: bool,
}

enum Wake {
    Lane(LaneKey),
    Origin(String),
}

struct Running {
    lane: LaneKey,
    origin: String,
    sequence: u64,
    delivery_id: String,
    /// The attempt has its answer and gave its origin slot back.
    answered: bool,
    /// The head was finished at the answer and the lane moved on.
    lane_released: bool,
}

struct Scheduler {
    engine: Arc<Engine>,
    limits: Limits,
    lanes: HashMap<LaneKey, Lane>,
    origins: HashMap<String, Origin>,
    timers: BinaryHeap<Reverse<(u64, u64)>>,
    wakes: HashMap<u64, Wake>,
    next_token: u64,
    pending: u64,
    tasks: JoinSet<Report>,
    running: HashMap<tokio::task::Id, Running>,
    /// Attempts that have their receiver's answer (they are still recording it), with what the
    /// answer says of the origin's health.
    answered_tx: mpsc::UnboundedSender<(tokio::task::Id, Answered)>,
    /// Deliveries whose lane moved on while their outcome is being recorded: still pending in
    /// the store for a moment, not to be queued again.
    recording: HashSet<String>,
    window: AttemptWindow,
    /// Where circuit changes go when other nodes share them.
    circuit_changes: Option<mpsc::UnboundedSender<CircuitChange>>,
}

/// The origin (scheme, host, port) that limits and circuits are kept for.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

/// Starts the scheduler with the pending deliveries found in the store.
pub fn start(
    engine: Arc<Engine>,
    limits: Limits,
    sharing: Sharing,
    initial: Vec<PendingDelivery>,
    shutdown: CancellationToken,
) -> (SchedulerHandle, JoinHandle<()>) {
    let (commands, receiver) = mpsc::unbounded_channel();
    let (answered_tx, answered) = mpsc::unbounded_channel();
    let mut scheduler = Scheduler {
        engine,
        limits,
        lanes: HashMap::new(),
        origins: HashMap::new(),
        timers: BinaryHeap::new(),
        wakes: HashMap::new(),
        next_token: 0,
        pending: 0,
        tasks: JoinSet::new(),
        running: HashMap::new(),
        answered_tx,
        recording: HashSet::new(),
        window: sharing.window,
        circuit_changes: sharing.circuit_changes,
    };
    if !initial.is_empty() {
        tracing::info!(pending = initial.len(), "resuming pending deliveries");
    }
    scheduler.enqueue(initial);
    let task = tokio::spawn(scheduler.run(receiver, answered, shutdown));
    (
        SchedulerHandle {
            commands,
            offers: None,
        },
        task,
    )
}

impl Scheduler {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut answered: mpsc::UnboundedReceiver<(tokio::task::Id, Answered)>,
        shutdown: CancellationToken,
    ) {
        loop {
            self.dispatch(now_ms());
            let next_wake = if self.running.len() >= self.limits.max_in_flight {
                None
            } else {
                self.timers.peek().map(|Reverse((due, _))| *due)
            };
            let sleep = async {
                match next_wake {
                    Some(due) => {
                        tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms())))
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // Before `finished`: an attempt reports its answer before it ends, and the
                // answer must reach the circuit even when both are ready at once.
                Some((id, answer)) = answered.recv() => self.answered(id, answer),
                Some(finished) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.finished(finished),
                command = commands.recv() => match command {
                    Some(Command::Enqueue(items)) => self.enqueue(items),
                    Some(Command::Stats(reply)) => { let _ = reply.send(self.stats(now_ms())); }
                    Some(Command::Lanes(reply)) => { let _ = reply.send(self.lane_ids()); }
                    Some(Command::Forget(lanes)) => self.forget(lanes),
                    Some(Command::OpenCircuits(open)) => self.open_circuits(open, now_ms()),
                    None => break,
                },
                _ = sleep => {}
            }
        }
        self.drain().await;
    }

    /// Waits (bounded) for the attempts in flight, so their outcomes are recorded.
    async fn drain(mut self) {
        if self.tasks.is_empty() {
            return;
        }
        tracing::info!(
            in_flight = self.tasks.len(),
            "waiting for delivery attempts in flight"
        );
        let wait_all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.limits.drain_timeout, wait_all)
            .await
            .is_err()
        {
            tracing::warn!(
                "attempts still in flight at shutdown will be attempted again at the next start"
            );
            self.tasks.abort_all();
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn enqueue(&mut self, items: Vec<PendingDelivery>) {
        for item in items {
            if self.recording.contains(&item.delivery_id) {
                continue;
            }
            let key = LaneKey {
                tenant: item.tenant,
                task_id: item.task_id,
                config_id: item.config_id,
            };
            let queued = Queued {
                delivery_id: item.delivery_id,
                due_ms: item.next_attempt_at_ms,
            };
            self.insert(key, || origin_of(&item.url), item.sequence, queued);
        }
    }

    /// Adds a delivery to its lane (creating the lane), unless the lane has it already.
    fn insert(
        &mut self,
        key: LaneKey,
        origin: impl FnOnce() -> String,
        sequence: u64,
        queued: Queued,
    ) {
        let lane = self.lanes.entry(key.clone()).or_insert_with(|| Lane {
            queue: BTreeMap::new(),
            origin: origin(),
            in_flight: None,
            parked: false,
            wake: 0,
        });
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
    fn schedule(&mut self, key: &LaneKey) {
        let token = self.token();
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        if lane.in_flight.is_some() || lane.parked {
            return;
        }
        let Some(head) = lane.queue.values().next() else {
            self.lanes.remove(key);
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

    fn dispatch(&mut self, now: u64) {
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
                    self.try_start(key, now);
                }
                Some(Wake::Origin(origin)) => {
                    if let Some(state) = self.origins.get_mut(&origin) {
                        state.wake_scheduled = false;
                    }
                    self.unpark(&origin);
                }
                Some(Wake::Lane(_)) | None => {}
            }
        }
    }

    fn park(&mut self, key: LaneKey, origin: &str) {
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.parked = true;
        }
        if let Some(state) = self.origins.get_mut(origin) {
            state.parked.push_back(key);
        }
    }

    /// Lets parked lanes of `origin` compete again, as many as it has room for.
    fn unpark(&mut self, origin: &str) {
        let Some(state) = self.origins.get_mut(origin) else {
            return;
        };
        let room = if state.circuit.is_open() {
            usize::from(state.in_flight == 0)
        } else {
            self.limits
                .max_in_flight_per_origin
                .saturating_sub(state.in_flight)
        };
        let released: Vec<LaneKey> = (0..room).map_while(|_| state.parked.pop_front()).collect();
        for key in released {
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.parked = false;
                self.schedule(&key);
            }
        }
    }

    fn lane_ids(&self) -> Vec<LaneId> {
        self.lanes
            .keys()
            .map(|key| LaneId {
                tenant: key.tenant.clone(),
                task_id: key.task_id.clone(),
                config_id: key.config_id.clone(),
            })
            .collect()
    }

    /// Drops lanes another node holds now. An attempt in flight finishes (it started while
    /// the lease was known to outlast it); what it decides for its lane is dropped with the
    /// lane, because the lane's new holder reads the delivery's state from the store.
    fn forget(&mut self, lanes: Vec<LaneId>) {
        for lane in lanes {
            let key = LaneKey {
                tenant: lane.tenant,
                task_id: lane.task_id,
                config_id: lane.config_id,
            };
            if let Some(state) = self.lanes.remove(&key) {
                self.pending -= state.queue.len() as u64;
            }
        }
    }

    /// Wakes the lane again at `at_ms`.
    fn wake_lane_at(&mut self, key: &LaneKey, at_ms: u64) {
        let token = self.token();
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.wake = token;
            self.timers.push(Reverse((at_ms, token)));
            self.wakes.insert(token, Wake::Lane(key.clone()));
        }
    }

    fn try_start(&mut self, key: LaneKey, now: u64) {
        if !self.window.is_open(now) {
            self.wake_lane_at(&key, now + LEASE_WAIT_MS);
            return;
        }
        let Some(lane) = self.lanes.get(&key) else {
            return;
        };
        let origin = lane.origin.clone();
        let circuit_settings = self.limits.circuit;
        let state = self
            .origins
            .entry(origin.clone())
            .or_insert_with(|| Origin {
                in_flight: 0,
                circuit: Circuit::new(&circuit_settings),
                parked: VecDeque::new(),
                wake_scheduled: false,
            });
        if state.in_flight >= self.limits.max_in_flight_per_origin {
            self.park(key, &origin);
            return;
        }
        match state.circuit.admit(now) {
            Admission::Allow | Admission::Probe => {}
            Admission::Wait(until) => {
                self.park(key, &origin);
                if let Some(until) = until {
                    self.wake_origin_at(&origin, until);
                }
                return;
            }
        }
        state.in_flight += 1;
        let Some(lane) = self.lanes.get_mut(&key) else {
            return;
        };
        let Some((&sequence, head)) = lane.queue.iter().next() else {
            return;
        };
        lane.in_flight = Some(sequence);
        let engine = self.engine.clone();
        let delivery_id = head.delivery_id.clone();
        let answered_tx = self.answered_tx.clone();
        let attempted_id = delivery_id.clone();
        let handle = self.tasks.spawn(async move {
            let id = tokio::task::id();
            let answered = move |answer| {
                let _ = answered_tx.send((id, answer));
            };
            attempt::run(&engine, &attempted_id, answered).await
        });
        self.running.insert(
            handle.id(),
            Running {
                lane: key,
                origin,
                sequence,
                delivery_id,
                answered: false,
                lane_released: false,
            },
        );
    }

    /// The receiver is done with the attempt: its origin gets the slot back and learns, for
    /// its circuit, whether it answered well; a finished head frees its lane.
    fn answered(&mut self, id: tokio::task::Id, answer: Answered) {
        let Some(running) = self.running.get_mut(&id) else {
            return;
        };
        if std::mem::replace(&mut running.answered, true) {
            return;
        }
        running.lane_released = answer.lane_free;
        if answer.lane_free {
            self.recording.insert(running.delivery_id.clone());
        }
        let (origin, key, sequence) = (
            running.origin.clone(),
            running.lane.clone(),
            running.sequence,
        );
        self.release_origin(&origin, answer.healthy, now_ms());
        if answer.lane_free {
            self.step_lane(&key, Some(sequence), LaneStep::Advance);
        }
    }

    /// Applies an attempt's `step` to its lane and schedules the lane's next head.
    fn step_lane(&mut self, key: &LaneKey, sequence: Option<u64>, step: LaneStep) {
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
                self.pending -= lane.queue.len() as u64;
                lane.queue.clear();
            }
        }
        self.schedule(key);
    }

    fn release_origin(&mut self, origin: &str, healthy: Option<bool>, now: u64) {
        let circuit_settings = self.limits.circuit;
        let mut change = None;
        if let Some(state) = self.origins.get_mut(origin) {
            state.in_flight = state.in_flight.saturating_sub(1);
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
                None => state.circuit.on_inconclusive(),
            }
        }
        if let (Some(change), Some(changes)) = (change, &self.circuit_changes) {
            let _ = changes.send((origin.to_string(), change));
        }
        self.unpark(origin);
    }

    /// Opens the circuits other nodes found open, for as long as they said.
    fn open_circuits(&mut self, open: Vec<(String, u64)>, now: u64) {
        let circuit_settings = self.limits.circuit;
        for (origin, until) in open {
            if until <= now {
                continue;
            }
            let state = self
                .origins
                .entry(origin.clone())
                .or_insert_with(|| Origin {
                    in_flight: 0,
                    circuit: Circuit::new(&circuit_settings),
                    parked: VecDeque::new(),
                    wake_scheduled: false,
                });
            if state.circuit.open_until(until) {
                tracing::info!(
                    origin,
                    reopen_in_ms = until - now,
                    "circuit open: another node found the origin failing"
                );
                self.wake_origin_at(&origin, until);
            }
        }
    }

    fn finished(&mut self, result: Result<(tokio::task::Id, Report), tokio::task::JoinError>) {
        let now = now_ms();
        let (id, report) = match result {
            Ok((id, report)) => (id, report),
            Err(error) => {
                tracing::error!(%error, "a delivery attempt failed unexpectedly; retrying it shortly");
                let report = Report {
                    step: LaneStep::RetryAt(now + 1_000),
                };
                (error.id(), report)
            }
        };
        let Some(Running {
            lane: key,
            origin,
            sequence,
            delivery_id,
            answered,
            lane_released,
        }) = self.running.remove(&id)
        else {
            return;
        };
        if !answered {
            // It never reached the receiver (nothing to send, or it failed before sending).
            self.release_origin(&origin, None, now);
        }
        self.recording.remove(&delivery_id);
        match (lane_released, report.step) {
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
        self.unpark(&origin);
        if let Some(state) = self.origins.get(&origin) {
            if state.in_flight == 0
                && state.parked.is_empty()
                && state.circuit.is_pristine()
                && !state.wake_scheduled
            {
                self.origins.remove(&origin);
            }
        }
    }

    fn stats(&self, now: u64) -> SchedulerStats {
        let mut stats = SchedulerStats {
            pending: self.pending,
            in_flight: self.running.len() as u64,
            open_circuits: self
                .origins
                .values()
                .filter(|o| o.circuit.is_open())
                .count() as u64,
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
