//! Transfers, one or a batch: parsed here, signatures checked on the
//! leader (a batch's off the async workers, one batch per core), then
//! handed to the block producer; each answered with its committed outcome.

use super::errors::auth_status;
use super::forward::Attempt;
use super::BankApi;
use crate::ledger::keys::AuthError;
use crate::ledger::{Transaction, TxId, TxRecord};
use crate::ops::BadOp;
use crate::producer::SubmitError;
use crate::proto::bank::{TransferBatchReply, TransferBatchRequest, TransferRequest, TransferResult, TxReply};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Most transfers one `TransferBatch` request may carry.
pub const MAX_BATCH_TRANSFERS: usize = 8192;

/// How often a batch's retryable transfers are resubmitted on the leader.
const BATCH_RETRIES: usize = 3;

/// Batches that may wait for a signature-check core beyond those being
/// checked: bounds the memory held by waiting batches (up to 8,192
/// transfers each) while letting a burst of big batches queue instead of
/// being refused.
pub(super) const MAX_SIGNATURE_WAITERS: usize = 32;

pub(super) async fn transfer(api: &BankApi, req: Request<TransferRequest>) -> Result<Response<TxReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Transfer);
    crate::timeline::mark(crate::timeline::Point::TransferIn);
    let (msg, via) = api.received(req)?;
    let tx = crate::ops::transfer_of(&msg).map_err(|e| {
        crate::stats::refused("invalid_request");
        Status::invalid_argument(e.to_string())
    })?;
    let id = tx.id().cloned().unwrap_or_else(TxId::random);
    let reply = api
        .on_leader(via, &msg, || async {
            // The leader checks the signature before anything is
            // proposed, so a bad one takes no space in a block; followers
            // only forward. Every node checks again as it applies.
            api.authorize_on_leader(&tx).await?;
            Ok(tx_reply(&api.commit(tx.clone()).await?, &id))
        })
        .await?;
    crate::timeline::mark(crate::timeline::Point::TransferOut);
    Ok(Response::new(reply))
}

pub(super) async fn transfer_batch(
    api: &BankApi,
    req: Request<TransferBatchRequest>,
) -> Result<Response<TransferBatchReply>, Status> {
    let _timer = crate::stats::RequestTimer::start(crate::stats::Method::TransferBatch);
    let (msg, via) = api.received(req)?;
    if msg.transfers.len() > MAX_BATCH_TRANSFERS {
        return Err(Status::invalid_argument(format!(
            "batch of {} transfers exceeds the limit of {MAX_BATCH_TRANSFERS}",
            msg.transfers.len()
        )));
    }
    let txs = msg
        .transfers
        .iter()
        .map(crate::ops::transfer_of)
        .collect::<Result<Vec<_>, BadOp>>()
        .map_err(|e| {
            crate::stats::refused("invalid_request");
            Status::invalid_argument(format!("{e} (in batch)"))
        })?;
    let reply = api.on_leader(via, &msg, || api.commit_batch(&txs)).await?;
    Ok(Response::new(reply))
}

impl BankApi {
    /// False only in a test build told to act as a rogue leader.
    pub(super) fn checks_before_proposing(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        if self.parts.propose_unchecked {
            return false;
        }
        true
    }

    /// Commits a batch's transfers together; each gets its own result.
    /// Transfers refused only because leadership moved or a block went stale
    /// are resubmitted a few times before being reported as not committed.
    pub(super) async fn commit_batch(&self, txs: &[Transaction]) -> Result<TransferBatchReply, Attempt> {
        let mut results: Vec<Option<TransferResult>> = vec![None; txs.len()];
        let mut pending: Vec<usize> = Vec::with_capacity(txs.len());
        for (i, auth) in self.authorize_all(txs).await?.into_iter().enumerate() {
            match auth {
                Ok(()) => pending.push(i),
                Err(e) => {
                    let id = txs[i].id().map(TxId::to_string).unwrap_or_default();
                    results[i] = Some(failed_result(id, &auth_status(&e)));
                }
            }
        }
        let mut last_retry = String::new();
        for _ in 0..BATCH_RETRIES {
            // Nothing left to propose (an empty batch, or every transfer
            // refused): answer now, not as a leader change to retry.
            if pending.is_empty() {
                break;
            }
            let outcomes =
                futures::future::join_all(pending.iter().map(|&i| self.parts.producer.submit(txs[i].clone()))).await;
            if outcomes.iter().all(|o| matches!(o, Err(SubmitError::NotLeader(_)))) {
                return Err(Attempt::NotLeader("leadership changed".into()));
            }
            let mut again = Vec::new();
            for (i, outcome) in pending.into_iter().zip(outcomes) {
                let id = txs[i].id().map(TxId::to_string).unwrap_or_default();
                results[i] = match outcome {
                    Ok(rec) => Some(TransferResult {
                        tx_id: id,
                        code: tonic::Code::Ok as u32,
                        error: String::new(),
                        height: rec.height,
                        block_hash: rec.block_hash.to_hex(),
                    }),
                    Err(SubmitError::NotLeader(_) | SubmitError::Retry(_)) => {
                        again.push(i);
                        None
                    }
                    Err(e) => {
                        let status = match Attempt::from(e) {
                            Attempt::Done(s) => s,
                            Attempt::NotLeader(m) | Attempt::Retry(m) => Status::unavailable(m),
                        };
                        Some(failed_result(id, &status))
                    }
                };
            }
            if again.is_empty() {
                break;
            }
            last_retry = format!("{} transfers were not committed after a leader change", again.len());
            pending = again;
        }
        let unknown = Status::unavailable(format!("not committed ({last_retry}): resubmit the same id"));
        Ok(TransferBatchReply {
            results: results
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    r.unwrap_or_else(|| failed_result(txs[i].id().map(TxId::to_string).unwrap_or_default(), &unknown))
                })
                .collect(),
        })
    }

    /// Checks every transfer's signature (~20 us each in batches), off the async
    /// workers, one batch per core at a time: a full batch holds thousands.
    /// A batch waits for a core until its request's deadline (the caller's
    /// timeout ends the wait); only when [`MAX_SIGNATURE_WAITERS`] batches
    /// already wait is it refused at once.
    async fn authorize_all(&self, txs: &[Transaction]) -> Result<Vec<Result<(), AuthError>>, Attempt> {
        if txs.len() <= 16 {
            return Ok(self.parts.ledger.authorize_many(txs));
        }
        let overloaded = || {
            crate::stats::refused("overloaded");
            Attempt::Done(Status::resource_exhausted(
                "busy checking other batches' signatures; retry",
            ))
        };
        let _queued = Arc::clone(&self.signature_queue)
            .try_acquire_owned()
            .map_err(|_| overloaded())?;
        let slot = Arc::clone(&self.signature_slots)
            .acquire_owned()
            .await
            .map_err(|_| overloaded())?;
        let ledger = Arc::clone(&self.parts.ledger);
        let txs = txs.to_vec();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            ledger.authorize_many(&txs)
        })
        .await
        .map_err(|e| Attempt::Done(Status::internal(format!("signature check failed: {e}"))))
    }

    pub(super) async fn commit(&self, tx: Transaction) -> Result<TxRecord, Attempt> {
        self.parts.producer.submit(tx).await.map_err(Attempt::from)
    }
}

fn failed_result(tx_id: String, status: &Status) -> TransferResult {
    TransferResult {
        tx_id,
        code: status.code() as u32,
        error: status.message().to_string(),
        height: 0,
        block_hash: String::new(),
    }
}

pub(super) fn tx_reply(record: &TxRecord, id: &TxId) -> TxReply {
    TxReply {
        tx_id: id.to_string(),
        height: record.height,
        block_hash: record.block_hash.to_hex(),
        balance: record.outcome.as_ref().ok().and_then(|a| a.balance).unwrap_or(0),
    }
}
