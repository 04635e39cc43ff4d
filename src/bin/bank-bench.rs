//! `bank-bench`: closed-loop load against a cluster, or (`--local`) a fresh
//! 3-node local cluster and a standard matrix of runs.

use anyhow::{anyhow, bail, Context};
use bank_ledger::bench::{run_load, LoadConfig, LoadResult};
use bank_ledger::chaos::cluster::ProcessCluster;
use bank_ledger::chaos::workload::{Mix, ISSUER};
use bank_ledger::client::{parse_servers, Server};
use bank_ledger::config::DEFAULT_SERVERS;
use bank_ledger::ledger::genesis::{GenesisFile, DEFAULT_DIFFICULTY};
use bank_ledger::ledger::{AccountKey, Signer};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "bank-bench", version, about = "Throughput and latency of the bank ledger")]
struct Cli {
    /// Start a fresh 3-node local cluster and run the standard matrix.
    #[arg(long)]
    local: bool,
    /// Servers of a running cluster (ignored with --local).
    #[arg(long, env = "BANK_SERVERS", default_value = DEFAULT_SERVERS)]
    servers: String,
    /// Concurrent closed-loop clients (single run).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Transfers per request (single run); above 1 uses the batch API.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Unmeasured seconds of load before each run.
    #[arg(long, default_value_t = 1)]
    warmup_s: u64,
    /// Accounts transfers move between (with --local: accounts in the generated genesis).
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Per-request deadline.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// With --local: the bank-server binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// With --local: keep node data here instead of a temp dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With --local: extra bank-server flags, e.g. "--batch-max-txs 8192".
    #[arg(long, allow_hyphen_values = true)]
    server_args: Option<String>,
    /// With --local: the runs to make, as CONCURRENCYxBATCH (e.g. "256x1,4x1024");
    /// default the standard matrix.
    #[arg(long, value_delimiter = ',', value_parser = parse_run)]
    runs: Vec<(usize, usize)>,
    /// One operation per request, chosen by weight: `all` (half transfers;
    /// holds, their posts and voids, issues, redeems) or KIND=WEIGHT,...
    /// over transfer, hold, post, void, issue, redeem. Needs batch 1 (with
    /// --local: runs of batch 1; the default matrix's batch-1 runs).
    #[arg(long, value_parser = Mix::parse)]
    mix: Option<Mix>,
    /// Print JSON: one object for a single run, an array for --local.
    #[arg(long)]
    json: bool,
    /// With --local: record each transfer's path through the nodes
    /// (bank-server --timeline-dir) and print, for one-client runs, when it
    /// reaches each point on each node: what waits for what.
    #[arg(long)]
    timeline: bool,
}

/// The runs of `--local`: (concurrency, transfers per request).
const STANDARD_MATRIX: [(usize, usize); 7] = [(1, 1), (16, 1), (64, 1), (256, 1), (1, 1024), (4, 1024), (16, 1024)];

fn parse_run(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("{s:?} is not a run: expected CONCURRENCYxBATCH, e.g. 256x1 (batch 1-8192)");
    let (c, b) = s.split_once('x').ok_or_else(bad)?;
    let (c, b): (usize, usize) = (
        c.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if c == 0 || !(1..=8192).contains(&b) {
        return Err(bad());
    }
    Ok((c, b))
}

fn main() {
    bank_ledger::run_main(run_main);
}

fn run_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.accounts < 2 {
        bail!("--accounts must be at least 2");
    }
    let base = |servers: Vec<Server>, concurrency: usize, batch: usize| LoadConfig {
        servers,
        concurrency: concurrency.max(1),
        batch: batch.clamp(1, 8192),
        duration: Duration::from_secs(cli.duration_s.max(1)),
        warmup: Duration::from_secs(cli.warmup_s),
        accounts: cli.accounts,
        request_timeout: Duration::from_millis(cli.timeout_ms.max(1)),
        local_pids: Vec::new(),
        mix: cli.mix.unwrap_or(Mix::TRANSFERS),
    };
    if cli.mix.is_some() && (cli.batch > 1 || cli.runs.iter().any(|(_, b)| *b > 1)) {
        bail!("--mix sends one operation per request: use batch 1");
    }
    if !cli.local {
        if !cli.runs.is_empty() {
            bail!("--runs needs --local (against a running cluster use --concurrency and --batch)");
        }
        if cli.timeline {
            bail!("--timeline needs --local (a running cluster's servers take --timeline-dir themselves)");
        }
        let servers = parse_servers(&cli.servers).map_err(|e| anyhow!(e))?;
        let r = run_load(base(servers, cli.concurrency, cli.batch))
            .await
            .map_err(|e| anyhow!("cannot reach the cluster: {}", e.message()))?;
        if cli.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print_table(&[r]);
        }
        return Ok(());
    }

    let temp = tempfile::TempDir::new()?;
    let dir = cli.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    // Dev keys: the load signs with them (see bank_ledger::bench).
    let mut genesis = GenesisFile::generated(cli.accounts, 1_000_000_000, DEFAULT_DIFFICULTY, |id| {
        AccountKey::dev(id).public()
    });
    // The dev issuer, for a mix's issues and redeems.
    genesis.issuers = vec![AccountKey::dev_role(Signer::Issuer(ISSUER)).public()];
    let genesis_path = dir.join("genesis.json");
    std::fs::write(&genesis_path, serde_json::to_vec(&genesis)?)?;
    let server_bin = match &cli.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("bank-server"),
    };
    let mut server_args: Vec<String> = cli
        .server_args
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let timeline_dir = dir.join("timeline");
    if cli.timeline {
        server_args.push("--timeline-dir".into());
        server_args.push(timeline_dir.display().to_string());
    }
    let cluster = ProcessCluster::start(3, &server_bin, &server_args, &dir, &genesis_path)?;
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .ok_or_else(|| anyhow!("the local cluster elected no leader within 30 s"))?;
    if !cli.json {
        eprintln!(
            "local cluster: 3 nodes, {} accounts, difficulty {DEFAULT_DIFFICULTY}, data in {}",
            cli.accounts,
            dir.display()
        );
    }
    let matrix = if cli.runs.is_empty() {
        STANDARD_MATRIX
            .into_iter()
            .filter(|(_, batch)| cli.mix.is_none() || *batch == 1)
            .collect()
    } else {
        cli.runs.clone()
    };
    let mut results = Vec::new();
    let mut timelines = Vec::new();
    for (concurrency, batch) in matrix {
        let mut config = base(cluster.servers(), concurrency, batch);
        config.local_pids = cluster.pids();
        let from = bank_ledger::timeline::now_ns();
        let r = run_load(config)
            .await
            .map_err(|e| anyhow!("cannot reach the local cluster: {}", e.message()))?;
        // With more clients requests overlap and a median path means nothing.
        if cli.timeline && concurrency == 1 {
            let processes = bank_ledger::timeline::read_dir(&timeline_dir)
                .with_context(|| format!("cannot read the timelines in {}", timeline_dir.display()))?;
            timelines.push((batch, timeline_text(&processes, from, bank_ledger::timeline::now_ns())));
        }
        if !cli.json {
            eprintln!(
                "  concurrency {concurrency:>3} batch {batch:>4}: {:>9.0} tx/s  p50 {:.2} ms  p99 {:.2} ms",
                r.tx_per_s, r.p50_ms, r.p99_ms
            );
            if !r.committed_by_kind.is_empty() {
                let kinds: Vec<String> = r.committed_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
                eprintln!("    committed by kind: {}", kinds.join(", "));
            }
        }
        results.push(r);
    }
    drop(cluster);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_table(&results);
        for (batch, text) in timelines {
            println!();
            println!("timeline of one request, 1 client x {batch} transfers per request:");
            print!("{text}");
        }
    }
    Ok(())
}

/// The median path of a one-client run's requests, as a table.
fn timeline_text(
    processes: &std::collections::BTreeMap<String, Vec<(u64, bank_ledger::timeline::Point)>>,
    from: u64,
    to: u64,
) -> String {
    use bank_ledger::timeline::{median_path, Point};
    // The node the client sent to saw the most requests arrive.
    let entry = processes
        .iter()
        .max_by_key(|(_, evs)| {
            evs.iter()
                .filter(|(t, p)| *p == Point::TransferIn && (from..to).contains(t))
                .count()
        })
        .map(|(name, _)| name.clone())
        .unwrap_or_default();
    let (requests, steps) = median_path(processes, &entry, from, to);
    let mut out = format!("  median of {requests} requests; us after the request reached {entry}\n");
    for s in steps {
        let nth = if s.nth == 0 {
            String::new()
        } else {
            format!(" #{}", s.nth + 1)
        };
        out.push_str(&format!(
            "  {:>9.0}  {:<6} {}{nth}\n",
            s.median_us,
            s.process,
            s.point.name()
        ));
    }
    out
}

fn print_table(results: &[LoadResult]) {
    print_results(results);
    print_cpu(results);
    println!();
    println!("leader's mean time per stage (ms; count during the run):");
    let names: Vec<String> = results
        .first()
        .map(|r| r.stages.keys().cloned().collect())
        .unwrap_or_default();
    print!("{:>5} {:>6}", "conc", "batch");
    for n in &names {
        print!(" {:>14}", n);
    }
    println!();
    for r in results {
        print!("{:>5} {:>6}", r.concurrency, r.batch);
        for n in &names {
            match r.stages.get(n) {
                Some(s) => print!(" {:>7.2} {:>6}", s.avg_ms, s.count),
                None => print!(" {:>14}", "-"),
            }
        }
        println!();
    }
}

/// Where each run's CPU went: the figure that bounds throughput once the
/// machine is busy (cores x 1e6 / total us per transfer).
fn print_cpu(results: &[LoadResult]) {
    let Some(names) = results.iter().find_map(|r| r.cpu.as_ref()) else {
        return;
    };
    let names: Vec<String> = names.us_per_tx.keys().map(|n| n.replace(" (leader)", "")).collect();
    println!();
    println!("CPU time per committed transfer (us, user + kernel; * = leader):");
    print!("{:>5} {:>6}", "conc", "batch");
    for n in &names {
        print!(" {:>9}", n);
    }
    println!(" {:>9} {:>9} {:>9}", "total", "kernel", "busy");
    for r in results {
        let Some(c) = &r.cpu else { continue };
        print!("{:>5} {:>6}", r.concurrency, r.batch);
        for n in &names {
            let leader = format!("{n} (leader)");
            match (c.us_per_tx.get(n), c.us_per_tx.get(&leader)) {
                (Some(v), _) => print!(" {:>9.1}", v),
                (None, Some(v)) => print!(" {:>8.1}*", v),
                (None, None) => print!(" {:>9}", "-"),
            }
        }
        println!(
            " {:>9.1} {:>9.1} {:>8.0}%",
            c.total_us_per_tx,
            c.kernel_us_per_tx,
            c.machine_busy * 100.0
        );
    }
}

fn print_results(results: &[LoadResult]) {
    println!(
        "{:>5} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}",
        "conc", "batch", "tx/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "committed", "errors", "retries"
    );
    for r in results {
        println!(
            "{:>5} {:>6} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>7} {:>7}",
            r.concurrency,
            r.batch,
            r.tx_per_s,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.committed,
            r.errors,
            r.retries
        );
    }
    for r in results {
        if let Some(e) = &r.first_error {
            println!("concurrency {}, batch {}: first error: {e}", r.concurrency, r.batch);
        }
    }
}
