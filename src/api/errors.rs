//! How the ledger's refusals map to gRPC statuses, each counted by reason
//! in the metrics.

use crate::ledger::keys::{AuthError, SignatureError};
use crate::ledger::{RejectReason, Signer};
use tonic::Status;

/// The gRPC status for a transaction its signer may not make.
pub fn auth_status(e: &AuthError) -> Status {
    match e {
        // reject_status counts this refusal itself.
        AuthError::UnknownSigner(Signer::Account(account)) => {
            return reject_status(&RejectReason::UnknownAccount { account: *account });
        }
        AuthError::UnknownSigner(
            Signer::Auditor(_) | Signer::Registrar(_) | Signer::Issuer(_) | Signer::Holds(_) | Signer::Settled(_),
        )
        | AuthError::Signature(_)
        | AuthError::NoVerdict => crate::stats::refused("bad_signature"),
        AuthError::NotAnItem(_) => crate::stats::refused("bad_set"),
    }
    match e {
        AuthError::Signature(SignatureError::BadKey { .. }) => Status::failed_precondition(e.to_string()),
        AuthError::NotAnItem(_) => Status::invalid_argument(e.to_string()),
        _ => Status::unauthenticated(e.to_string()),
    }
}

/// The gRPC status for a rule a transaction broke.
pub fn reject_status(reason: &RejectReason) -> Status {
    // A set's refusal is its failing item's, in the metrics and the code.
    let mut inner = reason;
    while let RejectReason::InSet { reason, .. } = inner {
        inner = reason;
    }
    crate::stats::refused(match inner {
        RejectReason::ZeroAmount => "zero_amount",
        RejectReason::SameAccount { .. } => "same_account",
        RejectReason::UnknownAccount { .. } => "unknown_account",
        RejectReason::InsufficientFunds { .. } => "insufficient_funds",
        RejectReason::Overflow { .. } => "overflow",
        RejectReason::IdConflict { .. } => "id_conflict",
        RejectReason::AllocationOutsideGenesis => "invalid_request",
        RejectReason::Unauthorized { .. } => "bad_signature",
        RejectReason::Expired { .. } | RejectReason::ExpiresTooLate { .. } => "expired",
        RejectReason::AccountExists { .. } => "account_exists",
        RejectReason::AccountFrozen { .. } => "account_frozen",
        RejectReason::AccountClosed { .. } => "account_closed",
        RejectReason::AlreadyInState { .. } => "already_in_state",
        RejectReason::CloseWithMoney { .. } => "close_with_money",
        RejectReason::TooManyAccounts => "too_many_accounts",
        RejectReason::BadKey { .. } => "bad_key",
        RejectReason::SupplyOverflow => "overflow",
        RejectReason::BadHoldTimeout { .. } => "bad_hold_timeout",
        RejectReason::TooManyHolds => "too_many_holds",
        RejectReason::UnknownHold { .. } => "unknown_hold",
        RejectReason::HoldSettled { .. } => "hold_settled",
        RejectReason::NotHoldReceiver { .. } => "not_hold_receiver",
        RejectReason::PostAboveHeld { .. } => "post_above_held",
        RejectReason::CloseWithHolds { .. } => "close_with_holds",
        RejectReason::BadSet { .. } => "bad_set",
        RejectReason::IdUsed { .. } => "id_conflict",
        RejectReason::InSet { .. } => "other",
    });
    let msg = reason.to_string();
    match inner {
        RejectReason::ZeroAmount | RejectReason::SameAccount { .. } | RejectReason::AllocationOutsideGenesis => {
            Status::invalid_argument(msg)
        }
        RejectReason::UnknownAccount { .. } => Status::not_found(msg),
        RejectReason::InsufficientFunds { .. }
        | RejectReason::Overflow { .. }
        | RejectReason::SupplyOverflow
        | RejectReason::AccountFrozen { .. }
        | RejectReason::AccountClosed { .. }
        | RejectReason::AlreadyInState { .. }
        | RejectReason::CloseWithMoney { .. }
        | RejectReason::CloseWithHolds { .. }
        | RejectReason::PostAboveHeld { .. }
        | RejectReason::HoldSettled { .. } => Status::failed_precondition(msg),
        RejectReason::BadKey { .. } | RejectReason::BadHoldTimeout { .. } => Status::invalid_argument(msg),
        RejectReason::UnknownHold { .. } => Status::not_found(msg),
        RejectReason::NotHoldReceiver { .. } => Status::permission_denied(msg),
        RejectReason::TooManyAccounts | RejectReason::TooManyHolds => Status::resource_exhausted(msg),
        RejectReason::IdConflict { .. } | RejectReason::IdUsed { .. } | RejectReason::AccountExists { .. } => {
            Status::already_exists(msg)
        }
        RejectReason::BadSet { .. } | RejectReason::InSet { .. } => Status::invalid_argument(msg),
        RejectReason::Unauthorized { .. } => Status::unauthenticated(msg),
        // Signed for another time: the caller must sign again.
        RejectReason::Expired { .. } | RejectReason::ExpiresTooLate { .. } => Status::failed_precondition(msg),
    }
}
