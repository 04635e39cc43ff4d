//! The producer's task: cuts blocks from the queue, mines and proposes
//! them, keeps up to `pipeline_depth` in flight, and answers each block's
//! callers with its outcome, early from this node's apply
//! ([`super::outcomes`]) or from Raft's answer.

use super::outcomes::Outcomes;
use super::precheck::Projection;
use super::{Pending, ProducerConfig, Reply, SubmitError, RAFT_ANSWER_TIMEOUT};
use crate::ledger::block::MAX_BLOCK_TXS;
use crate::ledger::{Block, BlockOutcome, Hash32, Transaction, TxKey, TxRecord, MAX_SET_ITEMS};
use crate::raft::read_barrier::{ReadBarrier, ReadBarrierError};
use crate::raft::{NodeId, Raft, TypeConfig};
use crate::stats::{self, Stage};
use crate::storage::Ledger;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResponse;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub(super) struct Worker {
    pub(super) raft: Raft,
    /// What a new term's first answers from the applied state wait for.
    pub(super) reads: ReadBarrier,
    pub(super) ledger: Arc<Ledger>,
    /// Who waits for which block's records from this node's apply.
    pub(super) outcomes: Arc<Outcomes>,
    pub(super) self_id: NodeId,
    pub(super) config: ProducerConfig,
    /// Blocks proposed and not yet answered, oldest first.
    pub(super) inflight: VecDeque<Inflight>,
    /// What the blocks in flight change, by the height that set it.
    pub(super) projected: Projection,
    /// Ids in flight: which block (by sequence number) and slot carries each.
    pub(super) pending_ids: HashMap<TxKey, (u64, usize)>,
    /// Height, hash and time of the last block proposed, if ahead of the
    /// applied tip.
    pub(super) proposed_tip: Option<(u64, Hash32, u64)>,
    pub(super) next_seq: u64,
    /// The term in which this leader has applied everything committed
    /// before it took over (see [`Worker::ready_for_term`]).
    pub(super) ready_term: Option<u64>,
    /// Told the operator that block time runs ahead of this node's clock.
    pub(super) warned_clock: bool,
}

/// How far block time may run ahead of the leader's clock before it warns.
const CLOCK_BEHIND_WARN_MS: u64 = 60_000;

/// One slot of a block: a transaction and everyone waiting for it.
pub(super) struct Slot {
    pub(super) tx: Transaction,
    pub(super) replies: Vec<Reply>,
}

/// A block proposed to Raft and not yet answered.
pub(super) struct Inflight {
    pub(super) seq: u64,
    pub(super) hash: Hash32,
    pub(super) slots: Vec<Slot>,
    pub(super) proposed_at: Instant,
    /// Its callers already have the outcome (see [`Worker::answer_early`]).
    pub(super) answered: bool,
}

type WriteResult = Result<ClientWriteResponse<TypeConfig>, SubmitError>;
type Answer = tokio::task::JoinHandle<(u64, WriteResult)>;
/// A block's records, announced by this node's apply before its writes.
type EarlyOutcome = BoxFuture<'static, (u64, Option<Vec<TxRecord>>)>;

impl Worker {
    pub(super) fn new(
        raft: Raft,
        reads: ReadBarrier,
        ledger: Arc<Ledger>,
        outcomes: Arc<Outcomes>,
        self_id: NodeId,
        config: ProducerConfig,
    ) -> Worker {
        Worker {
            raft,
            reads,
            ledger,
            outcomes,
            self_id,
            config,
            inflight: VecDeque::new(),
            projected: Projection::default(),
            pending_ids: HashMap::new(),
            proposed_tip: None,
            next_seq: 0,
            ready_term: None,
            warned_clock: false,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
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
                    // Items, a set's counted one each, as the block cap counts them.
                    let mut items = first.tx.items().len();
                    let mut batch = vec![first];
                    // Waiting for company only pays while blocks are in
                    // flight anyway; an idle cluster proposes at once.
                    let wait_until = (!self.inflight.is_empty() && !self.config.batch_max_wait.is_zero())
                        .then(|| tokio::time::Instant::now() + self.config.batch_max_wait);
                    // Room is kept for a whole set: the next may be one.
                    while items < max_txs
                        && items + MAX_SET_ITEMS <= MAX_BLOCK_TXS
                        && bytes < self.config.batch_max_bytes
                    {
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
                                items += p.tx.items().len();
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
        if self.proposed_tip.is_some_and(|(h, _, _)| h <= applied_height) {
            self.proposed_tip = None;
        }
        self.projected.retain_above(applied_height);
        let (height, prev_hash, prev_ms) = match self.proposed_tip {
            Some((h, hash, ms)) => (h + 1, hash, ms),
            None => (applied_height + 1, applied_hash, self.ledger.tip_time_ms()),
        };
        // Never before the parent, or every node refuses the block: a
        // leader whose clock is behind the last leader's stays at its time.
        let now = now_ms();
        let time_ms = now.max(prev_ms);
        if prev_ms > now.saturating_add(CLOCK_BEHIND_WARN_MS) && !self.warned_clock {
            // Signed transactions expire by block time: while it runs
            // ahead of clients' clocks, what they sign expires at once.
            tracing::warn!(
                "block time held at the last block's, {} ms ahead of this node's clock: this clock is behind, or an earlier leader's was ahead; check NTP on every node",
                prev_ms - now
            );
            self.warned_clock = true;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let (slots, changes) = self.pre_check(batch, seq, applied_height, height, time_ms);
        stats::record(Stage::PreCheck, cut_at.elapsed());
        if slots.is_empty() {
            return None;
        }
        let txs: Vec<Transaction> = slots.iter().map(|s| s.tx.clone()).collect();
        let block = Block::new(
            self.ledger.chain_id(),
            height,
            prev_hash,
            time_ms,
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
            .outcomes
            .watch(hash)
            .map(|rx| async move { (seq, rx.await.ok()) }.boxed());
        let receiver = match self.raft.client_write_ff(block).await {
            Ok(r) => r,
            Err(e) => {
                self.outcomes.forget(&hash);
                self.forget_ids(seq, &slots);
                fail_slots(slots, SubmitError::Fatal(e.to_string()));
                return None;
            }
        };
        self.projected.record(height, changes);
        self.proposed_tip = Some((height, hash, time_ms));
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
        self.outcomes.forget(&block.hash);
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
            self.outcomes.forget(&block.hash);
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
            // A set is in flight under each of its items' ids.
            for key in slot.tx.items().iter().filter_map(Transaction::key) {
                if self.pending_ids.get(&key).is_some_and(|(s, _)| *s == seq) {
                    self.pending_ids.remove(&key);
                }
            }
        }
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
