//! The producer's pre-check: each transaction against the applied state,
//! the blocks in flight and the block so far, before it takes space in a
//! block.

use super::worker::{Slot, Worker};
use super::{Pending, SubmitError};
use crate::ledger::rules::{self, Changes, Overlay};
use crate::ledger::{
    AccountId, AccountInfo, AccountKeys, Amount, BookRef, Held, Hold, HoldKey, RejectReason, Supply, Transaction,
    TxKey, View,
};
use crate::storage::ledger::sets::Admission;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the blocks in flight change, each value with the height of the
/// block that set it.
#[derive(Default)]
pub(super) struct Projection {
    balances: BTreeMap<AccountId, (u64, Amount)>,
    accounts: BTreeMap<AccountId, (u64, AccountInfo)>,
    supply: Option<(u64, Supply)>,
    /// How many accounts each block in flight opens, by its height.
    opened: BTreeMap<u64, usize>,
    holds: BTreeMap<HoldKey, (u64, Option<Hold>)>,
    held: BTreeMap<AccountId, (u64, Held)>,
}

impl Projection {
    /// Adds what the block at `height` changes.
    pub(super) fn record(&mut self, height: u64, changes: Changes) {
        let opened = changes.accounts.values().filter(|i| i.opened_height == height).count();
        if opened > 0 {
            self.opened.insert(height, opened);
        }
        self.balances
            .extend(changes.balances.into_iter().map(|(a, b)| (a, (height, b))));
        self.accounts
            .extend(changes.accounts.into_iter().map(|(a, i)| (a, (height, i))));
        if let Some(s) = changes.supply {
            self.supply = Some((height, s));
        }
        self.holds
            .extend(changes.holds.into_iter().map(|(k, h)| (k, (height, h))));
        self.held
            .extend(changes.held.into_iter().map(|(a, h)| (a, (height, h))));
    }

    /// Forgets what blocks at or below `applied` set: the applied state has it.
    pub(super) fn retain_above(&mut self, applied: u64) {
        self.balances.retain(|_, (h, _)| *h > applied);
        self.accounts.retain(|_, (h, _)| *h > applied);
        self.supply = self.supply.filter(|(h, _)| *h > applied);
        self.opened.retain(|h, _| *h > applied);
        self.holds.retain(|_, (h, _)| *h > applied);
        self.held.retain(|_, (h, _)| *h > applied);
    }

    pub(super) fn clear(&mut self) {
        *self = Projection::default();
    }
}

/// The state the next block will find: applied state, then the effects of
/// blocks in flight.
struct Projected<'a> {
    applied: BookRef<'a>,
    applied_height: u64,
    projection: &'a Projection,
}

impl View for Projected<'_> {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        match self.projection.balances.get(&account) {
            Some((h, v)) if *h > self.applied_height => Some(*v),
            _ => self.applied.balance(account),
        }
    }
    fn account(&self, account: AccountId) -> Option<AccountInfo> {
        match self.projection.accounts.get(&account) {
            Some((h, v)) if *h > self.applied_height => Some(*v),
            _ => self.applied.account(account),
        }
    }
    fn supply(&self) -> Supply {
        match self.projection.supply {
            Some((h, s)) if h > self.applied_height => s,
            _ => self.applied.supply(),
        }
    }
    fn account_count(&self) -> usize {
        let opened: usize = self
            .projection
            .opened
            .range(self.applied_height + 1..)
            .map(|(_, n)| n)
            .sum();
        self.applied.account_count() + opened
    }
    fn genesis(&self) -> &AccountKeys {
        self.applied.genesis
    }
    fn hold(&self, key: &HoldKey) -> Option<Hold> {
        match self.projection.holds.get(key) {
            Some((h, v)) if *h > self.applied_height => *v,
            _ => self.applied.hold(key),
        }
    }
    fn held(&self, account: AccountId) -> Held {
        match self.projection.held.get(&account) {
            Some((h, v)) if *h > self.applied_height => *v,
            _ => self.applied.held(account),
        }
    }
    /// The applied count: the limit is the apply's to enforce, and a
    /// refusal for it is never final here.
    fn pending_holds(&self) -> usize {
        self.applied.pending_holds()
    }
    /// None: the pre-check does not release holds. Releases only make
    /// money available, and every refusal they could turn is one the
    /// pre-check leaves to the block (not final).
    fn due_holds(&self, _block_ms: u64) -> Vec<HoldKey> {
        Vec::new()
    }
}

impl Worker {
    /// Joins `p` to the copy of id `key` in flight (in this block, `seq`,
    /// or one proposed) if it is the same request, or refuses it if it
    /// is another under the same id; gives it back if the id is not in
    /// flight.
    fn join_in_flight(&mut self, key: &TxKey, seq: u64, slots: &mut [Slot], p: Pending) -> Result<(), Pending> {
        let Some(&(s, i)) = self.pending_ids.get(key) else {
            return Err(p);
        };
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
                let _ = p.reply.send(Err(SubmitError::Rejected(RejectReason::IdConflict {
                    id: key.id.clone(),
                })));
            }
        }
        Ok(())
    }

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
        height: u64,
        block_ms: u64,
    ) -> (Vec<Slot>, Changes) {
        let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
        let ledger = Arc::clone(&self.ledger);
        let projected = std::mem::take(&mut self.projected);
        let changes = ledger.with_state(|state| {
            let projected_state = Projected {
                applied: ledger.book(state),
                applied_height,
                projection: &projected,
            };
            // The block so far, over the projected state.
            let mut view = Overlay::new(&projected_state);
            for p in batch {
                if let Transaction::Set { items } = &p.tx {
                    // One copy in flight per set: joined by its first item's id.
                    let keys: Vec<TxKey> = items.iter().filter_map(Transaction::key).collect();
                    let p = match keys.first() {
                        Some(first) => match self.join_in_flight(first, seq, &mut slots, p) {
                            Ok(()) => continue,
                            Err(p) => p,
                        },
                        None => p,
                    };
                    if let Some(k) = keys.iter().find(|k| self.pending_ids.contains_key(k)) {
                        let reason = RejectReason::IdConflict { id: k.id.clone() };
                        let _ = p.reply.send(Err(SubmitError::Rejected(reason)));
                        continue;
                    }
                    let Transaction::Set { items } = &p.tx else { continue };
                    // The keys apply will check under: the applied state's
                    // (a key set in a block in flight signs from the next).
                    let item_keys = ledger.item_keys(&ledger.book(state), items);
                    let earlier = |k: &TxKey| ledger.tx_record(k);
                    let reply = match ledger.admit_set(&p.tx, items, block_ms, true, &item_keys, &earlier) {
                        Err(e) => Err(SubmitError::Fatal(e.to_string())),
                        Ok(Admission::Refused(reason)) => Err(SubmitError::Rejected(reason)),
                        Ok(Admission::Duplicate(first)) => match &first.outcome {
                            Ok(_) => Ok(first.clone()),
                            Err(reason) => Err(SubmitError::Rejected(reason.clone())),
                        },
                        Ok(Admission::Run) => match rules::apply(&mut view, &p.tx, rules::At { height, block_ms }) {
                            Err(reason) if reason.is_permanent() => Err(SubmitError::Rejected(reason)),
                            _ => {
                                for k in keys {
                                    self.pending_ids.insert(k, (seq, slots.len()));
                                }
                                slots.push(Slot {
                                    tx: p.tx,
                                    replies: vec![p.reply],
                                });
                                continue;
                            }
                        },
                    };
                    let _ = p.reply.send(reply);
                    continue;
                }
                let Some(key) = p.tx.key() else {
                    let _ = p
                        .reply
                        .send(Err(SubmitError::Rejected(RejectReason::AllocationOutsideGenesis)));
                    continue;
                };
                let p = match self.join_in_flight(&key, seq, &mut slots, p) {
                    Ok(()) => continue,
                    Err(p) => p,
                };
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
                match rules::apply(&mut view, &p.tx, rules::At { height, block_ms }) {
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
            view.into_changes()
        });
        self.projected = projected;
        (slots, changes)
    }
}
