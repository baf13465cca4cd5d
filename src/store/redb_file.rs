//! The embedded store's file as redb sees it, when the journal makes commits durable: a
//! checkpoint's pages are written and synced by a thread of their own, so that the writer goes
//! on with the next batches while the disk works.
//!
//! A checkpoint is a redb commit with its own fsync. redb writes every page it kept in memory
//! since the last one (up to half of `store.cache_mib`) and syncs the file inside the commit:
//! 110–160 ms measured, 95 % of it that write and that sync, and every write queued behind it
//! waited (docs/PERFORMANCE.md, "The journal"). Here, while the writer marks a checkpoint, what
//! redb writes is kept in memory and its sync hands those pages to the flusher thread, which
//! writes them and syncs the file. The checkpoint's batch is in the journal too, so nothing
//! acknowledged depends on the flush; the journal keeps every record since the last checkpoint
//! known to be on disk (`Journal::rotate`).
//!
//! redb believes a checkpoint durable once its commit returns, and may then reuse the pages
//! only the checkpoint before it needed. Until the flush is done, a crash falls back to that
//! earlier checkpoint, so those pages must stay as they are on disk: every write redb makes
//! while a flush runs is kept in memory too, and goes to the file only once the flush is done.
//! A crash in the middle of a flush leaves part of the checkpoint's pages on disk, as a crash
//! in the middle of any redb commit would: redb's checksums tell, and it opens the earlier one.
//!
//! redb also syncs the file each time it grows it, in the middle of a transaction, so that
//! the longer file is durable before any header says so. Between checkpoints that sync had to
//! write every page redb had evicted since the last one: 47–101 ms measured, with the writer and
//! every write queued behind it waiting. Here the flusher makes the longer file durable
//! instead, and every sync that makes a header durable waits for it first: the order redb
//! needs holds, and the writer goes on.
//!
//! With the journal, nothing else syncs the file between checkpoints either, so the pages redb
//! evicts from its cache pile up in the kernel's, and the next sync wrote them all at once
//! (100–270 ms), the journal's own syncs meanwhile waiting behind them. So the flusher, when it
//! has nothing else to do, also syncs the file every `TRICKLE_SYNC` that saw a write: a sync
//! only makes durable what the kernel could have written out at any moment anyway.
//!
//! Copying a checkpoint's pages (up to half of `store.cache_mib`) into fresh memory faulted
//! every page of it in, inside the checkpoint's commit: the buffers of a written checkpoint are
//! kept for the next one's pages (`Spare`).
//!
//! Reads see the pages kept in memory over the file's. A second checkpoint waits for the first
//! one's flush. A flush that fails is remembered, and every later use of the file fails with it:
//! after a failed sync nothing says what reached the disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use ::redb::backends::FileBackend;
use ::redb::{BackendError, StorageBackend};

use super::StoreError;

/// How much of a checkpoint the flusher writes between two syncs: a journal sync meanwhile
/// waits behind one slice (with 1 MiB, a fixed 5,000 single events a second had two to three
/// times the p99: docs/PERFORMANCE.md, "The file synced as it goes").
const SYNC_SLICE: usize = 256 << 10;

/// How often the flusher, with nothing else to do, syncs a file written to since its last sync.
const TRICKLE_SYNC: std::time::Duration = std::time::Duration::from_millis(100);

/// The most memory kept in buffers of written pages for the next checkpoint's: a checkpoint
/// with the default cache.
const SPARE_MAX_BYTES: usize = 64 << 20;

/// Buffers of pages already written to the file, to copy the next pages into: memory that is
/// already the process's, where a fresh allocation of a checkpoint's size would fault each of
/// its pages in.
#[derive(Debug, Default)]
struct Spare {
    buffers: Vec<Vec<u8>>,
    /// What `buffers` hold, by capacity.
    bytes: usize,
}

impl Spare {
    fn copy_of(&mut self, data: &[u8]) -> Vec<u8> {
        match self.buffers.pop() {
            Some(mut buffer) => {
                self.bytes -= buffer.capacity();
                buffer.clear();
                buffer.extend_from_slice(data);
                buffer
            }
            None => data.to_vec(),
        }
    }

    fn keep(&mut self, pages: Pages) {
        for buffer in pages.chunks.into_values() {
            if self.bytes + buffer.capacity() > SPARE_MAX_BYTES {
                break;
            }
            self.bytes += buffer.capacity();
            self.buffers.push(buffer);
        }
    }
}

/// Writes at offsets, kept apart from the file: no two overlap, a later write replaces what it
/// covers of earlier ones.
#[derive(Debug, Default)]
struct Pages {
    chunks: BTreeMap<u64, Vec<u8>>,
}

impl Pages {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The chunks that overlap `offset..end`, as their start offsets.
    fn overlapping(&self, offset: u64, end: u64) -> Vec<u64> {
        self.chunks
            .range(..end)
            .rev()
            .take_while(|(start, chunk)| *start + chunk.len() as u64 > offset)
            .map(|(start, _)| *start)
            .collect()
    }

    fn insert(&mut self, offset: u64, data: &[u8], spare: &mut Spare) {
        // Most writes are a page written again whole, or one that overlaps nothing.
        if let Some(chunk) = self.chunks.get_mut(&offset)
            && chunk.len() == data.len()
        {
            chunk.copy_from_slice(data);
            return;
        }
        let end = offset + data.len() as u64;
        let overlaps = self
            .chunks
            .range(..end)
            .next_back()
            .is_some_and(|(start, chunk)| start + chunk.len() as u64 > offset);
        if !overlaps {
            self.chunks.insert(offset, spare.copy_of(data));
            return;
        }
        for start in self.overlapping(offset, end) {
            let chunk = self.chunks.remove(&start).expect("listed above");
            let chunk_end = start + chunk.len() as u64;
            if start < offset {
                self.chunks
                    .insert(start, chunk[..(offset - start) as usize].to_vec());
            }
            if chunk_end > end {
                self.chunks
                    .insert(end, chunk[(end - start) as usize..].to_vec());
            }
        }
        self.chunks.insert(offset, spare.copy_of(data));
    }

    /// Copies what these pages hold of `offset..offset + out.len()` over `out`.
    fn overlay(&self, offset: u64, out: &mut [u8]) {
        let end = offset + out.len() as u64;
        for start in self.overlapping(offset, end) {
            let chunk = &self.chunks[&start];
            let from = start.max(offset);
            let to = (start + chunk.len() as u64).min(end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&chunk[(from - start) as usize..(to - start) as usize]);
        }
    }

    /// Where the last page ends.
    fn end(&self) -> u64 {
        self.chunks
            .last_key_value()
            .map_or(0, |(start, chunk)| start + chunk.len() as u64)
    }

    /// Drops what lies at or past `len`.
    fn truncate(&mut self, len: u64) {
        let past: Vec<u64> = self.chunks.range(len..).map(|(start, _)| *start).collect();
        for start in past {
            self.chunks.remove(&start);
        }
        if let Some((start, chunk)) = self.chunks.range_mut(..len).next_back() {
            chunk.truncate((len - *start).min(chunk.len() as u64) as usize);
        }
    }

    fn write_to(&self, file: &FileBackend) -> std::io::Result<()> {
        self.chunks
            .iter()
            .try_for_each(|(offset, chunk)| file.write(*offset, chunk))
    }

    /// Writes the pages and syncs them a slice at a time, then the file: the journal's own
    /// syncs, meanwhile, wait behind one slice at most instead of the whole checkpoint.
    fn write_synced(&self, file: &FileBackend) -> std::io::Result<()> {
        let mut unsynced = 0;
        for (offset, chunk) in &self.chunks {
            file.write(*offset, chunk)?;
            unsynced += chunk.len();
            if unsynced >= SYNC_SLICE {
                file.sync_data()?;
                unsynced = 0;
            }
        }
        file.sync_data()
    }
}

#[derive(Debug, Default)]
struct State {
    /// The writer is committing a checkpoint: its writes and its sync go to the flusher.
    checkpointing: bool,
    /// The checkpoint's commit wrote its header: its next sync is the one that makes it
    /// durable. A sync before it only makes a longer file durable before any header says so.
    header_kept: bool,
    /// Written since the flush began (or during the checkpoint being committed): not in the
    /// file yet.
    kept: Pages,
    /// The checkpoint the flusher is writing (no pages: only a sync, for a longer file).
    flushing: Option<Arc<Pages>>,
    /// redb grew the file and has not written since: a sync now is for that growth.
    grew: bool,
    /// A longer file not known durable yet: the flusher syncs it before it writes anything.
    growth_unsynced: bool,
    /// Buffers for the pages kept next.
    spare: Spare,
    /// Why a flush failed, if one did.
    failed: Option<String>,
    stopping: bool,
    /// Tests hold checkpoints' flushes back to see what a crash during one leaves.
    #[cfg(test)]
    held: bool,
}

#[derive(Debug)]
struct Shared {
    file: FileBackend,
    state: Mutex<State>,
    /// Signals a flush to start or that one ended.
    changed: Condvar,
    /// Whether reads and writes must look at `state` (anything kept, a flush running, a
    /// checkpoint being committed, a failure); when not, they go straight to the file.
    involved: AtomicBool,
    /// The flusher syncs the file now and then (`TRICKLE_SYNC`): with the journal, where
    /// nothing else does between checkpoints.
    trickle: bool,
    /// Written to since the flusher's last sync of its own.
    unsynced: AtomicBool,
    /// The flusher's syncs of its own, begun and ended.
    #[cfg(test)]
    trickles: [std::sync::atomic::AtomicUsize; 2],
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Updates `involved` once `state` changed.
    fn settle(&self, state: &State) {
        let involved = state.checkpointing
            || state.flushing.is_some()
            || !state.kept.is_empty()
            || state.failed.is_some()
            || state.grew
            || state.growth_unsynced;
        self.involved.store(involved, Ordering::SeqCst);
    }

    fn wait_for_flush<'s>(&'s self, mut state: MutexGuard<'s, State>) -> MutexGuard<'s, State> {
        while state.flushing.is_some() {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state
    }

    /// Has the flusher sync a growth, unless a flush that will is running already.
    fn flush_growth(&self, state: &mut State) {
        if state.flushing.is_none() {
            state.flushing = Some(Arc::new(Pages::default()));
            self.changed.notify_all();
        }
    }

    fn failure(state: &State) -> std::io::Result<()> {
        match &state.failed {
            Some(reason) => Err(std::io::Error::other(format!(
                "an earlier checkpoint could not be written to the store file: {reason}"
            ))),
            None => Ok(()),
        }
    }

    fn flusher(self: Arc<Self>) {
        let mut last_sync = Instant::now();
        loop {
            let (pages, growth) = {
                let mut state = self.lock();
                loop {
                    #[cfg(test)]
                    let held = state.held;
                    #[cfg(not(test))]
                    let held = false;
                    // A growth's sync alone writes nothing a crash image would show.
                    if let Some(pages) = &state.flushing
                        && (!held || pages.is_empty())
                    {
                        let pages = pages.clone();
                        break (pages, std::mem::take(&mut state.growth_unsynced));
                    }
                    if state.stopping {
                        return;
                    }
                    if !self.trickle {
                        state = self
                            .changed
                            .wait(state)
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        continue;
                    }
                    let since = last_sync.elapsed();
                    if since < TRICKLE_SYNC {
                        state = self
                            .changed
                            .wait_timeout(state, TRICKLE_SYNC - since)
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .0;
                        continue;
                    }
                    last_sync = Instant::now();
                    if self.unsynced.swap(false, Ordering::SeqCst) && state.failed.is_none() {
                        drop(state);
                        #[cfg(test)]
                        self.trickles[0].fetch_add(1, Ordering::SeqCst);
                        let synced = self.file.sync_data();
                        #[cfg(test)]
                        self.trickles[1].fetch_add(1, Ordering::SeqCst);
                        state = self.lock();
                        if let Err(e) = synced {
                            tracing::error!(error = %e, "the store file could not be synced");
                            state.failed = Some(e.to_string());
                            self.settle(&state);
                        }
                    }
                }
            };
            // A longer file is durable before any page of a header that may say so is written
            // (a flush of no pages is that sync alone).
            let written = if growth && !pages.is_empty() {
                self.file.sync_data()
            } else {
                Ok(())
            }
            .and_then(|()| pages.write_synced(&self.file));
            let mut state = self.lock();
            match written {
                Ok(()) => {
                    // The checkpoint is on disk: what came after it may overwrite the pages
                    // only the checkpoint before it needed.
                    if !state.checkpointing {
                        let kept = std::mem::take(&mut state.kept);
                        if let Err(e) = kept.write_to(&self.file) {
                            state.failed = Some(e.to_string());
                        }
                        state.spare.keep(kept);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "a checkpoint could not be written to the store file");
                    state.failed = Some(e.to_string());
                }
            }
            state.flushing = None;
            if let Ok(pages) = Arc::try_unwrap(pages) {
                state.spare.keep(pages);
            }
            // The file grew again during the flush: one more pass, a sync.
            if state.growth_unsynced && state.failed.is_none() {
                self.flush_growth(&mut state);
            }
            self.settle(&state);
            self.changed.notify_all();
        }
    }
}

/// The redb file, written through the flusher while a checkpoint is marked.
#[derive(Debug)]
pub struct StoreFile {
    shared: Arc<Shared>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The writer's side of a `StoreFile`: marks checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    shared: Arc<Shared>,
}

impl StoreFile {
    /// Opens the file at `path`; with `trickle`, the flusher also syncs it every
    /// `TRICKLE_SYNC` that saw a write (for the journal, where nothing else does between
    /// checkpoints).
    pub fn open(path: &Path, trickle: bool) -> Result<(StoreFile, Checkpoints), StoreError> {
        let failed = |e: String| {
            StoreError::Storage(format!("cannot open store file {}: {e}", path.display()))
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| failed(e.to_string()))?;
        let shared = Arc::new(Shared {
            file: FileBackend::new(file).map_err(|e| failed(e.to_string()))?,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            involved: AtomicBool::new(false),
            trickle,
            unsynced: AtomicBool::new(false),
            #[cfg(test)]
            trickles: Default::default(),
        });
        let flusher_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("store-flusher".to_string())
            .spawn(move || flusher_shared.flusher())
            .map_err(|e| failed(format!("cannot start the flusher thread: {e}")))?;
        let checkpoints = Checkpoints {
            shared: shared.clone(),
        };
        Ok((
            StoreFile {
                shared,
                flusher: Mutex::new(Some(flusher)),
            },
            checkpoints,
        ))
    }
}

impl Checkpoints {
    /// Runs `commit` (a durable redb commit) as a checkpoint: it returns before its pages are
    /// on disk, which the flusher then writes and syncs.
    pub fn run<T>(&self, commit: impl FnOnce() -> T) -> T {
        {
            let mut state = self.shared.lock();
            state.checkpointing = true;
            self.shared.settle(&state);
        }
        let result = commit();
        let mut state = self.shared.lock();
        state.checkpointing = false;
        state.header_kept = false;
        if state.flushing.is_none() && state.failed.is_none() {
            // The commit failed before its sync: what it wrote goes to the file as any write,
            // and a growth it made is synced by the flusher as any.
            let kept = std::mem::take(&mut state.kept);
            if let Err(e) = kept.write_to(&self.shared.file) {
                state.failed = Some(e.to_string());
            }
            state.spare.keep(kept);
            if state.growth_unsynced {
                self.shared.flush_growth(&mut state);
            }
        }
        self.shared.settle(&state);
        result
    }

    /// Waits until no flush runs.
    #[cfg(test)]
    pub fn wait(&self) {
        drop(self.shared.wait_for_flush(self.shared.lock()));
    }

    /// Holds every checkpoint's flush before it writes anything, or lets them go.
    #[cfg(test)]
    pub fn hold_flushes(&self, held: bool) {
        self.shared.lock().held = held;
        self.shared.changed.notify_all();
    }

    /// The pages of the flush running (or held).
    #[cfg(test)]
    fn flushing(&self) -> Vec<(u64, Vec<u8>)> {
        let state = self.shared.lock();
        state.flushing.as_ref().map_or_else(Vec::new, |pages| {
            pages.chunks.iter().map(|(o, c)| (*o, c.clone())).collect()
        })
    }
}

impl StorageBackend for StoreFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        let len = self.shared.file.len()?;
        if !self.shared.involved.load(Ordering::SeqCst) {
            return Ok(len);
        }
        let state = self.shared.lock();
        Shared::failure(&state)?;
        let flushing = state.flushing.as_ref().map_or(0, |pages| pages.end());
        Ok(len.max(state.kept.end()).max(flushing))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        if !self.shared.involved.load(Ordering::SeqCst) {
            return self.shared.file.read(offset, out);
        }
        let state = self.shared.lock();
        Shared::failure(&state)?;
        // Under the lock, so that a flush that ends meanwhile cannot take its pages away
        // between the file's bytes and the overlay (the file's may be torn by its writes).
        let file_len = self.shared.file.len()?;
        let end = offset + out.len() as u64;
        let flushing_end = state.flushing.as_ref().map_or(0, |pages| pages.end());
        if end > file_len.max(state.kept.end()).max(flushing_end) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("a read to {end} past the store file's end"),
            ));
        }
        let in_file = file_len.saturating_sub(offset).min(out.len() as u64) as usize;
        self.shared.file.read(offset, &mut out[..in_file])?;
        out[in_file..].fill(0);
        if let Some(pages) = &state.flushing {
            pages.overlay(offset, out);
        }
        state.kept.overlay(offset, out);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut state = self.shared.lock();
        Shared::failure(&state)?;
        let current = self.shared.file.len()?;
        if len < current && self.shared.involved.load(Ordering::SeqCst) {
            // The flusher must not write past the new end.
            state = self.shared.wait_for_flush(state);
            Shared::failure(&state)?;
            state.kept.truncate(len);
        }
        self.shared.file.set_len(len)?;
        // redb syncs a file it grew before it writes anything else (see the top of this file).
        state.grew = len > current;
        self.shared.settle(&state);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        if !self.shared.involved.load(Ordering::SeqCst) {
            return self.shared.file.sync_data();
        }
        let mut state = self.shared.lock();
        Shared::failure(&state)?;
        if state.grew {
            // A growth's sync: no header says the file is longer yet. The flusher syncs it
            // before it writes anything (the checkpoint being committed, the flush running, or
            // a flush of its own), and every sync that can make a header durable waits for it.
            state.grew = false;
            state.growth_unsynced = true;
            if !state.checkpointing {
                self.shared.flush_growth(&mut state);
            }
            self.shared.settle(&state);
            return Ok(());
        }
        if state.checkpointing && !state.header_kept {
            // Not a growth's (above), and the checkpoint's header is not written yet: nothing
            // of the checkpoint to hand over.
            drop(state);
            return self.shared.file.sync_data();
        }
        let mut state = self.shared.wait_for_flush(state);
        Shared::failure(&state)?;
        let kept = std::mem::take(&mut state.kept);
        if state.checkpointing {
            state.header_kept = false;
            state.flushing = Some(Arc::new(kept));
            self.shared.settle(&state);
            self.shared.changed.notify_all();
            return Ok(());
        }
        kept.write_to(&self.shared.file)?;
        state.spare.keep(kept);
        self.shared.settle(&state);
        drop(state);
        self.shared.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if self.shared.trickle {
            self.shared.unsynced.store(true, Ordering::Relaxed);
        }
        if !self.shared.involved.load(Ordering::SeqCst) {
            return self.shared.file.write(offset, data);
        }
        let mut state = self.shared.lock();
        Shared::failure(&state)?;
        if state.grew {
            state.grew = false;
            self.shared.settle(&state);
        }
        if state.checkpointing || state.flushing.is_some() {
            let State { kept, spare, .. } = &mut *state;
            kept.insert(offset, data, spare);
            state.header_kept |= state.checkpointing && offset == 0;
            return Ok(());
        }
        self.shared.file.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        {
            let mut state = self.shared.wait_for_flush(self.shared.lock());
            state.stopping = true;
            self.shared.changed.notify_all();
        }
        if let Some(flusher) = self
            .flusher
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            let _ = flusher.join();
        }
        self.shared.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.shared.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.shared.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.shared.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.shared.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.shared.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.shared.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use ::redb::{
        Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
        TableDefinition,
    };
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn pages_read_back_as_a_plain_buffer_would(
            writes in prop::collection::vec((0u64..64, 1usize..24, any::<u8>()), 1..40),
            cut in 0u64..96,
        ) {
            let mut pages = Pages::default();
            // Buffers of earlier pages, longer and shorter than the writes, full of other bytes.
            let buffers: Vec<Vec<u8>> = (1..30).map(|len| vec![0xAB; len]).collect();
            let bytes = buffers.iter().map(Vec::capacity).sum();
            let mut spare = Spare { buffers, bytes };
            let mut model = vec![None::<u8>; 96];
            for (offset, len, byte) in writes {
                pages.insert(offset, &vec![byte; len], &mut spare);
                for slot in &mut model[offset as usize..offset as usize + len] {
                    *slot = Some(byte);
                }
            }
            let check = |pages: &Pages, model: &[Option<u8>]| {
                let mut out = vec![0xEE; 96];
                pages.overlay(0, &mut out);
                for (at, slot) in model.iter().enumerate() {
                    prop_assert_eq!(out[at], slot.unwrap_or(0xEE), "byte {}", at);
                }
                let end = model.iter().rposition(Option::is_some).map_or(0, |at| at as u64 + 1);
                prop_assert_eq!(pages.end(), end);
                let chunks: Vec<_> = pages.chunks.iter().map(|(o, c)| (*o, c.len() as u64)).collect();
                prop_assert!(chunks.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0), "{:?}", chunks);
                Ok(())
            };
            check(&pages, &model)?;
            pages.truncate(cut);
            for slot in &mut model[cut as usize..] {
                *slot = None;
            }
            check(&pages, &model)?;
        }
    }

    const VALUES: TableDefinition<u64, &[u8]> = TableDefinition::new("values");

    /// Sets every value to `letter`, many pages' worth.
    fn set_all(db: &Database, letter: u8, durability: Durability) {
        add_values(db, 0, 300, letter, durability);
    }

    /// A database on a `StoreFile` in `dir` with a small page cache, every value set to `a`
    /// durably; its file's path.
    fn database_in(dir: &Path) -> (std::path::PathBuf, Database, Checkpoints) {
        let path = dir.join("store.redb");
        let (file, checkpoints) = StoreFile::open(&path, true).unwrap();
        let db = Database::builder()
            .set_cache_size(1 << 20)
            .create_with_backend(file)
            .unwrap();
        set_all(&db, b'a', Durability::Immediate);
        (path, db, checkpoints)
    }

    /// Adds `count` values of `letter` from key `first` on, many pages' worth.
    fn add_values(db: &Database, first: u64, count: u64, letter: u8, durability: Durability) {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(durability).unwrap();
        {
            let mut table = txn.open_table(VALUES).unwrap();
            for key in first..first + count {
                table.insert(key, [letter; 1500].as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn letters(path: &Path) -> Vec<u8> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(VALUES).unwrap();
        let mut letters: Vec<u8> = table
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap().1.value()[0])
            .collect();
        letters.dedup();
        letters
    }

    #[test]
    fn a_crash_in_the_middle_of_a_flush_leaves_one_checkpoint_or_the_one_before() {
        for round in 0..6u64 {
            let dir = tempfile::tempdir().unwrap();
            let (path, db, checkpoints) = database_in(dir.path());
            checkpoints.hold_flushes(true);
            checkpoints.run(|| set_all(&db, b'b', Durability::Immediate));
            // redb takes `b` as durable and may reuse the pages only `a` needed: these stay
            // in memory until `b` is on disk.
            set_all(&db, b'c', Durability::None);
            set_all(&db, b'd', Durability::None);
            let flushing = checkpoints.flushing();
            assert!(
                flushing.len() > 10,
                "the checkpoint's pages wait: {}",
                flushing.len()
            );

            // What a crash leaves: the file, with some of the checkpoint's pages written.
            let image = dir.path().join("image.redb");
            std::fs::copy(&path, &image).unwrap();
            let written = std::fs::OpenOptions::new()
                .write(true)
                .open(&image)
                .unwrap();
            let mut rng = fastrand::Rng::with_seed(round);
            for (offset, chunk) in &flushing {
                // All of them in the last round, none in the first.
                if round == 5 || (round > 0 && rng.bool()) {
                    std::os::unix::fs::FileExt::write_all_at(&written, chunk, *offset).unwrap();
                }
            }
            drop(written);
            let found = letters(&image);
            assert!(
                found == [b'a'] || found == [b'b'],
                "round {round}: {:?}",
                String::from_utf8_lossy(&found)
            );
            if round == 0 {
                assert_eq!(
                    found,
                    [b'a'],
                    "with none of its pages, the checkpoint before"
                );
            }
            if round == 5 {
                assert_eq!(found, [b'b'], "with all of them, the checkpoint");
            }

            checkpoints.hold_flushes(false);
            checkpoints.wait();
            std::fs::copy(&path, &image).unwrap();
            assert_eq!(
                letters(&image),
                [b'b'],
                "once flushed, the file holds the checkpoint"
            );
            assert_eq!(
                {
                    let txn = db.begin_read().unwrap();
                    let table = txn.open_table(VALUES).unwrap();
                    table.get(7).unwrap().unwrap().value()[0]
                },
                b'd',
                "the open database reads its last commit"
            );
        }
    }

    #[test]
    fn the_flusher_syncs_what_redb_writes_between_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, db, checkpoints) = database_in(dir.path());
        let shared = &checkpoints.shared;
        // Far more than redb's write buffer holds, so that it writes pages out: with the
        // journal, nothing else would sync them before the next checkpoint.
        add_values(&db, 300, 2000, b'c', Durability::None);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while shared.unsynced.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "no sync of the file began within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The sync that took the writes over is among those begun: it ends.
        let begun = shared.trickles[0].load(Ordering::SeqCst);
        assert!(begun > 0, "the flusher synced the file");
        while shared.trickles[1].load(Ordering::SeqCst) < begun {
            assert!(
                Instant::now() < deadline,
                "a sync of the file did not end within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(shared.lock().failed.is_none());
    }

    #[test]
    fn a_growth_during_a_flush_waits_for_it_in_the_flusher_not_in_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db, checkpoints) = database_in(dir.path());
        let length = || std::fs::metadata(&path).unwrap().len();
        let before = length();
        checkpoints.hold_flushes(true);
        checkpoints.run(|| set_all(&db, b'b', Durability::Immediate));
        // Commits between checkpoints, 3.6 MB of them, while the checkpoint's flush is held:
        // redb grows the file, and the growth's sync waits for the flush in the flusher.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for round in 0..8 {
                    add_values(&db, 300 + round * 300, 300, b'a', Durability::None);
                }
                done.send(()).unwrap();
            });
            let went_on = finished.recv_timeout(std::time::Duration::from_secs(10));
            checkpoints.hold_flushes(false);
            went_on.expect("commits that grow the file go on while a flush is held");
        });
        assert!(length() > before, "the file grew: {before} → {}", length());
        checkpoints.wait();
        let image = dir.path().join("image.redb");
        std::fs::copy(&path, &image).unwrap();
        assert_eq!(letters(&image), [b'b'], "the checkpoint, on disk");

        checkpoints.run(|| set_all(&db, b'c', Durability::Immediate));
        checkpoints.wait();
        std::fs::copy(&path, &image).unwrap();
        assert_eq!(
            letters(&image),
            [b'c', b'a'],
            "the next checkpoint, with every value added before it"
        );
        let reopened = Database::open(&image).unwrap();
        let txn = reopened.begin_read().unwrap();
        assert_eq!(txn.open_table(VALUES).unwrap().len().unwrap(), 300 * 9);
    }
}
