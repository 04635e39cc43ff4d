//! The client-facing side of a node: the gRPC service and forwarding to
//! the leader.

pub mod service;

pub use service::BankApi;

use crate::raft::Raft;
use crate::storage::LogStore;

/// Longest a local read waits for this node's apply to catch up.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits, briefly, until this node has applied every entry it knows to be
/// committed. The leader answers a transfer once its apply has computed the
/// outcome, before the block is written; a lookup of that transfer on the
/// same node right after the answer then still finds it. Called only when a
/// local lookup found nothing, so hits pay nothing.
pub async fn catch_up_with_commit(raft: &Raft, log_store: &LogStore) {
    let Some(committed) = log_store.committed_index() else {
        return;
    };
    let mut metrics = raft.metrics();
    let _ = tokio::time::timeout(
        CATCH_UP_WAIT,
        metrics.wait_for(|m| m.last_applied.is_some_and(|a| a.index >= committed)),
    )
    .await;
}
