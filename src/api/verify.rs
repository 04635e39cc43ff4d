//! `Verify`: the node re-checks its whole stored chain, one pass at a time,
//! at background priority.

use super::BankApi;
use crate::proto::bank::{VerifyReply, VerifyRequest};
use crate::storage::LedgerError;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub(super) async fn verify(api: &BankApi, req: Request<VerifyRequest>) -> Result<Response<VerifyReply>, Status> {
    // A full re-execution costs a core for minutes on a long chain: a
    // control-plane call, like faults and membership.
    crate::auth::authorize_control(api.parts.admin_token.as_ref(), &req)?;
    let one_at_a_time = Arc::clone(&api.verifying)
        .try_acquire_owned()
        .map_err(|_| Status::resource_exhausted("a verification is already running on this node; try again later"))?;
    let ledger = Arc::clone(&api.parts.ledger);
    // An audit reads all of history; at background priority it takes
    // the CPU live transfers leave, and all of it on an idle node.
    let report = crate::storage::state_machine::in_background("verify", move || {
        let report = ledger.verify();
        drop(one_at_a_time);
        report
    })
    .await
    .map_err(|e| Status::internal(format!("verification stopped: {e}")))?
    .map_err(|e| match e {
        LedgerError::Corruption { .. } => Status::data_loss(e.to_string()),
        LedgerError::VerifyInterrupted | LedgerError::VerifyStopped => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    })?;
    Ok(Response::new(VerifyReply {
        blocks: report.blocks,
        transfers: report.transfers,
        tip_height: report.tip_height,
        tip_hash: report.tip_hash.to_hex(),
        elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
    }))
}
