//! Connections: the writer thread's one (opened again after it fails) and a pool for reads.

use super::*;

pub(super) struct WriterConnection {
    pub(super) target: Target,
    pub(super) timeout: Duration,
    /// This node's name, which its writes carry (see migration 2).
    pub(super) node: String,
    pub(super) connection: Option<Connection>,
}

/// Names the node on a writer's connection.
pub(super) fn name_writer(client: &mut Client, node: &str) -> Result<(), StoreError> {
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

    pub(super) fn commit_batch(&mut self, batch: Vec<Job>) {
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
