//! What a node keeps in step with the others on a store several hub nodes share: lane leases
//! (it delivers a lane only while it holds the lane's lease) and open circuits.
//!
//! One task keeps the leases. It takes the lanes of the deliveries this node accepted (another node
//! may hold some: that node is woken by the store and delivers them), takes lanes whose node
//! stopped renewing, loads the lanes the store wakes it for, and renews what the scheduler
//! has. After each renewal it opens the scheduler's attempt window until the leases could run
//! out minus an attempt's timeout; an attempt starts, and later sends its request, only while
//! the window is open, so it never outlives the lease it sent under: a node that cannot reach
//! the store stops sending before another node may take its lanes.
//!
//! The same task writes this node's circuit changes to the store and, once a second, opens
//! here the circuits other nodes found open, so that a failing origin is spared by every node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::scheduler::{AttemptWindow, CircuitChange, SchedulerHandle};
use crate::store::{ClaimedLane, LaneId, PendingDelivery, RenewedLanes, Store, now_ms};

/// How often a node looks for lanes whose node stopped and for circuits others opened.
const POLL: Duration = Duration::from_secs(1);
/// Reads of a lane's deliveries before it is left to its lease running out.
const LOAD_ATTEMPTS: u32 = 5;
/// Lanes taken per look.
const CLAIM_BATCH: usize = 256;
/// Room kept between the end of the attempt window and the end of the leases.
const MARGIN: Duration = Duration::from_millis(500);

pub struct Node {
    store: Arc<dyn Store>,
    scheduler: SchedulerHandle,
    window: AttemptWindow,
    /// How long a lease lasts (`store.lane_lease`).
    lease: Duration,
    /// The longest an attempt takes (`delivery.timeout`).
    attempt_timeout: Duration,
    /// Lanes being read, each with whether it must be read again when that read ends (new
    /// deliveries arrived meanwhile): one read per lane at a time.
    loading: Mutex<HashMap<LaneId, bool>>,
    /// Until when this node's leases last at least, from its own claims and renewals.
    known: Mutex<KnownLeases>,
}

/// Until when each of this node's leases lasts at least, by its own clock: the moment it asked
/// for the lease plus the lease's length (the database sets the end from when it ran the
/// statement, which is later). A lane whose lease lasts as long as those of the last renewal
/// needs no claim when this node accepts another of its deliveries: no other node can take it
/// before then, and the attempt window closes earlier. Under single-event load that spares a
/// lease update per event.
#[derive(Default)]
struct KnownLeases {
    until: HashMap<LaneId, Instant>,
    /// The end of the leases the last successful renewal extended.
    renewed_until: Option<Instant>,
}

impl KnownLeases {
    fn got<'a>(&mut self, lanes: impl IntoIterator<Item = &'a LaneId>, until: Instant) {
        for lane in lanes {
            let known = self.until.entry(lane.clone()).or_insert(until);
            *known = (*known).max(until);
        }
    }

    fn renewed(&mut self, renewed: &RenewedLanes, until: Instant, now: Instant) {
        self.got(&renewed.extended, until);
        self.renewed_until = Some(until);
        // A lane not renewed again is claimed at its next delivery; its entry can go.
        self.until.retain(|_, lasts| *lasts > now);
    }

    fn lost(&mut self, lanes: &[LaneId]) {
        for lane in lanes {
            self.until.remove(lane);
        }
    }

    /// Whether `lane`'s lease lasts at least as long as those of the last renewal.
    fn holds(&self, lane: &LaneId) -> bool {
        match (self.until.get(lane), self.renewed_until) {
            (Some(until), Some(renewed_until)) => *until >= renewed_until,
            _ => false,
        }
    }
}

impl Node {
    pub fn new(
        store: Arc<dyn Store>,
        scheduler: SchedulerHandle,
        window: AttemptWindow,
        lease: Duration,
        attempt_timeout: Duration,
    ) -> Node {
        Node {
            store,
            scheduler,
            window,
            lease,
            attempt_timeout,
            loading: Mutex::default(),
            known: Mutex::default(),
        }
    }
}

/// Lanes taken since the last renewal (the scheduler may not have them yet).
type Taken = Arc<Mutex<HashSet<LaneId>>>;

/// Starts keeping the node in step; `offers` brings the deliveries this node accepted,
/// `circuit_changes` its circuits opening and closing.
pub fn start(
    node: Node,
    offers: mpsc::UnboundedReceiver<Vec<PendingDelivery>>,
    circuit_changes: mpsc::UnboundedReceiver<CircuitChange>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let node = Arc::new(node);
    let taken = Taken::default();
    // Renewal has a task of its own: nothing else this node does may delay it.
    tokio::spawn(node.clone().renew_loop(taken.clone(), shutdown.clone()));
    tokio::spawn(node.run(offers, circuit_changes, taken, shutdown))
}

impl Node {
    async fn renew_loop(self: Arc<Self>, taken: Taken, shutdown: CancellationToken) {
        let mut renew = tokio::time::interval(self.lease / 3);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = renew.tick() => self.renew(&taken).await,
            }
        }
    }

    async fn run(
        self: Arc<Self>,
        mut offers: mpsc::UnboundedReceiver<Vec<PendingDelivery>>,
        mut circuit_changes: mpsc::UnboundedReceiver<CircuitChange>,
        taken: Taken,
        shutdown: CancellationToken,
    ) {
        let mut wakeups = self.store.lane_wakeups();
        // Offers whose lanes could not be taken because the store did not answer.
        let mut unanswered: Vec<PendingDelivery> = Vec::new();
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(first) = offers.recv() => {
                    let mut batch = first;
                    while let Ok(more) = offers.try_recv() {
                        batch.extend(more);
                    }
                    if let Err(batch) = self.take_offered(batch, &taken).await {
                        unanswered.extend(batch);
                    }
                }
                Some(lane) = recv_wakeup(&mut wakeups) => {
                    let mut lanes = HashSet::from([lane]);
                    if let Some(wakeups) = wakeups.as_mut() {
                        while let Ok(more) = wakeups.try_recv() {
                            lanes.insert(more);
                        }
                    }
                    self.load(lanes.into_iter().collect());
                }
                Some((origin, open_until)) = circuit_changes.recv() => {
                    if let Err(e) = self.store.share_circuit(origin, open_until).await {
                        tracing::warn!(error = %e, "cannot share a circuit change");
                    }
                }
                _ = poll.tick() => {
                    if !unanswered.is_empty() {
                        let batch = std::mem::take(&mut unanswered);
                        if let Err(batch) = self.take_offered(batch, &taken).await {
                            unanswered = batch;
                        }
                    }
                    self.take_abandoned(&taken).await;
                    match self.store.open_circuits().await {
                        Ok(open) => self.scheduler.open_circuits(open),
                        Err(e) => tracing::warn!(error = %e, "cannot read the circuits other nodes opened"),
                    }
                    match self.store.live_nodes().await {
                        Ok(nodes) => self.scheduler.set_nodes(nodes),
                        Err(e) => tracing::warn!(error = %e, "cannot count the nodes sharing the store"),
                    }
                }
            }
        }
    }

    /// Takes the lanes of deliveries this node accepted and queues those it got; gives the
    /// deliveries back when the store did not answer, to be offered again.
    async fn take_offered(
        self: &Arc<Self>,
        deliveries: Vec<PendingDelivery>,
        taken: &Taken,
    ) -> Result<(), Vec<PendingDelivery>> {
        let lanes: HashSet<LaneId> = deliveries.iter().map(PendingDelivery::lane).collect();
        let (mut claimed, to_claim): (Vec<ClaimedLane>, Vec<LaneId>) = match self.known.lock() {
            Ok(known) => {
                let (held, to_claim): (Vec<LaneId>, Vec<LaneId>) =
                    lanes.into_iter().partition(|lane| known.holds(lane));
                let held = held
                    .into_iter()
                    .map(|lane| ClaimedLane { lane, kept: true });
                (held.collect(), to_claim)
            }
            Err(_) => (Vec::new(), lanes.into_iter().collect()),
        };
        let asked = Instant::now();
        let answer = if to_claim.is_empty() {
            Ok(Vec::new())
        } else {
            self.store.claim_lanes(to_claim).await
        };
        match answer {
            Ok(newly) => {
                if let Ok(mut known) = self.known.lock() {
                    known.got(newly.iter().map(|c| &c.lane), asked + self.lease);
                }
                claimed.extend(newly);
                if let Ok(mut taken) = taken.lock() {
                    taken.extend(claimed.iter().map(|c| c.lane.clone()));
                }
                let held: HashSet<&LaneId> = claimed.iter().map(|c| &c.lane).collect();
                let just_taken = claimed
                    .iter()
                    .filter(|c| !c.kept)
                    .map(|c| c.lane.clone())
                    .collect();
                let offered = deliveries
                    .into_iter()
                    .filter(|d| held.contains(&d.lane()))
                    .collect();
                // A lane whose offer goes on from what the scheduler was handed takes it at
                // once. The others are read from the store: another node may have written
                // older deliveries to them (a node that stopped, or one whose wake-up is still
                // on its way), and a read of a lane's committed pending deliveries has every
                // one older than the offered ones, in order.
                let to_read = self.scheduler.offer_held(offered, just_taken).await;
                if !to_read.is_empty() {
                    self.load(to_read);
                }
                Ok(())
            }
            Err(e) => {
                // Their lanes may be this node's already, and then nobody else would wake it.
                tracing::warn!(error = %e, "cannot take the lanes of new deliveries; trying again shortly");
                Err(deliveries)
            }
        }
    }

    /// Queues the pending deliveries of lanes this node holds, read meanwhile (a long backlog
    /// takes a while to read; nothing waits for it). A lane already being read is read again
    /// once that read ends. A read that keeps failing is given up: the scheduler does not have
    /// those lanes, so their leases run out and a node (this one, perhaps) takes and reads them
    /// again.
    fn load(self: &Arc<Self>, lanes: Vec<LaneId>) {
        let Ok(mut loading) = self.loading.lock() else {
            return;
        };
        let lanes: Vec<LaneId> = lanes
            .into_iter()
            .filter(|lane| match loading.get_mut(lane) {
                Some(again) => {
                    *again = true;
                    false
                }
                None => {
                    loading.insert(lane.clone(), false);
                    true
                }
            })
            .collect();
        drop(loading);
        if lanes.is_empty() {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let mut lanes = lanes;
            while !lanes.is_empty() {
                node.read_lanes(lanes.clone()).await;
                let Ok(mut loading) = node.loading.lock() else {
                    return;
                };
                lanes.retain(|lane| match loading.get_mut(lane) {
                    Some(again) if *again => {
                        *again = false;
                        true
                    }
                    _ => {
                        loading.remove(lane);
                        false
                    }
                });
            }
        });
    }

    async fn read_lanes(&self, lanes: Vec<LaneId>) {
        for attempt in 1..=LOAD_ATTEMPTS {
            match self.store.pending_in_lanes(lanes.clone()).await {
                Ok(pending) => return self.scheduler.enqueue_held(pending),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "cannot read the deliveries of held lanes")
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn take_abandoned(self: &Arc<Self>, taken: &Taken) {
        loop {
            let asked = Instant::now();
            let claimed = match self.store.claim_abandoned_lanes(CLAIM_BATCH).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for lanes without a node");
                    return;
                }
            };
            if claimed.is_empty() {
                return;
            }
            tracing::info!(lanes = claimed.len(), "took lanes whose lease ran out");
            if let Ok(mut known) = self.known.lock() {
                known.got(&claimed, asked + self.lease);
            }
            let full = claimed.len() == CLAIM_BATCH;
            if let Ok(mut taken) = taken.lock() {
                taken.extend(claimed.iter().cloned());
            }
            self.load(claimed);
            if !full {
                return;
            }
        }
    }

    async fn renew(&self, taken: &Taken) {
        let mut lanes: HashSet<LaneId> = self.scheduler.lanes().await.into_iter().collect();
        if let Ok(mut taken) = taken.lock() {
            lanes.extend(taken.drain());
        }
        let asked = now_ms();
        let asked_at = Instant::now();
        let wanted: Vec<LaneId> = lanes.iter().cloned().collect();
        match self.store.renew_lanes(wanted).await {
            Ok(renewed) => {
                let held: HashSet<&LaneId> = renewed.held.iter().collect();
                let lost: Vec<LaneId> = lanes
                    .iter()
                    .filter(|l| !held.contains(l))
                    .cloned()
                    .collect();
                if let Ok(mut known) = self.known.lock() {
                    known.lost(&lost);
                    known.renewed(&renewed, asked_at + self.lease, Instant::now());
                }
                if !lost.is_empty() {
                    tracing::warn!(lanes = lost.len(), "lanes taken over by another node");
                    self.scheduler.forget(lost);
                }
                let open_for = self
                    .lease
                    .saturating_sub(self.attempt_timeout + MARGIN)
                    .as_millis() as u64;
                self.window.open_until(asked + open_for);
            }
            Err(e) => {
                // The window closes by itself when the leases could run out.
                tracing::warn!(error = %e, "cannot renew lane leases");
                if let Ok(mut taken) = taken.lock() {
                    taken.extend(lanes);
                }
            }
        }
    }
}

async fn recv_wakeup(wakeups: &mut Option<mpsc::UnboundedReceiver<LaneId>>) -> Option<LaneId> {
    match wakeups {
        Some(wakeups) => wakeups.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::super::scheduler::machine_tests::lane;
    use super::*;

    #[test]
    fn a_lane_needs_a_claim_until_a_renewal_has_sized_the_attempt_window() {
        let mut known = KnownLeases::default();
        let start = Instant::now();
        known.got(&[lane("a")], start + Duration::from_secs(40));
        assert!(
            !known.holds(&lane("a")),
            "no renewal yet: no attempt window to compare with"
        );
    }

    #[test]
    fn a_lane_is_held_while_its_lease_lasts_as_long_as_the_last_renewal() {
        let lease = Duration::from_secs(40);
        let mut known = KnownLeases::default();
        let t0 = Instant::now();
        known.got(&[lane("old"), lane("locked"), lane("lost")], t0 + lease);
        let t1 = t0 + Duration::from_secs(13);
        known.lost(&[lane("lost")]);
        known.renewed(
            &RenewedLanes {
                held: vec![lane("old"), lane("locked")],
                extended: vec![lane("old")],
            },
            t1 + lease,
            t1,
        );
        known.got(&[lane("new")], t1 + Duration::from_secs(1) + lease);
        assert!(known.holds(&lane("old")), "extended by the renewal");
        assert!(known.holds(&lane("new")), "claimed after the renewal");
        assert!(
            !known.holds(&lane("locked")),
            "not extended (being written to): its lease ends before the renewed ones"
        );
        assert!(!known.holds(&lane("lost")), "another node took it");
        assert!(!known.holds(&lane("never")));
    }

    #[test]
    fn a_renewal_forgets_the_leases_that_ended() {
        let lease = Duration::from_secs(40);
        let mut known = KnownLeases::default();
        let t0 = Instant::now();
        known.got(&[lane("idle")], t0 + lease);
        let later = t0 + lease + Duration::from_secs(1);
        known.renewed(&RenewedLanes::default(), later + lease, later);
        assert!(known.until.is_empty());
    }
}
