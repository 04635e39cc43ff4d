//! What became of committed transactions and blocks: the records every node
//! computes alike when it applies a block, stored for deduplication and
//! handed back to clients.

use super::{Applied, Hash32, RejectReason};
use serde::{Deserialize, Serialize};

/// The committed outcome of one transaction, as stored for deduplication and
/// returned to every client that submits the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    /// [`super::Transaction::content_hash`]: a resubmission must match it.
    pub tx_hash: Hash32,
    pub height: u64,
    pub block_hash: Hash32,
    pub outcome: Result<Applied, RejectReason>,
}

/// What applying one Raft entry produced, handed back to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockOutcome {
    /// A blank or membership entry: no block.
    NoBlock,
    /// The block extended the chain; one record per transaction, in order.
    Committed {
        height: u64,
        hash: Hash32,
        records: Vec<TxRecord>,
    },
    /// The block no longer linked to the tip (a leader change overtook it)
    /// and was refused on every node; its transactions may be retried.
    Refused { reason: String },
}
