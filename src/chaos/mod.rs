//! A bank workload under a nemesis, in the spirit of Jepsen's bank test.
//!
//! Concurrent clients move money between a few accounts in every way the
//! ledger has (transfers; holds, posted, voided or left to time out; issues
//! and redeems: see [`workload`]), with ids they choose, and read (all
//! balances atomically, one balance, or a transaction they saw
//! acknowledged), while the nemesis kills, restarts, partitions and delays
//! nodes and reads in every fault window. Afterwards every operation whose
//! outcome was unknown is settled by resubmitting its id, and the history
//! is checked against the chains the nodes hold (see [`check`]), the chain
//! against the checker's own books (see [`books`]), and every read for
//! linearizability (see [`reads`]).

pub mod books;
pub mod check;
pub mod cluster;
pub mod nemesis;
pub mod reads;
pub mod workload;

use crate::client::{call_any, request, Server};
use crate::ledger::genesis::GenesisFile;
use crate::ledger::{AccountKey, Genesis, Signer};
use crate::proto::bank::BalancesRequest;
use cluster::ProcessCluster;
use nemesis::{FaultKind, Nemesis, Probe};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reads::{ReadLog, Reader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;
use workload::{submit, Mix, Op, OpKind, PlacedHold};

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// How long clients and the nemesis run.
    pub duration: Duration,
    /// Seeds the fault schedule and the clients' choices.
    pub seed: u64,
    pub clients: usize,
    pub accounts: u64,
    pub opening_balance: u64,
    pub nodes: u64,
    /// Average time a fault is held before it is reverted.
    pub fault_hold: Duration,
    /// Deadline of one client operation.
    pub op_timeout: Duration,
    pub server_bin: PathBuf,
    /// Where nodes keep their data; a temp dir when `None`.
    pub data_dir: Option<PathBuf>,
}

/// What a run did and found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub seed: u64,
    pub duration_s: f64,
    pub ops: u64,
    /// Operations of every kind submitted (named for the transfers they
    /// once all were), and by kind; acknowledged ones by kind.
    pub transfers: u64,
    pub submitted_by_kind: BTreeMap<String, u64>,
    pub acknowledged_by_kind: BTreeMap<String, u64>,
    pub acknowledged: u64,
    pub failed: u64,
    pub unknown: u64,
    pub unknown_settled_committed: u64,
    pub unknown_settled_failed: u64,
    pub unsettled: u64,
    /// Answered reads of every kind, and by kind.
    pub reads: u64,
    pub reads_by_kind: BTreeMap<String, u64>,
    pub reads_failed: u64,
    /// Reads that missed an acknowledged transfer, went back in height, or
    /// showed another state than the chain's at their height.
    pub stale_reads: u64,
    pub reads_back_in_height: u64,
    pub reads_wrong: u64,
    pub faults: BTreeMap<String, u64>,
    /// How the holds in the final chain ended.
    pub holds: books::HoldTally,
    pub final_height: u64,
    /// The highest Raft term any node reached: how often leadership moved.
    pub final_term: u64,
    pub violations: Vec<String>,
}

/// Why a run could not be carried out (as opposed to a violation it found).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The fate of one submitted transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// A definite refusal: nothing was applied.
    Failed(String),
    /// Timed out or the server vanished: it may or may not have committed.
    Unknown(String),
}

/// Everything the clients saw.
#[derive(Default)]
struct History {
    ops: Vec<Op>,
}

/// Classifies a transfer's answer: only refusals that prove nothing was
/// applied count as failures; anything else leaves the outcome unknown.
pub(crate) fn classify(result: &Result<crate::proto::bank::TxReply, tonic::Status>) -> Outcome {
    match result {
        Ok(_) => Outcome::Committed,
        Err(s) => match s.code() {
            Code::FailedPrecondition | Code::InvalidArgument | Code::NotFound | Code::AlreadyExists => {
                Outcome::Failed(s.message().to_string())
            }
            _ => Outcome::Unknown(format!("{:?}: {}", s.code(), s.message())),
        },
    }
}

/// One atomic read of every balance, with the supply read with it.
struct Read {
    balances: BTreeMap<u64, u64>,
    issued: u64,
    redeemed: u64,
}

/// Reads all balances atomically.
async fn read_all(servers: &[Server], timeout: Duration) -> Result<Read, tonic::Status> {
    let r = call_any(servers, timeout, |mut c, t| async move {
        Ok(c.balances(request(BalancesRequest {}, t)).await?.into_inner())
    })
    .await?;
    Ok(Read {
        balances: r.balances.into_iter().map(|b| (b.account, b.balance)).collect(),
        issued: r.issued,
        redeemed: r.redeemed,
    })
}

/// Checks one atomic read: every genesis account present, and money
/// changed only by what was issued and redeemed.
fn check_read(read: &Read, genesis: &Genesis) -> Option<String> {
    let total: u128 = read.balances.values().map(|v| u128::from(*v)).sum();
    if let Some(a) = genesis.balances.keys().find(|a| !read.balances.contains_key(a)) {
        return Some(format!("read shows no account {a}, which genesis has"));
    }
    let supply = crate::ledger::Supply {
        issued: read.issued,
        redeemed: read.redeemed,
    };
    if total != supply.total(genesis.total) {
        return Some(format!(
            "read sums to {total}, but genesis's {} + issued {} - redeemed {} is {}",
            genesis.total,
            read.issued,
            read.redeemed,
            supply.total(genesis.total)
        ));
    }
    None
}

/// One simulated bank client.
struct Client {
    index: usize,
    rng: StdRng,
    /// Every node, this client's first choice first: clients spread over
    /// the nodes, so followers answer (and forward) too.
    servers: Vec<Server>,
    reader: Reader,
    genesis: Arc<Genesis>,
    accounts: u64,
    timeout: Duration,
    history: Arc<Mutex<History>>,
}

impl Client {
    /// Writes (75%) and reads (25%: all balances, one balance, or a lookup
    /// of the last transfer this client saw acknowledged) until `until`.
    async fn run(mut self, until: Instant) {
        let mut seq = 0u64;
        let mut last_acked: Option<(String, u64)> = None;
        // Holds this client placed and saw acknowledged, not yet settled.
        let mut holds: Vec<PlacedHold> = Vec::new();
        while Instant::now() < until {
            if self.rng.gen_bool(0.75) {
                seq += 1;
                let kind = Mix::default().next(&mut self.rng, self.accounts, &mut holds);
                let mut op = Op {
                    id: format!("c{}-{seq}", self.index),
                    kind,
                    outcome: Outcome::Unknown(String::new()),
                    acked: None,
                };
                let (outcome, height) = submit(&self.servers, &op, self.genesis.chain_id(), self.timeout).await;
                op.outcome = outcome;
                if let Some(h) = height {
                    op.acked = Some((self.reader.now(), h));
                    match op.kind {
                        OpKind::Transfer { .. } => last_acked = Some((op.id.clone(), h)),
                        OpKind::Hold { from, to, amount, .. } => holds.push((op.id.clone(), from, to, amount)),
                        _ => {}
                    }
                }
                if let Ok(mut h) = self.history.lock() {
                    h.ops.push(op);
                }
            } else {
                match (self.rng.gen_range(0..3), &last_acked) {
                    (0, Some((id, height))) => self.reader.tx(id, *height).await,
                    (1, _) => self.reader.one(self.rng.gen_range(0..self.accounts)).await,
                    _ => self.reader.all().await,
                }
            }
        }
    }
}

/// Runs the workload and the nemesis, settles, checks, and reports.
pub async fn run(config: ChaosConfig) -> Result<Report, ChaosError> {
    if config.accounts < 2 || config.nodes < 1 || config.clients < 1 {
        return Err(ChaosError::Setup(
            "need at least 2 accounts, 1 node and 1 client".into(),
        ));
    }
    let temp;
    let dir = match &config.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::TempDir::new()?;
            temp.path().to_path_buf()
        }
    };
    // Low difficulty: the workload is about faults, not mining.
    // Dev keys: the workload signs its transfers with them.
    let mut genesis_file = GenesisFile::generated(config.accounts, config.opening_balance, 4, |id| {
        AccountKey::dev(id).public()
    });
    genesis_file.issuers = vec![AccountKey::dev_role(Signer::Issuer(workload::ISSUER)).public()];
    let genesis_path = dir.join("genesis.json");
    std::fs::write(
        &genesis_path,
        serde_json::to_vec_pretty(&genesis_file).map_err(|e| ChaosError::Setup(e.to_string()))?,
    )?;
    let genesis = Arc::new(Genesis::build(genesis_file).map_err(|e| ChaosError::Setup(e.to_string()))?);

    let mut cluster = ProcessCluster::start(config.nodes, &config.server_bin, &[], &dir, &genesis_path)?;
    let servers = cluster.servers();
    if cluster.wait_leader(Duration::from_secs(30)).await.is_none() {
        return Err(ChaosError::Setup("no leader elected within 30 s".into()));
    }

    let started = Instant::now();
    let until = started + config.duration;
    let history = Arc::new(Mutex::new(History::default()));
    let read_log = Arc::new(Mutex::new(ReadLog::default()));
    let reader = Reader::new(servers.clone(), config.op_timeout, started, Arc::clone(&read_log));
    let mut tasks = Vec::new();
    for i in 0..config.clients {
        let mut own = servers.clone();
        own.rotate_left(i % servers.len().max(1));
        let client = Client {
            index: i,
            rng: StdRng::seed_from_u64(config.seed.wrapping_add(1 + i as u64)),
            servers: own,
            reader: reader.starting_at(i),
            genesis: Arc::clone(&genesis),
            accounts: config.accounts,
            timeout: config.op_timeout,
            history: Arc::clone(&history),
        };
        tasks.push(tokio::spawn(client.run(until)));
    }
    let probe = Probe {
        reader: reader.clone(),
        accounts: config.accounts,
    };
    let mut nemesis = Nemesis::new(StdRng::seed_from_u64(config.seed), config.fault_hold, probe);
    nemesis.run(&mut cluster, until).await?;
    for t in tasks {
        let _ = t.await;
    }
    nemesis.finish().await;
    let duration_s = started.elapsed().as_secs_f64();

    // Heal everything and let the cluster settle.
    nemesis::heal(&cluster).await;
    for id in 0..cluster.len() {
        if !cluster.is_running(id) {
            cluster.spawn(id)?;
        }
    }
    let mut history = match Arc::try_unwrap(history) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => return Err(ChaosError::Setup("client tasks still hold the history".into())),
    };
    let mut report = Report {
        seed: config.seed,
        duration_s,
        faults: nemesis
            .injected
            .iter()
            .map(|(k, v)| (k.name().to_string(), *v))
            .collect(),
        ..Default::default()
    };
    for k in FaultKind::ALL {
        report.faults.entry(k.name().to_string()).or_insert(0);
    }
    if let Err(e) = check::wait_quiescent(&cluster, Duration::from_secs(60)).await {
        report.violations.push(e.to_string());
    }
    report.final_term = cluster
        .statuses()
        .await
        .into_iter()
        .flatten()
        .map(|s| s.term)
        .max()
        .unwrap_or(0);

    // Settle every unknown outcome by resubmitting the same id and content.
    report.unknown = history
        .ops
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Unknown(_)))
        .count() as u64;
    for op in history.ops.iter_mut() {
        if !matches!(op.outcome, Outcome::Unknown(_)) {
            continue;
        }
        for _ in 0..10 {
            let (outcome, _) = submit(&servers, op, genesis.chain_id(), Duration::from_secs(5)).await;
            let definite = !matches!(outcome, Outcome::Unknown(_));
            op.outcome = outcome;
            if definite {
                break;
            }
        }
        match op.outcome {
            Outcome::Committed => report.unknown_settled_committed += 1,
            Outcome::Failed(_) => report.unknown_settled_failed += 1,
            Outcome::Unknown(_) => report.unsettled += 1,
        }
    }
    report.acknowledged = history.ops.iter().filter(|t| t.outcome == Outcome::Committed).count() as u64
        - report.unknown_settled_committed;
    report.failed = history
        .ops
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Failed(_)))
        .count() as u64
        - report.unknown_settled_failed;
    let read_log = std::mem::take(&mut *read_log.lock().unwrap_or_else(|p| p.into_inner()));
    report.transfers = history.ops.len() as u64;
    for op in &history.ops {
        *report.submitted_by_kind.entry(op.kind.name().to_string()).or_insert(0) += 1;
        if op.acked.is_some() {
            *report
                .acknowledged_by_kind
                .entry(op.kind.name().to_string())
                .or_insert(0) += 1;
        }
    }
    report.reads = read_log.ops.len() as u64;
    report.reads_failed = read_log.failed;
    for r in &read_log.ops {
        *report.reads_by_kind.entry(r.kind.name().to_string()).or_insert(0) += 1;
    }
    report.ops = report.transfers + report.reads + report.reads_failed;
    if report.unsettled > 0 {
        report.violations.push(format!(
            "{} operations could not be settled after healing",
            report.unsettled
        ));
    }

    // Final state against the history and the chains.
    match read_all(&servers, Duration::from_secs(10)).await {
        Ok(final_read) => {
            if let Some(v) = check_read(&final_read, &genesis) {
                report.violations.push(format!("final read: {v}"));
            }
            report
                .violations
                .extend(check::final_balances(&genesis, &history.ops, &final_read.balances));
            let (issued, redeemed) = check::supply_of(&history.ops);
            if (final_read.issued, final_read.redeemed) != (issued, redeemed) {
                report.violations.push(format!(
                    "final read: issued {} and redeemed {}, but the acknowledged history issued {issued} and redeemed {redeemed}",
                    final_read.issued, final_read.redeemed
                ));
            }
        }
        Err(e) => report
            .violations
            .push(format!("final balances unreadable: {}", e.message())),
    }
    let (chain, mut v) = check::chains(&cluster, &genesis, &history.ops).await;
    report.violations.append(&mut v);
    report.final_height = chain.last().map_or(0, |(b, _)| b.height());
    if !chain.is_empty() {
        let (holds, mut v) = books::check(&genesis, &chain);
        report.holds = holds;
        report.violations.append(&mut v);
        let acks = history.ops.iter().filter_map(|t| t.acked).collect();
        let mut c = reads::check(&genesis, &chain, acks, &read_log.ops);
        report.stale_reads = c.stale;
        report.reads_back_in_height = c.went_back;
        report.reads_wrong = c.wrong;
        report.violations.append(&mut c.violations);
    }
    cluster.stop_all()?;
    Ok(report)
}
