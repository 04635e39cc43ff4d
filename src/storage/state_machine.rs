//! The openraft face of the [`Ledger`]: applying entries, and snapshots as
//! files streamed to and from disk.

use super::ledger_store::{Ledger, LedgerError, Prepared, SnapshotCut};
use crate::raft::{BlockOutcome, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
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

/// Replaces `to` with `from` and makes the rename durable.
fn durable_rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    if let Some(dir) = to.parent() {
        // A directory fsync makes the rename itself survive a crash.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
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
pub(crate) mod tests {
    use super::*;
    use crate::ledger::{Block, Genesis, Hash32, RejectReason, Transaction, TxId};
    use crate::storage::views;
    use openraft::{CommittedLeaderId, EntryPayload};

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

    const GENESIS: &str = r#"{"difficulty":4,"accounts":[{"id":0,"balance":100},{"id":1,"balance":100}]}"#;

    /// A ledger and its state machine in `dir`, from genesis `json`.
    pub(crate) fn open_with(dir: &Path, json: &str) -> (Arc<Ledger>, LedgerStateMachine) {
        // A reopen waits: sled's background flusher lets go of the file lock
        // shortly after the last handle is dropped, not at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match crate::storage::open_db(&dir.join("db")) {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() >= deadline => panic!("cannot open the ledger: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let genesis = Arc::new(Genesis::from_json(&crate::ledger::genesis::with_dev_keys(json)).unwrap());
        let ledger = Ledger::open(
            &db,
            genesis,
            &dir.join("states"),
            &dir.join("snap.bin"),
            &dir.join("blocks"),
        )
        .unwrap();
        let sm = LedgerStateMachine::new(Arc::clone(&ledger), dir.join("snap.bin"));
        (ledger, sm)
    }

    fn open(dir: &Path) -> (Arc<Ledger>, LedgerStateMachine) {
        open_with(dir, GENESIS)
    }

    /// A transfer signed by `from`'s dev key for the chain of [`GENESIS`].
    fn transfer(id: &str, from: u64, to: u64, amount: u64) -> Transaction {
        let chain = Genesis::from_json(&crate::ledger::genesis::with_dev_keys(GENESIS))
            .unwrap()
            .chain_id();
        let id = TxId::new(id).unwrap();
        let signature = crate::ledger::AccountKey::dev(from).sign_transfer(chain, &id, to, amount);
        Transaction::Transfer {
            id,
            from,
            to,
            amount,
            signature,
        }
    }

    fn entry(index: u64, block: Block) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(block),
        }
    }

    fn next_block(ledger: &Ledger, txs: Vec<Transaction>) -> Block {
        let (h, tip) = ledger.tip();
        Block::new(ledger.chain_id(), h + 1, tip, 1, 4, txs).mined()
    }

    #[tokio::test]
    async fn a_block_that_no_longer_links_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        // Two leaders built on the same tip: the second to commit is stale.
        let a = next_block(&ledger, vec![transfer("a", 0, 1, 10)]);
        let b = next_block(&ledger, vec![transfer("b", 0, 1, 20)]);
        let out = sm.apply(vec![entry(1, a), entry(2, b)]).await.unwrap();
        assert!(matches!(out[0], BlockOutcome::Committed { height: 1, .. }));
        assert!(matches!(&out[1], BlockOutcome::Refused { reason } if reason.contains("expected height 2")));
        assert_eq!(ledger.balance(0), Some((90, 1)));
        assert_eq!(ledger.tx_record(&TxId::new("b").unwrap()).unwrap(), None);
        assert_eq!(ledger.with_state(|s| s.last_applied.map(|l| l.index)), Some(2));
    }

    #[tokio::test]
    async fn a_waiter_gets_a_blocks_records_once_executed_before_the_block_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        let b1 = next_block(&ledger, vec![transfer("w1", 0, 1, 10), transfer("w2", 1, 0, 1_000)]);
        let (h0, _) = ledger.tip();
        let mut rx = ledger.watch_outcome(b1.hash()).unwrap();
        assert!(rx.try_recv().is_err(), "nothing before the block is applied");
        let Prepared::Ready(prepared) = ledger.prepare_block(&b1, entry(1, b1.clone()).log_id).unwrap() else {
            panic!("block 1 links");
        };
        assert!(prepared.announced);
        let early = rx.try_recv().expect("the records arrive when the block is executed");
        // Nothing is written or visible yet: a crash here re-applies the entry.
        assert_eq!(ledger.tip().0, h0);
        assert_eq!(ledger.tx_record(&TxId::new("w1").unwrap()).unwrap(), None);
        let written = ledger.write_block(&b1, entry(1, b1.clone()).log_id, prepared).unwrap();
        let BlockOutcome::Committed { records, .. } = written else {
            panic!("block 1 must commit: {written:?}");
        };
        assert_eq!(early, records, "the early records are the apply's");
        assert!(early[0].outcome.is_ok());
        assert!(matches!(early[1].outcome, Err(RejectReason::InsufficientFunds { .. })));
        assert_eq!(ledger.tip().0, h0 + 1);

        // A refused block announces nothing; a withdrawn interest closes the channel.
        let stale = Block::new(
            ledger.chain_id(),
            h0 + 1,
            Hash32::ZERO,
            1,
            4,
            vec![transfer("w3", 0, 1, 1)],
        )
        .mined();
        let mut rx = ledger.watch_outcome(stale.hash()).unwrap();
        let out = sm.apply(vec![entry(2, stale.clone())]).await.unwrap();
        assert!(matches!(out[0], BlockOutcome::Refused { .. }));
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ));
        ledger.forget_outcome(&stale.hash());
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));

        // Bounded: beyond the limit, callers wait for Raft's answer instead.
        let held: Vec<_> = (0..crate::storage::ledger_store::MAX_OUTCOME_WAITERS as u8)
            .map(|i| ledger.watch_outcome(Hash32([i; 32])).unwrap())
            .collect();
        assert!(ledger.watch_outcome(Hash32([255; 32])).is_none());
        drop(held);
        assert!(
            ledger.watch_outcome(Hash32([255; 32])).is_some(),
            "dropped receivers free their places"
        );
    }

    #[tokio::test]
    async fn a_transaction_in_two_blocks_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        let b1 = next_block(&ledger, vec![transfer("t1", 0, 1, 10)]);
        sm.apply(vec![entry(1, b1)]).await.unwrap();
        let b2 = next_block(&ledger, vec![transfer("t1", 0, 1, 10), transfer("t1", 0, 1, 99)]);
        let out = sm.apply(vec![entry(2, b2)]).await.unwrap();
        let BlockOutcome::Committed { records, .. } = &out[0] else {
            panic!("block 2 must commit: {out:?}");
        };
        assert_eq!(records[0].height, 1, "the duplicate reports its first block");
        assert!(matches!(records[1].outcome, Err(RejectReason::IdConflict { .. })));
        assert_eq!(ledger.balance(0), Some((90, 2)));
    }

    #[tokio::test]
    async fn the_blob_files_of_a_blocks_large_values_are_synced_with_it() {
        let dir = tempfile::tempdir().unwrap();
        // 12,000 accounts: a checkpoint of all balances is far over sled's
        // blob threshold (~32 KB with this database's segment size).
        let accounts: Vec<String> = (0..12_000)
            .map(|i| format!(r#"{{"id":{i},"balance":1000000000000}}"#))
            .collect();
        let json = format!(r#"{{"difficulty":4,"accounts":[{}]}}"#, accounts.join(","));
        let (ledger, mut sm) = open_with(dir.path(), &json);
        let files = Arc::new(crate::storage::sled_sync::SledSync::open(&dir.path().join("db")).unwrap());
        ledger.sync_blobs_with(Arc::clone(&files));
        ledger.set_checkpoint_max_blocks(1);
        for i in 1..=2u64 {
            let b = next_block(&ledger, vec![]);
            sm.apply(vec![entry(i, b)]).await.unwrap();
            let on_disk: std::collections::HashSet<std::ffi::OsString> =
                std::fs::read_dir(dir.path().join("db").join("blobs"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
            assert!(!on_disk.is_empty(), "block {i}: the checkpoint went to a blob");
            assert_eq!(files.synced_names(), on_disk, "block {i}: every blob synced");
        }
    }

    #[tokio::test]
    async fn balances_survive_reopen_across_checkpoints_and_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let expected = {
            let (ledger, mut sm) = open(dir.path());
            ledger.set_checkpoint_max_blocks(3);
            for i in 1..=7u64 {
                let b = next_block(&ledger, vec![transfer(&format!("c{i}"), i % 2, (i + 1) % 2, i)]);
                sm.apply(vec![entry(i, b)]).await.unwrap();
                // Block 3 and block 6 each roll the deltas before them into a checkpoint.
                let want: Vec<u64> = ((i / 3) * 3 + 1..=i).collect();
                assert_eq!(ledger.delta_heights(), want, "after block {i}");
            }
            (ledger.balance(0), ledger.balance(1))
        };
        // Account 0: 100 + 1 - 2 + 3 - 4 + 5 - 6 + 7.
        assert_eq!(expected, (Some((104, 7)), Some((96, 7))));
        let (ledger, _sm) = open(dir.path());
        assert_eq!((ledger.balance(0), ledger.balance(1)), expected);
        ledger.verify_recent(64, usize::MAX).unwrap();
        ledger.verify().unwrap();
    }

    /// Applies one transfer (25 from account 0 to 1), lets `edit` change
    /// what is stored as a crash or an older version would have left it, and
    /// checks that the ledger opens again with the same balances, one
    /// checkpoint in its tree, and a chain that verifies.
    async fn reopens_with_the_same_balances(id: &str, edit: impl FnOnce(&Ledger)) -> Arc<Ledger> {
        let dir = tempfile::tempdir().unwrap();
        {
            let (ledger, mut sm) = open(dir.path());
            let b = next_block(&ledger, vec![transfer(id, 0, 1, 25)]);
            sm.apply(vec![entry(1, b)]).await.unwrap();
            edit(&ledger);
        }
        let (ledger, _sm) = open(dir.path());
        assert_eq!((ledger.balance(0), ledger.balance(1)), (Some((75, 1)), Some((125, 1))));
        assert_eq!(ledger.raw_checkpoints().len(), 1);
        ledger.verify().unwrap();
        ledger
    }

    #[tokio::test]
    async fn per_account_balance_keys_of_older_data_dirs_move_into_a_checkpoint() {
        let ledger = reopens_with_the_same_balances("m1", |ledger| {
            // The layout an older version wrote: a key per account, no checkpoint.
            let t = ledger.raw_tree();
            for (account, balance) in ledger.with_state(|s| s.balances.clone()) {
                let key = [b"a:".as_slice(), &account.to_be_bytes()].concat();
                t.insert(key, crate::codec::encode(&balance).unwrap()).unwrap();
            }
            ledger.raw_checkpoints().clear().unwrap();
            for k in t.scan_prefix(b"d:").keys() {
                t.remove(k.unwrap()).unwrap();
            }
        })
        .await;
        assert!(ledger.raw_tree().scan_prefix(b"a:").next().is_none());
        assert!(ledger.raw_tree().get(b"m:balances").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_checkpoint_in_the_ledger_tree_of_older_data_dirs_moves_into_its_own() {
        let ledger = reopens_with_the_same_balances("c1", |ledger| {
            // The layout an older version wrote: the checkpoint as `m:balances`.
            let (_, checkpoint) = ledger.raw_checkpoints().last().unwrap().unwrap();
            ledger.raw_checkpoints().clear().unwrap();
            ledger.raw_tree().insert(b"m:balances", checkpoint).unwrap();
        })
        .await;
        assert!(ledger.raw_tree().get(b"m:balances").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_checkpoint_above_the_tip_is_ignored_and_removed() {
        // What a crash leaves between writing a block's checkpoint and the
        // batch that moves the tip to the block.
        reopens_with_the_same_balances("c2", |ledger| {
            let tip = ledger.with_state(|s| s.tip_height);
            let ahead: (u64, std::collections::BTreeMap<u64, u64>) = (tip + 1, [(0, 1), (1, 1)].into());
            ledger
                .raw_checkpoints()
                .insert((tip + 1).to_be_bytes(), crate::codec::encode(&ahead).unwrap())
                .unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn the_four_head_keys_of_older_data_dirs_move_into_one() {
        let dir = tempfile::tempdir().unwrap();
        let chain = dir.path().join("states").join(views::CHAIN_FILE);
        let (tip, applied, view) = {
            let (ledger, mut sm) = open(dir.path());
            let b = next_block(&ledger, vec![transfer("h1", 0, 1, 25)]);
            sm.apply(vec![entry(1, b)]).await.unwrap();
            // The layout an older version wrote: four keys, no `m:head`.
            let t = ledger.raw_tree();
            let (tip, applied, digest) =
                ledger.with_state(|s| (Some((s.tip_height, s.tip_hash)), s.last_applied, s.balance_digest));
            let view = std::fs::read_to_string(&chain).unwrap();
            t.insert(b"m:tip", crate::codec::encode(&tip).unwrap()).unwrap();
            t.insert(b"m:applied", crate::codec::encode(&applied).unwrap()).unwrap();
            t.insert(b"m:balance_digest", digest.to_vec()).unwrap();
            t.insert(b"m:view_len", crate::codec::encode(&(view.len() as u64)).unwrap())
                .unwrap();
            t.remove(b"m:head").unwrap();
            (tip, applied, view)
        };
        let (ledger, mut sm) = open(dir.path());
        let t = ledger.raw_tree();
        assert!(t.get(b"m:head").unwrap().is_some());
        for old in [&b"m:tip"[..], b"m:applied", b"m:balance_digest", b"m:view_len"] {
            assert!(t.get(old).unwrap().is_none(), "{}", String::from_utf8_lossy(old));
        }
        assert_eq!(
            ledger.with_state(|s| (Some((s.tip_height, s.tip_hash)), s.last_applied)),
            (tip, applied)
        );
        assert_eq!(ledger.balance(1), Some((125, 1)));
        // The digest and the view length carried over: nothing to rebuild.
        ledger.verify().unwrap();
        assert_eq!(std::fs::read_to_string(&chain).unwrap(), view);
        let b = next_block(&ledger, vec![transfer("h2", 1, 0, 5)]);
        sm.apply(vec![entry(2, b)]).await.unwrap();
        drop((ledger, sm));
        let (ledger, _sm) = open(dir.path());
        assert_eq!(ledger.balance(0), Some((80, 2)));
        ledger.verify().unwrap();
    }

    #[tokio::test]
    async fn whole_blocks_in_sled_of_older_data_dirs_move_into_block_files() {
        let dir = tempfile::tempdir().unwrap();
        let chain: Vec<Block> = {
            let (ledger, mut sm) = open(dir.path());
            for i in 1..=3 {
                let b = next_block(&ledger, vec![transfer(&format!("w{i}"), 0, 1, i)]);
                sm.apply(vec![entry(i, b)]).await.unwrap();
            }
            let chain: Vec<Block> = (0..=3).map(|h| ledger.block(h).unwrap().unwrap()).collect();
            // The layout an older version wrote: `b:<height>` holds the
            // block. A move cut short by a crash: block 0 already moved
            // (and a record past it written), blocks 1..=3 not yet.
            let t = ledger.raw_tree();
            for b in &chain[1..] {
                let key = [b"b:".as_slice(), &b.height().to_be_bytes()].concat();
                t.insert(key, crate::codec::encode(b).unwrap()).unwrap();
                t.remove([b"l:".as_slice(), &b.height().to_be_bytes()].concat())
                    .unwrap();
            }
            chain
        };
        let (ledger, mut sm) = open(dir.path());
        assert!(ledger.raw_tree().scan_prefix(b"b:").next().is_none());
        for b in &chain {
            assert_eq!(ledger.block(b.height()).unwrap().as_ref(), Some(b));
        }
        ledger.verify().unwrap();
        // Applies go on after the moved blocks, and all of it survives a reopen.
        let b = next_block(&ledger, vec![transfer("w4", 1, 0, 4)]);
        sm.apply(vec![entry(4, b.clone())]).await.unwrap();
        drop((ledger, sm));
        let (ledger, _sm) = open(dir.path());
        assert_eq!(ledger.block(4).unwrap(), Some(b));
        ledger.verify().unwrap();
    }

    #[tokio::test]
    async fn a_lost_block_file_is_corruption_at_the_height_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        let b = next_block(&ledger, vec![transfer("g1", 0, 1, 5)]);
        sm.apply(vec![entry(1, b)]).await.unwrap();
        for f in std::fs::read_dir(dir.path().join("blocks")).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        let err = ledger.block(1).unwrap_err().to_string();
        assert!(err.contains("corrupt chain at height 1"), "{err}");
        let err = ledger.verify().unwrap_err().to_string();
        assert!(err.contains("corrupt chain at height 0"), "{err}");
    }

    #[tokio::test]
    async fn a_block_written_but_never_indexed_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (next, indexed_bytes) = {
            let (ledger, mut sm) = open(dir.path());
            let b = next_block(&ledger, vec![transfer("u1", 0, 1, 5)]);
            sm.apply(vec![entry(1, b)]).await.unwrap();
            let next = next_block(&ledger, vec![transfer("u2", 1, 0, 7)]);
            let indexed_bytes = ledger.blocks_for_test().disk_bytes().unwrap();
            // A crash after the block's record was written and before
            // sled's batch: a record past the tip's.
            ledger.blocks_for_test().append(b"torn").unwrap();
            (next, indexed_bytes)
        };
        let (ledger, mut sm) = open(dir.path());
        assert_eq!(ledger.tip().0, 1);
        assert_eq!(ledger.blocks_for_test().disk_bytes().unwrap(), indexed_bytes);
        sm.apply(vec![entry(2, next.clone())]).await.unwrap();
        drop((ledger, sm));
        let (ledger, _sm) = open(dir.path());
        assert_eq!(ledger.block(2).unwrap(), Some(next));
        ledger.verify().unwrap();
    }

    /// A crash part way through a block's apply keeps a prefix of its sled
    /// writes (sled recovers a prefix of its log). At every such point the
    /// ledger reopens at the block before it (nothing of the block visible,
    /// and the entry's re-apply completes it) or at the block itself, and
    /// ends as an apply never interrupted would: same balances, records and
    /// chain, one checkpoint, no stale deltas.
    #[tokio::test]
    async fn a_crash_at_any_write_of_a_blocks_apply_loses_nothing() {
        let id = |s: &str| TxId::new(s).unwrap();
        for checkpoint in [false, true] {
            for writes in 0.. {
                let dir = tempfile::tempdir().unwrap();
                let (ledger, mut sm) = open(dir.path());
                // With a checkpoint every 3 blocks, the third rolls the first
                // two blocks' deltas into one.
                ledger.set_checkpoint_max_blocks(if checkpoint { 3 } else { 1000 });
                for i in 1..=2u64 {
                    let b = next_block(&ledger, vec![transfer(&format!("p{i}"), 0, 1, i)]);
                    sm.apply(vec![entry(i, b)]).await.unwrap();
                }
                let third = next_block(
                    &ledger,
                    vec![
                        transfer("x1", 0, 1, 10),
                        transfer("x2", 1, 0, 4),
                        transfer("p1", 0, 1, 1),
                    ],
                );
                ledger.crash_after_writes(writes);
                let crashed = sm.apply(vec![entry(3, third.clone())]).await.is_err();
                drop((ledger, sm));
                let at = format!("checkpoint {checkpoint}, crash after {writes} writes");

                let (mut ledger, mut sm) = open(dir.path());
                if ledger.tip().0 == 2 {
                    assert!(crashed, "{at}");
                    assert_eq!(ledger.tx_record(&id("x1")).unwrap(), None, "{at}");
                    assert_eq!(ledger.block(3).unwrap(), None, "{at}");
                    assert_eq!(ledger.balance(0), Some((97, 2)), "{at}");
                    sm.apply(vec![entry(3, third.clone())]).await.unwrap();
                }
                for _reopened in 0..2 {
                    assert_eq!(ledger.tip().0, 3, "{at}");
                    assert_eq!(ledger.block(3).unwrap().as_ref(), Some(&third), "{at}");
                    // 100 - 1 - 2 - 10 + 4; p1 again is its first apply's record.
                    assert_eq!(
                        (ledger.balance(0), ledger.balance(1)),
                        (Some((91, 3)), Some((109, 3))),
                        "{at}"
                    );
                    let x2 = ledger.tx_record(&id("x2")).unwrap().unwrap();
                    assert_eq!((x2.height, x2.outcome.is_ok()), (3, true), "{at}");
                    assert_eq!(ledger.tx_record(&id("p1")).unwrap().unwrap().height, 1, "{at}");
                    assert_eq!(ledger.raw_checkpoints().len(), 1, "{at}");
                    let (since, _) = ledger.raw_checkpoints().last().unwrap().unwrap();
                    let since = u64::from_be_bytes(since.as_ref().try_into().unwrap());
                    assert!(
                        ledger.delta_heights().iter().all(|h| (since + 1..=3).contains(h)),
                        "{at}"
                    );
                    ledger.verify().unwrap();
                    drop((ledger, sm));
                    (ledger, sm) = open(dir.path());
                }
                let chain = std::fs::read_to_string(dir.path().join("states").join(views::CHAIN_FILE)).unwrap();
                assert_eq!(chain.lines().count(), 4, "{at}: genesis and three blocks");
                if !crashed {
                    assert!(writes > 4, "the apply makes at least five writes");
                    break;
                }
            }
        }
    }

    /// A record of the block being applied, stored before its apply (left
    /// by one a crash cut short, had a start missed it) is not taken for an
    /// earlier apply of the same transfer: the transfer still moves money.
    #[tokio::test]
    async fn a_record_left_at_the_height_being_applied_is_not_an_earlier_apply() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        let tx = transfer("left", 0, 1, 30);
        let block = next_block(&ledger, vec![tx.clone()]);
        let leftover = crate::raft::TxRecord {
            tx_hash: tx.content_hash(),
            height: 1,
            block_hash: block.hash(),
            outcome: Ok(crate::ledger::rules::Applied { balance: None }),
        };
        let key = [b"t:".as_slice(), b"left"].concat();
        ledger
            .raw_tree()
            .insert(key, crate::codec::encode(&leftover).unwrap())
            .unwrap();
        sm.apply(vec![entry(1, block)]).await.unwrap();
        assert_eq!((ledger.balance(0), ledger.balance(1)), (Some((70, 1)), Some((130, 1))));
        ledger.verify().unwrap();
    }

    #[tokio::test]
    async fn state_and_views_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (ledger, mut sm) = open(dir.path());
            let b1 = next_block(&ledger, vec![transfer("t1", 1, 0, 30)]);
            sm.apply(vec![entry(1, b1)]).await.unwrap();
        }
        // Simulate a crash that left a line sled never committed.
        let chain = dir.path().join("states").join(views::CHAIN_FILE);
        let good = std::fs::read_to_string(&chain).unwrap();
        std::fs::write(&chain, format!("{good}{{\"torn\":")).unwrap();
        let (ledger, _) = open(dir.path());
        assert_eq!(ledger.balance(1), Some((70, 1)));
        assert_eq!(std::fs::read_to_string(&chain).unwrap(), good);
        // Lines lost instead: the view is rebuilt from sled.
        drop(ledger);
        std::fs::write(&chain, "").unwrap();
        let (ledger, _) = open(dir.path());
        assert_eq!(std::fs::read_to_string(&chain).unwrap(), good);
        assert_eq!(ledger.tip().0, 1);
    }

    #[tokio::test]
    async fn verify_passes_an_intact_ledger_and_names_the_height_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        let b1 = next_block(&ledger, vec![transfer("a", 0, 1, 10), transfer("b", 1, 0, 500)]);
        sm.apply(vec![entry(1, b1)]).await.unwrap();
        let b2 = next_block(&ledger, vec![transfer("c", 1, 0, 5), transfer("a", 0, 1, 10)]);
        sm.apply(vec![entry(2, b2.clone())]).await.unwrap();
        let b3 = next_block(&ledger, vec![transfer("d", 0, 1, 1)]);
        sm.apply(vec![entry(3, b3)]).await.unwrap();
        let report = ledger.verify().unwrap();
        assert_eq!((report.blocks, report.transfers, report.tip_height), (4, 5, 3));

        // A block whose amount was edited, merkle root and work redone to
        // match: its transaction no longer matches its record.
        let mut edited = b2.clone();
        if let Transaction::Transfer { amount, .. } = &mut edited.txs[0] {
            *amount = 50;
        }
        let edited = Block::new(ledger.chain_id(), 2, edited.header.prev_hash, 1, 4, edited.txs).mined();
        let original = ledger.block(2).unwrap().unwrap();
        // Stores `b` as block 2 and returns what verify then says.
        let damaged = |b: &Block| {
            ledger.edit_block(2, |stored| *stored = b.clone()).unwrap();
            ledger.verify().unwrap_err().to_string()
        };
        let err = damaged(&edited);
        assert!(
            err.contains("corrupt chain at height 2") && err.contains("signature of transfer c does not verify"),
            "{err}"
        );
        // Re-signed too (by someone holding account 1's key): the record
        // of the transaction still disagrees.
        let resigned = transfer("c", 1, 0, 50);
        let edited = Block::new(
            ledger.chain_id(),
            2,
            edited.header.prev_hash,
            1,
            4,
            vec![resigned, b2.txs[1].clone()],
        )
        .mined();
        let err = damaged(&edited);
        assert!(
            err.contains("corrupt chain at height 2") && err.contains("record"),
            "{err}"
        );
        // Only the amount edited, nothing redone: the merkle root gives it away at 2.
        let mut lazy = b2.clone();
        if let Transaction::Transfer { amount, .. } = &mut lazy.txs[0] {
            *amount = 50;
        }
        let err = damaged(&lazy);
        assert!(
            err.contains("corrupt chain at height 2") && err.contains("merkle"),
            "{err}"
        );
        ledger.edit_block(2, |stored| *stored = original).unwrap();
        ledger.verify().unwrap();

        // An edited balance: the chain gives another.
        crate::storage::ledger_store::overwrite_stored_balance(ledger.raw_db(), 1, 1_000_000).unwrap();
        drop(sm);
        drop(ledger);
        let (ledger, _sm) = open(dir.path());
        let err = ledger.verify().unwrap_err().to_string();
        assert!(
            err.contains("corrupt chain at height 3") && err.contains("balance of account 1"),
            "{err}"
        );
        // The start-time check, which does not replay history, sees it too.
        let err = ledger.verify_recent(1, usize::MAX).unwrap_err().to_string();
        assert!(
            err.contains("corrupt chain at height 3") && err.contains("digest"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn account_history_reads_a_bounded_number_of_transactions_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        for i in 1..=5u64 {
            let b = next_block(&ledger, vec![transfer(&format!("h{i}"), 0, 1, i)]);
            sm.apply(vec![entry(i, b)]).await.unwrap();
        }
        let ids = |v: &serde_json::Value| -> Vec<String> {
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["tx"]["id"].as_str().unwrap_or("allocation").to_string())
                .collect()
        };
        let all = ledger.account_history(1, 100, None).unwrap();
        assert_eq!(ids(&all), ["h5", "h4", "h3", "h2", "h1", "allocation"]);
        assert!(all["next_before"].is_null());
        // A budget of two transactions: two blocks, then where to go on.
        let page = ledger.account_history_within(1, 100, None, 2).unwrap();
        assert_eq!(ids(&page), ["h5", "h4"]);
        assert_eq!(page["next_before"], 4);
        let rest = ledger.account_history_within(1, 100, Some(4), 100).unwrap();
        assert_eq!(ids(&rest), ["h3", "h2", "h1", "allocation"]);
    }

    #[tokio::test]
    async fn the_start_time_check_covers_the_recent_blocks_and_the_balances_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        for i in 1..=5u64 {
            let b = next_block(&ledger, vec![transfer(&format!("t{i}"), 0, 1, i)]);
            sm.apply(vec![entry(i, b)]).await.unwrap();
        }
        let r = ledger.verify_recent(3, usize::MAX).unwrap();
        assert_eq!((r.blocks, r.transfers, r.tip_height), (3, 3, 5));
        // A transaction budget stops it earlier: 2 transactions, 2 blocks;
        // the tip block is always checked.
        let r = ledger.verify_recent(3, 2).unwrap();
        assert_eq!((r.blocks, r.transfers), (2, 2));
        assert_eq!(ledger.verify_recent(3, 0).unwrap().blocks, 1);
        // Damage to block 4, inside the window: its hash changes, so block 5
        // no longer links to it (or block 4 lacks its work).
        let four = ledger.block(4).unwrap().unwrap();
        ledger.edit_block(4, |b| b.header.timestamp_ms += 1).unwrap();
        let err = ledger.verify_recent(3, usize::MAX).unwrap_err().to_string();
        assert!(
            err.contains("corrupt chain at height 4") || err.contains("corrupt chain at height 5"),
            "{err}"
        );
        ledger.edit_block(4, |b| *b = four).unwrap();
        ledger.verify_recent(3, usize::MAX).unwrap();
        // Balances changed by applying stay consistent with their digest
        // across a restart.
        drop(sm);
        drop(ledger);
        let (ledger, _sm) = open(dir.path());
        ledger.verify_recent(64, usize::MAX).unwrap();
        ledger.verify().unwrap();
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use crate::ledger::{Block, Transaction, TxId};
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::path::Path;

    const GENESIS: &str = r#"{"difficulty":2,"accounts":[{"id":0,"balance":1000},{"id":1,"balance":0}]}"#;

    fn open(dir: &Path) -> (Arc<Ledger>, LedgerStateMachine) {
        super::tests::open_with(dir, GENESIS)
    }

    async fn grow(ledger: &Ledger, sm: &mut LedgerStateMachine, blocks: std::ops::RangeInclusive<u64>) {
        for i in blocks {
            let (h, tip) = ledger.tip();
            let id = TxId::new(format!("t{i}")).unwrap();
            let signature = crate::ledger::AccountKey::dev(0).sign_transfer(ledger.chain_id(), &id, 1, 1);
            let tx = Transaction::Transfer {
                id,
                from: 0,
                to: 1,
                amount: 1,
                signature,
            };
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
        assert_eq!(b.tx_record(&TxId::new("t35").unwrap()).unwrap(), None);
        assert_eq!(b.block(0).unwrap(), a.block(0).unwrap(), "history is kept, not purged");
        let id = TxId::new("t7").unwrap();
        assert_eq!(b.tx_record(&id).unwrap(), a.tx_record(&id).unwrap());
        assert_eq!(
            b.with_state(|s| s.last_applied),
            cut_applied,
            "applied index comes with the snapshot"
        );
        let view = std::fs::read_to_string(b_dir.path().join("states").join("chain.jsonl")).unwrap();
        assert_eq!(view.lines().count(), 31, "the chain view is rebuilt");
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
            .any(|(k, _)| k.as_slice() == [b"t:".as_slice(), b"t20"].concat()));

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
        assert!(b.tx_record(&TxId::new("t12").unwrap()).unwrap().is_some());
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
            // A crash after the pending mark was set, before the load finished.
            let db = crate::storage::open_db(&b_dir.path().join("db")).unwrap();
            db.open_tree("ledger_install").unwrap().insert("pending", "x").unwrap();
            db.flush().unwrap();
        }
        let (b, _) = open(b_dir.path());
        assert_eq!(b.tip(), a.tip());
        assert_eq!(b.balance(1), Some((8, 8)));
    }
}
