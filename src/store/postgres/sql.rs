//! How the store's statements reach the database: the [`Sql`] a `PgTables` runs them through,
//! which the blocking client of the pool implements one statement at a time, and [`Pipelined`],
//! the batch threads' connection, which sends the statements of one call together.
//!
//! A write turn is four statements (its opening with the write lock, its read-ahead, its
//! writes, its commit), and the nodes' turns on one database cannot overlap: with the database
//! a network hop away, each round trip is time the turn holds the lock for nothing. Sent
//! together, the opening and the read-ahead are one round trip, the writes and the commit
//! another: behind a link that added 1.2 ms to a round trip, a node on PostgreSQL delivered
//! 12–35 % more single events at 32 clients. With the database on the same busy cores it
//! changed nothing that shows, as a wait there is mostly the database's process waiting for a
//! core (docs/PERFORMANCE.md, "A write turn in two round trips").

use futures_util::future::join3;
use postgres::Row;
use postgres::types::{ToSql, Type};

use super::*;

/// A statement and its parameters.
#[derive(Clone, Copy)]
pub(super) enum Query<'a> {
    /// Prepared on the connection.
    Prepared(&'a Statement, &'a [&'a (dyn ToSql + Sync)]),
    /// Planned at this use, its parameters sent with their types.
    Typed(&'a str, &'a [(&'a (dyn ToSql + Sync), Type)]),
}

/// What `PgTables` asks of a connection.
pub(super) trait Sql {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error>;

    /// Runs statements without parameters, in one round trip.
    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error>;

    /// `query`'s rows, with `before` and `after` (statements without parameters, empty for
    /// none) run just before and after it; where the connection pipelines, all in one round
    /// trip. The first error is returned. Behind a failed query, an `after` of `COMMIT` ends
    /// the transaction without committing anything: PostgreSQL rolls an aborted one back.
    fn run(
        &mut self,
        before: &str,
        query: Query<'_>,
        after: &str,
    ) -> Result<Vec<Row>, postgres::Error>;

    fn is_closed(&self) -> bool;
}

impl Sql for Client {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        Client::prepare(self, sql)
    }

    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        Client::batch_execute(self, sql)
    }

    fn run(
        &mut self,
        before: &str,
        query: Query<'_>,
        after: &str,
    ) -> Result<Vec<Row>, postgres::Error> {
        if !before.is_empty() {
            Client::batch_execute(self, before)?;
        }
        let rows = match query {
            Query::Prepared(statement, params) => self.query(statement, params)?,
            Query::Typed(sql, params) => self.query_typed(sql, params)?,
        };
        if !after.is_empty() {
            Client::batch_execute(self, after)?;
        }
        Ok(rows)
    }

    fn is_closed(&self) -> bool {
        Client::is_closed(self)
    }
}

/// A connection that sends a call's statements without waiting for the answer to each: the
/// async driver, on a runtime of the connection's own that runs only while a call waits.
pub(super) struct Pipelined {
    /// Taken when the connection closes.
    client: Option<tokio_postgres::Client>,
    /// The task that drives the connection.
    driver: Option<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Pipelined {
    /// Connects. Blocking: call off the hub's async runtime.
    pub(super) fn connect(target: &Target, timeout: Duration) -> Result<Pipelined, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Storage(format!("cannot start a database connection: {e}")))?;
        let config = configured(target, timeout);
        let (client, driver) = runtime
            .block_on(async {
                match &target.tls {
                    Some(tls) => {
                        let (client, connection) = config.connect(tls.clone()).await?;
                        Ok((client, tokio::spawn(drive(connection))))
                    }
                    None => {
                        let (client, connection) = config.connect(NoTls).await?;
                        Ok((client, tokio::spawn(drive(connection))))
                    }
                }
            })
            .map_err(|e| unreachable(target, &config, e))?;
        let mut connection = Pipelined {
            client: Some(client),
            driver: Some(driver),
            runtime,
        };
        connection
            .batch_execute(SESSION_SETTINGS)
            .map_err(pg_error)?;
        Ok(connection)
    }
}

/// Runs a connection until it closes; a failure reaches every call on it as the connection's.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "a database connection closed");
    }
}

impl Pipelined {
    fn client(&self) -> &tokio_postgres::Client {
        self.client
            .as_ref()
            .expect("taken only when the connection is dropped")
    }
}

/// Closes the connection the way the blocking client does: the database is told, rather than
/// finding the socket gone.
impl Drop for Pipelined {
    fn drop(&mut self) {
        drop(self.client.take());
        // Waiting is only allowed off the hub's async runtime; there the task just stops.
        let blocking_allowed = tokio::runtime::Handle::try_current().is_err();
        if let Some(driver) = self.driver.take().filter(|_| blocking_allowed) {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(1), driver).await });
        }
    }
}

impl Sql for Pipelined {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        self.runtime.block_on(self.client().prepare(sql))
    }

    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.runtime.block_on(self.client().batch_execute(sql))
    }

    fn run(
        &mut self,
        before: &str,
        query: Query<'_>,
        after: &str,
    ) -> Result<Vec<Row>, postgres::Error> {
        let client = self.client();
        // Each call sends its statement when first polled, and `join3` polls in order: the
        // database gets them in this order and runs them one after the other.
        let before = async {
            match before {
                "" => Ok(()),
                sql => client.batch_execute(sql).await,
            }
        };
        let query = async {
            match query {
                Query::Prepared(statement, params) => client.query(statement, params).await,
                Query::Typed(sql, params) => client.query_typed(sql, params).await,
            }
        };
        let after = async {
            match after {
                "" => Ok(()),
                sql => client.batch_execute(sql).await,
            }
        };
        let (before, rows, after) = self.runtime.block_on(join3(before, query, after));
        before?;
        let rows = rows?;
        after?;
        Ok(rows)
    }

    fn is_closed(&self) -> bool {
        self.client().is_closed()
    }
}
