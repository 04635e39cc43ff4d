//! Applying committed entries: a block is verified and executed in memory
//! ([`Ledger::prepare_block`]), its outcome handed to whoever listens, and
//! then written ([`Ledger::write_block`]) in the order that keeps a crash
//! harmless: the block durable in the block files first, then its index
//! entry, records and balance delta as single sled inserts, the head last.

use super::schema::*;
use super::sets::{self, Admission};
use super::{holds, refusal_claiming_no_id, Ledger, LedgerError};
use crate::ledger::rules::{self, Changes, Overlay};
use crate::ledger::{
    AccountId, Amount, Block, BlockOutcome, BookRef, Hash32, RejectReason, Transaction, TxKey, TxRecord,
};
use crate::raft::{LogId, StoredMembership};
use crate::stats::{self, Stage};
use crate::storage::views;
use std::collections::HashMap;

/// Most deltas kept before a checkpoint (bounds the keys a start reads).
pub const CHECKPOINT_MAX_BLOCKS: usize = 1024;
/// Fewest delta entries that call for a checkpoint, whatever the number of
/// accounts: small ledgers need not rewrite all balances every few blocks.
const CHECKPOINT_MIN_ENTRIES: usize = 65_536;

/// Told the records of each committed block as soon as this node has
/// executed it, before the block is written. The entry is committed (on
/// disk on a majority) and apply is deterministic, so these are the records
/// every node computes; the writes after only make this node's copy durable.
/// The leader's block producer listens, to answer its clients early.
pub trait ExecutionListener: Send + Sync {
    /// `records` are the outcomes of block `hash`'s transactions, in order.
    /// True if someone was waiting for them.
    fn executed(&self, hash: &Hash32, records: &[TxRecord]) -> bool;
}

/// A committed block verified and executed, not yet written.
pub(crate) struct PreparedBlock {
    hash: Hash32,
    exec: Execution,
    digest: [u8; 32],
    checkpoint: Option<Vec<u8>>,
    started: std::time::Instant,
    /// Someone was handed the block's records already.
    pub(crate) announced: bool,
}

/// What [`Ledger::prepare_block`] leaves to do.
pub(crate) enum Prepared {
    /// Nothing: the block was refused and that is recorded.
    Done(BlockOutcome),
    /// The block is to be written by [`Ledger::write_block`] (boxed: it
    /// carries the block's whole execution).
    Ready(Box<PreparedBlock>),
}

/// The balance deltas stored after the checkpoint.
#[derive(Debug, Default)]
pub(super) struct Deltas {
    pub(super) heights: Vec<u64>,
    pub(super) entries: usize,
}

/// What running a block's transactions produced, before it is written.
pub(super) struct Execution {
    pub(super) changes: Changes,
    pub(super) records: Vec<TxRecord>,
    pub(super) new_records: Vec<(TxKey, TxRecord)>,
}

impl Ledger {
    /// Runs a block's transactions against `book` without writing anything.
    pub(super) fn execute(&self, book: BookRef<'_>, block: &Block, hash: Hash32) -> Result<Execution, LedgerError> {
        // One at this height or above is no earlier apply: a crash cut
        // short this block's (or the genesis write), and a start removes
        // such records.
        let height = block.height();
        self.execute_with(book, block, hash, &|key| {
            Ok(self.tx_record(key)?.filter(|r| r.height < height))
        })
    }

    /// [`Ledger::execute`], with `earlier` telling the record of an id's
    /// first apply in an earlier block, if any.
    pub(super) fn execute_with(
        &self,
        book: BookRef<'_>,
        block: &Block,
        hash: Hash32,
        earlier: &dyn Fn(&TxKey) -> Result<Option<TxRecord>, LedgerError>,
    ) -> Result<Execution, LedgerError> {
        let mut overlay = Overlay::new(&book);
        let mut records = Vec::with_capacity(block.txs.len());
        let mut new_records: Vec<(TxKey, TxRecord)> = Vec::new();
        let mut fresh: HashMap<TxKey, usize> = HashMap::new();
        let height = block.height();
        let block_ms = block.header.timestamp_ms;
        let at = rules::At { height, block_ms };
        // Blocks genesis defines are the file's own: unsigned, no expiry.
        let signed = height > self.genesis_tip.0;
        // Holds whose deadline the block's time reached end before its
        // transactions run: what they held is available to them.
        if signed {
            rules::release_due(&mut overlay, block_ms);
        }
        // Checked here, on every node, not only by the leader before it
        // proposed: a leader cannot move money its clients did not sign for.
        // Under the keys as they were before the block: one set in it signs
        // from the next.
        let keys = self.keys_for(&book, &block.txs);
        let verdicts = self.authorize_for_apply(block, &keys);
        for (tx, verdict) in block.txs.iter().zip(verdicts) {
            let tx_hash = tx.content_hash();
            let record = |outcome| TxRecord {
                tx_hash,
                height,
                block_hash: hash,
                outcome,
            };
            if let Transaction::Set { items } = tx {
                let before = |k: &TxKey| match fresh.get(k) {
                    Some(&i) => Ok(Some(new_records[i].1.clone())),
                    None => earlier(k),
                };
                let keys = self.item_keys(&book, items);
                let rec = match self.admit_set(tx, items, block_ms, signed, &keys, &before)? {
                    Admission::Refused(reason) => record(Err(reason)),
                    Admission::Duplicate(first) => first,
                    Admission::Run => {
                        let outcome = sets::run_set(&mut overlay, items, at, &before)?;
                        for (key, rec) in sets::item_records(items, &outcome, height, hash) {
                            fresh.insert(key.clone(), new_records.len());
                            new_records.push((key, rec));
                        }
                        record(outcome.map(|_| rules::Applied { balance: None }))
                    }
                };
                records.push(rec);
                continue;
            }
            let rec = match tx.key() {
                // Only transactions with an id are signed.
                None if verdict.is_err() => record(Err(refusal_claiming_no_id(tx, block_ms))),
                None => record(rules::apply(&mut overlay, tx, at)),
                Some(key) => {
                    let first = match fresh.get(&key) {
                        Some(&i) => Some(new_records[i].1.clone()),
                        None => earlier(&key)?,
                    };
                    // Out of time, then unsigned: refused without claiming
                    // the id, so its signer may use it (the order
                    // `records_of` reads the refusal back in).
                    let unclaimed = if !signed {
                        Ok(())
                    } else {
                        rules::check_expiry(tx, block_ms).and(verdict.map_err(|_| RejectReason::Unauthorized {
                            signer: tx.signer().unwrap_or(key.signer),
                        }))
                    };
                    match (first, unclaimed) {
                        // Same id, same content: it was applied once already
                        // (signature and expiry aside: the owner may sign it twice).
                        (Some(first), _) if first.tx_hash == tx_hash => first,
                        (_, Err(reason)) => record(Err(reason)),
                        (Some(_), Ok(())) => record(Err(RejectReason::IdConflict { id: key.id })),
                        (None, Ok(())) => {
                            let mut outcome = rules::apply(&mut overlay, tx, at);
                            let settles = tx.settles();
                            if let (Err(RejectReason::UnknownHold { .. }), Some(hold)) = (&outcome, &settles) {
                                let before = |k: &TxKey| match fresh.get(k) {
                                    Some(&i) => Ok(Some(new_records[i].1.clone())),
                                    None => earlier(k),
                                };
                                outcome = Err(holds::why_not_pending(hold, &before)?);
                            }
                            let rec = record(outcome);
                            fresh.insert(key.clone(), new_records.len());
                            new_records.push((key, rec.clone()));
                            // A settlement is recorded under its hold too.
                            if let (Some(hold), true) = (settles, rec.outcome.is_ok()) {
                                let key = holds::settlement_key(&hold);
                                fresh.insert(key.clone(), new_records.len());
                                new_records.push((key, rec.clone()));
                            }
                            rec
                        }
                    }
                }
            };
            records.push(rec);
        }
        Ok(Execution {
            changes: overlay.into_changes(),
            records,
            new_records,
        })
    }

    /// First half of applying one committed block at `log_id`: verifies and
    /// executes it in memory and hands its records to the
    /// [`ExecutionListener`], if one listens. A refused block is recorded at once.
    /// [`Ledger::write_block`] must follow before the next entry.
    pub(crate) fn prepare_block(&self, block: &Block, log_id: LogId) -> Result<Prepared, LedgerError> {
        let started = std::time::Instant::now();
        crate::timeline::mark(crate::timeline::Point::ApplyIn);
        let (tip_height, tip_hash, tip_time_ms) = {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            (s.tip_height, s.tip_hash, s.tip_time_ms)
        };
        let mut batch = sled::Batch::default();
        let verdict = block
            .verify_extends(self.chain_id, self.difficulty, tip_height, tip_hash)
            .and_then(|hash| block.verify_time_after(tip_time_ms).map(|()| hash));
        let hash = match verdict {
            Ok(hash) => hash,
            Err(e) => {
                // Deterministic on every node: same tip, same block, same verdict.
                tracing::warn!("refused block at log index {}: {e}", log_id.index);
                self.update_head(&mut batch, |h| h.applied = Some(log_id))?;
                self.tree.apply_batch(batch)?;
                self.state.write().unwrap_or_else(|p| p.into_inner()).last_applied = Some(log_id);
                return Ok(Prepared::Done(BlockOutcome::Refused { reason: e.to_string() }));
            }
        };
        let deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        let (exec, digest, checkpoint) = {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            let exec = self.execute(self.book(&s), block, hash)?;
            let mut digest = s.balance_digest;
            for (account, new) in &exec.changes.balances {
                if let Some(old) = s.balances.get(account) {
                    xor_into(&mut digest, balance_term(*account, *old));
                }
                xor_into(&mut digest, balance_term(*account, *new));
            }
            let entries = deltas.entries + exec.changes.balances.len();
            let max_blocks = self.checkpoint_max_blocks();
            let checkpoint = (entries >= s.balances.len().max(CHECKPOINT_MIN_ENTRIES)
                || deltas.heights.len() + 1 >= max_blocks)
                .then(|| {
                    let mut all = s.balances.clone();
                    all.extend(exec.changes.balances.iter().map(|(a, b)| (*a, *b)));
                    encode(&(block.height(), all), "balances")
                })
                .transpose()?;
            (exec, digest, checkpoint)
        };
        drop(deltas);
        // The entry is committed (on disk on a majority) and apply is
        // deterministic: every node computes these records for it. Whoever
        // waits can have them now; the writes only make this node's copy
        // durable, and a crash before them re-applies the entry.
        let announced = self
            .executions
            .get()
            .is_some_and(|listener| listener.executed(&hash, &exec.records));
        Ok(Prepared::Ready(Box::new(PreparedBlock {
            hash,
            exec,
            digest,
            checkpoint,
            started,
            announced,
        })))
    }

    /// Second half of applying a block: writes what
    /// [`Ledger::prepare_block`] computed, then makes it visible.
    pub(crate) fn write_block(
        &self,
        block: &Block,
        log_id: LogId,
        p: Box<PreparedBlock>,
    ) -> Result<BlockOutcome, LedgerError> {
        let PreparedBlock {
            hash,
            exec,
            digest,
            checkpoint,
            started,
            ..
        } = *p;
        let mut deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        // Durably: the index entry below may reach disk with any later sled
        // write.
        let at = self.blocks.append(&encode(block, "block")?)?;
        self.blocks.sync()?;
        // Single inserts, the head last, not one batch: every sled 0.34 batch
        // hands the write buffer to sled's IO threads twice (before and after
        // it), two writes and wake-ups per block on every node. sled recovers
        // a prefix of its log, so a crash keeps some of these writes and never
        // the head without them; a start removes what lies above the tip
        // ([`Ledger::cut_unapplied_writes`], [`Ledger::load_balances`]) and
        // the entry is applied again.
        self.before_write()?;
        self.tree.insert(location_key(block.height()), &at.encode()[..])?;
        for (id, rec) in &exec.new_records {
            self.before_write()?;
            self.tree.insert(tx_key(id), encode(rec, "tx record")?)?;
        }
        let checkpoint_key = block.height().to_be_bytes();
        match &checkpoint {
            Some(all) => {
                self.before_write()?;
                self.checkpoints.insert(checkpoint_key, all.as_slice())?;
            }
            None if exec.changes.balances.is_empty() => {}
            None => {
                let changes: Vec<(AccountId, Amount)> = exec.changes.balances.iter().map(|(a, b)| (*a, *b)).collect();
                self.before_write()?;
                self.tree
                    .insert(delta_key(block.height()), encode(&changes, "balance delta")?)?;
            }
        }
        // Account entries and the supply: a version at this height beside
        // the one before, which goes once the head has moved.
        let height = block.height();
        for (account, info) in &exec.changes.accounts {
            self.before_write()?;
            self.tree
                .insert(account_info_key(*account, height), encode(info, "account entry")?)?;
        }
        if let Some(supply) = &exec.changes.supply {
            self.before_write()?;
            self.tree.insert(supply_key(height), encode(supply, "supply")?)?;
        }
        for (key, hold) in &exec.changes.holds {
            self.before_write()?;
            self.tree.insert(hold_version_key(key, height), encode(hold, "hold")?)?;
        }
        let line = views::block_line(block, hash, &exec.records);
        let mut view_guard = self.chain_view.lock().unwrap_or_else(|p| p.into_inner());
        let view_len = match view_guard.as_ref() {
            Some(view) => view.len() + line.len() as u64,
            // No view open (an install under way): keep what is stored.
            None => stored_head(&self.tree)?.map_or(u64::MAX, |h| h.view_len),
        };
        let head = Head {
            applied: Some(log_id),
            tip: Some((block.height(), hash)),
            balance_digest: Some(digest),
            view_len,
        };
        self.before_write()?;
        self.tree.insert(KEY_HEAD, encode(&head, "head")?)?;
        if checkpoint.is_some() {
            // After the head: until it moves, the old checkpoint and these
            // deltas are the balances.
            for h in &deltas.heights {
                self.before_write()?;
                self.tree.remove(delta_key(*h))?;
            }
            self.before_write()?;
            self.remove_checkpoints_except(&checkpoint_key)?;
            *deltas = Deltas::default();
        } else if !exec.changes.balances.is_empty() {
            deltas.heights.push(block.height());
            deltas.entries += exec.changes.balances.len();
        }
        drop(deltas);
        for account in exec.changes.accounts.keys() {
            self.before_write()?;
            self.remove_versions_below(&account_info_name(*account), height)?;
        }
        if exec.changes.supply.is_some() {
            self.before_write()?;
            self.remove_versions_below(SUPPLY_NAME, height)?;
        }
        for (key, hold) in &exec.changes.holds {
            self.before_write()?;
            let name = hold_name(key);
            self.remove_versions_below(&name, height)?;
            if hold.is_none() {
                // Ended: with nothing older left, the mark may go.
                self.tree.remove(version_key(&name, height))?;
            }
        }
        self.sync_new_blobs()?;
        {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            s.balances.extend(exec.changes.balances.iter().map(|(a, b)| (*a, *b)));
            s.registry
                .accounts
                .extend(exec.changes.accounts.iter().map(|(a, i)| (*a, *i)));
            if let Some(supply) = exec.changes.supply {
                s.registry.supply = supply;
            }
            for (key, hold) in &exec.changes.holds {
                s.registry.holds.set(key.clone(), *hold);
            }
            s.balance_digest = digest;
            s.tip_height = block.height();
            s.tip_hash = hash;
            s.tip_time_ms = block.header.timestamp_ms;
            s.last_applied = Some(log_id);
        }
        stats::record(Stage::Apply, started.elapsed());
        let view_started = std::time::Instant::now();
        if let Some(view) = view_guard.as_mut() {
            if let Err(e) = view.append(&line) {
                // The view is rebuilt from sled at next start; keep serving.
                tracing::warn!("cannot append to {}: {e}", view.path().display());
            }
        }
        drop(view_guard);
        stats::record(Stage::ChainView, view_started.elapsed());
        crate::timeline::mark(crate::timeline::Point::ApplyDone);
        let mut by_kind = [0u64; crate::ledger::transaction::KINDS.len()];
        for (tx, r) in block.txs.iter().zip(&exec.records) {
            if r.height == block.height() && r.outcome.is_ok() {
                by_kind[tx.kind_index()] += 1;
            }
        }
        for (kind, n) in by_kind.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            stats::committed_kind(kind, n);
        }
        let committed = by_kind.iter().sum::<u64>() as usize;
        let rejected = exec
            .records
            .iter()
            .filter(|r| r.height == block.height() && r.outcome.is_err())
            .count();
        stats::block_applied(committed as u64, rejected as u64);
        self.log_committed(block.height(), block.txs.len() as u64, committed as u64, hash);
        Ok(BlockOutcome::Committed {
            height: block.height(),
            hash,
            records: exec.records,
        })
    }

    /// Applies a blank or membership entry: only the head (and the membership) move.
    pub(crate) fn apply_marker(&self, log_id: LogId, membership: Option<StoredMembership>) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        self.update_head(&mut batch, |h| h.applied = Some(log_id))?;
        if let Some(m) = &membership {
            batch.insert(KEY_MEMBERSHIP, encode(m, "membership")?);
        }
        self.tree.apply_batch(batch)?;
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.last_applied = Some(log_id);
        if let Some(m) = membership {
            s.membership = m;
        }
        Ok(())
    }

    /// Called before each sled write of a block's apply; with test hooks,
    /// fails where [`tamper::Hooks::crash_after_writes`] says.
    #[inline]
    fn before_write(&self) -> Result<(), LedgerError> {
        #[cfg(any(test, feature = "test-hooks"))]
        self.hooks.before_write()?;
        Ok(())
    }

    /// [`CHECKPOINT_MAX_BLOCKS`], or what a test lowered it to.
    fn checkpoint_max_blocks(&self) -> usize {
        #[cfg(any(test, feature = "test-hooks"))]
        if let Some(n) = self.hooks.checkpoint_max_blocks() {
            return n;
        }
        CHECKPOINT_MAX_BLOCKS
    }

    /// Has `listener` told each block's records once executed; set once,
    /// by the node.
    pub fn listen_to_executions(&self, listener: std::sync::Arc<dyn ExecutionListener>) {
        let _ = self.executions.set(listener);
    }
}
