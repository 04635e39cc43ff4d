//! Who waits for a block's outcome from this node's apply: the producer
//! registers each block it proposes, by hash, and the ledger's apply hands
//! the records over as soon as it has computed them, before it writes the
//! block (see [`ExecutionListener`]). The other answer, Raft's, comes after
//! the writes; whichever arrives first answers the clients.

use crate::ledger::{Hash32, TxRecord};
use crate::storage::ledger::ExecutionListener;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Most blocks whose outcome can be awaited at once: the producer waits for
/// at most its pipeline depth; beyond this, callers wait for Raft's answer.
pub const MAX_OUTCOME_WAITERS: usize = 64;

/// The waiting blocks, by hash.
#[derive(Default)]
pub struct Outcomes {
    waiters: Mutex<HashMap<Hash32, oneshot::Sender<Vec<TxRecord>>>>,
}

impl Outcomes {
    /// Registers interest in the outcome of the block with `hash`: the
    /// receiver gets its records once the block is committed and executed
    /// on this node. Nothing arrives if the block is refused or never
    /// committed; [`Outcomes::forget`] withdraws the interest. None when
    /// [`MAX_OUTCOME_WAITERS`] are already waiting.
    pub fn watch(&self, hash: Hash32) -> Option<oneshot::Receiver<Vec<TxRecord>>> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.retain(|_, tx| !tx.is_closed());
        if waiters.len() >= MAX_OUTCOME_WAITERS {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiters.insert(hash, tx);
        Some(rx)
    }

    /// Withdraws interest in the outcome of the block with `hash`.
    pub fn forget(&self, hash: &Hash32) {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(hash);
    }
}

impl ExecutionListener for Outcomes {
    fn executed(&self, hash: &Hash32, records: &[TxRecord]) -> bool {
        let waiter = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if waiters.is_empty() {
                return false;
            }
            waiters.remove(hash)
        };
        waiter.is_some_and(|tx| tx.send(records.to_vec()).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneshot::error::TryRecvError;

    #[test]
    fn a_watched_block_gets_its_records_once_and_a_forgotten_one_none() {
        let outcomes = Outcomes::default();
        let mut rx = outcomes.watch(Hash32([1; 32])).unwrap();
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        assert!(
            !outcomes.executed(&Hash32([2; 32]), &[]),
            "nobody waits for another block"
        );
        assert!(outcomes.executed(&Hash32([1; 32]), &[]));
        assert_eq!(rx.try_recv().unwrap(), Vec::<TxRecord>::new());

        let mut rx = outcomes.watch(Hash32([3; 32])).unwrap();
        outcomes.forget(&Hash32([3; 32]));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
        assert!(!outcomes.executed(&Hash32([3; 32]), &[]));
    }

    #[test]
    fn at_most_the_limit_wait_and_dropped_receivers_free_their_places() {
        let outcomes = Outcomes::default();
        let held: Vec<_> = (0..MAX_OUTCOME_WAITERS as u8)
            .map(|i| outcomes.watch(Hash32([i; 32])).unwrap())
            .collect();
        assert!(outcomes.watch(Hash32([255; 32])).is_none());
        drop(held);
        assert!(outcomes.watch(Hash32([255; 32])).is_some());
    }
}
