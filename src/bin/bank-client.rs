//! `bank-client`: transfers, balances, status and the chain, from the command line.

use anyhow::{anyhow, bail, Context};
use bank_ledger::auth::AdminToken;
use bank_ledger::client::{
    call_any, chain_id, connect, control_request, fault_settings, gather_status, parse_servers, request,
    set_faults_everywhere, signed_transfer, status_json, Server,
};
use bank_ledger::config::DEFAULT_SERVERS;
use bank_ledger::ledger::keys::{create_keystore, key_path};
use bank_ledger::ledger::{AccountKey, Hash32, TxId};
use bank_ledger::proto::bank::{AccountHistoryRequest, AddNodeRequest, GetTxRequest, RemoveNodeRequest, VerifyRequest};
use bank_ledger::proto::bank::{BalanceRequest, BalancesRequest, GetBlocksRequest, PartitionGroup, SetFaultsRequest};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "bank-client", version, about = "Client of the Raft-replicated bank ledger")]
struct Cli {
    /// Servers to try, in order: HOST:PORT,... (or ID=HOST:PORT,...).
    #[arg(long, env = "BANK_SERVERS", default_value = DEFAULT_SERVERS, global = true)]
    servers: String,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Give up after this long (default 10 s; 300 s for `cluster`, where a
    /// new node may need to catch up first).
    #[arg(long, global = true)]
    timeout_ms: Option<u64>,
    /// File holding the cluster's admin token, for partition, heal, delay and
    /// cluster add/remove (needed when the nodes were started with one).
    #[arg(long, env = "BANK_ADMIN_TOKEN_FILE", global = true)]
    admin_token_file: Option<std::path::PathBuf>,
    /// Directory of account keys (`<account>.key`) that sign transfers. The
    /// default, `dev-keys`, holds the public demo keys shipped in the repository.
    #[arg(long, env = "BANK_KEYSTORE", default_value = "dev-keys", global = true)]
    keystore: PathBuf,
    /// Sign only for this chain (genesis hash, 64 hex digits): refuses servers
    /// that run another one. Without it, the chain is the one servers report.
    #[arg(long, env = "BANK_CHAIN_ID", global = true, value_parser = parse_chain_id)]
    chain_id: Option<Hash32>,
    /// Talk TLS, trusting this CA certificate (PEM): the cluster's `ca.pem`.
    #[arg(long, env = "BANK_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Move AMOUNT from account FROM to account TO; answers once committed.
    Transfer {
        from: u64,
        to: u64,
        amount: u64,
        /// Transaction id, unique forever; resubmitting it returns the first outcome.
        #[arg(long)]
        id: Option<String>,
    },
    /// Create a new key for ACCOUNT in the keystore and print its public key
    /// (register it in genesis). Never overwrites a key.
    Keygen {
        account: u64,
        /// Write the account's public dev key instead (insecure: anyone can
        /// derive it), for genesis files made without `--keystore`.
        #[arg(long)]
        dev: bool,
    },
    /// Linearizable balance of ACCOUNT.
    Balance {
        account: u64,
        /// Record an audited balance check in a block.
        #[arg(long)]
        record: bool,
        /// Id of the recorded check.
        #[arg(long, requires = "record")]
        id: Option<String>,
    },
    /// Every server's role, term, leader, height and tip.
    Status,
    /// One block by height.
    Block { height: u64 },
    /// Blocks from a height on.
    Chain {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// A committed transaction by id: block, outcome and content.
    Tx { id: String },
    /// The transactions touching ACCOUNT, newest first.
    History {
        account: u64,
        /// Entries to show (whole blocks are read; at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only blocks below this height (the "more before" height of a previous page).
        #[arg(long)]
        before: Option<u64>,
    },
    /// Follow the chain: print each new block as it is committed (Ctrl+C stops).
    Watch {
        /// Start at this height (default: the next block).
        #[arg(long)]
        from: Option<u64>,
        /// Poll interval.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Every balance, read atomically at one applied index, and their total.
    Balances,
    /// Each server re-checks its own stored chain (links, merkle roots, proof
    /// of work, every outcome re-executed, balances); fails if any is damaged.
    Verify,
    /// Cut server-to-server traffic into groups, e.g. `partition 0,1 2`; unlisted servers stand alone.
    Partition {
        /// Groups of node ids, members separated by commas.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Remove the partition.
    Heal,
    /// Change membership: add or remove nodes.
    Cluster {
        #[command(subcommand)]
        op: ClusterCmd,
    },
    /// Delay (and optionally drop) server-to-server messages; `--off` removes both.
    Delay {
        #[arg(long, required_unless_present_any = ["off", "loss"])]
        min_ms: Option<u64>,
        #[arg(long, required_unless_present_any = ["off", "loss"])]
        max_ms: Option<u64>,
        /// Fraction of messages to drop, 0 to 1.
        #[arg(long)]
        loss: Option<f64>,
        #[arg(long, conflicts_with_all = ["min_ms", "max_ms", "loss"])]
        off: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Add node ID serving at HOST:PORT: it joins as a learner and becomes a
    /// voter once it has caught up. Start it first with `bank-server --id ID
    /// --listen HOST:PORT --join ANY-MEMBER`.
    Add { id: u64, addr: String },
    /// Remove node ID (voter or learner).
    Remove { id: u64 },
}

/// `println!` that ends the program quietly, with the status a process
/// killed by SIGPIPE has (141), when the reader of stdout has gone
/// (`bank-client chain | head`), as Unix tools do; any other write error
/// (a full disk) is one line and exit 1. (Restoring SIGPIPE's default
/// instead would also kill the client when a server drops a connection
/// mid-write, e.g. a TLS server refusing plain text.)
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*).and_then(|()| stdout.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
            eprintln!("error: cannot write the output: {e}");
            std::process::exit(1);
        }
    }};
}

fn main() {
    let cli = Cli::parse();
    bank_ledger::run_main(|| {
        tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(run(cli))
    });
}

fn parse_chain_id(s: &str) -> Result<Hash32, String> {
    Hash32::from_hex(s).map_err(|e| e.to_string())
}

/// The key that signs transfers from `account`, from the keystore.
fn load_key(keystore: &Path, account: u64) -> anyhow::Result<AccountKey> {
    let path = key_path(keystore, account);
    if !path.exists() {
        bail!(
            "no key for account {account}: {} not found (pass --keystore DIR, or create one with `bank-client keygen {account}` and register its public key in genesis)",
            path.display()
        );
    }
    let key = AccountKey::load(&path)?;
    if key.account != account {
        bail!(
            "{} holds the key of account {}, not {account}",
            path.display(),
            key.account
        );
    }
    Ok(key)
}

fn is_cut_off(msg: &str) -> bool {
    msg.contains("transport error") || msg.contains("h2 protocol error") || msg.contains("connection")
}

/// One line a person can act on, from a gRPC status.
fn explain(status: tonic::Status) -> anyhow::Error {
    let msg = status.message().replace('\n', " ");
    match status.code() {
        // A TLS server cuts a plain-text client off mid-handshake.
        tonic::Code::Unavailable if !bank_ledger::tls::client_tls_enabled() && is_cut_off(&msg) => {
            anyhow!("no server reachable: {msg} (if the cluster runs TLS, pass --tls-ca CA.pem)")
        }
        tonic::Code::Unavailable => anyhow!("no server reachable: {msg}"),
        tonic::Code::DeadlineExceeded if !msg.is_empty() => anyhow!("{msg}"),
        // The client's own deadline fired before any server answered.
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => anyhow!("timed out with no answer (no quorum?)"),
        _ => anyhow!("{msg}"),
    }
}

/// Like [`explain`], but a timed-out transfer names the id to resubmit: its
/// outcome is unknown, and only the same id can tell it without risk.
fn explain_transfer(status: tonic::Status, tx_id: &TxId) -> anyhow::Error {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => anyhow!(
            "no quorum: not committed before the deadline; the outcome is unknown: resubmit with --id {tx_id} to learn it"
        ),
        tonic::Code::Unavailable => anyhow!(
            "no server reachable ({}); if one received the transfer, resubmit with --id {tx_id} to learn its outcome",
            status.message()
        ),
        _ => explain(status),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let servers = parse_servers(&cli.servers).map_err(|e| anyhow!(e))?;
    if let Some(ca) = &cli.tls_ca {
        bank_ledger::tls::use_client_tls(bank_ledger::tls::client_config(ca)?);
    }
    let default_ms = if matches!(cli.command, Cmd::Cluster { .. }) {
        300_000
    } else {
        10_000
    };
    let timeout = Duration::from_millis(cli.timeout_ms.unwrap_or(default_ms).max(1));
    let admin = match &cli.admin_token_file {
        Some(path) => Some(AdminToken::from_file(path)?),
        None => None,
    };
    match cli.command {
        Cmd::Transfer { from, to, amount, id } => {
            // The id is chosen here, once: retries on other servers are then idempotent.
            let tx_id = match id {
                Some(id) => TxId::new(id)?,
                None => TxId::random(),
            };
            let key = load_key(&cli.keystore, from)?;
            let chain = chain_id(&servers, timeout, cli.chain_id).await.map_err(explain)?;
            let msg = signed_transfer(&key, chain, &tx_id, to, amount);
            let r = call_any(&servers, timeout, |mut c, t| {
                let msg = msg.clone();
                async move { Ok(c.transfer(request(msg, t)).await?.into_inner()) }
            })
            .await
            .map_err(|s| explain_transfer(s, &tx_id))?;
            if cli.json {
                out!(
                    "{}",
                    json!({"tx_id": r.tx_id, "height": r.height, "block_hash": r.block_hash, "status": "committed"})
                );
            } else {
                out!(
                    "committed tx {} ({from} -> {to}, {amount}) in block {} {}",
                    r.tx_id,
                    r.height,
                    r.block_hash
                );
            }
        }
        Cmd::Keygen { account, dev } => {
            create_keystore(&cli.keystore)?;
            let path = key_path(&cli.keystore, account);
            if path.exists() {
                bail!("{} already exists; a key is never overwritten", path.display());
            }
            let key = if dev {
                AccountKey::dev(account)
            } else {
                AccountKey::generate(account)
            };
            key.save(&path)?;
            if cli.json {
                out!(
                    "{}",
                    json!({"account": account, "public_key": key.public().to_hex(), "key_file": path.display().to_string()})
                );
            } else {
                out!(
                    "account {account}: public key {} (secret key in {})",
                    key.public(),
                    path.display()
                );
            }
        }
        Cmd::Balance { account, record, id } => {
            let tx_id = match id {
                Some(id) => TxId::new(id)?.to_string(),
                None if record => TxId::random().to_string(),
                None => String::new(),
            };
            let msg = BalanceRequest { account, record, tx_id };
            let r = call_any(&servers, timeout, |mut c, t| {
                let msg = msg.clone();
                async move { Ok(c.balance(request(msg, t)).await?.into_inner()) }
            })
            .await
            .map_err(explain)?;
            match (cli.json, &r.record) {
                (true, None) => out!("{}", json!({"account": r.account, "balance": r.balance})),
                (true, Some(rec)) => out!(
                    "{}",
                    json!({"account": r.account, "balance": r.balance, "tx_id": rec.tx_id,
                           "height": rec.height, "block_hash": rec.block_hash})
                ),
                (false, None) => out!("account {}: {}", r.account, r.balance),
                (false, Some(rec)) => out!(
                    "account {}: {} (audited as tx {} in block {} {})",
                    r.account,
                    r.balance,
                    rec.tx_id,
                    rec.height,
                    rec.block_hash
                ),
            }
        }
        Cmd::Status => status(&servers, timeout, cli.json).await?,
        Cmd::Verify => verify(&servers, timeout, cli.json).await?,
        Cmd::Balances => {
            let r = call_any(&servers, timeout, |mut c, t| async move {
                Ok(c.balances(request(BalancesRequest {}, t)).await?.into_inner())
            })
            .await
            .map_err(explain)?;
            let total: u128 = r.balances.iter().map(|b| u128::from(b.balance)).sum();
            if cli.json {
                let balances: serde_json::Map<String, Value> = r
                    .balances
                    .iter()
                    .map(|b| (b.account.to_string(), json!(b.balance)))
                    .collect();
                out!(
                    "{}",
                    json!({"height": r.height, "tip_hash": r.tip_hash, "applied_index": r.applied_index,
                           "total": total, "balances": balances})
                );
            } else {
                for b in &r.balances {
                    out!("account {:>8}: {}", b.account, b.balance);
                }
                out!("total {total} at height {} (log index {})", r.height, r.applied_index);
            }
        }
        Cmd::Partition { groups } => {
            let mut partition = Vec::new();
            for g in &groups {
                let members = g
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(|m| m.trim().parse::<u64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| anyhow!("bad group {g:?}: expected node ids separated by commas, e.g. 0,1"))?;
                partition.push(PartitionGroup { members });
            }
            let req = SetFaultsRequest {
                set_partition: true,
                partition,
                ..Default::default()
            };
            apply_faults(&servers, req, timeout, admin.as_ref(), cli.json).await?;
        }
        Cmd::Cluster { op } => {
            let (verb, m) = match op {
                ClusterCmd::Add { id, addr } => {
                    let msg = AddNodeRequest { id, addr };
                    let m = call_any(&servers, timeout, |mut c, t| {
                        let msg = msg.clone();
                        let admin = admin.clone();
                        async move { Ok(c.add_node(control_request(msg, t, admin.as_ref())).await?.into_inner()) }
                    })
                    .await
                    .map_err(explain)?;
                    (format!("added node {id}"), m)
                }
                ClusterCmd::Remove { id } => {
                    let msg = RemoveNodeRequest { id };
                    let m = call_any(&servers, timeout, |mut c, t| {
                        let admin = admin.clone();
                        async move {
                            Ok(c.remove_node(control_request(msg, t, admin.as_ref()))
                                .await?
                                .into_inner())
                        }
                    })
                    .await
                    .map_err(explain)?;
                    (format!("removed node {id}"), m)
                }
            };
            if cli.json {
                out!("{}", json!({"voters": m.voters, "learners": m.learners}));
            } else {
                out!("{verb}; voters {:?} learners {:?}", m.voters, m.learners);
            }
        }
        Cmd::Heal => {
            let req = SetFaultsRequest {
                set_partition: true,
                ..Default::default()
            };
            apply_faults(&servers, req, timeout, admin.as_ref(), cli.json).await?;
        }
        Cmd::Delay {
            min_ms,
            max_ms,
            loss,
            off,
        } => {
            let req = if off {
                SetFaultsRequest {
                    set_delay: true,
                    ..Default::default()
                }
            } else {
                SetFaultsRequest {
                    set_delay: true,
                    delay_min_ms: min_ms.unwrap_or(0),
                    delay_max_ms: max_ms.unwrap_or(0),
                    loss: loss.unwrap_or(0.0),
                    ..Default::default()
                }
            };
            apply_faults(&servers, req, timeout, admin.as_ref(), cli.json).await?;
        }
        Cmd::Block { height } => {
            let blocks = fetch_blocks(&servers, timeout, height, 1).await?;
            let block = blocks
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("no block at height {height}"))?;
            if cli.json {
                out!("{block}");
            } else {
                print_block(&block);
            }
        }
        Cmd::Tx { id } => {
            let tx_id = TxId::new(id)?.to_string();
            let r = call_any(&servers, timeout, |mut c, t| {
                let msg = GetTxRequest { tx_id: tx_id.clone() };
                async move { Ok(c.get_tx(request(msg, t)).await?.into_inner()) }
            })
            .await
            .map_err(explain)?;
            let v: Value = serde_json::from_str(&r.json).context("server sent malformed JSON")?;
            if cli.json {
                out!("{v}");
            } else {
                out!("tx       {}", v["tx_id"].as_str().unwrap_or("?"));
                out!("what     {}", describe_tx(&v["tx"], &v["balance"]));
                let reason = v["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
                out!("status   {}{reason}", v["status"].as_str().unwrap_or("?"));
                out!("block    {} {}", v["height"], v["block_hash"].as_str().unwrap_or("?"));
            }
        }
        Cmd::History { account, limit, before } => {
            let r = call_any(&servers, timeout, |mut c, t| {
                let msg = AccountHistoryRequest {
                    account,
                    limit,
                    before_height: before,
                };
                async move { Ok(c.account_history(request(msg, t)).await?.into_inner()) }
            })
            .await
            .map_err(explain)?;
            let v: Value = serde_json::from_str(&r.json).context("server sent malformed JSON")?;
            if cli.json {
                out!("{v}");
            } else {
                out!("account {}: balance {}", account, v["balance"]);
                out!("{:>8}  {:<36} {:<10} WHAT", "HEIGHT", "TX", "STATUS");
                for e in v["entries"].as_array().into_iter().flatten() {
                    let id = e["tx"]["id"].as_str().unwrap_or("-");
                    let reason = e["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
                    out!(
                        "{:>8}  {:<36} {:<10} {}{reason}",
                        e["height"].as_u64().unwrap_or(0),
                        id,
                        e["status"].as_str().unwrap_or("?"),
                        describe_tx(&e["tx"], &e["balance"])
                    );
                }
                if let Some(b) = v["next_before"].as_u64() {
                    out!("more before height {b}: bank-client history {account} --before {b}");
                }
            }
        }
        Cmd::Watch { from, interval_ms } => {
            let mut next = match from {
                Some(h) => h,
                None => {
                    let r = call_any(&servers, timeout, |mut c, t| async move {
                        let msg = GetBlocksRequest {
                            from_height: u64::MAX,
                            limit: 1,
                        };
                        Ok(c.get_blocks(request(msg, t)).await?.into_inner())
                    })
                    .await
                    .map_err(explain)?;
                    r.tip_height + 1
                }
            };
            if !cli.json {
                out!("watching from height {next} (Ctrl+C stops)");
            }
            loop {
                // A server that goes away is retried: watching outlives failovers.
                match fetch_blocks(&servers, timeout, next, 256).await {
                    Ok(blocks) => {
                        for b in &blocks {
                            if cli.json {
                                out!("{b}");
                            } else {
                                let ms = b["header"]["timestamp_ms"].as_u64().unwrap_or(0);
                                let day_ms = ms % 86_400_000;
                                out!(
                                    "{:>8}  {}  txs={:<5} {:02}:{:02}:{:02}.{:03} UTC",
                                    b["header"]["height"].as_u64().unwrap_or(0),
                                    b["hash"].as_str().unwrap_or("?"),
                                    b["txs"].as_array().map_or(0, Vec::len),
                                    day_ms / 3_600_000,
                                    day_ms / 60_000 % 60,
                                    day_ms / 1000 % 60,
                                    day_ms % 1000
                                );
                            }
                        }
                        next += blocks.len() as u64;
                    }
                    Err(e) => eprintln!("watch: {e}; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(interval_ms.max(50))).await;
            }
        }
        Cmd::Chain { from, limit } => {
            let blocks = fetch_blocks(&servers, timeout, from, limit).await?;
            if cli.json {
                out!("{}", Value::Array(blocks));
            } else {
                for b in &blocks {
                    out!(
                        "{:>6}  {}  txs={}",
                        b["header"]["height"],
                        b["hash"].as_str().unwrap_or("?"),
                        b["txs"].as_array().map_or(0, Vec::len)
                    );
                }
            }
        }
    }
    Ok(())
}

/// Fetches up to `limit` blocks from `from` on, page by page.
async fn fetch_blocks(servers: &[Server], timeout: Duration, from: u64, limit: u64) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = from;
    while (out.len() as u64) < limit {
        let want = (limit - out.len() as u64).min(256) as u32;
        let msg = GetBlocksRequest {
            from_height: next,
            limit: want,
        };
        let r = call_any(servers, timeout, |mut c, t| async move {
            Ok(c.get_blocks(request(msg, t)).await?.into_inner())
        })
        .await
        .map_err(explain)?;
        if r.blocks_json.is_empty() {
            break;
        }
        for b in r.blocks_json {
            out.push(serde_json::from_str(&b).context("server sent a malformed block")?);
            next += 1;
        }
    }
    Ok(out)
}

/// One line for a transaction's JSON (as in `chain.jsonl`).
fn describe_tx(tx: &Value, balance: &Value) -> String {
    match tx["type"].as_str() {
        Some("transfer") => format!("transfer {} -> {} amount {}", tx["from"], tx["to"], tx["amount"]),
        Some("balance_check") => format!("balance check of {} = {balance}", tx["account"]),
        Some("allocation") => format!("allocation to {} amount {}", tx["account"], tx["amount"]),
        _ => tx.to_string(),
    }
}

fn print_block(b: &Value) {
    let h = &b["header"];
    out!("block {}  {}", h["height"], b["hash"].as_str().unwrap_or("?"));
    out!("  prev_hash    {}", h["prev_hash"].as_str().unwrap_or("?"));
    out!("  merkle_root  {}", h["merkle_root"].as_str().unwrap_or("?"));
    out!(
        "  timestamp_ms {}  difficulty {}  nonce {}",
        h["timestamp_ms"],
        h["difficulty"],
        h["nonce"]
    );
    let results = b["results"].as_array().cloned().unwrap_or_default();
    for (i, tx) in b["txs"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let r = results.get(i).cloned().unwrap_or(Value::Null);
        let status = r["status"].as_str().unwrap_or("?");
        let what = describe_tx(tx, &r["balance"]);
        let id = tx["id"].as_str().unwrap_or("-");
        let reason = r["reason"].as_str().map(|s| format!(": {s}")).unwrap_or_default();
        out!("  {i:>4}  {id:<24} {what}  [{status}{reason}]");
    }
}

/// Sends a fault setting to every server and reports what each applies.
/// Fails if a server refused it or none could be reached.
async fn apply_faults(
    servers: &[Server],
    req: SetFaultsRequest,
    timeout: Duration,
    admin: Option<&AdminToken>,
    as_json: bool,
) -> anyhow::Result<()> {
    let results = set_faults_everywhere(servers, req, timeout.min(Duration::from_secs(3)), admin).await;
    let mut applied = 0;
    let mut rows = Vec::new();
    for (s, r) in &results {
        match r {
            Ok(f) => {
                applied += 1;
                let f = fault_settings(f);
                if !as_json {
                    out!("{:<22} now applies: {}", s.addr, f.describe());
                }
                rows.push(json!({"id": s.id, "addr": s.addr, "faults": f}));
            }
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::InvalidArgument | tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                return Err(anyhow!("{}: {}", s.addr, e.message()))
            }
            Err(e) => {
                if !as_json {
                    out!(
                        "{:<22} unreachable ({}): it applies no faults until told again",
                        s.addr,
                        e.message()
                    );
                }
                rows.push(json!({"id": s.id, "addr": s.addr, "error": e.message()}));
            }
        }
    }
    if as_json {
        out!("{}", Value::Array(rows));
    }
    if applied == 0 {
        return Err(anyhow!("no server reachable"));
    }
    Ok(())
}

/// Asks every server to verify its own chain; one line (or JSON object) each.
async fn verify(servers: &[Server], timeout: Duration, as_json: bool) -> anyhow::Result<()> {
    let calls = servers.iter().map(|s| async move {
        let res = match connect(&s.addr) {
            Ok(mut c) => c
                .verify(request(VerifyRequest {}, timeout))
                .await
                .map(|r| r.into_inner()),
            Err(e) => Err(tonic::Status::invalid_argument(e.to_string())),
        };
        (s.clone(), res)
    });
    let rows = futures::future::join_all(calls).await;
    let mut damaged = 0;
    let mut verified = 0;
    let mut out = Vec::new();
    for (s, r) in &rows {
        match r {
            Ok(v) => {
                verified += 1;
                let secs = (v.elapsed_ms as f64 / 1000.0).max(1e-3);
                let (bps, tps) = (v.blocks as f64 / secs, v.transfers as f64 / secs);
                if !as_json {
                    out!(
                        "{:<22} intact: {} blocks, {} transfers in {} ms ({bps:.0} blocks/s, {tps:.0} transfers/s); tip {} at height {}",
                        s.addr, v.blocks, v.transfers, v.elapsed_ms, v.tip_hash, v.tip_height
                    );
                }
                out.push(json!({"id": s.id, "addr": s.addr, "intact": true, "blocks": v.blocks,
                    "transfers": v.transfers, "elapsed_ms": v.elapsed_ms, "blocks_per_s": bps.round(),
                    "transfers_per_s": tps.round(), "tip_height": v.tip_height, "tip_hash": v.tip_hash}));
            }
            Err(e) => {
                let corrupt = e.code() == tonic::Code::DataLoss;
                damaged += usize::from(corrupt);
                let what = if corrupt { "DAMAGED" } else { "not verified" };
                if !as_json {
                    out!("{:<22} {what}: {}", s.addr, e.message().replace('\n', " "));
                }
                out.push(
                    json!({"id": s.id, "addr": s.addr, "intact": false, "damaged": corrupt, "error": e.message()}),
                );
            }
        }
    }
    if as_json {
        out!("{}", Value::Array(out));
    }
    if damaged > 0 {
        return Err(anyhow!("{damaged} server(s) hold a damaged chain"));
    }
    if verified == 0 {
        return Err(anyhow!("no server could verify its chain"));
    }
    Ok(())
}

async fn status(servers: &[Server], timeout: Duration, as_json: bool) -> anyhow::Result<()> {
    let rows = gather_status(servers, timeout.min(Duration::from_secs(2))).await;
    let result = if rows.iter().any(|(_, r)| r.is_ok()) {
        Ok(())
    } else {
        Err(anyhow!("no server reachable"))
    };
    if as_json {
        out!("{}", status_json(&rows));
        return result;
    }
    out!(
        "{:<4} {:<22} {:<12} {:>6} {:>7} {:>8}  {:<16}  FAULTS",
        "ID",
        "ADDR",
        "ROLE",
        "TERM",
        "LEADER",
        "HEIGHT",
        "TIP"
    );
    let mut tips = std::collections::BTreeSet::new();
    for (s, r) in &rows {
        match r {
            Ok(st) => {
                tips.insert((st.height, st.tip_hash.clone()));
                out!(
                    "{:<4} {:<22} {:<12} {:>6} {:>7} {:>8}  {:<16}  {}",
                    st.id,
                    s.addr,
                    st.role,
                    st.term,
                    st.leader_id.map_or("-".to_string(), |l| l.to_string()),
                    st.height,
                    &st.tip_hash[..16.min(st.tip_hash.len())],
                    st.faults.as_ref().map(fault_settings).unwrap_or_default().describe()
                );
            }
            Err(e) => out!(
                "{:<4} {:<22} {:<12}  ({e})",
                s.id.map_or("?".to_string(), |i| i.to_string()),
                s.addr,
                "unreachable"
            ),
        }
    }
    if tips.len() == 1 {
        out!("all reachable servers agree on the tip");
    }
    // Membership and peer health, as the leader sees them (or any node).
    let view = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .max_by_key(|st| (st.role == "leader", st.term));
    if let Some(st) = view {
        out!();
        out!("members as seen by node {} ({}):", st.id, st.role);
        out!(
            "{:<4} {:<22} {:<8} {:>12} {:>10}",
            "ID",
            "ADDR",
            "KIND",
            "LAST HEARD",
            "LAG"
        );
        for p in &st.peers {
            out!(
                "{:<4} {:<22} {:<8} {:>12} {:>10}",
                p.id,
                p.addr,
                if p.voter { "voter" } else { "learner" },
                match p.last_heard_ms {
                    Some(0) if p.id == st.id => "self".to_string(),
                    Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
                    None => "never".to_string(),
                },
                p.lag_entries.map_or("-".to_string(), |l| format!("{l} entries")),
            );
        }
    }
    result
}
