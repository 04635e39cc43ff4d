//! Snapshots of the ledger: a cut of the applied state taken between two
//! applies ([`Ledger::cut`]), streamed to a file with the blocks and records
//! up to it ([`Ledger::write_snapshot`]), and a received file, once checked
//! ([`super::snapshot_check`]), installed on top of this node's chain,
//! crash-safe ([`Ledger::install_snapshot`]). The file format is
//! [`crate::storage::snapshot`]'s.

use super::schema::*;
use super::snapshot_check::CheckedSnapshot;
use super::{Ledger, LedgerError};
use crate::ledger::{AccountId, Amount, Block, Hash32, Registry, TxRecord};
use crate::raft::{LogId, SnapshotMeta, StoredMembership};
use crate::storage::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};
use std::path::Path;

impl Ledger {
    /// Whether a snapshot install began or ran since `cut` was taken: the
    /// ledger a build reads from has then been replaced under it.
    pub fn installed_since(&self, cut: &SnapshotCut) -> bool {
        let now = self.installs.load(std::sync::atomic::Ordering::SeqCst);
        now != cut.installs || now % 2 == 1
    }

    /// Captures what a snapshot at the current applied state needs; called
    /// between two applies, so it is a consistent cut. Costs O(accounts).
    pub fn cut(&self) -> SnapshotCut {
        self.with_state(|s| SnapshotCut {
            installs: self.installs.load(std::sync::atomic::Ordering::SeqCst),
            last_applied: s.last_applied,
            membership: s.membership.clone(),
            height: s.tip_height,
            tip_hash: s.tip_hash,
            balances: s.balances.iter().map(|(a, b)| (*a, *b)).collect(),
            registry: s.registry.clone(),
        })
    }

    /// Streams the snapshot described by `cut` into a file at `path`.
    ///
    /// The transaction records come from `previous` (a snapshot of this
    /// chain at or below the cut) where it can be read, plus those of the
    /// blocks after it, looked up by their ids: records never change once
    /// written. Reading all of them from sled instead pages in the whole
    /// index, which sled's cache lets go of only after thousands of further
    /// accesses (a leader's peak RSS rose ~40 MB at each snapshot of a
    /// 1,000,000-transfer chain). Falls back to that when `previous` is
    /// missing or unusable.
    pub fn write_snapshot(
        &self,
        cut: &SnapshotCut,
        meta: &SnapshotMeta,
        path: &Path,
        previous: Option<&Path>,
    ) -> Result<SnapshotWritten, LedgerError> {
        if let Some(prev) = previous.filter(|p| p.exists()) {
            match self.write_snapshot_from(cut, meta, path, Some(prev)) {
                Err(LedgerError::PreviousSnapshot(e)) => tracing::warn!(
                    "cannot take transaction records from {}: {e}; reading them from the ledger",
                    prev.display()
                ),
                other => return other,
            }
        }
        self.write_snapshot_from(cut, meta, path, None)
    }

    fn write_snapshot_from(
        &self,
        cut: &SnapshotCut,
        meta: &SnapshotMeta,
        path: &Path,
        previous: Option<&Path>,
    ) -> Result<SnapshotWritten, LedgerError> {
        let previous = previous
            .map(|p| {
                self.open_previous_snapshot(p, cut)
                    .map_err(|e| LedgerError::PreviousSnapshot(Box::new(e)))
            })
            .transpose()?;
        let mut w = SnapshotWriter::create(path, meta)?;
        let mut written = SnapshotWritten::default();
        w.record(KEY_GENESIS, &encode(&self.chain_id(), "genesis")?)?;
        w.record(KEY_TIP, &encode(&Some((cut.height, cut.tip_hash)), "tip")?)?;
        w.record(KEY_APPLIED, &encode(&cut.last_applied, "applied")?)?;
        w.record(KEY_MEMBERSHIP, &encode(&cut.membership, "membership")?)?;
        for (account, balance) in &cut.balances {
            w.record(&account_key(*account), &encode(balance, "balance")?)?;
            written.records += 1;
        }
        // Blocks up to the cut never change: read them while applies go on.
        for (expected, stored) in (0u64..).zip(self.stored_blocks(cut.height)) {
            let (height, bytes) = stored?;
            if height != expected {
                return Err(LedgerError::Corruption {
                    height: expected,
                    reason: format!("block {expected} is missing under a snapshot's cut (next stored: {height})"),
                });
            }
            w.record(&block_key(height), &bytes)?;
            written.records += 1;
            // Blocks after the previous snapshot: their records, by id, while
            // the block is at hand.
            if previous.as_ref().is_some_and(|(_, prev_height)| height > *prev_height) {
                let block: Block = decode(&bytes, || format!("block {height}"))?;
                written.records += self.write_records_of(&mut w, &block)?;
            }
        }
        let last: Option<Block> = self.block(cut.height)?;
        if last.map(|b| b.hash()) != Some(cut.tip_hash) {
            return Err(LedgerError::Corruption {
                height: cut.height,
                reason: "the chain changed under a snapshot being built".into(),
            });
        }
        match previous {
            Some((mut reader, _)) => {
                while let Some((k, v)) = reader
                    .next_record()
                    .map_err(|e| LedgerError::PreviousSnapshot(Box::new(e.into())))?
                {
                    if k.starts_with(PREFIX_TX) {
                        w.record(&k, &v)?;
                        written.records += 1;
                        written.reused_records += 1;
                    }
                }
            }
            None => {
                // Records of later blocks are left out: they belong after the cut.
                for kv in self.tree.scan_prefix(PREFIX_TX) {
                    let (k, v) = kv?;
                    let rec: TxRecord = decode(&v, || format!("tx record {:?}", String::from_utf8_lossy(&k[2..])))?;
                    if rec.height <= cut.height {
                        w.record(&k, &v)?;
                        written.records += 1;
                    }
                }
            }
        }
        w.finish()?;
        Ok(written)
    }

    /// Writes the records `block` created (a record belongs to the block
    /// that first applied its id; a settlement's is also under its hold);
    /// returns how many. A transaction refused unsigned or out of time
    /// claimed no id and has none.
    fn write_records_of(&self, w: &mut SnapshotWriter, block: &Block) -> Result<u64, LedgerError> {
        let height = block.height();
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        // A set's records are its items'.
        let keys = block
            .txs
            .iter()
            .flat_map(crate::ledger::Transaction::items)
            .flat_map(|tx| {
                let settlement = tx.settles().map(|h| super::holds::settlement_key(&h));
                tx.key().into_iter().chain(settlement)
            });
        for key in keys {
            let Some(rec) = self.tx_record(&key)? else {
                continue;
            };
            if rec.height == height && seen.insert(key.clone()) {
                w.record(&tx_key(&key), &encode(&rec, "tx record")?)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// A snapshot of this chain at or below `cut`, positioned after the
    /// genesis and tip records its writer puts first, and its height.
    fn open_previous_snapshot(&self, path: &Path, cut: &SnapshotCut) -> Result<(SnapshotReader, u64), LedgerError> {
        let mut r = SnapshotReader::open(path)?;
        let (mut genesis, mut tip) = (None, None);
        while genesis.is_none() || tip.is_none() {
            let corrupt = |reason: &str| SnapshotError::Corrupt {
                path: path.display().to_string(),
                reason: reason.into(),
            };
            let (k, v) = r.next_record()?.ok_or_else(|| corrupt("no genesis and tip records"))?;
            if k == KEY_GENESIS {
                genesis = Some(decode::<Hash32>(&v, || "snapshot genesis".into())?);
            } else if k == KEY_TIP {
                tip = Some(decode::<Option<(u64, Hash32)>>(&v, || "snapshot tip".into())?);
            } else {
                return Err(corrupt("genesis and tip are not its first records").into());
            }
        }
        if genesis != Some(self.chain_id()) {
            return Err(LedgerError::GenesisMismatch {
                stored: genesis.unwrap_or(Hash32::ZERO),
                file: self.chain_id(),
            });
        }
        let (height, hash) = tip.flatten().ok_or(LedgerError::Corruption {
            height: 0,
            reason: "the previous snapshot has no tip".into(),
        })?;
        if height > cut.height || self.block(height)?.map(|b| b.hash()) != Some(hash) {
            return Err(LedgerError::Corruption {
                height,
                reason: "the previous snapshot is not a prefix of this cut".into(),
            });
        }
        Ok((r, height))
    }

    /// Moves the ledger to the state of the snapshot file at `path`, once
    /// checked against this node's chain ([`Ledger::check_snapshot`]; the
    /// check made just before is reused): this node's blocks and records up
    /// to its tip stay, the snapshot's blocks above it and the records and
    /// balances their replay gave are added. A snapshot that fails the check
    /// changes nothing.
    ///
    /// Crash-safe: a pending mark is set before the ledger is touched and
    /// cleared after, and the head moves last; a node that crashes in
    /// between finds its ledger as before and redoes the install from the
    /// same file when it starts.
    pub fn install_snapshot(&self, path: &Path) -> Result<(), LedgerError> {
        // Held to the end: no other check may replace the records this
        // install copies from the check tree.
        let mut guard = self.checked_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let checked = self.checked_snapshot_of(&mut guard, path)?;
        self.installs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.install_meta
            .insert(KEY_PENDING_INSTALL, path.to_string_lossy().as_bytes())?;
        self.db.flush()?;
        let loaded = self.load_snapshot(path, &checked).and_then(|()| {
            self.install_meta.remove(KEY_PENDING_INSTALL)?;
            self.db.flush()?;
            self.reload()?;
            self.reconcile_chain_view()?;
            self.forget_checked_snapshot(&mut guard)
        });
        self.installs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        loaded
    }

    /// Adds to the ledger what `checked` found the snapshot at `path` adds:
    /// its blocks above the check's base, the records their replay made,
    /// the balances, account entries and supply at its tip, and the
    /// metadata's log id and membership.
    /// Bounded batches; the head last, so until then the ledger is as before.
    fn load_snapshot(&self, path: &Path, checked: &CheckedSnapshot) -> Result<(), LedgerError> {
        // What an install cut short left above the tip.
        self.cut_unapplied_writes()?;
        self.cut_unindexed_blocks()?;
        self.remove_versions_above(self.tip().0)?;
        let mut batch = ChunkedBatch::new(&self.tree);
        let mut r = SnapshotReader::open(path)?;
        let meta = r.meta.clone();
        while let Some((k, v)) = r.next_record()? {
            if k.starts_with(PREFIX_BLOCK) {
                let height = key_number(&k, PREFIX_BLOCK, "snapshot block")?;
                if height > checked.base.0 {
                    let at = self.blocks.append(&v)?;
                    batch.insert(location_key(height), at.encode().to_vec())?;
                }
            }
        }
        // Before the batch that finishes the install (and the flush after it).
        self.blocks.sync()?;
        for kv in self.snapshot_check.iter() {
            let (k, v) = kv?;
            batch.insert(k.to_vec(), v.to_vec())?;
        }
        let (at, _) = checked.tip;
        self.write_registry_at(&mut batch, &checked.registry, at)?;
        // Holds pending here that the snapshot's blocks ended: an end mark
        // at its tip, or this node's older entry would stay the newest.
        let ended: Vec<crate::ledger::HoldKey> = self.with_state(|s| {
            s.registry
                .holds
                .iter()
                .filter(|(k, _)| checked.registry.holds.get(k).is_none())
                .map(|(k, _)| k.clone())
                .collect()
        });
        for key in &ended {
            batch.insert(hold_version_key(key, at), encode(&None::<crate::ledger::Hold>, "hold")?)?;
        }
        // Above the tip until the head moves to it: a start reads the one
        // below until then.
        self.checkpoints
            .insert(at.to_be_bytes(), encode(&(at, &checked.balances), "balances")?)?;
        let head = Head {
            applied: meta.last_log_id,
            tip: Some(checked.tip),
            balance_digest: Some(balance_digest(&checked.balances)),
            view_len: u64::MAX,
        };
        batch.insert(KEY_MEMBERSHIP.to_vec(), encode(&meta.last_membership, "membership")?)?;
        batch.insert(KEY_HEAD.to_vec(), encode(&head, "head")?)?;
        batch.finish()
    }
}

/// What [`Ledger::write_snapshot`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotWritten {
    pub records: u64,
    /// Transaction records copied from the previous snapshot.
    pub reused_records: u64,
}

/// What a snapshot at one applied state holds besides immutable blocks and records.
#[derive(Debug, Clone)]
pub struct SnapshotCut {
    /// The ledger's install count when the cut was taken.
    pub installs: u64,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub height: u64,
    pub tip_hash: Hash32,
    pub balances: Vec<(AccountId, Amount)>,
    /// Account entries and supply. Not written to snapshot files: a
    /// receiver replays every block above its own tip, which gives them.
    pub registry: Registry,
}
