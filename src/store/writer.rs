//! The group-commit writer both backends use: one thread that owns the write transactions.
//!
//! Every write is a job sent to the thread. It takes every job that is queued (up to
//! `MAX_BATCH`), runs them in one write transaction, commits once, then answers each job.
//! Under load a batch grows by itself, so the cost of a durable commit is shared. Attempt
//! outcomes nobody waits on may linger up to `OUTCOME_LINGER` for the next write that someone
//! does wait on (an event's intake, an API call), so they ride in its commit instead of costing
//! one of their own. A commit that first waits for its turn (PostgreSQL's write lock, shared by
//! the nodes of one database) takes the jobs queued during the wait as well.

use std::sync::mpsc as sync_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use crate::metrics::WriterStats;

use super::StoreError;
use super::ops::{AfterCommit, Urgency, WriteJob};
use super::tables::{ReadAhead, TablesMut};

/// Most jobs committed together.
pub const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, writes fail fast with `Busy`.
const QUEUE_CAPACITY: usize = 8192;
/// Longest an attempt outcome waits for company before it is committed on its own.
const OUTCOME_LINGER: Duration = Duration::from_millis(2);

/// Answers a job's caller once the commit outcome is known.
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs a job inside the batch transaction: whether it succeeded, and how to answer its
/// caller.
type Run = Box<dyn FnOnce(&dyn TablesMut) -> (bool, Completion) + Send>;

/// A write job; `reads` are the entries it will read, which a batch may fetch together first.
pub struct Job {
    reads: Vec<ReadAhead>,
    run: Run,
}

enum Command {
    Write(Job, Urgency),
    /// What a commit waits for has happened (`Queued::wait`).
    Wake,
    Stop(oneshot::Sender<()>),
}

/// Wakes a commit that waits in `Queued::wait`.
#[derive(Clone)]
pub struct Waker(sync_mpsc::SyncSender<Command>);

impl Waker {
    pub fn wake(&self) {
        // A full queue wakes the writer anyway.
        let _ = self.0.try_send(Command::Wake);
    }
}

pub struct Writer {
    sender: sync_mpsc::SyncSender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the thread; `commit` runs one batch in one transaction (see `run_jobs`), and may
    /// add the jobs queued meanwhile to it with `Queued::take` before it runs them. The thread
    /// reports to `stats`.
    pub fn start(
        name: &str,
        stats: Arc<WriterStats>,
        mut commit: impl FnMut(Vec<Job>, &mut Queued<'_>) + Send + 'static,
    ) -> Result<Writer, StoreError> {
        let (sender, commands) = sync_mpsc::sync_channel(QUEUE_CAPACITY);
        let loop_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || write_loop(commands, &mut commit, &loop_stats))
            .map_err(|e| StoreError::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            sender,
            thread: std::sync::Mutex::new(Some(thread)),
            stats,
        })
    }

    /// What wakes its commit from `Queued::wait`.
    pub fn waker(&self) -> Waker {
        Waker(self.sender.clone())
    }

    /// Its queue and commit times.
    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// Runs `job` in the next group commit and returns its result once the commit is durable;
    /// `after_commit` runs first, on the one thread that answers commits in commit order
    /// (this one's, or the thread `commit` hands the answers to), so the hooks run in order.
    pub async fn write<R: Send + 'static>(
        &self,
        urgency: Urgency,
        reads: Vec<ReadAhead>,
        job: WriteJob<R>,
        after_commit: Option<AfterCommit<R>>,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            reads,
            run: Box::new(move |tables| {
                let result = job(tables);
                let ok = result.is_ok();
                // A job that failed is told its own error; the others, the commit's outcome.
                let completion: Completion = Box::new(move |committed| {
                    let result = result.and_then(|r| committed.map(|()| r));
                    if let (Ok(done), Some(after_commit)) = (&result, after_commit) {
                        after_commit(done);
                    }
                    let _ = reply.send(result);
                });
                (ok, completion)
            }),
        };
        // Counted before it is sent: the writer may take it (and count it out) at once.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.sender
            .try_send(Command::Write(job, urgency))
            .map_err(|e| {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                match e {
                    sync_mpsc::TrySendError::Full(_) => StoreError::Busy,
                    sync_mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
                }
            })?;
        answer.await.map_err(|_| {
            StoreError::Storage("the write was not committed (see the hub's log)".to_string())
        })?
    }

    /// Commits what is queued, then ends the thread.
    pub async fn stop(&self) {
        let (reply, done) = oneshot::channel();
        let sender = self.sender.clone();
        // `send` waits for room in the queue, so it runs off the runtime.
        let sent = tokio::task::spawn_blocking(move || sender.send(Command::Stop(reply)).is_ok())
            .await
            .unwrap_or(false);
        if sent {
            let _ = done.await;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Runs each job of a batch on `tables`; whether all succeeded, and their completions.
pub fn run_jobs(tables: &dyn TablesMut, batch: Vec<Job>) -> (bool, Vec<Completion>) {
    read_ahead(tables, &batch);
    run_read_ahead(tables, batch)
}

/// Reads ahead what the jobs of `batch` declare they will read.
pub fn read_ahead(tables: &dyn TablesMut, batch: &[Job]) {
    // A failed read-ahead only costs the round trips it would have saved.
    if let Err(e) = tables.prefetch(&reads_of(batch)) {
        tracing::debug!(error = %e, "read-ahead of a write batch failed");
    }
}

/// `run_jobs` for a batch whose reads were read ahead.
pub fn run_read_ahead(tables: &dyn TablesMut, batch: Vec<Job>) -> (bool, Vec<Completion>) {
    let mut completions = Vec::with_capacity(batch.len());
    let mut all_ok = true;
    for job in batch {
        let (ok, completion) = (job.run)(tables);
        all_ok &= ok;
        completions.push(completion);
    }
    (all_ok, completions)
}

/// What the jobs of `batch` declare they will read.
pub fn reads_of(batch: &[Job]) -> Vec<ReadAhead> {
    batch.iter().flat_map(|job| job.reads.clone()).collect()
}

/// The outcome of a batch in which some job failed: nothing of it may become visible.
pub fn batch_failed() -> StoreError {
    StoreError::Storage("a write in the same commit batch failed; nothing was stored".to_string())
}

/// Answers every job of a batch with the commit's outcome.
pub fn complete(completions: Vec<Completion>, outcome: Result<(), StoreError>) {
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "store commit failed");
    }
    for completion in completions {
        completion(outcome.clone());
    }
}

/// The writer's queue, as a batch's commit sees it.
pub struct Queued<'a> {
    commands: &'a sync_mpsc::Receiver<Command>,
    stop_reply: &'a mut Option<oneshot::Sender<()>>,
    stats: &'a WriterStats,
}

impl Queued<'_> {
    /// Adds the jobs queued by now to `batch`, up to `MAX_BATCH`, without waiting. A commit
    /// that had to wait for its turn (the PostgreSQL write lock, which the nodes sharing a
    /// database take in turn) takes what arrived during the wait into the same commit, so a
    /// turn carries every write queued when it comes instead of leaving them for the next one.
    pub fn take(&mut self, batch: &mut Vec<Job>) {
        self.take_up_to(batch, MAX_BATCH);
    }

    /// `take`, up to `limit` jobs in `batch`.
    fn take_up_to(&mut self, batch: &mut Vec<Job>, limit: usize) {
        let before = batch.len();
        while batch.len() < limit && self.stop_reply.is_none() {
            match self.commands.try_recv() {
                Ok(Command::Write(job, _)) => batch.push(job),
                Ok(Command::Wake) => {}
                Ok(Command::Stop(reply)) => *self.stop_reply = Some(reply),
                Err(_) => break,
            }
        }
        self.stats
            .queued
            .fetch_sub((batch.len() - before) as u64, Ordering::Relaxed);
    }

    /// Waits until a job is queued, a `Waker` wakes, or a stop comes, then adds the jobs
    /// queued by then to `batch`, up to `limit` in it. A commit that waits for something else
    /// (the embedded store's journal thread, to finish the record before) runs the jobs that
    /// arrive meanwhile in its own transaction instead of leaving them for a commit of their
    /// own.
    pub fn wait(&mut self, batch: &mut Vec<Job>, limit: usize) {
        if self.stop_reply.is_some() || batch.len() >= limit {
            return;
        }
        match self.commands.recv() {
            Ok(Command::Write(job, _)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                batch.push(job);
            }
            Ok(Command::Wake) | Err(_) => {}
            Ok(Command::Stop(reply)) => *self.stop_reply = Some(reply),
        }
        self.take_up_to(batch, limit);
    }

    /// Whether the writer was told to stop: a commit should not wait for more.
    pub fn stopping(&self) -> bool {
        self.stop_reply.is_some()
    }
}

fn write_loop(
    commands: sync_mpsc::Receiver<Command>,
    commit: &mut impl FnMut(Vec<Job>, &mut Queued<'_>),
    stats: &WriterStats,
) {
    let mut stop_reply = None;
    while stop_reply.is_none() {
        let Ok(first) = commands.recv() else {
            break;
        };
        let mut batch = Vec::new();
        let mut urgent = false;
        let linger_until = Instant::now() + OUTCOME_LINGER;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(job, urgency) => {
                    batch.push(job);
                    urgent |= urgency == Urgency::Now;
                }
                Command::Wake => {}
                Command::Stop(reply) => stop_reply = Some(reply),
            }
            if batch.len() >= MAX_BATCH || stop_reply.is_some() {
                break;
            }
            next = match commands.try_recv() {
                Ok(command) => Some(command),
                // Only outcomes so far: wait a little for a write that will be committed anyway.
                Err(sync_mpsc::TryRecvError::Empty) if !urgent => commands
                    .recv_timeout(linger_until.saturating_duration_since(Instant::now()))
                    .ok(),
                Err(_) => None,
            };
        }
        if !batch.is_empty() {
            stats
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            let started = Instant::now();
            let mut queued = Queued {
                commands: &commands,
                stop_reply: &mut stop_reply,
                stats,
            };
            commit(batch, &mut queued);
            stats.commits.observe(started.elapsed());
        }
    }
    // Answer anything that raced the stop, so no caller waits forever.
    let mut no_stop = None;
    let mut queued = Queued {
        commands: &commands,
        stop_reply: &mut no_stop,
        stats,
    };
    while let Ok(command) = commands.try_recv() {
        if let Command::Write(job, _) = command {
            commit(vec![job], &mut queued);
        }
    }
    if let Some(reply) = stop_reply {
        let _ = reply.send(());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc::channel;

    use super::*;
    use crate::store::memory::MemoryTables;
    use crate::store::tables::Table;

    /// A commit that waits for its turn (as on PostgreSQL, for the other nodes' commits) takes
    /// the writes queued during the wait into the same commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_waited_for_its_turn_carries_what_was_queued_meanwhile() {
        let (in_turn_wait, waiting) = channel::<()>();
        let (release, turn) = channel::<()>();
        let committed_batches = Arc::new(Mutex::new(Vec::new()));
        let sizes = committed_batches.clone();
        let tables = MemoryTables::default();
        let writer = Writer::start(
            "test-writer",
            Default::default(),
            move |mut batch, queued| {
                // The first commit waits for its turn until the test has sent three more writes.
                let _ = in_turn_wait.send(());
                let _ = turn.recv();
                // Each write is sent a moment after it is counted: wait until all three are in.
                let deadline = Instant::now() + Duration::from_secs(10);
                while batch.len() < 4 && Instant::now() < deadline {
                    queued.take(&mut batch);
                    std::thread::yield_now();
                }
                sizes.lock().unwrap().push(batch.len());
                let (ok, completions) = run_jobs(&tables, batch);
                complete(completions, if ok { Ok(()) } else { Err(batch_failed()) });
            },
        )
        .unwrap();
        let writer = Arc::new(writer);
        let write = |n: u8| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let job: WriteJob<()> =
                    Box::new(move |tables| tables.insert(Table::Tasks, &[n], &[n]));
                writer.write(Urgency::Now, Vec::new(), job, None).await
            })
        };
        let first = write(0);
        tokio::task::spawn_blocking(move || waiting.recv().unwrap())
            .await
            .unwrap();
        let more: Vec<_> = (1..=3).map(write).collect();
        for _ in 0..4 {
            let _ = release.send(());
        }
        first.await.unwrap().unwrap();
        for write in more {
            write.await.unwrap().unwrap();
        }
        assert_eq!(*committed_batches.lock().unwrap(), vec![4]);
        assert_eq!(writer.stats().queued.load(Ordering::Relaxed), 0);
        writer.stop().await;
    }
}
