//! Transactions: what a block carries. Each has a canonical, fixed-layout
//! binary encoding: its hash (and so the merkle root and the block hash)
//! depends on nothing a serializer might reorder.

use super::keys::{PublicKey, Signature, SignedTransfer};
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

/// One entry of a block.
///
/// Serialized internally tagged (`{"type":"transfer",...}`) for people, and
/// externally tagged for bincode, which cannot read internally tagged enums.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Transaction {
    /// Move `amount` from one account to another, signed by the source
    /// account's key (see [`super::keys`]).
    Transfer {
        id: TxId,
        from: AccountId,
        to: AccountId,
        amount: Amount,
        signature: Signature,
    },
    /// Record, in the chain, the balance of an account at this point: an
    /// auditor's proof of what the ledger said and when.
    BalanceCheck { id: TxId, account: AccountId },
    /// Opening balance and public key of an account; valid only in the
    /// genesis block.
    Allocation {
        account: AccountId,
        amount: Amount,
        public_key: PublicKey,
    },
}

/// The shape shared by both serialized forms.
macro_rules! tx_mirror {
    ($name:ident $(, #[$attr:meta])*) => {
        #[derive(Serialize, Deserialize)]
        $(#[$attr])*
        enum $name {
            Transfer { id: TxId, from: AccountId, to: AccountId, amount: Amount, signature: Signature },
            BalanceCheck { id: TxId, account: AccountId },
            Allocation { account: AccountId, amount: Amount, public_key: PublicKey },
        }

        impl From<Transaction> for $name {
            fn from(t: Transaction) -> $name {
                match t {
                    Transaction::Transfer { id, from, to, amount, signature } => $name::Transfer { id, from, to, amount, signature },
                    Transaction::BalanceCheck { id, account } => $name::BalanceCheck { id, account },
                    Transaction::Allocation { account, amount, public_key } => $name::Allocation { account, amount, public_key },
                }
            }
        }

        impl From<$name> for Transaction {
            fn from(t: $name) -> Transaction {
                match t {
                    $name::Transfer { id, from, to, amount, signature } => Transaction::Transfer { id, from, to, amount, signature },
                    $name::BalanceCheck { id, account } => Transaction::BalanceCheck { id, account },
                    $name::Allocation { account, amount, public_key } => Transaction::Allocation { account, amount, public_key },
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

impl<'de> Deserialize<'de> for Transaction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Transaction, D::Error> {
        if d.is_human_readable() {
            TxHuman::deserialize(d).map(Transaction::from)
        } else {
            TxBinary::deserialize(d).map(Transaction::from)
        }
    }
}

const KIND_TRANSFER: u8 = 1;
const KIND_BALANCE_CHECK: u8 = 2;
const KIND_ALLOCATION: u8 = 3;

impl Transaction {
    /// A transfer's signed fields; other transactions carry no signature.
    pub fn signed(&self) -> Option<SignedTransfer<'_>> {
        match self {
            Transaction::Transfer {
                id,
                from,
                to,
                amount,
                signature,
            } => Some(SignedTransfer {
                id,
                from: *from,
                to: *to,
                amount: *amount,
                signature,
            }),
            _ => None,
        }
    }

    /// The id clients know this transaction by; allocations have none.
    pub fn id(&self) -> Option<&TxId> {
        match self {
            Transaction::Transfer { id, .. } | Transaction::BalanceCheck { id, .. } => Some(id),
            Transaction::Allocation { .. } => None,
        }
    }

    /// Canonical encoding: a kind byte, then fixed-width big-endian fields;
    /// the id is length-prefixed (u8, since ids are at most 64 bytes). A
    /// transfer's signature and an allocation's key are part of it, so the
    /// block hash commits to them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_content(out);
        match self {
            Transaction::Transfer { signature, .. } => out.extend_from_slice(&signature.0),
            Transaction::Allocation { public_key, .. } => out.extend_from_slice(&public_key.0),
            Transaction::BalanceCheck { .. } => {}
        }
    }

    /// The encoding without the signature (or key): what a client asked for.
    fn encode_content(&self, out: &mut Vec<u8>) {
        fn id_bytes(out: &mut Vec<u8>, id: &TxId) {
            let b = id.as_str().as_bytes();
            // TxId::new bounds the length to 64, so it fits in one byte.
            out.push(b.len() as u8);
            out.extend_from_slice(b);
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
            Transaction::BalanceCheck { id, account } => {
                out.push(KIND_BALANCE_CHECK);
                id_bytes(out, id);
                out.extend_from_slice(&account.to_be_bytes());
            }
            Transaction::Allocation { account, amount, .. } => {
                out.push(KIND_ALLOCATION);
                out.extend_from_slice(&account.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(112);
        self.encode(&mut v);
        v
    }

    /// The transaction's hash: its merkle leaf hash.
    pub fn hash(&self) -> Hash32 {
        merkle::leaf_hash(&self.to_bytes())
    }

    /// Hash of what the transaction asks for, signature aside: a resubmitted
    /// id is "the same transaction" when this matches. (ed25519 signatures
    /// are not unique: the key's owner may sign the same transfer twice with
    /// different bytes, and that is still one transfer.)
    pub fn content_hash(&self) -> Hash32 {
        let mut v = Vec::with_capacity(48);
        self.encode_content(&mut v);
        merkle::leaf_hash(&v)
    }

    /// Size in bytes of the canonical encoding, for block size limits.
    pub fn encoded_len(&self) -> usize {
        match self {
            Transaction::Transfer { id, .. } => 1 + 1 + id.as_str().len() + 24 + 64,
            Transaction::BalanceCheck { id, .. } => 1 + 1 + id.as_str().len() + 8,
            Transaction::Allocation { .. } => 1 + 16 + 32,
        }
    }
}

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
        let bad = r#"{"type":"balance_check","id":"","account":1}"#;
        assert!(serde_json::from_str::<Transaction>(bad).is_err());
    }

    #[test]
    fn the_signature_is_in_the_hash_but_not_in_the_content_hash() {
        let t = |sig: u8| Transaction::Transfer {
            id: TxId::new("x").unwrap(),
            from: 1,
            to: 2,
            amount: 3,
            signature: Signature([sig; 64]),
        };
        assert_ne!(t(1).hash(), t(2).hash());
        assert_eq!(t(1).content_hash(), t(2).content_hash());
        let json = serde_json::to_string(&t(1)).unwrap();
        assert!(
            json.contains(&format!("\"signature\":\"{}\"", "01".repeat(64))),
            "{json}"
        );
    }

    proptest! {
        #[test]
        fn distinct_transfers_hash_differently(
            a in (0u64..5, 0u64..5, 0u64..1000), b in (0u64..5, 0u64..5, 0u64..1000)
        ) {
            let t = |(from, to, amount): (u64, u64, u64)| Transaction::Transfer {
                id: TxId::new("same").unwrap(), from, to, amount, signature: Signature::NONE,
            };
            prop_assert_eq!(a == b, t(a).hash() == t(b).hash());
        }

        #[test]
        fn encoded_len_matches_encoding(id in "[a-z0-9]{1,64}", x in any::<u64>()) {
            let id = TxId::new(id).unwrap();
            for tx in [
                Transaction::Transfer { id: id.clone(), from: x, to: 1, amount: 2, signature: Signature([9; 64]) },
                Transaction::BalanceCheck { id: id.clone(), account: x },
                Transaction::Allocation { account: x, amount: x, public_key: PublicKey([3; 32]) },
            ] {
                prop_assert_eq!(tx.encoded_len(), tx.to_bytes().len());
            }
        }

        #[test]
        fn encoding_is_injective_across_id_boundaries(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            // Length prefixes keep ("ab", from) and ("a", ...) from colliding.
            let t1 = Transaction::BalanceCheck { id: TxId::new(a.clone()).unwrap(), account: 7 };
            let t2 = Transaction::BalanceCheck { id: TxId::new(b.clone()).unwrap(), account: 7 };
            prop_assert_eq!(a == b, t1.to_bytes() == t2.to_bytes());
        }
    }
}
