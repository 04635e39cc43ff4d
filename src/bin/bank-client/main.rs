//! `bank-client`: transfers, balances, status and the chain, from the command line.
//!
//! This file holds the command line and sends each command to its module.

// First, so that its `out!` macro is in scope in the modules below.
#[macro_use]
mod context;

mod accounts;
mod chain;
mod cluster;
mod errors;
mod faults;
mod holds;
mod reads;
mod sets;
mod status;
mod transfer;
mod verify;

use anyhow::{anyhow, Context};
use bank_ledger::auth::AdminToken;
use bank_ledger::client::parse_servers;
use bank_ledger::config::DEFAULT_SERVERS;
use bank_ledger::ledger::{Hash32, Signer};
use clap::{Parser, Subcommand};
use context::Ctx;
use std::path::PathBuf;
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
        /// Transaction id, unique forever among FROM's; resubmitting it
        /// returns the first outcome.
        #[arg(long)]
        id: Option<String>,
        /// Seconds the signed transfer stays valid: no block later than
        /// that may commit it (at most 86400).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        expires_in_s: u64,
        /// Reserve the amount for TO instead of moving it: TO settles it
        /// with `post` or `void`, or the chain releases it at the timeout.
        /// The id (--id, else a random one) names the hold.
        #[arg(long)]
        hold: bool,
        /// Seconds until the chain releases the hold (at most 7 days).
        #[arg(long, requires = "hold", default_value_t = 3600,
              value_parser = clap::value_parser!(u64).range(1..=604_800))]
        timeout_s: u64,
    },
    /// Commit the items of FILE (JSON Lines: transfers, issues, redeems,
    /// holds, posts, voids) together in one block, or none; a refusal names
    /// the item that failed and why. Each item is signed with its signer's
    /// key from the keystore. Give each item an "id" to resubmit the set
    /// after an unknown outcome.
    TransferSet {
        file: std::path::PathBuf,
        /// Seconds the signed items stay valid (at most 86400).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        expires_in_s: u64,
    },
    /// Settle hold HOLD_ID: move AMOUNT (default: all it holds) to its
    /// receiver, who signs, and release the rest.
    Post {
        hold_id: String,
        /// At most the held amount.
        #[arg(long)]
        amount: Option<u64>,
        /// The hold's sender: needed only when several accounts used the id.
        #[arg(long)]
        account: Option<u64>,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Release hold HOLD_ID whole; signed by its receiver.
    Void {
        hold_id: String,
        /// The hold's sender: needed only when several accounts used the id.
        #[arg(long)]
        account: Option<u64>,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Open, show, freeze, unfreeze, close an account, or rotate its key.
    Account {
        #[command(subcommand)]
        op: AccountCmd,
    },
    /// Create AMOUNT of money in ACCOUNT, signed by a genesis issuer's key
    /// (`issuer-N.key` in the keystore).
    Issue {
        account: u64,
        amount: u64,
        /// Which genesis issuer signs.
        #[arg(long, default_value_t = 0)]
        issuer: u32,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Take AMOUNT out of ACCOUNT and out of the money supply, signed by a
    /// genesis issuer (or, with --by-owner, by the account's own key: a
    /// withdrawal).
    Redeem {
        account: u64,
        amount: u64,
        /// Which genesis issuer signs.
        #[arg(long, default_value_t = 0, conflicts_with = "by_owner")]
        issuer: u32,
        /// Sign with the account's own key instead of an issuer's.
        #[arg(long)]
        by_owner: bool,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Create a new key for ACCOUNT in the keystore and print its public key
    /// (register it in genesis, or open the account with it). Never
    /// overwrites a key.
    Keygen {
        #[arg(required_unless_present_any = ["registrar", "issuer"])]
        account: Option<u64>,
        /// A key for genesis registrar N instead (`registrar-N.key`).
        #[arg(long, conflicts_with_all = ["account", "issuer"])]
        registrar: Option<u32>,
        /// A key for genesis issuer N instead (`issuer-N.key`).
        #[arg(long, conflicts_with_all = ["account", "registrar"])]
        issuer: Option<u32>,
        /// Write the account's public dev key instead (insecure: anyone can
        /// derive it), for genesis files made without `--keystore`.
        #[arg(long)]
        dev: bool,
    },
    /// Linearizable balance of ACCOUNT.
    Balance {
        account: u64,
        /// Record an audited balance check in a block, signed by the
        /// account's key from the keystore (or an auditor's, below).
        #[arg(long)]
        record: bool,
        /// Id of the recorded check, unique forever among the signer's.
        #[arg(long, requires = "record")]
        id: Option<String>,
        /// Sign the check as genesis auditor N (its position in the
        /// genesis file's `auditors`), with the key in --auditor-key.
        #[arg(long, requires_all = ["record", "auditor_key"])]
        auditor: Option<u32>,
        /// Key file of the auditor (as `bank-client keygen` writes).
        #[arg(long, requires = "auditor")]
        auditor_key: Option<std::path::PathBuf>,
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
    Tx {
        id: String,
        /// Whose id: the source account of a transfer (or the account of a
        /// balance check). Needed only when several signers used the id.
        #[arg(long, conflicts_with = "auditor")]
        account: Option<u64>,
        /// Whose id: a genesis auditor's.
        #[arg(long)]
        auditor: Option<u32>,
    },
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

/// What every signed change takes besides its operation.
#[derive(clap::Args)]
struct SigningArgs {
    /// Transaction id, unique forever among the signer's; resubmitting it
    /// returns the first outcome.
    #[arg(long)]
    id: Option<String>,
    /// Seconds the signed transaction stays valid (at most 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    expires_in_s: u64,
}

impl SigningArgs {
    fn signing(self) -> accounts::Signing {
        accounts::Signing {
            id: self.id,
            lifetime: Duration::from_secs(self.expires_in_s),
        }
    }
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Open ACCOUNT at balance 0, owned by a key; signed by a genesis
    /// registrar's key (`registrar-N.key` in the keystore).
    Open {
        account: u64,
        /// The owner's public key (64 hex digits).
        #[arg(long, required_unless_present = "keygen", conflicts_with = "keygen")]
        public_key: Option<String>,
        /// Make a new key and keep it in the keystore as `ACCOUNT.key`.
        #[arg(long)]
        keygen: bool,
        /// Which genesis registrar signs.
        #[arg(long, default_value_t = 0)]
        registrar: u32,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Balance, held, available, public key, state and the height ACCOUNT
    /// was opened at.
    Show { account: u64 },
    /// Close ACCOUNT for good (balance 0, nothing held); signed by its key.
    Close {
        account: u64,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Freeze ACCOUNT: it may receive, not send; signed by a registrar.
    Freeze {
        account: u64,
        #[arg(long, default_value_t = 0)]
        registrar: u32,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Unfreeze ACCOUNT; signed by a registrar.
    Unfreeze {
        account: u64,
        #[arg(long, default_value_t = 0)]
        registrar: u32,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Replace the key that signs for ACCOUNT; signed by its current key.
    RotateKey {
        account: u64,
        /// The new public key (64 hex digits).
        #[arg(long)]
        public_key: String,
        #[command(flatten)]
        signing: SigningArgs,
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

fn main() {
    let cli = Cli::parse();
    bank_ledger::run_main(|| {
        tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(run(cli))
    });
}

fn parse_chain_id(s: &str) -> Result<Hash32, bank_ledger::ledger::HexError> {
    Hash32::from_hex(s)
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
    let ctx = Ctx {
        servers,
        timeout,
        json: cli.json,
        admin,
        keystore: cli.keystore,
        chain_id: cli.chain_id,
    };
    match cli.command {
        Cmd::Transfer {
            from,
            to,
            amount,
            id,
            expires_in_s,
            hold,
            timeout_s,
        } => {
            let lifetime = Duration::from_secs(expires_in_s);
            if hold {
                let s = accounts::Signing { id, lifetime };
                holds::hold(&ctx, from, to, amount, Duration::from_secs(timeout_s), s).await
            } else {
                transfer::transfer(&ctx, from, to, amount, id, lifetime).await
            }
        }
        Cmd::TransferSet { file, expires_in_s } => {
            sets::transfer_set(&ctx, &file, Duration::from_secs(expires_in_s)).await
        }
        Cmd::Post {
            hold_id,
            amount,
            account,
            signing,
        } => holds::post(&ctx, hold_id, account, amount, signing.signing()).await,
        Cmd::Void {
            hold_id,
            account,
            signing,
        } => holds::void(&ctx, hold_id, account, signing.signing()).await,
        Cmd::Keygen {
            account,
            registrar,
            issuer,
            dev,
        } => {
            let signer = match (account, registrar, issuer) {
                (Some(a), _, _) => Signer::Account(a),
                (None, Some(r), _) => Signer::Registrar(r),
                (None, None, Some(i)) => Signer::Issuer(i),
                (None, None, None) => return Err(anyhow!("name an account, --registrar N or --issuer N")),
            };
            transfer::keygen(&ctx, signer, dev)
        }
        Cmd::Account { op } => match op {
            AccountCmd::Open {
                account,
                public_key,
                keygen: _,
                registrar,
                signing,
            } => {
                let key = match public_key {
                    Some(hex) => accounts::NewKey::Hex(hex),
                    None => accounts::NewKey::Generate,
                };
                accounts::open(&ctx, account, key, registrar, signing.signing()).await
            }
            AccountCmd::Show { account } => accounts::show(&ctx, account).await,
            AccountCmd::Close { account, signing } => accounts::close(&ctx, account, signing.signing()).await,
            AccountCmd::Freeze {
                account,
                registrar,
                signing,
            } => accounts::freeze(&ctx, account, true, registrar, signing.signing()).await,
            AccountCmd::Unfreeze {
                account,
                registrar,
                signing,
            } => accounts::freeze(&ctx, account, false, registrar, signing.signing()).await,
            AccountCmd::RotateKey {
                account,
                public_key,
                signing,
            } => accounts::rotate_key(&ctx, account, &public_key, signing.signing()).await,
        },
        Cmd::Issue {
            account,
            amount,
            issuer,
            signing,
        } => accounts::issue(&ctx, account, amount, issuer, signing.signing()).await,
        Cmd::Redeem {
            account,
            amount,
            issuer,
            by_owner,
            signing,
        } => {
            let issuer = (!by_owner).then_some(issuer);
            accounts::redeem(&ctx, account, amount, issuer, signing.signing()).await
        }
        Cmd::Balance {
            account,
            record,
            id,
            auditor,
            auditor_key,
        } => {
            let signer = match (record, auditor, auditor_key) {
                (false, _, _) => None,
                (true, Some(n), Some(path)) => Some(reads::CheckSigner::Auditor(n, path)),
                (true, _, _) => Some(reads::CheckSigner::Owner),
            };
            reads::balance(&ctx, account, signer, id).await
        }
        Cmd::Status => status::status(&ctx).await,
        Cmd::Block { height } => chain::block(&ctx, height).await,
        Cmd::Chain { from, limit } => chain::chain(&ctx, from, limit).await,
        Cmd::Tx { id, account, auditor } => reads::tx(&ctx, id, account, auditor).await,
        Cmd::History { account, limit, before } => reads::history(&ctx, account, limit, before).await,
        Cmd::Watch { from, interval_ms } => chain::watch(&ctx, from, interval_ms).await,
        Cmd::Balances => reads::balances(&ctx).await,
        Cmd::Verify => verify::verify(&ctx).await,
        Cmd::Partition { groups } => faults::partition(&ctx, groups).await,
        Cmd::Heal => faults::heal(&ctx).await,
        Cmd::Cluster { op } => cluster::cluster(&ctx, op).await,
        Cmd::Delay {
            min_ms,
            max_ms,
            loss,
            off,
        } => faults::delay(&ctx, min_ms, max_ms, loss, off).await,
    }
}
