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

use crate::ledger::block::MAX_BLOCK_TXS;
use crate::ledger::rules::{self, Balances};
use crate::ledger::{AccountId, Amount, Block, Hash32, RejectReason, Transaction, TxId};
use crate::raft::read_barrier::{ReadBarrier, ReadBarrierError};
use crate::raft::{BlockOutcome, NodeId, Raft, TxRecord, TypeConfig};
use crate::stats::{self, Stage};
use crate::storage::Ledger;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResponse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Largest `batch_max_bytes`: a block is one Raft entry, and every entry
/// must fit one Raft message ([`crate::raft::network::MAX_RAFT_MESSAGE_BYTES`])
/// with room to spare.
pub const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// Longest the producer waits for Raft's answer to one proposal. openraft
/// 0.9 answers a proposal when this node applies its entry or truncates it;
/// a deposed leader that receives the entry inside a snapshot (committed by
/// the next leader, never applied here) is never answered, and without a
/// bound that block would hold a pipeline slot, and every block after it,
/// forever. Callers told to retry resubmit the same ids, which answers them
/// with the first outcome if the block did commit.
const RAFT_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Limits of the producer.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Most transactions in one block.
    pub batch_max_txs: usize,
    /// Most bytes (canonical encoding) of transactions in one block.
    pub batch_max_bytes: usize,
    /// Most transactions waiting for a block; beyond it requests are refused.
    pub queue_max_txs: usize,
    /// Most blocks proposed and not yet committed at once.
    pub pipeline_depth: usize,
    /// While blocks are in flight, how long a block may wait for more
    /// transactions before it is cut; zero cuts at once.
    pub batch_max_wait: std::time::Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_max_txs: 4096,
            batch_max_bytes: 1024 * 1024,
            queue_max_txs: 65_536,
            pipeline_depth: 3,
            batch_max_wait: std::time::Duration::ZERO,
        }
    }
}

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
        let worker = Worker {
            raft,
            reads,
            ledger,
            self_id,
            config,
            inflight: VecDeque::new(),
            projected: BTreeMap::new(),
            pending_ids: HashMap::new(),
            proposed_tip: None,
            next_seq: 0,
            ready_term: None,
        };
        tokio::spawn(worker.run(rx));
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

struct Worker {
    raft: Raft,
    /// What a new term's first answers from the applied state wait for.
    reads: ReadBarrier,
    ledger: Arc<Ledger>,
    self_id: NodeId,
    config: ProducerConfig,
    /// Blocks proposed and not yet answered, oldest first.
    inflight: VecDeque<Inflight>,
    /// Projected balances after the blocks in flight: (height that set it, balance).
    projected: BTreeMap<AccountId, (u64, Amount)>,
    /// Ids in flight: which block (by sequence number) and slot carries each.
    pending_ids: HashMap<TxId, (u64, usize)>,
    /// Height and hash of the last block proposed, if ahead of the applied tip.
    proposed_tip: Option<(u64, Hash32)>,
    next_seq: u64,
    /// The term in which this leader has applied everything committed
    /// before it took over (see [`Worker::ready_for_term`]).
    ready_term: Option<u64>,
}

/// One slot of a block: a transaction and everyone waiting for it.
struct Slot {
    tx: Transaction,
    replies: Vec<Reply>,
}

/// A block proposed to Raft and not yet answered.
struct Inflight {
    seq: u64,
    hash: Hash32,
    slots: Vec<Slot>,
    proposed_at: Instant,
    /// Its callers already have the outcome (see [`Worker::answer_early`]).
    answered: bool,
}

type WriteResult = Result<ClientWriteResponse<TypeConfig>, SubmitError>;
type Answer = tokio::task::JoinHandle<(u64, WriteResult)>;
/// A block's records, announced by this node's apply before its writes.
type EarlyOutcome = BoxFuture<'static, (u64, Option<Vec<TxRecord>>)>;

/// Balances as the next block will find them: applied state, then the
/// effects of blocks in flight.
struct Projected<'a> {
    applied: &'a BTreeMap<AccountId, Amount>,
    applied_height: u64,
    projected: &'a BTreeMap<AccountId, (u64, Amount)>,
    block: BTreeMap<AccountId, Amount>,
}

impl Balances for Projected<'_> {
    fn balance(&self, account: AccountId) -> Option<Amount> {
        if let Some(v) = self.block.get(&account) {
            return Some(*v);
        }
        match self.projected.get(&account) {
            Some((h, v)) if *h > self.applied_height => Some(*v),
            _ => self.applied.get(&account).copied(),
        }
    }
    fn set_balance(&mut self, account: AccountId, amount: Amount) {
        self.block.insert(account, amount);
    }
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let max_txs = self.config.batch_max_txs.clamp(1, MAX_BLOCK_TXS);
        let depth = self.config.pipeline_depth.max(1);
        let mut answers: FuturesOrdered<Answer> = FuturesOrdered::new();
        let mut early: FuturesUnordered<EarlyOutcome> = FuturesUnordered::new();
        loop {
            stats::set_producer_depths(self.inflight.len(), rx.len());
            tokio::select! {
                // Answers come back in proposal order, which is log order.
                Some(done) = answers.next(), if !answers.is_empty() => {
                    match done {
                        Ok((seq, result)) => self.finish(seq, result),
                        // Answers come in order: the failed task was the oldest block's.
                        Err(e) => {
                            let seq = self.inflight.front().map_or(0, |b| b.seq);
                            self.finish(seq, Err(SubmitError::Fatal(format!("proposal task failed: {e}"))));
                        }
                    }
                }
                Some((seq, records)) = early.next(), if !early.is_empty() => {
                    if let Some(records) = records {
                        self.answer_early(seq, records);
                    }
                }
                first = rx.recv(), if self.inflight.len() < depth => {
                    let Some(first) = first else { break };
                    let mut bytes = first.tx.encoded_len();
                    let mut batch = vec![first];
                    // Waiting for company only pays while blocks are in
                    // flight anyway; an idle cluster proposes at once.
                    let wait_until = (!self.inflight.is_empty() && !self.config.batch_max_wait.is_zero())
                        .then(|| tokio::time::Instant::now() + self.config.batch_max_wait);
                    while batch.len() < max_txs && bytes < self.config.batch_max_bytes {
                        let next = match rx.try_recv() {
                            Ok(p) => Some(p),
                            Err(_) => match wait_until {
                                Some(t) => tokio::time::timeout_at(t, rx.recv()).await.ok().flatten(),
                                None => None,
                            },
                        };
                        match next {
                            Some(p) => {
                                bytes += p.tx.encoded_len();
                                batch.push(p);
                            }
                            None => break,
                        }
                    }
                    if let Some((answer, outcome)) = self.propose(batch).await {
                        answers.push_back(answer);
                        early.extend(outcome);
                    }
                }
            }
        }
    }

    /// A new leader's log may end with entries of earlier terms that are not
    /// applied yet, some carrying transactions its callers will resubmit.
    /// Before answering anything from the applied state (a refusal, or a
    /// duplicate's first outcome), the leader must have applied them: once
    /// per term, the read barrier confirms leadership and waits until
    /// everything committed before (and, for a leader restarted within its
    /// term, everything its log held at start) is applied.
    async fn ready_for_term(&mut self) -> Result<(), SubmitError> {
        let term = self.raft.metrics().borrow().current_term;
        if self.ready_term == Some(term) {
            return Ok(());
        }
        match tokio::time::timeout(std::time::Duration::from_secs(2), self.reads.confirm()).await {
            Ok(Ok(_)) => {
                self.ready_term = Some(term);
                Ok(())
            }
            Ok(Err(ReadBarrierError::NotLeader(leader))) => Err(SubmitError::NotLeader(leader)),
            Ok(Err(e)) => Err(SubmitError::Retry(e.to_string())),
            Err(_) => Err(SubmitError::Retry("leadership not confirmed in time".into())),
        }
    }

    fn leader(&self) -> (bool, Option<NodeId>) {
        let m = self.raft.metrics();
        let m = m.borrow();
        (
            m.current_leader == Some(self.self_id) && m.state.is_leader(),
            m.current_leader,
        )
    }

    /// Checks, mines and proposes one block; returns the task that awaits
    /// Raft's answer, and the block's outcome as soon as this node applies it.
    async fn propose(&mut self, batch: Vec<Pending>) -> Option<(Answer, Option<EarlyOutcome>)> {
        let cut_at = Instant::now();
        crate::timeline::mark(crate::timeline::Point::BlockCut);
        for p in &batch {
            stats::record(Stage::QueueWait, cut_at.duration_since(p.queued_at));
        }
        let (is_leader, leader) = self.leader();
        if !is_leader {
            for p in batch {
                let _ = p.reply.send(Err(SubmitError::NotLeader(leader)));
            }
            return None;
        }
        if let Err(e) = self.ready_for_term().await {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
            return None;
        }
        let (applied_height, applied_hash) = self.ledger.tip();
        // Drop projections the applied state has caught up with.
        if self.proposed_tip.is_some_and(|(h, _)| h <= applied_height) {
            self.proposed_tip = None;
        }
        self.projected.retain(|_, (h, _)| *h > applied_height);
        let (height, prev_hash) = match self.proposed_tip {
            Some((h, hash)) => (h + 1, hash),
            None => (applied_height + 1, applied_hash),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let (slots, changes) = self.pre_check(batch, seq, applied_height);
        stats::record(Stage::PreCheck, cut_at.elapsed());
        if slots.is_empty() {
            return None;
        }
        let txs: Vec<Transaction> = slots.iter().map(|s| s.tx.clone()).collect();
        let block = Block::new(
            self.ledger.chain_id(),
            height,
            prev_hash,
            now_ms(),
            self.ledger.difficulty(),
            txs,
        );
        // Mining is CPU work: keep it off the async workers.
        let mine_start = Instant::now();
        let block = match tokio::task::spawn_blocking(move || block.mined_any()).await {
            Ok(b) => b,
            Err(e) => {
                self.forget_ids(seq, &slots);
                fail_slots(slots, SubmitError::Fatal(format!("mining task failed: {e}")));
                return None;
            }
        };
        stats::record(Stage::Mine, mine_start.elapsed());
        crate::timeline::mark(crate::timeline::Point::BlockMined);
        let hash = block.hash();
        // Registered before proposing: the apply may run before
        // `client_write_ff` returns.
        let outcome = self
            .ledger
            .watch_outcome(hash)
            .map(|rx| async move { (seq, rx.await.ok()) }.boxed());
        let receiver = match self.raft.client_write_ff(block).await {
            Ok(r) => r,
            Err(e) => {
                self.ledger.forget_outcome(&hash);
                self.forget_ids(seq, &slots);
                fail_slots(slots, SubmitError::Fatal(e.to_string()));
                return None;
            }
        };
        for (account, balance) in changes {
            self.projected.insert(account, (height, balance));
        }
        self.proposed_tip = Some((height, hash));
        self.inflight.push_back(Inflight {
            seq,
            hash,
            slots,
            proposed_at: Instant::now(),
            answered: false,
        });
        let answer = tokio::spawn(async move {
            let result = match tokio::time::timeout(RAFT_ANSWER_TIMEOUT, receiver).await {
                Ok(Ok(Ok(resp))) => Ok(resp),
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => Err(SubmitError::NotLeader(f.leader_id)),
                Ok(Ok(Err(e))) => Err(SubmitError::Retry(e.to_string())),
                Ok(Err(_)) => Err(SubmitError::NotLeader(None)),
                Err(_) => Err(SubmitError::Retry(format!(
                    "no answer from Raft within {} s; resubmit the same id to learn the outcome",
                    RAFT_ANSWER_TIMEOUT.as_secs()
                ))),
            };
            (seq, result)
        });
        Some((answer, outcome))
    }

    /// Answers a block's callers with the records this node's apply computed
    /// for it: the block is committed, and its outcome is the one every node
    /// computes. The block stays in flight (its ids still dedup, and later
    /// blocks still build on its projection) until Raft answers too.
    fn answer_early(&mut self, seq: u64, records: Vec<TxRecord>) {
        let Some(block) = self.inflight.iter_mut().find(|b| b.seq == seq) else {
            return;
        };
        if block.slots.len() != records.len() {
            // Not this producer's block after all; Raft's answer will do.
            return;
        }
        stats::record(Stage::Commit, block.proposed_at.elapsed());
        crate::timeline::mark(crate::timeline::Point::Answered);
        block.answered = true;
        for (slot, record) in block.slots.iter_mut().zip(records) {
            let answer = match &record.outcome {
                Ok(_) => Ok(record.clone()),
                Err(reason) => Err(SubmitError::Rejected(reason.clone())),
            };
            for r in slot.replies.drain(..) {
                let _ = r.send(answer.clone());
            }
        }
    }

    /// Delivers the answer for the oldest block in flight.
    fn finish(&mut self, seq: u64, result: WriteResult) {
        let Some(block) = self.inflight.pop_front() else {
            return;
        };
        debug_assert_eq!(block.seq, seq, "answers arrive in proposal order");
        self.ledger.forget_outcome(&block.hash);
        if !block.answered {
            stats::record(Stage::Commit, block.proposed_at.elapsed());
        }
        self.forget_ids(block.seq, &block.slots);
        match result.map(|r| r.data) {
            Ok(BlockOutcome::Committed { records, .. }) => {
                for (slot, record) in block.slots.into_iter().zip(records) {
                    let answer = match &record.outcome {
                        Ok(_) => Ok(record.clone()),
                        Err(reason) => Err(SubmitError::Rejected(reason.clone())),
                    };
                    for r in slot.replies {
                        let _ = r.send(answer.clone());
                    }
                }
            }
            Ok(BlockOutcome::Refused { reason }) => {
                fail_slots(block.slots, SubmitError::Retry(reason.clone()));
                self.fail_inflight(SubmitError::Retry(format!("an earlier block was refused: {reason}")));
            }
            Ok(BlockOutcome::NoBlock) => {
                fail_slots(block.slots, SubmitError::Retry("entry held no block".into()));
                self.fail_inflight(SubmitError::Retry("an earlier entry held no block".into()));
            }
            Err(e) => {
                fail_slots(block.slots, e.clone());
                self.fail_inflight(e);
            }
        }
        if self.inflight.is_empty() {
            self.proposed_tip = None;
            self.projected.clear();
        }
    }

    /// After a refusal or error, the blocks still in flight cannot link: they
    /// will be refused in turn. Their callers are answered now, and the next
    /// block starts again from the applied state.
    fn fail_inflight(&mut self, err: SubmitError) {
        for block in self.inflight.iter_mut() {
            self.ledger.forget_outcome(&block.hash);
            for slot in block.slots.iter_mut() {
                for r in slot.replies.drain(..) {
                    let _ = r.send(Err(err.clone()));
                }
            }
        }
        self.pending_ids.clear();
        self.projected.clear();
        self.proposed_tip = None;
    }

    fn forget_ids(&mut self, seq: u64, slots: &[Slot]) {
        for slot in slots {
            if let Some(id) = slot.tx.id() {
                if self.pending_ids.get(id).is_some_and(|(s, _)| *s == seq) {
                    self.pending_ids.remove(id);
                }
            }
        }
    }

    /// Checks each transaction against the projected state plus the block so
    /// far: transactions no state could ever accept fail fast and never take
    /// space in a block; those refused for lack of funds are committed as
    /// refused, so the refusal is final. Answers duplicates of committed ids with their first outcome,
    /// and joins duplicates of ids in flight to their slot.
    fn pre_check(
        &mut self,
        batch: Vec<Pending>,
        seq: u64,
        applied_height: u64,
    ) -> (Vec<Slot>, BTreeMap<AccountId, Amount>) {
        let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
        let ledger = Arc::clone(&self.ledger);
        let projected = std::mem::take(&mut self.projected);
        let changes = ledger.with_state(|state| {
            let mut view = Projected {
                applied: &state.balances,
                applied_height,
                projected: &projected,
                block: BTreeMap::new(),
            };
            for p in batch {
                let Some(id) = p.tx.id().cloned() else {
                    let _ = p
                        .reply
                        .send(Err(SubmitError::Rejected(RejectReason::AllocationOutsideGenesis)));
                    continue;
                };
                if let Some(&(s, i)) = self.pending_ids.get(&id) {
                    let same = if s == seq {
                        slots.get(i).map(|slot| slot.tx.content_hash() == p.tx.content_hash())
                    } else {
                        self.inflight
                            .iter()
                            .find(|b| b.seq == s)
                            .and_then(|b| b.slots.get(i))
                            .map(|slot| slot.tx.content_hash() == p.tx.content_hash())
                    };
                    match same {
                        Some(true) if s == seq => slots[i].replies.push(p.reply),
                        Some(true) => {
                            if let Some(slot) = self
                                .inflight
                                .iter_mut()
                                .find(|b| b.seq == s)
                                .and_then(|b| b.slots.get_mut(i))
                            {
                                slot.replies.push(p.reply);
                            }
                        }
                        _ => {
                            let _ = p
                                .reply
                                .send(Err(SubmitError::Rejected(RejectReason::IdConflict { id })));
                        }
                    }
                    continue;
                }
                match ledger.tx_record(&id) {
                    Ok(Some(first)) => {
                        let result = if first.tx_hash != p.tx.content_hash() {
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
                match rules::apply(&mut view, &p.tx, false) {
                    // A refusal that no state can change is final at once.
                    Err(reason) if reason.is_permanent() => {
                        let _ = p.reply.send(Err(SubmitError::Rejected(reason)));
                    }
                    // Anything else goes into the block, refusals that depend
                    // on balances included: such a refusal is only final once
                    // it is committed under the id, or another copy of the
                    // same request, still queued somewhere, could later find
                    // the money there and commit after the caller was told no.
                    _ => {
                        self.pending_ids.insert(id, (seq, slots.len()));
                        slots.push(Slot {
                            tx: p.tx,
                            replies: vec![p.reply],
                        });
                    }
                }
            }
            view.block
        });
        self.projected = projected;
        (slots, changes)
    }
}

fn fail_slots(slots: Vec<Slot>, err: SubmitError) {
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
