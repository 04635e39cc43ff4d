//! Opening a ledger: writing genesis into a fresh data dir, and at every
//! other start putting right what a crash left: writes of a block's apply
//! above the tip, block-file records never indexed, deltas and checkpoints a
//! finished apply made redundant, and a `chain.jsonl` out of step with sled.
//! Each cut is safe because the head moves last ([`super::apply`]): nothing
//! above it was part of the ledger, and the log applies those entries again.

use super::apply::Deltas;
use super::schema::*;
use super::{Ledger, LedgerError, LedgerState};
use crate::ledger::{AccountId, Amount, Block, Book, Genesis, Transaction};
use crate::raft::StoredMembership;
use crate::storage::views::{self, ChainView};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

impl Ledger {
    /// Writes the genesis blocks, derived from the file exactly as on every node.
    ///
    /// Written in small batches (one sled batch of a 100,000-account genesis
    /// peaks at ~500 MB in sled's node copies); `m:genesis` goes last, so a
    /// crash part way leaves a ledger that is written afresh at next start.
    pub(super) fn write_genesis(&self, genesis: &Genesis) -> Result<(), LedgerError> {
        let mut book = Book::new(Arc::clone(&self.keys));
        let mut batch = ChunkedBatch::new(&self.tree);
        for block in &genesis.blocks {
            let hash = block.hash();
            let exec = self.execute(book.as_ref(), block, hash)?;
            if let Some(bad) = exec.records.iter().find(|r| r.outcome.is_err()) {
                return Err(LedgerError::Corruption {
                    height: block.height(),
                    reason: format!("genesis transaction fails: {:?}", bad.outcome),
                });
            }
            book.absorb(exec.changes);
            let at = self.blocks.append(&encode(block, "block")?)?;
            batch.insert(location_key(block.height()), at.encode().to_vec())?;
            for (id, rec) in &exec.new_records {
                batch.insert(tx_key(id), encode(rec, "tx record")?)?;
            }
        }
        let balances = book.balances;
        let last = genesis.blocks.last().map(|b| (b.height(), b.hash()));
        // A genesis written part way before is written afresh.
        self.checkpoints.clear()?;
        self.checkpoints.insert(
            genesis.last_height().to_be_bytes(),
            encode(&(genesis.last_height(), &balances), "balances")?,
        )?;
        let head = Head {
            applied: None,
            tip: last,
            balance_digest: Some(balance_digest(&balances)),
            // The chain view is rebuilt from sled right after.
            view_len: u64::MAX,
        };
        batch.insert(KEY_HEAD.to_vec(), encode(&head, "head")?)?;
        batch.finish()?;
        // The blocks are on disk before the mark that says genesis is written.
        self.blocks.sync()?;
        self.tree.insert(KEY_GENESIS, encode(&self.chain_id, "genesis")?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Reloads the in-memory mirror from sled.
    pub(super) fn reload(&self) -> Result<(), LedgerError> {
        let (balances, deltas) = self.load_balances()?;
        *self.deltas.lock().unwrap_or_else(|p| p.into_inner()) = deltas;
        let head = stored_head(&self.tree)?.ok_or_else(super::no_head)?;
        let (tip_height, tip_hash) = head.tip.ok_or(LedgerError::Corruption {
            height: 0,
            reason: "no chain tip recorded".into(),
        })?;
        let registry = self.load_registry(tip_height)?;
        let tip_time_ms = self
            .block(tip_height)?
            .ok_or(LedgerError::Corruption {
                height: tip_height,
                reason: "the tip block is not stored".into(),
            })?
            .header
            .timestamp_ms;
        let last_applied = head.applied;
        let membership = match self.tree.get(KEY_MEMBERSHIP)? {
            Some(v) => decode(&v, || "m:membership".into())?,
            None => StoredMembership::default(),
        };
        let digest = balance_digest(&balances);
        // Reported by the verify functions, so an audit can still open the
        // ledger and name the account.
        self.digest_mismatch.store(
            head.balance_digest != Some(digest),
            std::sync::atomic::Ordering::Relaxed,
        );
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = LedgerState {
            balances,
            registry,
            tip_height,
            tip_hash,
            tip_time_ms,
            last_applied,
            membership,
            balance_digest: digest,
        };
        Ok(())
    }

    /// The stored balances: the checkpoint with the deltas after it replayed.
    fn load_balances(&self) -> Result<(BTreeMap<AccountId, Amount>, Deltas), LedgerError> {
        // The highest at or below the tip: a crash between writing a
        // checkpoint and the head that moves the tip to its block leaves
        // one above, which the block's apply writes again.
        let tip = self.stored_tip()?.map_or(0, |(h, _)| h);
        let (at, value) = self
            .checkpoints
            .range(..=tip.to_be_bytes())
            .next_back()
            .transpose()?
            .ok_or(LedgerError::Corruption {
                height: 0,
                reason: "no balances recorded".into(),
            })?;
        let (since, mut balances): Checkpoint = decode(&value, || "balance checkpoint".into())?;
        self.remove_checkpoints_except(&at)?;
        let mut deltas = Deltas::default();
        for kv in self.tree.scan_prefix(PREFIX_DELTA) {
            let (k, v) = kv?;
            let height = key_number(&k, PREFIX_DELTA, "balance delta")?;
            // Left by a crash: at or below the checkpoint, one whose block's
            // apply removed them after moving the head; above the tip, one
            // whose head never moved (the entry's re-apply writes it again).
            if height <= since || height > tip {
                self.tree.remove(&k)?;
                continue;
            }
            let changes: Vec<(AccountId, Amount)> = decode(&v, || format!("balance delta of block {height}"))?;
            deltas.heights.push(height);
            deltas.entries += changes.len();
            balances.extend(changes);
        }
        Ok((balances, deltas))
    }

    /// Removes what a crash left of a block's apply above the tip: its index
    /// entry and the records of its transactions, which the apply writes one
    /// by one before the head ([`Ledger::write_block`]), the index entry
    /// first and the block durable in the block files before it. The entry's
    /// re-apply writes them again; until then nothing of the block shows.
    pub(super) fn cut_unapplied_writes(&self) -> Result<(), LedgerError> {
        let Some((tip, _)) = self.stored_tip()? else {
            return Ok(());
        };
        let above = location_key(tip.saturating_add(1));
        let mut removed = (0u64, 0u64);
        for kv in self.tree.range(above.as_slice()..) {
            let (k, at) = kv?;
            if !k.starts_with(PREFIX_LOCATION) {
                break;
            }
            let height = key_number(&k, PREFIX_LOCATION, "block location")?;
            let bytes = read_block(&self.blocks, height, &at)?;
            let block: Block = decode(&bytes, || format!("block {height}"))?;
            // A set's items' records, and settlements' under their holds, too.
            let keys = block.txs.iter().flat_map(Transaction::items).flat_map(|tx| {
                let settlement = tx.settles().map(|h| super::holds::settlement_key(&h));
                tx.key().into_iter().chain(settlement)
            });
            for key in keys {
                if self.tx_record(&key)?.is_some_and(|r| r.height > tip) {
                    self.tree.remove(tx_key(&key))?;
                    removed.1 += 1;
                }
            }
            self.tree.remove(&k)?;
            removed.0 += 1;
        }
        if removed.0 > 0 {
            // On disk before the block files are cut back below these
            // blocks: a crash in between would find them again, pointing
            // past the files' end.
            self.db.flush()?;
            tracing::info!(
                "removed what a crash left of the apply of {} block(s) above the tip at {tip} ({} transaction records); the log applies them again",
                removed.0,
                removed.1
            );
        }
        Ok(())
    }

    /// Cuts off what a crash left in the block files after the tip's block:
    /// written, but its index entry never reached sled.
    pub(super) fn cut_unindexed_blocks(&self) -> Result<(), LedgerError> {
        let Some((height, _)) = self.stored_tip()? else {
            return Ok(());
        };
        let at = self.tree.get(location_key(height))?.ok_or(LedgerError::Corruption {
            height,
            reason: "the tip block is not in the block files".into(),
        })?;
        self.blocks
            .keep_through(Some(decode_location(height, &at)?))
            .map_err(block_damage(height))
    }

    /// Brings `chain.jsonl` in line with sled after a crash: cut back lines
    /// sled never committed, or rebuild it if lines were lost.
    pub(super) fn reconcile_chain_view(&self) -> Result<(), LedgerError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| LedgerError::Io { path, source }
        };
        let expected = stored_head(&self.tree)?.map_or(u64::MAX, |h| h.view_len);
        let view = match ChainView::open(&self.states_dir, expected).map_err(io(&self.states_dir))? {
            Some(view) => view,
            None => {
                if expected != u64::MAX {
                    tracing::info!(
                        "rebuilding {} from the ledger",
                        self.states_dir.join(views::CHAIN_FILE).display()
                    );
                }
                let mut view = ChainView::create(&self.states_dir).map_err(io(&self.states_dir))?;
                for stored in self.stored_blocks(u64::MAX) {
                    let (height, bytes) = stored?;
                    let block: Block = decode(&bytes, || format!("block {height}"))?;
                    let records = self.records_of(&block)?;
                    let line = views::block_line(&block, block.hash(), &records);
                    view.append(&line).map_err(io(view.path()))?;
                }
                let mut batch = sled::Batch::default();
                self.update_head(&mut batch, |h| h.view_len = view.len())?;
                self.tree.apply_batch(batch)?;
                view
            }
        };
        *self.chain_view.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
        Ok(())
    }
}
