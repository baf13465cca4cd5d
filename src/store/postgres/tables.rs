//! The store's tables as database tables (`bytea` key and value), read and written through
//! prepared statements, with writes buffered and sent in batches.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use postgres::types::Type;

use super::*;

/// Rows a scan reads per round trip.
pub(super) const SCAN_PAGE: i64 = 256;

/// The statements of a table. Those that look keys up by arrays (`GetMany`, `DeleteMany`, `ScanMany`)
/// are planned at each use rather than prepared once: a prepared statement's cached plan is
/// costed on the table as it was (a table empty when the hub started is scanned whole), and a
/// scan of a grown table took 25 ms where its index takes tens of microseconds. Sent with
/// their parameter types, they still cost one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Op {
    Get,
    GetMany,
    PutMany,
    DeleteMany,
    /// Every entry under each of several prefixes, given as `[start, end)` ranges.
    ScanMany,
    ScanBounded,
    ScanOpen,
}

pub(super) fn sql(table: Table, op: Op) -> String {
    let name = table.name();
    match op {
        Op::Get => format!("SELECT v FROM hub_{name} WHERE k = $1"),
        Op::GetMany => format!("SELECT k, v FROM hub_{name} WHERE k = ANY($1)"),
        Op::PutMany => format!(
            "INSERT INTO hub_{name} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[])
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        ),
        Op::DeleteMany => format!("DELETE FROM hub_{name} WHERE k = ANY($1)"),
        Op::ScanMany => format!(
            "SELECT t.k, t.v FROM unnest($1::bytea[], $2::bytea[]) AS r(lo, hi)
             JOIN hub_{name} t ON t.k >= r.lo AND t.k < r.hi"
        ),
        Op::ScanBounded => format!(
            "SELECT k, v FROM hub_{name} WHERE k >= $1 AND k < $2 ORDER BY k LIMIT {SCAN_PAGE}"
        ),
        Op::ScanOpen => {
            format!("SELECT k, v FROM hub_{name} WHERE k >= $1 ORDER BY k LIMIT {SCAN_PAGE}")
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`; `None` if there is none.
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The entries of `entries` under `prefix`, from `start` on, in key order.
fn under<'a>(
    entries: &'a BTreeMap<Vec<u8>, Known>,
    prefix: &'a [u8],
    start: &[u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Known)> {
    entries
        .range::<[u8], _>((Bound::Included(start.max(prefix)), Bound::Unbounded))
        .take_while(move |(key, _)| key.starts_with(prefix))
}

/// A connection and the statements prepared on it.
pub(super) struct Connection {
    pub(super) client: Client,
    pub(super) statements: HashMap<(Table, Op), Statement>,
}

/// What a transaction knows of one entry: its value (`None`: absent), and whether that is a
/// write not yet sent to the database.
pub(super) struct Known {
    value: Option<Vec<u8>>,
    unsent: bool,
}

/// The tables inside one transaction of a connection.
///
/// Writes are kept here and sent together, a statement per table, before a scan of their
/// table and at the end (`flush`); reads see them first. A transaction thus costs a round trip
/// per read of an entry it has not seen, not one per statement the operations make.
pub(super) struct PgTables<'c, C> {
    /// A transaction for writes; the client itself for reads, where each statement sees the
    /// committed state of its moment (no read needs more, and it saves two round trips).
    txn: RefCell<C>,
    pub(super) statements: RefCell<&'c mut HashMap<(Table, Op), Statement>>,
    /// In key order, so that the entries under a prefix are a range.
    known: RefCell<HashMap<Table, BTreeMap<Vec<u8>, Known>>>,
    /// Prefixes whose every entry is in `known` (read ahead): scans of them need no round trip.
    whole: RefCell<HashMap<Table, BTreeSet<Vec<u8>>>>,
    /// Writes kept and not sent yet.
    unsent: std::cell::Cell<usize>,
}

/// Writes a transaction keeps before it sends them: bounds its memory whatever the batch.
pub(super) const MAX_UNSENT: usize = 4096;

impl<'c, C: GenericClient> PgTables<'c, C> {
    pub(super) fn new(txn: C, statements: &'c mut HashMap<(Table, Op), Statement>) -> Self {
        PgTables {
            txn: RefCell::new(txn),
            statements: RefCell::new(statements),
            known: RefCell::new(HashMap::new()),
            whole: RefCell::new(HashMap::new()),
            unsent: std::cell::Cell::new(0),
        }
    }

    fn statement(&self, table: Table, op: Op) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.borrow().get(&(table, op)) {
            return Ok(statement.clone());
        }
        let statement = self
            .txn
            .borrow_mut()
            .prepare(&sql(table, op))
            .map_err(pg_error)?;
        self.statements
            .borrow_mut()
            .insert((table, op), statement.clone());
        Ok(statement)
    }

    /// Waits for the schema's write lock, held until this transaction ends. Writes of every
    /// node take turns, so that each reads what the one before it wrote (a task's next
    /// sequence number, a lane's bookkeeping) exactly as on the embedded store; a commit
    /// carries a whole batch, so the turns are few.
    pub(super) fn lock_for_writing(&self) -> Result<(), StoreError> {
        self.txn
            .borrow_mut()
            .batch_execute(
                "SELECT pg_advisory_xact_lock(hashtext('a2a-push-hub write ' || current_schema()))",
            )
            .map_err(pg_error)
    }

    fn write(&self, table: Table, key: &[u8], value: Option<Vec<u8>>) -> Result<(), StoreError> {
        self.known.borrow_mut().entry(table).or_default().insert(
            key.to_vec(),
            Known {
                value,
                unsent: true,
            },
        );
        self.unsent.set(self.unsent.get() + 1);
        if self.unsent.get() >= MAX_UNSENT {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the writes of `table` not yet sent.
    fn flush_table(&self, table: Table) -> Result<(), StoreError> {
        let (mut put_keys, mut put_values, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(entries) = self.known.borrow_mut().get_mut(&table) {
            for (key, known) in entries.iter_mut().filter(|(_, k)| k.unsent) {
                known.unsent = false;
                match &known.value {
                    Some(value) => {
                        put_keys.push(key.clone());
                        put_values.push(value.clone());
                    }
                    None => deleted.push(key.clone()),
                }
            }
        }
        if !put_keys.is_empty() {
            let statement = self.statement(table, Op::PutMany)?;
            self.txn
                .borrow_mut()
                .execute(&statement, &[&put_keys, &put_values])
                .map_err(pg_error)?;
        }
        if !deleted.is_empty() {
            self.txn
                .borrow_mut()
                .execute_typed(
                    &sql(table, Op::DeleteMany),
                    &[(&deleted, Type::BYTEA_ARRAY)],
                )
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Sends every write not yet sent (then the transaction may commit) and forgets what it
    /// read: the database has it all now.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        let tables: Vec<Table> = self.known.borrow().keys().copied().collect();
        for table in tables {
            self.flush_table(table)?;
        }
        self.known.borrow_mut().clear();
        self.whole.borrow_mut().clear();
        self.unsent.set(0);
        Ok(())
    }

    /// Reads every entry under each of `prefixes` in one round trip and remembers the prefixes
    /// as wholly known, so that a scan of one of them is answered here (`known_scan`).
    fn read_prefixes(&self, table: Table, prefixes: Vec<Vec<u8>>) -> Result<(), StoreError> {
        let (mut starts, mut ends, mut wanted) = (Vec::new(), Vec::new(), Vec::new());
        for prefix in prefixes {
            let already = self
                .whole
                .borrow()
                .get(&table)
                .is_some_and(|prefixes| prefixes.contains(&prefix));
            // Unsent writes under it would be overwritten by what the database has.
            if already || self.has_unsent_under(table, &prefix) {
                continue;
            }
            if let Some(end) = prefix_end(&prefix) {
                starts.push(prefix.clone());
                ends.push(end);
                wanted.push(prefix);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = self
            .txn
            .borrow_mut()
            .query_typed(
                &sql(table, Op::ScanMany),
                &[(&starts, Type::BYTEA_ARRAY), (&ends, Type::BYTEA_ARRAY)],
            )
            .map_err(pg_error)?;
        let mut known = self.known.borrow_mut();
        let entries = known.entry(table).or_default();
        for row in rows {
            entries.entry(row.get(0)).or_insert(Known {
                value: Some(row.get(1)),
                unsent: false,
            });
        }
        self.whole
            .borrow_mut()
            .entry(table)
            .or_default()
            .extend(wanted);
        Ok(())
    }

    /// Whether `key` lies under a prefix read whole: absent from `known`, it is absent. Looks
    /// at the nearest prefix at or before `key` only; with nested prefixes it may say no where
    /// the answer is yes, which costs a read and nothing else.
    fn under_whole(&self, table: Table, key: &[u8]) -> bool {
        self.whole.borrow().get(&table).is_some_and(|prefixes| {
            prefixes
                .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
                .next_back()
                .is_some_and(|prefix| key.starts_with(prefix))
        })
    }

    fn has_unsent_under(&self, table: Table, prefix: &[u8]) -> bool {
        self.known
            .borrow()
            .get(&table)
            .is_some_and(|entries| under(entries, prefix, prefix).any(|(_, known)| known.unsent))
    }

    /// The entries under `prefix` from `start`, in key order, if the prefix is wholly known:
    /// what the database had when it was read, with this transaction's writes since.
    fn known_scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
    ) -> Option<crate::store::tables::Entries> {
        let whole = self
            .whole
            .borrow()
            .get(&table)
            .is_some_and(|prefixes| prefixes.contains(prefix));
        if !whole {
            return None;
        }
        let known = self.known.borrow();
        Some(
            known
                .get(&table)
                .map(|entries| {
                    under(entries, prefix, start)
                        .filter_map(|(key, known)| Some((key.clone(), known.value.clone()?)))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    pub(super) fn into_inner(self) -> C {
        self.txn.into_inner()
    }
}

impl<C: GenericClient> Tables for PgTables<'_, C> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(known) = self.known.borrow().get(&table).and_then(|t| t.get(key)) {
            return Ok(known.value.clone());
        }
        if self.under_whole(table, key) {
            return Ok(None);
        }
        let statement = self.statement(table, Op::Get)?;
        let value: Option<Vec<u8>> = self
            .txn
            .borrow_mut()
            .query_opt(&statement, &[&key])
            .map_err(pg_error)?
            .map(|row| row.get(0));
        self.known.borrow_mut().entry(table).or_default().insert(
            key.to_vec(),
            Known {
                value: value.clone(),
                unsent: false,
            },
        );
        Ok(value)
    }

    fn prefetch(&self, reads: &[ReadAhead]) -> Result<(), StoreError> {
        let mut keys: HashMap<Table, Vec<Vec<u8>>> = HashMap::new();
        let mut prefixes: HashMap<Table, Vec<Vec<u8>>> = HashMap::new();
        for read in reads {
            match read {
                ReadAhead::Key(table, key) => keys.entry(*table).or_default().push(key.clone()),
                ReadAhead::Prefix(table, prefix) => {
                    prefixes.entry(*table).or_default().push(prefix.clone())
                }
            }
        }
        for (table, keys) in keys {
            self.get_many(table, &keys)?;
        }
        for (table, prefixes) in prefixes {
            self.read_prefixes(table, prefixes)?;
        }
        Ok(())
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let unknown: Vec<Vec<u8>> = {
            let known = self.known.borrow();
            let seen = known.get(&table);
            keys.iter()
                .filter(|key| seen.is_none_or(|t| !t.contains_key(*key)))
                .filter(|key| !self.under_whole(table, key))
                .cloned()
                .collect()
        };
        if !unknown.is_empty() {
            let rows = self
                .txn
                .borrow_mut()
                .query_typed(&sql(table, Op::GetMany), &[(&unknown, Type::BYTEA_ARRAY)])
                .map_err(pg_error)?;
            let mut known = self.known.borrow_mut();
            let entries = known.entry(table).or_default();
            for key in unknown {
                entries.entry(key).or_insert(Known {
                    value: None,
                    unsent: false,
                });
            }
            for row in rows {
                let key: Vec<u8> = row.get(0);
                entries.insert(
                    key,
                    Known {
                        value: Some(row.get(1)),
                        unsent: false,
                    },
                );
            }
        }
        let known = self.known.borrow();
        let entries = known.get(&table);
        Ok(keys
            .iter()
            .map(|key| {
                entries
                    .and_then(|t| t.get(key))
                    .and_then(|k| k.value.clone())
            })
            .collect())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        if let Some(entries) = self.known_scan(table, prefix, start) {
            for (key, value) in &entries {
                if !visit(key, value)? {
                    break;
                }
            }
            return Ok(());
        }
        self.flush_table(table)?;
        let end = prefix_end(prefix);
        let statement = self.statement(
            table,
            if end.is_some() {
                Op::ScanBounded
            } else {
                Op::ScanOpen
            },
        )?;
        let mut from = start.max(prefix).to_vec();
        loop {
            // One page at a time, read before visiting, so that `visit` may read meanwhile.
            let rows = match &end {
                Some(end) => self
                    .txn
                    .borrow_mut()
                    .query(&statement, &[&from, end])
                    .map_err(pg_error)?,
                None => self
                    .txn
                    .borrow_mut()
                    .query(&statement, &[&from])
                    .map_err(pg_error)?,
            };
            let full = rows.len() as i64 == SCAN_PAGE;
            for row in &rows {
                let key: &[u8] = row.get(0);
                let value: &[u8] = row.get(1);
                if !visit(key, value)? {
                    return Ok(());
                }
            }
            let Some(last) = rows.last() else {
                return Ok(());
            };
            if !full {
                return Ok(());
            }
            from = last.get::<_, &[u8]>(0).to_vec();
            from.push(0);
        }
    }
}

impl<C: GenericClient> TablesMut for PgTables<'_, C> {
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(table, key, Some(value.to_vec()))
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.write(table, key, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
