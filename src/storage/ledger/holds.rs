//! Holds on disk and in the records: a pending hold is a versioned entry
//! ([`super::registry`]) until it ends; a post or void that settles one
//! leaves, besides its own record, a copy under the hold's id among the
//! sender's settlements ([`Signer::Settled`]), so every node refuses a
//! second settlement alike and names the first. A hold released at its
//! timeout leaves no record: it is pending no more, and nothing settled it.

use super::LedgerError;
use crate::ledger::{HoldEnd, HoldKey, RejectReason, Signer, TxKey, TxRecord};

/// Where a hold's placement is recorded.
pub(crate) fn placement_key(hold: &HoldKey) -> TxKey {
    TxKey {
        signer: Signer::Holds(hold.from),
        id: hold.id.clone(),
    }
}

/// Where the settlement of a hold is recorded.
pub(crate) fn settlement_key(hold: &HoldKey) -> TxKey {
    TxKey {
        signer: Signer::Settled(hold.from),
        id: hold.id.clone(),
    }
}

/// What looking up a record before the transaction at hand gives: the
/// first apply of the key in an earlier block or earlier in this one.
pub(crate) type Earlier<'a> = dyn Fn(&TxKey) -> Result<Option<TxRecord>, LedgerError> + 'a;

/// Why `hold`, which a post or void names, is not pending: settled
/// before (the settlement's record says how), released at its timeout
/// (it was placed and nothing settled it), or never placed.
/// Deterministic on every node: it reads only records of the blocks
/// before the transaction.
pub(crate) fn why_not_pending(hold: &HoldKey, earlier: &Earlier<'_>) -> Result<RejectReason, LedgerError> {
    let settled = |end| RejectReason::HoldSettled {
        account: hold.from,
        id: hold.id.clone(),
        end,
    };
    if let Some(first) = earlier(&settlement_key(hold))? {
        let end = match first.outcome {
            Ok(crate::ledger::Applied { balance: Some(amount) }) => HoldEnd::Posted {
                amount,
                height: first.height,
            },
            _ => HoldEnd::Voided { height: first.height },
        };
        return Ok(settled(end));
    }
    Ok(match earlier(&placement_key(hold))? {
        Some(placed) if placed.outcome.is_ok() => settled(HoldEnd::Expired),
        _ => RejectReason::UnknownHold {
            account: hold.from,
            id: hold.id.clone(),
        },
    })
}
