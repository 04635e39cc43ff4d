//! Accounts and the money supply: the `Submit` call (open, freeze,
//! unfreeze, close, rotate a key; issue, redeem), each a signed transaction
//! that goes through the block producer like a transfer, and the `Account`
//! read.

use super::errors::{auth_status, reject_status};
use super::forward::Attempt;
use super::transfers::tx_reply;
use super::BankApi;
use crate::ledger::{RejectReason, Transaction, TxId, View};
use crate::proto::bank::{AccountReply, AccountRequest, SubmitRequest, SubmitSetRequest, TxReply};
use tonic::{Request, Response, Status};

pub(super) async fn submit(api: &BankApi, req: Request<SubmitRequest>) -> Result<Response<TxReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Submit);
    let (msg, via) = api.received(req)?;
    let tx = crate::ops::transaction_of(&msg).map_err(|e| {
        crate::stats::refused("invalid_request");
        Status::invalid_argument(e.to_string())
    })?;
    let id = tx.id().cloned().unwrap_or_else(TxId::random);
    let reply = api
        .on_leader(via, &msg, || async {
            api.authorize_on_leader(&tx).await?;
            Ok(tx_reply(&api.commit(tx.clone()).await?, &id))
        })
        .await?;
    Ok(Response::new(reply))
}

/// A transfer set: checked whole by the leader's pre-check and by every
/// node as it applies, like one transaction.
pub(super) async fn submit_set(api: &BankApi, req: Request<SubmitSetRequest>) -> Result<Response<TxReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Submit);
    let (msg, via) = api.received(req)?;
    let tx = crate::ops::set_of(&msg).map_err(|e| {
        crate::stats::refused("invalid_request");
        Status::invalid_argument(e.to_string())
    })?;
    let id = tx
        .items()
        .first()
        .and_then(Transaction::id)
        .cloned()
        .unwrap_or_else(TxId::random);
    let reply = api
        .on_leader(via, &msg, || async {
            Ok(tx_reply(&api.commit(tx.clone()).await?, &id))
        })
        .await?;
    Ok(Response::new(reply))
}

pub(super) async fn account(api: &BankApi, req: Request<AccountRequest>) -> Result<Response<AccountReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Account);
    let (msg, via) = api.received(req)?;
    let account = msg.account;
    let reply = api
        .on_leader(via, &msg, || async {
            api.confirm_leadership().await?;
            let ledger = &api.parts.ledger;
            ledger.with_state(|s| {
                let book = ledger.book(s);
                let unknown = || Attempt::Done(reject_status(&RejectReason::UnknownAccount { account }));
                let balance = book.balance(account).ok_or_else(unknown)?;
                let info = book.account(account).ok_or_else(unknown)?;
                let held = book.held(account).out;
                Ok(AccountReply {
                    account,
                    balance,
                    held,
                    available: balance.saturating_sub(held),
                    public_key: info.public_key.to_hex(),
                    state: info.state.to_string(),
                    opened_height: info.opened_height,
                    height: s.tip_height,
                })
            })
        })
        .await?;
    Ok(Response::new(reply))
}

impl BankApi {
    /// Checks `tx`'s signature on the leader, before anything is proposed
    /// (every node checks again as it applies). A key opened or rotated in
    /// a block that is committed but not yet applied here is not known to
    /// the check yet: on a miss the leader waits until it has applied all
    /// that is committed, and checks once more.
    pub(super) async fn authorize_on_leader(&self, tx: &Transaction) -> Result<(), Attempt> {
        if !self.checks_before_proposing() || self.parts.ledger.authorize(tx).is_ok() {
            return Ok(());
        }
        self.confirm_leadership().await?;
        self.parts
            .ledger
            .authorize(tx)
            .map_err(|e| Attempt::Done(auth_status(&e)))
    }
}
