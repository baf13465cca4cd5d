//! Lanes shared by several nodes: leases, wake-ups and circuits (a store of one node holds
//! every lane).

use super::deliveries::pending_under;
use super::*;

#[async_trait::async_trait]
pub trait LaneStore: Send + Sync {
    /// Pending deliveries of these lanes, each lane in sequence order.
    async fn pending_in_lanes(
        &self,
        lanes: Vec<LaneId>,
    ) -> Result<Vec<PendingDelivery>, StoreError>;
    /// Whether several hub nodes may share this store; they then deliver a lane only while
    /// they hold its lease (the methods below). A store of one node holds every lane.
    fn shared(&self) -> bool {
        false
    }
    /// Takes `lanes` for this node, except those another node holds a live lease on; returns
    /// the lanes taken (or renewed), each saying whether this node held it already.
    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<ClaimedLane>, StoreError> {
        Ok(lanes
            .into_iter()
            .map(|lane| ClaimedLane { lane, kept: true })
            .collect())
    }
    /// Takes up to `limit` lanes with pending deliveries whose lease ran out (their node
    /// stopped or died) or that nobody took.
    async fn claim_abandoned_lanes(&self, _limit: usize) -> Result<Vec<LaneId>, StoreError> {
        Ok(Vec::new())
    }
    /// Extends this node's leases on `lanes`; says which it still holds and which it extended.
    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<RenewedLanes, StoreError> {
        Ok(RenewedLanes {
            held: lanes.clone(),
            extended: lanes,
        })
    }
    /// Tells the nodes sharing this store that `origin`'s circuit is open until `open_until`
    /// (ms since the epoch), or closed again (`None`).
    async fn share_circuit(
        &self,
        origin: String,
        open_until: Option<u64>,
    ) -> Result<(), StoreError>;
    /// The circuits some node reported open and that are still open, with until when.
    async fn open_circuits(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Gives up every lane this node holds (at shutdown, once no attempt is in flight).
    async fn release_lanes(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Lanes of this node that got new pending deliveries written by another node.
    fn lane_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<LaneId>> {
        None
    }
    /// Says this node is alive, and how many nodes (this one included) said so lately: they
    /// share `delivery.max_rate_per_origin` equally.
    async fn live_nodes(&self) -> Result<usize, StoreError> {
        Ok(1)
    }
}

#[async_trait::async_trait]
impl<B: Backend> LaneStore for TableStore<B> {
    async fn pending_in_lanes(
        &self,
        lanes: Vec<LaneId>,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            let keys: Vec<Vec<u8>> = lanes.iter().map(LaneId::key).collect();
            pending_under(&sealing, tables, &keys)
        })
        .await
    }

    fn shared(&self) -> bool {
        self.backend.shared()
    }

    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<ClaimedLane>, StoreError> {
        self.backend.claim_lanes(lanes).await
    }

    async fn claim_abandoned_lanes(&self, limit: usize) -> Result<Vec<LaneId>, StoreError> {
        self.backend.claim_abandoned_lanes(limit).await
    }

    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<RenewedLanes, StoreError> {
        self.backend.renew_lanes(lanes).await
    }

    async fn share_circuit(
        &self,
        origin: String,
        open_until: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write_lingering(move |tables| match open_until {
            Some(until) => tables.insert(Table::Circuits, origin.as_bytes(), &until.to_be_bytes()),
            None => tables.remove(Table::Circuits, origin.as_bytes()),
        })
        .await
    }

    async fn open_circuits(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|tables| {
            let now = now_ms();
            let mut open = Vec::new();
            for (origin, until) in collect_prefix(tables, Table::Circuits, &[])? {
                let until = until
                    .as_slice()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("a circuit entry is not a time".into()))?;
                if until > now {
                    open.push((String::from_utf8_lossy(&origin).into_owned(), until));
                }
            }
            Ok(open)
        })
        .await
    }

    async fn release_lanes(&self) -> Result<(), StoreError> {
        self.backend.release_lanes().await
    }

    fn lane_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<LaneId>> {
        self.backend.lane_wakeups()
    }

    async fn live_nodes(&self) -> Result<usize, StoreError> {
        self.backend.live_nodes().await
    }
}
