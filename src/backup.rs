//! The backup file of the embedded store: every record of every table, as one read
//! transaction saw them, in a self-checking stream.
//!
//! ```text
//! "A2AHUBBK" version:u32
//! header: len:u32 JSON {"createdAtMs", "hubVersion", "tables": [name, …]}
//! record: 0x01 table:u8 (index into "tables") klen:u32 key vlen:u32 value     (repeated)
//! end:    0x00 records:u64 sha256 (32 bytes, of everything before it)
//! ```
//!
//! `restore_store` loads a backup into a new store folder. Values are copied as stored:
//! sealed records stay sealed, so a restored store needs the same `store.encryption_key`. A file cut short or altered fails its checksum and is refused
//! whole; nothing is restored from it.

use std::io::Read;

use aws_lc_rs::digest::{Context, SHA256};
use axum::body::Bytes;

use crate::store::{BackupStore, REDB_FILE, RedbStore, Sealing, Store, StoreError, Table};

const MAGIC: &[u8; 8] = b"A2AHUBBK";
const VERSION: u32 = 1;
const RECORD: u8 = 1;
const END: u8 = 0;
/// Largest header, key or value a reader accepts (a record is far smaller; this bounds what a
/// corrupt length can make it allocate).
const MAX_FIELD: u32 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a backup of this hub (its first bytes are not {MAGIC:?})")]
    NotABackup,
    #[error("the backup has format version {0}; this hub reads version {VERSION}: use a newer hub")]
    Version(u32),
    #[error("the backup has a table {0:?} this hub does not know: it was made by a newer hub")]
    UnknownTable(String),
    #[error("the backup is damaged or cut short: {0}")]
    Damaged(String),
    #[error("cannot read the backup: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the stream; each call returns the bytes to send next.
pub struct BackupWriter {
    digest: Context,
    records: u64,
}

impl BackupWriter {
    /// The writer and the stream's first bytes (magic, version, header).
    pub fn start(created_at_ms: u64) -> (BackupWriter, Vec<u8>) {
        let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        let header = serde_json::json!({
            "createdAtMs": created_at_ms,
            "hubVersion": env!("CARGO_PKG_VERSION"),
            "tables": names,
        })
        .to_string();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_be_bytes());
        bytes.extend_from_slice(&(header.len() as u32).to_be_bytes());
        bytes.extend_from_slice(header.as_bytes());
        let mut writer = BackupWriter {
            digest: Context::new(&SHA256),
            records: 0,
        };
        writer.digest.update(&bytes);
        (writer, bytes)
    }

    /// Appends one record to `out`.
    pub fn record(&mut self, table: Table, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let from = out.len();
        out.push(RECORD);
        out.push(table.index() as u8);
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
        self.digest.update(&out[from..]);
        self.records += 1;
    }

    /// The stream's last bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut end = vec![END];
        end.extend_from_slice(&self.records.to_be_bytes());
        let mut digest = self.digest;
        digest.update(&end);
        end.extend_from_slice(digest.finish().as_ref());
        end
    }
}

/// Bytes sent to the client at a time.
const CHUNK: usize = 256 * 1024;

/// The backup of `store` as a stream of bytes, written as one read transaction reads the
/// store. A store fault midway ends the stream with an error (the client's copy then fails its
/// check); a client that goes away stops the copy.
pub fn stream(
    store: std::sync::Arc<dyn Store>,
    created_at_ms: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let (chunks, received) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let (writer, head) = BackupWriter::start(created_at_ms);
        let state = std::sync::Arc::new(std::sync::Mutex::new((writer, head)));
        let (visit_state, visit_chunks) = (state.clone(), chunks.clone());
        let dumped = store
            .dump(Box::new(move |table, key, value| {
                let mut guard = visit_state
                    .lock()
                    .map_err(|_| StoreError::Storage("the backup writer is poisoned".into()))?;
                let (writer, buffer) = &mut *guard;
                writer.record(table, key, value, buffer);
                if buffer.len() >= CHUNK {
                    let full = Bytes::from(std::mem::take(buffer));
                    // The client went away: stop reading the store.
                    return Ok(visit_chunks.blocking_send(Ok(full)).is_ok());
                }
                Ok(true)
            }))
            .await;
        let last = match dumped {
            Ok(_) => match std::sync::Arc::try_unwrap(state) {
                Ok(state) => match state.into_inner() {
                    Ok((writer, mut buffer)) => {
                        buffer.extend(writer.finish());
                        Ok(Bytes::from(buffer))
                    }
                    Err(_) => Err(std::io::Error::other("the backup writer is poisoned")),
                },
                Err(_) => Err(std::io::Error::other("the backup writer is still in use")),
            },
            Err(e) => {
                tracing::error!(error = %e, "the backup stopped: a store read failed");
                Err(std::io::Error::other(
                    "the backup stopped: a store read failed",
                ))
            }
        };
        let _ = chunks.send(last).await;
    });
    futures_util::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|chunk| (chunk, received))
    })
}

/// What a backup holds, once read through.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSummary {
    pub created_at_ms: u64,
    pub hub_version: String,
    pub records: u64,
}

/// Reads a backup, giving each record to `visit`; checks the checksum at the end. A caller
/// that must not act on a damaged file reads it through once with a no-op `visit` first.
pub fn read_backup(
    input: impl Read,
    mut visit: impl FnMut(Table, Vec<u8>, Vec<u8>) -> Result<(), BackupError>,
) -> Result<BackupSummary, BackupError> {
    let mut input = Hashing {
        inner: input,
        digest: Context::new(&SHA256),
    };
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| BackupError::NotABackup)?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let version = read_u32(&mut input)?;
    if version != VERSION {
        return Err(BackupError::Version(version));
    }
    let header: serde_json::Value = serde_json::from_slice(&read_field(&mut input)?)
        .map_err(|e| BackupError::Damaged(format!("its header is not JSON: {e}")))?;
    let tables = header["tables"]
        .as_array()
        .ok_or_else(|| BackupError::Damaged("its header lists no tables".to_string()))?
        .iter()
        .map(|name| {
            let name = name.as_str().unwrap_or_default();
            Table::ALL
                .into_iter()
                .find(|t| t.name() == name)
                .ok_or_else(|| BackupError::UnknownTable(name.to_string()))
        })
        .collect::<Result<Vec<Table>, _>>()?;
    let mut records = 0u64;
    loop {
        match read_u8(&mut input)? {
            RECORD => {
                let index = read_u8(&mut input)? as usize;
                let table = *tables.get(index).ok_or_else(|| {
                    BackupError::Damaged(format!("a record names table number {index}"))
                })?;
                let key = read_field(&mut input)?;
                let value = read_field(&mut input)?;
                visit(table, key, value)?;
                records += 1;
            }
            END => break,
            other => {
                return Err(BackupError::Damaged(format!(
                    "unexpected byte {other:#04x} where a record starts"
                )));
            }
        }
    }
    let mut count = [0u8; 8];
    input.read_exact(&mut count).map_err(cut_short)?;
    let computed = input.digest.clone().finish();
    let mut stored = [0u8; 32];
    input.inner.read_exact(&mut stored).map_err(cut_short)?;
    if stored.as_slice() != computed.as_ref() {
        return Err(BackupError::Damaged(
            "its checksum does not match".to_string(),
        ));
    }
    if u64::from_be_bytes(count) != records {
        return Err(BackupError::Damaged(format!(
            "it says {} records, holds {records}",
            u64::from_be_bytes(count)
        )));
    }
    if input.inner.read(&mut [0u8; 1])? != 0 {
        return Err(BackupError::Damaged("bytes follow its end".to_string()));
    }
    Ok(BackupSummary {
        created_at_ms: header["createdAtMs"].as_u64().unwrap_or(0),
        hub_version: header["hubVersion"].as_str().unwrap_or("").to_string(),
        records,
    })
}

/// Reads a backup file through and checks it (format, every record, checksum) without
/// restoring it.
pub fn check_backup(path: &std::path::Path) -> Result<BackupSummary, BackupError> {
    let file = std::fs::File::open(path).map_err(BackupError::Io)?;
    read_backup(std::io::BufReader::new(file), |_, _, _| Ok(()))
}

/// Why `restore_store` restored nothing.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(
        "{0} holds a store already: restore into a new folder (move the current one aside first)"
    )]
    NotEmpty(std::path::PathBuf),
    #[error("cannot write the restored store: {0}")]
    Store(#[from] StoreError),
}

/// Restores a backup (`a2a-push-hub backup`, `GET /api/v1/backup`) into an embedded store
/// folder that holds no store yet. The file is read through and checked first: nothing is
/// written from a damaged or cut one. Sealed records are copied as they are, so the hub that
/// serves the restored store needs the same `store.encryption_key`.
pub async fn restore_store(
    from: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<BackupSummary, RestoreError> {
    let open = |path: &std::path::Path| {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(BackupError::Io)
    };
    let checked = {
        let file = open(from)?;
        tokio::task::spawn_blocking(move || read_backup(file, |_, _, _| Ok(())))
            .await
            .map_err(|e| StoreError::Storage(format!("the check stopped: {e}")))??
    };
    if data_dir.join(REDB_FILE).exists() {
        return Err(RestoreError::NotEmpty(data_dir.to_path_buf()));
    }
    // Each batch is fsynced as it loads: nothing waits on the load but this command.
    let restored = RedbStore::open_sealed(data_dir, Sealing::none(), 64 << 20, None)?;
    // The file is read on a thread of its own and loaded in batches as it is read.
    let (batches, mut received) = tokio::sync::mpsc::channel(2);
    let file = open(from)?;
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::new();
        let summary = read_backup(file, |table, key, value| {
            batch.push((table, key, value));
            if batch.len() >= 5_000 {
                let full = std::mem::take(&mut batch);
                // The loader stopped (a store error it reports itself): stop reading.
                if batches.blocking_send(full).is_err() {
                    return Err(BackupError::Damaged("the restore stopped".to_string()));
                }
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            let _ = batches.blocking_send(batch);
        }
        Ok::<_, RestoreError>(summary)
    });
    let loaded = async {
        while let Some(batch) = received.recv().await {
            restored.load(batch).await?;
        }
        reader
            .await
            .map_err(|e| StoreError::Storage(format!("the restore stopped: {e}")))?
    }
    .await;
    drop(received);
    restored.close().await;
    match loaded {
        Ok(summary) => {
            debug_assert_eq!(summary, checked);
            Ok(summary)
        }
        Err(e) => {
            // The file changed since it was checked, or the disk failed: leave no half store.
            let _ = std::fs::remove_file(data_dir.join(REDB_FILE));
            Err(e)
        }
    }
}

/// A reader that hashes what it reads.
struct Hashing<R> {
    inner: R,
    digest: Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

fn cut_short(e: std::io::Error) -> BackupError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        BackupError::Damaged("it ends before its end marker".to_string())
    } else {
        BackupError::Io(e)
    }
}

fn read_u8(input: &mut impl Read) -> Result<u8, BackupError> {
    let mut byte = [0u8; 1];
    input.read_exact(&mut byte).map_err(cut_short)?;
    Ok(byte[0])
}

fn read_u32(input: &mut impl Read) -> Result<u32, BackupError> {
    let mut bytes = [0u8; 4];
    input.read_exact(&mut bytes).map_err(cut_short)?;
    Ok(u32::from_be_bytes(bytes))
}

fn read_field(input: &mut impl Read) -> Result<Vec<u8>, BackupError> {
    let len = read_u32(input)?;
    if len > MAX_FIELD {
        return Err(BackupError::Damaged(format!("a field claims {len} bytes")));
    }
    let mut field = vec![0u8; len as usize];
    input.read_exact(&mut field).map_err(cut_short)?;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let (mut writer, mut bytes) = BackupWriter::start(42);
        writer.record(Table::Tasks, b"k1", b"v1", &mut bytes);
        writer.record(Table::Replay, b"k2", &7u64.to_be_bytes(), &mut bytes);
        bytes.extend(writer.finish());
        bytes
    }

    #[test]
    fn a_backup_reads_back_record_for_record() {
        let mut seen = Vec::new();
        let summary = read_backup(sample().as_slice(), |table, key, value| {
            seen.push((table, key, value));
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.records, 2);
        assert_eq!(summary.created_at_ms, 42);
        assert_eq!(seen[0], (Table::Tasks, b"k1".to_vec(), b"v1".to_vec()));
        assert_eq!(seen[1].0, Table::Replay);
    }

    #[test]
    fn a_damaged_or_cut_backup_is_refused() {
        let good = sample();
        for cut in [good.len() - 1, good.len() - 33, 30, 9] {
            let error = read_backup(&good[..cut], |_, _, _| Ok(())).unwrap_err();
            assert!(
                matches!(error, BackupError::Damaged(_)),
                "cut at {cut}: {error}"
            );
        }
        let mut flipped = good.clone();
        let at = flipped.len() - 45;
        flipped[at] ^= 1;
        assert!(matches!(
            read_backup(flipped.as_slice(), |_, _, _| Ok(())),
            Err(BackupError::Damaged(_))
        ));
        let mut longer = good.clone();
        longer.push(0);
        assert!(read_backup(longer.as_slice(), |_, _, _| Ok(())).is_err());
        assert!(matches!(
            read_backup(&b"PK\x03\x04 not ours"[..], |_, _, _| Ok(())),
            Err(BackupError::NotABackup)
        ));
    }
}
