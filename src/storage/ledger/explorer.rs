//! Reads for people and the explorer: a block as JSON, a transaction by
//! id, an account's history. Each read is bounded: the history walks at
//! most [`HISTORY_MAX_BLOCKS`] blocks and [`HISTORY_MAX_TXS`] transactions
//! per call.

use super::{Ledger, LedgerError};
use crate::ledger::{AccountId, HoldEnd, HoldKey, RejectReason, Signer, Transaction, TxId, TxKey};
use crate::storage::views;

/// What a lookup of a transaction by id found.
#[derive(Debug)]
pub enum TxLookup {
    Found(serde_json::Value),
    Missing,
    /// Several signers used the id (the first few of them): the caller
    /// must say whose.
    Ambiguous(Vec<Signer>),
}

/// Most blocks one [`Ledger::account_history`] call reads.
pub const HISTORY_MAX_BLOCKS: u64 = 2048;
/// Most transactions one [`Ledger::account_history`] call reads (whole
/// blocks; at least one): full blocks hold thousands each.
pub const HISTORY_MAX_TXS: usize = 65_536;

impl Ledger {
    /// A stored block as its `chain.jsonl` line (without the newline).
    pub fn block_json(&self, height: u64) -> Result<Option<String>, LedgerError> {
        let Some(block) = self.block(height)? else {
            return Ok(None);
        };
        let records = self.records_of(&block)?;
        let mut line = views::block_line(&block, block.hash(), &records);
        line.pop();
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    /// A committed transaction by id, among `signer`'s ids if given (an
    /// account's holds' too), else among those of the one signer that used
    /// it. Settlement records are their post's or void's, found by theirs.
    pub fn find_tx(&self, id: &TxId, signer: Option<Signer>) -> Result<TxLookup, LedgerError> {
        let key = match signer {
            Some(Signer::Account(a)) => {
                let own = TxKey {
                    signer: Signer::Account(a),
                    id: id.clone(),
                };
                let hold = TxKey {
                    signer: Signer::Holds(a),
                    id: id.clone(),
                };
                match self.tx_record(&own)? {
                    None if self.tx_record(&hold)?.is_some() => hold,
                    _ => own,
                }
            }
            Some(signer) => TxKey { signer, id: id.clone() },
            None => {
                let mut found = self.tx_records_of_id(id, 8)?;
                found.retain(|(s, _)| !matches!(s, Signer::Settled(_)));
                match found.as_slice() {
                    [] => return Ok(TxLookup::Missing),
                    [(signer, _)] => TxKey {
                        signer: *signer,
                        id: id.clone(),
                    },
                    _ => return Ok(TxLookup::Ambiguous(found.into_iter().map(|(s, _)| s).collect())),
                }
            }
        };
        Ok(self.tx_json(&key)?.map_or(TxLookup::Missing, TxLookup::Found))
    }

    /// A committed transaction: where it is and what became of it.
    pub fn tx_json(&self, key: &TxKey) -> Result<Option<serde_json::Value>, LedgerError> {
        let Some(rec) = self.tx_record(key)? else {
            return Ok(None);
        };
        // An item of a transfer set is shown with its place in the set.
        let mut in_set = None;
        let tx = self.block(rec.height)?.and_then(|b| {
            b.txs.into_iter().find_map(|t| {
                let n = t.items().len();
                let found = t
                    .items()
                    .iter()
                    .position(|i| i.key().as_ref() == Some(key) && i.content_hash() == rec.tx_hash)?;
                if matches!(t, Transaction::Set { .. }) {
                    in_set = Some(serde_json::json!({"item": found + 1, "items": n}));
                }
                t.items().get(found).cloned()
            })
        });
        let result = views::TxResultView::of(&rec, rec.height);
        let mut v = serde_json::json!({
            "tx_id": key.id,
            "signer": key.signer,
            "height": rec.height,
            "block_hash": rec.block_hash,
            "status": result.status,
            "reason": result.reason,
            "balance": result.balance,
            "tx": tx,
        });
        if let Some(set) = in_set {
            v["set"] = set;
        }
        if let (Signer::Holds(from), true) = (key.signer, rec.outcome.is_ok()) {
            v["hold"] = self.hold_json(&HoldKey {
                from,
                id: key.id.clone(),
            })?;
        }
        Ok(Some(v))
    }

    /// Where a placed hold stands: `{"state":"pending","to","amount",
    /// "deadline_ms"}`, `{"state":"posted","amount","height"}`,
    /// `{"state":"voided","height"}` or `{"state":"released"}` (at its timeout).
    fn hold_json(&self, hold: &HoldKey) -> Result<serde_json::Value, LedgerError> {
        if let Some(h) = self.with_state(|s| s.registry.holds.get(hold)) {
            return Ok(serde_json::json!({
                "state": "pending", "to": h.to, "amount": h.amount, "deadline_ms": h.deadline_ms,
            }));
        }
        let before = |k: &TxKey| self.tx_record(k);
        Ok(match super::holds::why_not_pending(hold, &before)? {
            RejectReason::HoldSettled { end, .. } => match end {
                HoldEnd::Posted { amount, height } => {
                    serde_json::json!({"state": "posted", "amount": amount, "height": height})
                }
                HoldEnd::Voided { height } => serde_json::json!({"state": "voided", "height": height}),
                HoldEnd::Expired => serde_json::json!({"state": "released"}),
            },
            other => serde_json::json!({"state": "unknown", "reason": other.to_string()}),
        })
    }

    /// The transactions touching `account` (as source, destination or
    /// audited account), newest first, from blocks below `before` (default:
    /// all). Without an index this walks blocks backwards, so the walk is
    /// bounded: whole blocks until at least `limit` entries, and at most
    /// [`HISTORY_MAX_BLOCKS`] blocks and [`HISTORY_MAX_TXS`] transactions
    /// per call; `next_before` says where to go on (absent once block 0 was
    /// read).
    pub fn account_history(
        &self,
        account: AccountId,
        limit: usize,
        before: Option<u64>,
    ) -> Result<serde_json::Value, LedgerError> {
        self.account_history_within(account, limit, before, HISTORY_MAX_TXS)
    }

    /// [`Ledger::account_history`] with its own transaction budget.
    pub(crate) fn account_history_within(
        &self,
        account: AccountId,
        limit: usize,
        before: Option<u64>,
        max_txs: usize,
    ) -> Result<serde_json::Value, LedgerError> {
        let (tip, _) = self.tip();
        if before == Some(0) {
            return Ok(serde_json::json!({
                "account": account,
                "balance": self.balance(account).map(|(b, _)| b),
                "entries": [],
                "next_before": null,
            }));
        }
        let start = before.map_or(tip, |b| (b - 1).min(tip));
        let mut entries = Vec::new();
        let mut h = start;
        let mut scanned = 0u64;
        let mut scanned_txs = 0usize;
        let mut next_before = None;
        loop {
            if scanned == HISTORY_MAX_BLOCKS || scanned_txs >= max_txs || entries.len() >= limit {
                next_before = Some(h + 1);
                break;
            }
            let Some(block) = self.block(h)? else { break };
            scanned += 1;
            scanned_txs += block.txs.len();
            let hash = block.hash();
            // Each copy's own outcome, as apply gave it: a forged copy
            // beside its signed twin is shown refused, not as the twin.
            let records = self.records_of(&block)?;
            for (tx, rec) in block.txs.iter().zip(&records).rev() {
                let touches = tx.accounts().contains(&account);
                // A later copy of an id (a retry) was not executed again.
                if !touches || rec.height != h {
                    continue;
                }
                let v = views::TxResultView::of(rec, h);
                let (status, reason, balance) = (v.status, v.reason, v.balance);
                entries.push(serde_json::json!({
                    "height": h, "block_hash": hash, "status": status, "reason": reason,
                    "balance": balance, "tx": tx,
                }));
            }
            if h == 0 {
                break;
            }
            h -= 1;
        }
        Ok(serde_json::json!({
            "account": account,
            "balance": self.balance(account).map(|(b, _)| b),
            "entries": entries,
            "next_before": next_before,
        }))
    }
}
