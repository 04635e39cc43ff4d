//! The rules that move money. Pure and deterministic: the same balances and
//! the same transaction give the same result on every node.

use super::accounts::{
    AccountInfo, AccountState, Held, Hold, HoldEnd, HoldKey, Registry, Supply, MAX_ACCOUNTS, MAX_HOLD_TIMEOUT_MS,
    MAX_PENDING_HOLDS,
};
use super::transaction::Signer;
use super::{AccountId, AccountKeys, Amount, PublicKey, Transaction, TxId, MAX_SET_ITEMS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the rules read: balances (`None`: no such account), the account
/// entries of [`super::accounts`] and the supply.
pub trait View {
    fn balance(&self, account: AccountId) -> Option<Amount>;
    /// The account's key and state: its entry where they changed since
    /// genesis, else what genesis gave (open, its genesis key).
    fn account(&self, account: AccountId) -> Option<AccountInfo>;
    fn supply(&self) -> Supply;
    /// How many accounts exist.
    fn account_count(&self) -> usize;
    /// Genesis's keys: its accounts' first keys and the roles'.
    fn genesis(&self) -> &AccountKeys;
    /// The pending hold `key`, if it is pending.
    fn hold(&self, key: &HoldKey) -> Option<Hold>;
    /// What the account has on hold, sending and receiving.
    fn held(&self, account: AccountId) -> Held;
    /// How many holds are pending.
    fn pending_holds(&self) -> usize;
    /// The pending holds a block of time `block_ms` releases, in the order
    /// it releases them.
    fn due_holds(&self, block_ms: u64) -> Vec<HoldKey>;

    /// What the account may send: its balance less what it has on hold.
    fn available(&self, account: AccountId) -> Option<Amount> {
        Some(self.balance(account)?.saturating_sub(self.held(account).out))
    }

    /// The key that signs for `signer` now: an account's current key, a
    /// role's from genesis.
    fn key_of(&self, signer: Signer) -> Option<PublicKey> {
        match signer {
            Signer::Account(a) => self.account(a).map(|i| i.public_key),
            role => self.genesis().key_of(role),
        }
    }
}

/// What the rules write.
pub trait Books: View {
    fn set_balance(&mut self, account: AccountId, amount: Amount);
    fn set_account(&mut self, account: AccountId, info: AccountInfo);
    fn set_supply(&mut self, supply: Supply);
    /// Places (`Some`) or ends (`None`) a hold.
    fn set_hold(&mut self, key: HoldKey, hold: Option<Hold>);
}

/// The whole state the rules keep, owned; genesis accounts' keys are
/// `genesis`'s.
#[derive(Clone, Debug, Default)]
pub struct Book {
    pub balances: BTreeMap<AccountId, Amount>,
    pub registry: Registry,
    pub genesis: Arc<AccountKeys>,
}

impl Book {
    pub fn new(genesis: Arc<AccountKeys>) -> Book {
        Book {
            balances: BTreeMap::new(),
            registry: Registry::default(),
            genesis,
        }
    }

    /// A book of these balances and no account entries, genesis keys or supply.
    pub fn from_balances(balances: BTreeMap<AccountId, Amount>) -> Book {
        Book {
            balances,
            ..Book::default()
        }
    }

    /// Takes in what an [`Overlay`] over this book changed.
    pub fn absorb(&mut self, changes: Changes) {
        self.balances.extend(changes.balances);
        self.registry.accounts.extend(changes.accounts);
        if let Some(s) = changes.supply {
            self.registry.supply = s;
        }
        for (key, hold) in changes.holds {
            self.registry.holds.set(key, hold);
        }
    }

    pub fn as_ref(&self) -> BookRef<'_> {
        BookRef {
            balances: &self.balances,
            registry: &self.registry,
            genesis: &self.genesis,
        }
    }
}

/// A [`Book`] borrowed in its parts.
#[derive(Clone, Copy)]
pub struct BookRef<'a> {
    pub balances: &'a BTreeMap<AccountId, Amount>,
    pub registry: &'a Registry,
    pub genesis: &'a AccountKeys,
}

impl View for BookRef<'_> {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        self.balances.get(&account).copied()
    }
    fn account(&self, account: AccountId) -> Option<AccountInfo> {
        self.registry.accounts.get(&account).copied().or_else(|| {
            self.genesis.get(account).map(|public_key| AccountInfo {
                public_key,
                state: AccountState::Open,
                opened_height: 0,
                key_height: 0,
            })
        })
    }
    fn supply(&self) -> Supply {
        self.registry.supply
    }
    fn account_count(&self) -> usize {
        self.balances.len()
    }
    fn genesis(&self) -> &AccountKeys {
        self.genesis
    }
    fn hold(&self, key: &HoldKey) -> Option<Hold> {
        self.registry.holds.get(key)
    }
    fn held(&self, account: AccountId) -> Held {
        self.registry.holds.held(account)
    }
    fn pending_holds(&self) -> usize {
        self.registry.holds.len()
    }
    fn due_holds(&self, block_ms: u64) -> Vec<HoldKey> {
        self.registry.holds.due(block_ms)
    }
}

impl View for Book {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        self.as_ref().balance(account)
    }
    fn account(&self, account: AccountId) -> Option<AccountInfo> {
        self.as_ref().account(account)
    }
    fn supply(&self) -> Supply {
        self.registry.supply
    }
    fn account_count(&self) -> usize {
        self.balances.len()
    }
    fn genesis(&self) -> &AccountKeys {
        &self.genesis
    }
    fn hold(&self, key: &HoldKey) -> Option<Hold> {
        self.as_ref().hold(key)
    }
    fn held(&self, account: AccountId) -> Held {
        self.as_ref().held(account)
    }
    fn pending_holds(&self) -> usize {
        self.as_ref().pending_holds()
    }
    fn due_holds(&self, block_ms: u64) -> Vec<HoldKey> {
        self.as_ref().due_holds(block_ms)
    }
}

impl Books for Book {
    fn set_balance(&mut self, account: AccountId, amount: Amount) {
        self.balances.insert(account, amount);
    }
    fn set_account(&mut self, account: AccountId, info: AccountInfo) {
        self.registry.accounts.insert(account, info);
    }
    fn set_supply(&mut self, supply: Supply) {
        self.registry.supply = supply;
    }
    fn set_hold(&mut self, key: HoldKey, hold: Option<Hold>) {
        self.registry.holds.set(key, hold);
    }
}

/// What an [`Overlay`] changed: the new balances, account entries, supply
/// and holds (`None`: ended), and what the accounts whose holds changed
/// now have held (derived from the holds, for views over changes).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Changes {
    pub balances: BTreeMap<AccountId, Amount>,
    pub accounts: BTreeMap<AccountId, AccountInfo>,
    pub supply: Option<Supply>,
    pub holds: BTreeMap<HoldKey, Option<Hold>>,
    pub held: BTreeMap<AccountId, Held>,
}

/// A state seen through pending, not yet applied changes: lets the leader
/// pre-check a whole block without touching the committed state.
pub struct Overlay<'a, B: View + ?Sized> {
    base: &'a B,
    changes: Changes,
    opened: usize,
    /// Holds placed here less holds of the base ended here.
    holds_added: isize,
}

impl<'a, B: View + ?Sized> Overlay<'a, B> {
    pub fn new(base: &'a B) -> Self {
        Overlay {
            base,
            changes: Changes::default(),
            opened: 0,
            holds_added: 0,
        }
    }

    /// What changed so far.
    pub fn into_changes(self) -> Changes {
        self.changes
    }
}

impl<B: View + ?Sized> View for Overlay<'_, B> {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        match self.changes.balances.get(&account) {
            Some(v) => Some(*v),
            None => self.base.balance(account),
        }
    }
    fn account(&self, account: AccountId) -> Option<AccountInfo> {
        match self.changes.accounts.get(&account) {
            Some(v) => Some(*v),
            None => self.base.account(account),
        }
    }
    fn supply(&self) -> Supply {
        self.changes.supply.unwrap_or_else(|| self.base.supply())
    }
    fn account_count(&self) -> usize {
        self.base.account_count() + self.opened
    }
    fn genesis(&self) -> &AccountKeys {
        self.base.genesis()
    }
    fn hold(&self, key: &HoldKey) -> Option<Hold> {
        match self.changes.holds.get(key) {
            Some(h) => *h,
            None => self.base.hold(key),
        }
    }
    fn held(&self, account: AccountId) -> Held {
        match self.changes.held.get(&account) {
            Some(h) => *h,
            None => self.base.held(account),
        }
    }
    fn pending_holds(&self) -> usize {
        self.base.pending_holds().saturating_add_signed(self.holds_added)
    }
    fn due_holds(&self, block_ms: u64) -> Vec<HoldKey> {
        let mut due: Vec<(u64, HoldKey)> = self
            .base
            .due_holds(block_ms)
            .into_iter()
            .filter(|k| !self.changes.holds.contains_key(k))
            .filter_map(|k| Some((self.base.hold(&k)?.deadline_ms, k)))
            .collect();
        due.extend(self.changes.holds.iter().filter_map(|(k, h)| {
            h.filter(|h| h.deadline_ms <= block_ms)
                .map(|h| (h.deadline_ms, k.clone()))
        }));
        due.sort();
        due.into_iter().map(|(_, k)| k).collect()
    }
}

impl<B: View + ?Sized> Books for Overlay<'_, B> {
    fn set_balance(&mut self, account: AccountId, amount: Amount) {
        if self.changes.balances.insert(account, amount).is_none() && self.base.balance(account).is_none() {
            self.opened += 1;
        }
    }
    fn set_account(&mut self, account: AccountId, info: AccountInfo) {
        self.changes.accounts.insert(account, info);
    }
    fn set_supply(&mut self, supply: Supply) {
        self.changes.supply = Some(supply);
    }
    fn set_hold(&mut self, key: HoldKey, hold: Option<Hold>) {
        let was = self.hold(&key);
        let mut adjust = |account: AccountId, f: &dyn Fn(&mut Held)| {
            let mut h = self.held(account);
            f(&mut h);
            self.changes.held.insert(account, h);
        };
        if let Some(old) = was {
            adjust(key.from, &|h| h.out = h.out.saturating_sub(old.amount));
            adjust(old.to, &|h| h.incoming = h.incoming.saturating_sub(1));
        }
        if let Some(new) = hold {
            adjust(key.from, &|h| h.out = h.out.saturating_add(new.amount));
            adjust(new.to, &|h| h.incoming += 1);
        }
        self.holds_added += isize::from(hold.is_some()) - isize::from(was.is_some());
        self.changes.holds.insert(key, hold);
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
    /// The source account has less than the amount available (its
    /// balance less what it has on hold).
    #[error("insufficient funds: account {account} has {balance} available, needs {amount}")]
    InsufficientFunds {
        account: AccountId,
        /// The available balance.
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
    /// An account of that id exists already (closed accounts too: ids are
    /// never reused).
    #[error("account {account} exists already")]
    AccountExists { account: AccountId },
    /// The account is frozen: it may receive, not send.
    #[error("account {account} is frozen: it may receive but not send")]
    AccountFrozen { account: AccountId },
    /// The account is closed, for good.
    #[error("account {account} is closed")]
    AccountClosed { account: AccountId },
    /// A freeze of a frozen account, or an unfreeze of an open one.
    #[error("account {account} is {state} already")]
    AlreadyInState { account: AccountId, state: AccountState },
    /// Only an account holding nothing may close.
    #[error("account {account} holds {balance}: only an account at 0 may close")]
    CloseWithMoney { account: AccountId, balance: Amount },
    /// No room for another account.
    #[error("the ledger holds {MAX_ACCOUNTS} accounts, its limit")]
    TooManyAccounts,
    /// A key that cannot sign (not an ed25519 point, or of small order).
    #[error("public key {key} cannot sign: it is not an ed25519 key, or a weak one")]
    BadKey { key: super::PublicKey },
    /// The money issued or redeemed would overflow the supply's count.
    #[error("the supply's count would overflow")]
    SupplyOverflow,
    /// A hold's timeout must let it end, within [`MAX_HOLD_TIMEOUT_MS`].
    #[error("hold timeout of {timeout_ms} ms is out of range: from 1 ms to {} days", MAX_HOLD_TIMEOUT_MS / 86_400_000)]
    BadHoldTimeout { timeout_ms: u64 },
    /// No room for another pending hold.
    #[error("{MAX_PENDING_HOLDS} holds are pending, the limit: settle some first")]
    TooManyHolds,
    /// No pending hold of that name (never placed, or not yet committed).
    #[error("no pending hold {id} of account {account}")]
    UnknownHold { account: AccountId, id: TxId },
    /// The hold was settled, or released at its timeout, before.
    #[error("hold {id} of account {account} was {end} already")]
    HoldSettled { account: AccountId, id: TxId, end: HoldEnd },
    /// Only a hold's receiver posts or voids it.
    #[error("hold {id} of account {account} is to account {to}, not to account {named}: only its receiver settles it")]
    NotHoldReceiver {
        account: AccountId,
        id: TxId,
        to: AccountId,
        named: AccountId,
    },
    /// A post may move at most what the hold reserved.
    #[error("cannot post {amount}: hold {id} of account {account} holds {held}")]
    PostAboveHeld {
        account: AccountId,
        id: TxId,
        amount: Amount,
        held: Amount,
    },
    /// An account party to a pending hold may not close.
    #[error("account {account} is party to {holds} pending holds: settle them before it closes")]
    CloseWithHolds { account: AccountId, holds: u64 },
    /// An item of a transfer set names an id used before: a set's items
    /// are new, or the whole set is the one that ran.
    #[error("transaction id {id} was used before, in block {height}: a set's items must be new")]
    IdUsed { id: TxId, height: u64 },
    /// A transfer set that cannot be one, whatever the state (see
    /// [`check_set`]). Claims no id.
    #[error("not a valid transfer set: {reason}")]
    BadSet { reason: String },
    /// Item `item` (counted from 1) of a transfer set, of id `id`, fails:
    /// no item of the set commits.
    #[error("item {item} of the transfer set ({id}) fails, so none commits: {reason}")]
    InSet {
        item: u32,
        id: TxId,
        reason: Box<RejectReason>,
    },
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
    /// refusal depends on its content alone, or on a state that never
    /// changes back (an account, once it exists, always does; once closed,
    /// stays closed). Refusals for lack of funds or overflow depend on balances.
    pub fn is_permanent(&self) -> bool {
        match self {
            RejectReason::ZeroAmount
            | RejectReason::SameAccount { .. }
            | RejectReason::AllocationOutsideGenesis
            | RejectReason::Unauthorized { .. }
            | RejectReason::Expired { .. }
            | RejectReason::ExpiresTooLate { .. }
            | RejectReason::AccountExists { .. }
            | RejectReason::AccountClosed { .. }
            | RejectReason::BadKey { .. }
            | RejectReason::BadHoldTimeout { .. }
            | RejectReason::HoldSettled { .. }
            | RejectReason::NotHoldReceiver { .. }
            | RejectReason::PostAboveHeld { .. }
            | RejectReason::BadSet { .. }
            | RejectReason::IdUsed { .. } => true,
            RejectReason::InSet { reason, .. } => reason.is_permanent(),
            // Accounts open, freeze and unfreeze at runtime: an unknown or
            // frozen account may be usable in a later state.
            RejectReason::InsufficientFunds { .. }
            | RejectReason::UnknownAccount { .. }
            | RejectReason::AccountFrozen { .. }
            | RejectReason::AlreadyInState { .. }
            | RejectReason::CloseWithMoney { .. }
            | RejectReason::TooManyAccounts
            | RejectReason::SupplyOverflow
            | RejectReason::Overflow { .. }
            | RejectReason::IdConflict { .. }
            | RejectReason::TooManyHolds
            | RejectReason::UnknownHold { .. }
            | RejectReason::CloseWithHolds { .. } => false,
        }
    }
}

/// What applying a transaction produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// For balance checks, the audited balance; for posts, the amount
    /// posted (so the record of a hold's settlement tells how it ended);
    /// otherwise `None`.
    pub balance: Option<Amount>,
}

/// Where a transaction is applied: its block's height and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub height: u64,
    pub block_ms: u64,
}

/// Applies `tx`, in the block `at`, to `books`, or says why not and
/// changes nothing. Allocations are valid only at height 0, the genesis
/// block.
pub fn apply(books: &mut (impl Books + ?Sized), tx: &Transaction, at: At) -> Result<Applied, RejectReason> {
    match tx {
        Transaction::Set { items } => apply_set(books, items, at).map(|_| Applied { balance: None }),
        one => apply_one(books, one, at),
    }
}

/// [`apply`] for anything but a set (kept apart so a set's items, applied
/// on an overlay of the books, do not instantiate sets of sets).
fn apply_one(books: &mut (impl Books + ?Sized), tx: &Transaction, at: At) -> Result<Applied, RejectReason> {
    let none = Ok(Applied { balance: None });
    let height = at.height;
    match *tx {
        Transaction::Transfer { from, to, amount, .. } => {
            if amount == 0 {
                return Err(RejectReason::ZeroAmount);
            }
            if from == to {
                return Err(RejectReason::SameAccount { account: from });
            }
            let from_balance = sender(books, from)?;
            let to_balance = receiver(books, to)?;
            spendable(books, from, amount)?;
            let new_from = from_balance - amount;
            let new_to = to_balance
                .checked_add(amount)
                .ok_or(RejectReason::Overflow { account: to })?;
            books.set_balance(from, new_from);
            books.set_balance(to, new_to);
            none
        }
        Transaction::BalanceCheck { account, .. } => {
            let balance = books.balance(account).ok_or(RejectReason::UnknownAccount { account })?;
            Ok(Applied { balance: Some(balance) })
        }
        Transaction::Allocation { account, amount, .. } => {
            if height != 0 {
                return Err(RejectReason::AllocationOutsideGenesis);
            }
            let current = books.balance(account).unwrap_or(0);
            let new = current.checked_add(amount).ok_or(RejectReason::Overflow { account })?;
            books.set_balance(account, new);
            none
        }
        Transaction::OpenAccount {
            account, public_key, ..
        } => {
            if books.balance(account).is_some() {
                return Err(RejectReason::AccountExists { account });
            }
            if books.account_count() >= MAX_ACCOUNTS {
                return Err(RejectReason::TooManyAccounts);
            }
            public_key
                .check()
                .map_err(|_| RejectReason::BadKey { key: public_key })?;
            books.set_balance(account, 0);
            books.set_account(
                account,
                AccountInfo {
                    public_key,
                    state: AccountState::Open,
                    opened_height: height,
                    key_height: height,
                },
            );
            none
        }
        Transaction::FreezeAccount { account, frozen, .. } => {
            let mut info = info_of(books, account)?;
            let want = if frozen {
                AccountState::Frozen
            } else {
                AccountState::Open
            };
            match info.state {
                AccountState::Closed => return Err(RejectReason::AccountClosed { account }),
                state if state == want => return Err(RejectReason::AlreadyInState { account, state }),
                _ => {}
            }
            info.state = want;
            books.set_account(account, info);
            none
        }
        Transaction::CloseAccount { account, .. } => {
            let balance = sender(books, account)?;
            if balance != 0 {
                return Err(RejectReason::CloseWithMoney { account, balance });
            }
            let held = books.held(account);
            if held.incoming > 0 {
                return Err(RejectReason::CloseWithHolds {
                    account,
                    holds: held.incoming,
                });
            }
            let mut info = info_of(books, account)?;
            info.state = AccountState::Closed;
            books.set_account(account, info);
            none
        }
        Transaction::RotateKey {
            account, public_key, ..
        } => {
            let mut info = info_of(books, account)?;
            if info.state == AccountState::Closed {
                return Err(RejectReason::AccountClosed { account });
            }
            public_key
                .check()
                .map_err(|_| RejectReason::BadKey { key: public_key })?;
            info.public_key = public_key;
            info.key_height = height;
            books.set_account(account, info);
            none
        }
        Transaction::Issue { account, amount, .. } => {
            if amount == 0 {
                return Err(RejectReason::ZeroAmount);
            }
            let balance = receiver(books, account)?;
            let new = balance.checked_add(amount).ok_or(RejectReason::Overflow { account })?;
            let mut supply = books.supply();
            supply.issued = supply.issued.checked_add(amount).ok_or(RejectReason::SupplyOverflow)?;
            books.set_balance(account, new);
            books.set_supply(supply);
            none
        }
        Transaction::Redeem {
            account,
            amount,
            issuer,
            ..
        } => {
            if amount == 0 {
                return Err(RejectReason::ZeroAmount);
            }
            // An owner's withdrawal is a send; an issuer may redeem from a
            // frozen account too.
            let balance = match issuer {
                None => sender(books, account)?,
                Some(_) => books.balance(account).ok_or(RejectReason::UnknownAccount { account })?,
            };
            // Held money stays: its receiver was promised it.
            spendable(books, account, amount)?;
            let new = balance - amount;
            let mut supply = books.supply();
            supply.redeemed = supply
                .redeemed
                .checked_add(amount)
                .ok_or(RejectReason::SupplyOverflow)?;
            books.set_balance(account, new);
            books.set_supply(supply);
            none
        }
        Transaction::Hold {
            ref id,
            from,
            to,
            amount,
            timeout_ms,
            ..
        } => {
            if amount == 0 {
                return Err(RejectReason::ZeroAmount);
            }
            if from == to {
                return Err(RejectReason::SameAccount { account: from });
            }
            if timeout_ms == 0 || timeout_ms > MAX_HOLD_TIMEOUT_MS {
                return Err(RejectReason::BadHoldTimeout { timeout_ms });
            }
            sender(books, from)?;
            receiver(books, to)?;
            spendable(books, from, amount)?;
            if books.pending_holds() >= MAX_PENDING_HOLDS {
                return Err(RejectReason::TooManyHolds);
            }
            let hold = Hold {
                to,
                amount,
                deadline_ms: at.block_ms.saturating_add(timeout_ms),
                height,
            };
            books.set_hold(HoldKey { from, id: id.clone() }, Some(hold));
            none
        }
        Transaction::Post {
            ref hold_id,
            from,
            to,
            amount,
            ..
        } => {
            let key = HoldKey {
                from,
                id: hold_id.clone(),
            };
            let hold = pending_hold(books, &key, to)?;
            if amount == 0 {
                return Err(RejectReason::ZeroAmount);
            }
            if amount > hold.amount {
                return Err(RejectReason::PostAboveHeld {
                    account: from,
                    id: key.id,
                    amount,
                    held: hold.amount,
                });
            }
            // A post is the sender's payment: a frozen sender makes none.
            let from_balance = sender(books, from)?;
            let to_balance = receiver(books, to)?;
            let new_to = to_balance
                .checked_add(amount)
                .ok_or(RejectReason::Overflow { account: to })?;
            // The held amount is within the balance (every debit leaves it).
            books.set_balance(from, from_balance.saturating_sub(amount));
            books.set_balance(to, new_to);
            books.set_hold(key, None);
            Ok(Applied { balance: Some(amount) })
        }
        Transaction::Void {
            ref hold_id, from, to, ..
        } => {
            let key = HoldKey {
                from,
                id: hold_id.clone(),
            };
            pending_hold(books, &key, to)?;
            books.set_hold(key, None);
            none
        }
        Transaction::Set { .. } => Err(RejectReason::BadSet {
            reason: "a set cannot hold a set".into(),
        }),
    }
}

/// Whether `items` may form a transfer set, whatever the state: 1 to
/// [`MAX_SET_ITEMS`] items, each a transfer, issue, redeem, hold, post or
/// void; no id twice among its signer's ids, no hold settled twice.
pub fn check_set(items: &[Transaction]) -> Result<(), RejectReason> {
    let bad = |reason: String| Err(RejectReason::BadSet { reason });
    if items.is_empty() {
        return bad("it holds no items".into());
    }
    if items.len() > MAX_SET_ITEMS {
        return bad(format!("it holds {} items, more than {MAX_SET_ITEMS}", items.len()));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut settled = std::collections::BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        match item {
            Transaction::Transfer { .. }
            | Transaction::Issue { .. }
            | Transaction::Redeem { .. }
            | Transaction::Hold { .. }
            | Transaction::Post { .. }
            | Transaction::Void { .. } => {}
            other => {
                return bad(format!(
                    "item {n} is a {}: a set holds transfers, issues, redeems, holds, posts and voids",
                    other.kind()
                ))
            }
        }
        if let Some(key) = item.key() {
            if !ids.insert(key.clone()) {
                return bad(format!("items name {key} twice"));
            }
        }
        if let Some(hold) = item.settles() {
            if !settled.insert(hold.clone()) {
                return bad(format!("items settle {hold} twice"));
            }
        }
    }
    Ok(())
}

/// Applies the items of a transfer set to `books`, in order, all or none:
/// what each produced, or why the set fails (the first failing item,
/// wrapped in [`RejectReason::InSet`]), changing nothing.
pub fn apply_set(
    books: &mut (impl Books + ?Sized),
    items: &[Transaction],
    at: At,
) -> Result<Vec<Applied>, RejectReason> {
    check_set(items)?;
    let mut nested = Overlay::new(&*books);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match apply_one(&mut nested, item, at) {
            Ok(a) => out.push(a),
            Err(reason) => {
                return Err(RejectReason::InSet {
                    item: i as u32 + 1,
                    id: item.id().cloned().unwrap_or_else(TxId::random),
                    reason: Box::new(reason),
                })
            }
        }
    }
    let changes = nested.into_changes();
    for (account, amount) in changes.balances {
        books.set_balance(account, amount);
    }
    for (account, info) in changes.accounts {
        books.set_account(account, info);
    }
    if let Some(supply) = changes.supply {
        books.set_supply(supply);
    }
    for (key, hold) in changes.holds {
        books.set_hold(key, hold);
    }
    Ok(out)
}

/// Releases the holds a block of time `block_ms` finds past their
/// deadline, before its transactions; returns them, in that order.
pub fn release_due(books: &mut (impl Books + ?Sized), block_ms: u64) -> Vec<HoldKey> {
    let due = books.due_holds(block_ms);
    for key in &due {
        books.set_hold(key.clone(), None);
    }
    due
}

/// The pending hold `key`, which `to` (the account that signed) may settle.
fn pending_hold(books: &(impl View + ?Sized), key: &HoldKey, to: AccountId) -> Result<Hold, RejectReason> {
    let hold = books.hold(key).ok_or_else(|| RejectReason::UnknownHold {
        account: key.from,
        id: key.id.clone(),
    })?;
    if hold.to != to {
        return Err(RejectReason::NotHoldReceiver {
            account: key.from,
            id: key.id.clone(),
            to: hold.to,
            named: to,
        });
    }
    Ok(hold)
}

/// Whether `account` may send `amount` without touching what it holds.
fn spendable(books: &(impl View + ?Sized), account: AccountId, amount: Amount) -> Result<(), RejectReason> {
    let available = books.available(account).unwrap_or(0);
    if available < amount {
        return Err(RejectReason::InsufficientFunds {
            account,
            balance: available,
            amount,
        });
    }
    Ok(())
}

/// An account's state: its entry, or open as genesis made it.
pub fn state_of(books: &(impl View + ?Sized), account: AccountId) -> Option<AccountState> {
    books.balance(account)?;
    Some(books.account(account).map_or(AccountState::Open, |i| i.state))
}

/// The balance of an account that may send: it exists and is open.
fn sender(books: &(impl View + ?Sized), account: AccountId) -> Result<Amount, RejectReason> {
    let balance = books.balance(account).ok_or(RejectReason::UnknownAccount { account })?;
    match state_of(books, account) {
        Some(AccountState::Frozen) => Err(RejectReason::AccountFrozen { account }),
        Some(AccountState::Closed) => Err(RejectReason::AccountClosed { account }),
        _ => Ok(balance),
    }
}

/// The balance of an account that may receive: it exists and is not closed.
fn receiver(books: &(impl View + ?Sized), account: AccountId) -> Result<Amount, RejectReason> {
    let balance = books.balance(account).ok_or(RejectReason::UnknownAccount { account })?;
    match state_of(books, account) {
        Some(AccountState::Closed) => Err(RejectReason::AccountClosed { account }),
        _ => Ok(balance),
    }
}

/// The key and state an account change starts from.
fn info_of(books: &(impl View + ?Sized), account: AccountId) -> Result<AccountInfo, RejectReason> {
    books.balance(account).ok_or(RejectReason::UnknownAccount { account })?;
    books.account(account).ok_or(RejectReason::UnknownAccount { account })
}

#[cfg(test)]
mod tests {
    /// A block at `height`, at time 0.
    fn at(height: u64) -> At {
        At { height, block_ms: 0 }
    }
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

    /// A book of these balances, each account with its dev key, as genesis gives.
    fn book(balances: &[(u64, u64)]) -> Book {
        let keys = balances
            .iter()
            .map(|(a, _)| (*a, crate::ledger::AccountKey::dev(*a).public()));
        Book {
            balances: balances.iter().copied().collect(),
            registry: Registry::default(),
            genesis: Arc::new(AccountKeys::new(keys.collect())),
        }
    }

    fn accounts() -> Book {
        book(&[(0, 100), (1, 100), (2, u64::MAX - 1)])
    }

    #[test]
    fn each_rule_has_its_reason() {
        let mut b = accounts();
        assert_eq!(apply(&mut b, &t(0, 1, 0), at(1)), Err(RejectReason::ZeroAmount));
        assert_eq!(
            apply(&mut b, &t(1, 1, 5), at(1)),
            Err(RejectReason::SameAccount { account: 1 })
        );
        assert_eq!(
            apply(&mut b, &t(0, 9, 5), at(1)),
            Err(RejectReason::UnknownAccount { account: 9 })
        );
        assert_eq!(
            apply(&mut b, &t(9, 0, 5), at(1)),
            Err(RejectReason::UnknownAccount { account: 9 })
        );
        assert_eq!(
            apply(&mut b, &t(0, 1, 101), at(1)),
            Err(RejectReason::InsufficientFunds {
                account: 0,
                balance: 100,
                amount: 101
            })
        );
        assert_eq!(
            apply(&mut b, &t(0, 2, 2), at(1)),
            Err(RejectReason::Overflow { account: 2 })
        );
        assert_eq!(b.balances, accounts().balances, "rejected transactions change nothing");
        assert_eq!(
            apply(
                &mut b,
                &Transaction::Allocation {
                    account: 0,
                    amount: 1,
                    public_key: crate::ledger::PublicKey([0; 32]),
                },
                at(1)
            ),
            Err(RejectReason::AllocationOutsideGenesis)
        );
    }

    #[test]
    fn only_content_refusals_are_permanent() {
        assert!(RejectReason::ZeroAmount.is_permanent());
        assert!(
            !RejectReason::UnknownAccount { account: 1 }.is_permanent(),
            "the account may be opened"
        );
        assert!(
            !RejectReason::AccountFrozen { account: 1 }.is_permanent(),
            "it may be unfrozen"
        );
        assert!(
            RejectReason::AccountClosed { account: 1 }.is_permanent(),
            "closed for good"
        );
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
        assert_eq!(apply(&mut b, &check, at(1)).unwrap().balance, Some(100));
        assert_eq!(b.balances, accounts().balances);
    }

    #[test]
    fn overlay_leaves_base_untouched() {
        let base = accounts();
        let mut o = Overlay::new(&base);
        apply(&mut o, &t(0, 1, 60), at(1)).unwrap();
        assert_eq!(
            apply(&mut o, &t(0, 1, 60), at(1)),
            Err(RejectReason::InsufficientFunds {
                account: 0,
                balance: 40,
                amount: 60
            })
        );
        assert_eq!(o.into_changes().balances, BTreeMap::from([(0, 40), (1, 160)]));
        assert_eq!(base.balances, accounts().balances);
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
            let mut b = Book::from_balances(BTreeMap::from([(0, 100), (1, 100), (2, 100)]));
            for (from, to, amount) in ops {
                let before = b.balances.clone();
                if apply(&mut b, &t(from, to, amount), at(1)).is_err() {
                    prop_assert_eq!(&b.balances, &before);
                }
                prop_assert_eq!(b.balances.values().sum::<u64>(), 300);
            }
        }

        /// Every kind mixed: the total moves only by issue and redeem; a
        /// refusal changes nothing; a frozen account's balance falls only by
        /// an issuer's redeem; a closed account never changes again and
        /// always holds 0.
        #[test]
        fn money_changes_only_by_issue_and_redeem(
            ops in proptest::collection::vec((0u8..11, 0u64..6, 0u64..6, 0u64..120, proptest::bool::ANY), 0..250)
        ) {
            let mut b = book(&[(0, 100), (1, 100), (2, 100)]);
            let key = crate::ledger::AccountKey::dev(9).public();
            for (i, (kind, a, other, amount, flag)) in ops.into_iter().enumerate() {
                let tx = op(kind, a, other, amount, flag, key);
                // One transaction a block, a second apart: 3 s holds end.
                let at = At { height: i as u64 + 1, block_ms: i as u64 * 1_000 };
                let pending_before = b.registry.holds.clone();
                for released in release_due(&mut b, at.block_ms) {
                    let h = pending_before.get(&released).expect("only a pending hold is released");
                    prop_assert!(h.deadline_ms <= at.block_ms);
                }
                let (balances, registry) = (b.balances.clone(), b.registry.clone());
                let before_state = state_of(&b, a);
                let result = apply(&mut b, &tx, at);
                if result.is_err() {
                    prop_assert_eq!(&b.balances, &balances);
                    prop_assert_eq!(&b.registry, &registry);
                }
                let total: u128 = b.balances.values().map(|v| u128::from(*v)).sum();
                prop_assert_eq!(total, b.registry.supply.total(300));
                // No available balance is negative: what an account has on
                // hold is within its balance, and is the sum of its holds.
                let mut out: BTreeMap<AccountId, u64> = BTreeMap::new();
                for (k, h) in b.registry.holds.iter() {
                    *out.entry(k.from).or_default() += h.amount;
                }
                for (account, balance) in &b.balances {
                    let held = b.registry.holds.held(*account).out;
                    prop_assert_eq!(held, out.get(account).copied().unwrap_or(0));
                    prop_assert!(held <= *balance, "account {} holds {} of {}", account, held, balance);
                }
                if let (Transaction::Post { amount, .. }, Ok(applied)) = (&tx, &result) {
                    prop_assert_eq!(applied.balance, Some(*amount));
                }
                if before_state == Some(AccountState::Frozen) && !matches!(tx, Transaction::Redeem { issuer: Some(_), .. }) {
                    prop_assert!(b.balances[&a] >= balances[&a], "a frozen account sent: {:?}", tx);
                }
                if before_state == Some(AccountState::Closed) {
                    prop_assert_eq!(b.balances.get(&a), Some(&0));
                    prop_assert_eq!(state_of(&b, a), Some(AccountState::Closed));
                }
            }
        }
    }

    /// One transaction of kind `kind` (signatures are not the rules' concern).
    fn op(kind: u8, a: u64, other: u64, amount: u64, flag: bool, key: PublicKey) -> Transaction {
        let id = TxId::new("p").unwrap();
        let (expires_ms, signature) = (1_000, crate::ledger::Signature::NONE);
        match kind {
            0 | 1 => t(a, other, amount),
            2 => Transaction::OpenAccount {
                id,
                account: a,
                public_key: key,
                registrar: 0,
                expires_ms,
                signature,
            },
            3 => Transaction::FreezeAccount {
                id,
                account: a,
                frozen: flag,
                registrar: 0,
                expires_ms,
                signature,
            },
            4 => Transaction::CloseAccount {
                id,
                account: a,
                expires_ms,
                signature,
            },
            5 => Transaction::RotateKey {
                id,
                account: a,
                public_key: key,
                expires_ms,
                signature,
            },
            6 => Transaction::Issue {
                id,
                account: a,
                amount,
                issuer: 0,
                expires_ms,
                signature,
            },
            7 => Transaction::Redeem {
                id,
                account: a,
                amount,
                issuer: flag.then_some(0),
                expires_ms,
                signature,
            },
            // Holds named h0..h3, so posts and voids find some of them.
            8 => Transaction::Hold {
                id: hold_id(amount),
                from: a,
                to: other,
                amount,
                timeout_ms: 3_000,
                expires_ms,
                signature,
            },
            9 => Transaction::Post {
                id,
                hold_id: hold_id(amount),
                from: a,
                to: other,
                amount: amount / 2,
                expires_ms,
                signature,
            },
            _ => Transaction::Void {
                id,
                hold_id: hold_id(amount),
                from: a,
                to: other,
                expires_ms,
                signature,
            },
        }
    }

    fn hold_id(n: u64) -> TxId {
        TxId::new(format!("h{}", n % 4)).unwrap()
    }

    #[test]
    fn account_rules_have_their_reasons() {
        let mut b = accounts();
        let key = crate::ledger::AccountKey::dev(9).public();
        let open = |account| op(2, account, 0, 0, false, key);
        assert_eq!(
            apply(&mut b, &open(0), at(5)),
            Err(RejectReason::AccountExists { account: 0 })
        );
        assert_eq!(
            apply(&mut b, &op(2, 7, 0, 0, false, PublicKey([0; 32])), at(5)),
            Err(RejectReason::BadKey {
                key: PublicKey([0; 32])
            })
        );
        apply(&mut b, &open(7), at(5)).unwrap();
        assert_eq!(
            b.account(7),
            Some(AccountInfo {
                public_key: key,
                state: AccountState::Open,
                opened_height: 5,
                key_height: 5
            })
        );
        assert_eq!(
            apply(&mut b, &op(3, 7, 0, 0, false, key), at(6)),
            Err(RejectReason::AlreadyInState {
                account: 7,
                state: AccountState::Open
            })
        );
        apply(&mut b, &op(3, 0, 0, 0, true, key), at(6)).unwrap();
        assert_eq!(
            apply(&mut b, &t(0, 1, 5), at(6)),
            Err(RejectReason::AccountFrozen { account: 0 })
        );
        assert_eq!(
            apply(&mut b, &op(7, 0, 0, 5, false, key), at(6)),
            Err(RejectReason::AccountFrozen { account: 0 }),
            "a frozen owner cannot withdraw"
        );
        apply(&mut b, &op(7, 0, 0, 5, true, key), at(6)).expect("an issuer redeems from a frozen account");
        apply(&mut b, &t(1, 0, 5), at(6)).expect("a frozen account receives");
        assert_eq!(
            apply(&mut b, &op(4, 1, 0, 0, false, key), at(7)),
            Err(RejectReason::CloseWithMoney {
                account: 1,
                balance: 95
            })
        );
        apply(&mut b, &op(4, 7, 0, 0, false, key), at(7)).unwrap();
        assert_eq!(
            apply(&mut b, &t(1, 7, 5), at(8)),
            Err(RejectReason::AccountClosed { account: 7 })
        );
        assert_eq!(
            apply(&mut b, &op(6, 7, 0, 5, false, key), at(8)),
            Err(RejectReason::AccountClosed { account: 7 })
        );
        assert_eq!(
            apply(&mut b, &op(5, 7, 0, 0, false, key), at(8)),
            Err(RejectReason::AccountClosed { account: 7 })
        );
        assert_eq!(
            apply(&mut b, &op(6, 1, 0, 0, false, key), at(8)),
            Err(RejectReason::ZeroAmount)
        );
        assert_eq!(
            apply(&mut b, &op(6, 2, 0, 5, false, key), at(8)),
            Err(RejectReason::Overflow { account: 2 })
        );
        b.registry.supply.issued = u64::MAX;
        assert_eq!(
            apply(&mut b, &op(6, 1, 0, 5, false, key), at(8)),
            Err(RejectReason::SupplyOverflow)
        );
    }

    #[test]
    fn holds_reserve_settle_once_and_end_at_their_deadline() {
        let mut b = accounts();
        let (hold, post, void) = (
            |n| op(8, 0, 1, n, false, PublicKey([0; 32])),
            |n| op(9, 0, 1, n, false, PublicKey([0; 32])),
            |n| op(10, 0, 1, n, false, PublicKey([0; 32])),
        );
        let at = |height, block_ms| At { height, block_ms };
        apply(&mut b, &hold(60), at(1, 1_000)).unwrap();
        assert_eq!(b.balance(0), Some(100), "a hold moves nothing yet");
        assert_eq!(b.available(0), Some(40));
        assert_eq!(b.held(1).incoming, 1);
        assert_eq!(
            apply(&mut b, &t(0, 1, 41), at(2, 1_000)),
            Err(RejectReason::InsufficientFunds {
                account: 0,
                balance: 40,
                amount: 41
            }),
            "held money cannot be sent"
        );
        let redeem = op(7, 0, 0, 41, true, PublicKey([0; 32]));
        assert!(
            matches!(
                apply(&mut b, &redeem, at(2, 1_000)),
                Err(RejectReason::InsufficientFunds { .. })
            ),
            "nor redeemed"
        );
        let close = op(4, 1, 0, 0, false, PublicKey([0; 32]));
        b.balances.insert(1, 0);
        assert_eq!(
            apply(&mut b, &close, at(2, 1_000)),
            Err(RejectReason::CloseWithHolds { account: 1, holds: 1 })
        );
        b.balances.insert(1, 100);
        // Only the receiver settles, up to the held amount.
        let stranger = Transaction::Void {
            id: TxId::new("v").unwrap(),
            hold_id: TxId::new("h0").unwrap(),
            from: 0,
            to: 2,
            expires_ms: 1,
            signature: crate::ledger::Signature::NONE,
        };
        assert!(matches!(
            apply(&mut b, &stranger, at(3, 1_000)),
            Err(RejectReason::NotHoldReceiver { to: 1, named: 2, .. })
        ));
        let mut above = post(60);
        if let Transaction::Post { amount, .. } = &mut above {
            *amount = 61;
        }
        assert!(matches!(
            apply(&mut b, &above, at(3, 1_000)),
            Err(RejectReason::PostAboveHeld {
                amount: 61,
                held: 60,
                ..
            })
        ));
        // post(60) posts 30 (op posts half): 30 moves, 30 is released.
        assert_eq!(apply(&mut b, &post(60), at(3, 1_000)).unwrap().balance, Some(30));
        assert_eq!(
            (b.balance(0), b.balance(1), b.available(0)),
            (Some(70), Some(130), Some(70))
        );
        assert!(
            matches!(
                apply(&mut b, &void(60), at(4, 1_000)),
                Err(RejectReason::UnknownHold { .. })
            ),
            "settled once"
        );
        // A hold ends at the first block whose time reaches its deadline.
        apply(&mut b, &hold(61), at(5, 10_000)).unwrap();
        assert!(release_due(&mut b, 12_999).is_empty());
        assert_eq!(
            release_due(&mut b, 13_000),
            vec![HoldKey {
                from: 0,
                id: TxId::new("h1").unwrap()
            }]
        );
        assert_eq!(b.available(0), Some(70));
        assert!(b.registry.holds.is_empty() && b.held(1).is_zero());
        // Timeouts are bounded, so every hold ends.
        for timeout_ms in [0, MAX_HOLD_TIMEOUT_MS + 1] {
            let h = Transaction::Hold {
                id: TxId::new("h9").unwrap(),
                from: 0,
                to: 1,
                amount: 1,
                timeout_ms,
                expires_ms: 1,
                signature: crate::ledger::Signature::NONE,
            };
            assert_eq!(
                apply(&mut b, &h, at(6, 13_000)),
                Err(RejectReason::BadHoldTimeout { timeout_ms })
            );
        }
    }

    /// A transfer of `amount` from `from` to `to` under id `id`.
    fn tid(id: &str, from: u64, to: u64, amount: u64) -> Transaction {
        Transaction::Transfer {
            id: TxId::new(id).unwrap(),
            from,
            to,
            amount,
            expires_ms: 1_000,
            signature: crate::ledger::Signature::NONE,
        }
    }

    #[test]
    fn a_set_that_cannot_be_one_is_refused_with_its_reason() {
        let bad = |items: Vec<Transaction>| match check_set(&items) {
            Err(RejectReason::BadSet { reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(vec![]), "it holds no items");
        let many: Vec<Transaction> = (0..=MAX_SET_ITEMS).map(|i| tid(&format!("t{i}"), 0, 1, 1)).collect();
        assert!(bad(many).contains("more than 256"));
        let check = Transaction::BalanceCheck {
            id: TxId::new("c").unwrap(),
            account: 0,
            auditor: None,
            expires_ms: 1,
            signature: crate::ledger::Signature::NONE,
        };
        assert!(bad(vec![tid("a", 0, 1, 1), check]).starts_with("item 2 is a balance_check"));
        let nested = Transaction::Set {
            items: vec![tid("b", 0, 1, 1)],
        };
        assert!(bad(vec![nested]).starts_with("item 1 is a set"));
        assert!(bad(vec![tid("a", 0, 1, 1), tid("a", 0, 2, 1)]).contains("twice"));
        // The same id of two signers is two ids.
        assert_eq!(check_set(&[tid("a", 0, 1, 1), tid("a", 1, 2, 1)]), Ok(()));
        let void = |id: &str| Transaction::Void {
            id: TxId::new(id).unwrap(),
            hold_id: TxId::new("h").unwrap(),
            from: 0,
            to: 1,
            expires_ms: 1,
            signature: crate::ledger::Signature::NONE,
        };
        assert!(bad(vec![void("v1"), void("v2")]).contains("settle hold h of account 0 twice"));
    }

    #[test]
    fn a_set_names_its_failing_item_and_changes_nothing() {
        let mut b = book(&[(0, 100), (1, 100), (2, 100)]);
        let set = Transaction::Set {
            items: vec![tid("a", 0, 1, 60), tid("b", 1, 2, 170), tid("c", 2, 0, 1)],
        };
        let before = b.balances.clone();
        let err = apply(&mut b, &set, at(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "item 2 of the transfer set (b) fails, so none commits: \
             insufficient funds: account 1 has 160 available, needs 170"
        );
        assert!(!err.is_permanent());
        assert_eq!(b.balances, before);
        // What an item moves, the next one may spend.
        let set = Transaction::Set {
            items: vec![tid("a", 0, 1, 60), tid("b", 1, 2, 160)],
        };
        assert_eq!(apply(&mut b, &set, at(2)), Ok(Applied { balance: None }));
        assert_eq!(b.balances, BTreeMap::from([(0, 40), (1, 0), (2, 260)]));
    }

    proptest! {
        /// A set applies exactly as its items would one by one when every
        /// one of them passes, and changes nothing otherwise, naming the
        /// first that fails; holds placed in a set are held after it.
        #[test]
        fn a_set_is_all_or_nothing(
            sets in proptest::collection::vec(
                proptest::collection::vec((0u64..4, 0u64..4, 0u64..90, proptest::bool::ANY), 1..6), 0..60)
        ) {
            let mut b = book(&[(0, 100), (1, 100), (2, 100)]);
            for (n, items) in sets.into_iter().enumerate() {
                let items: Vec<Transaction> = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, (from, to, amount, hold))| {
                        let id = TxId::new(format!("s{n}-{i}")).unwrap();
                        let signature = crate::ledger::Signature::NONE;
                        if hold {
                            Transaction::Hold { id, from, to, amount, timeout_ms: 3_000, expires_ms: 1, signature }
                        } else {
                            Transaction::Transfer { id, from, to, amount, expires_ms: 1, signature }
                        }
                    })
                    .collect();
                let at = At { height: n as u64 + 1, block_ms: n as u64 * 1_000 };
                release_due(&mut b, at.block_ms);
                let mut one_by_one = b.clone();
                let first_bad = items.iter().position(|tx| apply(&mut one_by_one, tx, at).is_err());
                let before = b.clone();
                let result = apply(&mut b, &Transaction::Set { items }, at);
                match first_bad {
                    None => {
                        prop_assert!(result.is_ok(), "{:?}", result);
                        prop_assert_eq!(&b.balances, &one_by_one.balances);
                        prop_assert_eq!(&b.registry, &one_by_one.registry);
                    }
                    Some(i) => {
                        let named = matches!(result, Err(RejectReason::InSet { item, .. }) if item as usize == i + 1);
                        prop_assert!(named, "{:?} for item {}", result, i + 1);
                        prop_assert_eq!(&b.balances, &before.balances);
                        prop_assert_eq!(&b.registry, &before.registry);
                    }
                }
                prop_assert_eq!(b.balances.values().sum::<u64>(), 300);
                for (account, balance) in &b.balances {
                    prop_assert!(b.registry.holds.held(*account).out <= *balance);
                }
            }
        }
    }
}
