//! The ledger's on-disk layout: the sled keys and trees, how values are
//! encoded, and small helpers every part of the ledger store writes with.
//!
//! Tree `ledger`:
//! - `m:format`: the data dir's [`FORMAT_VERSION`];
//! - `m:genesis`: the chain id, written last when a data dir is created;
//! - `m:head`: the [`Head`], rewritten by every applied block;
//! - `m:membership`: the last applied Raft membership;
//! - `l:<height>`: where block `<height>` is in the block files (a [`Location`]);
//! - `t:<tx id>\0<signer>`: the [`TxRecord`] of the first block that applied
//!   the id among its signer's ids (the signer as [`Signer::to_bytes`]; ids
//!   hold no NUL, so `t:<tx id>\0` lists every signer's use of an id);
//! - `d:<height>`: the balances block `<height>` changed, for blocks after the
//!   checkpoint;
//! - `v:a<account><height>`: the [`AccountInfo`](crate::ledger::AccountInfo)
//!   block `<height>` gave an account (only accounts not as genesis made
//!   them have one), and `v:s<height>`: the
//!   [`Supply`](crate::ledger::Supply) as of block `<height>`, and
//!   `v:h<sender><hold id>\0<height>`: a pending
//!   [`Hold`](crate::ledger::Hold) placed in block `<height>`, or `None`
//!   where that block ended it. Versioned entries ([`super::registry`]):
//!   the highest version at or below the tip is the entry.
//!
//! Tree `ledger_checkpoints`: every balance as of a height ([`Checkpoint`]),
//! keyed by that height. Tree `ledger_install`: the pending-install mark.
//! Tree `ledger_snapshot_check`: records a snapshot check computed.
//! Snapshot files carry records of their own kinds (`m:tip`, `m:applied`,
//! `a:<account>`, `b:<height>`), read by [`super::snapshot`].

use super::LedgerError;
use crate::codec;
use crate::ledger::{AccountId, Amount, Hash32, HoldKey, Signer, TxId, TxKey};
use crate::raft::LogId;
use crate::storage::block_file::{BlockFileError, BlockFiles, Location};
use std::collections::BTreeMap;

/// The layout of a data dir this build reads and writes. Bumped whenever a
/// key, tree or encoding above changes meaning; a data dir of another
/// version is refused at open (`Ledger::open`) rather than misread.
pub const FORMAT_VERSION: u32 = 2;

pub(super) const KEY_FORMAT: &[u8] = b"m:format";
pub(super) const KEY_GENESIS: &[u8] = b"m:genesis";
/// What every applied block updates, in one value: a [`Head`]. One insert
/// rather than one per field: sled rewrites a leaf for each insert, and one
/// instead of four cut a follower's CPU per small block by ~25% (measured by
/// `bank-bench --local`).
pub(super) const KEY_HEAD: &[u8] = b"m:head";
pub(super) const KEY_MEMBERSHIP: &[u8] = b"m:membership";
/// Where block `<height>` is in the block files: a [`Location`].
pub(super) const PREFIX_LOCATION: &[u8] = b"l:";
/// A transaction's [`TxRecord`](crate::ledger::TxRecord), by id.
pub(super) const PREFIX_TX: &[u8] = b"t:";
/// Balances a block changed (`Vec<(AccountId, Amount)>`), for blocks after the checkpoint.
pub(super) const PREFIX_DELTA: &[u8] = b"d:";
/// Versioned entries: a name, then the big-endian height of the version.
pub(super) const PREFIX_VERSIONED: &[u8] = b"v:";
/// The supply's versioned name.
pub(super) const SUPPLY_NAME: &[u8] = b"v:s";
/// Pending holds' versioned names start so ([`hold_name`]).
pub(super) const PREFIX_HOLD: &[u8] = b"v:h";
/// Snapshot records: the tip and the applied log id (folded into the head
/// on install), one balance per account, one block per height.
pub(super) const KEY_TIP: &[u8] = b"m:tip";
pub(super) const KEY_APPLIED: &[u8] = b"m:applied";
pub(super) const PREFIX_ACCOUNT: &[u8] = b"a:";
pub(super) const PREFIX_BLOCK: &[u8] = b"b:";
/// The tree of everything else the ledger stores.
pub(super) const LEDGER_TREE: &str = "ledger";
/// The balance checkpoints, keyed by the big-endian height they are at, in a
/// tree of their own: a checkpoint holds every balance (870 KB for 100,000
/// accounts), and in the ledger tree it shared a sled leaf with keys every
/// block writes, so sled wrote it out whole again each time it consolidated
/// that leaf (every ~50 blocks at one client). Here it is written once. A
/// start reads the highest at or below the tip and removes the others.
pub(super) const CHECKPOINT_TREE: &str = "ledger_checkpoints";
/// Holds the pending-install mark, outside the tree an install replaces.
pub(super) const INSTALL_TREE: &str = "ledger_install";
/// The transaction records a snapshot check computed, waiting for the
/// install ([`super::snapshot_check`]); empty otherwise.
pub(super) const SNAPSHOT_CHECK_TREE: &str = "ledger_snapshot_check";
/// In [`INSTALL_TREE`]: set while a snapshot install is under way.
pub(super) const KEY_PENDING_INSTALL: &[u8] = b"pending";

/// Every balance as of `.0`, the height of the block that wrote it.
pub(super) type Checkpoint = (u64, BTreeMap<AccountId, Amount>);

/// The applied state's head, rewritten by every block (see [`KEY_HEAD`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Head {
    /// The last log entry applied.
    pub(super) applied: Option<LogId>,
    /// Height and hash of the last stored block.
    pub(super) tip: Option<(u64, Hash32)>,
    /// XOR of SHA-256(account, balance) over all accounts, kept up to date
    /// per block, so a balance edited outside the ledger is caught at start
    /// in O(accounts) without replaying history.
    pub(super) balance_digest: Option<[u8; 32]>,
    /// Node-local: length of this node's chain.jsonl (`u64::MAX`: rebuild
    /// it); never part of a snapshot.
    pub(super) view_len: u64,
}

/// The stored head; a ledger tree without one has no chain yet.
pub(super) fn stored_head(tree: &sled::Tree) -> Result<Option<Head>, LedgerError> {
    match tree.get(KEY_HEAD)? {
        Some(v) => decode(&v, || "m:head".into()).map(Some),
        None => Ok(None),
    }
}

pub(super) fn balance_term(account: AccountId, balance: Amount) -> [u8; 32] {
    Hash32::digest(&[b"balance", &account.to_be_bytes(), &balance.to_be_bytes()]).0
}

pub(super) fn xor_into(digest: &mut [u8; 32], term: [u8; 32]) {
    for (d, t) in digest.iter_mut().zip(term) {
        *d ^= t;
    }
}

pub(super) fn balance_digest<'a>(balances: impl IntoIterator<Item = (&'a AccountId, &'a Amount)>) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (a, b) in balances {
        xor_into(&mut d, balance_term(*a, *b));
    }
    d
}

pub(super) fn block_key(height: u64) -> Vec<u8> {
    [PREFIX_BLOCK, &height.to_be_bytes()].concat()
}
pub(super) fn location_key(height: u64) -> Vec<u8> {
    [PREFIX_LOCATION, &height.to_be_bytes()].concat()
}

pub(super) fn account_key(account: AccountId) -> Vec<u8> {
    [PREFIX_ACCOUNT, &account.to_be_bytes()].concat()
}
/// The versioned name of an account's entry.
pub(super) fn account_info_name(account: AccountId) -> Vec<u8> {
    [b"v:a", &account.to_be_bytes()[..]].concat()
}
pub(super) fn account_info_key(account: AccountId, height: u64) -> Vec<u8> {
    version_key(&account_info_name(account), height)
}
/// A pending hold's versioned name: `v:h`, the sender, the id and a NUL
/// (ids hold no NUL, so no name is another's prefix).
pub(super) fn hold_name(key: &HoldKey) -> Vec<u8> {
    [
        PREFIX_HOLD,
        &key.from.to_be_bytes()[..],
        key.id.as_str().as_bytes(),
        b"\0",
    ]
    .concat()
}
pub(super) fn hold_version_key(key: &HoldKey, height: u64) -> Vec<u8> {
    version_key(&hold_name(key), height)
}
/// The hold a [`hold_name`] names.
pub(super) fn hold_of_name(name: &[u8]) -> Option<HoldKey> {
    let rest = name.strip_prefix(PREFIX_HOLD)?.strip_suffix(b"\0")?;
    let (from, id) = rest.split_at_checked(8)?;
    Some(HoldKey {
        from: u64::from_be_bytes(from.try_into().ok()?),
        id: TxId::new(std::str::from_utf8(id).ok()?).ok()?,
    })
}
pub(super) fn supply_key(height: u64) -> Vec<u8> {
    version_key(SUPPLY_NAME, height)
}
pub(super) fn version_key(name: &[u8], height: u64) -> Vec<u8> {
    [name, &height.to_be_bytes()].concat()
}
pub(super) fn delta_key(height: u64) -> Vec<u8> {
    [PREFIX_DELTA, &height.to_be_bytes()].concat()
}
pub(super) fn tx_key(key: &TxKey) -> Vec<u8> {
    [&tx_id_prefix(&key.id)[..], &key.signer.to_bytes()].concat()
}

/// The start of the keys of every signer's record of `id`.
pub(super) fn tx_id_prefix(id: &TxId) -> Vec<u8> {
    [PREFIX_TX, id.as_str().as_bytes(), b"\0"].concat()
}

/// The signer a record key names.
pub(super) fn tx_key_signer(key: &[u8]) -> Option<Signer> {
    Signer::from_bytes(key.get(key.len().checked_sub(9)?..)?)
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    at: impl FnOnce() -> String,
) -> Result<T, LedgerError> {
    codec::decode(bytes).map_err(|source| LedgerError::Decode { at: at(), source })
}

pub(super) fn encode<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, LedgerError> {
    codec::encode(value).map_err(|source| LedgerError::Encode { what, source })
}

pub(super) fn account_record(key: &[u8], value: &[u8]) -> Result<(AccountId, Amount), LedgerError> {
    let account = key_number(key, PREFIX_ACCOUNT, "account")?;
    Ok((account, decode(value, || format!("balance of {account}"))?))
}

/// Reads block `height` from the block files at the location `at` (as
/// stored); damage is a [`LedgerError::Corruption`] naming the height.
pub(super) fn read_block(blocks: &BlockFiles, height: u64, at: &[u8]) -> Result<Vec<u8>, LedgerError> {
    blocks.read(decode_location(height, at)?).map_err(block_damage(height))
}

/// A stored location of block `height`.
pub(super) fn decode_location(height: u64, at: &[u8]) -> Result<Location, LedgerError> {
    Location::decode(at).ok_or(LedgerError::Corruption {
        height,
        reason: "its location in the block files does not decode".into(),
    })
}

/// Damage found in the block files (a bad record, or the file of an indexed
/// one gone) is corruption of the chain at `height`.
pub(super) fn block_damage(height: u64) -> impl FnOnce(BlockFileError) -> LedgerError {
    move |e| match e {
        BlockFileError::Io { ref source, .. } if source.kind() != std::io::ErrorKind::NotFound => {
            LedgerError::Blocks(e)
        }
        _ => LedgerError::Corruption {
            height,
            reason: e.to_string(),
        },
    }
}

/// The big-endian number after `prefix` in a key.
pub(super) fn key_number(key: &[u8], prefix: &[u8], what: &str) -> Result<u64, LedgerError> {
    key.get(prefix.len()..)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| LedgerError::Corruption {
            height: 0,
            reason: format!("malformed {what} key"),
        })
}

/// Writes to a tree in batches of at most [`ChunkedBatch::MAX`] inserts, for
/// loads too big for one batch; atomic per chunk only.
///
/// Small chunks bound memory: sled copies a leaf for every insert and frees
/// the old copy only after the batch, which holds one epoch guard throughout.
/// A heap profile of a snapshot install (600,000 transfers) peaked at 438 MB,
/// most of it such copies, with chunks of 4,096; with 128, a fresh node's
/// peak RSS writing a 100,000-account genesis fell from 375 MB to 88 MB.
pub(super) struct ChunkedBatch<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    len: usize,
}

impl<'a> ChunkedBatch<'a> {
    const MAX: usize = 128;

    pub(super) fn new(tree: &'a sled::Tree) -> Self {
        ChunkedBatch {
            tree,
            batch: sled::Batch::default(),
            len: 0,
        }
    }

    pub(super) fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), LedgerError> {
        self.batch.insert(key, value);
        self.push()
    }

    fn push(&mut self) -> Result<(), LedgerError> {
        self.len += 1;
        if self.len >= Self::MAX {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.len = 0;
        }
        Ok(())
    }

    /// Writes what is pending now, so reads of the tree see it.
    pub(super) fn flush(&mut self) -> Result<(), LedgerError> {
        if self.len > 0 {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.len = 0;
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), LedgerError> {
        self.tree.apply_batch(self.batch)?;
        Ok(())
    }
}
