//! `migrate`: brings a PostgreSQL database's schema up to this build's version.

use std::process::ExitCode;

use a2a_push_hub::Settings;

pub async fn migrate(settings: Settings) -> ExitCode {
    if settings.store.url.is_empty() {
        println!(
            "the embedded store ({}) needs no migration: its tables are created when it opens; set store.url to migrate a PostgreSQL database",
            settings.store.path.display()
        );
        return ExitCode::SUCCESS;
    }
    let postgres = a2a_push_hub::internals::postgres_settings(&settings.store);
    let migrated = tokio::task::spawn_blocking(move || {
        a2a_push_hub::internals::postgres_schema::migrate(&postgres)
    })
    .await;
    match migrated {
        Ok(Ok(version)) => {
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
