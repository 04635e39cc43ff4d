//! Closed-loop load for `bank-bench`: each client sends a request, waits for
//! its answer, and sends the next, for a fixed time.

use crate::chaos::workload::{self, Mix, OpKind, PlacedHold, MIX_KINDS};
use crate::client::{chain_id, connect, expiry_in, request, signed_transfer, Connections, Server, DEFAULT_LIFETIME};
use crate::cpu::{CpuReport, CpuSample, Watched};
use crate::ledger::{AccountKey, Hash32, TxId};
use crate::proto::bank::{StageStat, StatusReply, StatusRequest, TransferBatchRequest, TransferRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// One benchmark run's shape.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub servers: Vec<Server>,
    /// Concurrent closed-loop clients.
    pub concurrency: usize,
    /// Transfers per request: 1 uses `Transfer`, more use `TransferBatch`.
    pub batch: usize,
    pub duration: Duration,
    /// Load before measuring, so connections and caches are warm.
    pub warmup: Duration,
    /// Transfers go between accounts `0..accounts`.
    pub accounts: u64,
    pub request_timeout: Duration,
    /// Node processes on this machine and their pids, whose CPU time the
    /// run reports (`bank-bench --local`); the benchmark's own is always read.
    pub local_pids: Vec<(Server, u32)>,
    /// What each request carries (one operation per request unless only
    /// transfers): the genesis must register the dev issuer for issues.
    pub mix: Mix,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub concurrency: usize,
    pub batch: usize,
    pub duration_s: f64,
    /// Committed transfers per second.
    pub tx_per_s: f64,
    pub requests: u64,
    pub committed: u64,
    pub errors: u64,
    /// Requests resubmitted after an unknown outcome.
    pub retries: u64,
    /// With a mix: committed operations by kind.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub committed_by_kind: BTreeMap<String, u64>,
    /// What the first failed transfer of the run was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Leader's time per stage during the run: count and mean in ms.
    pub stages: BTreeMap<String, StageTime>,
    /// CPU time per committed transfer by process, and how busy the
    /// machine was (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuReport>,
}

/// Time one stage took during a run, on the leader.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub count: u64,
    pub avg_ms: f64,
    pub max_ms_since_start: f64,
}

/// How long a status call may take: a saturated leader (or a debug
/// build's) answers slowly, and without it a run has no stages.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Every answering server's status, by address.
async fn statuses(servers: &[Server]) -> Vec<(String, StatusReply)> {
    let mut out = Vec::new();
    for s in servers {
        let Ok(mut c) = connect(&s.addr) else { continue };
        if let Ok(r) = c.status(request(StatusRequest {}, STATUS_TIMEOUT)).await {
            out.push((s.addr.clone(), r.into_inner()));
        }
    }
    out
}

/// The node that calls itself leader in the newest term: right after an
/// election, the leader of an older term may not know it yet.
fn newest_leader(statuses: &[(String, StatusReply)]) -> Option<&(String, StatusReply)> {
    statuses
        .iter()
        .filter(|(_, st)| st.role == "leader")
        .max_by_key(|(_, st)| st.term)
}

/// The leader's stage counters, and which node it is.
async fn leader_stages(servers: &[Server]) -> Option<(String, Vec<StageStat>)> {
    newest_leader(&statuses(servers).await).map(|(addr, st)| (addr.clone(), st.stages.clone()))
}

async fn stages_of(addr: &str) -> Vec<StageStat> {
    let Ok(mut c) = connect(addr) else { return Vec::new() };
    c.status(request(StatusRequest {}, STATUS_TIMEOUT))
        .await
        .map(|r| r.into_inner().stages)
        .unwrap_or_default()
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    /// Committed operations of a mix, in the order of [`MIX_KINDS`].
    by_kind: [AtomicU64; 6],
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    retries: AtomicU64,
    requests: AtomicU64,
}

impl Counters {
    /// Keeps the run's first error.
    fn note_error(&self, e: String) {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }
}

/// Most latency samples one client keeps: bounds memory on long runs.
const MAX_SAMPLES_PER_CLIENT: usize = 1_000_000;

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Puts the current leader first, as a client that remembers where the
/// leader is would: a follower would forward every request, one hop more.
/// Right after a cluster starts, a node may still call itself leader of an
/// older term; the leader chosen is the one every answering node agrees on
/// (waiting up to [`LEADER_SETTLE`] for that), else the newest term's.
async fn leader_first(servers: &[Server]) -> Vec<Server> {
    let mut out = servers.to_vec();
    let deadline = Instant::now() + LEADER_SETTLE;
    let mut best = None;
    loop {
        let statuses = statuses(servers).await;
        if let Some((addr, leader)) = newest_leader(&statuses) {
            let agreed = statuses
                .iter()
                .all(|(_, st)| st.term <= leader.term && st.leader_id.is_none_or(|l| l == leader.id));
            best = Some(addr.clone());
            if agreed {
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(addr) = best {
        out.sort_by_key(|s| s.addr != addr);
    }
    out
}

/// How long [`leader_first`] waits for the nodes to agree on a leader.
const LEADER_SETTLE: Duration = Duration::from_secs(10);

fn sign(key: &AccountKey, chain: Hash32, id: String, to: u64) -> TransferRequest {
    // Bench ids ("b" + 8 hex + two decimal u64s) are at most 51 plain bytes.
    let id = TxId::new(id).unwrap_or_else(|_| TxId::random());
    signed_transfer(key, chain, &id, to, 1)
}

/// Runs one closed-loop load and measures it.
///
/// Transfers are signed with the dev keys ([`AccountKey::dev`]): the
/// cluster's genesis must register them (as `bank-server genesis` does
/// without `--keystore`).
pub async fn run_load(mut config: LoadConfig) -> Result<LoadResult, tonic::Status> {
    config.servers = leader_first(&config.servers).await;
    let chain = chain_id(&config.servers, config.request_timeout, None).await?;
    // Derived on first use (~25 us each), then shared by all clients.
    let keys: Arc<Vec<OnceLock<AccountKey>>> = Arc::new((0..config.accounts).map(|_| OnceLock::new()).collect());
    let run_id: u32 = rand::random();
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let until = measure_from + config.duration;
    let mut tasks = Vec::new();
    for worker in 0..config.concurrency {
        let config = config.clone();
        let counters = Arc::clone(&counters);
        let keys = Arc::clone(&keys);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(u64::from(run_id) << 20 | worker as u64);
            let mut samples: Vec<u32> = Vec::new();
            let mut seq = 0u64;
            // Each client keeps its own connections, as separate client
            // processes would.
            let mut conns = Connections::default();
            let mut holds: Vec<PlacedHold> = Vec::new();
            while Instant::now() < until {
                if config.mix != Mix::TRANSFERS {
                    seq += 1;
                    let kind = config.mix.next(&mut rng, config.accounts, &mut holds);
                    let id = format!("b{run_id:08x}-{worker}-{seq}");
                    let measured = Instant::now() >= measure_from;
                    let t0 = Instant::now();
                    let (ok, error) = send_op(&mut conns, &config, &kind, &id, chain).await;
                    if let (true, OpKind::Hold { from, to, amount, .. }) = (ok, &kind) {
                        holds.push((id, *from, *to, *amount));
                    }
                    if let Some(e) = error {
                        counters.note_error(e);
                    }
                    if measured && Instant::now() <= until {
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        let i = MIX_KINDS.iter().position(|k| *k == kind.name()).unwrap_or(0);
                        if ok {
                            counters.committed.fetch_add(1, Ordering::Relaxed);
                            counters.by_kind[i].fetch_add(1, Ordering::Relaxed);
                        } else {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        if samples.len() < MAX_SAMPLES_PER_CLIENT {
                            samples.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        }
                    }
                    continue;
                }
                let transfers: Vec<TransferRequest> = (0..config.batch.max(1))
                    .map(|_| {
                        seq += 1;
                        let from = rng.gen_range(0..config.accounts);
                        let to = (from + rng.gen_range(1..config.accounts)) % config.accounts;
                        let key = keys[from as usize].get_or_init(|| AccountKey::dev(from));
                        sign(key, chain, format!("b{run_id:08x}-{worker}-{seq}"), to)
                    })
                    .collect();
                let measured = Instant::now() >= measure_from;
                let t0 = Instant::now();
                let (ok, bad, unknown, error) = send(&mut conns, &config, transfers.clone()).await;
                let (ok, bad, error) = if unknown {
                    // The same ids again: settles the outcome, never applies twice.
                    if measured {
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                    }
                    let (ok, bad, _, error) = send(&mut conns, &config, transfers).await;
                    (ok, bad, error)
                } else {
                    (ok, bad, error)
                };
                if let Some(e) = error {
                    counters.note_error(e);
                }
                if measured && Instant::now() <= until {
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    counters.committed.fetch_add(ok, Ordering::Relaxed);
                    counters.errors.fetch_add(bad, Ordering::Relaxed);
                    if samples.len() < MAX_SAMPLES_PER_CLIENT {
                        samples.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                }
            }
            samples
        }));
    }
    // Stage counters are read once the warm-up is over, and again at the end.
    tokio::time::sleep_until(measure_from).await;
    // CPU first: the status call that finds the leader may take seconds.
    let watched = watched(&config);
    let cpu_before = CpuSample::take(&watched);
    let before = leader_stages(&config.servers).await;
    let leader_addr = before.as_ref().map(|(addr, _)| addr.clone());
    tokio::time::sleep_until(until).await;
    let cpu_after = CpuSample::take(&watched);
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            all.extend(s);
        }
    }
    all.sort_unstable();
    let mut stages = BTreeMap::new();
    if let Some((addr, before)) = before {
        for after in stages_of(&addr).await {
            let b = before.iter().find(|s| s.name == after.name);
            let count = after.count - b.map_or(0, |b| b.count);
            let total = after.total_us - b.map_or(0, |b| b.total_us);
            stages.insert(
                after.name.clone(),
                StageTime {
                    count,
                    avg_ms: if count == 0 {
                        0.0
                    } else {
                        total as f64 / count as f64 / 1000.0
                    },
                    max_ms_since_start: after.max_us as f64 / 1000.0,
                },
            );
        }
    }
    let secs = config.duration.as_secs_f64();
    let committed = counters.committed.load(Ordering::Relaxed);
    let first_error = counters.first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(LoadResult {
        concurrency: config.concurrency,
        batch: config.batch.max(1),
        duration_s: secs,
        tx_per_s: committed as f64 / secs,
        requests: counters.requests.load(Ordering::Relaxed),
        committed,
        errors: counters.errors.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        committed_by_kind: MIX_KINDS
            .iter()
            .zip(&counters.by_kind)
            .map(|(k, n)| (k.to_string(), n.load(Ordering::Relaxed)))
            .filter(|_| config.mix != Mix::TRANSFERS)
            .collect(),
        first_error,
        p50_ms: percentile(&all, 0.50),
        p90_ms: percentile(&all, 0.90),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
        stages,
        cpu: CpuReport::between(&cpu_before, &cpu_after, committed).map(|mut report| {
            if let Some((leader, _)) = config
                .local_pids
                .iter()
                .find(|(s, _)| Some(&s.addr) == leader_addr.as_ref())
            {
                let name = node_name(leader);
                if let Some(v) = report.us_per_tx.remove(&name) {
                    report.us_per_tx.insert(format!("{name} (leader)"), v);
                }
            }
            report
        }),
    })
}

/// The processes a run's CPU report covers: the local nodes and this
/// benchmark.
fn watched(config: &LoadConfig) -> Vec<Watched> {
    let mut out: Vec<Watched> = config
        .local_pids
        .iter()
        .map(|(s, pid)| Watched {
            name: node_name(s),
            pid: *pid,
        })
        .collect();
    out.push(Watched {
        name: "client".into(),
        pid: std::process::id(),
    });
    out
}

fn node_name(s: &Server) -> String {
    format!("node {}", s.id.map_or_else(|| s.addr.clone(), |i| i.to_string()))
}

/// Sends one operation of a mix, signed anew, and once more with the same
/// id if its outcome is unknown; returns whether it committed, and why not.
async fn send_op(
    conns: &mut Connections,
    config: &LoadConfig,
    kind: &OpKind,
    id: &str,
    chain: Hash32,
) -> (bool, Option<String>) {
    let req = match kind.signed(id, chain, expiry_in(DEFAULT_LIFETIME)) {
        Ok(r) => r,
        Err(e) => return (false, Some(e)),
    };
    let mut last = None;
    for _ in 0..2 {
        let r = conns
            .call_any(&config.servers, config.request_timeout, |c, t| {
                workload::send(c, req.clone(), t)
            })
            .await;
        match r {
            Ok(_) => return (true, None),
            Err(s) => {
                let unknown = is_unknown(s.code());
                last = Some(format!("{}: {}", kind.name(), status_line(&s)));
                if !unknown {
                    break;
                }
            }
        }
    }
    (false, last)
}

/// Sends one request; returns (committed, refused, outcome unknown, the
/// first refusal's reason).
async fn send(
    conns: &mut Connections,
    config: &LoadConfig,
    transfers: Vec<TransferRequest>,
) -> (u64, u64, bool, Option<String>) {
    let n = transfers.len() as u64;
    if transfers.len() == 1 {
        let msg = transfers.into_iter().next().unwrap_or_default();
        let r = conns
            .call_any(&config.servers, config.request_timeout, |mut c, t| {
                let msg = msg.clone();
                async move { Ok(c.transfer(request(msg, t)).await?.into_inner()) }
            })
            .await;
        return match r {
            Ok(_) => (1, 0, false, None),
            Err(s) => (0, 1, is_unknown(s.code()), Some(status_line(&s))),
        };
    }
    let msg = TransferBatchRequest { transfers };
    let r = conns
        .call_any(&config.servers, config.request_timeout, |mut c, t| {
            let msg = msg.clone();
            async move { Ok(c.transfer_batch(request(msg, t)).await?.into_inner()) }
        })
        .await;
    match r {
        Ok(reply) => {
            let ok = reply.results.iter().filter(|r| r.code == 0).count() as u64;
            let unknown = reply
                .results
                .iter()
                .any(|r| is_unknown(tonic::Code::from_i32(r.code as i32)));
            let error = reply
                .results
                .iter()
                .find(|r| r.code != 0)
                .map(|r| format!("{:?}: {}", tonic::Code::from_i32(r.code as i32), r.error));
            (ok, n - ok, unknown, error)
        }
        Err(s) => (0, n, is_unknown(s.code()), Some(status_line(&s))),
    }
}

fn status_line(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

fn is_unknown(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Unknown
    )
}
