//! The openraft face of the [`Ledger`]: applying entries, and snapshots as
//! files streamed to and from disk.

use super::ledger::{Ledger, LedgerError, Prepared, SnapshotCut};
use crate::ledger::BlockOutcome;
use crate::raft::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncSeekExt;

fn sm_err(verb: ErrorVerb, e: LedgerError) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

/// Nice value of background work: a build takes longer, but the blocks
/// clients wait for keep the CPU (Linux nice is per thread).
const BACKGROUND_NICE: i32 = 10;

/// Runs `f` on a thread of its own at [`BACKGROUND_NICE`]: a snapshot build
/// and the start-time check of the whole chain read all of history, and at
/// the default priority all nodes building at once cut throughput by a fifth
/// or more (measured in the history fill). A thread per call (builds are
/// minutes apart, the check runs once per start, `verify` one at a time),
/// not a pooled blocking
/// thread: a thread cannot raise its own priority back without privileges.
pub(crate) async fn in_background<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, std::io::Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name(name.to_string()).spawn(move || {
        lower_own_priority();
        let _ = tx.send(f());
    })?;
    rx.await
        .map_err(|_| std::io::Error::other("background thread ended without an answer"))
}

/// Lowers the calling thread's CPU priority; best effort (a failure leaves
/// the build at normal priority, which is only slower for others).
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE);
    }
}

/// Where the current snapshot lives, and where one being received lands.
#[derive(Debug, Clone)]
struct SnapshotFiles {
    current: PathBuf,
    /// Held while a build puts its file in place and while an install puts
    /// its file in place and loads it: a build's rename must not land
    /// between an install's rename and its load.
    swap: Arc<std::sync::Mutex<()>>,
}

impl SnapshotFiles {
    fn building(&self) -> PathBuf {
        self.current.with_extension("building")
    }
    fn receiving(&self) -> PathBuf {
        self.current.with_extension("receiving")
    }
    fn installing(&self) -> PathBuf {
        self.current.with_extension("installing")
    }
}

/// Replaces `to` with `from` and makes the rename durable: a directory
/// fsync makes the rename itself survive a crash, so its failure is one.
fn durable_rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Applies committed entries to the ledger; builds and installs snapshots.
pub struct LedgerStateMachine {
    ledger: Arc<Ledger>,
    files: SnapshotFiles,
}

impl LedgerStateMachine {
    /// `snapshot_path` is where the current snapshot file is kept.
    pub fn new(ledger: Arc<Ledger>, snapshot_path: PathBuf) -> LedgerStateMachine {
        LedgerStateMachine {
            ledger,
            files: SnapshotFiles {
                current: snapshot_path,
                swap: Arc::default(),
            },
        }
    }
}

/// Builds one snapshot from a cut taken between two applies.
pub struct LedgerSnapshotBuilder {
    ledger: Arc<Ledger>,
    cut: SnapshotCut,
    files: SnapshotFiles,
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let last = self.cut.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.cut.membership.clone(),
            snapshot_id: format!(
                "{}-{}-h{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index),
                self.cut.height
            ),
        };
        let (ledger, cut, files, m) = (
            Arc::clone(&self.ledger),
            self.cut.clone(),
            self.files.clone(),
            meta.clone(),
        );
        // Streaming the chain is blocking I/O: keep it off the async workers,
        // and behind the work clients wait for (see `in_background`).
        let built = in_background("snapshot-build", move || {
            let written = ledger.write_snapshot(&cut, &m, &files.building(), Some(&files.current));
            let _swap = files.swap.lock().unwrap_or_else(|p| p.into_inner());
            // openraft builds while it applies and installs: an install since
            // the cut replaced what this build read (gaps, not a cut of one
            // state). Keep the installed file; openraft ignores a built
            // snapshot older than the installed one.
            if ledger.installed_since(&cut) {
                let _ = std::fs::remove_file(files.building());
                return Ok::<_, LedgerError>(None);
            }
            let written = written?;
            durable_rename(&files.building(), &files.current).map_err(|source| LedgerError::Io {
                path: files.current.display().to_string(),
                source,
            })?;
            Ok(Some(written))
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))?
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        match built {
            Some(records) => tracing::info!(
                "built snapshot {} at height {} ({} records, {} taken from the previous snapshot)",
                meta.snapshot_id,
                self.cut.height,
                records.records,
                records.reused_records
            ),
            None => tracing::warn!(
                "dropped snapshot {} at height {}: a snapshot was installed while it was being built",
                meta.snapshot_id,
                self.cut.height
            ),
        }
        let file = tokio::fs::File::open(&self.files.current)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.ledger.with_state(|s| (s.last_applied, s.membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BlockOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let outcome = match &entry.payload {
                EntryPayload::Blank => self.ledger.apply_marker(log_id, None).map(|_| BlockOutcome::NoBlock),
                EntryPayload::Membership(m) => self
                    .ledger
                    .apply_marker(log_id, Some(StoredMembership::new(Some(log_id), m.clone())))
                    .map(|_| BlockOutcome::NoBlock),
                EntryPayload::Normal(block) => match self.ledger.prepare_block(block, log_id) {
                    Ok(Prepared::Ready(prepared)) => {
                        if prepared.announced {
                            // The producer waiting for this outcome was just
                            // woken on this worker thread; let it (and the
                            // replies it sends) run before this task blocks
                            // the thread on the block's writes and fsync.
                            tokio::task::yield_now().await;
                        }
                        self.ledger.write_block(block, log_id, prepared)
                    }
                    Ok(Prepared::Done(outcome)) => Ok(outcome),
                    Err(e) => Err(e),
                },
            };
            out.push(outcome.map_err(|e| sm_err(ErrorVerb::Write, e))?);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        LedgerSnapshotBuilder {
            ledger: Arc::clone(&self.ledger),
            cut: self.ledger.cut(),
            files: self.files.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .read(true)
            .truncate(true)
            .open(self.files.receiving())
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        // The data may sit in any file openraft hands us: copy it to a file of
        // our own, synced, before it becomes the current snapshot.
        let installing = self.files.installing();
        let mut out = tokio::fs::File::create(&installing)
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        snapshot
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        tokio::io::copy(&mut *snapshot, &mut out)
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        out.sync_all().await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        drop((snapshot, out));
        let _ = tokio::fs::remove_file(self.files.receiving()).await;
        let (ledger, files) = (Arc::clone(&self.ledger), self.files.clone());
        tokio::task::spawn_blocking(move || {
            // Checked before it becomes the current snapshot, which this
            // node serves and builds its next ones from.
            ledger.check_snapshot(&files.installing())?;
            let _swap = files.swap.lock().unwrap_or_else(|p| p.into_inner());
            durable_rename(&files.installing(), &files.current).map_err(|source| LedgerError::Io {
                path: files.current.display().to_string(),
                source,
            })?;
            ledger.install_snapshot(&files.current)
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, std::io::Error::other(e.to_string())))?
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let (height, hash) = self.ledger.tip();
        tracing::info!(
            "installed snapshot {} up to log index {:?}: height={height} tip={hash}",
            meta.snapshot_id,
            meta.last_log_id.map(|l| l.index)
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let path = self.files.current.clone();
        let meta = tokio::task::spawn_blocking(move || match super::snapshot::SnapshotReader::open(&path) {
            Ok(r) => Ok(Some(r.meta)),
            Err(super::snapshot::SnapshotError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Read, std::io::Error::other(e.to_string())))?
        .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&self.files.current)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn snapshot_builds_run_behind_client_work() {
        fn own_nice() -> i32 {
            // SAFETY: reads the calling thread's own priority.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        }
        let (nice, name) = in_background("bg-test", || {
            (own_nice(), std::thread::current().name().map(String::from))
        })
        .await
        .unwrap();
        assert!(nice >= BACKGROUND_NICE, "background thread at nice {nice}");
        assert_eq!(name.as_deref(), Some("bg-test"));
        assert!(own_nice() < BACKGROUND_NICE, "the caller's priority is left alone");
        let lost = in_background("bg-panic", || -> u8 { panic!("build failed") }).await;
        assert!(lost.is_err());
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use crate::ledger::{Block, TxId};
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::path::Path;

    const GENESIS: &str = r#"{"difficulty":2,"accounts":[{"id":0,"balance":1000},{"id":1,"balance":0}]}"#;

    fn open(dir: &Path) -> (Arc<Ledger>, LedgerStateMachine) {
        crate::storage::ledger::tests::open_with(dir, GENESIS)
    }

    async fn grow(ledger: &Ledger, sm: &mut LedgerStateMachine, blocks: std::ops::RangeInclusive<u64>) {
        for i in blocks {
            let (h, tip) = ledger.tip();
            let id = TxId::new(format!("t{i}")).unwrap();
            // The blocks' time is 1: valid for a day after it.
            let tx = crate::ledger::AccountKey::dev(0).transfer(ledger.chain_id(), id, 1, 1, 1_000_000);
            let block = Block::new(ledger.chain_id(), h + 1, tip, 1, 2, vec![tx]).mined();
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
                payload: EntryPayload::Normal(block),
            };
            sm.apply(vec![entry]).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_whole_chain_to_a_fresh_node() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, mut sm_a) = open(a_dir.path());
        grow(&a, &mut sm_a, 1..=30).await;
        let mut builder = sm_a.get_snapshot_builder().await;
        let cut_tip = a.tip();
        let cut_applied = a.with_state(|s| s.last_applied);
        // Blocks applied after the cut must not leak into the snapshot.
        grow(&a, &mut sm_a, 31..=40).await;
        let snap = builder.build_snapshot().await.unwrap();

        let (b, mut sm_b) = open(b_dir.path());
        let rx = sm_b.begin_receiving_snapshot().await.unwrap();
        drop(rx);
        sm_b.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        assert_eq!(b.tip(), cut_tip);
        assert_eq!(b.balance(1), Some((30, 30)));
        let key = |id: &str| crate::ledger::TxKey {
            signer: crate::ledger::Signer::Account(0),
            id: TxId::new(id).unwrap(),
        };
        assert_eq!(b.tx_record(&key("t35")).unwrap(), None);
        assert_eq!(b.block(0).unwrap(), a.block(0).unwrap(), "history is kept, not purged");
        assert_eq!(b.tx_record(&key("t7")).unwrap(), a.tx_record(&key("t7")).unwrap());
        assert_eq!(
            b.with_state(|s| s.last_applied),
            cut_applied,
            "applied index comes with the snapshot"
        );
        let view = std::fs::read_to_string(b_dir.path().join("states").join("chain.jsonl")).unwrap();
        assert_eq!(view.lines().count(), 31, "the chain view is rebuilt");
        // The install keeps the data dir's format version (a crash part way
        // through finishes it at the next start, which checks the version
        // first), and the node starts again on its data dir.
        assert!(b.raw_tree().get(b"m:format").unwrap().is_some());
        drop((b, sm_b));
        let (b, _) = open(b_dir.path());
        assert_eq!(b.tip(), cut_tip);
        b.verify().unwrap();
    }

    /// Every record of a snapshot file, sorted.
    fn records_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut r = crate::storage::snapshot::SnapshotReader::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_snapshot_takes_the_records_of_the_previous_one_and_holds_what_a_full_scan_does() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut sm_a) = open(dir.path());
        grow(&a, &mut sm_a, 1..=10).await;
        let meta = SnapshotMeta::default();
        let first = dir.path().join("first.bin");
        let w = a.write_snapshot(&a.cut(), &meta, &first, None).unwrap();
        assert_eq!(w.reused_records, 0);
        grow(&a, &mut sm_a, 11..=20).await;
        let cut = a.cut();
        // Applied after the cut: none of it may appear.
        grow(&a, &mut sm_a, 21..=22).await;
        let (full, incremental) = (dir.path().join("full.bin"), dir.path().join("incr.bin"));
        a.write_snapshot(&cut, &meta, &full, None).unwrap();
        let w = a.write_snapshot(&cut, &meta, &incremental, Some(&first)).unwrap();
        assert_eq!(w.reused_records, 10, "the records of t1..t10");
        assert_eq!(records_of(&incremental), records_of(&full));
        assert!(records_of(&full)
            .iter()
            .any(|(k, _)| k.as_slice()
                == [b"t:t20\0".as_slice(), &crate::ledger::Signer::Account(0).to_bytes()].concat()));

        // A damaged previous snapshot: the records are read from the ledger.
        let mut bytes = std::fs::read(&first).unwrap();
        let end = bytes.len() - 1;
        bytes[end] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let w = a.write_snapshot(&cut, &meta, &incremental, Some(&first)).unwrap();
        assert_eq!(w.reused_records, 0);
        assert_eq!(records_of(&incremental), records_of(&full));
    }

    #[tokio::test]
    async fn a_build_cut_before_an_install_keeps_the_installed_snapshot() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, mut sm_a) = open(a_dir.path());
        grow(&a, &mut sm_a, 1..=12).await;
        let snap = sm_a.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let (b, mut sm_b) = open(b_dir.path());
        grow(&b, &mut sm_b, 1..=2).await;
        // openraft runs builds in a task of their own: one cut here...
        let mut stale = sm_b.get_snapshot_builder().await;
        // ...an install of a newer snapshot...
        sm_b.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        // ...then the build runs on what the install left.
        let built = stale.build_snapshot().await.unwrap();
        assert_ne!(built.meta.snapshot_id, snap.meta.snapshot_id);
        let current = sm_b.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(
            current.meta.snapshot_id, snap.meta.snapshot_id,
            "the installed file stays"
        );
        assert_eq!(b.tip(), a.tip());
        let key = crate::ledger::TxKey {
            signer: crate::ledger::Signer::Account(0),
            id: TxId::new("t12").unwrap(),
        };
        assert!(b.tx_record(&key).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_is_refused_and_changes_nothing() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, mut sm_a) = open(a_dir.path());
        grow(&a, &mut sm_a, 1..=5).await;
        let snap = sm_a.get_snapshot_builder().await.build_snapshot().await.unwrap();
        drop(snap);
        let path = a_dir.path().join("snap.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        let bad = b_dir.path().join("bad.bin");
        std::fs::write(&bad, &bytes).unwrap();

        let (b, mut sm_b) = open(b_dir.path());
        let before = b.tip();
        let meta = crate::storage::snapshot::SnapshotReader::open(&path).unwrap().meta;
        let file = tokio::fs::File::open(&bad).await.unwrap();
        let err = sm_b.install_snapshot(&meta, Box::new(file)).await.unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(b.tip(), before);
    }

    #[tokio::test]
    async fn an_interrupted_install_is_finished_at_start() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, mut sm_a) = open(a_dir.path());
        grow(&a, &mut sm_a, 1..=8).await;
        sm_a.get_snapshot_builder().await.build_snapshot().await.unwrap();
        std::fs::copy(a_dir.path().join("snap.bin"), b_dir.path().join("snap.bin")).unwrap();
        {
            // A crash after the pending mark was set, part way through the
            // load: a block index entry above the tip, never headed.
            let (b, mut sm_b) = open(b_dir.path());
            grow(&b, &mut sm_b, 1..=2).await;
            let db = b.raw_db();
            db.open_tree("ledger_install").unwrap().insert("pending", "x").unwrap();
            let stray = [b"l:".as_slice(), &3u64.to_be_bytes()].concat();
            let at = b
                .raw_tree()
                .get([b"l:".as_slice(), &2u64.to_be_bytes()].concat())
                .unwrap()
                .unwrap();
            b.raw_tree().insert(stray, at).unwrap();
            db.flush().unwrap();
        }
        let (b, _) = open(b_dir.path());
        assert_eq!(b.tip(), a.tip());
        assert_eq!(b.balance(1), Some((8, 8)));
        b.verify().unwrap();
    }

    /// A snapshot file's records, in order.
    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    /// Rewrites the snapshot file `from` into `to`, its records passed through `edit`.
    fn rewrite(from: &Path, to: &Path, edit: impl FnOnce(&mut Records)) -> SnapshotMeta {
        let mut r = crate::storage::snapshot::SnapshotReader::open(from).unwrap();
        let meta = r.meta.clone();
        let mut records = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            records.push(rec);
        }
        edit(&mut records);
        let mut w = crate::storage::snapshot::SnapshotWriter::create(to, &meta).unwrap();
        for (k, v) in &records {
            w.record(k, v).unwrap();
        }
        w.finish().unwrap();
        meta
    }

    /// Sets accounts 0 and 1's balances in a snapshot's records.
    fn set_balances(records: &mut Records, zero: u64, one: u64) {
        for (k, v) in records.iter_mut() {
            for (id, balance) in [(0u64, zero), (1, one)] {
                if *k == [b"a:".as_slice(), &id.to_be_bytes()].concat() {
                    *v = crate::codec::encode(&balance).unwrap();
                }
            }
        }
    }

    /// Nothing in a snapshot is taken on its sender's word: balances its
    /// blocks do not give, a missing or forged record, a block that does not
    /// extend the chain, a transfer nobody signed, a history that forks from
    /// this node's: each is refused, saying what, and the node keeps its
    /// state; the honest snapshot then installs.
    #[tokio::test]
    async fn a_forged_snapshot_is_refused_and_the_node_keeps_its_state() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, mut sm_a) = open(a_dir.path());
        grow(&a, &mut sm_a, 1..=6).await;
        sm_a.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let honest = a_dir.path().join("snap.bin");
        let (b, mut sm_b) = open(b_dir.path());
        grow(&b, &mut sm_b, 1..=2).await;
        let before = (b.tip(), b.balance(1), b.with_state(|s| s.last_applied));
        let forged = b_dir.path().join("forged.bin");
        let refused = |what: &str, edit: &mut dyn FnMut(&mut Records)| {
            rewrite(&honest, &forged, edit);
            let err = b.check_snapshot(&forged).unwrap_err().to_string();
            assert!(err.starts_with("snapshot refused: "), "{what}: {err}");
            err
        };
        // Money moved with no transfer: account 1 richer by 5, account 0 poorer.
        let err = refused("balances", &mut |recs| set_balances(recs, 1000 - 6 - 5, 6 + 5));
        assert!(
            err.contains("gives account 0 a balance of 989, but its blocks give Some(994)"),
            "{err}"
        );
        // A record left out: the id would be free to apply again.
        let err = refused("record left out", &mut |recs| {
            recs.retain(|(k, _)| !k.starts_with(b"t:t5\0"));
        });
        assert!(
            err.contains("holds 3 transaction records above height 2, but its blocks make 4"),
            "{err}"
        );
        // A record forged: an id marked as applied in another block.
        let err = refused("record forged", &mut |recs| {
            for (k, v) in recs.iter_mut() {
                if k.starts_with(b"t:t4\0") {
                    let mut rec: crate::ledger::TxRecord = crate::codec::decode(v).unwrap();
                    rec.block_hash = crate::ledger::Hash32::ZERO;
                    *v = crate::codec::encode(&rec).unwrap();
                }
            }
        });
        assert!(err.contains("record of transaction \"t4"), "{err}");
        // A block left out of the chain.
        let err = refused("block left out", &mut |recs| {
            recs.retain(|(k, _)| *k != [b"b:".as_slice(), &4u64.to_be_bytes()].concat());
        });
        assert!(err.contains("its block 5 follows block 3"), "{err}");
        // A block whose transfer nobody signed, the balances as if it moved money.
        let err = refused("unsigned", &mut |recs| {
            let key = [b"b:".as_slice(), &6u64.to_be_bytes()].concat();
            let (_, v) = recs.iter_mut().find(|(k, _)| *k == key).unwrap();
            let block: Block = crate::codec::decode(v).unwrap();
            let mut tx = block.txs[0].clone();
            if let crate::ledger::Transaction::Transfer { amount, .. } = &mut tx {
                *amount = 500;
            }
            let forged = Block::new(a.chain_id(), 6, block.header.prev_hash, 1, 2, vec![tx]).mined();
            *v = crate::codec::encode(&forged).unwrap();
            let tip = [b"m:tip".as_slice()].concat();
            let (_, t) = recs.iter_mut().find(|(k, _)| *k == tip).unwrap();
            *t = crate::codec::encode(&Some((6u64, forged.hash()))).unwrap();
            recs.retain(|(k, _)| !k.starts_with(b"t:t6\0"));
            set_balances(recs, 1000 - 5 - 500, 5 + 500);
        });
        assert!(
            err.contains("gives account 0 a balance of 495, but its blocks give Some(995)"),
            "{err}"
        );
        // The tip it claims is not where its blocks end.
        let err = refused("tip", &mut |recs| {
            let (_, t) = recs.iter_mut().find(|(k, _)| k.as_slice() == b"m:tip").unwrap();
            *t = crate::codec::encode(&Some((9u64, crate::ledger::Hash32::ZERO))).unwrap();
        });
        assert!(err.contains("says its tip is"), "{err}");
        assert_eq!((b.tip(), b.balance(1), b.with_state(|s| s.last_applied)), before);

        // Another history: a node whose chain forked from this one's.
        let c_dir = tempfile::tempdir().unwrap();
        let (c, mut sm_c) = open(c_dir.path());
        grow(&c, &mut sm_c, 1..=1).await;
        let (h, tip) = c.tip();
        let id = TxId::new("fork").unwrap();
        let tx = crate::ledger::AccountKey::dev(0).transfer(c.chain_id(), id, 1, 7, 1_000_000);
        let block = Block::new(c.chain_id(), h + 1, tip, 1, 2, vec![tx]).mined();
        sm_c.apply(vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 2),
            payload: EntryPayload::Normal(block),
        }])
        .await
        .unwrap();
        grow(&c, &mut sm_c, 3..=4).await;
        sm_c.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let err = b
            .check_snapshot(&c_dir.path().join("snap.bin"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("another history"), "{err}");

        // What the refusals leave: the same node, which takes the honest one.
        assert_eq!((b.tip(), b.balance(1), b.with_state(|s| s.last_applied)), before);
        b.verify().unwrap();
        let meta = crate::storage::snapshot::SnapshotReader::open(&honest).unwrap().meta;
        let file = tokio::fs::File::open(&honest).await.unwrap();
        sm_b.install_snapshot(&meta, Box::new(file)).await.unwrap();
        assert_eq!(b.tip(), a.tip());
        assert_eq!(b.balance(1), Some((6, 6)));
        b.verify().unwrap();
    }
}
