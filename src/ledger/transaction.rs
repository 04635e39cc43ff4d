//! Transactions: what a block carries. Each has a canonical, fixed-layout
//! binary encoding: its hash (and so the merkle root and the block hash)
//! depends on nothing a serializer might reorder.

use super::keys::{PublicKey, Signature};
use super::{merkle, AccountId, Amount, Hash32};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest transaction id accepted, in bytes.
pub const TX_ID_MAX_BYTES: usize = 64;

/// A client-chosen transaction id, unique forever within a chain.
///
/// Ids are short printable ASCII so they can be typed, logged and used as
/// storage keys without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TxId(String);

/// Why a string is not a valid transaction id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxIdError {
    /// The id is empty.
    #[error("transaction id is empty")]
    Empty,
    /// The id is longer than [`TX_ID_MAX_BYTES`].
    #[error("transaction id is {0} bytes long; at most {TX_ID_MAX_BYTES} allowed")]
    TooLong(usize),
    /// The id holds a character outside `[A-Za-z0-9._:-]`.
    #[error("transaction id {0:?} may only hold letters, digits and . _ : -")]
    BadChar(String),
}

impl TxId {
    pub fn new(s: impl Into<String>) -> Result<TxId, TxIdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(TxIdError::Empty);
        }
        if s.len() > TX_ID_MAX_BYTES {
            return Err(TxIdError::TooLong(s.len()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(TxIdError::BadChar(s));
        }
        Ok(TxId(s))
    }

    /// A fresh random id (128 bits), for clients that do not choose one.
    pub fn random() -> TxId {
        TxId(format!("tx-{:032x}", rand::random::<u128>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TxId {
    type Error = TxIdError;
    fn try_from(s: String) -> Result<TxId, TxIdError> {
        TxId::new(s)
    }
}

impl From<TxId> for String {
    fn from(id: TxId) -> String {
        id.0
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Whose key signs a transaction: an account's owner, or one of the
/// role keys genesis names (by position in its `auditors`, `registrars`
/// or `issuers` list).
///
/// Transaction ids are scoped to the signer: each account (and each role
/// key) has ids of its own, so nobody can take another's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signer {
    Account(AccountId),
    /// May sign audited balance checks of any account.
    Auditor(u32),
    /// May open, freeze and unfreeze accounts.
    Registrar(u32),
    /// May issue money into accounts and redeem it from them.
    Issuer(u32),
    /// No key: the ids of the holds an account places (its owner signs
    /// them as [`Signer::Account`]). Holds have ids of their own, so a
    /// record here is always a hold's.
    Holds(AccountId),
    /// No key: where the settlements of an account's holds are recorded. A
    /// post or void that succeeds leaves a record under its hold's id here
    /// besides its own, so a hold settles once.
    Settled(AccountId),
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::Account(a) => write!(f, "account {a}"),
            Signer::Auditor(i) => write!(f, "auditor {i}"),
            Signer::Registrar(i) => write!(f, "registrar {i}"),
            Signer::Issuer(i) => write!(f, "issuer {i}"),
            Signer::Holds(a) => write!(f, "the holds of account {a}"),
            Signer::Settled(a) => write!(f, "the settlements of account {a}'s holds"),
        }
    }
}

impl Signer {
    /// Fixed-width encoding: a tag byte, then the number big-endian in 8.
    pub fn to_bytes(self) -> [u8; 9] {
        let (tag, n) = match self {
            Signer::Account(a) => (1u8, a),
            Signer::Auditor(i) => (2u8, u64::from(i)),
            Signer::Registrar(i) => (3u8, u64::from(i)),
            Signer::Issuer(i) => (4u8, u64::from(i)),
            Signer::Holds(a) => (5u8, a),
            Signer::Settled(a) => (6u8, a),
        };
        let mut out = [0u8; 9];
        out[0] = tag;
        out[1..].copy_from_slice(&n.to_be_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Signer> {
        let (&tag, rest) = b.split_first()?;
        let n = u64::from_be_bytes(rest.try_into().ok()?);
        let role = || u32::try_from(n).ok();
        match tag {
            1 => Some(Signer::Account(n)),
            2 => role().map(Signer::Auditor),
            3 => role().map(Signer::Registrar),
            4 => role().map(Signer::Issuer),
            5 => Some(Signer::Holds(n)),
            6 => Some(Signer::Settled(n)),
            _ => None,
        }
    }

    /// The account whose owner signs, if an owner does.
    pub fn account(self) -> Option<AccountId> {
        match self {
            Signer::Account(a) => Some(a),
            _ => None,
        }
    }
}

/// What a transaction is known by: its id within its signer's ids.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct TxKey {
    pub signer: Signer,
    pub id: TxId,
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.id, self.signer)
    }
}

/// One entry of a block.
///
/// Serialized internally tagged (`{"type":"transfer",...}`) for people, and
/// externally tagged for bincode, which cannot read internally tagged enums.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Transaction {
    /// Move `amount` from one account to another, signed by the source
    /// account's key (see [`super::keys`]) and valid until the first block
    /// whose time is past `expires_ms` (Unix milliseconds).
    Transfer {
        id: TxId,
        from: AccountId,
        to: AccountId,
        amount: Amount,
        expires_ms: u64,
        signature: Signature,
    },
    /// Record, in the chain, the balance of an account at this point: an
    /// auditor's proof of what the ledger said and when. Signed by the
    /// account's owner, or by genesis auditor `auditor`.
    BalanceCheck {
        id: TxId,
        account: AccountId,
        auditor: Option<u32>,
        expires_ms: u64,
        signature: Signature,
    },
    /// Opening balance and public key of an account; valid only in the
    /// genesis block.
    Allocation {
        account: AccountId,
        amount: Amount,
        public_key: PublicKey,
    },
    /// Open account `account`, at balance 0, owned by `public_key`; signed
    /// by genesis registrar `registrar`.
    OpenAccount {
        id: TxId,
        account: AccountId,
        public_key: PublicKey,
        registrar: u32,
        expires_ms: u64,
        signature: Signature,
    },
    /// Freeze an account (it may receive but not send) or unfreeze it;
    /// signed by genesis registrar `registrar`.
    FreezeAccount {
        id: TxId,
        account: AccountId,
        frozen: bool,
        registrar: u32,
        expires_ms: u64,
        signature: Signature,
    },
    /// Close an account for good (its balance must be 0, nothing held);
    /// signed by its owner.
    CloseAccount {
        id: TxId,
        account: AccountId,
        expires_ms: u64,
        signature: Signature,
    },
    /// Replace the key that signs for an account; signed by the current key.
    RotateKey {
        id: TxId,
        account: AccountId,
        public_key: PublicKey,
        expires_ms: u64,
        signature: Signature,
    },
    /// Create `amount` of money in `account`; signed by genesis issuer `issuer`.
    Issue {
        id: TxId,
        account: AccountId,
        amount: Amount,
        issuer: u32,
        expires_ms: u64,
        signature: Signature,
    },
    /// Take `amount` of money out of `account` and out of existence: signed
    /// by genesis issuer `issuer`, or (`issuer` none) by the account's
    /// owner, as a withdrawal.
    Redeem {
        id: TxId,
        account: AccountId,
        amount: Amount,
        issuer: Option<u32>,
        expires_ms: u64,
        signature: Signature,
    },
    /// Reserve `amount` of `from` for `to` (see [`super::accounts::Hold`]):
    /// `from`'s available balance drops by it until `to` posts or voids the
    /// hold, or `timeout_ms` after the time of the block that holds it,
    /// when the chain releases it. Signed by `from`'s owner.
    Hold {
        id: TxId,
        from: AccountId,
        to: AccountId,
        amount: Amount,
        timeout_ms: u64,
        expires_ms: u64,
        signature: Signature,
    },
    /// Settle hold `hold_id` of account `from`: move `amount` (up to the
    /// held amount) to `to` and release the rest. Signed by `to`'s owner,
    /// the hold's receiver: the sender agreed to up to the amount by
    /// signing the hold, and the timeout bounds how long it waits. `id` is
    /// the post's own, among `to`'s ids.
    Post {
        id: TxId,
        hold_id: TxId,
        from: AccountId,
        to: AccountId,
        amount: Amount,
        expires_ms: u64,
        signature: Signature,
    },
    /// Release hold `hold_id` of account `from` whole; signed by its
    /// receiver `to`.
    Void {
        id: TxId,
        hold_id: TxId,
        from: AccountId,
        to: AccountId,
        expires_ms: u64,
        signature: Signature,
    },
    /// A transfer set: transfers, issues, redeems, holds, posts and voids
    /// that commit together, in order, or not at all. Each item is signed
    /// by its own signer over the set's digest too ([`set_digest`]), so no
    /// item counts outside its set; the set has no id or signature of its
    /// own.
    Set { items: Vec<Transaction> },
}

/// Most items of one transfer set.
pub const MAX_SET_ITEMS: usize = 256;

/// The shape shared by both serialized forms.
macro_rules! tx_mirror {
    ($name:ident $(, #[$attr:meta])*) => {
        #[derive(Serialize, Deserialize)]
        $(#[$attr])*
        enum $name {
            Transfer { id: TxId, from: AccountId, to: AccountId, amount: Amount, expires_ms: u64, signature: Signature },
            BalanceCheck { id: TxId, account: AccountId, auditor: Option<u32>, expires_ms: u64, signature: Signature },
            Allocation { account: AccountId, amount: Amount, public_key: PublicKey },
            OpenAccount { id: TxId, account: AccountId, public_key: PublicKey, registrar: u32, expires_ms: u64, signature: Signature },
            FreezeAccount { id: TxId, account: AccountId, frozen: bool, registrar: u32, expires_ms: u64, signature: Signature },
            CloseAccount { id: TxId, account: AccountId, expires_ms: u64, signature: Signature },
            RotateKey { id: TxId, account: AccountId, public_key: PublicKey, expires_ms: u64, signature: Signature },
            Issue { id: TxId, account: AccountId, amount: Amount, issuer: u32, expires_ms: u64, signature: Signature },
            Redeem { id: TxId, account: AccountId, amount: Amount, issuer: Option<u32>, expires_ms: u64, signature: Signature },
            Hold { id: TxId, from: AccountId, to: AccountId, amount: Amount, timeout_ms: u64, expires_ms: u64, signature: Signature },
            Post { id: TxId, hold_id: TxId, from: AccountId, to: AccountId, amount: Amount, expires_ms: u64, signature: Signature },
            Void { id: TxId, hold_id: TxId, from: AccountId, to: AccountId, expires_ms: u64, signature: Signature },
            Set { items: Vec<Transaction> },
        }

        impl From<Transaction> for $name {
            fn from(t: Transaction) -> $name {
                match t {
                    Transaction::Transfer { id, from, to, amount, expires_ms, signature } => $name::Transfer { id, from, to, amount, expires_ms, signature },
                    Transaction::BalanceCheck { id, account, auditor, expires_ms, signature } => $name::BalanceCheck { id, account, auditor, expires_ms, signature },
                    Transaction::Allocation { account, amount, public_key } => $name::Allocation { account, amount, public_key },
                    Transaction::OpenAccount { id, account, public_key, registrar, expires_ms, signature } => $name::OpenAccount { id, account, public_key, registrar, expires_ms, signature },
                    Transaction::FreezeAccount { id, account, frozen, registrar, expires_ms, signature } => $name::FreezeAccount { id, account, frozen, registrar, expires_ms, signature },
                    Transaction::CloseAccount { id, account, expires_ms, signature } => $name::CloseAccount { id, account, expires_ms, signature },
                    Transaction::RotateKey { id, account, public_key, expires_ms, signature } => $name::RotateKey { id, account, public_key, expires_ms, signature },
                    Transaction::Issue { id, account, amount, issuer, expires_ms, signature } => $name::Issue { id, account, amount, issuer, expires_ms, signature },
                    Transaction::Redeem { id, account, amount, issuer, expires_ms, signature } => $name::Redeem { id, account, amount, issuer, expires_ms, signature },
                    Transaction::Hold { id, from, to, amount, timeout_ms, expires_ms, signature } => $name::Hold { id, from, to, amount, timeout_ms, expires_ms, signature },
                    Transaction::Post { id, hold_id, from, to, amount, expires_ms, signature } => $name::Post { id, hold_id, from, to, amount, expires_ms, signature },
                    Transaction::Void { id, hold_id, from, to, expires_ms, signature } => $name::Void { id, hold_id, from, to, expires_ms, signature },
                    Transaction::Set { items } => $name::Set { items },
                }
            }
        }

        impl From<$name> for Transaction {
            fn from(t: $name) -> Transaction {
                match t {
                    $name::Transfer { id, from, to, amount, expires_ms, signature } => Transaction::Transfer { id, from, to, amount, expires_ms, signature },
                    $name::BalanceCheck { id, account, auditor, expires_ms, signature } => Transaction::BalanceCheck { id, account, auditor, expires_ms, signature },
                    $name::Allocation { account, amount, public_key } => Transaction::Allocation { account, amount, public_key },
                    $name::OpenAccount { id, account, public_key, registrar, expires_ms, signature } => Transaction::OpenAccount { id, account, public_key, registrar, expires_ms, signature },
                    $name::FreezeAccount { id, account, frozen, registrar, expires_ms, signature } => Transaction::FreezeAccount { id, account, frozen, registrar, expires_ms, signature },
                    $name::CloseAccount { id, account, expires_ms, signature } => Transaction::CloseAccount { id, account, expires_ms, signature },
                    $name::RotateKey { id, account, public_key, expires_ms, signature } => Transaction::RotateKey { id, account, public_key, expires_ms, signature },
                    $name::Issue { id, account, amount, issuer, expires_ms, signature } => Transaction::Issue { id, account, amount, issuer, expires_ms, signature },
                    $name::Redeem { id, account, amount, issuer, expires_ms, signature } => Transaction::Redeem { id, account, amount, issuer, expires_ms, signature },
                    $name::Hold { id, from, to, amount, timeout_ms, expires_ms, signature } => Transaction::Hold { id, from, to, amount, timeout_ms, expires_ms, signature },
                    $name::Post { id, hold_id, from, to, amount, expires_ms, signature } => Transaction::Post { id, hold_id, from, to, amount, expires_ms, signature },
                    $name::Void { id, hold_id, from, to, expires_ms, signature } => Transaction::Void { id, hold_id, from, to, expires_ms, signature },
                    $name::Set { items } => Transaction::Set { items },
                }
            }
        }
    };
}

tx_mirror!(TxHuman, #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]);
tx_mirror!(TxBinary);

impl Serialize for Transaction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            TxHuman::from(self.clone()).serialize(s)
        } else {
            TxBinary::from(self.clone()).serialize(s)
        }
    }
}

thread_local! {
    /// How deep in transactions the deserializer on this thread is: a set's
    /// items are one level down, and may not be sets themselves, so hostile
    /// input cannot nest sets until the stack runs out.
    static DEPTH: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// One level of [`DEPTH`], left on drop (on errors too).
struct Level;

impl Level {
    fn enter() -> (Level, u8) {
        let depth = DEPTH.with(|d| {
            let v = d.get();
            d.set(v.saturating_add(1));
            v
        });
        (Level, depth)
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

impl<'de> Deserialize<'de> for Transaction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Transaction, D::Error> {
        let (_level, depth) = Level::enter();
        if depth > 1 {
            return Err(serde::de::Error::custom("a transfer set cannot hold another set"));
        }
        let tx = if d.is_human_readable() {
            TxHuman::deserialize(d).map(Transaction::from)?
        } else {
            TxBinary::deserialize(d).map(Transaction::from)?
        };
        if depth == 1 && matches!(tx, Transaction::Set { .. }) {
            return Err(serde::de::Error::custom("a transfer set cannot hold another set"));
        }
        Ok(tx)
    }
}

/// Every kind's name, as the JSON views' `type` and the metrics' `kind` label.
pub const KINDS: [&str; 13] = [
    "transfer",
    "balance_check",
    "allocation",
    "open_account",
    "freeze_account",
    "close_account",
    "rotate_key",
    "issue",
    "redeem",
    "hold",
    "post",
    "void",
    "set",
];

const KIND_TRANSFER: u8 = 1;
const KIND_BALANCE_CHECK: u8 = 2;
const KIND_ALLOCATION: u8 = 3;
const KIND_OPEN_ACCOUNT: u8 = 4;
const KIND_FREEZE_ACCOUNT: u8 = 5;
const KIND_CLOSE_ACCOUNT: u8 = 6;
const KIND_ROTATE_KEY: u8 = 7;
const KIND_ISSUE: u8 = 8;
const KIND_REDEEM: u8 = 9;
const KIND_HOLD: u8 = 10;
const KIND_POST: u8 = 11;
const KIND_VOID: u8 = 12;
const KIND_SET: u8 = 13;

/// The fields every signed transaction has.
struct SignedParts<'a> {
    id: &'a TxId,
    expires_ms: u64,
    signature: &'a Signature,
}

impl Transaction {
    /// Id, expiry and signature of a signed transaction; none for allocations.
    fn signed_parts(&self) -> Option<SignedParts<'_>> {
        let (id, expires_ms, signature) = match self {
            Transaction::Transfer {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::BalanceCheck {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::OpenAccount {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::FreezeAccount {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::CloseAccount {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::RotateKey {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::Issue {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::Redeem {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::Hold {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::Post {
                id,
                expires_ms,
                signature,
                ..
            }
            | Transaction::Void {
                id,
                expires_ms,
                signature,
                ..
            } => (id, *expires_ms, signature),
            Transaction::Allocation { .. } | Transaction::Set { .. } => return None,
        };
        Some(SignedParts {
            id,
            expires_ms,
            signature,
        })
    }

    /// Who signs this transaction; allocations are genesis's own.
    pub fn signer(&self) -> Option<Signer> {
        Some(match self {
            Transaction::Transfer { from, .. } => Signer::Account(*from),
            Transaction::BalanceCheck { account, auditor, .. } => {
                auditor.map_or(Signer::Account(*account), Signer::Auditor)
            }
            Transaction::Allocation { .. } | Transaction::Set { .. } => return None,
            Transaction::OpenAccount { registrar, .. } | Transaction::FreezeAccount { registrar, .. } => {
                Signer::Registrar(*registrar)
            }
            Transaction::CloseAccount { account, .. } | Transaction::RotateKey { account, .. } => {
                Signer::Account(*account)
            }
            Transaction::Issue { issuer, .. } => Signer::Issuer(*issuer),
            Transaction::Redeem { account, issuer, .. } => issuer.map_or(Signer::Account(*account), Signer::Issuer),
            Transaction::Hold { from, .. } => Signer::Account(*from),
            Transaction::Post { to, .. } | Transaction::Void { to, .. } => Signer::Account(*to),
        })
    }

    /// The signature a signed transaction carries.
    pub fn signature(&self) -> Option<&Signature> {
        self.signed_parts().map(|p| p.signature)
    }

    /// Sets the signature of a signed transaction (allocations carry none).
    pub fn set_signature(&mut self, new: Signature) {
        match self {
            Transaction::Transfer { signature, .. }
            | Transaction::BalanceCheck { signature, .. }
            | Transaction::OpenAccount { signature, .. }
            | Transaction::FreezeAccount { signature, .. }
            | Transaction::CloseAccount { signature, .. }
            | Transaction::RotateKey { signature, .. }
            | Transaction::Issue { signature, .. }
            | Transaction::Redeem { signature, .. }
            | Transaction::Hold { signature, .. }
            | Transaction::Post { signature, .. }
            | Transaction::Void { signature, .. } => *signature = new,
            Transaction::Allocation { .. } | Transaction::Set { .. } => {}
        }
    }

    /// Unix milliseconds past which a block may no longer hold it.
    pub fn expires_ms(&self) -> Option<u64> {
        self.signed_parts().map(|p| p.expires_ms)
    }

    /// The id clients know this transaction by; allocations have none.
    pub fn id(&self) -> Option<&TxId> {
        self.signed_parts().map(|p| p.id)
    }

    /// The name of the kind, as the JSON views write it in `type`.
    pub fn kind(&self) -> &'static str {
        KINDS[self.kind_index()]
    }

    /// The position of [`Transaction::kind`] in [`KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Transaction::Transfer { .. } => 0,
            Transaction::BalanceCheck { .. } => 1,
            Transaction::Allocation { .. } => 2,
            Transaction::OpenAccount { .. } => 3,
            Transaction::FreezeAccount { .. } => 4,
            Transaction::CloseAccount { .. } => 5,
            Transaction::RotateKey { .. } => 6,
            Transaction::Issue { .. } => 7,
            Transaction::Redeem { .. } => 8,
            Transaction::Hold { .. } => 9,
            Transaction::Post { .. } => 10,
            Transaction::Void { .. } => 11,
            Transaction::Set { .. } => 12,
        }
    }

    /// The accounts whose state this transaction reads or changes.
    pub fn accounts(&self) -> Vec<AccountId> {
        match *self {
            Transaction::Transfer { from, to, .. }
            | Transaction::Hold { from, to, .. }
            | Transaction::Post { from, to, .. }
            | Transaction::Void { from, to, .. } => vec![from, to],
            Transaction::BalanceCheck { account, .. }
            | Transaction::Allocation { account, .. }
            | Transaction::OpenAccount { account, .. }
            | Transaction::FreezeAccount { account, .. }
            | Transaction::CloseAccount { account, .. }
            | Transaction::RotateKey { account, .. }
            | Transaction::Issue { account, .. }
            | Transaction::Redeem { account, .. } => vec![account],
            Transaction::Set { ref items } => {
                let mut all: Vec<AccountId> = items.iter().flat_map(Transaction::accounts).collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        }
    }

    /// The id within its signer's ids (a hold's within its sender's
    /// holds): what makes it unique forever.
    pub fn key(&self) -> Option<TxKey> {
        let signer = match self {
            Transaction::Hold { from, .. } => Signer::Holds(*from),
            _ => self.signer()?,
        };
        Some(TxKey {
            signer,
            id: self.id()?.clone(),
        })
    }

    /// A set's items; any other transaction alone.
    pub fn items(&self) -> &[Transaction] {
        match self {
            Transaction::Set { items } => items,
            one => std::slice::from_ref(one),
        }
    }

    /// The hold a post or void settles.
    pub fn settles(&self) -> Option<super::HoldKey> {
        match self {
            Transaction::Post { hold_id, from, .. } | Transaction::Void { hold_id, from, .. } => Some(super::HoldKey {
                from: *from,
                id: hold_id.clone(),
            }),
            _ => None,
        }
    }

    /// Canonical encoding: the content ([`Transaction::encode_content`]),
    /// then a signed transaction's expiry and signature, an allocation's
    /// key: the block hash commits to all of it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Transaction::Set { items } = self {
            // Each item whole (content, expiry, signature): self-delimiting,
            // after the count.
            out.push(KIND_SET);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                item.encode(out);
            }
            return;
        }
        self.encode_content(out);
        match (self, self.signed_parts()) {
            (_, Some(p)) => {
                out.extend_from_slice(&p.expires_ms.to_be_bytes());
                out.extend_from_slice(&p.signature.0);
            }
            (Transaction::Allocation { public_key, .. }, None) => out.extend_from_slice(&public_key.0),
            (_, None) => {}
        }
    }

    /// What a client asks for: a kind byte, then fixed-width big-endian
    /// fields; the id is length-prefixed (u8, since ids are at most 64
    /// bytes). Neither the signature nor the expiry: resubmitting an id
    /// with a fresh expiry (and so a fresh signature) is the same request.
    fn encode_content(&self, out: &mut Vec<u8>) {
        fn id_bytes(out: &mut Vec<u8>, id: &TxId) {
            let b = id.as_str().as_bytes();
            // TxId::new bounds the length to 64, so it fits in one byte.
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        fn role(out: &mut Vec<u8>, role: Option<u32>) {
            match role {
                None => out.push(0),
                Some(i) => {
                    out.push(1);
                    out.extend_from_slice(&i.to_be_bytes());
                }
            }
        }
        match self {
            Transaction::Transfer {
                id, from, to, amount, ..
            } => {
                out.push(KIND_TRANSFER);
                id_bytes(out, id);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
            Transaction::BalanceCheck {
                id, account, auditor, ..
            } => {
                out.push(KIND_BALANCE_CHECK);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
                role(out, *auditor);
            }
            Transaction::Allocation { account, amount, .. } => {
                out.push(KIND_ALLOCATION);
                out.extend_from_slice(&account.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
            Transaction::OpenAccount {
                id,
                account,
                public_key,
                registrar,
                ..
            } => {
                out.push(KIND_OPEN_ACCOUNT);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
                out.extend_from_slice(&public_key.0);
                out.extend_from_slice(&registrar.to_be_bytes());
            }
            Transaction::FreezeAccount {
                id,
                account,
                frozen,
                registrar,
                ..
            } => {
                out.push(KIND_FREEZE_ACCOUNT);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
                out.push(u8::from(*frozen));
                out.extend_from_slice(&registrar.to_be_bytes());
            }
            Transaction::CloseAccount { id, account, .. } => {
                out.push(KIND_CLOSE_ACCOUNT);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
            }
            Transaction::RotateKey {
                id,
                account,
                public_key,
                ..
            } => {
                out.push(KIND_ROTATE_KEY);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
                out.extend_from_slice(&public_key.0);
            }
            Transaction::Issue {
                id,
                account,
                amount,
                issuer,
                ..
            } => {
                out.push(KIND_ISSUE);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
                out.extend_from_slice(&issuer.to_be_bytes());
            }
            Transaction::Redeem {
                id,
                account,
                amount,
                issuer,
                ..
            } => {
                out.push(KIND_REDEEM);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
                role(out, *issuer);
            }
            Transaction::Hold {
                id,
                from,
                to,
                amount,
                timeout_ms,
                ..
            } => {
                out.push(KIND_HOLD);
                id_bytes(out, id);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
                out.extend_from_slice(&timeout_ms.to_be_bytes());
            }
            Transaction::Post {
                id,
                hold_id,
                from,
                to,
                amount,
                ..
            } => {
                out.push(KIND_POST);
                id_bytes(out, id);
                id_bytes(out, hold_id);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
            Transaction::Void {
                id, hold_id, from, to, ..
            } => {
                out.push(KIND_VOID);
                id_bytes(out, id);
                id_bytes(out, hold_id);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
            }
            Transaction::Set { items } => {
                out.push(KIND_SET);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for item in items {
                    item.encode_content(out);
                }
            }
        }
    }

    /// What the signer signs: a domain tag, the chain id (so a signature
    /// is good on one chain only), the content and the expiry. None for
    /// allocations, which nobody signs.
    pub fn signing_message(&self, chain_id: Hash32) -> Option<Vec<u8>> {
        let expires_ms = self.expires_ms()?;
        let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + 32 + self.encoded_len());
        m.extend_from_slice(SIGNING_DOMAIN);
        m.extend_from_slice(&chain_id.0);
        self.encode_content(&mut m);
        m.extend_from_slice(&expires_ms.to_be_bytes());
        Some(m)
    }

    /// What the signer of an item of a transfer set signs: its own domain
    /// tag, the chain id, the set's digest ([`set_digest`]), then the item
    /// as [`Transaction::signing_message`] has it. The item's signature so
    /// holds for this set only: alone, or in another set, it fails.
    pub fn set_item_signing_message(&self, chain_id: Hash32, digest: Hash32) -> Option<Vec<u8>> {
        let expires_ms = self.expires_ms()?;
        let mut m = Vec::with_capacity(SET_SIGNING_DOMAIN.len() + 64 + self.encoded_len());
        m.extend_from_slice(SET_SIGNING_DOMAIN);
        m.extend_from_slice(&chain_id.0);
        m.extend_from_slice(&digest.0);
        self.encode_content(&mut m);
        m.extend_from_slice(&expires_ms.to_be_bytes());
        Some(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(120);
        self.encode(&mut v);
        v
    }

    /// The transaction's hash: its merkle leaf hash.
    pub fn hash(&self) -> Hash32 {
        merkle::leaf_hash(&self.to_bytes())
    }

    /// Hash of what the transaction asks for, signature and expiry aside:
    /// a resubmitted id is "the same transaction" when this matches.
    /// (ed25519 signatures are not unique: the key's owner may sign the
    /// same transfer twice with different bytes, and that is still one
    /// transfer.)
    pub fn content_hash(&self) -> Hash32 {
        let mut v = Vec::with_capacity(48);
        self.encode_content(&mut v);
        merkle::leaf_hash(&v)
    }

    /// Size in bytes of the canonical encoding, for block size limits.
    pub fn encoded_len(&self) -> usize {
        // Kind byte and length-prefixed id, then the fixed fields.
        let id = |id: &TxId| 2 + id.as_str().len();
        let role = |r: &Option<u32>| 1 + if r.is_some() { 4 } else { 0 };
        let signed = 8 + 64;
        match self {
            Transaction::Transfer { id: i, .. } => id(i) + 24 + signed,
            Transaction::BalanceCheck { id: i, auditor, .. } => id(i) + 8 + role(auditor) + signed,
            Transaction::Allocation { .. } => 1 + 16 + 32,
            Transaction::OpenAccount { id: i, .. } => id(i) + 8 + 32 + 4 + signed,
            Transaction::FreezeAccount { id: i, .. } => id(i) + 8 + 1 + 4 + signed,
            Transaction::CloseAccount { id: i, .. } => id(i) + 8 + signed,
            Transaction::RotateKey { id: i, .. } => id(i) + 8 + 32 + signed,
            Transaction::Issue { id: i, .. } => id(i) + 16 + 4 + signed,
            Transaction::Redeem { id: i, issuer, .. } => id(i) + 16 + role(issuer) + signed,
            Transaction::Hold { id: i, .. } => id(i) + 32 + signed,
            Transaction::Post { id: i, hold_id, .. } => id(i) + id(hold_id) - 1 + 24 + signed,
            Transaction::Void { id: i, hold_id, .. } => id(i) + id(hold_id) - 1 + 16 + signed,
            Transaction::Set { items } => 1 + 4 + items.iter().map(Transaction::encoded_len).sum::<usize>(),
        }
    }
}

/// What every item of a transfer set of `items` signs beside itself: a
/// hash of the kind, the count and each item's content (expiries and
/// signatures aside, as in [`Transaction::content_hash`]), in order.
pub fn set_digest(items: &[Transaction]) -> Hash32 {
    let mut v = Vec::with_capacity(SET_SIGNING_DOMAIN.len() + 4 + 32 * items.len());
    v.extend_from_slice(SET_SIGNING_DOMAIN);
    v.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for item in items {
        v.extend_from_slice(&item.content_hash().0);
    }
    merkle::leaf_hash(&v)
}

/// Separates transaction signatures from any other use of the same key.
const SIGNING_DOMAIN: &[u8] = b"bank-ledger/tx/v2";
/// Separates the signature of a transfer set's item from a lone
/// transaction's.
const SET_SIGNING_DOMAIN: &[u8] = b"bank-ledger/set/v1";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tx_ids_are_validated() {
        assert!(TxId::new("abc-1.2_3:x").is_ok());
        assert_eq!(TxId::new(""), Err(TxIdError::Empty));
        assert_eq!(TxId::new("a".repeat(65)), Err(TxIdError::TooLong(65)));
        assert!(matches!(TxId::new("a b"), Err(TxIdError::BadChar(_))));
        assert!(matches!(TxId::new("é"), Err(TxIdError::BadChar(_))));
    }

    #[test]
    fn json_rejects_invalid_ids() {
        let bad = format!(
            r#"{{"type":"balance_check","id":"","account":1,"auditor":null,"expires_ms":1,"signature":"{}"}}"#,
            "00".repeat(64)
        );
        assert!(serde_json::from_str::<Transaction>(&bad.replace(r#""id":"""#, r#""id":"ok""#)).is_ok());
        assert!(serde_json::from_str::<Transaction>(&bad).is_err());
    }

    #[test]
    fn signature_and_expiry_are_in_the_hash_but_not_in_the_content_hash() {
        let t = |sig: u8, expires_ms: u64| Transaction::Transfer {
            id: TxId::new("x").unwrap(),
            from: 1,
            to: 2,
            amount: 3,
            expires_ms,
            signature: Signature([sig; 64]),
        };
        assert_ne!(t(1, 5).hash(), t(2, 5).hash());
        assert_ne!(t(1, 5).hash(), t(1, 6).hash());
        assert_eq!(t(1, 5).content_hash(), t(2, 6).content_hash());
        // The expiry is signed, the chain too.
        let chain = Hash32([7; 32]);
        assert_ne!(t(1, 5).signing_message(chain), t(1, 6).signing_message(chain));
        assert_ne!(t(1, 5).signing_message(chain), t(1, 5).signing_message(Hash32([8; 32])));
        let json = serde_json::to_string(&t(1, 5)).unwrap();
        assert!(
            json.contains(&format!("\"signature\":\"{}\"", "01".repeat(64))),
            "{json}"
        );
    }

    #[test]
    fn ids_belong_to_their_signer() {
        let id = TxId::new("pay-42").unwrap();
        let check = |auditor| Transaction::BalanceCheck {
            id: id.clone(),
            account: 5,
            auditor,
            expires_ms: 1,
            signature: Signature::NONE,
        };
        assert_eq!(check(None).key().unwrap().signer, Signer::Account(5));
        assert_eq!(check(Some(2)).key().unwrap().signer, Signer::Auditor(2));
        assert_ne!(check(None).content_hash(), check(Some(0)).content_hash());
        for s in [
            Signer::Account(u64::MAX),
            Signer::Auditor(7),
            Signer::Registrar(1),
            Signer::Issuer(u32::MAX),
            Signer::Holds(3),
            Signer::Settled(4),
        ] {
            assert_eq!(Signer::from_bytes(&s.to_bytes()), Some(s));
        }
        assert_eq!(Signer::from_bytes(&[3; 9]), None);
        assert_eq!(
            Signer::from_bytes(&[2, 0, 0, 0, 1, 0, 0, 0, 0]),
            None,
            "auditor past u32"
        );
    }

    #[test]
    fn a_set_encodes_its_items_and_may_not_hold_a_set() {
        let t = |id: &str| Transaction::Transfer {
            id: TxId::new(id).unwrap(),
            from: 1,
            to: 2,
            amount: 3,
            expires_ms: 4,
            signature: Signature([5; 64]),
        };
        let set = Transaction::Set {
            items: vec![t("a"), t("bb")],
        };
        assert_eq!(set.encoded_len(), set.to_bytes().len());
        assert_ne!(
            set.hash(),
            Transaction::Set {
                items: vec![t("bb"), t("a")]
            }
            .hash()
        );
        // Signatures and expiries are in the hash, not in the content hash.
        let mut resigned = set.clone();
        if let Transaction::Set { items } = &mut resigned {
            items[0].set_signature(Signature([6; 64]));
        }
        assert_ne!(set.hash(), resigned.hash());
        assert_eq!(set.content_hash(), resigned.content_hash());
        for back in [
            serde_json::from_str::<Transaction>(&serde_json::to_string(&set).unwrap()).unwrap(),
            bincode::deserialize::<Transaction>(&bincode::serialize(&set).unwrap()).unwrap(),
        ] {
            assert_eq!(back, set);
        }
        // Nested sets are refused by both decoders, however deep.
        let mut nested = set.clone();
        for _ in 0..3 {
            nested = Transaction::Set { items: vec![nested] };
            let json = serde_json::to_string(&nested).unwrap();
            let err = serde_json::from_str::<Transaction>(&json).unwrap_err().to_string();
            assert!(err.contains("cannot hold another set"), "{err}");
            let bin = bincode::serialize(&nested).unwrap();
            assert!(bincode::deserialize::<Transaction>(&bin).is_err());
        }
        // The guard is left behind: a set decodes again afterwards.
        assert!(serde_json::from_str::<Transaction>(&serde_json::to_string(&set).unwrap()).is_ok());
    }

    proptest! {
        #[test]
        fn distinct_transfers_hash_differently(
            a in (0u64..5, 0u64..5, 0u64..1000), b in (0u64..5, 0u64..5, 0u64..1000)
        ) {
            let t = |(from, to, amount): (u64, u64, u64)| Transaction::Transfer {
                id: TxId::new("same").unwrap(), from, to, amount, expires_ms: 9, signature: Signature::NONE,
            };
            prop_assert_eq!(a == b, t(a).hash() == t(b).hash());
        }

        #[test]
        fn encoded_len_matches_encoding(id in "[a-z0-9]{1,64}", x in any::<u64>()) {
            let id = TxId::new(id).unwrap();
            for tx in [
                Transaction::Transfer { id: id.clone(), from: x, to: 1, amount: 2, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::BalanceCheck { id: id.clone(), account: x, auditor: None, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::BalanceCheck { id: id.clone(), account: x, auditor: Some(3), expires_ms: x, signature: Signature([9; 64]) },
                Transaction::Allocation { account: x, amount: x, public_key: PublicKey([3; 32]) },
                Transaction::OpenAccount { id: id.clone(), account: x, public_key: PublicKey([3; 32]), registrar: 1, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::FreezeAccount { id: id.clone(), account: x, frozen: true, registrar: 2, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::CloseAccount { id: id.clone(), account: x, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::RotateKey { id: id.clone(), account: x, public_key: PublicKey([4; 32]), expires_ms: x, signature: Signature([9; 64]) },
                Transaction::Issue { id: id.clone(), account: x, amount: x, issuer: 0, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::Redeem { id: id.clone(), account: x, amount: x, issuer: None, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::Redeem { id: id.clone(), account: x, amount: x, issuer: Some(7), expires_ms: x, signature: Signature([9; 64]) },
                Transaction::Hold { id: id.clone(), from: x, to: 2, amount: x, timeout_ms: x, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::Post { id: id.clone(), hold_id: TxId::new("h-1").unwrap(), from: x, to: 2, amount: x, expires_ms: x, signature: Signature([9; 64]) },
                Transaction::Void { id: id.clone(), hold_id: TxId::new("h-1").unwrap(), from: x, to: 2, expires_ms: x, signature: Signature([9; 64]) },
            ] {
                prop_assert_eq!(tx.encoded_len(), tx.to_bytes().len());
            }
        }

        #[test]
        fn encoding_is_injective_across_id_boundaries(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            // Length prefixes keep ("ab", from) and ("a", ...) from colliding.
            let c = |id: &str| Transaction::BalanceCheck {
                id: TxId::new(id).unwrap(), account: 7, auditor: None, expires_ms: 1, signature: Signature::NONE,
            };
            let (t1, t2) = (c(&a), c(&b));
            prop_assert_eq!(a == b, t1.to_bytes() == t2.to_bytes());
        }
    }
}
