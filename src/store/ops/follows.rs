//! Gateway follows: the agents' tasks the hub follows with SubscribeToTask, leased to one
//! node at a time.

use super::*;

#[async_trait::async_trait]
pub trait FollowStore: Send + Sync {
    /// Records that this node (`follow.node`) follows a task, unless another node holds a live
    /// lease on it; whether this node holds it now.
    async fn start_follow(&self, follow: FollowRecord) -> Result<bool, StoreError>;
    /// Forgets a follow that ended for good (its task finished, or the agent gave no stream),
    /// if `node` holds it.
    async fn end_follow(
        &self,
        tenant: String,
        task_id: String,
        node: String,
    ) -> Result<(), StoreError>;
    /// Renews `node`'s follows until `lease_until_ms` and takes at most `take_at_most` of the
    /// others whose lease ran out (or, with `take_all`, of any: a store no other node shares);
    /// every follow `node` holds now. A `lease_until_ms` in the past gives them up.
    async fn hold_follows(
        &self,
        node: String,
        lease_until_ms: u64,
        take_all: bool,
        take_at_most: usize,
    ) -> Result<Vec<FollowRecord>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> FollowStore for TableStore<B> {
    async fn start_follow(&self, follow: FollowRecord) -> Result<bool, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            let key = task_key(&follow.tenant, &follow.task_id);
            let held: Option<FollowRecord> = get_record(&sealing, tables, Table::Follows, &key)?;
            if held.is_some_and(|h| h.node != follow.node && h.lease_until_ms > now_ms()) {
                return Ok(false);
            }
            tables.insert(
                Table::Follows,
                &key,
                &encode_record(&sealing, Table::Follows, &follow)?,
            )?;
            Ok(true)
        })
        .await
    }

    async fn end_follow(
        &self,
        tenant: String,
        task_id: String,
        node: String,
    ) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            let key = task_key(&tenant, &task_id);
            let held: Option<FollowRecord> = get_record(&sealing, tables, Table::Follows, &key)?;
            if held.is_some_and(|h| h.node == node) {
                tables.remove(Table::Follows, &key)?;
            }
            Ok(())
        })
        .await
    }

    async fn hold_follows(
        &self,
        node: String,
        lease_until_ms: u64,
        take_all: bool,
        take_at_most: usize,
    ) -> Result<Vec<FollowRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            let now = now_ms();
            let mut held = Vec::new();
            let mut taken = 0;
            for (key, value) in collect_prefix(tables, Table::Follows, &[])? {
                let mut follow: FollowRecord = decode_record(&sealing, Table::Follows, &value)?;
                let ours = follow.node == node;
                let free = follow.lease_until_ms <= now || take_all;
                if ours || (free && taken < take_at_most) {
                    taken += usize::from(!ours);
                    follow.node = node.clone();
                    follow.lease_until_ms = lease_until_ms;
                    tables.insert(
                        Table::Follows,
                        &key,
                        &encode_record(&sealing, Table::Follows, &follow)?,
                    )?;
                    held.push(follow);
                }
            }
            Ok(held)
        })
        .await
    }
}
