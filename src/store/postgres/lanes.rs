//! Lane leases on PostgreSQL, so that several hub nodes share one database and each lane is
//! delivered by one node at a time.
//!
//! Every lane with pending deliveries has a row in `hub_lane_leases` (a trigger adds it in the
//! transaction that adds the deliveries). A node delivers a lane only while it holds the
//! lease: it takes the lanes of the deliveries it accepted itself (`claim`), takes lanes whose
//! lease ran out because their node stopped (`claim_abandoned`), and extends what it holds
//! (`renew`). Claims use `FOR UPDATE SKIP LOCKED`, so nodes never wait for each other and never
//! take the same lane; a lane skipped that no other node holds (its row was locked for a moment
//! by a publish or this node's renewal) is claimed again a few milliseconds later. When a node writes a pending delivery into a lane another node holds,
//! the trigger notifies that node (LISTEN/NOTIFY), which loads it without polling.
//!
//! Lease times come from the database's clock, so the nodes' clocks do not matter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::{Client, fallible_iterator::FallibleIterator};
use tokio::sync::mpsc;

use super::connect::{Target, close, connect, pg_error};
use crate::store::{ClaimedLane, LaneId, RenewedLanes, StoreError};

/// A node that said it is alive this recently counts as one (nodes say so once a second).
const NODE_ALIVE: Duration = Duration::from_secs(3);

/// The waits before a claim looks again at lanes it skipped although no other node holds
/// them: another transaction had their rows locked (a publish writing to them, this node's
/// renewal), for a few milliseconds. About 60 ms in all; after that, the lane's next offer or
/// its lease running out takes it.
const CLAIM_RETRIES: [Duration; 5] = [
    Duration::from_millis(2),
    Duration::from_millis(4),
    Duration::from_millis(8),
    Duration::from_millis(16),
    Duration::from_millis(32),
];

/// How a node takes part in lane leasing.
#[derive(Clone)]
pub struct LeaseSettings {
    /// This node's name in the lease table: unique per process.
    pub node: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
}

pub struct Lanes {
    target: Target,
    timeout: Duration,
    settings: LeaseSettings,
    /// One connection for lease statements, opened again after it fails.
    connection: Mutex<Option<Client>>,
    wakeups: Mutex<Option<mpsc::UnboundedReceiver<LaneId>>>,
    stop: Arc<AtomicBool>,
}

fn keys(lanes: &[LaneId]) -> Vec<Vec<u8>> {
    lanes.iter().map(LaneId::key).collect()
}

fn lanes_of(rows: &[postgres::Row]) -> Vec<LaneId> {
    rows.iter()
        .filter_map(|row| LaneId::from_key(row.get::<_, &[u8]>(0)))
        .collect()
}

impl Lanes {
    /// Starts listening for this node's wakeups. Blocking.
    pub fn start(
        target: Target,
        timeout: Duration,
        settings: LeaseSettings,
    ) -> Result<Lanes, StoreError> {
        let mut client = connect(&target, timeout)?;
        let schema: String = client
            .query_one("SELECT current_schema()", &[])
            .map_err(pg_error)?
            .get(0);
        let (wake, wakeups) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Listener {
            target: target.clone(),
            timeout,
            channel: format!("hub_lanes_{schema}"),
            node: settings.node.clone(),
            wake,
            stop: stop.clone(),
        };
        std::thread::Builder::new()
            .name("lane-wakeups".to_string())
            .spawn(move || listener.run())
            .map_err(|e| StoreError::Storage(format!("cannot start the listener: {e}")))?;
        Ok(Lanes {
            target,
            timeout,
            settings,
            connection: Mutex::new(Some(client)),
            wakeups: Mutex::new(Some(wakeups)),
            stop,
        })
    }

    pub fn wakeups(&self) -> Option<mpsc::UnboundedReceiver<LaneId>> {
        self.wakeups.lock().ok().and_then(|mut w| w.take())
    }

    fn lease_ms(&self) -> i64 {
        self.settings.lease.as_millis() as i64
    }

    /// Runs `f` on the lease connection (opening it when needed). Blocking.
    fn with_client<R>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error>,
    ) -> Result<R, StoreError> {
        let mut slot = self
            .connection
            .lock()
            .map_err(|_| StoreError::Storage("the lease connection is poisoned".to_string()))?;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(connect(&self.target, self.timeout)?);
        }
        let client = slot
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no lease connection".to_string()))?;
        f(client).map_err(pg_error)
    }

    /// Takes the lanes nobody else holds (renewing those this node holds). A lane still
    /// named for this node is kept: no other node took it since this one did (taking it sets
    /// the taker's name, and only this node's claims set this node's).
    pub fn claim(&self, lanes: &[LaneId]) -> Result<Vec<ClaimedLane>, StoreError> {
        let mut claimed = Vec::new();
        let mut wanted = keys(lanes);
        for wait in std::iter::once(None).chain(CLAIM_RETRIES.map(Some)) {
            if let Some(wait) = wait {
                std::thread::sleep(wait);
            }
            let (got, skipped) = self.claim_once(&wanted)?;
            claimed.extend(got);
            if skipped.is_empty() {
                break;
            }
            wanted = skipped;
        }
        Ok(claimed)
    }

    /// One claim of `keys`: the lanes taken, and those skipped because their rows were locked
    /// although no other node holds them.
    fn claim_once(&self, keys: &[Vec<u8>]) -> Result<(Vec<ClaimedLane>, Vec<Vec<u8>>), StoreError> {
        let (node, lease) = (&self.settings.node, self.lease_ms());
        self.with_client(|client| {
            let rows = client.query(
                "UPDATE hub_lane_leases l SET node = $1, expires_at = hub_now_ms() + $2
                 FROM (
                     SELECT lane, node FROM hub_lane_leases
                     WHERE lane = ANY($3) AND (node IS NULL OR node = $1 OR expires_at <= hub_now_ms())
                     FOR UPDATE SKIP LOCKED) before
                 WHERE l.lane = before.lane
                 RETURNING l.lane, before.node IS NOT DISTINCT FROM $1",
                &[node, &lease, &keys],
            )?;
            let taken: Vec<&[u8]> = rows.iter().map(|row| row.get(0)).collect();
            let skipped = if taken.len() < keys.len() {
                client
                    .query(
                        "SELECT lane FROM hub_lane_leases
                         WHERE lane = ANY($2) AND NOT (lane = ANY($3))
                             AND (node IS NULL OR node = $1 OR expires_at <= hub_now_ms())",
                        &[node, &keys, &taken],
                    )?
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            } else {
                Vec::new()
            };
            let claimed = rows
                .iter()
                .filter_map(|row| {
                    let lane = LaneId::from_key(row.get::<_, &[u8]>(0))?;
                    Some(ClaimedLane {
                        lane,
                        kept: row.get(1),
                    })
                })
                .collect();
            Ok((claimed, skipped))
        })
    }

    pub fn claim_abandoned(&self, limit: usize) -> Result<Vec<LaneId>, StoreError> {
        let (node, lease, limit) = (&self.settings.node, self.lease_ms(), limit as i64);
        self.with_client(|client| {
            let mut txn = client.transaction()?;
            let picked: Vec<Vec<u8>> = txn
                .query(
                    "SELECT lane FROM hub_lane_leases WHERE expires_at <= hub_now_ms()
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
                    &[&limit],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if picked.is_empty() {
                txn.commit()?;
                return Ok(Vec::new());
            }
            // A lane with nothing pending any more needs no lease: its row goes.
            let idle: Vec<Vec<u8>> = txn
                .query(
                    "DELETE FROM hub_lane_leases l WHERE l.lane = ANY($1) AND NOT EXISTS (
                         SELECT 1 FROM hub_pending p
                         WHERE p.k > l.lane AND p.k <= l.lane || '\\xffffffffffffffff'::bytea)
                     RETURNING l.lane",
                    &[&picked],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let rows = txn.query(
                "UPDATE hub_lane_leases SET node = $1, expires_at = hub_now_ms() + $2
                 WHERE lane = ANY($3) AND lane <> ALL($4) RETURNING lane",
                &[node, &lease, &picked, &idle],
            )?;
            txn.commit()?;
            Ok(lanes_of(&rows))
        })
    }

    /// Gives up every lane of this node: nobody holds them, any node may take them now.
    pub fn release_all(&self) -> Result<(), StoreError> {
        let node = &self.settings.node;
        self.with_client(|client| {
            let released = client.execute(
                "UPDATE hub_lane_leases SET node = NULL, expires_at = 0 WHERE node = $1",
                &[node],
            )?;
            // The others' share of each origin's rate grows at their next heartbeat.
            client.execute("DELETE FROM hub_nodes WHERE node = $1", &[node])?;
            tracing::info!(lanes = released, "gave up lane leases");
            Ok(())
        })
    }

    /// Records that this node is alive; counts the nodes that did within `NODE_ALIVE`
    /// (this one included). Rows of nodes gone for an hour are removed.
    pub fn heartbeat(&self) -> Result<usize, StoreError> {
        let (node, alive) = (&self.settings.node, NODE_ALIVE.as_millis() as i64);
        self.with_client(|client| {
            let mut txn = client.transaction()?;
            txn.execute(
                "INSERT INTO hub_nodes (node, seen_at) VALUES ($1, hub_now_ms())
                 ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at",
                &[node],
            )?;
            txn.execute(
                "DELETE FROM hub_nodes WHERE seen_at < hub_now_ms() - 3600000",
                &[],
            )?;
            let live: i64 = txn
                .query_one(
                    "SELECT count(*) FROM hub_nodes WHERE seen_at > hub_now_ms() - $1",
                    &[&alive],
                )?
                .get(0);
            txn.commit()?;
            Ok(live.max(1) as usize)
        })
    }

    pub fn renew(&self, lanes: &[LaneId]) -> Result<RenewedLanes, StoreError> {
        let (node, lease, keys) = (&self.settings.node, self.lease_ms(), keys(lanes));
        self.with_client(|client| {
            let mut txn = client.transaction()?;
            // A lane locked right now is being written to by a publish; it is still ours and
            // is extended at the next renewal.
            let extended = txn.query(
                "UPDATE hub_lane_leases SET expires_at = hub_now_ms() + $2
                 WHERE lane IN (
                     SELECT lane FROM hub_lane_leases WHERE node = $1 AND lane = ANY($3)
                     FOR UPDATE SKIP LOCKED)
                 RETURNING lane",
                &[node, &lease, &keys],
            )?;
            let held = txn.query(
                "SELECT lane FROM hub_lane_leases WHERE node = $1 AND lane = ANY($2)",
                &[node, &keys],
            )?;
            txn.commit()?;
            Ok(RenewedLanes {
                held: lanes_of(&held),
                extended: lanes_of(&extended),
            })
        })
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        close(self.connection.get_mut().ok().and_then(Option::take));
    }
}

/// Receives the notifications of lanes that got new pending deliveries while held by this
/// node, on a connection of its own.
struct Listener {
    target: Target,
    timeout: Duration,
    channel: String,
    node: String,
    wake: mpsc::UnboundedSender<LaneId>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn run(self) {
        let mut backoff = Duration::from_millis(100);
        while !self.stop.load(Ordering::Relaxed) && !self.wake.is_closed() {
            match self.listen() {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "lane wakeups interrupted; listening again shortly");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Listens until told to stop; an error when the connection fails.
    fn listen(&self) -> Result<(), StoreError> {
        let mut client = connect(&self.target, self.timeout)?;
        let quoted = self.channel.replace('"', "\"\"");
        client
            .batch_execute(&format!("LISTEN \"{quoted}\""))
            .map_err(pg_error)?;
        let prefix = format!("{} ", self.node);
        loop {
            if self.stop.load(Ordering::Relaxed) || self.wake.is_closed() {
                return Ok(());
            }
            {
                let mut notifications = client.notifications();
                let mut batch = notifications.timeout_iter(Duration::from_millis(500));
                while let Some(notification) = batch.next().map_err(pg_error)? {
                    let Some(hex) = notification.payload().strip_prefix(&prefix) else {
                        continue;
                    };
                    if let Some(lane) = hex_bytes(hex).as_deref().and_then(LaneId::from_key) {
                        let _ = self.wake.send(lane);
                    }
                }
            }
            if client.is_closed() {
                return Err(StoreError::Unavailable(
                    "the listening connection closed".to_string(),
                ));
            }
        }
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::schema::{create_schema, drop_schema, in_schema, migrate_client};
    use super::*;
    use crate::store::postgres::parse_url;

    #[test]
    fn hex_decodes_what_postgres_encodes() {
        assert_eq!(hex_bytes("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(hex_bytes("0"), None);
        assert_eq!(hex_bytes("zz"), None);
    }

    /// A claim meeting a lane whose row another transaction holds for a moment (here a
    /// stand-in for a publish or this node's renewal) takes it once the row is free, rather
    /// than leaving it to the lease running out.
    #[test]
    #[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
    fn a_claim_takes_a_lane_whose_row_was_locked_for_a_moment() {
        let url = std::env::var("A2A_PUSH_HUB_TEST_POSTGRES_URL")
            .expect("needs A2A_PUSH_HUB_TEST_POSTGRES_URL");
        let schema = format!("lanes_{}", uuid::Uuid::new_v4().simple());
        create_schema(&url, &schema).unwrap();
        let target = parse_url(&in_schema(&url, &schema)).unwrap();
        let timeout = Duration::from_secs(10);
        let mut holder = connect(&target, timeout).unwrap();
        migrate_client(&mut holder).unwrap();
        let lane = LaneId {
            tenant: String::new(),
            task_id: "t1".to_string(),
            config_id: "c1".to_string(),
        };
        holder
            .execute(
                "INSERT INTO hub_lane_leases (lane) VALUES ($1)",
                &[&lane.key()],
            )
            .unwrap();
        let lanes = Lanes::start(
            target,
            timeout,
            LeaseSettings {
                node: "n1".to_string(),
                lease: Duration::from_secs(30),
            },
        )
        .unwrap();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let holding = std::thread::spawn(move || {
            let mut txn = holder.transaction().unwrap();
            txn.query("SELECT lane FROM hub_lane_leases FOR UPDATE", &[])
                .unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            txn.commit().unwrap();
            close(holder);
        });
        is_locked.recv().unwrap();
        let claimed = lanes.claim(std::slice::from_ref(&lane)).unwrap();
        holding.join().unwrap();
        assert_eq!(
            claimed,
            [ClaimedLane {
                lane: lane.clone(),
                kept: false
            }]
        );
        drop(lanes);
        drop_schema(&url, &schema).unwrap();
    }
}
