//! Per-stage timing counters of this process's node: where a transfer's time
//! goes, exposed in `status` and reported by `bank-bench`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The stages a transfer passes through.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// Leader: from entering the producer's queue to being cut into a block (per transaction).
    QueueWait = 0,
    /// Leader: rules and dedup check of a block's transactions.
    PreCheck,
    /// Leader: proof of work for one block.
    Mine,
    /// Leader: from proposing a block to its commit and apply (replication, fsyncs, apply).
    Commit,
    /// Every node: appending entries to the Raft log, fsync included.
    LogAppend,
    /// Every node: verifying and applying one block to the ledger.
    Apply,
    /// Every node: appending one block to chain.jsonl.
    ChainView,
}

pub const STAGES: [Stage; 7] = [
    Stage::QueueWait,
    Stage::PreCheck,
    Stage::Mine,
    Stage::Commit,
    Stage::LogAppend,
    Stage::Apply,
    Stage::ChainView,
];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::QueueWait => "queue_wait",
            Stage::PreCheck => "pre_check",
            Stage::Mine => "mine",
            Stage::Commit => "commit",
            Stage::LogAppend => "log_append",
            Stage::Apply => "apply",
            Stage::ChainView => "chain_view",
        }
    }
}

struct Counter {
    count: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Counter = Counter {
    count: AtomicU64::new(0),
    total_us: AtomicU64::new(0),
    max_us: AtomicU64::new(0),
};

static COUNTERS: [Counter; 7] = [ZERO; 7];

/// Adds one observation of `stage`.
pub fn record(stage: Stage, took: Duration) {
    let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
    let c = &COUNTERS[stage as usize];
    c.count.fetch_add(1, Ordering::Relaxed);
    c.total_us.fetch_add(us, Ordering::Relaxed);
    c.max_us.fetch_max(us, Ordering::Relaxed);
}

/// Totals since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub count: u64,
    pub total_us: u64,
    pub max_us: u64,
}

pub fn totals(stage: Stage) -> Totals {
    let c = &COUNTERS[stage as usize];
    Totals {
        count: c.count.load(Ordering::Relaxed),
        total_us: c.total_us.load(Ordering::Relaxed),
        max_us: c.max_us.load(Ordering::Relaxed),
    }
}
