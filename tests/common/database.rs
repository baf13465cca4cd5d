//! Running the tests on PostgreSQL: the database `A2A_PUSH_HUB_TEST_POSTGRES_URL` names, one
//! schema per test hub, and reading what a hub stored.

use a2a_push_hub::internals::postgres_schema;
use std::path::Path;

/// The variable naming a PostgreSQL database for the tests: when set, every test hub keeps its
/// state there (one schema per store folder) instead of in the embedded store.
pub const POSTGRES_URL_VAR: &str = "A2A_PUSH_HUB_TEST_POSTGRES_URL";

/// Fails a test that needs PostgreSQL when no database is named. Such tests are
/// `#[ignore = "needs PostgreSQL …"]` and run with `--ignored` where a database is (CI starts one).
pub fn require_postgres(what: &str) {
    assert!(
        std::env::var(POSTGRES_URL_VAR).is_ok_and(|u| !u.is_empty()),
        "{what} needs {POSTGRES_URL_VAR} (scripts/throwaway-postgres.sh starts a database)"
    );
}

/// The store URL of a test hub whose store folder is `dir`, when the tests run on PostgreSQL:
/// a schema of its own (created here), so tests never see each other's records, and the same
/// schema again for a hub restarted on the same folder. The schema's name is returned too.
pub fn postgres_store_for(dir: &Path) -> Option<String> {
    let base = std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = postgres_schema::schema_for_folder("t_", dir);
    let (url, create) = (base.clone(), schema.clone());
    // The synchronous client runs its own runtime: not on a test's runtime thread.
    std::thread::spawn(move || postgres_schema::create_schema(&url, &create))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}: cannot make schema {schema}: {e}"));
    Some(postgres_schema::in_schema(&base, &schema))
}

/// Every byte the store of the hub with store folder `store_path` holds: the redb file, or
/// the keys and values of every table of its PostgreSQL schema.
pub fn stored_bytes(store_path: &Path) -> Vec<u8> {
    let Some(url) = postgres_store_for(store_path) else {
        return std::fs::read(store_path.join("hub.redb")).unwrap();
    };
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        // Every table of the store has a bytea key `k` and value `v`.
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND column_name = 'v'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(!tables.is_empty(), "the schema has the store's tables");
        let mut bytes = Vec::new();
        for table in tables {
            for row in client
                .query(&format!("SELECT k, v FROM {table}"), &[])
                .unwrap()
            {
                bytes.extend_from_slice(row.get::<_, &[u8]>(0));
                bytes.extend_from_slice(row.get::<_, &[u8]>(1));
            }
        }
        bytes
    })
    .join()
    .unwrap()
}
