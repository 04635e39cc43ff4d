//! What the chaos clients submit: every kind of money movement the ledger
//! has (transfers, holds and their posts and voids, issues and redeems),
//! each signed with the public dev key of its signer, and what each does to
//! the balances once committed, as the checker counts it on its own.

use super::Outcome;
use crate::client::{call_any, expiry_in, request, signed_transfer_until, Server, DEFAULT_LIFETIME};
use crate::ledger::{AccountKey, Hash32, Signature, Signer, Transaction, TxId};
use std::time::Duration;

/// The one issuer the chaos genesis names.
pub const ISSUER: u32 = 0;

/// One operation, without id, expiry or signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    Transfer {
        from: u64,
        to: u64,
        amount: u64,
    },
    Issue {
        account: u64,
        amount: u64,
    },
    /// By the issuer, or (`by_owner`) by the account's owner, as a withdrawal.
    Redeem {
        account: u64,
        amount: u64,
        by_owner: bool,
    },
    Hold {
        from: u64,
        to: u64,
        amount: u64,
        timeout_ms: u64,
    },
    Post {
        hold_id: String,
        from: u64,
        to: u64,
        amount: u64,
    },
    Void {
        hold_id: String,
        from: u64,
        to: u64,
    },
}

impl OpKind {
    /// The name `bank-chaos` reports counts by.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Transfer { .. } => "transfer",
            OpKind::Issue { .. } => "issue",
            OpKind::Redeem { .. } => "redeem",
            OpKind::Hold { .. } => "hold",
            OpKind::Post { .. } => "post",
            OpKind::Void { .. } => "void",
        }
    }

    /// The transaction, unsigned, valid until `expires_ms`.
    pub fn transaction(&self, id: TxId, expires_ms: u64) -> Result<Transaction, crate::ledger::TxIdError> {
        let signature = Signature::NONE;
        Ok(match self.clone() {
            OpKind::Transfer { from, to, amount } => Transaction::Transfer {
                id,
                from,
                to,
                amount,
                expires_ms,
                signature,
            },
            OpKind::Issue { account, amount } => Transaction::Issue {
                id,
                account,
                amount,
                issuer: ISSUER,
                expires_ms,
                signature,
            },
            OpKind::Redeem {
                account,
                amount,
                by_owner,
            } => Transaction::Redeem {
                id,
                account,
                amount,
                issuer: (!by_owner).then_some(ISSUER),
                expires_ms,
                signature,
            },
            OpKind::Hold {
                from,
                to,
                amount,
                timeout_ms,
            } => Transaction::Hold {
                id,
                from,
                to,
                amount,
                timeout_ms,
                expires_ms,
                signature,
            },
            OpKind::Post {
                hold_id,
                from,
                to,
                amount,
            } => Transaction::Post {
                id,
                hold_id: TxId::new(hold_id)?,
                from,
                to,
                amount,
                expires_ms,
                signature,
            },
            OpKind::Void { hold_id, from, to } => Transaction::Void {
                id,
                hold_id: TxId::new(hold_id)?,
                from,
                to,
                expires_ms,
                signature,
            },
        })
    }
}

/// One operation a client submitted, and what became of it.
#[derive(Debug, Clone)]
pub struct Op {
    /// Unique across the run, whatever the kind.
    pub id: String,
    pub kind: OpKind,
    pub outcome: Outcome,
    /// When the acknowledgement arrived (since the run began) and the
    /// height it named; `None` unless acknowledged during the run.
    pub acked: Option<(Duration, u64)>,
}

impl Op {
    /// The transaction as the chain holds it, signature and expiry aside.
    pub fn content_hash(&self) -> Option<Hash32> {
        let id = TxId::new(self.id.clone()).ok()?;
        Some(self.kind.transaction(id, 0).ok()?.content_hash())
    }
}

/// The dev key that signs for `signer`.
fn dev_key(signer: Signer) -> AccountKey {
    match signer {
        Signer::Account(a) => AccountKey::dev(a),
        role => AccountKey::dev_role(role),
    }
}

/// Submits `op`, signed anew (a fresh expiry: a resubmission is the same
/// transaction) for chain `chain`; returns its outcome and, if committed,
/// the height of its block.
pub async fn submit(servers: &[Server], op: &Op, chain: Hash32, timeout: Duration) -> (Outcome, Option<u64>) {
    let expires_ms = expiry_in(DEFAULT_LIFETIME);
    let tx = match TxId::new(op.id.clone()).and_then(|id| op.kind.transaction(id, expires_ms)) {
        Ok(tx) => tx,
        Err(e) => return (Outcome::Failed(e.to_string()), None),
    };
    let result = match (&op.kind, tx.signer()) {
        (&OpKind::Transfer { from, to, amount }, _) => {
            let id = tx.id().cloned().unwrap_or_else(TxId::random);
            let msg = signed_transfer_until(&AccountKey::dev(from), chain, &id, to, amount, expires_ms);
            call_any(servers, timeout, |mut c, t| {
                let msg = msg.clone();
                async move { Ok(c.transfer(request(msg, t)).await?.into_inner()) }
            })
            .await
        }
        (_, Some(signer)) => {
            let mut tx = tx;
            tx.set_signature(dev_key(signer).sign(chain, &tx));
            let Some(msg) = crate::ops::submit_request(&tx) else {
                return (Outcome::Failed(format!("{} has no Submit request", tx.kind())), None);
            };
            call_any(servers, timeout, |mut c, t| {
                let msg = msg.clone();
                async move { Ok(c.submit(request(msg, t)).await?.into_inner()) }
            })
            .await
        }
        (_, None) => return (Outcome::Failed("unsigned operation".into()), None),
    };
    (super::classify(&result), result.ok().map(|r| r.height))
}

/// What a committed transaction does to balances (not to what is held):
/// `(account, change)` pairs. Holds, voids and releases at a timeout move
/// no money; a post moves what it posts.
pub fn balance_changes(tx: &Transaction) -> Vec<(u64, i128)> {
    match *tx {
        Transaction::Transfer { from, to, amount, .. } | Transaction::Post { from, to, amount, .. } => {
            vec![(from, -i128::from(amount)), (to, i128::from(amount))]
        }
        Transaction::Issue { account, amount, .. } => vec![(account, i128::from(amount))],
        Transaction::Redeem { account, amount, .. } => vec![(account, -i128::from(amount))],
        _ => Vec::new(),
    }
}

/// [`balance_changes`] of `kind`, as the client asked for it.
pub fn op_balance_changes(kind: &OpKind) -> Vec<(u64, i128)> {
    match kind.transaction(TxId::random(), 0) {
        Ok(tx) => balance_changes(&tx),
        Err(_) => Vec::new(),
    }
}
