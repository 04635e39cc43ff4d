//! openraft wiring: the type configuration, the tonic transport between
//! nodes, the Raft gRPC service, and the barrier linearizable reads wait at.

pub mod faults;
pub mod network;
pub mod peers;
pub mod read_barrier;
pub mod service;

use crate::ledger::{Applied, Block, Hash32, RejectReason};
use serde::{Deserialize, Serialize};

pub use openraft::BasicNode;

/// Node ids are the `N` in `--id N`.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The ledger's Raft: each normal log entry is one mined block.
    pub TypeConfig:
        D = Block,
        R = BlockOutcome,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;

/// The committed outcome of one transaction, as stored for deduplication and
/// returned to every client that submits the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    /// [`crate::ledger::Transaction::content_hash`]: a resubmission must match it.
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
