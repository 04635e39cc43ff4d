//! Counters of this process's node: per-stage timings (where a transfer's
//! time goes, exposed in `status` and reported by `bank-bench`), latency
//! histograms, and what was applied or refused; rendered for Prometheus by
//! [`render_prometheus`]. Fixed-size atomics: recording never allocates or
//! locks, and memory does not grow with traffic.

use crate::ledger::transaction::KINDS;
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
    /// Leader: from proposing a block to knowing its outcome: committed and executed on the leader (replication, fsyncs; the leader's writes of the block come after).
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

/// Upper bounds (microseconds) of the latency histogram buckets; a last,
/// implicit bucket holds the rest (`+Inf`).
pub const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
];

struct Counter {
    count: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO_U64: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Counter = Counter {
    count: AtomicU64::new(0),
    total_us: AtomicU64::new(0),
    max_us: AtomicU64::new(0),
    buckets: [ZERO_U64; BUCKETS_US.len() + 1],
};

static COUNTERS: [Counter; 7] = [ZERO; 7];

impl Counter {
    fn observe(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        let i = BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Adds one observation of `stage`.
pub fn record(stage: Stage, took: Duration) {
    COUNTERS[stage as usize].observe(took);
}

/// Client API calls whose latency is measured, as this node answered them.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    Transfer = 0,
    TransferBatch,
    Balance,
    Balances,
    Submit,
    Account,
}

pub const METHODS: [Method; 6] = [
    Method::Transfer,
    Method::TransferBatch,
    Method::Balance,
    Method::Balances,
    Method::Submit,
    Method::Account,
];

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Transfer => "transfer",
            Method::TransferBatch => "transfer_batch",
            Method::Balance => "balance",
            Method::Balances => "balances",
            Method::Submit => "submit",
            Method::Account => "account",
        }
    }
}

static REQUESTS: [Counter; METHODS.len()] = [ZERO; METHODS.len()];

/// Records the request's latency when dropped, whichever way it returns.
pub struct RequestTimer {
    method: Method,
    started: std::time::Instant,
}

impl RequestTimer {
    pub fn start(method: Method) -> RequestTimer {
        RequestTimer {
            method,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        REQUESTS[self.method as usize].observe(self.started.elapsed());
    }
}

/// Why this node refused a transfer it answered (as leader, or before
/// forwarding); label values of `bank_transfers_refused_total`.
pub const REFUSALS: [&str; 26] = [
    "zero_amount",
    "same_account",
    "unknown_account",
    "insufficient_funds",
    "overflow",
    "id_conflict",
    "bad_signature",
    "expired",
    "invalid_request",
    "overloaded",
    "account_exists",
    "account_frozen",
    "account_closed",
    "already_in_state",
    "close_with_money",
    "too_many_accounts",
    "bad_key",
    "bad_hold_timeout",
    "too_many_holds",
    "unknown_hold",
    "hold_settled",
    "not_hold_receiver",
    "post_above_held",
    "close_with_holds",
    "bad_set",
    "other",
];

static REFUSED: [AtomicU64; REFUSALS.len()] = [ZERO_U64; REFUSALS.len()];

/// Counts one refusal; `reason` is one of [`REFUSALS`] (else "other").
pub fn refused(reason: &str) {
    let i = REFUSALS.iter().position(|r| *r == reason).unwrap_or(REFUSALS.len() - 1);
    REFUSED[i].fetch_add(1, Ordering::Relaxed);
}

static BLOCKS_APPLIED: AtomicU64 = AtomicU64::new(0);
static TXS_COMMITTED: AtomicU64 = AtomicU64::new(0);
static TXS_REJECTED: AtomicU64 = AtomicU64::new(0);
static INFLIGHT_BLOCKS: AtomicU64 = AtomicU64::new(0);
static QUEUED_TXS: AtomicU64 = AtomicU64::new(0);

/// One block applied by this node, with how many of its transactions took
/// effect and how many were refused by the rules.
static COMMITTED_BY_KIND: [AtomicU64; KINDS.len()] = [ZERO_U64; KINDS.len()];

/// Counts `n` committed transactions of kind `KINDS[kind]`.
pub fn committed_kind(kind: usize, n: u64) {
    if let Some(c) = COMMITTED_BY_KIND.get(kind) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

pub fn block_applied(committed: u64, rejected: u64) {
    BLOCKS_APPLIED.fetch_add(1, Ordering::Relaxed);
    TXS_COMMITTED.fetch_add(committed, Ordering::Relaxed);
    TXS_REJECTED.fetch_add(rejected, Ordering::Relaxed);
}

/// The leader's block producer: blocks proposed and not yet committed, and
/// transactions waiting to be cut into a block.
pub fn set_producer_depths(inflight_blocks: usize, queued_txs: usize) {
    INFLIGHT_BLOCKS.store(inflight_blocks as u64, Ordering::Relaxed);
    QUEUED_TXS.store(queued_txs as u64, Ordering::Relaxed);
}

/// The node-level numbers Prometheus gets besides these counters.
#[derive(Debug, Clone, Default)]
pub struct NodeGauges {
    pub id: u64,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub height: u64,
    pub accounts: u64,
}

/// Everything in the Prometheus text format (version 0.0.4).
pub fn render_prometheus(g: &NodeGauges) -> String {
    use std::fmt::Write;
    let mut o = String::with_capacity(8192);
    let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    gauge(&mut o, "bank_node_id", "This node's id.", g.id);
    gauge(&mut o, "bank_raft_term", "Current Raft term.", g.term);
    let _ = writeln!(
        o,
        "# HELP bank_raft_role 1 for this node's Raft role.\n# TYPE bank_raft_role gauge"
    );
    for role in ["leader", "follower", "candidate", "learner", "shutdown"] {
        let _ = writeln!(o, "bank_raft_role{{role=\"{role}\"}} {}", u8::from(g.role == role));
    }
    let _ = writeln!(
        o,
        "# HELP bank_raft_has_leader 1 if this node knows a leader.\n# TYPE bank_raft_has_leader gauge\nbank_raft_has_leader {}",
        u8::from(g.leader_id.is_some())
    );
    if let Some(l) = g.leader_id {
        gauge(&mut o, "bank_raft_leader_id", "Id of the leader this node knows.", l);
    }
    gauge(
        &mut o,
        "bank_raft_last_log_index",
        "Index of the last entry in this node's Raft log.",
        g.last_log_index,
    );
    gauge(
        &mut o,
        "bank_raft_committed_index",
        "Highest Raft log index this node knows is committed.",
        g.committed_index,
    );
    gauge(
        &mut o,
        "bank_raft_applied_index",
        "Highest Raft log index applied to this node's ledger.",
        g.applied_index,
    );
    gauge(
        &mut o,
        "bank_chain_height",
        "Height of this node's chain tip.",
        g.height,
    );
    gauge(&mut o, "bank_accounts", "Accounts in the ledger.", g.accounts);
    gauge(
        &mut o,
        "bank_producer_inflight_blocks",
        "Leader: blocks proposed and not yet committed.",
        INFLIGHT_BLOCKS.load(Ordering::Relaxed),
    );
    gauge(
        &mut o,
        "bank_producer_queued_transactions",
        "Leader: transactions waiting to be cut into a block.",
        QUEUED_TXS.load(Ordering::Relaxed),
    );
    let counter = |o: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    };
    counter(
        &mut o,
        "bank_blocks_applied_total",
        "Blocks this node applied since it started.",
        BLOCKS_APPLIED.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        o,
        "# HELP bank_transactions_applied_total Transactions in blocks this node applied since it started, by outcome.\n# TYPE bank_transactions_applied_total counter"
    );
    let _ = writeln!(
        o,
        "bank_transactions_applied_total{{outcome=\"committed\"}} {}",
        TXS_COMMITTED.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "bank_transactions_applied_total{{outcome=\"rejected\"}} {}",
        TXS_REJECTED.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "# HELP bank_transactions_committed_by_kind_total Transactions this node applied that committed, by kind.\n# TYPE bank_transactions_committed_by_kind_total counter"
    );
    for (kind, n) in KINDS.iter().zip(&COMMITTED_BY_KIND) {
        let _ = writeln!(
            o,
            "bank_transactions_committed_by_kind_total{{kind=\"{kind}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        o,
        "# HELP bank_transfers_refused_total Transfers this node answered with a refusal, by reason.\n# TYPE bank_transfers_refused_total counter"
    );
    for (i, r) in REFUSALS.iter().enumerate() {
        let _ = writeln!(
            o,
            "bank_transfers_refused_total{{reason=\"{r}\"}} {}",
            REFUSED[i].load(Ordering::Relaxed)
        );
    }
    let histogram = |o: &mut String, name: &str, label: &str, value: &str, c: &Counter| {
        let mut cumulative = 0u64;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += c.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "{name}_bucket{{{label}=\"{value}\",le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        cumulative += c.buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(o, "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            o,
            "{name}_sum{{{label}=\"{value}\"}} {}",
            c.total_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "{name}_count{{{label}=\"{value}\"}} {cumulative}");
    };
    let _ = writeln!(
        o,
        "# HELP bank_request_duration_seconds Client API calls as this node answered them (forwarding included).\n# TYPE bank_request_duration_seconds histogram"
    );
    for m in METHODS {
        histogram(
            &mut o,
            "bank_request_duration_seconds",
            "method",
            m.name(),
            &REQUESTS[m as usize],
        );
    }
    let _ = writeln!(
        o,
        "# HELP bank_stage_duration_seconds Time per stage: queue_wait (per transaction), pre_check, mine, commit (proposal to applied, leader), log_append (Raft log write and fsync), apply, chain_view.\n# TYPE bank_stage_duration_seconds histogram"
    );
    for s in STAGES {
        histogram(
            &mut o,
            "bank_stage_duration_seconds",
            "stage",
            s.name(),
            &COUNTERS[s as usize],
        );
    }
    o
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
