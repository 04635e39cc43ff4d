//! The rules that move money. Pure and deterministic: the same balances and
//! the same transaction give the same result on every node.

use super::transaction::Signer;
use super::{AccountId, Amount, Transaction, TxId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Read and write access to account balances; `None` means no such account.
pub trait Balances {
    fn balance(&self, account: AccountId) -> Option<Amount>;
    fn set_balance(&mut self, account: AccountId, amount: Amount);
}

impl Balances for BTreeMap<AccountId, Amount> {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        self.get(&account).copied()
    }
    fn set_balance(&mut self, account: AccountId, amount: Amount) {
        self.insert(account, amount);
    }
}

/// Balances seen through pending, not yet applied changes: lets the leader
/// pre-check a whole block without touching the committed state.
pub struct Overlay<'a, B: Balances + ?Sized> {
    base: &'a B,
    changes: BTreeMap<AccountId, Amount>,
}

impl<'a, B: Balances + ?Sized> Overlay<'a, B> {
    pub fn new(base: &'a B) -> Self {
        Overlay {
            base,
            changes: BTreeMap::new(),
        }
    }

    /// The accounts changed so far and their new balances.
    pub fn into_changes(self) -> BTreeMap<AccountId, Amount> {
        self.changes
    }
}

impl<B: Balances + ?Sized> Balances for Overlay<'_, B> {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        match self.changes.get(&account) {
            Some(v) => Some(*v),
            None => self.base.balance(account),
        }
    }
    fn set_balance(&mut self, account: AccountId, amount: Amount) {
        self.changes.insert(account, amount);
    }
}

/// Why a transaction was not applied. Each is a sentence a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RejectReason {
    /// Transfers must move a positive amount.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// Source and destination are the same account.
    #[error("cannot transfer from account {account} to itself")]
    SameAccount { account: AccountId },
    /// The account does not exist.
    #[error("unknown account {account}")]
    UnknownAccount { account: AccountId },
    /// The source account holds less than the amount.
    #[error("insufficient funds: account {account} has {balance}, needs {amount}")]
    InsufficientFunds {
        account: AccountId,
        balance: Amount,
        amount: Amount,
    },
    /// The destination balance would exceed u64.
    #[error("amount overflows the balance of account {account}")]
    Overflow { account: AccountId },
    /// The id was used before by a transaction with other content.
    #[error("transaction id {id} was already used for a different transaction")]
    IdConflict { id: TxId },
    /// Allocations only exist in genesis.
    #[error("allocations are only valid in the genesis block")]
    AllocationOutsideGenesis,
    /// The transaction does not carry a valid signature of its signer's
    /// key. Every node checks this as it applies a block, so a leader that
    /// proposes such a transaction moves no money; the refusal claims no
    /// id, so the signer may still use it.
    #[error("transaction is not signed by the key of {signer}")]
    Unauthorized { signer: Signer },
    /// The block's time is past the transaction's expiry. Claims no id.
    #[error("transaction expired at {expires_ms} (Unix ms); the block's time is {block_ms}: sign it again with a later expiry")]
    Expired { expires_ms: u64, block_ms: u64 },
    /// The expiry lies further ahead of the block's time than
    /// [`MAX_LIFETIME_MS`]: a signature must not stay usable for ever.
    /// Claims no id.
    #[error("transaction expires at {expires_ms} (Unix ms), more than {} hours after the block's time {block_ms}: sign it with an earlier expiry", MAX_LIFETIME_MS / 3_600_000)]
    ExpiresTooLate { expires_ms: u64, block_ms: u64 },
}

/// Longest a signed transaction may stay valid after the block that holds
/// it was cut: one day.
pub const MAX_LIFETIME_MS: u64 = 24 * 3_600_000;

/// Whether a signed transaction may be in a block of time `block_ms`: not
/// past its expiry, nor expiring more than [`MAX_LIFETIME_MS`] after it.
/// Unsigned transactions (genesis's own) have no expiry.
pub fn check_expiry(tx: &Transaction, block_ms: u64) -> Result<(), RejectReason> {
    match tx.expires_ms() {
        Some(expires_ms) if expires_ms < block_ms => Err(RejectReason::Expired { expires_ms, block_ms }),
        Some(expires_ms) if expires_ms - block_ms > MAX_LIFETIME_MS => {
            Err(RejectReason::ExpiresTooLate { expires_ms, block_ms })
        }
        _ => Ok(()),
    }
}

impl RejectReason {
    /// True when no later state could accept the same transaction: the
    /// refusal depends on its content alone (genesis fixes the accounts).
    /// Refusals for lack of funds or overflow depend on balances.
    pub fn is_permanent(&self) -> bool {
        match self {
            RejectReason::ZeroAmount
            | RejectReason::SameAccount { .. }
            | RejectReason::UnknownAccount { .. }
            | RejectReason::AllocationOutsideGenesis
            | RejectReason::Unauthorized { .. }
            | RejectReason::Expired { .. }
            | RejectReason::ExpiresTooLate { .. } => true,
            RejectReason::InsufficientFunds { .. }
            | RejectReason::Overflow { .. }
            | RejectReason::IdConflict { .. } => false,
        }
    }
}

/// What applying a transaction produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// For balance checks, the audited balance; otherwise `None`.
    pub balance: Option<Amount>,
}

/// Applies `tx` to `balances`, or says why not and changes nothing.
/// `genesis` is true only while building the genesis block.
pub fn apply(
    balances: &mut (impl Balances + ?Sized),
    tx: &Transaction,
    genesis: bool,
) -> Result<Applied, RejectReason> {
    match *tx {
        Transaction::Transfer { from, to, amount, .. } => {
            if amount == 0 {
                return Err(RejectReason::ZeroAmount);
            }
            if from == to {
                return Err(RejectReason::SameAccount { account: from });
            }
            let from_balance = balances
                .balance(from)
                .ok_or(RejectReason::UnknownAccount { account: from })?;
            let to_balance = balances
                .balance(to)
                .ok_or(RejectReason::UnknownAccount { account: to })?;
            let new_from = from_balance
                .checked_sub(amount)
                .ok_or(RejectReason::InsufficientFunds {
                    account: from,
                    balance: from_balance,
                    amount,
                })?;
            let new_to = to_balance
                .checked_add(amount)
                .ok_or(RejectReason::Overflow { account: to })?;
            balances.set_balance(from, new_from);
            balances.set_balance(to, new_to);
            Ok(Applied { balance: None })
        }
        Transaction::BalanceCheck { account, .. } => {
            let balance = balances
                .balance(account)
                .ok_or(RejectReason::UnknownAccount { account })?;
            Ok(Applied { balance: Some(balance) })
        }
        Transaction::Allocation { account, amount, .. } => {
            if !genesis {
                return Err(RejectReason::AllocationOutsideGenesis);
            }
            let current = balances.balance(account).unwrap_or(0);
            let new = current.checked_add(amount).ok_or(RejectReason::Overflow { account })?;
            balances.set_balance(account, new);
            Ok(Applied { balance: None })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(from: u64, to: u64, amount: u64) -> Transaction {
        Transaction::Transfer {
            id: TxId::new("x").unwrap(),
            from,
            to,
            amount,
            expires_ms: 1_000,
            signature: crate::ledger::Signature::NONE,
        }
    }

    fn accounts() -> BTreeMap<u64, u64> {
        BTreeMap::from([(0, 100), (1, 100), (2, u64::MAX - 1)])
    }

    #[test]
    fn each_rule_has_its_reason() {
        let mut b = accounts();
        assert_eq!(apply(&mut b, &t(0, 1, 0), false), Err(RejectReason::ZeroAmount));
        assert_eq!(
            apply(&mut b, &t(1, 1, 5), false),
            Err(RejectReason::SameAccount { account: 1 })
        );
        assert_eq!(
            apply(&mut b, &t(0, 9, 5), false),
            Err(RejectReason::UnknownAccount { account: 9 })
        );
        assert_eq!(
            apply(&mut b, &t(9, 0, 5), false),
            Err(RejectReason::UnknownAccount { account: 9 })
        );
        assert_eq!(
            apply(&mut b, &t(0, 1, 101), false),
            Err(RejectReason::InsufficientFunds {
                account: 0,
                balance: 100,
                amount: 101
            })
        );
        assert_eq!(
            apply(&mut b, &t(0, 2, 2), false),
            Err(RejectReason::Overflow { account: 2 })
        );
        assert_eq!(b, accounts(), "rejected transactions change nothing");
        assert_eq!(
            apply(
                &mut b,
                &Transaction::Allocation {
                    account: 0,
                    amount: 1,
                    public_key: crate::ledger::PublicKey([0; 32]),
                },
                false
            ),
            Err(RejectReason::AllocationOutsideGenesis)
        );
    }

    #[test]
    fn only_content_refusals_are_permanent() {
        assert!(RejectReason::ZeroAmount.is_permanent());
        assert!(RejectReason::UnknownAccount { account: 1 }.is_permanent());
        let funds = RejectReason::InsufficientFunds {
            account: 1,
            balance: 0,
            amount: 5,
        };
        assert!(!funds.is_permanent(), "more money may arrive");
        assert!(!RejectReason::Overflow { account: 1 }.is_permanent());
    }

    #[test]
    fn balance_check_reports_without_changing() {
        let mut b = accounts();
        let check = Transaction::BalanceCheck {
            id: TxId::new("c").unwrap(),
            account: 1,
            auditor: None,
            expires_ms: 1_000,
            signature: crate::ledger::Signature::NONE,
        };
        assert_eq!(apply(&mut b, &check, false).unwrap().balance, Some(100));
        assert_eq!(b, accounts());
    }

    #[test]
    fn overlay_leaves_base_untouched() {
        let base = accounts();
        let mut o = Overlay::new(&base);
        apply(&mut o, &t(0, 1, 60), false).unwrap();
        assert_eq!(
            apply(&mut o, &t(0, 1, 60), false),
            Err(RejectReason::InsufficientFunds {
                account: 0,
                balance: 40,
                amount: 60
            })
        );
        assert_eq!(o.into_changes(), BTreeMap::from([(0, 40), (1, 160)]));
        assert_eq!(base, accounts());
    }

    #[test]
    fn a_transaction_is_valid_from_before_its_expiry_to_it() {
        let tx = t(0, 1, 5); // expires at 1,000
        assert_eq!(check_expiry(&tx, 1_000), Ok(()));
        assert_eq!(check_expiry(&tx, 0), Ok(()));
        assert_eq!(
            check_expiry(&tx, 1_001),
            Err(RejectReason::Expired {
                expires_ms: 1_000,
                block_ms: 1_001
            })
        );
        let far = Transaction::Transfer {
            id: TxId::new("x").unwrap(),
            from: 0,
            to: 1,
            amount: 5,
            expires_ms: u64::MAX,
            signature: crate::ledger::Signature::NONE,
        };
        assert!(matches!(
            check_expiry(&far, 1),
            Err(RejectReason::ExpiresTooLate { .. })
        ));
        assert_eq!(check_expiry(&far, u64::MAX - MAX_LIFETIME_MS), Ok(()));
        assert!(RejectReason::Expired {
            expires_ms: 1,
            block_ms: 2
        }
        .is_permanent());
        let allocation = Transaction::Allocation {
            account: 0,
            amount: 1,
            public_key: crate::ledger::PublicKey([0; 32]),
        };
        assert_eq!(check_expiry(&allocation, u64::MAX), Ok(()));
    }

    proptest! {
        #[test]
        fn money_is_conserved_and_never_negative(
            ops in proptest::collection::vec((0u64..4, 0u64..4, 0u64..150), 0..200)
        ) {
            let mut b: BTreeMap<u64, u64> = BTreeMap::from([(0, 100), (1, 100), (2, 100)]);
            for (from, to, amount) in ops {
                let before = b.clone();
                if apply(&mut b, &t(from, to, amount), false).is_err() {
                    prop_assert_eq!(&b, &before);
                }
                prop_assert_eq!(b.values().sum::<u64>(), 300);
            }
        }
    }
}
