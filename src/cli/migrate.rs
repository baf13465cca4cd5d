//! `migrate`: brings a PostgreSQL database's schema up to this build's version.

use std::process::ExitCode;

use a2a_push_hub::Settings;

pub async fn migrate(settings: Settings) -> ExitCode {
    let path = settings.store.path.clone();
    let migrated =
        tokio::task::spawn_blocking(move || a2a_push_hub::migrate_store(&settings)).await;
    match migrated {
        Ok(Ok(None)) => {
            println!(
                "the embedded store ({}) needs no migration: its tables are created when it opens; set store.url to migrate a PostgreSQL database",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Ok(Some(version))) => {
            println!("the database schema is at version {version}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: the migration task failed: {e}");
            ExitCode::FAILURE
        }
    }
}
