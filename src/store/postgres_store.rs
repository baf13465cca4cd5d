//! The PostgreSQL backend: each of the store's tables is a table of the database with a
//! `bytea` key and value, so that every operation is the same code as on the embedded store
//! (`ops.rs`). Writes go through the group-commit writer (`writer.rs`) on one connection, and
//! PostgreSQL's commit (with its default `synchronous_commit`) makes them durable. Reads run
//! on the blocking pool, each in a read-only repeatable-read transaction on a pooled connection.
//!
//! The schema is versioned: `migrate` brings a database up to this build's version (serialised
//! by an advisory lock, so nodes starting together do not race), and a database newer than the
//! build is refused. Several hub nodes may share a database: their write transactions take
//! turns (`lock_for_writing`), and lanes are leased to one node at a time
//! (`postgres_lanes.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, Config, GenericClient, NoTls, Statement};
use tokio::sync::Semaphore;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::LaneId;
use super::StoreError;
use super::ops::{Backend, ReadJob, TableStore, Urgency, WriteJob};
use super::postgres_lanes::{Lanes, LeaseSettings};
use super::postgres_tls;
use super::sealing::Sealing;
use super::tables::{Entry, Table, Tables, TablesMut, Visit};
use super::writer::{self, Job, Writer};

/// Rows a scan reads per round trip.
const SCAN_PAGE: i64 = 256;

/// The schema versions this build knows, oldest first; each is applied in one transaction.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
    "CREATE TABLE hub_configs (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_tasks (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_events (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_deliveries (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_lanes (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_pending (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_attempts (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_signing_keys (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_subscriptions (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_inbound_events (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_receipts (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_inbound_counters (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_inbound_tasks (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_replay (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE hub_replay_by_time (k bytea PRIMARY KEY, v bytea NOT NULL);",
    ),
    (
        2,
        // Lane leases: a row per lane that has (or had) pending deliveries, made by a trigger
        // in the transaction that adds them; `node` holds the lane until `expires_at` (ms,
        // database clock). A pending delivery added to a lane another node holds wakes that
        // node through NOTIFY. The trigger's FOR SHARE makes a claim and a publish of the same
        // lane wait for each other, so a claim that reads the lane's pending deliveries sees
        // every one committed before it, and a publish after it notifies the claimer. A node's
        // own writes (its writer names it in `a2a_push_hub.node`) do not notify it: it queues
        // them itself.
        "CREATE TABLE hub_lane_leases (
             lane bytea PRIMARY KEY,
             node text,
             expires_at bigint NOT NULL DEFAULT 0);
         CREATE INDEX hub_lane_leases_by_expiry ON hub_lane_leases (expires_at);
         CREATE FUNCTION hub_now_ms() RETURNS bigint LANGUAGE sql VOLATILE
             AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
         CREATE FUNCTION hub_pending_added() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE
             added bytea := substring(NEW.k FROM 1 FOR length(NEW.k) - 8);
             holder text;
         BEGIN
             INSERT INTO hub_lane_leases (lane) VALUES (added) ON CONFLICT (lane) DO NOTHING;
             SELECT l.node INTO holder FROM hub_lane_leases l
                 WHERE l.lane = added AND l.expires_at > hub_now_ms() FOR SHARE;
             IF holder IS NOT NULL
                 AND holder IS DISTINCT FROM current_setting('a2a_push_hub.node', true) THEN
                 PERFORM pg_notify('hub_lanes_' || current_schema(), holder || ' ' || encode(added, 'hex'));
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER hub_pending_added AFTER INSERT ON hub_pending
             FOR EACH ROW EXECUTE FUNCTION hub_pending_added();",
    ),
    (
        3,
        "CREATE TABLE hub_circuits (k bytea PRIMARY KEY, v bytea NOT NULL);",
    ),
    (
        4,
        "CREATE TABLE hub_finished_tasks (k bytea PRIMARY KEY, v bytea NOT NULL);",
    ),
    (
        5,
        "CREATE TABLE hub_follows (k bytea PRIMARY KEY, v bytea NOT NULL);",
    ),
    (
        6,
        "CREATE TABLE hub_task_owners (k bytea PRIMARY KEY, v bytea NOT NULL);",
    ),
];

/// The schema version this build writes.
pub fn schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresSettings {
    /// A `postgres://` URL or a `key=value` connection string (never logged: it may hold a
    /// password).
    pub url: String,
    /// Connections for reads, besides the writer's one.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// This node's part in lane leasing.
    pub leases: LeaseSettings,
}

/// Where the database is and how to reach it: the driver's settings, and the TLS connector
/// when the URL asks for TLS (`postgres_tls.rs`).
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

/// Parses a connection URL (and reads its `sslrootcert`); the error never repeats the URL (it
/// may hold a password).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let options = postgres_tls::take_tls_options(url);
    let config = Config::from_str(&options.url)
        .map_err(|e| format!("not a PostgreSQL connection URL ({e})"))?;
    if config.get_hosts().is_empty() {
        return Err("names no host".to_string());
    }
    let tls = match config.get_ssl_mode() {
        SslMode::Require => Some(postgres_tls::connector(options.root_cert.as_deref())?),
        _ => None,
    };
    Ok(Target { config, tls })
}

/// Where a connection goes, for messages: host and port, never credentials.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "?".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

pub(super) fn pg_error(e: postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        StoreError::Unavailable(format!("the database connection failed: {e}"))
    } else {
        StoreError::Storage(format!("the database refused a statement: {e}"))
    }
}

/// Longest a statement may run (a lock wait included) before it fails: no store call waits
/// for ever on a stuck database.
const STATEMENT_TIMEOUT: &str = "30s";

pub(super) fn connect(target: &Target, timeout: Duration) -> Result<Client, StoreError> {
    let mut config = target.config.clone();
    config
        .connect_timeout(timeout)
        .application_name("a2a-push-hub")
        // A connection whose peer vanished is noticed within about a minute.
        .keepalives_idle(Duration::from_secs(30));
    let connected = match &target.tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(NoTls),
    };
    let mut client = connected.map_err(|e| {
        // The driver's message names the step that failed; its sources say why.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        let hint = if target.tls.is_some() && reason.contains("certificate") {
            " (name the CA that signed the server's certificate with sslrootcert=/path/to/ca.pem)"
        } else {
            ""
        };
        StoreError::Unavailable(format!(
            "cannot reach the database at {}: {reason}{hint}",
            describe(&config)
        ))
    })?;
    client
        .batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        .map_err(pg_error)?;
    Ok(client)
}

/// Brings the database's schema up to this build's version; returns the version.
fn migrate_client(client: &mut Client) -> Result<i32, StoreError> {
    // One node at a time, from the first statement on (creating the same table at once races
    // inside PostgreSQL). The transaction-scoped lock ends with the transaction, whatever
    // happens in it.
    let mut txn = client.transaction().map_err(pg_error)?;
    txn.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtext('a2a-push-hub migrate ' || current_schema()));
         SET LOCAL client_min_messages TO warning;
         CREATE TABLE IF NOT EXISTS hub_schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());",
    )
    .map_err(pg_error)?;
    let current: i32 = txn
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hub_schema_migrations",
            &[],
        )
        .map_err(pg_error)?
        .get(0);
    if current > schema_version() {
        return Err(StoreError::Storage(format!(
            "the database's schema is at version {current}, newer than this hub knows ({}); run a newer hub",
            schema_version()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        txn.batch_execute(sql).map_err(pg_error)?;
        txn.execute(
            "INSERT INTO hub_schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .map_err(pg_error)?;
        tracing::info!(version, "database schema migrated");
    }
    txn.commit().map_err(pg_error)?;
    Ok(schema_version())
}

/// `url` with its sessions' search path set to `schema`, so that the hub's tables are made
/// and found there.
pub fn in_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// A schema name for the hub whose store folder is `folder` (the same folder, the same name):
/// for tools that run one hub per folder on one database, like the tests and the benchmark.
pub fn schema_for_folder(prefix: &str, folder: &std::path::Path) -> String {
    let digest = folder
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{prefix}{digest:016x}")
}

/// Runs `sql` about `schema` on the database at `url`. Blocking.
fn schema_statement(url: &str, schema: &str, sql: &str) -> Result<Client, StoreError> {
    let target = parse_url(url).map_err(StoreError::Storage)?;
    let mut client = connect(&target, Duration::from_secs(10))?;
    let quoted = schema.replace('"', "\"\"");
    client
        .batch_execute(&sql.replace("{schema}", &format!("\"{quoted}\"")))
        .map_err(pg_error)?;
    Ok(client)
}

/// Creates `schema` unless it exists (several callers may race to). Blocking.
pub fn create_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    match schema_statement(url, schema, "CREATE SCHEMA IF NOT EXISTS {schema}") {
        Ok(client) => {
            close(client);
            Ok(())
        }
        Err(e) => {
            let target = parse_url(url).map_err(StoreError::Storage)?;
            let mut client = connect(&target, Duration::from_secs(10))?;
            let exists: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                    &[&schema],
                )
                .map_err(pg_error)?
                .get(0);
            close(client);
            if exists == 1 { Ok(()) } else { Err(e) }
        }
    }
}

/// Drops `schema` and everything in it. Blocking.
pub fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    close(schema_statement(
        url,
        schema,
        "DROP SCHEMA IF EXISTS {schema} CASCADE",
    )?);
    Ok(())
}

/// Applies the migrations this build knows to the database at `settings.url`.
pub fn migrate(settings: &PostgresSettings) -> Result<i32, StoreError> {
    let target = parse_url(&settings.url).map_err(StoreError::Storage)?;
    let mut client = connect(&target, settings.connect_timeout)?;
    migrate_client(&mut client)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Get,
    GetMany,
    PutMany,
    DeleteMany,
    ScanBounded,
    ScanOpen,
}

fn sql(table: Table, op: Op) -> String {
    let name = table.name();
    match op {
        Op::Get => format!("SELECT v FROM hub_{name} WHERE k = $1"),
        Op::GetMany => format!("SELECT k, v FROM hub_{name} WHERE k = ANY($1)"),
        Op::PutMany => format!(
            "INSERT INTO hub_{name} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[])
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        ),
        Op::DeleteMany => format!("DELETE FROM hub_{name} WHERE k = ANY($1)"),
        Op::ScanBounded => format!(
            "SELECT k, v FROM hub_{name} WHERE k >= $1 AND k < $2 ORDER BY k LIMIT {SCAN_PAGE}"
        ),
        Op::ScanOpen => {
            format!("SELECT k, v FROM hub_{name} WHERE k >= $1 ORDER BY k LIMIT {SCAN_PAGE}")
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`; `None` if there is none.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A connection and the statements prepared on it.
struct Connection {
    client: Client,
    statements: HashMap<(Table, Op), Statement>,
}

/// What a transaction knows of one entry: its value (`None`: absent), and whether that is a
/// write not yet sent to the database.
struct Known {
    value: Option<Vec<u8>>,
    unsent: bool,
}

/// The tables inside one transaction of a connection.
///
/// Writes are kept here and sent together, a statement per table, before a scan of their
/// table and at the end (`flush`); reads see them first. A transaction thus costs a round trip
/// per read of an entry it has not seen, not one per statement the operations make.
struct PgTables<'c, C> {
    /// A transaction for writes; the client itself for reads, where each statement sees the
    /// committed state of its moment (no read needs more, and it saves two round trips).
    txn: RefCell<C>,
    statements: RefCell<&'c mut HashMap<(Table, Op), Statement>>,
    known: RefCell<HashMap<Table, HashMap<Vec<u8>, Known>>>,
    /// Writes kept and not sent yet.
    unsent: std::cell::Cell<usize>,
}

/// Writes a transaction keeps before it sends them: bounds its memory whatever the batch.
const MAX_UNSENT: usize = 4096;

impl<'c, C: GenericClient> PgTables<'c, C> {
    fn new(txn: C, statements: &'c mut HashMap<(Table, Op), Statement>) -> Self {
        PgTables {
            txn: RefCell::new(txn),
            statements: RefCell::new(statements),
            known: RefCell::new(HashMap::new()),
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
    fn lock_for_writing(&self) -> Result<(), StoreError> {
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
            let statement = self.statement(table, Op::DeleteMany)?;
            self.txn
                .borrow_mut()
                .execute(&statement, &[&deleted])
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Sends every write not yet sent (then the transaction may commit) and forgets what it
    /// read: the database has it all now.
    fn flush(&self) -> Result<(), StoreError> {
        let tables: Vec<Table> = self.known.borrow().keys().copied().collect();
        for table in tables {
            self.flush_table(table)?;
        }
        self.known.borrow_mut().clear();
        self.unsent.set(0);
        Ok(())
    }

    fn into_inner(self) -> C {
        self.txn.into_inner()
    }
}

impl<C: GenericClient> Tables for PgTables<'_, C> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(known) = self.known.borrow().get(&table).and_then(|t| t.get(key)) {
            return Ok(known.value.clone());
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

    fn prefetch(&self, keys: &[Entry]) -> Result<(), StoreError> {
        let mut by_table: HashMap<Table, Vec<Vec<u8>>> = HashMap::new();
        for (table, key) in keys {
            by_table.entry(*table).or_default().push(key.clone());
        }
        for (table, keys) in by_table {
            self.get_many(table, &keys)?;
        }
        Ok(())
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let unknown: Vec<Vec<u8>> = {
            let known = self.known.borrow();
            let seen = known.get(&table);
            keys.iter()
                .filter(|key| seen.is_none_or(|t| !t.contains_key(*key)))
                .cloned()
                .collect()
        };
        if !unknown.is_empty() {
            let statement = self.statement(table, Op::GetMany)?;
            let rows = self
                .txn
                .borrow_mut()
                .query(&statement, &[&unknown])
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

/// The writer thread's connection, opened again after it fails.
struct WriterConnection {
    target: Target,
    timeout: Duration,
    /// This node's name, which its writes carry (see migration 2).
    node: String,
    connection: Option<Connection>,
}

/// Names the node on a writer's connection.
fn name_writer(client: &mut Client, node: &str) -> Result<(), StoreError> {
    let quoted = node.replace('\'', "''");
    client
        .batch_execute(&format!("SET a2a_push_hub.node = '{quoted}'"))
        .map_err(pg_error)
}

impl WriterConnection {
    fn get(&mut self) -> Result<&mut Connection, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.client.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            let mut client = connect(&self.target, self.timeout)?;
            name_writer(&mut client, &self.node)?;
            self.connection = Some(Connection {
                client,
                statements: HashMap::new(),
            });
        }
        self.connection
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no database connection".to_string()))
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let connection = match self.get() {
            Ok(connection) => connection,
            Err(e) => {
                // Dropping the jobs tells each caller that its write was not committed.
                tracing::error!(error = %e, jobs = batch.len(), "store write transaction could not start");
                return;
            }
        };
        let Connection { client, statements } = connection;
        let txn = match client.transaction() {
            Ok(txn) => txn,
            Err(e) => {
                // A lost connection is noticed (`is_closed`) and opened again next time.
                tracing::error!(error = %pg_error(e), jobs = batch.len(), "store write transaction could not start");
                return;
            }
        };
        let tables = PgTables::new(txn, statements);
        if let Err(e) = tables.lock_for_writing() {
            tracing::error!(error = %e, jobs = batch.len(), "store write transaction could not start");
            return;
        }
        let (all_ok, completions) = writer::run_jobs(&tables, batch);
        let flushed = if all_ok { tables.flush() } else { Ok(()) };
        let txn = tables.into_inner();
        let outcome = if let Err(e) = flushed {
            let _ = txn.rollback();
            Err(e)
        } else if all_ok {
            txn.commit().map_err(pg_error)
        } else {
            let _ = txn.rollback();
            Err(writer::batch_failed())
        };
        if matches!(outcome, Err(StoreError::Unavailable(_))) {
            self.connection = None;
        }
        writer::complete(completions, outcome);
    }
}

/// Connections for reads.
struct ReadPool {
    target: Target,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(connection) if !connection.client.is_closed() => Ok(connection),
            _ => Ok(Connection {
                client: connect(&self.target, self.timeout)?,
                statements: HashMap::new(),
            }),
        }
    }

    fn give_back(&self, connection: Connection) {
        if !connection.client.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(connection);
            }
        }
    }
}

impl Drop for ReadPool {
    fn drop(&mut self) {
        close(self.idle.get_mut().map(std::mem::take).unwrap_or_default());
    }
}

/// Closes synchronous connections: closing one blocks on its own runtime, which must not
/// happen on a thread that drives async tasks, so there it happens on a thread of its own.
pub(super) fn close<T: Send + 'static>(connections: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::Builder::new()
            .name("store-close".to_string())
            .spawn(move || drop(connections));
    }
}

/// The hub's store on a PostgreSQL database.
pub type PostgresStore = TableStore<PostgresBackend>;

pub struct PostgresBackend {
    reads: Arc<ReadPool>,
    writer: Writer,
    lanes: Arc<Lanes>,
}

impl PostgresStore {
    /// Connects, migrates the schema and claims the writer lock. Blocking: call before serving.
    pub fn open(
        settings: &PostgresSettings,
        sealing: Sealing,
    ) -> Result<PostgresStore, StoreError> {
        let target = parse_url(&settings.url).map_err(StoreError::Storage)?;
        let mut client = connect(&target, settings.connect_timeout)?;
        migrate_client(&mut client)?;
        name_writer(&mut client, &settings.leases.node)?;
        let mut writer_connection = WriterConnection {
            target: target.clone(),
            timeout: settings.connect_timeout,
            node: settings.leases.node.clone(),
            connection: Some(Connection {
                client,
                statements: HashMap::new(),
            }),
        };
        let writer = Writer::start("store-writer", move |batch| {
            writer_connection.commit_batch(batch)
        })?;
        let lanes = Arc::new(Lanes::start(
            target.clone(),
            settings.connect_timeout,
            settings.leases.clone(),
        )?);
        let reads = Arc::new(ReadPool {
            target,
            timeout: settings.connect_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(settings.pool_size.max(1)),
        });
        Ok(TableStore {
            backend: PostgresBackend {
                reads,
                writer,
                lanes,
            },
            sealing: Arc::new(sealing),
            outbox: Default::default(),
        })
    }
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    async fn read<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        let _permit = self
            .reads
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let reads = self.reads.clone();
        tokio::task::spawn_blocking(move || {
            let Connection {
                client,
                mut statements,
            } = reads.take()?;
            let tables = PgTables::new(client, &mut statements);
            let result = job(&tables);
            let client = tables.into_inner();
            reads.give_back(Connection { client, statements });
            result
        })
        .await
        .map_err(|e| StoreError::Storage(format!("read task failed: {e}")))?
    }

    async fn write<R: Send + 'static>(
        &self,
        urgency: Urgency,
        reads: Vec<Entry>,
        job: WriteJob<R>,
    ) -> Result<R, StoreError> {
        self.writer.write(urgency, reads, job).await
    }

    async fn close(&self) {
        self.writer.stop().await;
        self.reads.permits.close();
    }

    fn shared(&self) -> bool {
        true
    }

    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        let leases = self.lanes.clone();
        blocking(move || leases.claim(&lanes)).await
    }

    async fn claim_abandoned_lanes(&self, limit: usize) -> Result<Vec<LaneId>, StoreError> {
        let leases = self.lanes.clone();
        blocking(move || leases.claim_abandoned(limit)).await
    }

    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        let leases = self.lanes.clone();
        blocking(move || leases.renew(&lanes)).await
    }

    async fn release_lanes(&self) -> Result<(), StoreError> {
        let leases = self.lanes.clone();
        blocking(move || leases.release_all()).await
    }

    fn lane_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<LaneId>> {
        self.lanes.wakeups()
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Storage(format!("store task failed: {e}")))?
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

    #[test]
    fn a_url_error_never_repeats_the_url() {
        let error = parse_url("postgres://hub:s3cret@db:notaport/hub")
            .err()
            .unwrap();
        assert!(!error.contains("s3cret"), "{error}");
        let error =
            parse_url("postgres://hub:s3cret@db/hub?sslmode=require&sslrootcert=/no/ca.pem")
                .err()
                .unwrap();
        assert!(error.contains("sslrootcert /no/ca.pem"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn every_table_is_created_by_a_migration() {
        for table in Table::ALL {
            assert!(
                MIGRATIONS
                    .iter()
                    .any(|(_, sql)| sql.contains(&format!("CREATE TABLE hub_{} ", table.name()))),
                "{}",
                table.name()
            );
        }
    }
}
