//! The database's schema: the migrations this build knows, applying them (one node at a time),
//! and the schema helpers of tools that run one hub per schema (the tests, the benchmark).

use super::*;

/// The schema versions this build knows, oldest first; each is applied in one transaction.
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
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
    (
        7,
        "CREATE TABLE hub_idempotency_keys (k bytea PRIMARY KEY, v bytea NOT NULL);
         CREATE TABLE hub_idempotency_by_time (k bytea PRIMARY KEY, v bytea NOT NULL);
         CREATE TABLE hub_failing_streaks (k bytea PRIMARY KEY, v bytea NOT NULL);
         CREATE TABLE hub_operator_events (k bytea PRIMARY KEY, v bytea NOT NULL);",
    ),
    (
        8,
        "CREATE TABLE hub_tenant_defaults (k bytea PRIMARY KEY, v bytea NOT NULL);
         CREATE TABLE hub_nodes (node text PRIMARY KEY, seen_at bigint NOT NULL);",
    ),
    (
        9,
        // Version 2's trigger, once per statement over the rows it inserted instead of once
        // per row: the same lease rows made, the same FOR SHARE locks (taken in lane order)
        // and the same notices, in two statements for a write of many pending deliveries
        // where there were two per delivery.
        "CREATE FUNCTION hub_pending_rows_added() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE
             me text := current_setting('a2a_push_hub.node', true);
             held record;
         BEGIN
             INSERT INTO hub_lane_leases (lane)
                 SELECT DISTINCT substring(k FROM 1 FOR length(k) - 8) FROM added
                 ORDER BY 1
                 ON CONFLICT (lane) DO NOTHING;
             FOR held IN
                 SELECT l.lane, l.node FROM hub_lane_leases l
                 WHERE l.lane IN (SELECT substring(k FROM 1 FOR length(k) - 8) FROM added)
                     AND l.expires_at > hub_now_ms()
                 ORDER BY l.lane FOR SHARE
             LOOP
                 IF held.node IS NOT NULL AND held.node IS DISTINCT FROM me THEN
                     PERFORM pg_notify('hub_lanes_' || current_schema(), held.node || ' ' || encode(held.lane, 'hex'));
                 END IF;
             END LOOP;
             RETURN NULL;
         END $$;
         DROP TRIGGER hub_pending_added ON hub_pending;
         DROP FUNCTION hub_pending_added();
         CREATE TRIGGER hub_pending_rows_added AFTER INSERT ON hub_pending
             REFERENCING NEW TABLE AS added
             FOR EACH STATEMENT EXECUTE FUNCTION hub_pending_rows_added();",
    ),
    (
        10,
        // Filled for the subscriptions stored before it by the hub itself (they are sealed),
        // in bounded steps after start; until then a lookup reads every subscription.
        "CREATE TABLE hub_subscriptions_by_task (k bytea PRIMARY KEY, v bytea NOT NULL);",
    ),
];

/// The schema version this build writes.
pub fn schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Brings the database's schema up to this build's version; returns the version.
pub(super) fn migrate_client(client: &mut Client) -> Result<i32, StoreError> {
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
pub(super) fn schema_statement(url: &str, schema: &str, sql: &str) -> Result<Client, StoreError> {
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

/// What the database at `url` has done so far, cluster-wide: WAL bytes written (PostgreSQL 14
/// or newer) and transactions committed in its database. The counters reach these views when a
/// session's transaction ends or it closes (at most a second late). For the benchmark's costs
/// per event. Blocking.
pub fn database_counters(url: &str) -> Result<(i64, i64), StoreError> {
    let target = parse_url(url).map_err(StoreError::Storage)?;
    let mut client = connect(&target, Duration::from_secs(10))?;
    let row = client
        .query_one(
            "SELECT (SELECT wal_bytes::bigint FROM pg_stat_wal),
                    (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())",
            &[],
        )
        .map_err(pg_error)?;
    close(client);
    Ok((row.get(0), row.get(1)))
}

/// Applies the migrations this build knows to the database `settings` names.
pub fn migrate(settings: &PostgresSettings) -> Result<i32, StoreError> {
    let mut client = connect(&settings.target, settings.connect_timeout)?;
    migrate_client(&mut client)
}

#[cfg(test)]
mod tests {
    use super::*;

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
