//! What the chaos clients submit: every kind of money movement the ledger
//! has (transfers, holds and their posts and voids, issues and redeems),
//! each signed with the public dev key of its signer, and what each does to
//! the balances once committed, as the checker counts it on its own.

use super::Outcome;
use crate::client::{call_any, expiry_in, request, signed_transfer_until, Server, DEFAULT_LIFETIME};
use crate::ledger::{AccountKey, Hash32, Signature, Signer, Transaction, TxId};
use crate::proto::bank::bank_client::BankClient;
use crate::proto::bank::{SubmitRequest, TransferRequest};
use std::time::Duration;
use tonic::transport::Channel;

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

/// How often each kind of write is chosen, by weight: transfer, hold,
/// post, void, issue, redeem. A post or void settles one of the client's
/// own acknowledged holds; without one, a transfer is made instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 6],
}

/// The kinds a [`Mix`] names, in the order of its weights.
pub const MIX_KINDS: [&str; 6] = ["transfer", "hold", "post", "void", "issue", "redeem"];

impl Default for Mix {
    /// Half transfers; the rest holds, their settlements (some holds are
    /// left to their timeout), issues and redeems.
    fn default() -> Mix {
        Mix {
            weights: [50, 14, 7, 5, 12, 12],
        }
    }
}

/// A hold a client placed and saw acknowledged: id, from, to, amount.
pub type PlacedHold = (String, u64, u64, u64);

impl Mix {
    /// Only transfers.
    pub const TRANSFERS: Mix = Mix {
        weights: [1, 0, 0, 0, 0, 0],
    };

    /// `all` ([`Mix::default`]), or `KIND=WEIGHT,...` over [`MIX_KINDS`]
    /// (unnamed kinds weigh 0), e.g. `transfer=80,hold=10,post=10`.
    pub fn parse(s: &str) -> Result<Mix, String> {
        if s.trim() == "all" {
            return Ok(Mix::default());
        }
        let mut weights = [0u32; 6];
        for part in s.split(',') {
            let (kind, w) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not KIND=WEIGHT (kinds: {})", MIX_KINDS.join(", ")))?;
            let i = MIX_KINDS
                .iter()
                .position(|k| *k == kind.trim())
                .ok_or_else(|| format!("unknown kind {kind:?}: expected one of {}", MIX_KINDS.join(", ")))?;
            weights[i] = w
                .trim()
                .parse()
                .map_err(|_| format!("weight {w:?} of {kind} is not a whole number"))?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err("every weight is 0: nothing to send".into());
        }
        if weights[0] + weights[1] + weights[4] + weights[5] == 0 {
            return Err("posts and voids need holds to settle: give hold a weight".into());
        }
        Ok(Mix { weights })
    }

    /// The next write among `accounts` accounts: a post or void takes one of
    /// `holds` (this client's acknowledged holds).
    pub fn next(&self, rng: &mut impl rand::Rng, accounts: u64, holds: &mut Vec<PlacedHold>) -> OpKind {
        let from = rng.gen_range(0..accounts);
        let to = (from + rng.gen_range(1..accounts)) % accounts;
        let amount = rng.gen_range(1..=30);
        let total: u32 = self.weights.iter().sum();
        let mut pick = rng.gen_range(0..total.max(1));
        let kind = self
            .weights
            .iter()
            .position(|w| {
                let here = pick < *w;
                pick = pick.saturating_sub(*w);
                here
            })
            .unwrap_or(0);
        match kind {
            1 => OpKind::Hold {
                from,
                to,
                amount,
                // Short enough that some end at their timeout within a run.
                timeout_ms: rng.gen_range(300..4_000),
            },
            2 | 3 if !holds.is_empty() => {
                let (hold_id, from, to, held) = holds.swap_remove(rng.gen_range(0..holds.len()));
                if kind == 2 {
                    OpKind::Post {
                        hold_id,
                        from,
                        to,
                        amount: rng.gen_range(1..=held.max(1)),
                    }
                } else {
                    OpKind::Void { hold_id, from, to }
                }
            }
            4 => OpKind::Issue {
                account: from,
                amount: rng.gen_range(1..=50),
            },
            5 => OpKind::Redeem {
                account: from,
                amount: rng.gen_range(1..=20),
                by_owner: rng.gen_bool(0.5),
            },
            _ => OpKind::Transfer { from, to, amount },
        }
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

/// A signed operation as the client API carries it.
#[derive(Debug, Clone)]
pub enum SignedRequest {
    Transfer(TransferRequest),
    Submit(SubmitRequest),
}

impl OpKind {
    /// The operation as id `id`, signed with its signer's dev key for
    /// chain `chain`, valid until `expires_ms`.
    pub fn signed(&self, id: &str, chain: Hash32, expires_ms: u64) -> Result<SignedRequest, String> {
        let tx_id = TxId::new(id).map_err(|e| e.to_string())?;
        if let &OpKind::Transfer { from, to, amount } = self {
            let key = AccountKey::dev(from);
            return Ok(SignedRequest::Transfer(signed_transfer_until(
                &key, chain, &tx_id, to, amount, expires_ms,
            )));
        }
        let mut tx = self.transaction(tx_id, expires_ms).map_err(|e| e.to_string())?;
        let signer = tx.signer().ok_or("unsigned operation")?;
        tx.set_signature(dev_key(signer).sign(chain, &tx));
        crate::ops::submit_request(&tx)
            .map(SignedRequest::Submit)
            .ok_or_else(|| format!("{} has no Submit request", tx.kind()))
    }
}

/// Sends `req` through `c`: a transfer by `Transfer`, the rest by `Submit`.
pub async fn send(
    mut c: BankClient<Channel>,
    req: SignedRequest,
    timeout: Duration,
) -> Result<crate::proto::bank::TxReply, tonic::Status> {
    Ok(match req {
        SignedRequest::Transfer(m) => c.transfer(request(m, timeout)).await?.into_inner(),
        SignedRequest::Submit(m) => c.submit(request(m, timeout)).await?.into_inner(),
    })
}

/// Submits `op`, signed anew (a fresh expiry: a resubmission is the same
/// transaction) for chain `chain`; returns its outcome and, if committed,
/// the height of its block.
pub async fn submit(servers: &[Server], op: &Op, chain: Hash32, timeout: Duration) -> (Outcome, Option<u64>) {
    let req = match op.kind.signed(&op.id, chain, expiry_in(DEFAULT_LIFETIME)) {
        Ok(r) => r,
        Err(e) => return (Outcome::Failed(e), None),
    };
    let result = call_any(servers, timeout, |c, t| send(c, req.clone(), t)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_mix_is_parsed_by_kind_and_refused_with_the_reason() {
        assert_eq!(Mix::parse("all"), Ok(Mix::default()));
        assert_eq!(Mix::parse("transfer=1"), Ok(Mix::TRANSFERS));
        let err = |s: &str| Mix::parse(s).unwrap_err();
        assert!(err("transfer=1,swap=2").contains("unknown kind \"swap\""));
        assert!(err("transfer").contains("is not KIND=WEIGHT"));
        assert!(err("hold=x").contains("not a whole number"));
        assert!(err("transfer=0").contains("every weight is 0"));
        assert!(err("post=3,void=1").contains("need holds"));
    }

    #[test]
    fn a_mix_chooses_by_weight_and_settles_only_acknowledged_holds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mix = Mix::parse("hold=1,post=1").unwrap();
        let mut holds: Vec<PlacedHold> = Vec::new();
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..400 {
            let kind = mix.next(&mut rng, 5, &mut holds);
            if let OpKind::Hold { from, to, amount, .. } = kind {
                holds.push((format!("h{i}"), from, to, amount));
            }
            if let OpKind::Post {
                amount, ref hold_id, ..
            } = kind
            {
                assert!(hold_id.starts_with('h') && amount >= 1);
            }
            *seen.entry(kind.name()).or_insert(0) += 1;
        }
        // Posts take holds one each; with none left a transfer stands in.
        assert!(seen["hold"] > 150 && seen["post"] > 100, "{seen:?}");
        assert_eq!(seen.get("void"), None);
        assert_eq!(seen["hold"], seen["post"] + holds.len(), "{seen:?}");
    }
}
