//! `backup` and `restore`: a running hub's embedded store to a file and back.

use std::path::Path;
use std::process::ExitCode;

use super::args::AdminArgs;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Downloads the backup next to `to`, checks it, makes it durable, then gives it its name:
/// `to` never holds a partial or unchecked copy.
pub async fn backup(admin: AdminArgs, to: &Path) -> ExitCode {
    use tokio::io::AsyncWriteExt;
    if to.exists() {
        return fail(format_args!(
            "{} exists already; choose a new file name",
            to.display()
        ));
    }
    let partial = to.with_extension("partial");
    // It holds what the store holds (tokens, unless the store seals them): its owner only.
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = match options.open(&partial).await {
        Ok(file) => file,
        Err(e) => return fail(format_args!("cannot create {}: {e}", partial.display())),
    };
    let (client, _) = admin.open();
    let written = client.download("/api/v1/backup", &mut file).await;
    let synced = file.flush().await.and(file.sync_all().await);
    drop(file);
    let outcome = match (written, synced) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(_), Err(e)) => Err(format!("cannot write {}: {e}", partial.display())),
        (Ok(bytes), Ok(())) => {
            let checked = partial.clone();
            match tokio::task::spawn_blocking(move || a2a_push_hub::check_backup(&checked)).await {
                Ok(Ok(summary)) => Ok((bytes, summary)),
                Ok(Err(e)) => Err(format!("the copy received is not sound: {e}")),
                Err(e) => Err(format!("the check stopped: {e}")),
            }
        }
    };
    match outcome {
        Ok((bytes, summary)) => {
            if let Err(e) = std::fs::rename(&partial, to) {
                return fail(format_args!("cannot name the backup {}: {e}", to.display()));
            }
            println!(
                "{}",
                serde_json::json!({
                    "file": to.display().to_string(),
                    "bytes": bytes,
                    "records": summary.records,
                    "createdAtMs": summary.created_at_ms,
                    "hubVersion": summary.hub_version,
                })
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            let _ = std::fs::remove_file(&partial);
            fail(message)
        }
    }
}

pub async fn restore(from: &Path, data_dir: &Path) -> ExitCode {
    match a2a_push_hub::restore_store(from, data_dir).await {
        Ok(summary) => {
            println!(
                "{}",
                serde_json::json!({
                    "dataDir": data_dir.display().to_string(),
                    "records": summary.records,
                    "createdAtMs": summary.created_at_ms,
                    "hubVersion": summary.hub_version,
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
