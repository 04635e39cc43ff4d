//! How the ledger's refusals map to gRPC statuses, each counted by reason
//! in the metrics.

use crate::ledger::keys::{SignatureError, TransferAuthError};
use crate::ledger::RejectReason;
use tonic::Status;

/// The gRPC status for a transfer its signer may not make.
pub fn auth_status(e: &TransferAuthError) -> Status {
    match e {
        // reject_status counts this refusal itself.
        TransferAuthError::UnknownAccount(account) => {
            return reject_status(&RejectReason::UnknownAccount { account: *account });
        }
        TransferAuthError::Signature(_) => crate::stats::refused("bad_signature"),
    }
    match e {
        TransferAuthError::Signature(SignatureError::BadKey { .. }) => Status::failed_precondition(e.to_string()),
        _ => Status::unauthenticated(e.to_string()),
    }
}

/// The gRPC status for a rule a transaction broke.
pub fn reject_status(reason: &RejectReason) -> Status {
    crate::stats::refused(match reason {
        RejectReason::ZeroAmount => "zero_amount",
        RejectReason::SameAccount { .. } => "same_account",
        RejectReason::UnknownAccount { .. } => "unknown_account",
        RejectReason::InsufficientFunds { .. } => "insufficient_funds",
        RejectReason::Overflow { .. } => "overflow",
        RejectReason::IdConflict { .. } => "id_conflict",
        RejectReason::AllocationOutsideGenesis => "invalid_request",
        RejectReason::Unauthorized { .. } => "bad_signature",
    });
    let msg = reason.to_string();
    match reason {
        RejectReason::ZeroAmount | RejectReason::SameAccount { .. } | RejectReason::AllocationOutsideGenesis => {
            Status::invalid_argument(msg)
        }
        RejectReason::UnknownAccount { .. } => Status::not_found(msg),
        RejectReason::InsufficientFunds { .. } | RejectReason::Overflow { .. } => Status::failed_precondition(msg),
        RejectReason::IdConflict { .. } => Status::already_exists(msg),
        RejectReason::Unauthorized { .. } => Status::unauthenticated(msg),
    }
}
