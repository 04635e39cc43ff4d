//! Linearizable reads: a balance, all balances at one applied index, a
//! transaction by id. Each runs on the leader behind its read barrier
//! ([`crate::raft::read_barrier`]); a transaction found on the contacted
//! node is committed for good and answered there.

use super::errors::reject_status;
use super::forward::Attempt;
use super::transfers::tx_reply;
use super::BankApi;
use crate::ledger::{RejectReason, Signature, Signer, Transaction, TxId};
use crate::proto::bank::{
    AccountBalance, BalanceReply, BalanceRequest, BalancesReply, BalancesRequest, GetTxRequest, JsonReply,
};
use crate::storage::TxLookup;
use tonic::{Request, Response, Status};

/// Most accounts one atomic `Balances` read returns: bounds the reply.
pub const MAX_ACCOUNTS_PER_READ: usize = 1_000_000;

pub(super) async fn balance(api: &BankApi, req: Request<BalanceRequest>) -> Result<Response<BalanceReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Balance);
    let (msg, via) = api.received(req)?;
    let account = msg.account;
    let check = if msg.record {
        Some(balance_check_of(&msg).map_err(|e| {
            crate::stats::refused("invalid_request");
            Status::invalid_argument(e)
        })?)
    } else {
        None
    };
    let reply = api
        .on_leader(via, &msg, || async {
            let Some(tx) = &check else {
                return api.linearizable_balance(account).await;
            };
            // Checked before proposing, like a transfer, and by every node
            // as it applies.
            api.authorize_on_leader(tx).await?;
            let id = tx.id().cloned().unwrap_or_else(TxId::random);
            let r = tx_reply(&api.commit(tx.clone()).await?, &id);
            Ok(BalanceReply {
                account,
                balance: r.balance,
                height: r.height,
                record: Some(r),
            })
        })
        .await?;
    Ok(Response::new(reply))
}

/// A recorded balance check as the request carries it: a signed
/// transaction, checked later by the leader.
fn balance_check_of(msg: &BalanceRequest) -> Result<Transaction, String> {
    if msg.tx_id.is_empty() {
        return Err("a recorded balance check needs a tx_id, an expiry and a signature (bank-client balance --record signs one)".into());
    }
    let id = TxId::new(msg.tx_id.clone()).map_err(|e| e.to_string())?;
    let signature = Signature::from_slice(&msg.signature).ok_or_else(|| {
        format!(
            "signature of balance check {id} is {} bytes; an ed25519 signature is 64",
            msg.signature.len()
        )
    })?;
    Ok(Transaction::BalanceCheck {
        id,
        account: msg.account,
        auditor: msg.auditor,
        expires_ms: msg.expires_ms,
        signature,
    })
}

pub(super) async fn balances(api: &BankApi, req: Request<BalancesRequest>) -> Result<Response<BalancesReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Balances);
    let (msg, via) = api.received(req)?;
    let reply = api.on_leader(via, &msg, || api.linearizable_balances()).await?;
    Ok(Response::new(reply))
}

/// A transaction this node holds is committed for good, so a hit here
/// is the answer. A miss may only mean this node has not applied, or
/// not yet heard of, a commit: it is answered by the leader after its
/// read barrier, so that a transaction acknowledged before the lookup
/// began is always found.
pub(super) async fn get_tx(api: &BankApi, req: Request<GetTxRequest>) -> Result<Response<JsonReply>, Status> {
    let (msg, via) = api.received(req)?;
    let id = TxId::new(msg.tx_id.clone()).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let signer = match (msg.account, msg.auditor) {
        (Some(_), Some(_)) => return Err(Status::invalid_argument("give an account or an auditor, not both")),
        (Some(a), None) => Some(Signer::Account(a)),
        (None, Some(i)) => Some(Signer::Auditor(i)),
        (None, None) => None,
    };
    let lookup = |ledger: &crate::storage::Ledger| match ledger.find_tx(&id, signer) {
        Ok(TxLookup::Found(v)) => Ok(Some(JsonReply { json: v.to_string() })),
        Ok(TxLookup::Missing) => Ok(None),
        Ok(TxLookup::Ambiguous(signers)) => {
            let names: Vec<String> = signers.iter().map(Signer::to_string).collect();
            Err(Status::failed_precondition(format!(
                "transaction id {id} is used by {}: say whose (bank-client tx ID --account N)",
                names.join(", ")
            )))
        }
        Err(e) => Err(Status::data_loss(e.to_string())),
    };
    if let Some(found) = lookup(&api.parts.ledger)? {
        return Ok(Response::new(found));
    }
    let reply = api
        .on_leader(via, &msg, || async {
            api.confirm_leadership().await?;
            match lookup(&api.parts.ledger).map_err(Attempt::Done)? {
                Some(found) => Ok(found),
                None => Err(Attempt::Done(Status::not_found(format!(
                    "no committed transaction {id}{} (leader node {} at height {})",
                    signer.map(|s| format!(" of {s}")).unwrap_or_default(),
                    api.parts.id,
                    api.parts.ledger.tip().0
                )))),
            }
        })
        .await?;
    Ok(Response::new(reply))
}

impl BankApi {
    /// Confirms with a quorum that this node still leads, and waits until the
    /// state machine has applied everything committed before now.
    pub(super) async fn confirm_leadership(&self) -> Result<(), Attempt> {
        Ok(self.parts.reads.confirm().await?)
    }

    async fn linearizable_balance(&self, account: u64) -> Result<BalanceReply, Attempt> {
        self.confirm_leadership().await?;
        match self.parts.ledger.balance(account) {
            Some((balance, height)) => Ok(BalanceReply {
                account,
                balance,
                height,
                record: None,
            }),
            None => Err(Attempt::Done(reject_status(&RejectReason::UnknownAccount { account }))),
        }
    }

    async fn linearizable_balances(&self) -> Result<BalancesReply, Attempt> {
        self.confirm_leadership().await?;
        self.parts.ledger.with_state(|s| {
            if s.balances.len() > MAX_ACCOUNTS_PER_READ {
                return Err(Attempt::Done(Status::resource_exhausted(format!(
                    "{} accounts exceed the {MAX_ACCOUNTS_PER_READ} one atomic read may return",
                    s.balances.len()
                ))));
            }
            Ok(BalancesReply {
                height: s.tip_height,
                tip_hash: s.tip_hash.to_hex(),
                applied_index: s.last_applied.map_or(0, |l| l.index),
                genesis_total: self.parts.ledger.genesis_total(),
                issued: s.registry.supply.issued,
                redeemed: s.registry.supply.redeemed,
                balances: s
                    .balances
                    .iter()
                    .map(|(a, b)| AccountBalance {
                        account: *a,
                        balance: *b,
                    })
                    .collect(),
            })
        })
    }
}
