//! The Raft log and vote in sled.
//!
//! Durability contract (openraft's storage rules): a vote, an appended entry or
//! a truncation is on disk, with sled flushed and its files synced
//! ([`SledSync`]: sled's own flush is not enough for a power loss), before the
//! call returns or the append callback fires. sled on its own only flushes
//! every 500 ms, which would let a node forget a vote or an acknowledged entry
//! after a crash.

use super::sled_sync::SledSync;
use crate::codec;
use crate::raft::{Entry, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError, Vote};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Sentinel for "no committed index" in [`LogStore::committed_index`].
const NONE_INDEX: u64 = u64::MAX;

/// Raft log entries keyed by big-endian index, plus vote and purge markers.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    /// Makes a flush durable.
    files: Arc<SledSync>,
    log: sled::Tree,
    meta: sled::Tree,
    /// Last committed index openraft told us, for status and the JSON view.
    committed: Arc<AtomicU64>,
}

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    /// Opens the log in `db`, the sled database at `dir`.
    pub fn open(db: &sled::Db, dir: &Path) -> Result<LogStore, sled::Error> {
        let store = LogStore {
            db: db.clone(),
            files: Arc::new(SledSync::open(dir)?),
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
            committed: Arc::new(AtomicU64::new(NONE_INDEX)),
        };
        if let Some(v) = store.meta.get(KEY_COMMITTED)? {
            if let Ok(c) = codec::decode::<LogId>(&v) {
                store.committed.store(c.index, Ordering::Relaxed);
            }
        }
        Ok(store)
    }

    /// The last committed log index this node knows of.
    pub fn committed_index(&self) -> Option<u64> {
        match self.committed.load(Ordering::Relaxed) {
            NONE_INDEX => None,
            i => Some(i),
        }
    }

    /// True when this node has never voted nor logged anything: a pristine node.
    pub fn is_pristine(&self) -> Result<bool, sled::Error> {
        Ok(self.meta.get(KEY_VOTE)?.is_none() && self.log.is_empty())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.meta.get(key).map_err(read_logs_err)? {
            None => Ok(None),
            Some(v) => codec::decode(&v).map(Some).map_err(read_logs_err),
        }
    }

    /// Flushes sled and syncs its files, off the async workers. (sled's
    /// `flush_async` was measured returning faster than its write takes here,
    /// so the blocking `flush` is used.) The sync runs even when sled had
    /// nothing left to write: another flush of the same database (the
    /// ledger's) may have written this log's entries without syncing them.
    async fn flush(&self) -> Result<(), StorageError> {
        let db = self.db.clone();
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            db.flush().map_err(write_logs_err)?;
            files.sync().map_err(write_logs_err)
        })
        .await
        .map_err(|e| write_logs_err(std::io::Error::other(e.to_string())))??;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(i.to_be_bytes()),
            Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for kv in self.log.range((Bound::Included(start.to_be_bytes()), end)) {
            let (_, v) = kv.map_err(read_logs_err)?;
            out.push(codec::decode::<Entry>(&v).map_err(read_logs_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let last = match self.log.last().map_err(read_logs_err)? {
            Some((_, v)) => Some(codec::decode::<Entry>(&v).map_err(read_logs_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = codec::encode(vote).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.meta
            .insert(KEY_VOTE, bytes)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: openraft only uses it to speed up re-applying after a
        // restart, and a stale value is always safe.
        match &committed {
            Some(c) => {
                let bytes = codec::encode(c).map_err(write_logs_err)?;
                self.meta.insert(KEY_COMMITTED, bytes).map_err(write_logs_err)?;
            }
            None => {
                self.meta.remove(KEY_COMMITTED).map_err(write_logs_err)?;
            }
        }
        self.committed
            .store(committed.map_or(NONE_INDEX, |c| c.index), Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta(KEY_COMMITTED)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        crate::timeline::mark(crate::timeline::Point::LogAppend);
        // One insert per entry, not a batch: every sled 0.34 batch seals the
        // write buffer before and after it, two more writes (each with its
        // sync_file_range) that the flush below then waits for. Atomicity is
        // not needed: sled recovers a prefix of its log, so a crash part way
        // leaves a prefix of these entries, which is a valid log, and none of
        // them was reported durable.
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(write_logs_err)?;
            self.log
                .insert(entry.log_id.index.to_be_bytes(), bytes)
                .map_err(write_logs_err)?;
        }
        // The callback tells openraft the entries are durable: flush first.
        match self.flush().await {
            Ok(_) => {
                crate::timeline::mark(crate::timeline::Point::LogFlushed);
                crate::stats::record(crate::stats::Stage::LogAppend, started.elapsed());
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(log_id.index.to_be_bytes()..) {
            let (k, _) = kv.map_err(write_logs_err)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_logs_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: after a crash mid-purge the log state
        // still reports a consistent `last_purged_log_id`.
        let bytes = codec::encode(&log_id).map_err(write_logs_err)?;
        self.meta.insert(KEY_LAST_PURGED, bytes).map_err(write_logs_err)?;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..=log_id.index.to_be_bytes()) {
            let (k, _) = kv.map_err(write_logs_err)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_logs_err)?;
        self.flush().await
    }
}
