//! The leader's block producer: packs transactions from many requests into
//! one block, mines it once, and proposes it to Raft.
//!
//! Cut rule: when the producer is free it takes every transaction already
//! queued, up to `batch_max_txs` transactions and `batch_max_bytes` bytes, and
//! cuts a block at once: a lone request never waits for company. While a block
//! replicates, new requests queue up and form the next block, so batches grow
//! with load by themselves. Each block is one Raft entry: one fsync per node
//! for the whole batch.

use crate::ledger::block::MAX_BLOCK_TXS;
use crate::ledger::rules::{self, Overlay};
use crate::ledger::{Block, RejectReason, Transaction};
use crate::raft::{BlockOutcome, NodeId, Raft, TxRecord};
use crate::storage::Ledger;
use openraft::error::{ClientWriteError, RaftError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Limits of the producer.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Most transactions in one block.
    pub batch_max_txs: usize,
    /// Most bytes (canonical encoding) of transactions in one block.
    pub batch_max_bytes: usize,
    /// Most transactions waiting for a block; beyond it requests are refused.
    pub queue_max_txs: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_max_txs: 4096,
            batch_max_bytes: 1024 * 1024,
            queue_max_txs: 16_384,
        }
    }
}

/// Why a submitted transaction has no committed outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// This node is not the leader (any more).
    #[error("not the leader")]
    NotLeader(Option<NodeId>),
    /// The block was overtaken by a leader change and refused on every node;
    /// nothing of it was applied, and the transaction may be submitted again.
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
}

/// Handle to submit transactions to the producer task.
#[derive(Clone)]
pub struct BlockProducer {
    queue: mpsc::Sender<Pending>,
    queue_max: usize,
}

impl BlockProducer {
    /// Starts the producer task for this node.
    pub fn start(raft: Raft, ledger: Arc<Ledger>, self_id: NodeId, config: ProducerConfig) -> BlockProducer {
        let queue_max = config.queue_max_txs.max(1);
        let (queue, rx) = mpsc::channel(queue_max);
        let worker = Worker {
            raft,
            ledger,
            self_id,
            config,
        };
        tokio::spawn(worker.run(rx));
        BlockProducer { queue, queue_max }
    }

    /// Queues `tx` and waits for its committed outcome. Dropping the future
    /// (a client deadline) does not withdraw the transaction.
    pub async fn submit(&self, tx: Transaction) -> Result<TxRecord, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.queue.try_send(Pending { tx, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Overloaded(self.queue_max),
            mpsc::error::TrySendError::Closed(_) => SubmitError::Fatal("block producer stopped".into()),
        })?;
        rx.await
            .unwrap_or_else(|_| Err(SubmitError::Fatal("block producer dropped the request".into())))
    }
}

struct Worker {
    raft: Raft,
    ledger: Arc<Ledger>,
    self_id: NodeId,
    config: ProducerConfig,
}

/// One slot of a block being built: a transaction and everyone waiting for it.
struct Slot {
    tx: Transaction,
    replies: Vec<Reply>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        let max_txs = self.config.batch_max_txs.clamp(1, MAX_BLOCK_TXS);
        while let Some(first) = rx.recv().await {
            let mut bytes = first.tx.encoded_len();
            let mut batch = vec![first];
            while batch.len() < max_txs && bytes < self.config.batch_max_bytes {
                match rx.try_recv() {
                    Ok(p) => {
                        bytes += p.tx.encoded_len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            self.produce(batch).await;
        }
    }

    fn leader(&self) -> (bool, Option<NodeId>) {
        let m = self.raft.metrics().borrow().clone();
        (
            m.current_leader == Some(self.self_id) && m.state.is_leader(),
            m.current_leader,
        )
    }

    async fn produce(&self, batch: Vec<Pending>) {
        let (is_leader, leader) = self.leader();
        if !is_leader {
            for p in batch {
                let _ = p.reply.send(Err(SubmitError::NotLeader(leader)));
            }
            return;
        }
        let slots = self.pre_check(batch);
        if slots.is_empty() {
            return;
        }
        let (tip_height, tip_hash) = self.ledger.tip();
        let txs: Vec<Transaction> = slots.iter().map(|s| s.tx.clone()).collect();
        let block = Block::new(
            self.ledger.chain_id(),
            tip_height + 1,
            tip_hash,
            now_ms(),
            self.ledger.genesis().difficulty(),
            txs,
        );
        // Mining is CPU work: keep it off the async workers.
        let block = match tokio::task::spawn_blocking(move || block.mined()).await {
            Ok(b) => b,
            Err(e) => {
                fail_all(slots, SubmitError::Fatal(format!("mining task failed: {e}")));
                return;
            }
        };
        match self.raft.client_write(block).await {
            Ok(resp) => match resp.data {
                BlockOutcome::Committed { records, .. } => {
                    for (slot, record) in slots.into_iter().zip(records) {
                        let result = match &record.outcome {
                            Ok(_) => Ok(record.clone()),
                            Err(reason) => Err(SubmitError::Rejected(reason.clone())),
                        };
                        for r in slot.replies {
                            let _ = r.send(result.clone());
                        }
                    }
                }
                BlockOutcome::Refused { reason } => fail_all(slots, SubmitError::Retry(reason)),
                BlockOutcome::NoBlock => fail_all(slots, SubmitError::Retry("entry held no block".into())),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                fail_all(slots, SubmitError::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(e)) => fail_all(slots, SubmitError::Retry(e.to_string())),
            Err(RaftError::Fatal(e)) => fail_all(slots, SubmitError::Fatal(e.to_string())),
        }
    }

    /// Checks each transaction against the leader's applied state plus the
    /// block so far, so doomed transactions fail fast and never take space in
    /// a block. Answers duplicates of committed ids with their first outcome.
    fn pre_check(&self, batch: Vec<Pending>) -> Vec<Slot> {
        let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
        let mut by_id: HashMap<String, usize> = HashMap::new();
        self.ledger.with_state(|state| {
            let mut overlay = Overlay::new(&state.balances);
            for p in batch {
                let Some(id) = p.tx.id().cloned() else {
                    let _ = p
                        .reply
                        .send(Err(SubmitError::Rejected(RejectReason::AllocationOutsideGenesis)));
                    continue;
                };
                if let Some(&i) = by_id.get(id.as_str()) {
                    if slots[i].tx == p.tx {
                        slots[i].replies.push(p.reply);
                    } else {
                        let _ = p
                            .reply
                            .send(Err(SubmitError::Rejected(RejectReason::IdConflict { id })));
                    }
                    continue;
                }
                match self.ledger.tx_record(&id) {
                    Ok(Some(first)) => {
                        let result = if first.tx_hash != p.tx.hash() {
                            Err(SubmitError::Rejected(RejectReason::IdConflict { id }))
                        } else {
                            match &first.outcome {
                                Ok(_) => Ok(first.clone()),
                                Err(reason) => Err(SubmitError::Rejected(reason.clone())),
                            }
                        };
                        let _ = p.reply.send(result);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = p.reply.send(Err(SubmitError::Fatal(e.to_string())));
                        continue;
                    }
                }
                match rules::apply(&mut overlay, &p.tx, false) {
                    Ok(_) => {
                        by_id.insert(id.as_str().to_string(), slots.len());
                        slots.push(Slot {
                            tx: p.tx,
                            replies: vec![p.reply],
                        });
                    }
                    Err(reason) => {
                        let _ = p.reply.send(Err(SubmitError::Rejected(reason)));
                    }
                }
            }
        });
        slots
    }
}

fn fail_all(slots: Vec<Slot>, err: SubmitError) {
    for slot in slots {
        for r in slot.replies {
            let _ = r.send(Err(err.clone()));
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
