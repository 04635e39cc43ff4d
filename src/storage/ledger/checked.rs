//! Signatures this node checked before proposing and has not yet applied.
//!
//! The leader checks every signature before it proposes a transaction, and
//! again, like every node, as it applies the block. Where the second check
//! is of the same bytes under the same key (what is remembered is the hash
//! of the transaction, which covers content, expiry and signature, with the
//! key it passed under: a key rotated in between misses), its verdict is the
//! first one's: the leader remembers what passed and checks only the rest at
//! apply. Followers, and every audit, check everything.

use crate::ledger::{Hash32, PublicKey, Transaction};

/// What is remembered of `tx` having passed under `key`.
pub(super) fn signed_by(tx: &Transaction, key: PublicKey) -> Hash32 {
    Hash32::digest(&[&tx.hash().0, &key.0])
}
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Most hashes remembered: more than the producer's queue and the blocks
/// in flight hold. About 10 MB at most.
pub(super) const MAX_CHECKED: usize = 131_072;

/// Hashes of transactions whose signatures passed, oldest first out.
#[derive(Default)]
pub(super) struct CheckedSignatures {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    passed: HashSet<Hash32>,
    /// Insertion order, for eviction; may name hashes already taken.
    order: VecDeque<Hash32>,
}

impl CheckedSignatures {
    /// Remembers that the transactions of these hashes passed.
    pub(super) fn remember(&self, hashes: impl IntoIterator<Item = Hash32>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for h in hashes {
            if g.order.len() >= MAX_CHECKED {
                if let Some(old) = g.order.pop_front() {
                    g.passed.remove(&old);
                }
            }
            if g.passed.insert(h) {
                g.order.push_back(h);
            }
        }
    }

    /// Whether `hash` passed; forgets it (a transaction is applied once).
    pub(super) fn take(&self, hash: &Hash32) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).passed.remove(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_taken_once_and_the_oldest_go_first() {
        let c = CheckedSignatures::default();
        let h = |i: u64| Hash32::digest(&[&i.to_be_bytes()]);
        c.remember((0..MAX_CHECKED as u64 + 10).map(h));
        assert!(!c.take(&h(0)), "evicted");
        assert!(c.take(&h(10)));
        assert!(!c.take(&h(10)), "taken once");
        assert!(c.take(&h(MAX_CHECKED as u64 + 9)));
        let g = c.inner.lock().unwrap();
        assert!(g.order.len() <= MAX_CHECKED && g.passed.len() <= MAX_CHECKED);
    }
}
