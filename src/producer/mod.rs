//! The leader's block producer: packs transactions from many requests into
//! one block, mines it once, and proposes it to Raft.
//!
//! Cut rule: whenever fewer than `pipeline_depth` blocks are in flight, the
//! producer takes every transaction already queued, up to `batch_max_txs`
//! transactions and `batch_max_bytes` bytes, and cuts a block at once: a lone
//! request never waits for company. While blocks replicate, new requests
//! queue up and form the next block, so batches grow with load by themselves.
//! Each block is one Raft entry: one fsync per node for the whole batch.
//!
//! Pipelining: block k+1 is checked, mined and proposed while block k
//! replicates. It is checked against the applied state plus the effects of
//! the blocks in flight, and linked to the last proposed block. If a block
//! in flight is refused (a leader change overtook it), every later one is
//! refused too, deterministically on every node; their transactions are
//! answered "retry" and the projection restarts from the applied state.

mod outcomes;
mod precheck;
mod worker;

use self::outcomes::Outcomes;
use self::worker::Worker;
use crate::ledger::{RejectReason, Transaction, TxRecord};
use crate::raft::read_barrier::ReadBarrier;
use crate::raft::{NodeId, Raft};
use crate::storage::Ledger;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub use crate::limits::MAX_BLOCK_BYTES;

/// Longest the producer waits for Raft's answer to one proposal. openraft
/// 0.9 answers a proposal when this node applies its entry or truncates it;
/// a deposed leader that receives the entry inside a snapshot (committed by
/// the next leader, never applied here) is never answered, and without a
/// bound that block would hold a pipeline slot, and every block after it,
/// forever. Callers told to retry resubmit the same ids, which answers them
/// with the first outcome if the block did commit.
pub(crate) const RAFT_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub use crate::config::ProducerConfig;

/// Why a submitted transaction has no committed outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// This node is not the leader (any more).
    #[error("not the leader")]
    NotLeader(Option<NodeId>),
    /// The block was overtaken by a leader change and refused on every node
    /// (nothing of it was applied), or Raft gave no answer in time (outcome
    /// unknown). Either way the transaction may be submitted again under
    /// the same id: a committed one answers with its first outcome.
    #[error("block refused, retry: {0}")]
    Retry(String),
    /// The transaction breaks a rule (pre-check on the leader).
    #[error("{0}")]
    Rejected(RejectReason),
    /// The queue is full.
    #[error("server overloaded: {0} transactions already waiting")]
    Overloaded(usize),
    /// Raft stopped.
    #[error("raft stopped: {0}")]
    Fatal(String),
}

type Reply = oneshot::Sender<Result<TxRecord, SubmitError>>;

struct Pending {
    tx: Transaction,
    reply: Reply,
    queued_at: Instant,
}

/// Handle to submit transactions to the producer task.
#[derive(Clone)]
pub struct BlockProducer {
    queue: mpsc::Sender<Pending>,
    queue_max: usize,
}

impl BlockProducer {
    /// Starts the producer task for this node.
    pub fn start(
        raft: Raft,
        reads: ReadBarrier,
        ledger: Arc<Ledger>,
        self_id: NodeId,
        config: ProducerConfig,
    ) -> BlockProducer {
        let queue_max = config.queue_max_txs.max(1);
        let (queue, rx) = mpsc::channel(queue_max);
        let outcomes = Arc::new(Outcomes::default());
        ledger.listen_to_executions(Arc::clone(&outcomes) as _);
        tokio::spawn(Worker::new(raft, reads, ledger, outcomes, self_id, config).run(rx));
        BlockProducer { queue, queue_max }
    }

    /// Queues `tx` and waits for its committed outcome. Dropping the future
    /// (a client deadline) does not withdraw the transaction.
    pub async fn submit(&self, tx: Transaction) -> Result<TxRecord, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .try_send(Pending {
                tx,
                reply,
                queued_at: Instant::now(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Overloaded(self.queue_max),
                mpsc::error::TrySendError::Closed(_) => SubmitError::Fatal("block producer stopped".into()),
            })?;
        rx.await
            .unwrap_or_else(|_| Err(SubmitError::Fatal("block producer dropped the request".into())))
    }
}
