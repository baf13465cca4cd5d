//! The journal's thread: makes each batch the writer committed durable, in commit order, and
//! only then shows it to readers and answers its writers.
//!
//! With the journal, the writer commits a batch to redb without an fsync, opens a read
//! transaction on what that commit left, and hands both, with the batch's journal record, to
//! this thread. Then it runs the next jobs while this thread writes and syncs the record, so
//! the sync no longer holds the writer; it commits them once the record is on disk, so that
//! a batch still grows while a sync goes on, as it did when the writer waited for it.
//! Readers read the last read transaction this thread published, never redb's newest commit:
//! nobody reads a write that a crash could take back (docs/STORAGE.md, *The journal*).
//!
//! A record that cannot be written fails the store until the hub restarts, its reads too, so
//! that `/readyz` says so: redb already holds the batch and those after it, and after a failed
//! sync nothing tells what reached the disk. The journal on disk still holds every
//! acknowledged write, and the start applies it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as sync_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ::redb::ReadTransaction;

use super::StoreError;
use super::journal::Journal;
use super::writer::{self, Completion, Waker};
use crate::metrics::WriterStats;

/// Committed batches whose records may wait for this thread: beyond them the writer waits,
/// so that redb runs ahead of the disk by a few batches at most.
const AHEAD: usize = 4;

/// A batch the writer committed, handed over in commit order.
pub struct Committed {
    /// The commit's outcome: the record that makes it durable, none when it wrote nothing.
    pub outcome: Result<Option<Record>, StoreError>,
    /// The batch's writers, answered once the record is on disk.
    pub completions: Vec<Completion>,
}

/// A committed batch's journal record, and the store as its commit left it.
pub struct Record {
    pub seq: u64,
    pub body: Vec<u8>,
    /// Whether the commit was a checkpoint: the next record goes to the journal's other file.
    pub checkpoint: bool,
    pub snapshot: ReadTransaction,
}

/// The read transaction readers use: the newest whose writes are all on disk.
pub struct Published(Mutex<Arc<ReadTransaction>>);

impl Published {
    pub fn new(first: ReadTransaction) -> Published {
        Published(Mutex::new(Arc::new(first)))
    }

    pub fn current(&self) -> Arc<ReadTransaction> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, snapshot: ReadTransaction) {
        let newer = Arc::new(snapshot);
        // The one replaced is dropped outside the lock, once its last reader is done.
        let _older = std::mem::replace(
            &mut *self.0.lock().unwrap_or_else(|e| e.into_inner()),
            newer,
        );
    }
}

/// What the writer hands batches through, and what the thread takes them from.
pub fn channel() -> (
    sync_mpsc::SyncSender<Committed>,
    sync_mpsc::Receiver<Committed>,
) {
    sync_mpsc::sync_channel(AHEAD)
}

/// Records handed over and not yet written: a commit waits for none to be left.
pub type InFlight = Arc<AtomicUsize>;

/// The running thread.
pub struct JournalThread {
    pub thread: JoinHandle<()>,
    #[cfg(test)]
    pub gate: Arc<Gate>,
}

/// Tests hold the thread before it writes a record, as a slow disk would, or fail the
/// records, as a failing one would.
#[cfg(test)]
#[derive(Default)]
pub struct Gate {
    held: Mutex<bool>,
    changed: std::sync::Condvar,
    failing: AtomicBool,
}

#[cfg(test)]
impl Gate {
    pub fn hold(&self, held: bool) {
        *self.held.lock().unwrap() = held;
        self.changed.notify_all();
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Release);
    }

    fn pass(&self) -> Result<(), StoreError> {
        let held = self.held.lock().unwrap();
        drop(self.changed.wait_while(held, |held| *held).unwrap());
        if self.failing.load(Ordering::Acquire) {
            return Err(StoreError::Storage(
                "the test failed the journal's disk".to_string(),
            ));
        }
        Ok(())
    }
}

/// Whether the journal failed: set once, by this thread or by the writer.
pub type Failed = Arc<AtomicBool>;

/// The error of every use of the store after the journal failed.
pub fn journal_failed() -> StoreError {
    StoreError::Storage(
        "the store's journal could not be written: the store fails until the hub restarts, \
         which applies the journal (see the hub's log)"
            .to_string(),
    )
}

/// What the thread shares with the writer and the readers.
pub struct Shared {
    pub published: Arc<Published>,
    pub failed: Failed,
    pub in_flight: InFlight,
    pub stats: Arc<WriterStats>,
    /// Wakes the writer's commit once a record is written.
    pub waker: Waker,
}

/// Starts the thread on `batches`; it owns `journal` from now on and ends once the sender is
/// dropped and every batch handed over is answered.
pub fn start(
    journal: Journal,
    batches: sync_mpsc::Receiver<Committed>,
    shared: Shared,
) -> Result<JournalThread, StoreError> {
    #[cfg(test)]
    let gate = Arc::new(Gate::default());
    #[cfg(test)]
    let thread_gate = gate.clone();
    let thread = std::thread::Builder::new()
        .name("store-journal".to_string())
        .spawn(move || {
            run(
                journal,
                batches,
                &shared,
                #[cfg(test)]
                &thread_gate,
            )
        })
        .map_err(|e| StoreError::Storage(format!("cannot start the journal thread: {e}")))?;
    Ok(JournalThread {
        thread,
        #[cfg(test)]
        gate,
    })
}

fn run(
    mut journal: Journal,
    batches: sync_mpsc::Receiver<Committed>,
    shared: &Shared,
    #[cfg(test)] gate: &Gate,
) {
    for batch in batches {
        let outcome = match batch.outcome {
            Ok(Some(record)) => {
                let written = append(
                    &mut journal,
                    &record,
                    shared,
                    #[cfg(test)]
                    gate,
                );
                shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                shared.waker.wake();
                written.map(|()| shared.published.publish(record.snapshot))
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        writer::complete(batch.completions, outcome);
    }
}

/// Writes and syncs one record; once that failed, it and every later one fail.
fn append(
    journal: &mut Journal,
    record: &Record,
    shared: &Shared,
    #[cfg(test)] gate: &Gate,
) -> Result<(), StoreError> {
    #[cfg(test)]
    let disk = gate.pass();
    #[cfg(not(test))]
    let disk = Ok(());
    if shared.failed.load(Ordering::Acquire) {
        return Err(journal_failed());
    }
    let started = Instant::now();
    if let Err(e) = disk.and_then(|()| journal.append(record.seq, &record.body)) {
        return Err(failed(shared, e));
    }
    shared.stats.journal_syncs.observe(started.elapsed());
    if record.checkpoint {
        journal.rotate();
    }
    Ok(())
}

fn failed(shared: &Shared, error: StoreError) -> StoreError {
    shared.failed.store(true, Ordering::Release);
    tracing::error!(error = %error, "the store's journal could not be written: the store fails until the hub restarts, which applies the journal");
    error
}
