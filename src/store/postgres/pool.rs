//! Connections: the writer thread's and the batched reader thread's (each opened again after
//! it fails, and pipelined: `sql.rs`), and a pool for the other reads.

use super::*;

/// The connection of a thread that runs batches of jobs (the writer, the batched reader).
pub(super) struct BatchConnection {
    pub(super) target: Target,
    pub(super) timeout: Duration,
    /// This node's name, which its writes carry (see migration 2).
    pub(super) node: String,
    pub(super) connection: Option<Connection<Pipelined>>,
}

/// Names the node on a writer's connection.
pub(super) fn name_writer(client: &mut impl Sql, node: &str) -> Result<(), StoreError> {
    let quoted = node.replace('\'', "''");
    client
        .batch_execute(&format!("SET a2a_push_hub.node = '{quoted}'"))
        .map_err(pg_error)
}

impl BatchConnection {
    /// Opens the connection now, so that a database out of reach is an error at once.
    pub(super) fn open(&mut self) -> Result<(), StoreError> {
        self.get().map(drop)
    }

    fn get(&mut self) -> Result<&mut Connection<Pipelined>, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.client.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            let mut client = Pipelined::connect(&self.target, self.timeout)?;
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

    pub(super) fn commit_batch(&mut self, mut batch: Vec<Job>, queued: &mut writer::Queued<'_>) {
        if let Err(e) = self.get() {
            // Dropping the jobs tells each caller that its write was not committed.
            tracing::error!(error = %e, jobs = batch.len(), "store write transaction could not start");
            return;
        }
        let Some(Connection {
            client,
            mut statements,
        }) = self.connection.take()
        else {
            return;
        };
        let tables = PgTables::new(client, &mut statements);
        if let Err(e) = tables.begin_reading(BEGIN_WRITING, &writer::reads_of(&batch)) {
            tracing::error!(error = %e, jobs = batch.len(), "store write transaction could not start");
            let mut client = tables.into_inner();
            // The lock or the read may have failed after the transaction began.
            let _ = client.batch_execute("ROLLBACK");
            self.give_back(client, statements);
            return;
        }
        // The turn may have been a wait: what was queued meanwhile rides in this commit, with a
        // read-ahead of its own.
        let late = batch.len();
        queued.take(&mut batch);
        writer::read_ahead(&tables, &batch[late..]);
        let (all_ok, completions) = writer::run_read_ahead(&tables, batch);
        let outcome = if all_ok {
            tables.commit()
        } else {
            Err(writer::batch_failed())
        };
        let mut client = tables.into_inner();
        if outcome.is_err() {
            // Not needed after a failed commit, which ended the transaction; harmless then.
            let _ = client.batch_execute("ROLLBACK");
        }
        if !matches!(outcome, Err(StoreError::Unavailable(_))) {
            self.give_back(client, statements);
        }
        writer::complete(completions, outcome);
    }

    /// Runs a batch of read jobs: what they will read in one statement, then each job on what
    /// was read (`writer::run_jobs`); nothing is written, no transaction is opened.
    pub(super) fn read_batch(&mut self, batch: Vec<Job>) {
        if let Err(e) = self.get() {
            // Dropping the jobs tells each caller that its read failed.
            tracing::warn!(error = %e, jobs = batch.len(), "cannot read from the store");
            return;
        }
        let Some(Connection {
            client,
            mut statements,
        }) = self.connection.take()
        else {
            return;
        };
        let tables = PgTables::new(client, &mut statements);
        let (_, completions) = writer::run_jobs(&tables, batch);
        let client = tables.into_inner();
        self.give_back(client, statements);
        writer::complete(completions, Ok(()));
    }

    /// Keeps the connection for the next batch, unless it failed (it is opened again then).
    fn give_back(&mut self, client: Pipelined, statements: HashMap<String, Statement>) {
        if !client.is_closed() {
            self.connection = Some(Connection { client, statements });
        }
    }
}

/// Opens a write transaction and waits for the schema's write lock, held until the
/// transaction ends, in one round trip. Writes of every node take turns, so that each reads
/// what the one before it wrote (a task's next sequence number, a lane's bookkeeping) exactly
/// as on the embedded store; a commit carries a whole batch, so the turns are few.
const BEGIN_WRITING: &str =
    "BEGIN; SELECT pg_advisory_xact_lock(hashtext('a2a-push-hub write ' || current_schema()))";

/// Connections for reads.
pub(super) struct ReadPool {
    pub(super) target: Target,
    pub(super) timeout: Duration,
    pub(super) idle: Mutex<Vec<Connection>>,
    pub(super) permits: Semaphore,
}

impl ReadPool {
    pub(super) fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(connection) if !connection.client.is_closed() => Ok(connection),
            _ => Ok(Connection {
                client: connect(&self.target, self.timeout)?,
                statements: HashMap::new(),
            }),
        }
    }

    pub(super) fn give_back(&self, connection: Connection) {
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
