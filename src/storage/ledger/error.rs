//! What can go wrong in the ledger store, each variant a sentence naming
//! where: damage names the block height it was found at.

use crate::ledger::Hash32;
use crate::storage::block_file::BlockFileError;
use crate::storage::snapshot::SnapshotError;

/// What can go wrong opening or changing the ledger store.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt ledger data at {at}: {source}")]
    Decode { at: String, source: bincode::Error },
    /// A value could not be encoded (exceeds the size limit).
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: bincode::Error },
    /// The data dir holds another chain than the genesis file describes.
    #[error("genesis mismatch: the data dir holds chain {stored}, but the genesis file gives chain {file}; use the genesis file this node was created with, or a fresh data dir")]
    GenesisMismatch { stored: Hash32, file: Hash32 },
    /// The data dir was written in another on-disk layout (0: one from
    /// before layouts were versioned).
    #[error("data dir format version {found}, but this build reads format version {wanted}: use a build of that version, or a fresh data dir")]
    FormatVersion { found: u32, wanted: u32 },
    /// A stored block is missing or does not verify.
    #[error("corrupt chain at height {height}: {reason}")]
    Corruption { height: u64, reason: String },
    /// The genesis file cannot start a ledger.
    #[error(transparent)]
    Genesis(#[from] crate::ledger::GenesisError),
    /// A snapshot install replaced the ledger while it was being verified.
    #[error("a snapshot was installed while the chain was being verified; verify again")]
    VerifyInterrupted,
    /// The node is shutting down.
    #[error("verification stopped: the node is shutting down")]
    VerifyStopped,
    /// A file could not be read or written (a view, a blob sync).
    #[error("file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A snapshot file is unreadable or corrupt.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The block files failed (reads of a block name its height instead).
    #[error(transparent)]
    Blocks(#[from] BlockFileError),
    /// A received snapshot does not hold what replaying its blocks on this
    /// node's chain gives: it is not installed.
    #[error("snapshot refused: {reason}")]
    SnapshotRefused { reason: String },
    /// The previous snapshot cannot lend its records to a new one.
    #[error("previous snapshot: {0}")]
    PreviousSnapshot(Box<LedgerError>),
}
