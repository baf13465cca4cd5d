//! The store's tables as database tables (`bytea` key and value), read and written through
//! prepared statements, with writes buffered and sent in batches.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use postgres::types::{ToSql, Type};

use super::*;

/// Rows a scan reads per round trip.
pub(super) const SCAN_PAGE: i64 = 256;

/// The statements of a table. Those that look keys up by arrays (the deletes of `send_writes`,
/// and the reads of `read_together`) are planned at each use rather than prepared once: a prepared
/// statement's cached plan is costed on the table as it was (a table empty when the hub started
/// is scanned whole), and a scan of a grown table took 25 ms where its index takes tens of
/// microseconds. Sent with their parameter types, they still cost one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Op {
    Get,
    PutMany,
    ScanBounded,
    ScanOpen,
}

/// Inserts or replaces the entries whose keys and values are the arrays in parameters `keys`
/// and `values`.
fn upsert(table: Table, keys: usize, values: usize) -> String {
    let name = table.name();
    format!(
        "INSERT INTO hub_{name} (k, v) SELECT * FROM unnest(${keys}::bytea[], ${values}::bytea[])
         ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
    )
}

pub(super) fn sql(table: Table, op: Op) -> String {
    let name = table.name();
    match op {
        Op::Get => format!("SELECT v FROM hub_{name} WHERE k = $1"),
        Op::PutMany => upsert(table, 1, 2),
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

/// Keys or prefixes to read, grouped by table: a part of `read_together`'s statement each.
type Parts = Vec<(Table, Vec<Vec<u8>>)>;

/// Adds `item` to `table`'s group.
fn add_to_part(parts: &mut Parts, table: Table, item: &[u8]) {
    match parts.iter_mut().find(|(t, _)| *t == table) {
        Some((_, items)) => items.push(item.to_vec()),
        None => parts.push((table, vec![item.to_vec()])),
    }
}

/// The writes of one table a transaction has not sent yet.
struct TableWrites {
    table: Table,
    put_keys: Vec<Vec<u8>>,
    put_values: Vec<Vec<u8>>,
    deleted: Vec<Vec<u8>>,
}

/// A connection and the statements prepared on it.
pub(super) struct Connection<C = Client> {
    pub(super) client: C,
    /// By their SQL.
    pub(super) statements: HashMap<String, Statement>,
}

/// What a transaction knows of one entry: its value (`None`: absent), and whether that is a
/// write not yet sent to the database.
pub(super) struct Known {
    value: Option<Vec<u8>>,
    unsent: bool,
}

/// The tables inside one transaction of a connection.
///
/// Writes are kept here and sent together: those of a table before a scan of it, all of them
/// in one statement at the end (`flush`); reads see them first. A transaction thus costs a round trip
/// per read of an entry it has not seen, not one per statement the operations make.
pub(super) struct PgTables<'c, C> {
    /// A transaction for writes; the client itself for reads, where each statement sees the
    /// committed state of its moment (no read needs more, and it saves two round trips).
    txn: RefCell<C>,
    pub(super) statements: RefCell<&'c mut HashMap<String, Statement>>,
    /// In key order, so that the entries under a prefix are a range.
    known: RefCell<HashMap<Table, BTreeMap<Vec<u8>, Known>>>,
    /// Prefixes whose every entry is in `known` (read ahead): scans of them need no round trip.
    whole: RefCell<HashMap<Table, BTreeSet<Vec<u8>>>>,
    /// Writes kept and not sent yet.
    unsent: std::cell::Cell<usize>,
}

/// Writes a transaction keeps before it sends them: bounds its memory whatever the batch.
pub(super) const MAX_UNSENT: usize = 4096;

impl<'c, C: Sql> PgTables<'c, C> {
    pub(super) fn new(txn: C, statements: &'c mut HashMap<String, Statement>) -> Self {
        PgTables {
            txn: RefCell::new(txn),
            statements: RefCell::new(statements),
            known: RefCell::new(HashMap::new()),
            whole: RefCell::new(HashMap::new()),
            unsent: std::cell::Cell::new(0),
        }
    }

    fn statement(&self, table: Table, op: Op) -> Result<Statement, StoreError> {
        self.prepared(sql(table, op))
    }

    /// `sql` prepared on this connection, once.
    fn prepared(&self, sql: String) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.borrow().get(&sql) {
            return Ok(statement.clone());
        }
        let statement = self.txn.borrow_mut().prepare(&sql).map_err(pg_error)?;
        self.statements.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
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
        self.send_writes(Some(table))
    }

    /// Runs `query` with `before` and `after` around it (`Sql::run`).
    fn run(
        &self,
        before: &str,
        query: Query<'_>,
        after: &str,
    ) -> Result<Vec<postgres::Row>, StoreError> {
        self.txn
            .borrow_mut()
            .run(before, query, after)
            .map_err(pg_error)
    }

    /// Runs statements without parameters, if any.
    fn batch_execute(&self, sql: &str) -> Result<(), StoreError> {
        match sql {
            "" => Ok(()),
            sql => self.txn.borrow_mut().batch_execute(sql).map_err(pg_error),
        }
    }

    /// Sends the writes not yet sent, of `only` that table or of every table.
    fn send_writes(&self, only: Option<Table>) -> Result<(), StoreError> {
        self.send_writes_then(only, "")
    }

    /// Sends the writes not yet sent, of `only` that table or of every table, in one
    /// statement: a part per table and kind of write, so that a commit costs one round trip
    /// for its writes whatever the number of tables they touch. `after` (statements without
    /// parameters) follows them, in the same round trip.
    fn send_writes_then(&self, only: Option<Table>, after: &str) -> Result<(), StoreError> {
        let mut writes: Vec<TableWrites> = Vec::new();
        for (table, entries) in self.known.borrow_mut().iter_mut() {
            if only.is_some_and(|only| only != *table) {
                continue;
            }
            let mut table_writes = TableWrites {
                table: *table,
                put_keys: Vec::new(),
                put_values: Vec::new(),
                deleted: Vec::new(),
            };
            for (key, known) in entries.iter_mut().filter(|(_, k)| k.unsent) {
                known.unsent = false;
                match &known.value {
                    Some(value) => {
                        table_writes.put_keys.push(key.clone());
                        table_writes.put_values.push(value.clone());
                    }
                    None => table_writes.deleted.push(key.clone()),
                }
            }
            if !table_writes.put_keys.is_empty() || !table_writes.deleted.is_empty() {
                writes.push(table_writes);
            }
        }
        // In the tables' order, so that the same tables make the same statement.
        writes.sort_by_key(|w| w.table.index());
        if let [only] = writes.as_slice()
            && only.deleted.is_empty()
        {
            // Puts to one table: the prepared statement.
            let statement = self.statement(only.table, Op::PutMany)?;
            let params: [&(dyn ToSql + Sync); 2] = [&only.put_keys, &only.put_values];
            self.run("", Query::Prepared(&statement, &params), after)?;
            return Ok(());
        }
        let mut parts = Vec::new();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::new();
        for w in &writes {
            let name = w.table.name();
            if !w.put_keys.is_empty() {
                params.push((&w.put_keys, Type::BYTEA_ARRAY));
                params.push((&w.put_values, Type::BYTEA_ARRAY));
                parts.push(format!(
                    "w{} AS ({})",
                    parts.len(),
                    upsert(w.table, params.len() - 1, params.len())
                ));
            }
            if !w.deleted.is_empty() {
                params.push((&w.deleted, Type::BYTEA_ARRAY));
                parts.push(format!(
                    "w{} AS (DELETE FROM hub_{name} WHERE k = ANY(${}))",
                    parts.len(),
                    params.len()
                ));
            }
        }
        if parts.is_empty() {
            return self.batch_execute(after);
        }
        // Each part runs once whether or not the query reads it; no key is in two parts.
        let sql = format!("WITH {} SELECT 1", parts.join(", "));
        self.run("", Query::Typed(&sql, &params), after)?;
        Ok(())
    }

    /// Sends every write not yet sent and forgets what it read: the database has it all now.
    fn flush(&self) -> Result<(), StoreError> {
        self.send_writes(None)?;
        self.forget();
        Ok(())
    }

    /// Sends every write not yet sent and commits the transaction, in one round trip where the
    /// connection pipelines.
    pub(super) fn commit(&self) -> Result<(), StoreError> {
        self.send_writes_then(None, "COMMIT")?;
        self.forget();
        Ok(())
    }

    fn forget(&self) {
        self.known.borrow_mut().clear();
        self.whole.borrow_mut().clear();
        self.unsent.set(0);
    }

    /// Runs `begin` (statements without parameters that open a transaction) and reads what
    /// `reads` name, in one round trip where the connection pipelines.
    pub(super) fn begin_reading(&self, begin: &str, reads: &[ReadAhead]) -> Result<(), StoreError> {
        self.read_together_after(begin, reads)
    }

    fn read_together(&self, reads: &[ReadAhead]) -> Result<(), StoreError> {
        self.read_together_after("", reads)
    }

    /// Reads in one statement what of `reads` this transaction does not know yet: each key
    /// (one the database lacks is remembered as absent) and every entry under each prefix
    /// (which is then known whole, so that a scan of it is answered here: `known_scan`).
    /// `before` runs first, in the same round trip.
    fn read_together_after(&self, before: &str, reads: &[ReadAhead]) -> Result<(), StoreError> {
        // A part of the statement per table and kind of read; each row names its part.
        let (mut key_parts, mut prefix_parts): (Parts, Parts) = (Vec::new(), Vec::new());
        for read in reads {
            match read {
                ReadAhead::Key(table, key) => {
                    let known = self
                        .known
                        .borrow()
                        .get(table)
                        .is_some_and(|entries| entries.contains_key(key));
                    if known || self.under_whole(*table, key) {
                        continue;
                    }
                    add_to_part(&mut key_parts, *table, key);
                }
                ReadAhead::Prefix(table, prefix) => {
                    let already = self
                        .whole
                        .borrow()
                        .get(table)
                        .is_some_and(|prefixes| prefixes.contains(prefix));
                    // Unsent writes under it would be overwritten by what the database has; a
                    // prefix with no end (all 0xff) is left to a scan.
                    if already
                        || self.has_unsent_under(*table, prefix)
                        || prefix_end(prefix).is_none()
                    {
                        continue;
                    }
                    add_to_part(&mut prefix_parts, *table, prefix);
                }
            }
        }
        if key_parts.is_empty() && prefix_parts.is_empty() {
            return self.batch_execute(before);
        }
        let rows = if prefix_parts.is_empty() && key_parts.iter().all(|(_, keys)| keys.len() == 1) {
            // One key per table (an attempt's delivery, config and event): a prepared statement,
            // whose generic plan looks each key up in its index whatever the tables' sizes.
            let parts: Vec<String> = key_parts
                .iter()
                .enumerate()
                .map(|(i, (table, _))| {
                    format!(
                        "SELECT {i}, k, v FROM hub_{} WHERE k = ${}",
                        table.name(),
                        i + 1
                    )
                })
                .collect();
            let statement = self.prepared(parts.join(" UNION ALL "))?;
            let params: Vec<&(dyn ToSql + Sync)> = key_parts
                .iter()
                .map(|(_, keys)| &keys[0] as &(dyn ToSql + Sync))
                .collect();
            self.run(before, Query::Prepared(&statement, &params), "")?
        } else {
            self.query_together(before, &key_parts, &prefix_parts)?
        };
        self.absorb(rows, key_parts, prefix_parts);
        Ok(())
    }

    /// [`read_together`](Self::read_together)'s statement for any number of keys and prefixes,
    /// planned at this use, after `before`.
    fn query_together(
        &self,
        before: &str,
        key_parts: &Parts,
        prefix_parts: &Parts,
    ) -> Result<Vec<postgres::Row>, StoreError> {
        // Each prefix as the `[start, end)` range of its keys.
        let ends: Vec<Vec<Vec<u8>>> = prefix_parts
            .iter()
            .map(|(_, prefixes)| prefixes.iter().filter_map(|p| prefix_end(p)).collect())
            .collect();
        let mut parts = Vec::new();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::new();
        for (table, keys) in key_parts {
            params.push((keys, Type::BYTEA_ARRAY));
            parts.push(format!(
                "SELECT {}, k, v FROM hub_{} WHERE k = ANY(${})",
                parts.len(),
                table.name(),
                params.len()
            ));
        }
        for ((table, starts), ends) in prefix_parts.iter().zip(&ends) {
            params.push((starts, Type::BYTEA_ARRAY));
            params.push((ends, Type::BYTEA_ARRAY));
            parts.push(format!(
                "SELECT {}, t.k, t.v FROM unnest(${}::bytea[], ${}::bytea[]) AS r(lo, hi)
                 JOIN hub_{} t ON t.k >= r.lo AND t.k < r.hi",
                parts.len(),
                params.len() - 1,
                params.len(),
                table.name()
            ));
        }
        self.run(
            before,
            Query::Typed(&parts.join(" UNION ALL "), &params),
            "",
        )
    }

    /// Remembers what [`read_together`](Self::read_together) read: each row as its part says,
    /// the keys no row answered as absent, the prefixes as known whole.
    fn absorb(&self, rows: Vec<postgres::Row>, key_parts: Parts, prefix_parts: Parts) {
        let mut known = self.known.borrow_mut();
        for (table, keys) in &key_parts {
            let entries = known.entry(*table).or_default();
            for key in keys {
                entries.entry(key.clone()).or_insert(Known {
                    value: None,
                    unsent: false,
                });
            }
        }
        for row in rows {
            let part = row.get::<_, i32>(0) as usize;
            let found = Known {
                value: Some(row.get(2)),
                unsent: false,
            };
            match key_parts.get(part) {
                Some((table, _)) => {
                    known.entry(*table).or_default().insert(row.get(1), found);
                }
                None => {
                    let table = prefix_parts[part - key_parts.len()].0;
                    known
                        .entry(table)
                        .or_default()
                        .entry(row.get(1))
                        .or_insert(found);
                }
            }
        }
        let mut whole = self.whole.borrow_mut();
        for (table, prefixes) in prefix_parts {
            whole.entry(table).or_default().extend(prefixes);
        }
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

impl<C: Sql> Tables for PgTables<'_, C> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(known) = self.known.borrow().get(&table).and_then(|t| t.get(key)) {
            return Ok(known.value.clone());
        }
        if self.under_whole(table, key) {
            return Ok(None);
        }
        let statement = self.statement(table, Op::Get)?;
        let value: Option<Vec<u8>> = self
            .run("", Query::Prepared(&statement, &[&key]), "")?
            .first()
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
        self.read_together(reads)
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let reads: Vec<ReadAhead> = keys
            .iter()
            .map(|key| ReadAhead::Key(table, key.clone()))
            .collect();
        self.read_together(&reads)?;
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
                Some(end) => self.run("", Query::Prepared(&statement, &[&from, end]), "")?,
                None => self.run("", Query::Prepared(&statement, &[&from]), "")?,
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

impl<C: Sql> TablesMut for PgTables<'_, C> {
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
