//! The producer's pre-check: each transaction against the applied state,
//! the blocks in flight and the block so far, before it takes space in a
//! block.

use super::worker::{Slot, Worker};
use super::{Pending, SubmitError};
use crate::ledger::rules::{self, Balances};
use crate::ledger::{AccountId, Amount, RejectReason};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Balances as the next block will find them: applied state, then the
/// effects of blocks in flight.
struct Projected<'a> {
    applied: &'a BTreeMap<AccountId, Amount>,
    applied_height: u64,
    projected: &'a BTreeMap<AccountId, (u64, Amount)>,
    block: BTreeMap<AccountId, Amount>,
}

impl Balances for Projected<'_> {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        if let Some(v) = self.block.get(&account) {
            return Some(*v);
        }
        match self.projected.get(&account) {
            Some((h, v)) if *h > self.applied_height => Some(*v),
            _ => self.applied.get(&account).copied(),
        }
    }
    fn set_balance(&mut self, account: AccountId, amount: Amount) {
        self.block.insert(account, amount);
    }
}

impl Worker {
    /// Checks each transaction against the projected state plus the block so
    /// far: transactions no state could ever accept fail fast and never take
    /// space in a block; those refused for lack of funds are committed as
    /// refused, so the refusal is final. Answers duplicates of committed ids with their first outcome,
    /// and joins duplicates of ids in flight to their slot.
    pub(super) fn pre_check(
        &mut self,
        batch: Vec<Pending>,
        seq: u64,
        applied_height: u64,
        block_ms: u64,
    ) -> (Vec<Slot>, BTreeMap<AccountId, Amount>) {
        let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
        let ledger = Arc::clone(&self.ledger);
        let projected = std::mem::take(&mut self.projected);
        let changes = ledger.with_state(|state| {
            let mut view = Projected {
                applied: &state.balances,
                applied_height,
                projected: &projected,
                block: BTreeMap::new(),
            };
            for p in batch {
                let Some(key) = p.tx.key() else {
                    let _ = p
                        .reply
                        .send(Err(SubmitError::Rejected(RejectReason::AllocationOutsideGenesis)));
                    continue;
                };
                if let Some(&(s, i)) = self.pending_ids.get(&key) {
                    let same = if s == seq {
                        slots.get(i).map(|slot| slot.tx.content_hash() == p.tx.content_hash())
                    } else {
                        self.inflight
                            .iter()
                            .find(|b| b.seq == s)
                            .and_then(|b| b.slots.get(i))
                            .map(|slot| slot.tx.content_hash() == p.tx.content_hash())
                    };
                    match same {
                        Some(true) if s == seq => slots[i].replies.push(p.reply),
                        Some(true) => {
                            if let Some(slot) = self
                                .inflight
                                .iter_mut()
                                .find(|b| b.seq == s)
                                .and_then(|b| b.slots.get_mut(i))
                            {
                                slot.replies.push(p.reply);
                            }
                        }
                        _ => {
                            let _ = p
                                .reply
                                .send(Err(SubmitError::Rejected(RejectReason::IdConflict { id: key.id })));
                        }
                    }
                    continue;
                }
                match ledger.tx_record(&key) {
                    Ok(Some(first)) => {
                        let result = if first.tx_hash != p.tx.content_hash() {
                            Err(SubmitError::Rejected(RejectReason::IdConflict { id: key.id }))
                        } else {
                            match &first.outcome {
                                Ok(_) => Ok(first.clone()),
                                Err(reason) => Err(SubmitError::Rejected(reason.clone())),
                            }
                        };
                        let _ = p.reply.send(result);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = p.reply.send(Err(SubmitError::Fatal(e.to_string())));
                        continue;
                    }
                }
                // Out of time now is out of time in the block (its time is
                // block_ms): fail fast, as every node would refuse it.
                if let Err(reason) = rules::check_expiry(&p.tx, block_ms) {
                    let _ = p.reply.send(Err(SubmitError::Rejected(reason)));
                    continue;
                }
                match rules::apply(&mut view, &p.tx, false) {
                    // A refusal that no state can change is final at once.
                    Err(reason) if reason.is_permanent() => {
                        let _ = p.reply.send(Err(SubmitError::Rejected(reason)));
                    }
                    // Anything else goes into the block, refusals that depend
                    // on balances included: such a refusal is only final once
                    // it is committed under the id, or another copy of the
                    // same request, still queued somewhere, could later find
                    // the money there and commit after the caller was told no.
                    _ => {
                        self.pending_ids.insert(key, (seq, slots.len()));
                        slots.push(Slot {
                            tx: p.tx,
                            replies: vec![p.reply],
                        });
                    }
                }
            }
            view.block
        });
        self.projected = projected;
        (slots, changes)
    }
}
