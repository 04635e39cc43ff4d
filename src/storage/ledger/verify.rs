//! Whole-chain checks: [`Ledger::verify`] re-executes all of history from
//! genesis (`bank-server verify`, the `Verify` call); [`Ledger::verify_recent`]
//! is the check every start runs, whose cost does not grow with history.
//! Damage is a [`LedgerError::Corruption`] naming the block height.

use super::schema::*;
use super::{holds, Ledger, LedgerError};
use crate::ledger::{
    rules, AccountId, Amount, Block, Book, Hash32, PublicKey, RejectReason, Signer, Transaction, TxKey, TxRecord, View,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most transactions [`Ledger::verify_recent`] checks at start (when blocks are
/// full, fewer blocks than asked).
pub const START_VERIFY_MAX_TXS: usize = 8192;

impl Ledger {
    /// Re-checks the whole stored ledger: every block's height, link to its
    /// parent, chain, difficulty, merkle root and proof of work; every
    /// transaction re-executed from genesis must give the outcome recorded for
    /// it; the balances and tip the node serves must be what the chain gives.
    /// The first disagreement is a [`LedgerError::Corruption`] naming the
    /// block height. Costs one pass over the history (O(accounts) memory).
    /// Safe while the node applies: it checks the state as of its start (a
    /// cut, like a snapshot's), and blocks and records up to there never change.
    pub fn verify(&self) -> Result<VerifyReport, LedgerError> {
        use std::sync::atomic::Ordering;
        let installs = self.installs.load(Ordering::SeqCst);
        match self.verify_cut() {
            Err(LedgerError::Corruption { .. })
                if installs % 2 == 1 || self.installs.load(Ordering::SeqCst) != installs =>
            {
                Err(LedgerError::VerifyInterrupted)
            }
            other => other,
        }
    }

    /// Makes any verification in progress end at its next block.
    pub fn stop_verifying(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn verify_cut(&self) -> Result<VerifyReport, LedgerError> {
        let started = std::time::Instant::now();
        let corrupt = |height: u64, reason: String| LedgerError::Corruption { height, reason };
        let cut = self.cut();
        let mut book = Book::new(Arc::clone(&self.keys));
        let mut report = VerifyReport::default();
        let mut prev: Option<(Hash32, u64)> = None;
        for stored in self.stored_blocks(cut.height) {
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(LedgerError::VerifyStopped);
            }
            let height = report.blocks;
            let (key_height, v) = stored?;
            if key_height != height {
                return Err(corrupt(
                    height,
                    format!("block {height} is missing (next stored: {key_height})"),
                ));
            }
            let block: Block = decode(&v, || format!("block {height}"))
                .map_err(|e| corrupt(height, format!("block does not decode: {e}")))?;
            if block.height() != height {
                return Err(corrupt(height, format!("block says height {}", block.height())));
            }
            let hash = self.verify_block(&block, prev)?;
            self.verify_transactions(&block, hash, Some(&mut book), &mut report)?;
            prev = Some((hash, block.header.timestamp_ms));
            report.blocks += 1;
        }
        let tip_height = report.blocks.saturating_sub(1);
        let prev = prev.map(|(hash, _)| hash);
        if prev != Some(cut.tip_hash) || cut.height != tip_height {
            return Err(corrupt(
                tip_height,
                format!(
                    "the ledger's tip is {} at height {}, but its chain ends at height {tip_height} with {:?}",
                    cut.tip_hash, cut.height, prev
                ),
            ));
        }
        let balances = &book.balances;
        let served: BTreeMap<AccountId, Amount> = cut.balances.into_iter().collect();
        if let Some((account, served)) = served.iter().find(|(a, b)| balances.get(a) != Some(b)) {
            return Err(corrupt(
                tip_height,
                format!(
                    "balance of account {account} is {served} in the ledger, but the chain gives {:?}",
                    balances.get(account)
                ),
            ));
        }
        if let Some(account) = balances.keys().find(|a| !served.contains_key(a)) {
            return Err(corrupt(
                tip_height,
                format!("account {account} is missing from the ledger"),
            ));
        }
        if let Some((account, info)) = cut
            .registry
            .accounts
            .iter()
            .find(|(a, i)| book.registry.accounts.get(a) != Some(i))
        {
            return Err(corrupt(
                tip_height,
                format!(
                    "account {account} is {info:?} in the ledger, but the chain gives {:?}",
                    book.registry.accounts.get(account)
                ),
            ));
        }
        if let Some(account) = book
            .registry
            .accounts
            .keys()
            .find(|a| !cut.registry.accounts.contains_key(a))
        {
            return Err(corrupt(
                tip_height,
                format!("the entry of account {account} is missing from the ledger"),
            ));
        }
        if cut.registry.supply != book.registry.supply {
            return Err(corrupt(
                tip_height,
                format!(
                    "the supply is {:?} in the ledger, but the chain gives {:?}",
                    cut.registry.supply, book.registry.supply
                ),
            ));
        }
        if let Some((key, hold)) = cut
            .registry
            .holds
            .iter()
            .find(|(k, h)| book.registry.holds.get(k) != Some(**h))
        {
            return Err(corrupt(
                tip_height,
                format!("{key} is {hold:?} in the ledger, but the chain does not hold it so"),
            ));
        }
        if let Some((key, _)) = book
            .registry
            .holds
            .iter()
            .find(|(k, _)| cut.registry.holds.get(k).is_none())
        {
            return Err(corrupt(
                tip_height,
                format!("{key} is pending by the chain, but missing from the ledger"),
            ));
        }
        self.check_digest(tip_height)?;
        report.tip_height = tip_height;
        report.tip_hash = cut.tip_hash;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The check a node runs at every start, whose cost does not grow with
    /// history: the last `blocks` blocks (all if 0: then it is [`Ledger::verify`]),
    /// or fewer once they hold `max_txs` transactions (at least the tip
    /// block; nodes use [`START_VERIFY_MAX_TXS`]), are checked for height, link, chain, merkle
    /// root, proof of work, signatures and records; the balances were
    /// already checked against their digest when the ledger was opened.
    /// `bank-server verify` re-executes everything.
    pub fn verify_recent(&self, blocks: u64, max_txs: usize) -> Result<VerifyReport, LedgerError> {
        if blocks == 0 {
            return self.verify();
        }
        let started = std::time::Instant::now();
        let (tip_height, tip_hash) = self.tip();
        self.check_digest(tip_height)?;
        let corrupt = |height: u64, reason: String| LedgerError::Corruption { height, reason };
        // Signatures cost ~40 us each: full blocks of 4,096 would make the
        // check of 64 blocks take seconds, so it stops at a transaction budget.
        let read = |height: u64| {
            self.block(height)
                .map_err(|e| corrupt(height, format!("block does not decode: {e}")))?
                .ok_or_else(|| corrupt(height, "block is missing".into()))
        };
        // The window, newest first, each block read once.
        let mut window = Vec::new();
        let mut first = tip_height;
        let mut txs = 0usize;
        loop {
            let block = read(first)?;
            // A set's items count one each: each is a signature to check.
            txs += block.txs.iter().map(|t| t.items().len()).sum::<usize>();
            window.push(block);
            if first == 0 || window.len() as u64 >= blocks || txs >= max_txs {
                break;
            }
            first -= 1;
        }
        let mut prev = match first {
            0 => None,
            h => {
                let parent = read(h - 1)?;
                Some((parent.hash(), parent.header.timestamp_ms))
            }
        };
        let mut report = VerifyReport::default();
        for block in window.iter().rev() {
            let hash = self.verify_block(block, prev)?;
            self.verify_transactions(block, hash, None, &mut report)?;
            prev = Some((hash, block.header.timestamp_ms));
            report.blocks += 1;
        }
        if prev.map(|(hash, _)| hash) != Some(tip_hash) {
            return Err(corrupt(
                tip_height,
                format!("the ledger's tip {tip_hash} is not its last block"),
            ));
        }
        report.tip_height = tip_height;
        report.tip_hash = tip_hash;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Checks one stored block against its parent's hash and time (`None`
    /// for block 0: then its hash must be the chain id); returns its hash.
    fn verify_block(&self, block: &Block, prev: Option<(Hash32, u64)>) -> Result<Hash32, LedgerError> {
        let height = block.height();
        let corrupt = |reason: String| LedgerError::Corruption { height, reason };
        let hash = match prev {
            None => block.verify_contents().map_err(|e| corrupt(e.to_string()))?,
            Some((p, parent_ms)) => block
                .verify_extends(self.chain_id, self.difficulty, height.saturating_sub(1), p)
                .and_then(|hash| block.verify_time_after(parent_ms).map(|()| hash))
                .map_err(|e| corrupt(e.to_string()))?,
        };
        if prev.is_none() && (height != 0 || hash != self.chain_id) {
            return Err(corrupt(format!(
                "genesis block hash {hash} is not the chain id {}",
                self.chain_id
            )));
        }
        // Blocks up to here hold genesis's unsigned transfers: they must be
        // the file's own blocks.
        if height == self.genesis_tip.0 && hash != self.genesis_tip.1 {
            return Err(corrupt(format!(
                "block {height} is not the genesis file's last block {}",
                self.genesis_tip.1
            )));
        }
        Ok(hash)
    }

    fn check_digest(&self, tip_height: u64) -> Result<(), LedgerError> {
        if self.digest_mismatch.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(LedgerError::Corruption {
                height: tip_height,
                reason: "the stored balances do not match their digest: a balance was changed outside the ledger \
                         (`bank-server verify` names the account)"
                    .into(),
            });
        }
        Ok(())
    }

    /// The keys each transaction of `block` was checked under, from the
    /// state before it (`book`), or, without it, from today's state: then a
    /// transaction whose signer's key was set at or after `block` (opened
    /// or rotated since) cannot be told, and is `None`.
    fn keys_at(&self, block: &Block, book: Option<&Book>) -> Vec<Option<Option<PublicKey>>> {
        if let Some(book) = book {
            return self.keys_for(book, &block.txs).into_iter().map(Some).collect();
        }
        let height = block.height();
        self.with_state(|s| {
            let now = self.book(s);
            block
                .txs
                .iter()
                .map(|tx| match tx.signer() {
                    Some(Signer::Account(a)) => match now.account(a) {
                        Some(info) if info.key_height >= height => None,
                        info => Some(info.map(|i| i.public_key)),
                    },
                    Some(role) => Some(now.key_of(role)),
                    None => Some(None),
                })
                .collect()
        })
    }

    /// Re-executes one block's transactions (the first occurrence of each id)
    /// on `book` (the state before the block) and compares each outcome with
    /// its stored record; without `book`, checks admissions and records only.
    fn verify_transactions(
        &self,
        block: &Block,
        hash: Hash32,
        mut book: Option<&mut Book>,
        report: &mut VerifyReport,
    ) -> Result<(), LedgerError> {
        let height = block.height();
        let corrupt = |reason: String| LedgerError::Corruption { height, reason };
        let mut seen_here: std::collections::HashSet<TxKey> = std::collections::HashSet::new();
        let mut settled_here: std::collections::HashMap<TxKey, TxRecord> = std::collections::HashMap::new();
        let block_ms = block.header.timestamp_ms;
        let at = rules::At { height, block_ms };
        let signed = height > self.genesis_tip.0;
        if let (Some(b), true) = (book.as_deref_mut(), signed) {
            rules::release_due(b, block_ms);
        }
        let keys = self.keys_at(block, book.as_deref());
        // Transactions whose key cannot be told are left out, and checked
        // by the full replay.
        let known: Vec<bool> = keys.iter().map(Option::is_some).collect();
        let keys: Vec<Option<PublicKey>> = keys.into_iter().map(Option::flatten).collect();
        // Each transaction's admission as apply decides it: in time, then signed.
        let verdicts: Vec<Result<(), String>> = block
            .txs
            .iter()
            .zip(self.authorize_block(block, &keys))
            .map(|(tx, signature)| {
                if !signed {
                    return Ok(());
                }
                rules::check_expiry(tx, block_ms)
                    .map_err(|e| e.to_string())
                    .and(signature.map_err(|e| e.to_string()))
            })
            .collect();
        // What this block's admitted transactions may have recorded.
        let admitted: std::collections::HashSet<(TxKey, Hash32)> = block
            .txs
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.is_ok())
            // A set's items are checked as it is, and may have run.
            .flat_map(|(tx, _)| tx.items())
            .filter_map(|tx| Some((tx.key()?, tx.content_hash())))
            .collect();
        // A set's items are checked under the keys before the block, as
        // apply checks them, and an id its refused copy names may be
        // another copy's in this block.
        let set_keys: Vec<Option<Vec<Option<PublicKey>>>> = block
            .txs
            .iter()
            .map(|tx| match (tx, book.as_deref()) {
                (Transaction::Set { items }, Some(b)) => Some(self.item_keys(b, items)),
                _ => None,
            })
            .collect();
        let mut copies: std::collections::HashMap<TxKey, usize> = std::collections::HashMap::new();
        if block.txs.iter().any(|tx| matches!(tx, Transaction::Set { .. })) {
            for key in block
                .txs
                .iter()
                .flat_map(Transaction::items)
                .filter_map(Transaction::key)
            {
                *copies.entry(key).or_default() += 1;
            }
        }
        for (i, ((tx, verdict), known)) in block.txs.iter().zip(verdicts).zip(known).enumerate() {
            if let Transaction::Set { items } = tx {
                report.transfers += items
                    .iter()
                    .filter(|i| matches!(i, Transaction::Transfer { .. }))
                    .count() as u64;
                let here = Here {
                    block,
                    hash,
                    at,
                    signed,
                    copies: &copies,
                };
                let book = book.as_deref_mut().zip(set_keys[i].as_deref());
                self.verify_set(tx, items, &here, book, &mut seen_here, &mut settled_here)?;
                continue;
            }
            if matches!(tx, Transaction::Transfer { .. }) {
                report.transfers += 1;
            }
            if !known {
                continue;
            }
            if let Err(e) = verdict {
                // Refused as it was applied, claiming no id: a record of
                // it executed here is damage.
                // A record of its id at this height must then be another
                // copy's in this block; one naming another block means the
                // block was edited.
                if let Some(key) = tx.key() {
                    if let Some(r) = self.tx_record(&key)?.filter(|r| r.height == height) {
                        let copy_executed = admitted.contains(&(key.clone(), r.tx_hash));
                        if r.block_hash != hash || !copy_executed {
                            return Err(corrupt(format!(
                                "transaction {key} is recorded as executed here, but the block's copy fails: {e}"
                            )));
                        }
                    }
                }
                continue;
            }
            let Some(id) = tx.key() else {
                // An allocation: it opens an account in block 0, and is
                // refused (changing nothing) anywhere else, as apply does.
                if let (Some(b), 0) = (book.as_deref_mut(), height) {
                    rules::apply(b, tx, at).map_err(|e| corrupt(format!("allocation fails: {e}")))?;
                }
                continue;
            };
            let rec = self
                .tx_record(&id)?
                .ok_or_else(|| corrupt(format!("transaction {id} has no record")))?;
            // Later copies of an id (retries, conflicts) were not executed.
            if rec.height != height || !seen_here.insert(id.clone()) {
                if rec.height > height {
                    return Err(corrupt(format!(
                        "transaction {id} is recorded at later height {}",
                        rec.height
                    )));
                }
                continue;
            }
            if rec.tx_hash != tx.content_hash() || rec.block_hash != hash {
                return Err(corrupt(format!(
                    "the record of transaction {id} does not match the block"
                )));
            }
            let Some(b) = book.as_deref_mut() else {
                continue;
            };
            let mut outcome = rules::apply(b, tx, at);
            if let (Err(RejectReason::UnknownHold { .. }), Some(hold)) = (&outcome, tx.settles()) {
                // The records before this transaction: earlier blocks', and
                // this block's settlements so far.
                let before = |k: &TxKey| -> Result<Option<TxRecord>, LedgerError> {
                    if let Some(r) = settled_here.get(k) {
                        return Ok(Some(r.clone()));
                    }
                    Ok(self.tx_record(k)?.filter(|r| r.height < height))
                };
                outcome = Err(holds::why_not_pending(&hold, &before)?);
            }
            if let (Ok(_), Some(hold)) = (&outcome, tx.settles()) {
                let key = holds::settlement_key(&hold);
                if self.tx_record(&key)?.as_ref() != Some(&rec) {
                    return Err(corrupt(format!("{hold} is settled by {id} but not recorded so")));
                }
                settled_here.insert(key, rec.clone());
            }
            if outcome != rec.outcome {
                return Err(corrupt(format!(
                    "transaction {id} re-executes to {outcome:?} but is recorded as {:?}",
                    rec.outcome
                )));
            }
        }
        Ok(())
    }
}

/// The block a transaction under audit is in.
struct Here<'a> {
    block: &'a Block,
    hash: Hash32,
    at: rules::At,
    signed: bool,
    /// How many times each id stands in the block, set items included.
    copies: &'a std::collections::HashMap<TxKey, usize>,
}

impl Ledger {
    /// Re-checks one transfer set of a block as apply ran it: admitted
    /// alike (under its items' keys before the block, given with `book`),
    /// and if it ran, re-run on `book` (the state before it) to the
    /// records its items left; without `book`, that records it claims as
    /// run here are its own.
    fn verify_set(
        &self,
        set: &Transaction,
        items: &[Transaction],
        here: &Here<'_>,
        book: Option<(&mut Book, &[Option<PublicKey>])>,
        seen_here: &mut std::collections::HashSet<TxKey>,
        settled_here: &mut std::collections::HashMap<TxKey, TxRecord>,
    ) -> Result<(), LedgerError> {
        let height = here.block.height();
        let corrupt = |reason: String| LedgerError::Corruption { height, reason };
        let Some((book, keys)) = book else {
            for item in items {
                let Some(key) = item.key() else { continue };
                if let Some(r) = self.tx_record(&key)?.filter(|r| r.height == height) {
                    if r.block_hash != here.hash {
                        return Err(corrupt(format!(
                            "the record of transaction {key} does not match the block"
                        )));
                    }
                }
            }
            return Ok(());
        };
        // Records before this set: earlier blocks', and this block's so far.
        let before = |k: &TxKey| -> Result<Option<TxRecord>, LedgerError> {
            if let Some(r) = settled_here.get(k) {
                return Ok(Some(r.clone()));
            }
            let r = self.tx_record(k)?;
            Ok(r.filter(|r| r.height < height || seen_here.contains(k)))
        };
        let admission = self.admit_set(set, items, here.block.header.timestamp_ms, here.signed, keys, &before)?;
        match admission {
            super::sets::Admission::Duplicate(_) => Ok(()),
            super::sets::Admission::Refused(reason) => {
                for item in items {
                    let Some(key) = item.key() else { continue };
                    let claimed = self
                        .tx_record(&key)?
                        .is_some_and(|r| r.height == height && r.block_hash == here.hash);
                    // Unless another copy of the id in this block claimed it.
                    let alone = here.copies.get(&key).is_none_or(|n| *n <= 1);
                    if claimed && alone && !seen_here.contains(&key) {
                        return Err(corrupt(format!(
                            "transaction {key} is recorded as run here, but its transfer set is refused: {reason}"
                        )));
                    }
                }
                Ok(())
            }
            super::sets::Admission::Run => {
                let outcome = super::sets::run_set(book, items, here.at, &before)?;
                for (key, want) in super::sets::item_records(items, &outcome, height, here.hash) {
                    if self.tx_record(&key)?.as_ref() != Some(&want) {
                        return Err(corrupt(format!(
                            "transfer set item {key} re-executes to {:?} but is recorded otherwise",
                            want.outcome
                        )));
                    }
                    if matches!(key.signer, Signer::Settled(_)) {
                        settled_here.insert(key, want);
                    } else {
                        seen_here.insert(key);
                    }
                }
                Ok(())
            }
        }
    }
}

/// What [`Ledger::verify`] checked.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub blocks: u64,
    pub transfers: u64,
    pub tip_height: u64,
    pub tip_hash: Hash32,
    pub elapsed: std::time::Duration,
}

impl VerifyReport {
    /// "N blocks, M transfers verified in T ms (X blocks/s, Y transfers/s)".
    pub fn describe(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "{} blocks, {} transfers verified in {} ms ({:.0} blocks/s, {:.0} transfers/s); tip {} at height {}",
            self.blocks,
            self.transfers,
            self.elapsed.as_millis(),
            self.blocks as f64 / secs,
            self.transfers as f64 / secs,
            self.tip_hash,
            self.tip_height
        )
    }
}
