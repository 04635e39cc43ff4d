//! `bank-chaos`: a bank workload under a nemesis of kills, restarts,
//! partitions and delays, checked afterwards (balances, chains, and every
//! read for linearizability). Exits non-zero on any violation.

use anyhow::Context;
use bank_ledger::chaos::{self, ChaosConfig, Report};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "bank-chaos",
    version,
    about = "Bank workload with a nemesis; checks that nothing is lost"
)]
struct Cli {
    /// How long clients and the nemesis run.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Seed of the fault schedule and the clients' choices (random if absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Accounts money moves between.
    #[arg(long, default_value_t = 5)]
    accounts: u64,
    /// Opening balance of each account.
    #[arg(long, default_value_t = 100)]
    balance: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Average time a fault is held before it is reverted.
    #[arg(long, default_value_t = 1000)]
    fault_hold_ms: u64,
    /// Deadline of one client operation.
    #[arg(long, default_value_t = 3000)]
    op_timeout_ms: u64,
    /// The bank-server binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Keep node data here instead of a temp dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() {
    bank_ledger::run_main(run_main);
}

fn run_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let server_bin = match cli.server_bin {
        Some(p) => p,
        None => std::env::current_exe()
            .context("cannot locate this executable")?
            .with_file_name("bank-server"),
    };
    let seed = cli.seed.unwrap_or_else(rand::random);
    let config = ChaosConfig {
        duration: Duration::from_secs(cli.duration_s),
        seed,
        clients: cli.clients,
        accounts: cli.accounts,
        opening_balance: cli.balance,
        nodes: cli.nodes,
        fault_hold: Duration::from_millis(cli.fault_hold_ms.max(2)),
        op_timeout: Duration::from_millis(cli.op_timeout_ms.max(1)),
        server_bin,
        data_dir: cli.data_dir,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(chaos::run(config))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("seed {}  ran {:.1} s", r.seed, r.duration_s);
    let kinds: Vec<String> = r.reads_by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let writes: Vec<String> = r
        .submitted_by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v}, {} acknowledged", r.acknowledged_by_kind.get(k).unwrap_or(&0)))
        .collect();
    println!(
        "ops {}  (writes {} [{}], reads {} [{}] + {} failed)",
        r.ops,
        r.transfers,
        writes.join("; "),
        r.reads,
        kinds.join(", "),
        r.reads_failed
    );
    println!(
        "reads: {} stale, {} back in height, {} not the chain's state at their height",
        r.stale_reads, r.reads_back_in_height, r.reads_wrong
    );
    println!(
        "writes: acknowledged {}, refused {}, unknown {} (settled: {} committed, {} failed; {} unsettled)",
        r.acknowledged, r.failed, r.unknown, r.unknown_settled_committed, r.unknown_settled_failed, r.unsettled
    );
    let h = &r.holds;
    println!(
        "holds: {} placed; {} posted, {} voided, {} expired, {} pending at the end",
        h.placed, h.posted, h.voided, h.expired, h.pending
    );
    let faults: Vec<String> = r.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("faults: {}", faults.join(", "));
    println!("final height {}, final term {}", r.final_height, r.final_term);
    if r.violations.is_empty() {
        println!("violations: none");
    } else {
        println!("violations: {}", r.violations.len());
        for v in &r.violations {
            println!("  - {v}");
        }
    }
}
