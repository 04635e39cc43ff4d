//! What the ledger knows of an account beyond its balance, and of the money
//! supply: the state the rules read and write besides balances.
//!
//! Genesis accounts start open, with the key the genesis file gives, and
//! need no entry here until something changes them (memory for a
//! ten-million-account genesis stays one balance per account); accounts
//! opened later, and genesis accounts whose state or key changed, have an
//! [`AccountInfo`].

use super::keys::PublicKey;
use super::{AccountId, Amount};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Whether an account may send and receive.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Sends and receives.
    Open,
    /// Receives but does not send (a registrar froze it).
    Frozen,
    /// Neither, for good (its owner closed it at balance 0).
    Closed,
}

impl fmt::Display for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccountState::Open => "open",
            AccountState::Frozen => "frozen",
            AccountState::Closed => "closed",
        })
    }
}

/// An account's key and state, where they are not what genesis gave.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The key that signs for the account now.
    pub public_key: PublicKey,
    pub state: AccountState,
    /// Height of the block that opened it (0 for genesis accounts).
    pub opened_height: u64,
    /// Height of the block that set `public_key` (its opening, or its last
    /// rotation). A key set in a block signs from the next one: every
    /// transaction of a block is checked against the keys as they were
    /// before it, so checks of one block's signatures need no state but
    /// the one before it.
    pub key_height: u64,
}

/// Money created and destroyed since genesis. The sum of all balances is
/// always the genesis total plus `issued` minus `redeemed`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Supply {
    /// Both count in the ledger's unit, like balances: an issue that would
    /// take either past `u64::MAX` is refused.
    pub issued: Amount,
    pub redeemed: Amount,
}

impl Supply {
    /// The total of all balances this supply gives, from genesis's total.
    pub fn total(&self, genesis_total: Amount) -> u128 {
        (u128::from(genesis_total) + u128::from(self.issued)).saturating_sub(u128::from(self.redeemed))
    }
}

/// Most accounts a ledger may hold, genesis's and opened ones together.
pub const MAX_ACCOUNTS: usize = 10_000_000;

/// The account entries and the supply: what [`super::rules`] keeps
/// besides balances, as stored beside them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Registry {
    pub accounts: BTreeMap<AccountId, AccountInfo>,
    pub supply: Supply,
}
