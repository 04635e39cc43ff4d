//! Linearizable reads: a balance, all balances at one applied index, a
//! transaction by id. Each runs on the leader behind its read barrier
//! ([`crate::raft::read_barrier`]); a transaction found on the contacted
//! node is committed for good and answered there.

use super::errors::reject_status;
use super::forward::Attempt;
use super::transfers::tx_reply;
use super::BankApi;
use crate::ledger::{RejectReason, Transaction, TxId};
use crate::proto::bank::{
    AccountBalance, BalanceReply, BalanceRequest, BalancesReply, BalancesRequest, GetTxRequest, JsonReply,
};
use tonic::{Request, Response, Status};

/// Most accounts one atomic `Balances` read returns: bounds the reply.
pub const MAX_ACCOUNTS_PER_READ: usize = 1_000_000;

pub(super) async fn balance(api: &BankApi, req: Request<BalanceRequest>) -> Result<Response<BalanceReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Balance);
    let (msg, via) = api.received(req)?;
    let account = msg.account;
    // A recorded check is a transaction: its id is fixed here, before any
    // forwarding or retry, so it is recorded at most once.
    let check = match (msg.record, msg.tx_id.is_empty()) {
        (false, _) => None,
        (true, true) => Some(TxId::random()),
        (true, false) => Some(TxId::new(msg.tx_id.clone()).map_err(|e| Status::invalid_argument(e.to_string()))?),
    };
    let fwd = BalanceRequest {
        tx_id: check.as_ref().map(TxId::to_string).unwrap_or_default(),
        ..msg
    };
    let reply = api
        .on_leader(via, &fwd, || async {
            let Some(id) = &check else {
                return api.linearizable_balance(account).await;
            };
            let tx = Transaction::BalanceCheck {
                id: id.clone(),
                account,
            };
            let r = tx_reply(&api.commit(tx).await?, id);
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
    if let Some(v) = api
        .parts
        .ledger
        .tx_json(&id)
        .map_err(|e| Status::data_loss(e.to_string()))?
    {
        return Ok(Response::new(JsonReply { json: v.to_string() }));
    }
    let reply = api
        .on_leader(via, &msg, || async {
            api.confirm_leadership().await?;
            match api.parts.ledger.tx_json(&id) {
                Ok(Some(v)) => Ok(JsonReply { json: v.to_string() }),
                Ok(None) => Err(Attempt::Done(Status::not_found(format!(
                    "no committed transaction {id} (leader node {} at height {})",
                    api.parts.id,
                    api.parts.ledger.tip().0
                )))),
                Err(e) => Err(Attempt::Done(Status::data_loss(e.to_string()))),
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
