//! openraft wiring: the type configuration, the tonic transport between
//! nodes, the Raft gRPC service, and the barrier linearizable reads wait at.

pub mod faults;
pub mod network;
pub mod peers;
pub mod read_barrier;
pub mod service;
pub mod snapshot_gate;

use crate::ledger::{Block, BlockOutcome};

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
