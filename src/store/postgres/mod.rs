//! The PostgreSQL backend: each of the store's tables is a table of the database with a
//! `bytea` key and value, so that every operation is the same code as on the embedded store
//! (`store/ops/`). Writes go through the group-commit writer (`store/writer.rs`) on one
//! connection, and PostgreSQL's commit (with its default `synchronous_commit`) makes them
//! durable. Reads run on the blocking pool on pooled connections (`pool.rs`), except those that
//! declare what they read (an attempt's delivery, config and event; a push's subscription; a
//! config by its key): a reader thread runs them
//! in batches on a connection of its own, one statement for a batch's entries (`read_ahead`).
//! `tables.rs` maps the tables, `connect.rs` and `tls.rs` reach the database.
//!
//! The schema is versioned (`schema.rs`): `migrate` brings a database up to this build's
//! version (serialised by an advisory lock, so nodes starting together do not race), and a
//! database newer than the build is refused. Several hub nodes may share a database: their
//! write transactions take turns (`BEGIN_WRITING` in `pool.rs`), and lanes are leased to one node at a
//! time (`lanes.rs`).

mod connect;
mod lanes;
mod pool;
mod schema;
mod sql;
mod tables;
mod tls;

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls, Statement};
use tokio::sync::Semaphore;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::ops::{AfterCommit, Backend, ReadJob, TableStore, Urgency, WriteJob};
use super::sealing::Sealing;
use super::tables::{ReadAhead, Table, Tables, TablesMut, Visit};
use super::writer::{self, Job, Writer};
use super::{ClaimedLane, LaneId, RenewedLanes, StoreError};

use connect::*;
pub use connect::{Target, parse_url};
use lanes::Lanes;
pub use lanes::LeaseSettings;
use pool::*;
use schema::migrate_client;
pub use schema::{
    create_schema, database_counters, drop_schema, in_schema, migrate, schema_for_folder,
    schema_version,
};
use sql::*;
use tables::*;

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresSettings {
    /// The database, from a `postgres://` URL or a `key=value` connection string
    /// (`parse_url`; never logged: it may hold a password).
    pub target: Target,
    /// Connections for reads, besides the writer's one.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// This node's part in lane leasing.
    pub leases: LeaseSettings,
}

/// The hub's store on a PostgreSQL database.
pub type PostgresStore = TableStore<PostgresBackend>;

pub struct PostgresBackend {
    reads: Arc<ReadPool>,
    /// Runs the reads that declare their entries (`read_ahead`) in batches, on a connection of
    /// its own: under load, the attempts starting together share a statement.
    reader: Writer,
    writer: Writer,
    lanes: Arc<Lanes>,
}

impl PostgresStore {
    /// Connects, migrates the schema and claims the writer lock. Blocking: call before serving.
    pub fn open(
        settings: &PostgresSettings,
        sealing: Sealing,
    ) -> Result<PostgresStore, StoreError> {
        let target = settings.target.clone();
        let mut client = connect(&target, settings.connect_timeout)?;
        let migrated = migrate_client(&mut client);
        close(client);
        migrated?;
        let mut writer_connection = BatchConnection {
            target: target.clone(),
            timeout: settings.connect_timeout,
            node: settings.leases.node.clone(),
            connection: None,
        };
        writer_connection.open()?;
        let writer = Writer::start("store-writer", Default::default(), move |batch, queued| {
            writer_connection.commit_batch(batch, queued)
        })?;
        let mut reader_connection = BatchConnection {
            target: target.clone(),
            timeout: settings.connect_timeout,
            node: settings.leases.node.clone(),
            connection: None,
        };
        let reader = Writer::start("store-reader", Default::default(), move |batch, _| {
            reader_connection.read_batch(batch)
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
                reader,
                writer,
                lanes,
            },
            sealing: Arc::new(sealing),
            outbox: Default::default(),
            fresh: Default::default(),
        })
    }
}

impl PostgresBackend {
    /// A read on a connection of the pool; with `snapshot`, in one `REPEATABLE READ`
    /// transaction, so that every statement of the job sees the same moment.
    async fn run_read<R: Send + 'static>(
        &self,
        job: ReadJob<R>,
        snapshot: bool,
    ) -> Result<R, StoreError> {
        let _permit = self
            .reads
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let reads = self.reads.clone();
        tokio::task::spawn_blocking(move || {
            let Connection {
                mut client,
                mut statements,
            } = reads.take()?;
            if snapshot {
                if let Err(e) =
                    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                {
                    reads.give_back(Connection { client, statements });
                    return Err(pg_error(e));
                }
            }
            let tables = PgTables::new(client, &mut statements);
            let result = job(&tables);
            let mut client = tables.into_inner();
            let ended = if snapshot {
                client.batch_execute("COMMIT").map_err(pg_error)
            } else {
                Ok(())
            };
            reads.give_back(Connection { client, statements });
            ended.and(result)
        })
        .await
        .map_err(|e| StoreError::Storage(format!("read task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    async fn read<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        self.run_read(job, false).await
    }

    async fn read_snapshot<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        self.run_read(job, true).await
    }

    async fn read_ahead<R: Send + 'static>(
        &self,
        reads: Vec<ReadAhead>,
        job: ReadJob<R>,
    ) -> Result<R, StoreError> {
        let job: WriteJob<R> = Box::new(move |tables: &dyn TablesMut| job(tables));
        self.reader.write(Urgency::Now, reads, job, None).await
    }

    async fn write<R: Send + 'static>(
        &self,
        urgency: Urgency,
        reads: Vec<ReadAhead>,
        job: WriteJob<R>,
        after_commit: Option<AfterCommit<R>>,
    ) -> Result<R, StoreError> {
        self.writer.write(urgency, reads, job, after_commit).await
    }

    async fn close(&self) {
        self.reader.stop().await;
        self.writer.stop().await;
        self.reads.permits.close();
    }

    fn shared(&self) -> bool {
        true
    }

    fn writer_stats(&self) -> Option<Arc<crate::metrics::WriterStats>> {
        Some(self.writer.stats())
    }

    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<ClaimedLane>, StoreError> {
        let leases = self.lanes.clone();
        blocking(move || leases.claim(&lanes)).await
    }

    async fn claim_abandoned_lanes(&self, limit: usize) -> Result<Vec<LaneId>, StoreError> {
        let leases = self.lanes.clone();
        blocking(move || leases.claim_abandoned(limit)).await
    }

    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<RenewedLanes, StoreError> {
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

    async fn live_nodes(&self) -> Result<usize, StoreError> {
        let leases = self.lanes.clone();
        blocking(move || leases.heartbeat()).await
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Storage(format!("store task failed: {e}")))?
}
