//! Transfer sets in a block: admitted (valid as a set, every item in time
//! and signed over the set's digest, every id new) and then executed all
//! or nothing. One code path for the apply, the leader's pre-check, the
//! rebuild of views and the audit, so they cannot disagree.
//!
//! Records: each item's id gets its own record, the outcome of the item
//! (the set's refusal for every item of a refused set), and a settled
//! hold its settlement record, as a lone post or void leaves. The set,
//! which has no id, is answered and shown by its first item's record.

use super::holds::{self, Earlier};
use super::{Ledger, LedgerError};
use crate::ledger::rules::{self, Applied, At, Books};
use crate::ledger::{keys, Hash32, PublicKey, RejectReason, Transaction, TxKey, TxRecord};

/// What a transfer set in a block comes to before it runs.
pub(crate) enum Admission {
    /// Refused before running (not a valid set, an item out of time or
    /// not signed, an id used before): claims no id.
    Refused(RejectReason),
    /// Executed before, in an earlier block (or earlier in this one):
    /// the set's first record.
    Duplicate(TxRecord),
    /// To run now.
    Run,
}

/// The record that stands for a set whose first item has `first`, and
/// whose own content hash is `tx_hash`: a post's amount is its item's.
pub(crate) fn set_record(tx_hash: Hash32, first: &TxRecord) -> TxRecord {
    TxRecord {
        tx_hash,
        height: first.height,
        block_hash: first.block_hash,
        outcome: first.outcome.clone().map(|_| Applied { balance: None }),
    }
}

/// Wraps `reason`, item `i`'s (from 0), as the set's refusal.
fn in_set(items: &[Transaction], i: usize, reason: RejectReason) -> RejectReason {
    RejectReason::InSet {
        item: i as u32 + 1,
        id: items[i].id().cloned().unwrap_or_else(crate::ledger::TxId::random),
        reason: Box::new(reason),
    }
}

impl Ledger {
    /// The key each item's signer had in `view`.
    pub(crate) fn item_keys(&self, view: &impl rules::View, items: &[Transaction]) -> Vec<Option<PublicKey>> {
        items
            .iter()
            .map(|tx| tx.signer().and_then(|s| view.key_of(s)))
            .collect()
    }

    /// Whether the set `set` (with `items`) in a block of time `block_ms`
    /// runs, under the item keys `keys` (as before the block), with
    /// `earlier` telling each id's first record before it. `signed`: past
    /// the blocks genesis defines.
    pub(crate) fn admit_set(
        &self,
        set: &Transaction,
        items: &[Transaction],
        block_ms: u64,
        signed: bool,
        keys: &[Option<PublicKey>],
        earlier: &Earlier<'_>,
    ) -> Result<Admission, LedgerError> {
        if let Err(reason) = rules::check_set(items) {
            return Ok(Admission::Refused(reason));
        }
        let mut first: Vec<Option<TxRecord>> = Vec::with_capacity(items.len());
        for item in items {
            first.push(match item.key() {
                Some(key) => earlier(&key)?,
                None => None,
            });
        }
        // Every item recorded, each with its own content: this set ran,
        // and is answered so whatever its copy's expiry and signatures
        // (as a lone transaction's resubmission is).
        let same = items
            .iter()
            .zip(&first)
            .all(|(item, r)| r.as_ref().is_some_and(|r| r.tx_hash == item.content_hash()));
        if let (true, Some(Some(r))) = (same, first.first()) {
            return Ok(Admission::Duplicate(set_record(set.content_hash(), r)));
        }
        if signed {
            for (i, item) in items.iter().enumerate() {
                if let Err(reason) = rules::check_expiry(item, block_ms) {
                    return Ok(Admission::Refused(in_set(items, i, reason)));
                }
            }
            let verdicts = keys::verify_set_items(self.chain_id, items, keys);
            if let Some(i) = verdicts.iter().position(Result::is_err) {
                let signer = items[i].signer().unwrap_or(crate::ledger::Signer::Account(0));
                return Ok(Admission::Refused(in_set(
                    items,
                    i,
                    RejectReason::Unauthorized { signer },
                )));
            }
        }
        if let Some(i) = first.iter().position(Option::is_some) {
            let id = items[i].id().cloned().unwrap_or_else(crate::ledger::TxId::random);
            let height = first[i].as_ref().map_or(0, |r| r.height);
            return Ok(Admission::Refused(in_set(
                items,
                i,
                RejectReason::IdUsed { id, height },
            )));
        }
        Ok(Admission::Run)
    }
}

/// Runs an admitted set's items on `books`, all or none: each item's
/// outcome, or the set's refusal. A post or void of a hold that is not
/// pending is told why, from `earlier` (the records before the set), as
/// a lone one is.
pub(crate) fn run_set(
    books: &mut (impl Books + ?Sized),
    items: &[Transaction],
    at: At,
    earlier: &Earlier<'_>,
) -> Result<Result<Vec<Applied>, RejectReason>, LedgerError> {
    match rules::apply_set(books, items, at) {
        Ok(applied) => Ok(Ok(applied)),
        Err(RejectReason::InSet { item, id, reason }) => {
            let i = (item as usize).saturating_sub(1);
            let reason = match (*reason, items.get(i).and_then(Transaction::settles)) {
                (RejectReason::UnknownHold { .. }, Some(hold)) => holds::why_not_pending(&hold, earlier)?,
                (other, _) => other,
            };
            Ok(Err(RejectReason::InSet {
                item,
                id,
                reason: Box::new(reason),
            }))
        }
        Err(other) => Ok(Err(other)),
    }
}

/// The records a set that ran at `height` in block `hash` leaves: each
/// item's under its key, and each hold it settled under the hold's.
pub(crate) fn item_records(
    items: &[Transaction],
    outcome: &Result<Vec<Applied>, RejectReason>,
    height: u64,
    hash: Hash32,
) -> Vec<(TxKey, TxRecord)> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(key) = item.key() else { continue };
        let rec = TxRecord {
            tx_hash: item.content_hash(),
            height,
            block_hash: hash,
            outcome: match outcome {
                Ok(applied) => Ok(applied.get(i).copied().unwrap_or(Applied { balance: None })),
                Err(reason) => Err(reason.clone()),
            },
        };
        out.push((key, rec.clone()));
        if let (Some(hold), true) = (item.settles(), rec.outcome.is_ok()) {
            out.push((holds::settlement_key(&hold), rec));
        }
    }
    out
}
