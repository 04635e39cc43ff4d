//! Checking a received snapshot before it is installed. A snapshot comes
//! from one node (the leader), and no single node is trusted: nothing in it
//! is taken on its word. Its blocks above this node's tip must extend this
//! node's chain and are replayed here, every signature and rule, exactly as
//! if they had come as log entries; the balances and transaction records it
//! holds must be what that replay gives. An install then keeps this node's
//! own blocks and records up to its tip and adds the replayed ones
//! ([`Ledger::install_snapshot`]).
//!
//! The replay costs what applying the same blocks would (for a node that
//! starts empty, a pass over all of history); the records it computes wait
//! on disk, in a tree of their own, not in memory.

use super::schema::*;
use super::{Ledger, LedgerError};
use crate::ledger::{AccountId, Amount, Block, Book, Hash32, Registry, TxKey, TxRecord};
use crate::storage::snapshot::SnapshotReader;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What checking a snapshot file found: the state its install leaves.
#[derive(Debug, Clone)]
pub(super) struct CheckedSnapshot {
    /// The file's checksum: which content was checked.
    pub(super) checksum: [u8; 32],
    /// This node's tip the replay started from.
    pub(super) base: (u64, Hash32),
    /// The snapshot's last block.
    pub(super) tip: (u64, Hash32),
    /// Every balance at `tip`, as the replay gave them.
    pub(super) balances: BTreeMap<AccountId, Amount>,
    /// The account entries and supply at `tip`, as the replay gave them.
    pub(super) registry: Registry,
}

/// The checksum of the snapshot file at `path`, read through to its end
/// (which verifies it).
fn file_checksum(path: &Path) -> Result<[u8; 32], LedgerError> {
    let mut r = SnapshotReader::open(path)?;
    while r.next_record()?.is_some() {}
    r.checksum().ok_or_else(|| refused("it has no checksum".into()))
}

fn refused(reason: String) -> LedgerError {
    LedgerError::SnapshotRefused { reason }
}

impl Ledger {
    /// Checks the snapshot file at `path` against this node's chain (see the
    /// module): a [`LedgerError::SnapshotRefused`] says what does not hold.
    /// Nothing of the ledger changes; the replay's records are kept in
    /// [`SNAPSHOT_CHECK_TREE`] for the install that follows. The same file
    /// checked again against the same tip (a sender that timed out and sent
    /// it again) is not replayed again.
    pub fn check_snapshot(&self, path: &Path) -> Result<(), LedgerError> {
        let mut checked = self.checked_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        self.checked_snapshot_of(&mut checked, path).map(drop)
    }

    /// The check of the file at `path` made against the current tip, run
    /// now if `checked` (the guarded last check: whoever holds it owns
    /// [`SNAPSHOT_CHECK_TREE`]) is of another file or tip.
    pub(super) fn checked_snapshot_of(
        &self,
        checked: &mut Option<CheckedSnapshot>,
        path: &Path,
    ) -> Result<CheckedSnapshot, LedgerError> {
        let checksum = file_checksum(path)?;
        let tip = self.tip();
        match checked.as_ref() {
            Some(c) if c.checksum == checksum && c.base == tip => Ok(c.clone()),
            _ => {
                *checked = None;
                let c = self.replay_snapshot(path)?;
                *checked = Some(c.clone());
                Ok(c)
            }
        }
    }

    /// Forgets the last check (held in `checked`) and the records it computed.
    pub(super) fn forget_checked_snapshot(&self, checked: &mut Option<CheckedSnapshot>) -> Result<(), LedgerError> {
        *checked = None;
        self.snapshot_check.clear()?;
        Ok(())
    }

    fn replay_snapshot(&self, path: &Path) -> Result<CheckedSnapshot, LedgerError> {
        self.snapshot_check.clear()?;
        let (base, base_time, mut book) = self.with_state(|s| {
            let book = Book {
                balances: s.balances.clone(),
                registry: s.registry.clone(),
                genesis: Arc::clone(&self.keys),
            };
            ((s.tip_height, s.tip_hash), s.tip_time_ms, book)
        });
        let mut r = SnapshotReader::open(path)?;
        let (mut genesis, mut tip) = (None, None);
        let mut theirs: BTreeMap<AccountId, Amount> = BTreeMap::new();
        // The last block replayed (this node's tip before the first).
        let mut last = (base.0, base.1, base_time);
        let mut new_records = 0u64;
        let mut their_records = 0u64;
        let mut batch = ChunkedBatch::new(&self.snapshot_check);
        while let Some((k, v)) = r.next_record()? {
            if k == KEY_GENESIS {
                genesis = Some(decode::<Hash32>(&v, || "snapshot genesis".into())?);
            } else if k == KEY_TIP {
                tip = decode::<Option<(u64, Hash32)>>(&v, || "snapshot tip".into())?;
            } else if k == KEY_APPLIED || k == KEY_MEMBERSHIP {
                // Raft's own: the install takes them from the metadata.
            } else if k.starts_with(PREFIX_ACCOUNT) {
                let (account, balance) = account_record(&k, &v)?;
                theirs.insert(account, balance);
            } else if k.starts_with(PREFIX_BLOCK) {
                let height = key_number(&k, PREFIX_BLOCK, "snapshot block")?;
                if height < base.0 {
                    continue;
                }
                let block: Block = decode(&v, || format!("snapshot block {height}"))?;
                if height == base.0 {
                    if block.hash() != base.1 {
                        return Err(refused(format!(
                            "its block {height} is {}, but this node's is {}: another history",
                            block.hash(),
                            base.1
                        )));
                    }
                    continue;
                }
                if height != last.0 + 1 {
                    return Err(refused(format!(
                        "its block {height} follows block {}: blocks are missing or out of order",
                        last.0
                    )));
                }
                let hash = block
                    .verify_extends(self.chain_id, self.difficulty, last.0, last.1)
                    .and_then(|hash| block.verify_time_after(last.2).map(|()| hash))
                    .map_err(|e| refused(format!("its block {height}: {e}")))?;
                let exec = self.execute_with(book.as_ref(), &block, hash, &|key| self.earlier_record(key, base.0))?;
                for (key, rec) in &exec.new_records {
                    batch.insert(tx_key(key), encode(rec, "tx record")?)?;
                    new_records += 1;
                }
                // Lookups of the next block's ids read what this one wrote.
                batch.flush()?;
                book.absorb(exec.changes);
                last = (height, hash, block.header.timestamp_ms);
            } else if k.starts_with(PREFIX_TX) {
                let rec: TxRecord = decode(&v, || "snapshot tx record".into())?;
                if rec.height <= base.0 {
                    // This node's own record stays.
                    continue;
                }
                if self.snapshot_check.get(&k)?.as_deref() != Some(&v[..]) {
                    return Err(refused(format!(
                        "its record of transaction {:?} at height {} is not what its blocks give",
                        String::from_utf8_lossy(&k[PREFIX_TX.len()..]),
                        rec.height
                    )));
                }
                their_records += 1;
            } else {
                return Err(refused(format!(
                    "it holds a record of unknown kind {:?}",
                    String::from_utf8_lossy(&k)
                )));
            }
        }
        let checksum = r.checksum().ok_or_else(|| refused("it has no checksum".into()))?;
        let Book { balances, registry, .. } = book;
        if genesis != Some(self.chain_id) {
            return Err(LedgerError::GenesisMismatch {
                stored: genesis.unwrap_or(Hash32::ZERO),
                file: self.chain_id,
            });
        }
        let replayed = (last.0, last.1);
        if tip != Some(replayed) {
            return Err(match tip {
                Some((h, _)) if h < base.0 => {
                    refused(format!("it ends at height {h}, below this node's tip at {}", base.0))
                }
                _ => refused(format!(
                    "it says its tip is {tip:?}, but its blocks end at height {} with {}",
                    replayed.0, replayed.1
                )),
            });
        }
        if let Some((account, balance)) = theirs.iter().find(|(a, b)| balances.get(a) != Some(b)) {
            return Err(refused(format!(
                "it gives account {account} a balance of {balance}, but its blocks give {:?}",
                balances.get(account)
            )));
        }
        if let Some(account) = balances.keys().find(|a| !theirs.contains_key(a)) {
            return Err(refused(format!("it has no balance for account {account}")));
        }
        if their_records != new_records {
            return Err(refused(format!(
                "it holds {their_records} transaction records above height {}, but its blocks make {new_records}",
                base.0
            )));
        }
        Ok(CheckedSnapshot {
            checksum,
            base,
            tip: replayed,
            balances,
            registry,
        })
    }

    /// The record of `key`'s first apply at or below `base`, or in a block
    /// a snapshot check replayed.
    fn earlier_record(&self, key: &TxKey, base: u64) -> Result<Option<TxRecord>, LedgerError> {
        if let Some(v) = self.snapshot_check.get(tx_key(key))? {
            return decode(&v, || format!("checked tx record {key}")).map(Some);
        }
        Ok(self.tx_record(key)?.filter(|r| r.height <= base))
    }
}
