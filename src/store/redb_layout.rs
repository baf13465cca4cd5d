//! Where the embedded file keeps each table's records. Most tables are a tree of their own.
//! The records that one inbound push or one published event changes together share two trees,
//! grouped by their owner: a subscription's inbound events, counters, task progress and replay
//! entries under the subscription, a task's events and folded task under the task. A commit's
//! writes for one owner then fall on neighbouring pages of two trees instead of on a page in
//! each of seven: a third fewer bytes written per inbound push (docs/PERFORMANCE.md).
//!
//! The lanes stay in a tree of their own although every event adds to its task's: grouped
//! under the task, measured, the writer was slower per event once delivery fell behind. (The
//! lanes keep every delivery until retention removes its task; the pending index, which
//! acknowledgments edit, holds only what is not delivered yet and is a tree of its own too.)
//!
//! In its group's tree a record's key is its owner, one byte naming its table, then the rest
//! of its table key. A table's records keep their order, and a scan across owners (every task
//! of a tenant, a backup) seeks from one owner's records of the table to the next owner's.

use ::redb::{Database, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::StoreError;
use super::tables::{Entries, Table, Visit};

type Bytes = &'static [u8];

/// The shared trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    BySubscription,
    ByTask,
}

impl Group {
    pub const ALL: [Group; 2] = [Group::BySubscription, Group::ByTask];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn tree(self) -> TableDefinition<'static, Bytes, Bytes> {
        TableDefinition::new(match self {
            Group::BySubscription => "by_subscription",
            Group::ByTask => "by_task",
        })
    }
}

/// Which part of a table key names its owner.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// The key's first text parts (`keys::text_key`).
    Parts(usize),
    /// The whole key, as bytes: the owner is written as a text part in the tree.
    WholeKey,
}

/// A table kept in a group's tree.
#[derive(Debug, Clone, Copy)]
pub struct Grouped {
    pub group: Group,
    kind: u8,
    owner: Owner,
}

/// Where `table` lives, if in a group. Within an owner, its events come before the records
/// rewritten at each of them, so that the newest events and those records share a page.
pub fn grouped(table: Table) -> Option<Grouped> {
    let (group, kind, owner) = match table {
        Table::InboundEvents => (Group::BySubscription, 1, Owner::Parts(1)),
        Table::InboundCounters => (Group::BySubscription, 2, Owner::WholeKey),
        Table::InboundTasks => (Group::BySubscription, 3, Owner::Parts(1)),
        Table::Replay => (Group::BySubscription, 4, Owner::Parts(1)),
        Table::ReplayByTime => (Group::BySubscription, 5, Owner::Parts(1)),
        Table::Events => (Group::ByTask, 1, Owner::Parts(2)),
        Table::Tasks => (Group::ByTask, 2, Owner::Parts(2)),
        _ => return None,
    };
    Some(Grouped { group, kind, owner })
}

/// The length of the first `parts` text parts of `key`, if it has them.
fn parts_len(key: &[u8], parts: usize) -> Option<usize> {
    let mut at = 0usize;
    for _ in 0..parts {
        let length = key.get(at..at + 4)?;
        at += 4 + u32::from_be_bytes(length.try_into().ok()?) as usize;
        if key.len() < at {
            return None;
        }
    }
    Some(at)
}

/// A byte after every table's: seeking to `owner ‖ PAST` skips to the next owner.
const PAST: u8 = 0xFF;

impl Grouped {
    /// The owner's length in a tree key (where the table byte is).
    fn owner_len_in_tree(&self, tree_key: &[u8]) -> Option<usize> {
        parts_len(
            tree_key,
            match self.owner {
                Owner::Parts(parts) => parts,
                Owner::WholeKey => 1,
            },
        )
    }

    /// The key of a table key in the tree; `None` when the key does not hold a whole owner.
    pub fn tree_key(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut tree_key = Vec::with_capacity(key.len() + 5);
        match self.owner {
            Owner::Parts(parts) => {
                let owner = parts_len(key, parts)?;
                tree_key.extend_from_slice(&key[..owner]);
                tree_key.push(self.kind);
                tree_key.extend_from_slice(&key[owner..]);
            }
            Owner::WholeKey => {
                tree_key.extend_from_slice(&u32::try_from(key.len()).ok()?.to_be_bytes());
                tree_key.extend_from_slice(key);
                tree_key.push(self.kind);
            }
        }
        Some(tree_key)
    }

    /// The table key of a tree key of this table.
    fn table_key(&self, tree_key: &[u8], owner_len: usize) -> Vec<u8> {
        match self.owner {
            Owner::Parts(_) => [&tree_key[..owner_len], &tree_key[owner_len + 1..]].concat(),
            Owner::WholeKey => tree_key[4..owner_len].to_vec(),
        }
    }

    /// The table's entries under `prefix` from `start`, in key order, as `Tables::scan`.
    pub fn scan(
        &self,
        tree: &impl ReadableTable<Bytes, Bytes>,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let from = start.max(prefix);
        if !from.starts_with(prefix) {
            // After every key under the prefix.
            return Ok(());
        }
        if let (Owner::Parts(_), Some(tree_prefix)) = (self.owner, self.tree_key(prefix)) {
            // Within one owner: one range of the tree, every key of it this table's.
            return self.scan_owners(tree, &tree_prefix, from, visit);
        }
        match self.owner {
            Owner::Parts(_) => self.scan_owners(tree, prefix, from, visit),
            Owner::WholeKey => {
                // Owners are text parts in the tree, ordered by length first: read them all,
                // then visit in the table's order. Only a backup reads them this way.
                let mut entries = Vec::new();
                self.scan_owners(tree, &[], &[], &mut |key, value| {
                    if key.starts_with(prefix) && key >= from {
                        entries.push((key.to_vec(), value.to_vec()));
                    }
                    Ok(true)
                })?;
                entries.sort();
                for (key, value) in entries {
                    if !visit(&key, &value)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Visits the table's entries of every owner the tree holds from `from` on, seeking past
    /// the other tables' entries, as long as the tree keys start with `prefix`.
    fn scan_owners(
        &self,
        tree: &impl ReadableTable<Bytes, Bytes>,
        prefix: &[u8],
        from: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let mut seek = match self.owner {
            Owner::Parts(_) => self.tree_key(from).unwrap_or_else(|| from.to_vec()),
            Owner::WholeKey => Vec::new(),
        };
        'seeking: loop {
            for entry in tree
                .range::<&[u8]>(seek.as_slice()..)
                .map_err(StoreError::storage)?
            {
                let (key, value) = entry.map_err(StoreError::storage)?;
                let key = key.value();
                if !key.starts_with(prefix) {
                    return Ok(());
                }
                let owner_len = self
                    .owner_len_in_tree(key)
                    .ok_or_else(|| corrupt_key(key))?;
                let kind = *key.get(owner_len).ok_or_else(|| corrupt_key(key))?;
                if kind != self.kind {
                    seek = key[..owner_len].to_vec();
                    seek.push(if kind < self.kind { self.kind } else { PAST });
                    continue 'seeking;
                }
                if !visit(&self.table_key(key, owner_len), value.value())? {
                    return Ok(());
                }
            }
            return Ok(());
        }
    }
}

fn corrupt_key(key: &[u8]) -> StoreError {
    StoreError::Corrupt(format!(
        "a key of {} bytes in a grouped tree has no owner",
        key.len()
    ))
}

/// Records moved per transaction when an older file's tables move into the groups.
const MOVE_BATCH: usize = 10_000;
/// How often a long move says how far it is.
const PROGRESS_EVERY: u64 = 1_000_000;

/// Moves the records of the grouped tables that an older file keeps in trees of their own into
/// their groups, a batch per transaction: a move interrupted by a crash goes on at the next
/// open. How many records moved.
pub fn move_into_groups(
    db: &Database,
    replay_tree: TableDefinition<Bytes, u64>,
) -> Result<u64, StoreError> {
    let mut moved = 0u64;
    let mut next_report = 0u64;
    for table in Table::ALL {
        let Some(grouped) = grouped(table) else {
            continue;
        };
        loop {
            let txn = db.begin_write().map_err(StoreError::storage)?;
            let exists = txn
                .list_tables()
                .map_err(StoreError::storage)?
                .any(|t| t.name() == table.name());
            if !exists {
                break;
            }
            if next_report == 0 {
                // Once per upgraded file; about 100,000 records a second, so a large file
                // takes a while before the hub serves.
                tracing::info!(
                    "moving the store's records to the grouped layout before serving (once)"
                );
                next_report = PROGRESS_EVERY;
            } else if moved >= next_report {
                tracing::info!(records = moved, "still moving the store's records");
                next_report += PROGRESS_EVERY;
            }
            let batch = if table == Table::Replay {
                take_batch(&txn, replay_tree, |v: u64| v.to_be_bytes().to_vec())?
            } else {
                take_batch(
                    &txn,
                    TableDefinition::<Bytes, Bytes>::new(table.name()),
                    |v: &[u8]| v.to_vec(),
                )?
            };
            let last = batch.len() < MOVE_BATCH;
            {
                let mut tree = txn
                    .open_table(grouped.group.tree())
                    .map_err(StoreError::storage)?;
                for (key, value) in &batch {
                    let tree_key = grouped.tree_key(key).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "a key of {} bytes in table {} has no owner",
                            key.len(),
                            table.name()
                        ))
                    })?;
                    tree.insert(tree_key.as_slice(), value.as_slice())
                        .map_err(StoreError::storage)?;
                }
            }
            if last {
                let deleted = if table == Table::Replay {
                    txn.delete_table(replay_tree)
                } else {
                    txn.delete_table(TableDefinition::<Bytes, Bytes>::new(table.name()))
                };
                deleted.map_err(StoreError::storage)?;
            }
            txn.commit().map_err(StoreError::storage)?;
            moved += batch.len() as u64;
            if last {
                break;
            }
        }
    }
    Ok(moved)
}

/// Removes up to `MOVE_BATCH` records from the front of an old tree and returns them.
fn take_batch<V: ::redb::Value + 'static>(
    txn: &WriteTransaction,
    definition: TableDefinition<Bytes, V>,
    value_bytes: impl Fn(V::SelfType<'_>) -> Vec<u8>,
) -> Result<Entries, StoreError> {
    let mut old = txn.open_table(definition).map_err(StoreError::storage)?;
    let mut batch = Vec::new();
    for entry in old.iter().map_err(StoreError::storage)?.take(MOVE_BATCH) {
        let (key, value) = entry.map_err(StoreError::storage)?;
        batch.push((key.value().to_vec(), value_bytes(value.value())));
    }
    for (key, _) in &batch {
        old.remove(key.as_slice()).map_err(StoreError::storage)?;
    }
    Ok(batch)
}
