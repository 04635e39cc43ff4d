//! The ledger's pure domain: transactions, blocks, merkle trees, proof of work,
//! the rules that move money, genesis, keys and outcomes. No I/O lives here
//! (key files are [`crate::keystore`]'s, the genesis file is read by
//! [`crate::config::load_genesis`]), and nothing here knows sled, tonic or
//! openraft.

pub mod accounts;
pub mod block;
pub mod genesis;
pub mod hash;
pub mod keys;
pub mod merkle;
pub mod outcome;
pub mod rules;
mod sha256x2;
pub mod transaction;

pub use accounts::{AccountInfo, AccountState, Held, Hold, HoldEnd, HoldKey, Holds, Registry, Supply};
pub use block::{Block, BlockError, BlockHeader};
pub use genesis::{Genesis, GenesisError};
pub use hash::{Hash32, HexError};
pub use keys::{AccountKey, AccountKeys, PublicKey, Signature};
pub use outcome::{BlockOutcome, TxRecord};
pub use rules::{Applied, At, Book, BookRef, Books, RejectReason, View};
pub use transaction::{set_digest, Signer, Transaction, TxId, TxIdError, TxKey, MAX_SET_ITEMS};

/// Accounts are identified by plain integers.
pub type AccountId = u64;

/// Amounts are unsigned integers in minor units (cents): no floats, ever.
pub type Amount = u64;
