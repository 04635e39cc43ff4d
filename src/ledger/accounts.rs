//! What the ledger knows of an account beyond its balance, and of the money
//! supply: the state the rules read and write besides balances.
//!
//! Genesis accounts start open, with the key the genesis file gives, and
//! need no entry here until something changes them (memory for a
//! ten-million-account genesis stays one balance per account); accounts
//! opened later, and genesis accounts whose state or key changed, have an
//! [`AccountInfo`].

use super::keys::PublicKey;
use super::{AccountId, Amount, TxId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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

/// The account entries, the supply and the pending holds: what
/// [`super::rules`] keeps besides balances, as stored beside them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Registry {
    pub accounts: BTreeMap<AccountId, AccountInfo>,
    pub supply: Supply,
    pub holds: Holds,
}

/// Most holds pending at once: each takes memory on every node until it is
/// posted, voided or expires.
pub const MAX_PENDING_HOLDS: usize = 1_000_000;

/// Longest a hold may stay pending: seven days, so every hold ends and the
/// memory pending holds take stays bounded.
pub const MAX_HOLD_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;

/// A hold's name: the id its sender gave it, within the sender's ids.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct HoldKey {
    pub from: AccountId,
    pub id: TxId,
}

impl fmt::Display for HoldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hold {} of account {}", self.id, self.from)
    }
}

/// Money of a hold's sender reserved for its receiver: posted (up to
/// `amount`) or voided by the receiver, or released by the first block
/// whose time reaches `deadline_ms`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hold {
    pub to: AccountId,
    pub amount: Amount,
    /// Unix ms: the time of the block that placed it plus its timeout.
    pub deadline_ms: u64,
    /// Height of the block that placed it.
    pub height: u64,
}

/// How a hold ended: what a second post or void is told.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldEnd {
    /// Posted in block `height`, `amount` of it moved.
    Posted { amount: Amount, height: u64 },
    /// Voided in block `height`.
    Voided { height: u64 },
    /// Released by the first block whose time reached its deadline.
    Expired,
}

impl fmt::Display for HoldEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldEnd::Posted { amount, height } => write!(f, "posted ({amount}) in block {height}"),
            HoldEnd::Voided { height } => write!(f, "voided in block {height}"),
            HoldEnd::Expired => f.write_str("released at its timeout"),
        }
    }
}

/// What holds an account is party to: the sum it sends on hold (its
/// balance counts it, its available balance does not) and how many holds
/// it is to receive (it may not close while one is pending).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Held {
    pub out: Amount,
    pub incoming: u64,
}

impl Held {
    pub fn is_zero(&self) -> bool {
        self.out == 0 && self.incoming == 0
    }
}

/// The pending holds, with the indexes the rules read: by deadline (what
/// the next block releases) and by account (what each has held).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Holds {
    pending: BTreeMap<HoldKey, Hold>,
    by_deadline: BTreeSet<(u64, HoldKey)>,
    held: BTreeMap<AccountId, Held>,
}

impl Holds {
    pub fn get(&self, key: &HoldKey) -> Option<Hold> {
        self.pending.get(key).copied()
    }

    pub fn held(&self, account: AccountId) -> Held {
        self.held.get(&account).copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HoldKey, &Hold)> {
        self.pending.iter()
    }

    /// What each account with money on hold holds, by account.
    pub fn held_out(&self) -> impl Iterator<Item = (AccountId, Amount)> + '_ {
        self.held.iter().filter(|(_, h)| h.out > 0).map(|(a, h)| (*a, h.out))
    }

    /// The holds a block of time `block_ms` releases, deadline first.
    pub fn due(&self, block_ms: u64) -> Vec<HoldKey> {
        self.by_deadline
            .iter()
            .take_while(|(d, _)| *d <= block_ms)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Sets (`Some`) or ends (`None`) the hold `key`, keeping the indexes.
    pub fn set(&mut self, key: HoldKey, hold: Option<Hold>) {
        if let Some(old) = self.pending.remove(&key) {
            self.by_deadline.remove(&(old.deadline_ms, key.clone()));
            self.adjust(key.from, old.to, old.amount, false);
        }
        if let Some(h) = hold {
            self.by_deadline.insert((h.deadline_ms, key.clone()));
            self.adjust(key.from, h.to, h.amount, true);
            self.pending.insert(key, h);
        }
    }

    fn adjust(&mut self, from: AccountId, to: AccountId, amount: Amount, add: bool) {
        let f = self.held.entry(from).or_default();
        // The rules keep `out` within the balance, so neither overflows.
        f.out = if add {
            f.out.saturating_add(amount)
        } else {
            f.out.saturating_sub(amount)
        };
        if f.is_zero() {
            self.held.remove(&from);
        }
        let t = self.held.entry(to).or_default();
        t.incoming = if add {
            t.incoming + 1
        } else {
            t.incoming.saturating_sub(1)
        };
        if t.is_zero() {
            self.held.remove(&to);
        }
    }
}
