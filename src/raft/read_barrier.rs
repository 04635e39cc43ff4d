//! Where linearizable reads get their barrier: the log index this node's
//! state machine must have applied before it may answer from its state.
//!
//! openraft's `ensure_linearizable` confirms leadership with a quorum, takes
//! as barrier the greater of the leader's first entry of its term (its
//! no-op) and its commit index, and waits until that much is applied. Both
//! halves assume the leader won its term in this process. A leader that is
//! killed and restarted before any follower's election timeout comes back
//! as leader of the same term at once (openraft's `Engine::startup`),
//! reuses its term's first entry as the no-op, and reads its commit index
//! back from disk, where it is saved without a flush. Its barrier can then
//! lie behind entries it committed and acknowledged before the kill, and a
//! read would show less than a client has already been shown.
//!
//! Every entry such a leader acknowledged is in its own log, written before
//! it was replicated (a killed process loses no written page; see
//! `storage::log_store`). So for as long as a node leads the term it
//! started in, its reads also wait until everything its log held at start
//! is applied. Those entries are of that term or committed before it, so
//! the leader commits them as soon as a quorum answers it.

use super::{LogId, NodeId, Raft};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::Vote;

/// Why a read could not get its barrier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadBarrierError {
    /// This node does not lead; `Some` names the leader it knows of.
    #[error("this node is not the leader")]
    NotLeader(Option<NodeId>),
    /// Leadership could not be confirmed now (no quorum answered, or the
    /// term moved on while confirming); a retry may succeed.
    #[error("leadership not confirmed: {0}")]
    Unconfirmed(String),
    /// Raft has stopped on this node.
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// A term this node led when it started, and how far its log went then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoredTerm {
    pub term: u64,
    /// The last log index on disk at start: every entry this node could
    /// have acknowledged in `term` before it stopped.
    pub last_log_index: u64,
}

impl RestoredTerm {
    /// The term openraft will restore this node as leader of, from the
    /// vote and last log id read from disk before Raft starts: a committed
    /// vote for itself.
    pub fn at_start(id: NodeId, vote: Option<&Vote<NodeId>>, last_log: Option<LogId>) -> Option<RestoredTerm> {
        let vote = vote?;
        let leader = vote.leader_id();
        if !vote.is_committed() || leader.voted_for() != Some(id) {
            return None;
        }
        Some(RestoredTerm {
            term: leader.get_term(),
            last_log_index: last_log.map_or(0, |l| l.index),
        })
    }
}

/// Confirms leadership for a read and waits until the state it reads is at
/// least as new as anything this node has acknowledged.
#[derive(Clone)]
pub struct ReadBarrier {
    raft: Raft,
    restored: Option<RestoredTerm>,
}

impl ReadBarrier {
    pub fn new(raft: Raft, restored: Option<RestoredTerm>) -> ReadBarrier {
        if let Some(r) = restored {
            tracing::info!(
                "restarting as the leader of term {}: reads wait until log index {} is applied",
                r.term,
                r.last_log_index
            );
        }
        ReadBarrier { raft, restored }
    }

    /// Returns once a quorum has confirmed this node as leader after the
    /// call began, and its state machine has applied every entry committed
    /// before then.
    pub async fn confirm(&self) -> Result<(), ReadBarrierError> {
        let term_before = self.raft.metrics().borrow().current_term;
        let read = self.raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ReadBarrierError::NotLeader(f.leader_id),
            RaftError::APIError(e) => ReadBarrierError::Unconfirmed(e.to_string()),
            RaftError::Fatal(e) => ReadBarrierError::Stopped(e.to_string()),
        })?;
        let Some(restored) = self.restored else {
            return Ok(());
        };
        // Terms only grow: a term below the restored one is metrics not yet
        // published since start, not a reason to skip the floor.
        if term_before > restored.term || read.is_some_and(|r| r.index >= restored.last_log_index) {
            // Confirmed in a later term (its no-op follows the whole log
            // this node had when it won it), or the barrier covers the start.
            return Ok(());
        }
        self.wait_applied_in_term(restored).await
    }

    /// Waits until `restored.last_log_index` is applied, while this node
    /// still leads `restored.term`.
    async fn wait_applied_in_term(&self, restored: RestoredTerm) -> Result<(), ReadBarrierError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                let ended = m.current_term > restored.term || (m.current_term == restored.term && !m.state.is_leader());
                if ended {
                    // Confirmed in which term is unclear: ask again.
                    return Err(ReadBarrierError::Unconfirmed(format!(
                        "term {} ended while waiting for the entries it held at start",
                        restored.term
                    )));
                }
                if m.last_applied.is_some_and(|a| a.index >= restored.last_log_index) {
                    return Ok(());
                }
            }
            metrics
                .changed()
                .await
                .map_err(|_| ReadBarrierError::Stopped("raft metrics closed".into()))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    #[test]
    fn only_a_committed_vote_for_itself_restores_a_term() {
        let last = Some(log(3, 40));
        let mut led = Vote::new(3, 1);
        led.commit();
        assert_eq!(
            RestoredTerm::at_start(1, Some(&led), last),
            Some(RestoredTerm {
                term: 3,
                last_log_index: 40
            })
        );
        // Another node's leadership, a candidacy, or nothing: a follower.
        assert_eq!(RestoredTerm::at_start(2, Some(&led), last), None);
        assert_eq!(RestoredTerm::at_start(1, Some(&Vote::new(3, 1)), last), None);
        assert_eq!(RestoredTerm::at_start(1, None, last), None);
    }
}
