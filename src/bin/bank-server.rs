//! `bank-server`: runs one ledger node, or supervises a local 3-node cluster.

// jemalloc, because its background threads hand freed memory back to the
// OS. Measured on loaded nodes (docs/PERFORMANCE.md, "Memory"), 1.2-1.5M
// transfers: RSS ~410 MB with mimalloc, ~740 MB with glibc malloc, ~260 MB
// with jemalloc's defaults, ~180 MB with one arena and a 1 s decay (below).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compile-time options (its symbols carry the `_rjem_` prefix);
/// `_RJEM_MALLOC_CONF` in the environment still overrides them.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 70] = b"background_thread:true,narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

use anyhow::{bail, Context};
use bank_ledger::auth::AdminToken;
use bank_ledger::config::{parse_peers, NodeConfig, DEFAULT_PEERS};
use bank_ledger::launcher::NodeLaunch;
use bank_ledger::node;
use bank_ledger::producer::MAX_BLOCK_BYTES;
use bank_ledger::storage::NodePaths;
use bank_ledger::tls::TlsFiles;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Parser)]
#[command(name = "bank-server", version, about = "A node of the Raft-replicated bank ledger")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command_>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
enum Command_ {
    /// Start a local cluster of nodes on 127.0.0.1 in the foreground; Ctrl+C stops all.
    LocalCluster(LocalClusterArgs),
    /// Write a genesis file of N accounts numbered from 0, each with the same balance.
    Genesis(GenesisArgs),
    /// Write a development CA and node certificates for TLS: ca.pem, ca.key,
    /// node-<id>.pem and node-<id>.key.
    Certs(CertsArgs),
    /// Write a fresh random secret (64 hex digits, readable by its owner
    /// only) for --cluster-secret-file, --admin-token-file or
    /// --http-token-file; an existing file is never overwritten.
    Secret(SecretArgs),
    /// Check a stopped node's stored chain (links, merkle roots, proof of
    /// work, every outcome re-executed, balances); exit 1 naming the height of
    /// the first damage.
    Verify(VerifyArgs),
}

#[derive(Args)]
struct CertsArgs {
    /// Directory to write into (created; existing files are never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Certificates for nodes 0..N.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Host names and IP addresses the node certificates are valid for:
    /// every name clients and peers use to reach any node.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    hosts: Vec<String>,
}

#[derive(Args)]
struct SecretArgs {
    /// The file to create.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct VerifyArgs {
    /// The node whose data to check.
    #[arg(long)]
    id: u64,
    /// Directory holding server_<id>_db.
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
    #[arg(long, default_value = "first_blockchain.json")]
    genesis: PathBuf,
}

#[derive(Args)]
struct GenesisArgs {
    #[arg(long)]
    accounts: u64,
    #[arg(long)]
    balance: u64,
    #[arg(long, default_value_t = bank_ledger::ledger::genesis::DEFAULT_DIFFICULTY)]
    difficulty: u8,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Create a fresh key for every account in this directory (`<id>.key`)
    /// and register the public keys. Without it, accounts get the public
    /// dev keys: anyone can spend from them.
    #[arg(long)]
    keystore: Option<PathBuf>,
    /// Registrars to name (they open, freeze and unfreeze accounts); their
    /// keys go to the keystore as `registrar-N.key` (dev keys without one).
    #[arg(long, default_value_t = 1)]
    registrars: u32,
    /// Issuers to name (they issue and redeem money), as `issuer-N.key`.
    #[arg(long, default_value_t = 1)]
    issuers: u32,
}

#[derive(Args)]
struct NodeArgs {
    /// This node's id: its entry in --peers.
    #[arg(long)]
    id: Option<u64>,
    /// Every member of the initial cluster, as ID=HOST:PORT,...
    #[arg(long, default_value = DEFAULT_PEERS)]
    peers: String,
    /// Address to bind (default: this node's address in --peers). With
    /// --join it is also the address other nodes and clients use.
    #[arg(long)]
    listen: Option<String>,
    /// Join an existing cluster through any current member (HOST:PORT)
    /// instead of forming one from --peers; then run `bank-client cluster add`.
    #[arg(long, requires = "listen")]
    join: Option<String>,
    /// File holding the admin token control-plane calls (partition, delay,
    /// cluster add/remove) must carry; the same on every node. Without it,
    /// only callers on this host may make such calls.
    #[arg(long, env = "BANK_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// File holding the token every HTTP page but /healthz and /readyz
    /// then needs (`Authorization: Bearer TOKEN`; the dashboard takes it as
    /// `#token=TOKEN` in its address). Required when --http-listen is not a
    /// loopback address.
    #[arg(long, env = "BANK_HTTP_TOKEN_FILE")]
    http_token_file: Option<PathBuf>,
    /// At start, check the last N blocks (links, merkle roots, proof of work,
    /// signatures, records; fewer blocks once they hold 8,192 transactions)
    /// besides the balances' digest; 0 re-executes the whole chain, which
    /// takes time in proportion to history (see `bank-server verify`).
    #[arg(long, default_value_t = 64)]
    verify_blocks: u64,
    /// Do not check the rest of the chain in the background after the
    /// start-time check (by default a node does, and stops, naming the
    /// height, if it finds damage).
    #[arg(long)]
    no_background_verify: bool,
    /// Serve the dashboard, JSON API, /metrics, /healthz and /readyz here
    /// (plain HTTP, read-only, shows every balance); `off` for none.
    /// Default: 127.0.0.1 at the gRPC port + 100 (50151 for 50051).
    #[arg(long, env = "BANK_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Listen on a non-loopback address without TLS, although nothing is
    /// then encrypted; logs a warning.
    #[arg(long)]
    insecure: bool,
    /// This node's TLS certificate (PEM): serve client and Raft traffic over
    /// TLS, and dial peers with it (mutual TLS). Needs --tls-key and --tls-ca.
    #[arg(long, env = "BANK_NODE_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "BANK_NODE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): peers' certificates must be signed by it.
    #[arg(long, env = "BANK_NODE_TLS_CA", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Build a snapshot and purge the Raft log before it every N entries.
    #[arg(long, default_value_t = 5000)]
    snapshot_every: u64,
    /// Log entries kept behind the last snapshot.
    #[arg(long, default_value_t = 1000)]
    keep_log_entries: u64,
    /// Directory for server_<id>_db, server_<id>_states/ and server_<id>.log.
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
    /// Genesis file: accounts, difficulty and initial transfers.
    #[arg(long, default_value = "./first_blockchain.json")]
    genesis: PathBuf,
    /// Without TLS: the file holding the secret (64 hex digits) nodes
    /// prove to each other that they are members with. Default:
    /// cluster.secret in --data-dir, created by the first node to start.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// Test builds only: propose transfers without checking their
    /// signatures, as a compromised leader would.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    rogue_propose_unchecked: bool,
    /// Longest a client request may take before it gets a timeout.
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Most transactions in one block.
    #[arg(long, default_value_t = 4096)]
    batch_max_txs: usize,
    /// Most bytes of transactions in one block.
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_max_bytes: usize,
    /// Most transactions waiting for a block before requests are refused.
    #[arg(long, default_value_t = 65_536)]
    queue_max_txs: usize,
    /// Most blocks proposed and not yet committed at once. More blocks in
    /// flight means smaller blocks: on loopback 3 beat 8 by ~20% at 64-256
    /// single-transfer clients (per-block costs); raise it for long RTTs.
    #[arg(long, default_value_t = 3)]
    pipeline_depth: usize,
    /// While blocks are in flight, how long a block may wait for more
    /// transactions before it is cut (0: cut at once).
    #[arg(long, default_value_t = 0)]
    batch_max_wait_ms: u64,
    /// Record when each transfer passes each point of its path (received,
    /// block cut, mined, log flushed, replicated, applied, answered) into
    /// DIR/node<id>.timeline, for `bank-bench --local --timeline`. A
    /// diagnostic: off by default, at most 4 M events.
    #[arg(long)]
    timeline_dir: Option<PathBuf>,
    /// Raft heartbeat interval.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Raft election timeout: a random value between min and max.
    #[arg(long, default_value_t = 500)]
    election_timeout_min_ms: u64,
    #[arg(long, default_value_t = 1000)]
    election_timeout_max_ms: u64,
}

#[derive(Args)]
struct LocalClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Port of node 0; node N listens on base-port + N.
    #[arg(long, default_value_t = 50051)]
    base_port: u16,
    /// Directory holding every node's files.
    #[arg(long, default_value = "./cluster")]
    data_dir: PathBuf,
    /// Genesis file for all nodes.
    #[arg(long, default_value = "./first_blockchain.json")]
    genesis: PathBuf,
    /// Run over TLS with a development CA made in DATA_DIR/tls (kept across runs).
    #[arg(long)]
    tls: bool,
}

fn main() {
    bank_ledger::run_main(run_main);
}

fn run_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Some(Command_::LocalCluster(args)) => runtime.block_on(local_cluster(args)),
        Some(Command_::Genesis(args)) => write_genesis(args),
        Some(Command_::Certs(args)) => {
            if args.nodes == 0 || args.hosts.is_empty() {
                bail!("--nodes and --hosts must not be empty");
            }
            bank_ledger::tls::generate_dev_certs(args.nodes, &args.hosts)?.write(&args.out)?;
            println!(
                "wrote {}/ca.pem (and ca.key: keep it secret) and node-0..{} .pem/.key, valid for {}",
                args.out.display(),
                args.nodes - 1,
                args.hosts.join(", ")
            );
            Ok(())
        }
        Some(Command_::Secret(args)) => {
            bank_ledger::peer_auth::ClusterSecret::create(&args.out)?;
            println!("wrote a fresh secret to {}", args.out.display());
            Ok(())
        }
        Some(Command_::Verify(args)) => {
            let report = node::verify_offline(&args.data_dir, args.id, &args.genesis)?;
            println!("node {}: chain intact: {}", args.id, report.describe());
            Ok(())
        }
        None => runtime.block_on(run_node(cli.node)),
    }
}

fn write_genesis(args: GenesisArgs) -> anyhow::Result<()> {
    use bank_ledger::keystore::{create_keystore, key_path, save_key, save_role_key, signer_key_path};
    use bank_ledger::ledger::genesis::{GenesisFile, MAX_GENESIS_ACCOUNTS, MAX_ROLE_KEYS};
    use bank_ledger::ledger::{AccountKey, Signer};
    if args.accounts == 0 || args.accounts > MAX_GENESIS_ACCOUNTS as u64 {
        bail!("--accounts must be between 1 and {MAX_GENESIS_ACCOUNTS}");
    }
    if args.registrars as usize > MAX_ROLE_KEYS || args.issuers as usize > MAX_ROLE_KEYS {
        bail!("--registrars and --issuers may name at most {MAX_ROLE_KEYS} keys each");
    }
    let roles: Vec<(Signer, AccountKey)> = (0..args.registrars)
        .map(Signer::Registrar)
        .chain((0..args.issuers).map(Signer::Issuer))
        .map(|signer| {
            let key = match &args.keystore {
                Some(_) => AccountKey::generate(0),
                None => AccountKey::dev_role(signer),
            };
            (signer, key)
        })
        .collect();
    // Keys are made first and written only once the file is known to be valid.
    let keys: Vec<AccountKey> = match &args.keystore {
        Some(_) => (0..args.accounts).map(AccountKey::generate).collect(),
        None => Vec::new(),
    };
    let mut file = GenesisFile::generated(args.accounts, args.balance, args.difficulty, |id| {
        match keys.get(id as usize) {
            Some(k) => k.public(),
            None => AccountKey::dev(id).public(),
        }
    });
    // A fresh chain: two clusters share a chain id (and so accept each
    // other's signatures) only if they share this file.
    file.nonce = Some(bank_ledger::ledger::Hash32(rand::random()));
    for (signer, key) in &roles {
        match signer {
            Signer::Registrar(_) => file.registrars.push(key.public()),
            _ => file.issuers.push(key.public()),
        }
    }
    // Validate exactly as a node will (difficulty, total overflow).
    bank_ledger::ledger::Genesis::build(file.clone())?;
    if let Some(dir) = &args.keystore {
        create_keystore(dir)?;
        for key in &keys {
            save_key(key, &key_path(dir, key.account))?;
        }
        for (signer, key) in &roles {
            save_role_key(key, *signer, &signer_key_path(dir, *signer))?;
        }
    }
    let json = serde_json::to_string_pretty(&file)?;
    match args.out {
        Some(path) => std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{json}"),
    }
    if args.keystore.is_none() {
        eprintln!(
            "note: the accounts, registrars and issuers have the public dev keys (anyone can spend, open accounts and issue money); pass --keystore DIR for real keys"
        );
    }
    Ok(())
}

/// Logs to stderr and to `<data-dir>/server_<id>.log`; `RUST_LOG` overrides the filter.
fn init_logging(log_path: &std::path::Path) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    // openraft logs every unreachable peer at ERROR, many times a second while
    // a node is down; our own events (elections, blocks) say what matters.
    // `RUST_LOG=info,openraft=warn` brings openraft's view back.
    let default = "info,openraft=off,sled=warn,h2=warn,tower=warn,hyper=warn";
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let dir = log_path.parent().unwrap_or(std::path::Path::new("."));
    let name = log_path.file_name().context("log path has no file name")?.to_owned();
    let (file_writer, guard) = tracing_appender::non_blocking(tracing_appender::rolling::never(dir, name));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .with_filter(filter()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file_writer)
                .with_filter(filter()),
        )
        .init();
    Ok(guard)
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let Some(id) = args.id else {
        bail!("--id is required (or use `bank-server local-cluster`)");
    };
    if !(1024..=MAX_BLOCK_BYTES).contains(&args.batch_max_bytes) {
        bail!(
            "--batch-max-bytes must be between 1024 and {MAX_BLOCK_BYTES} (a block is one Raft message), not {}",
            args.batch_max_bytes
        );
    }
    if args.batch_max_txs == 0 {
        bail!("--batch-max-txs must be at least 1");
    }
    let peers = match (&args.join, &args.listen) {
        // A joining node's topology comes from the cluster it joins.
        (Some(_), Some(listen)) => parse_peers(&format!("{id}={listen}"))?,
        _ => parse_peers(&args.peers)?,
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let paths = NodePaths::new(&args.data_dir, id);
    let _guard = init_logging(&paths.log)?;
    if let Some(dir) = &args.timeline_dir {
        let path = bank_ledger::timeline::start(dir, &format!("node{id}"))
            .with_context(|| format!("cannot record a timeline in {}", dir.display()))?;
        tracing::info!("recording the timeline of transfers in {}", path.display());
    }

    let mut config = NodeConfig::new(id, peers, args.data_dir, args.genesis);
    config.listen = args.listen;
    config.join = args.join;
    config.verify_blocks = args.verify_blocks;
    config.background_verify = !args.no_background_verify;
    config.insecure = args.insecure;
    config.http_listen = match args.http_listen.as_deref() {
        Some("off") => None,
        Some(addr) => Some(addr.to_string()),
        None => {
            let grpc = config.listen.clone().unwrap_or(config.addr()?.to_string());
            Some(http_default(&grpc)?)
        }
    };
    config.tls = match (args.tls_cert, args.tls_key, args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
        _ => None,
    };
    config.admin_token = match &args.admin_token_file {
        Some(path) => Some(AdminToken::from_file(path)?),
        None => None,
    };
    config.http_token = match &args.http_token_file {
        Some(path) => Some(AdminToken::read(path, "HTTP token")?),
        None => None,
    };
    #[cfg(feature = "test-hooks")]
    {
        config.propose_unchecked = args.rogue_propose_unchecked;
    }
    config.cluster_secret_file = args.cluster_secret_file.clone();
    config.snapshot_every_entries = args.snapshot_every.max(1);
    config.keep_log_entries = args.keep_log_entries;
    config.request_timeout = Duration::from_millis(args.request_timeout_ms.max(1));
    config.producer.batch_max_txs = args.batch_max_txs;
    config.producer.batch_max_bytes = args.batch_max_bytes;
    config.producer.queue_max_txs = args.queue_max_txs;
    config.producer.pipeline_depth = args.pipeline_depth.max(1);
    config.producer.batch_max_wait = Duration::from_millis(args.batch_max_wait_ms.min(1000));
    config.heartbeat_ms = args.heartbeat_ms;
    config.election_timeout_min_ms = args.election_timeout_min_ms;
    config.election_timeout_max_ms = args.election_timeout_max_ms;
    node::run(config, shutdown_signal()).await?;
    Ok(())
}

/// Loopback, at the gRPC address's port + 100: the dashboard is plain,
/// unauthenticated HTTP showing every balance, so reaching it from other
/// hosts takes an explicit --http-listen.
fn http_default(grpc: &str) -> anyhow::Result<String> {
    let (_, port) = grpc
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("bad address {grpc:?}: expected HOST:PORT"))?;
    let http = port
        .checked_add(100)
        .ok_or_else(|| anyhow::anyhow!("gRPC port {port} leaves no room for the HTTP port; pass --http-listen"))?;
    Ok(format!("127.0.0.1:{http}"))
}

/// Resolves on Ctrl+C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn local_cluster(args: LocalClusterArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the bank-server executable")?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    if !args.genesis.exists() {
        bail!(
            "genesis file {} not found (pass --genesis FILE)",
            args.genesis.display()
        );
    }
    let peers = (0..args.nodes)
        .map(|i| {
            let port = u64::from(args.base_port) + i;
            format!("{i}=127.0.0.1:{port}")
        })
        .collect::<Vec<_>>()
        .join(",");
    let servers = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", u64::from(args.base_port) + i))
        .collect::<Vec<_>>()
        .join(",");
    let data_dir = args.data_dir.display().to_string();
    let genesis = args.genesis.display().to_string();
    let tls_dir = args.data_dir.join("tls");
    if args.tls && !tls_dir.join("ca.pem").exists() {
        bank_ledger::tls::generate_dev_certs(args.nodes, &["localhost".into(), "127.0.0.1".into()])?.write(&tls_dir)?;
    }
    println!("starting {} nodes; data in {data_dir}/", args.nodes);
    let mut children = Vec::new();
    for i in 0..args.nodes {
        let paths = NodePaths::new(&args.data_dir, i);
        println!(
            "  node {i}: 127.0.0.1:{}  dashboard http://127.0.0.1:{}/  state {}  log {}",
            u64::from(args.base_port) + i,
            u64::from(args.base_port) + i + 100,
            paths.states.display(),
            paths.log.display()
        );
        let mut launch = NodeLaunch::new(&exe, i, &peers, &args.data_dir, &args.genesis);
        launch.tls = args.tls.then(|| bank_ledger::tls::node_files(&tls_dir, i));
        let mut child = Command::from(launch.command())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node {i}"))?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[node {i}] {line}");
                }
            });
        }
        children.push((i, child));
    }
    if servers != bank_ledger::config::DEFAULT_SERVERS {
        println!("clients: export BANK_SERVERS={servers}");
    }
    if args.tls {
        println!("clients: export BANK_TLS_CA={}", tls_dir.join("ca.pem").display());
    }
    println!("try: bank-client status; bank-client transfer 1 2 50; bank-client balance 2");
    println!("Ctrl+C stops all nodes.");

    let mut exited = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = shutdown_signal() => break,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                for (slot, (i, child)) in children.iter_mut().enumerate() {
                    if exited[slot] {
                        continue;
                    }
                    if let Ok(Some(status)) = child.try_wait() {
                        exited[slot] = true;
                        let tls = if args.tls {
                            let f = bank_ledger::tls::node_files(&tls_dir, *i);
                            format!(" --tls-cert {} --tls-key {} --tls-ca {}", f.cert.display(), f.key.display(), f.ca.display())
                        } else {
                            String::new()
                        };
                        println!(
                            "node {i} exited ({status}); restart it in another terminal with:\n  {} --id {i} --peers {peers} --data-dir {data_dir} --genesis {genesis}{tls}",
                            exe.display()
                        );
                    }
                }
            }
        }
    }
    println!("stopping all nodes");
    for (_, child) in children.iter_mut() {
        let _ = child.start_kill();
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait().await;
    }
    Ok(())
}
