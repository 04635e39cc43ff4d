//! The Raft log: entries in segment files of our own ([`Wal`]), the vote and
//! purge point in sled.
//!
//! Durability contract (openraft's storage rules): a vote, an appended entry or
//! a truncation is on disk before the call returns or the append callback
//! fires: entries by `fdatasync` of their segment, the vote by sled's flush
//! and a sync of its files ([`SledSync`]: sled's own flush is not enough for
//! a power loss). sled on its own only flushes every 500 ms, which would let
//! a node forget a vote or an acknowledged entry after a crash.
//!
//! The ledger's sled writes are not flushed per block: after a crash openraft
//! re-applies from the ledger's `last_applied`, which needs those entries
//! still in the log, so a purge first makes the ledger durable.

use super::ledger::Ledger;
use super::raft_wal::{Wal, WalError};
use super::sled_sync::SledSync;
use crate::codec;
use crate::raft::{Entry, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError, Vote};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Sentinel for "no committed index" in [`LogStore::committed_index`].
const NONE_INDEX: u64 = u64::MAX;

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("corrupt Raft log marker in {path}: {source}")]
    Decode { path: String, source: bincode::Error },
    #[error("the Raft log {path} is missing, but this node voted before (its database remembers the vote): it may have acknowledged entries it no longer has. Restore the directory, or treat the node as lost: remove its whole state, `bank-client cluster remove <id>`, then start it with a new --id and --join")]
    Missing { path: String },
    #[error("syncing the database: {0}")]
    Sync(#[source] StorageError),
}

/// Raft log entries by index, plus vote and purge markers.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    /// Makes a sled flush durable.
    files: Arc<SledSync>,
    wal: Arc<RwLock<Wal>>,
    meta: sled::Tree,
    /// Last committed index openraft told us, for status and the JSON view.
    committed: Arc<AtomicU64>,
    /// The state machine a purge must not get ahead of ([`LogStore::attach_ledger`]).
    ledger: Arc<OnceLock<Arc<Ledger>>>,
}

/// How long a purge waits for the ledger to apply (or install) up to the
/// purge point: a snapshot install of a large ledger takes tens of seconds.
const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn join_err(e: tokio::task::JoinError) -> StorageError {
    write_logs_err(std::io::Error::other(e.to_string()))
}

impl LogStore {
    /// Opens the log: entries in `log_dir`, vote and markers in `db`, the
    /// sled database at `db_dir`.
    pub fn open(db: &sled::Db, db_dir: &Path, log_dir: &Path) -> Result<LogStore, LogStoreError> {
        let files = Arc::new(SledSync::open(db_dir).map_err(sled::Error::from)?);
        let meta = db.open_tree("raft_meta")?;
        let purged = match meta.get(KEY_LAST_PURGED)? {
            Some(v) => Some(
                codec::decode::<LogId>(&v)
                    .map_err(|source| LogStoreError::Decode {
                        path: db_dir.display().to_string(),
                        source,
                    })?
                    .index,
            ),
            None => None,
        };
        // Checked before anything is created, so that every start refuses.
        if !log_dir.exists() && meta.get(KEY_VOTE)?.is_some() {
            return Err(LogStoreError::Missing {
                path: log_dir.display().to_string(),
            });
        }
        let wal = Wal::open(log_dir, purged)?;
        let store = LogStore {
            db: db.clone(),
            files,
            wal: Arc::new(RwLock::new(wal)),
            meta,
            committed: Arc::new(AtomicU64::new(NONE_INDEX)),
            ledger: Arc::new(OnceLock::new()),
        };
        if let Some(v) = store.meta.get(KEY_COMMITTED)? {
            if let Ok(c) = codec::decode::<LogId>(&v) {
                store.committed.store(c.index, Ordering::Relaxed);
            }
        }
        // A crash between recording a purge and deleting its segments
        // leaves entries the log no longer owns.
        if let Some(v) = store.meta.get(KEY_LAST_PURGED)? {
            if let Ok(p) = codec::decode::<LogId>(&v) {
                store.wal_mut().purge_to(p.index)?;
            }
        }
        Ok(store)
    }

    fn wal(&self) -> std::sync::RwLockReadGuard<'_, Wal> {
        self.wal.read().unwrap_or_else(|p| p.into_inner())
    }

    fn wal_mut(&self) -> std::sync::RwLockWriteGuard<'_, Wal> {
        self.wal.write().unwrap_or_else(|p| p.into_inner())
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
        Ok(self.meta.get(KEY_VOTE)?.is_none()
            && self.meta.get(KEY_LAST_PURGED)?.is_none()
            && self.wal().last_index().is_none())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.meta.get(key).map_err(read_logs_err)? {
            None => Ok(None),
            Some(v) => codec::decode(&v).map(Some).map_err(read_logs_err),
        }
    }

    fn read_entry(&self, index: u64) -> Result<Option<Entry>, StorageError> {
        match self.wal().read(index).map_err(read_logs_err)? {
            None => Ok(None),
            Some(bytes) => codec::decode::<Entry>(&bytes).map(Some).map_err(read_logs_err),
        }
    }

    /// Ties the log to the node's ledger, which shares its sled database: a
    /// purge waits until the ledger has applied (or installed) up to the
    /// purge point and makes that durable first, and each applied block's
    /// new sled blob files are synced.
    pub fn attach_ledger(&self, ledger: Arc<Ledger>) {
        ledger.sync_blobs_with(Arc::clone(&self.files));
        let _ = self.ledger.set(ledger);
    }

    /// Waits until the attached ledger has applied entry `index`: openraft
    /// 0.9 purges a follower's log right after queueing a snapshot install,
    /// before the install ran.
    async fn wait_for_ledger(&self, index: u64) -> Result<(), StorageError> {
        let Some(ledger) = self.ledger.get() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + PURGE_WAIT;
        while ledger.with_state(|s| s.last_applied).is_none_or(|a| a.index < index) {
            if ledger.is_stopping() {
                return Err(write_logs_err(std::io::Error::other(format!(
                    "purge to {index}: the node is shutting down"
                ))));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(write_logs_err(std::io::Error::other(format!(
                    "purge to {index}: the ledger did not apply that far within {} s",
                    PURGE_WAIT.as_secs()
                ))));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Makes what was written to the node's sled database so far durable.
    pub async fn sync_sled(&self) -> Result<(), LogStoreError> {
        self.flush_sled().await.map_err(LogStoreError::Sync)
    }

    /// Flushes sled and syncs its files, off the async workers. (sled's
    /// `flush_async` was measured returning faster than its write takes here,
    /// so the blocking `flush` is used.)
    async fn flush_sled(&self) -> Result<(), StorageError> {
        let db = self.db.clone();
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            db.flush().map_err(write_logs_err)?;
            files.sync().map_err(write_logs_err)
        })
        .await
        .map_err(join_err)??;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let wal = self.wal();
        let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => i - 1,
            Bound::Unbounded => last,
        }
        .min(last);
        let mut out = Vec::with_capacity(end.saturating_sub(start).saturating_add(1).min(1024) as usize);
        for index in start..=end {
            let bytes = wal
                .read(index)
                .map_err(read_logs_err)?
                .ok_or_else(|| read_logs_err(std::io::Error::other(format!("entry {index} is missing"))))?;
            out.push(codec::decode::<Entry>(&bytes).map_err(read_logs_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let last_index = self.wal().last_index();
        let last = match last_index {
            Some(i) => match self.read_entry(i)? {
                Some(entry) => Some(entry.log_id),
                None => return Err(read_logs_err(std::io::Error::other(format!("entry {i} is missing")))),
            },
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
        self.flush_sled().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: after a restart openraft re-applies up to it, and a
        // stale value only means re-applying less at start. A leader
        // restarted within its term also takes it as its read barrier;
        // `raft::read_barrier` raises that barrier to the whole log it held.
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
        let mut encoded = Vec::new();
        for entry in entries {
            encoded.push((entry.log_id.index, codec::encode(&entry).map_err(write_logs_err)?));
        }
        // Written here, so readers see the entries when this returns; synced
        // off the async workers. Appends never overlap: openraft waits for
        // each before the next.
        let target = {
            let mut wal = self.wal_mut();
            wal.append(encoded.iter().map(|(i, b)| (*i, b.as_slice())))
                .map_err(write_logs_err)?;
            wal.sync_target()
        };
        let synced = match target {
            None => Ok(()),
            Some((path, file)) => tokio::task::spawn_blocking(move || {
                file.sync_data()
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
        };
        // The callback tells openraft the entries are durable: only now.
        match synced {
            Ok(()) => {
                crate::timeline::mark(crate::timeline::Point::LogFlushed);
                crate::stats::record(crate::stats::Stage::LogAppend, started.elapsed());
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = write_logs_err(std::io::Error::new(e.kind(), e.to_string()));
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let wal = Arc::clone(&self.wal);
        tokio::task::spawn_blocking(move || {
            wal.write()
                .unwrap_or_else(|p| p.into_inner())
                .truncate_from(log_id.index)
        })
        .await
        .map_err(join_err)?
        .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first, in the same flush that makes the
        // ledger's writes durable, once the ledger has applied at least this
        // far: after a crash it must not come back from before entries the
        // log no longer holds.
        self.wait_for_ledger(log_id.index).await?;
        let bytes = codec::encode(&log_id).map_err(write_logs_err)?;
        self.meta.insert(KEY_LAST_PURGED, bytes).map_err(write_logs_err)?;
        self.flush_sled().await?;
        self.wal_mut().purge_to(log_id.index).map_err(write_logs_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Blank,
        }
    }

    /// Writes `entries` to `wal` and syncs it.
    fn write_entries(wal: &mut Wal, entries: &[Entry]) {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.log_id.index, codec::encode(e).unwrap()))
            .collect();
        wal.append(encoded.iter().map(|(i, b)| (*i, b.as_slice()))).unwrap();
        wal.sync().unwrap();
    }

    #[tokio::test]
    async fn a_purge_recorded_before_a_crash_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (db_dir, log_dir) = (dir.path().join("db"), dir.path().join("log"));
        let db = crate::storage::open_db(&db_dir).unwrap();
        let store = LogStore::open(&db, &db_dir, &log_dir).unwrap();
        let entries: Vec<Entry> = (0..=5).map(|i| entry(1, i)).collect();
        write_entries(&mut store.wal_mut(), &entries);
        // The purge point reached sled; the segment files were not touched.
        store
            .meta
            .insert(KEY_LAST_PURGED, codec::encode(&entries[2].log_id).unwrap())
            .unwrap();
        drop(store);
        let mut store = LogStore::open(&db, &db_dir, &log_dir).unwrap();
        assert_eq!(store.try_get_log_entries(..).await.unwrap(), &entries[3..]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entries[2].log_id));
        assert!(!store.is_pristine().unwrap());
    }

    #[tokio::test]
    async fn a_node_that_voted_refuses_to_start_without_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let (db_dir, log_dir) = (dir.path().join("db"), dir.path().join("log"));
        let db = crate::storage::open_db(&db_dir).unwrap();
        let mut store = LogStore::open(&db, &db_dir, &log_dir).unwrap();
        store.save_vote(&Vote::new(3, 1)).await.unwrap();
        drop(store);
        std::fs::remove_dir_all(&log_dir).unwrap();
        // Every start refuses, not only the first.
        for _ in 0..2 {
            match LogStore::open(&db, &db_dir, &log_dir) {
                Err(LogStoreError::Missing { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("a node that voted started with a new, empty log"),
            }
        }
    }

    #[tokio::test]
    async fn a_purge_waits_until_the_ledger_has_applied_its_point() {
        use openraft::storage::RaftStateMachine;
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = crate::storage::ledger::tests::open_with(
            &dir.path().join("node"),
            r#"{"difficulty":4,"accounts":[{"id":0,"balance":100},{"id":1,"balance":100}]}"#,
        );
        let (db_dir, log_dir) = (dir.path().join("db"), dir.path().join("log"));
        let db = crate::storage::open_db(&db_dir).unwrap();
        let store = LogStore::open(&db, &db_dir, &log_dir).unwrap();
        store.attach_ledger(Arc::clone(&ledger));
        let entries: Vec<Entry> = (0..=3).map(|i| entry(1, i)).collect();
        write_entries(&mut store.wal_mut(), &entries);
        // As openraft 0.9 does on a follower: the purge is issued while the
        // snapshot install that brings the ledger there has not run yet.
        let mut purging = store.clone();
        let mut purge = tokio::spawn(async move { purging.purge(entries[2].log_id).await });
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), &mut purge)
                .await
                .is_err(),
            "the purge went ahead of the ledger"
        );
        assert_eq!(store.wal().first_index(), Some(0));
        sm.apply((1..=2).map(|i| entry(1, i))).await.unwrap();
        purge.await.unwrap().unwrap();
        assert_eq!(store.wal().first_index(), Some(3));
    }
}
