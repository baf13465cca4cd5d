//! The embedded store's journal (`hub.journal` beside `hub.redb`): how a commit becomes durable
//! without the storage engine writing its pages.
//!
//! A redb commit copies every B-tree page it changes and fsyncs them all: about 35–45 KiB per
//! forwarded push, each page a few records wide (docs/PERFORMANCE.md). Instead, the writer
//! appends what a batch wrote (each table, key and value, or removal) to this file and fsyncs
//! it — a few KiB — and only then commits the batch to redb without an fsync, so that readers
//! never see a write that is not yet durable. Once the journal holds `DEFAULT_CHECKPOINT_BYTES`, the
//! next batch is committed with redb's own fsync (a checkpoint): from then on the file alone
//! holds everything, and the journal starts again at its beginning. A page rewritten by many
//! batches between two checkpoints reaches the disk once.
//!
//! At open, the records after the file's last checkpoint are applied again (`RedbBackend`
//! keeps the number of the last record each commit applied in the file itself).
//!
//! ```text
//! record: len:u32 (of body) seq:u64 check:8 bytes body
//! check:  the first 8 bytes of SHA-256(store id:u64, len, seq, body)
//! body:   op*   insert: 1 name_len:u8 name key_len:u32 key value_len:u32 value
//!               remove: 2 name_len:u8 name key_len:u32 key
//! ```
//!
//! The journal is two files, written in turn: a checkpoint's pages reach the disk after its
//! commit returns (`redb_file.rs`), so until then the records before it are still needed, and
//! the records after it go to the other file. That file is written from its start, over the
//! records of two checkpoints ago, which the disk holds by then (a checkpoint waits for the
//! flush of the one before). Each file is read from its start while each record checks and
//! numbers one more than the one before: a record cut short by a crash, or one of an earlier
//! round, ends it. Neither was ever acknowledged. The store id in the check keeps a journal
//! left beside another store's file from being applied to this one.

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{Context, SHA256};

use super::StoreError;
use super::tables::{ReadAhead, Table, Tables, TablesMut, Visit};

/// The journal's two files in the store's folder.
pub const JOURNAL_FILES: [&str; 2] = ["hub.journal", "hub.journal.2"];

/// Journal bytes after which the next batch is a checkpoint in the tests, as with
/// `store.journal_checkpoint_mib`'s default. Bounds each file and the records applied again after a crash. A checkpoint holds up the writes queued behind it while it
/// writes the changed pages redb kept in memory (at most half of `store.cache_mib`) and syncs
/// the file, tens of milliseconds; this far apart, a fixed 5,000 events a second meets one
/// every four or five seconds (docs/PERFORMANCE.md, "The journal").
#[cfg(test)]
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 64 << 20;

const HEADER: usize = 4 + 8 + 8;
const INSERT: u8 = 1;
const REMOVE: u8 = 2;

/// One write a batch made.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    Insert(Table, Vec<u8>, Vec<u8>),
    Remove(Table, Vec<u8>),
}

/// A batch's record read back: its number, and where its body is in the bytes read of which
/// file.
#[derive(Debug)]
pub struct Record {
    pub seq: u64,
    file: usize,
    body: std::ops::Range<usize>,
}

/// What `Journal::open` read: both files' bytes, and the records of their chains in the order
/// of their numbers.
pub struct Contents {
    bytes: [Vec<u8>; 2],
    pub records: Vec<Record>,
}

impl Contents {
    pub fn body(&self, record: &Record) -> &[u8] {
        &self.bytes[record.file][record.body.clone()]
    }
}

pub struct Journal {
    files: [(File, PathBuf); 2],
    /// The file records go to.
    active: usize,
    store_id: u64,
    /// Where the next record goes.
    position: u64,
}

impl Journal {
    /// Opens (or creates) the journal's files in `dir` and reads their chains of records.
    pub fn open(dir: &Path, store_id: u64) -> Result<(Journal, Contents), StoreError> {
        let open_one = |index: usize| -> Result<((File, PathBuf), Vec<u8>), StoreError> {
            let path = dir.join(JOURNAL_FILES[index]);
            let failed = |e: std::io::Error| {
                StoreError::Storage(format!("cannot open the journal {}: {e}", path.display()))
            };
            let mut options = std::fs::OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                // It holds the same sealed records as the store file.
                options.mode(0o600);
            }
            let mut file = options.open(&path).map_err(failed)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(failed)?;
            Ok(((file, path), bytes))
        };
        let (first, first_bytes) = open_one(0)?;
        let (second, second_bytes) = open_one(1)?;
        let bytes = [first_bytes, second_bytes];
        let mut records: Vec<Record> = (0..2)
            .flat_map(|file| chain(&bytes[file], store_id, file))
            .collect();
        records.sort_by_key(|r| r.seq);
        // Records go on after the first file's chain, until a checkpoint says otherwise.
        let position = records
            .iter()
            .filter(|r| r.file == 0)
            .map(|r| r.body.end as u64)
            .max()
            .unwrap_or(0);
        let journal = Journal {
            files: [first, second],
            active: 0,
            store_id,
            position,
        };
        Ok((journal, Contents { bytes, records }))
    }

    /// Appends a batch's record and returns once it is on disk.
    pub fn append(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(body.len()).map_err(|_| {
            StoreError::Storage(format!(
                "a commit batch of {} bytes is too large for the journal",
                body.len()
            ))
        })?;
        let mut record = Vec::with_capacity(HEADER + body.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&check(self.store_id, len, seq, body));
        record.extend_from_slice(body);
        self.write_at(self.position, &record)?;
        self.position += record.len() as u64;
        Ok(())
    }

    /// After a checkpoint on disk (at open, once the records were applied): every record is
    /// in the file, the next goes at the start of the first journal file.
    pub fn restart(&mut self) {
        self.active = 0;
        self.position = 0;
    }

    /// After a checkpoint whose pages the flusher is writing: the next records go to the
    /// other file, from its start. Its records are older than the checkpoint before, which
    /// is on disk.
    pub fn rotate(&mut self) {
        self.active = 1 - self.active;
        self.position = 0;
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let (file, path) = &mut self.files[self.active];
        let written = file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(bytes))
            .and_then(|()| file.sync_data());
        written.map_err(|e| {
            StoreError::Storage(format!("cannot write the journal {}: {e}", path.display()))
        })
    }
}

/// The journal bytes a batch's record of `body` takes.
pub fn record_len(body: &[u8]) -> u64 {
    (HEADER + body.len()) as u64
}

fn check(store_id: u64, len: u32, seq: u64, body: &[u8]) -> [u8; 8] {
    let mut context = Context::new(&SHA256);
    context.update(&store_id.to_le_bytes());
    context.update(&len.to_le_bytes());
    context.update(&seq.to_le_bytes());
    context.update(body);
    let digest = context.finish();
    let mut first = [0; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    first
}

/// The records from the start of `bytes` (of journal file `file`) while each checks and
/// follows the one before.
fn chain(bytes: &[u8], store_id: u64, file: usize) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len as usize) else {
            break;
        };
        let follows = records
            .last()
            .is_none_or(|last| last.seq.checked_add(1) == Some(seq));
        if len == 0 || !follows || check(store_id, len, seq, body) != header[12..20] {
            break;
        }
        records.push(Record {
            seq,
            file,
            body: at + HEADER..at + HEADER + len as usize,
        });
        at += HEADER + len as usize;
    }
    records
}

/// Reads a record's writes back.
pub fn decode(body: &[u8]) -> Result<Vec<Op>, StoreError> {
    fn take<'b>(body: &'b [u8], at: &mut usize, n: usize) -> Result<&'b [u8], StoreError> {
        let part = body
            .get(*at..*at + n)
            .ok_or_else(|| StoreError::Corrupt("a journal record is cut short".to_string()))?;
        *at += n;
        Ok(part)
    }
    fn take_len(body: &[u8], at: &mut usize) -> Result<usize, StoreError> {
        let len = take(body, at, 4)?;
        Ok(u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize)
    }
    let mut ops = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let kind = take(body, &mut at, 1)?[0];
        let name_len = take(body, &mut at, 1)?[0] as usize;
        let name = take(body, &mut at, name_len)?;
        let table = Table::ALL
            .into_iter()
            .find(|t| t.name().as_bytes() == name)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "a journal record names a table this hub does not know: {}",
                    String::from_utf8_lossy(name)
                ))
            })?;
        let key_len = take_len(body, &mut at)?;
        let key = take(body, &mut at, key_len)?.to_vec();
        ops.push(match kind {
            INSERT => {
                let value_len = take_len(body, &mut at)?;
                Op::Insert(table, key, take(body, &mut at, value_len)?.to_vec())
            }
            REMOVE => Op::Remove(table, key),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a journal record has an operation {other} this hub does not know"
                )));
            }
        });
    }
    Ok(ops)
}

/// Applies a record's writes.
pub fn apply(ops: Vec<Op>, tables: &dyn TablesMut) -> Result<(), StoreError> {
    for op in ops {
        match op {
            Op::Insert(table, key, value) => tables.insert(table, &key, &value)?,
            Op::Remove(table, key) => tables.remove(table, &key)?,
        }
    }
    Ok(())
}

/// Tables that write through to `inner` and note each write for the journal.
pub struct Recording<'t> {
    inner: &'t dyn TablesMut,
    body: RefCell<Vec<u8>>,
}

impl<'t> Recording<'t> {
    pub fn new(inner: &'t dyn TablesMut) -> Self {
        Recording {
            inner,
            body: RefCell::new(Vec::new()),
        }
    }

    /// What was written, as a record's body.
    pub fn into_body(self) -> Vec<u8> {
        self.body.into_inner()
    }
}

/// Adds one write to a record's body.
pub fn encode(body: &mut Vec<u8>, table: Table, key: &[u8], value: Option<&[u8]>) {
    let name = table.name().as_bytes();
    body.push(if value.is_some() { INSERT } else { REMOVE });
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    // Keys and values are bounded far below 4 GiB by the request limits that produce them.
    body.extend_from_slice(&(key.len() as u32).to_le_bytes());
    body.extend_from_slice(key);
    if let Some(value) = value {
        body.extend_from_slice(&(value.len() as u32).to_le_bytes());
        body.extend_from_slice(value);
    }
}

impl Tables for Recording<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn prefetch(&self, reads: &[ReadAhead]) -> Result<(), StoreError> {
        self.inner.prefetch(reads)
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner.get_many(table, keys)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        self.inner.scan(table, prefix, start, visit)
    }
}

impl TablesMut for Recording<'_> {
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.insert(table, key, value)?;
        encode(&mut self.body.borrow_mut(), table, key, Some(value));
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.inner.remove(table, key)?;
        encode(&mut self.body.borrow_mut(), table, key, None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: u8) -> Vec<u8> {
        let mut body = Vec::new();
        encode(&mut body, Table::Events, &[n], Some(&[n; 3]));
        encode(&mut body, Table::Lanes, &[n], None);
        body
    }

    fn seqs(contents: &Contents) -> Vec<u64> {
        contents.records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_read_back_in_order_with_their_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, contents) = Journal::open(dir.path(), 9).unwrap();
        assert!(contents.records.is_empty());
        for seq in 1..=3 {
            journal.append(seq, &body(seq as u8)).unwrap();
        }
        let (_, contents) = Journal::open(dir.path(), 9).unwrap();
        assert_eq!(seqs(&contents), [1, 2, 3]);
        assert_eq!(
            decode(contents.body(&contents.records[1])).unwrap(),
            [
                Op::Insert(Table::Events, vec![2], vec![2; 3]),
                Op::Remove(Table::Lanes, vec![2])
            ]
        );
    }

    #[test]
    fn a_record_cut_short_or_altered_ends_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 9).unwrap();
        for seq in 1..=3 {
            journal.append(seq, &body(seq as u8)).unwrap();
        }
        let path = dir.path().join(JOURNAL_FILES[0]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(seqs(&Journal::open(dir.path(), 9).unwrap().1), [1, 2]);

        let mut altered = bytes.clone();
        let second = HEADER + body(1).len();
        altered[second + HEADER] ^= 1;
        std::fs::write(&path, &altered).unwrap();
        assert_eq!(seqs(&Journal::open(dir.path(), 9).unwrap().1), [1]);
    }

    #[test]
    fn after_a_restart_the_records_of_the_round_before_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 9).unwrap();
        for seq in 1..=5 {
            journal.append(seq, &body(seq as u8)).unwrap();
        }
        journal.restart();
        journal.append(7, &body(7)).unwrap();
        journal.append(8, &body(8)).unwrap();
        // Records 3 to 5 are still in the file, after the new ones.
        assert_eq!(seqs(&Journal::open(dir.path(), 9).unwrap().1), [7, 8]);
    }

    #[test]
    fn a_rotation_keeps_the_round_before_until_the_next_one_writes_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 9).unwrap();
        for seq in 1..=4 {
            journal.append(seq, &body(seq as u8)).unwrap();
        }
        journal.rotate();
        journal.append(5, &body(5)).unwrap();
        journal.append(6, &body(6)).unwrap();
        // Both rounds, in the order of their numbers, whichever file they are in.
        let (_, contents) = Journal::open(dir.path(), 9).unwrap();
        assert_eq!(seqs(&contents), [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            decode(contents.body(&contents.records[4])).unwrap()[0],
            Op::Insert(Table::Events, vec![5], vec![5; 3])
        );
        journal.rotate();
        journal.append(7, &body(7)).unwrap();
        // The first file's older records after the new one end its chain.
        assert_eq!(seqs(&Journal::open(dir.path(), 9).unwrap().1), [5, 6, 7]);
    }

    #[test]
    fn another_store_s_journal_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 9).unwrap();
        journal.append(1, &body(1)).unwrap();
        assert!(Journal::open(dir.path(), 10).unwrap().1.records.is_empty());
    }

    #[test]
    fn a_body_naming_an_unknown_table_is_refused() {
        let mut body = body(1);
        body.extend_from_slice(&[INSERT, 2, b'n', b'o', 0, 0, 0, 0, 0, 0, 0, 0]);
        let error = decode(&body).unwrap_err().to_string();
        assert!(error.contains("does not know: no"), "{error}");
        assert!(decode(&body[..body.len() - 3]).is_err());
    }
}
