//! The scheduler: one task that owns every lane and decides which delivery is attempted when.
//!
//! A lane is (tenant, task, config) and holds its pending deliveries in sequence order. Only
//! the head is ever attempted, and at most one attempt per lane is in flight, so event n+1
//! is never attempted before event n is delivered or dead. Lanes are independent: each
//! attempt is its own task, bounded by a global and a per-origin limit, and an origin whose
//! circuit is open parks only its own lanes. The per-origin limit counts requests at the
//! receiver: an attempt takes its origin slot once it has read its delivery (as many more
//! attempts of the origin may be reading meanwhile) and gives it back as soon as the answer
//! is read. A delivered
//! (or dead) head frees its lane at that moment too, while its outcome is being recorded; a
//! head to retry keeps its lane until the retry is recorded.
//!
//! Those decisions are `machine.rs`, a state machine without I/O or clock, tested in
//! simulated time. This file is the handle the rest of the hub talks to and the actor that
//! drives the machine: it runs the attempts the machine starts and sleeps until the machine's
//! next due time or until new work arrives, so an idle hub uses no CPU. The state is rebuilt
//! from the store at start, so attempts in flight at a crash, and outcomes not yet durable,
//! are attempted again.

mod machine;
#[cfg(test)]
pub(crate) mod machine_tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::attempt::{self, Answered, Engine, LaneStep, Report};
use super::backpressure::Backpressure;
use super::circuit::{CircuitReport, CircuitSettings};
use super::origins::{OriginStats, origin_of};
use crate::metrics::SchedulerStats;
use crate::store::{LaneId, PendingDelivery, now_ms};
pub use machine::CircuitChange;
pub use machine::OriginQueue;
use machine::{AttemptId, Machine, MachineLimits};

/// Limits the scheduler enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_in_flight: usize,
    pub max_in_flight_per_origin: usize,
    /// Attempts per second one origin may get from all nodes together; 0: no cap.
    pub max_rate_per_origin: f64,
    pub circuit: CircuitSettings,
    /// How long shutdown waits for attempts in flight.
    pub drain_timeout: Duration,
}

/// How often the scheduler tells the intake how far it is behind, while it is.
const LAG_REPORT_MS: u64 = 50;

/// What the scheduler shares with other nodes on a shared store.
pub struct Sharing {
    pub window: AttemptWindow,
    pub circuit_changes: Option<mpsc::UnboundedSender<CircuitChange>>,
}

impl Sharing {
    /// Whether other nodes share the store (they do when circuits are shared with them).
    fn is_shared(&self) -> bool {
        self.circuit_changes.is_some()
    }

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

/// New deliveries of held lanes, the lanes among them just taken, and where to say which lanes
/// must be read instead.
type Offer = (
    Vec<PendingDelivery>,
    Vec<LaneId>,
    oneshot::Sender<Vec<LaneId>>,
);

enum Command {
    Enqueue(Vec<PendingDelivery>),
    Offer(Offer),
    Stats(oneshot::Sender<SchedulerStats>),
    Lanes(oneshot::Sender<Vec<LaneId>>),
    Forget(Vec<LaneId>),
    OpenCircuits(Vec<(String, u64)>),
    Nodes(usize),
    Origins(Vec<String>, oneshot::Sender<Vec<OriginQueue>>),
}

/// How the rest of the hub talks to the scheduler.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// On a shared store, new deliveries go to the lane leases first (`store/postgres/lanes.rs`), which
    /// passes on those of lanes this node holds.
    offers: Option<mpsc::UnboundedSender<Vec<PendingDelivery>>>,
    origins: Arc<OriginStats>,
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

    /// Hands over new deliveries of lanes this node holds (`taken`: those among them it took
    /// just now rather than kept); answers the lanes whose deliveries could not be queued
    /// without reading the lane from the store (`Machine::on_offer`).
    pub(crate) async fn offer_held(
        &self,
        deliveries: Vec<PendingDelivery>,
        taken: Vec<LaneId>,
    ) -> Vec<LaneId> {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Offer((deliveries, taken, reply)))
            .is_err()
        {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
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

    /// How many nodes share the store (and each origin's rate) now.
    pub(crate) fn set_nodes(&self, nodes: usize) {
        let _ = self.commands.send(Command::Nodes(nodes));
    }

    /// Drops the queued deliveries of lanes this node no longer holds.
    pub(crate) fn forget(&self, lanes: Vec<LaneId>) {
        if !lanes.is_empty() {
            let _ = self.commands.send(Command::Forget(lanes));
        }
    }

    /// The origin of `url` and its circuit on this node.
    pub async fn circuit_of(&self, url: &str) -> (String, CircuitReport) {
        let origin = origin_of(url);
        let mut queues = self.origin_queues(vec![origin.clone()]).await;
        (origin, queues.pop().unwrap_or_default().circuit)
    }

    /// Each origin's circuit and lanes on this node (the circuit's state is `unknown` when
    /// the scheduler has stopped).
    pub async fn origin_queues(&self, origins: Vec<String>) -> Vec<OriginQueue> {
        let unknown = |count: usize| {
            let queue = OriginQueue {
                circuit: CircuitReport {
                    state: "unknown",
                    ..CircuitReport::default()
                },
                ..OriginQueue::default()
            };
            vec![queue; count]
        };
        let count = origins.len();
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Origins(origins, reply))
            .is_err()
        {
            return unknown(count);
        }
        answer.await.unwrap_or_else(|_| unknown(count))
    }

    /// How each origin has been answering this node's attempts.
    pub fn origin_stats(&self) -> &OriginStats {
        &self.origins
    }

    pub async fn stats(&self) -> SchedulerStats {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Stats(reply)).is_err() {
            return SchedulerStats::default();
        }
        answer.await.unwrap_or_default()
    }
}

/// Starts the scheduler; it has nothing to do until deliveries are enqueued.
pub fn start(
    engine: Arc<Engine>,
    limits: Limits,
    sharing: Sharing,
    backpressure: Backpressure,
    shutdown: CancellationToken,
) -> (SchedulerHandle, JoinHandle<()>) {
    let (commands, receiver) = mpsc::unbounded_channel();
    let (answered_tx, answered) = mpsc::unbounded_channel();
    let (ready_tx, ready) = mpsc::unbounded_channel();
    let machine = Machine::new(MachineLimits {
        max_in_flight: limits.max_in_flight,
        max_in_flight_per_origin: limits.max_in_flight_per_origin,
        max_rate_per_origin: limits.max_rate_per_origin,
        circuit: limits.circuit,
    });
    let machine = if sharing.is_shared() {
        machine.keeping_tails()
    } else {
        machine
    };
    let actor = Actor {
        machine,
        engine,
        drain_timeout: limits.drain_timeout,
        tasks: JoinSet::new(),
        attempts: HashMap::new(),
        answered_tx,
        ready_tx,
        waiting: HashMap::new(),
        window: sharing.window,
        circuit_changes: sharing.circuit_changes,
        backpressure,
        next_lag_report: 0,
        behind: false,
    };
    let origins = actor.engine.origins.clone();
    let task = tokio::spawn(actor.run(receiver, answered, ready, shutdown));
    (
        SchedulerHandle {
            commands,
            offers: None,
            origins,
        },
        task,
    )
}

/// Runs the machine: feeds it commands, answers and finished attempts with the time they
/// happened, starts the attempts it asks for, and sleeps until its next wake.
struct Actor {
    machine: Machine,
    engine: Arc<Engine>,
    /// How long shutdown waits for attempts in flight.
    drain_timeout: Duration,
    tasks: JoinSet<Report>,
    /// The machine's id of each attempt task.
    attempts: HashMap<tokio::task::Id, AttemptId>,
    /// Attempts that have their receiver's answer (they are still recording it), with what the
    /// answer says of the origin's health.
    answered_tx: mpsc::UnboundedSender<(AttemptId, Answered)>,
    /// Attempts that read their delivery and ask whether to send (`Machine::on_ready`).
    ready_tx: mpsc::UnboundedSender<(AttemptId, oneshot::Sender<bool>)>,
    /// Where to tell each attempt waiting for a request slot whether to send.
    waiting: HashMap<AttemptId, oneshot::Sender<bool>>,
    window: AttemptWindow,
    /// Where circuit changes go when other nodes share them.
    circuit_changes: Option<mpsc::UnboundedSender<CircuitChange>>,
    /// Where the intake learns how far delivery is behind.
    backpressure: Backpressure,
    next_lag_report: u64,
    /// The last report said delivery is behind: the next comes on time even when idle.
    behind: bool,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut answered: mpsc::UnboundedReceiver<(AttemptId, Answered)>,
        mut ready: mpsc::UnboundedReceiver<(AttemptId, oneshot::Sender<bool>)>,
        shutdown: CancellationToken,
    ) {
        loop {
            let now = now_ms();
            for start in self.machine.tick(now, self.window.is_open(now)) {
                self.spawn(start);
            }
            self.share_circuit_changes();
            self.send_clearances();
            self.report_lag(now);
            let next_report = self.behind.then_some(self.next_lag_report);
            let next_wake = self
                .machine
                .next_wake()
                .into_iter()
                .chain(next_report)
                .min();
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
                Some((attempt, answer)) = answered.recv() => self.machine.on_answered(attempt, answer, now_ms()),
                Some((attempt, reply)) = ready.recv() => match self.machine.on_ready(attempt, now_ms()) {
                    Some(may_send) => self.clear(reply, may_send),
                    None => { self.waiting.insert(attempt, reply); }
                },
                Some(finished) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.finished(finished),
                command = commands.recv() => match command {
                    Some(Command::Enqueue(items)) => self.machine.on_enqueue(items),
                    Some(Command::Offer((items, taken, reply))) => { let _ = reply.send(self.machine.on_offer(items, &taken)); }
                    Some(Command::Stats(reply)) => {
                        let mut stats = self.machine.stats(now_ms());
                        (stats.origins_tracked, stats.origins_failing) = self.engine.origins.counts();
                        let _ = reply.send(stats);
                    }
                    Some(Command::Lanes(reply)) => { let _ = reply.send(self.machine.lane_ids()); }
                    Some(Command::Forget(lanes)) => self.machine.forget(lanes),
                    Some(Command::OpenCircuits(open)) => self.machine.open_circuits(open, now_ms()),
                    Some(Command::Nodes(nodes)) => self.machine.set_nodes(nodes, now_ms()),
                    Some(Command::Origins(origins, reply)) => { let _ = reply.send(self.machine.origin_queues(&origins)); }
                    None => break,
                },
                _ = sleep => {}
            }
        }
        // Attempts not sending yet do not start now: they are attempted at the next start.
        drop(ready);
        self.waiting.clear();
        self.drain().await;
    }

    fn spawn(&mut self, start: machine::Start) {
        let engine = self.engine.clone();
        let answered_tx = self.answered_tx.clone();
        let ready_tx = self.ready_tx.clone();
        let attempt = start.attempt;
        let handle = self.tasks.spawn(async move {
            let ready = async move || {
                let (reply, answer) = oneshot::channel();
                ready_tx.send((attempt, reply)).is_ok() && answer.await.unwrap_or(false)
            };
            let answered = move |answer| {
                let _ = answered_tx.send((attempt, answer));
            };
            attempt::run(
                &engine,
                &start.delivery_id,
                (&start.lane, start.sequence),
                &start.origin,
                ready,
                answered,
            )
            .await
        });
        self.attempts.insert(handle.id(), attempt);
    }

    fn finished(&mut self, result: Result<(tokio::task::Id, Report), tokio::task::JoinError>) {
        let now = now_ms();
        let (id, step) = match result {
            Ok((id, report)) => (id, report.step),
            Err(error) => {
                tracing::error!(%error, "a delivery attempt failed unexpectedly; retrying it shortly");
                (error.id(), LaneStep::RetryAt(now + 1_000))
            }
        };
        if let Some(attempt) = self.attempts.remove(&id) {
            self.waiting.remove(&attempt);
            self.machine.on_finished(attempt, step, now);
        }
    }

    /// Tells the attempts that waited for a request slot whether to send now.
    fn send_clearances(&mut self) {
        for (attempt, may_send) in self.machine.take_clearances() {
            if let Some(reply) = self.waiting.remove(&attempt) {
                self.clear(reply, may_send);
            }
        }
    }

    /// Tells an attempt whether to send. On a shared store it sends only while this node's
    /// lane leases are known to outlast the request, however long it read or waited: one that
    /// may not ends without an answer, which gives its slot back.
    fn clear(&self, reply: oneshot::Sender<bool>, may_send: bool) {
        let _ = reply.send(may_send && self.window.is_open(now_ms()));
    }

    /// Tells the intake how far delivery is behind, every `LAG_REPORT_MS` at most.
    fn report_lag(&mut self, now: u64) {
        if now < self.next_lag_report {
            return;
        }
        let lag = self.machine.lag(now);
        self.behind = !lag.is_empty();
        self.backpressure.report(lag);
        self.next_lag_report = now + LAG_REPORT_MS;
    }

    fn share_circuit_changes(&mut self) {
        for change in self.machine.take_circuit_changes() {
            self.engine.operator.circuit(change.0.clone(), change.1);
            if let Some(sender) = &self.circuit_changes {
                let _ = sender.send(change);
            }
        }
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
        if tokio::time::timeout(self.drain_timeout, wait_all)
            .await
            .is_err()
        {
            tracing::warn!(
                "attempts still in flight at shutdown will be attempted again at the next start"
            );
            self.tasks.abort_all();
        }
    }
}
