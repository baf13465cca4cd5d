//! The index of finished tasks (`Table::FinishedTasks`): kept in step by every write of a task
//! (`events.rs`), read by retention (`retention.rs`) to purge only the tasks that are due.

use super::*;

/// The index entry of a task that finished at `finished_at_ms`.
pub(super) fn finished_key(finished_at_ms: u64, task_key: &[u8]) -> Vec<u8> {
    let mut key = finished_at_ms.to_be_bytes().to_vec();
    key.extend_from_slice(task_key);
    key
}

/// Keeps the index in step with a task just written: `was_finished_at` is when its previous
/// version finished (if it had), `finished_at` when this one did (if it has).
pub(super) fn track_finished(
    tables: &dyn TablesMut,
    task_key: &[u8],
    was_finished_at: Option<u64>,
    finished_at: Option<u64>,
) -> Result<(), StoreError> {
    if was_finished_at == finished_at {
        return Ok(());
    }
    if let Some(at) = was_finished_at {
        tables.remove(Table::FinishedTasks, &finished_key(at, task_key))?;
    }
    if let Some(at) = finished_at {
        tables.insert(Table::FinishedTasks, &finished_key(at, task_key), &[1])?;
    }
    Ok(())
}
