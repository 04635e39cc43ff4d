//! Test hooks and tamper tools, built only for tests (`cfg(test)`) and with
//! the `test-hooks` cargo feature, which the integration tests enable: crash
//! points inside a block's apply, a lowered checkpoint interval, and edits
//! of a stopped node's data dir as damage on disk would make them.

use super::schema::*;
use super::{Ledger, LedgerError};
use crate::ledger::{AccountId, Amount, Block, Hash32};
use crate::storage::block_file::{BlockFiles, Location};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Failpoints of one open ledger.
#[derive(Debug)]
pub(super) struct Hooks {
    /// Sled writes a block's apply may still make before it fails as a
    /// crash would; `u64::MAX`: never.
    writes_before_crash: AtomicU64,
    /// The checkpoint interval in blocks; 0: the default.
    checkpoint_max_blocks: AtomicUsize,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            writes_before_crash: AtomicU64::new(u64::MAX),
            checkpoint_max_blocks: AtomicUsize::new(0),
        }
    }
}

impl Hooks {
    /// Fails where [`Ledger::crash_after_writes`] says.
    pub(super) fn before_write(&self) -> Result<(), LedgerError> {
        match self.writes_before_crash.load(Relaxed) {
            u64::MAX => Ok(()),
            0 => Err(LedgerError::Io {
                path: "a test's crash point".into(),
                source: std::io::Error::other("crashed"),
            }),
            n => {
                self.writes_before_crash.store(n - 1, Relaxed);
                Ok(())
            }
        }
    }

    pub(super) fn checkpoint_max_blocks(&self) -> Option<usize> {
        Some(self.checkpoint_max_blocks.load(Relaxed)).filter(|n| *n > 0)
    }
}

impl Ledger {
    /// Makes the next block's apply fail after `writes` of its sled writes,
    /// as a crash there would (sled keeps a prefix of its writes).
    pub fn crash_after_writes(&self, writes: u64) {
        self.hooks.writes_before_crash.store(writes, Relaxed);
    }

    /// Lowers [`super::CHECKPOINT_MAX_BLOCKS`], so tests cross checkpoints quickly.
    pub fn set_checkpoint_max_blocks(&self, blocks: usize) {
        self.hooks.checkpoint_max_blocks.store(blocks, Relaxed);
    }

    /// Heights of the balance deltas stored after the checkpoint.
    pub fn delta_heights(&self) -> Result<Vec<u64>, LedgerError> {
        self.tree
            .scan_prefix(PREFIX_DELTA)
            .keys()
            .map(|k| key_number(&k?, PREFIX_DELTA, "balance delta"))
            .collect()
    }

    /// How many versions of account entries and of the supply are stored.
    pub fn version_count(&self) -> usize {
        self.tree.scan_prefix(PREFIX_VERSIONED).count()
    }

    pub fn block_files(&self) -> &BlockFiles {
        &self.blocks
    }

    /// [`edit_stored_block`] on this open ledger.
    pub fn edit_block(&self, height: u64, f: impl FnOnce(&mut Block)) -> Result<(), LedgerError> {
        edit_block_in(&self.tree, &self.blocks, height, f)
    }

    /// The raw ledger tree, for tests that damage it on purpose.
    pub fn raw_tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub fn raw_checkpoints(&self) -> &sled::Tree {
        &self.checkpoints
    }

    pub fn raw_db(&self) -> &sled::Db {
        &self.db
    }
}

/// Height and hash of the last block stored in a ledger tree.
pub fn stored_tip(tree: &sled::Tree) -> Result<Option<(u64, Hash32)>, LedgerError> {
    Ok(stored_head(tree)?.and_then(|h| h.tip))
}

/// The ledger tree of a stopped node's database.
pub fn ledger_tree(db: &sled::Db) -> Result<sled::Tree, LedgerError> {
    Ok(db.open_tree(LEDGER_TREE)?)
}

/// Overwrites the stored balance of `account` where a start reads it (its
/// latest delta, else the checkpoint), as damage on disk would; returns the
/// balance it replaced. For tests of tamper detection.
pub fn overwrite_stored_balance(
    db: &sled::Db,
    account: AccountId,
    balance: Amount,
) -> Result<Option<Amount>, LedgerError> {
    let tree = db.open_tree(LEDGER_TREE)?;
    for kv in tree.scan_prefix(PREFIX_DELTA).rev() {
        let (k, v) = kv?;
        let mut changes: Vec<(AccountId, Amount)> = decode(&v, || "balance delta".into())?;
        if let Some(entry) = changes.iter_mut().find(|(a, _)| *a == account) {
            let old = std::mem::replace(&mut entry.1, balance);
            tree.insert(k, encode(&changes, "balance delta")?)?;
            return Ok(Some(old));
        }
    }
    let checkpoints = db.open_tree(CHECKPOINT_TREE)?;
    let Some((k, v)) = checkpoints.last()? else {
        return Ok(None);
    };
    let mut checkpoint: Checkpoint = decode(&v, || "balance checkpoint".into())?;
    let old = checkpoint.1.insert(account, balance);
    checkpoints.insert(k, encode(&checkpoint, "balances")?)?;
    Ok(old)
}

/// Replaces the stored bytes of block `height` with `f`'s edit of them, as
/// damage on disk would: the blocks after it are written again behind it.
/// For tests of tamper detection, on a stopped node (`tree` is its ledger
/// tree, `blocks_dir` its [`crate::storage::NodePaths::blocks`]).
pub fn edit_stored_block(
    tree: &sled::Tree,
    blocks_dir: &Path,
    height: u64,
    f: impl FnOnce(&mut Block),
) -> Result<(), LedgerError> {
    edit_block_in(tree, &BlockFiles::open(blocks_dir)?, height, f)
}

fn edit_block_in(
    tree: &sled::Tree,
    blocks: &BlockFiles,
    height: u64,
    f: impl FnOnce(&mut Block),
) -> Result<(), LedgerError> {
    let at = |h: u64| -> Result<Option<Location>, LedgerError> {
        Ok(tree.get(location_key(h))?.as_deref().and_then(Location::decode))
    };
    let mut later = Vec::new();
    let mut h = height;
    while let Some(loc) = at(h)? {
        later.push(blocks.read(loc).map_err(block_damage(h))?);
        h += 1;
    }
    let Some(first) = later.first_mut() else {
        return Err(LedgerError::Corruption {
            height,
            reason: "no such block".into(),
        });
    };
    let mut block: Block = decode(first, || format!("block {height}"))?;
    f(&mut block);
    *first = encode(&block, "block")?;
    blocks.keep_through(height.checked_sub(1).map(at).transpose()?.flatten())?;
    for (i, bytes) in later.iter().enumerate() {
        let loc = blocks.append(bytes)?;
        tree.insert(location_key(height + i as u64), &loc.encode()[..])?;
    }
    blocks.sync()?;
    Ok(())
}
