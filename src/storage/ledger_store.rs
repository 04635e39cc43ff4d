//! The ledger state machine: blocks, balances and transaction records in sled.
//!
//! Apply contract: every committed entry is applied in log order; a block is
//! verified (chain, link, merkle root, proof of work: one header hash, never
//! re-mined) and then its transactions run through [`rules::apply`]. The block
//! goes to the block files, then its index entry, the new transaction records
//! and the changed balances to sled, and last the head (`last_applied`, tip,
//! balance digest), which makes them part of the ledger. State-machine writes
//! need no flush of their own: the log is durable, and after a crash openraft
//! re-applies from `last_applied`.
//!
//! Balances are stored as a checkpoint of all of them (one value in
//! [`CHECKPOINT_TREE`], keyed by its height) plus one delta per block since (`d:<height>`: the new
//! balances of the accounts the block changed). A sled insert copies a leaf,
//! so a block of 1,024 transfers paid ~2,000 balance inserts when each
//! account had its own key; now it pays one. A block rolls the deltas into a
//! new checkpoint, in a tree of its own, once they hold as many entries as there
//! are accounts (or span [`CHECKPOINT_MAX_BLOCKS`]): checkpoints then cost at
//! most what the deltas did, and a start replays O(accounts) entries at most.

use super::block_file::{BlockFileError, BlockFiles, Location};
use super::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};
use super::views::{self, ChainView};
use crate::codec;
use crate::ledger::keys::{SignedTransfer, TransferAuthError};
use crate::ledger::rules::{self, Overlay};
use crate::ledger::{AccountId, AccountKeys, Amount, Block, Genesis, Hash32, RejectReason, Transaction, TxId};
use crate::raft::{BlockOutcome, LogId, SnapshotMeta, StoredMembership, TxRecord};
use crate::stats::{self, Stage};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

const KEY_GENESIS: &[u8] = b"m:genesis";
/// Most transactions [`Ledger::verify_recent`] checks at start (when blocks are
/// full, fewer blocks than asked).
pub const START_VERIFY_MAX_TXS: usize = 8192;
/// Most blocks one [`Ledger::account_history`] call reads.
pub const HISTORY_MAX_BLOCKS: u64 = 2048;
/// Most transactions one [`Ledger::account_history`] call reads (whole
/// blocks; at least one): full blocks hold thousands each.
pub const HISTORY_MAX_TXS: usize = 65_536;
/// What every applied block updates, in one value: a [`Head`]. Four keys
/// (`m:applied`, `m:tip`, `m:balance_digest`, `m:view_len`) before: sled
/// rewrites a leaf for each insert, and one insert instead of four cut a
/// follower's CPU per small block by ~25% (measured by `bank-bench --local`).
const KEY_HEAD: &[u8] = b"m:head";
/// The four keys of data dirs written before [`KEY_HEAD`]; a start moves
/// them into it. Snapshot files still carry the tip and the applied log id
/// as `m:tip` and `m:applied` records.
const KEY_APPLIED: &[u8] = b"m:applied";
const KEY_TIP: &[u8] = b"m:tip";
const KEY_VIEW_LEN: &[u8] = b"m:view_len";
const KEY_MEMBERSHIP: &[u8] = b"m:membership";
/// Blocks as snapshot records; in data dirs written before block files,
/// whole blocks in sled (a start moves them into the block files).
const PREFIX_BLOCK: &[u8] = b"b:";
/// Where block `<height>` is in the block files: a [`Location`].
const PREFIX_LOCATION: &[u8] = b"l:";
/// Per-account balance keys of data dirs written before checkpoints; a
/// start moves them into `m:balances`. Snapshot files still carry balances
/// as such records.
const PREFIX_ACCOUNT: &[u8] = b"a:";
/// All balances as of a height: [`Checkpoint`]. Where data dirs written
/// before [`CHECKPOINT_TREE`] kept it; a start moves it there.
const KEY_BALANCES: &[u8] = b"m:balances";
/// The balance checkpoints, keyed by the big-endian height they are at, in a
/// tree of their own: a checkpoint holds every balance (870 KB for 100,000
/// accounts), and in the ledger tree it shared a sled leaf with keys every
/// block writes, so sled wrote it out whole again each time it consolidated
/// that leaf (every ~50 blocks at one client). Here it is written once. A
/// start reads the highest at or below the tip and removes the others.
const CHECKPOINT_TREE: &str = "ledger_checkpoints";
/// The tree of everything else the ledger stores.
const LEDGER_TREE: &str = "ledger";
/// Balances a block changed (`Vec<(AccountId, Amount)>`), for blocks after the checkpoint.
const PREFIX_DELTA: &[u8] = b"d:";
/// Most deltas kept before a checkpoint (bounds the keys a start reads).
pub const CHECKPOINT_MAX_BLOCKS: usize = 1024;
/// Fewest delta entries that call for a checkpoint, whatever the number of
/// accounts: small ledgers need not rewrite all balances every few blocks.
const CHECKPOINT_MIN_ENTRIES: usize = 65_536;

/// Every balance as of `.0`, the height of the block that wrote it.
type Checkpoint = (u64, BTreeMap<AccountId, Amount>);
const PREFIX_TX: &[u8] = b"t:";
/// In tree `ledger_install`: set while a snapshot install is under way.
const KEY_PENDING_INSTALL: &[u8] = b"pending";

/// Digest of all balances ([`Head::balance_digest`]; this key in old data dirs).
const KEY_BALANCE_DIGEST: &[u8] = b"m:balance_digest";

/// The applied state's head, rewritten by every block (see [`KEY_HEAD`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Head {
    /// The last log entry applied.
    applied: Option<LogId>,
    /// Height and hash of the last stored block.
    tip: Option<(u64, Hash32)>,
    /// XOR of SHA-256(account, balance) over all accounts, kept up to date
    /// per block, so a balance edited outside the ledger is caught at start
    /// in O(accounts) without replaying history.
    balance_digest: Option<[u8; 32]>,
    /// Node-local: length of this node's chain.jsonl (`u64::MAX`: rebuild
    /// it); never part of a snapshot.
    view_len: u64,
}

/// The stored head: [`KEY_HEAD`], or in a data dir from before it, the
/// keys it replaced.
fn stored_head(tree: &sled::Tree) -> Result<Head, LedgerError> {
    if let Some(v) = tree.get(KEY_HEAD)? {
        return decode(&v, || "m:head".into());
    }
    Ok(Head {
        applied: match tree.get(KEY_APPLIED)? {
            Some(v) => decode(&v, || "m:applied".into())?,
            None => None,
        },
        tip: match tree.get(KEY_TIP)? {
            Some(v) => decode(&v, || "m:tip".into())?,
            None => None,
        },
        // A digest of the wrong length is a digest that does not match:
        // reported by the audits, which must still be able to open the ledger.
        balance_digest: tree.get(KEY_BALANCE_DIGEST)?.and_then(|v| v.as_ref().try_into().ok()),
        view_len: match tree.get(KEY_VIEW_LEN)? {
            Some(v) => decode(&v, || "m:view_len".into())?,
            None => u64::MAX,
        },
    })
}

/// Height and hash of the last block stored in a ledger tree. For tests
/// that damage a data dir.
#[doc(hidden)]
pub fn stored_tip(tree: &sled::Tree) -> Result<Option<(u64, Hash32)>, LedgerError> {
    Ok(stored_head(tree)?.tip)
}

fn balance_term(account: AccountId, balance: Amount) -> [u8; 32] {
    Hash32::digest(&[b"balance", &account.to_be_bytes(), &balance.to_be_bytes()]).0
}

fn xor_into(digest: &mut [u8; 32], term: [u8; 32]) {
    for (d, t) in digest.iter_mut().zip(term) {
        *d ^= t;
    }
}

fn balance_digest<'a>(balances: impl IntoIterator<Item = (&'a AccountId, &'a Amount)>) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (a, b) in balances {
        xor_into(&mut d, balance_term(*a, *b));
    }
    d
}

fn block_key(height: u64) -> Vec<u8> {
    [PREFIX_BLOCK, &height.to_be_bytes()].concat()
}
fn location_key(height: u64) -> Vec<u8> {
    [PREFIX_LOCATION, &height.to_be_bytes()].concat()
}

fn account_key(account: AccountId) -> Vec<u8> {
    [PREFIX_ACCOUNT, &account.to_be_bytes()].concat()
}
fn delta_key(height: u64) -> Vec<u8> {
    [PREFIX_DELTA, &height.to_be_bytes()].concat()
}
fn tx_key(id: &TxId) -> Vec<u8> {
    [PREFIX_TX, id.as_str().as_bytes()].concat()
}

/// What can go wrong opening or changing the ledger store.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt ledger data at {at}: {source}")]
    Decode { at: String, source: bincode::Error },
    /// A value could not be encoded (exceeds the size limit).
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: bincode::Error },
    /// The data dir holds another chain than the genesis file describes.
    #[error("genesis mismatch: the data dir holds chain {stored}, but the genesis file gives chain {file}; use the genesis file this node was created with, or a fresh data dir")]
    GenesisMismatch { stored: Hash32, file: Hash32 },
    /// A stored block is missing or does not verify.
    #[error("corrupt chain at height {height}: {reason}")]
    Corruption { height: u64, reason: String },
    /// The genesis file cannot start a ledger.
    #[error(transparent)]
    Genesis(#[from] crate::ledger::GenesisError),
    /// A snapshot install replaced the ledger while it was being verified.
    #[error("a snapshot was installed while the chain was being verified; verify again")]
    VerifyInterrupted,
    /// The node is shutting down.
    #[error("verification stopped: the node is shutting down")]
    VerifyStopped,
    /// A view file could not be written.
    #[error("file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A snapshot file is unreadable or corrupt.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The block files failed (reads of a block name its height instead).
    #[error(transparent)]
    Blocks(#[from] BlockFileError),
    /// The previous snapshot cannot lend its records to a new one.
    #[error("previous snapshot: {0}")]
    PreviousSnapshot(Box<LedgerError>),
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], at: impl FnOnce() -> String) -> Result<T, LedgerError> {
    codec::decode(bytes).map_err(|source| LedgerError::Decode { at: at(), source })
}

fn encode<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, LedgerError> {
    codec::encode(value).map_err(|source| LedgerError::Encode { what, source })
}

/// The in-memory mirror of the applied state: small (one entry per account,
/// never per transaction) and read on every request.
#[derive(Debug, Clone)]
pub struct LedgerState {
    pub balances: BTreeMap<AccountId, Amount>,
    pub tip_height: u64,
    pub tip_hash: Hash32,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// XOR of SHA-256(account, balance) over all accounts, as stored in the head.
    pub balance_digest: [u8; 32],
}

/// A node's ledger: shared by the state machine (writer) and the API (readers).
pub struct Ledger {
    db: sled::Db,
    tree: sled::Tree,
    /// [`CHECKPOINT_TREE`].
    checkpoints: sled::Tree,
    /// Holds the pending-install mark, outside the tree an install replaces.
    install_meta: sled::Tree,
    /// Block bodies; the tree holds where each is (`l:<height>`).
    blocks: BlockFiles,
    /// Hash of block 0: the chain's identity. Only this and the difficulty
    /// are kept of the genesis: its blocks are written once, then dropped.
    chain_id: Hash32,
    difficulty: u8,
    /// Every account's public key, from genesis: transfers after
    /// `genesis_tip` must carry a signature by their source's key.
    keys: AccountKeys,
    /// Height and hash of the last block genesis defines.
    genesis_tip: (u64, Hash32),
    state: RwLock<LedgerState>,
    chain_view: Mutex<Option<ChainView>>,
    states_dir: PathBuf,
    /// Set when the balances read at open disagree with their stored digest.
    digest_mismatch: std::sync::atomic::AtomicBool,
    /// Bumped when a snapshot install begins and when it ends (odd: one is
    /// in progress): a verification that overlapped one saw the tree being
    /// replaced, and what it found proves nothing.
    installs: std::sync::atomic::AtomicU64,
    /// Set at shutdown: a long verification ends at the next block.
    stopping: std::sync::atomic::AtomicBool,
    /// Deltas stored since the checkpoint; written by applies only.
    deltas: Mutex<Deltas>,
    /// Syncs the blob files sled writes for large values (checkpoints, the
    /// deltas of large blocks) after each block: nothing else flushes the
    /// ledger's sled writes per block, and sled never syncs blobs. Unset in
    /// tests that do not need power-loss durability.
    blob_sync: std::sync::OnceLock<Arc<super::sled_sync::SledSync>>,
    /// [`CHECKPOINT_MAX_BLOCKS`], lowered by tests.
    checkpoint_max_blocks: std::sync::atomic::AtomicUsize,
    /// Who waits for a block's outcome, by block hash: the leader's producer
    /// answers its clients as soon as the outcome is computed, before the
    /// block is written here (see [`Ledger::watch_outcome`]).
    outcome_waiters: Mutex<HashMap<Hash32, tokio::sync::oneshot::Sender<Vec<TxRecord>>>>,
    /// Bounds the log's "committed block" lines (see [`BlockLog`]).
    block_log: Mutex<BlockLog>,
    /// Sled writes a block's apply may still make before it fails as a crash
    /// would ([`Ledger::crash_after_writes`]); `u64::MAX`: never.
    #[cfg(test)]
    writes_before_crash: std::sync::atomic::AtomicU64,
}

/// Most "committed block" log lines in one second. One line per block is
/// what a person watching a few blocks a second wants, but at hundreds of
/// blocks a second it costs each node a write to stderr and a wake-up of the
/// log file's writer per block, and grows the log by ~60 KB a second.
const BLOCK_LINES_PER_SECOND: u32 = 10;

/// Blocks committed in one second beyond [`BLOCK_LINES_PER_SECOND`]: logged
/// as one line when that second is over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct QuietBlocks {
    blocks: u64,
    first_height: u64,
    last_height: u64,
    txs: u64,
    ok: u64,
}

/// Which committed blocks get a log line of their own.
#[derive(Debug, Default)]
struct BlockLog {
    window_start: Option<std::time::Instant>,
    lines: u32,
    quiet: QuietBlocks,
}

impl BlockLog {
    /// Whether the block at `height` gets its own line, and the blocks left
    /// unlogged in a second that is now over.
    fn admit(&mut self, now: std::time::Instant, height: u64, txs: u64, ok: u64) -> (bool, Option<QuietBlocks>) {
        let summary = self.end_window(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
            self.lines = 0;
        }
        if self.lines < BLOCK_LINES_PER_SECOND {
            self.lines += 1;
            return (true, summary);
        }
        let q = &mut self.quiet;
        if q.blocks == 0 {
            q.first_height = height;
        }
        q.blocks += 1;
        q.last_height = height;
        q.txs += txs;
        q.ok += ok;
        (false, summary)
    }

    /// Closes the current second, over or not; returns its unlogged blocks.
    fn take(&mut self) -> Option<QuietBlocks> {
        self.window_start = None;
        let quiet = std::mem::take(&mut self.quiet);
        (quiet.blocks > 0).then_some(quiet)
    }

    /// Closes the current second if it is over; returns its unlogged blocks.
    fn end_window(&mut self, now: std::time::Instant) -> Option<QuietBlocks> {
        let over = self
            .window_start
            .is_some_and(|w| now.duration_since(w) >= std::time::Duration::from_secs(1));
        if !over {
            return None;
        }
        self.take()
    }
}

/// Most blocks whose outcome can be awaited at once: the producer waits for
/// at most its pipeline depth; beyond this, callers wait for the apply.
pub const MAX_OUTCOME_WAITERS: usize = 64;

/// A committed block verified and executed, not yet written.
pub(crate) struct PreparedBlock {
    hash: Hash32,
    exec: Execution,
    digest: [u8; 32],
    checkpoint: Option<Vec<u8>>,
    started: std::time::Instant,
    /// Someone was handed the block's records already.
    pub(crate) announced: bool,
}

/// What [`Ledger::prepare_block`] leaves to do.
pub(crate) enum Prepared {
    /// Nothing: the block was refused and that is recorded.
    Done(BlockOutcome),
    /// The block is to be written by [`Ledger::write_block`].
    Ready(PreparedBlock),
}

/// The balance deltas stored after the checkpoint.
#[derive(Debug, Default)]
struct Deltas {
    heights: Vec<u64>,
    entries: usize,
}

/// What running a block's transactions produced, before it is written.
struct Execution {
    changes: BTreeMap<AccountId, Amount>,
    records: Vec<TxRecord>,
    new_records: Vec<(TxId, TxRecord)>,
}

impl Ledger {
    /// Opens (or creates from genesis) the ledger in `db`, and reconciles the
    /// JSON views in `states_dir` with it.
    /// A snapshot install interrupted by a crash is finished from `snapshot_path`.
    pub fn open(
        db: &sled::Db,
        genesis: Arc<Genesis>,
        states_dir: &Path,
        snapshot_path: &Path,
        blocks_dir: &Path,
    ) -> Result<Arc<Ledger>, LedgerError> {
        let tree = db.open_tree(LEDGER_TREE)?;
        let install_meta = db.open_tree("ledger_install")?;
        let checkpoints = db.open_tree(CHECKPOINT_TREE)?;
        let fresh = match tree.get(KEY_GENESIS)? {
            None => true,
            Some(v) => {
                let stored: Hash32 = decode(&v, || "m:genesis".into())?;
                if stored != genesis.chain_id() {
                    return Err(LedgerError::GenesisMismatch {
                        stored,
                        file: genesis.chain_id(),
                    });
                }
                false
            }
        };
        let empty_state = LedgerState {
            balances: BTreeMap::new(),
            tip_height: 0,
            tip_hash: Hash32::ZERO,
            last_applied: None,
            membership: StoredMembership::default(),
            balance_digest: [0; 32],
        };
        let pending_install = install_meta.get(KEY_PENDING_INSTALL)?.is_some();
        let ledger = Ledger {
            db: db.clone(),
            tree,
            checkpoints,
            install_meta,
            blocks: BlockFiles::open(blocks_dir)?,
            chain_id: genesis.chain_id(),
            difficulty: genesis.difficulty(),
            keys: genesis.keys(),
            genesis_tip: (
                genesis.last_height(),
                genesis.blocks.last().map(Block::hash).unwrap_or(Hash32::ZERO),
            ),
            state: RwLock::new(empty_state),
            chain_view: Mutex::new(None),
            states_dir: states_dir.to_path_buf(),
            digest_mismatch: std::sync::atomic::AtomicBool::new(false),
            installs: std::sync::atomic::AtomicU64::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
            deltas: Mutex::new(Deltas::default()),
            blob_sync: std::sync::OnceLock::new(),
            checkpoint_max_blocks: std::sync::atomic::AtomicUsize::new(CHECKPOINT_MAX_BLOCKS),
            outcome_waiters: Mutex::new(HashMap::new()),
            block_log: Mutex::new(BlockLog::default()),
            #[cfg(test)]
            writes_before_crash: std::sync::atomic::AtomicU64::new(u64::MAX),
        };
        if pending_install {
            tracing::warn!("finishing a snapshot install a crash interrupted");
            ledger.install_snapshot(snapshot_path)?;
        } else if fresh {
            genesis.check_keys().map_err(LedgerError::Genesis)?;
            ledger.blocks.keep_through(None)?;
            ledger.write_genesis(&genesis)?;
        } else {
            ledger.move_head_keys()?;
            ledger.move_block_values()?;
            ledger.cut_unapplied_writes()?;
            ledger.cut_unindexed_blocks()?;
        }
        ledger.reload()?;
        ledger.reconcile_chain_view()?;
        Ok(Arc::new(ledger))
    }

    /// Writes the genesis blocks, derived from the file exactly as on every node.
    ///
    /// Written in small batches (one sled batch of a 100,000-account genesis
    /// peaks at ~500 MB in sled's node copies); `m:genesis` goes last, so a
    /// crash part way leaves a ledger that is written afresh at next start.
    fn write_genesis(&self, genesis: &Genesis) -> Result<(), LedgerError> {
        let mut balances = BTreeMap::new();
        let mut batch = ChunkedBatch::new(&self.tree);
        for block in &genesis.blocks {
            let hash = block.hash();
            let exec = self.execute(&balances, block, hash, block.height() == 0)?;
            if let Some(bad) = exec.records.iter().find(|r| r.outcome.is_err()) {
                return Err(LedgerError::Corruption {
                    height: block.height(),
                    reason: format!("genesis transaction fails: {:?}", bad.outcome),
                });
            }
            balances.extend(exec.changes.iter().map(|(a, b)| (*a, *b)));
            let at = self.blocks.append(&encode(block, "block")?)?;
            batch.insert(location_key(block.height()), at.encode().to_vec())?;
            for (id, rec) in &exec.new_records {
                batch.insert(tx_key(id), encode(rec, "tx record")?)?;
            }
        }
        let last = genesis.blocks.last().map(|b| (b.height(), b.hash()));
        // A genesis written part way before is written afresh.
        self.checkpoints.clear()?;
        self.checkpoints.insert(
            genesis.last_height().to_be_bytes(),
            encode(&(genesis.last_height(), &balances), "balances")?,
        )?;
        let head = Head {
            applied: None,
            tip: last,
            balance_digest: Some(balance_digest(&balances)),
            // The chain view is rebuilt from sled right after.
            view_len: u64::MAX,
        };
        batch.insert(KEY_HEAD.to_vec(), encode(&head, "head")?)?;
        batch.finish()?;
        // The blocks are on disk before the mark that says genesis is written.
        self.blocks.sync()?;
        self.tree.insert(KEY_GENESIS, encode(&self.chain_id, "genesis")?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Reloads the in-memory mirror from sled.
    fn reload(&self) -> Result<(), LedgerError> {
        let (balances, deltas) = self.load_balances()?;
        *self.deltas.lock().unwrap_or_else(|p| p.into_inner()) = deltas;
        let head = stored_head(&self.tree)?;
        let (tip_height, tip_hash) = head.tip.ok_or(LedgerError::Corruption {
            height: 0,
            reason: "no chain tip recorded".into(),
        })?;
        let last_applied = head.applied;
        let membership = match self.tree.get(KEY_MEMBERSHIP)? {
            Some(v) => decode(&v, || "m:membership".into())?,
            None => StoredMembership::default(),
        };
        let digest = balance_digest(&balances);
        // Reported by the verify functions, so an audit can still open the
        // ledger and name the account.
        self.digest_mismatch.store(
            head.balance_digest != Some(digest),
            std::sync::atomic::Ordering::Relaxed,
        );
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = LedgerState {
            balances,
            tip_height,
            tip_hash,
            last_applied,
            membership,
            balance_digest: digest,
        };
        Ok(())
    }

    /// Height and hash of the last stored block, if any.
    fn stored_tip(&self) -> Result<Option<(u64, Hash32)>, LedgerError> {
        stored_tip(&self.tree)
    }

    /// Rewrites the stored head with `change` applied, in `batch` (the
    /// blocks' path builds its head whole instead).
    fn update_head(&self, batch: &mut sled::Batch, change: impl FnOnce(&mut Head)) -> Result<(), LedgerError> {
        let mut head = stored_head(&self.tree)?;
        change(&mut head);
        batch.insert(KEY_HEAD, encode(&head, "head")?);
        Ok(())
    }

    /// Moves the head of a data dir from before [`KEY_HEAD`] into it, in one
    /// batch (a crash leaves either form, both readable).
    fn move_head_keys(&self) -> Result<(), LedgerError> {
        if self.tree.get(KEY_HEAD)?.is_some() {
            return Ok(());
        }
        let head = stored_head(&self.tree)?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_HEAD, encode(&head, "head")?);
        for k in [KEY_APPLIED, KEY_TIP, KEY_BALANCE_DIGEST, KEY_VIEW_LEN] {
            batch.remove(k);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The stored balances: the checkpoint with the deltas after it replayed.
    fn load_balances(&self) -> Result<(BTreeMap<AccountId, Amount>, Deltas), LedgerError> {
        self.move_account_keys()?;
        self.move_checkpoint_key()?;
        // The highest at or below the tip: a crash between writing a
        // checkpoint and the head that moves the tip to its block leaves
        // one above, which the block's apply writes again.
        let tip = self.stored_tip()?.map_or(0, |(h, _)| h);
        let (at, value) = self
            .checkpoints
            .range(..=tip.to_be_bytes())
            .next_back()
            .transpose()?
            .ok_or(LedgerError::Corruption {
                height: 0,
                reason: "no balances recorded".into(),
            })?;
        let (since, mut balances): Checkpoint = decode(&value, || "balance checkpoint".into())?;
        self.remove_checkpoints_except(&at)?;
        let mut deltas = Deltas::default();
        for kv in self.tree.scan_prefix(PREFIX_DELTA) {
            let (k, v) = kv?;
            let height = key_number(&k, PREFIX_DELTA, "balance delta")?;
            // Left by a crash: at or below the checkpoint, one whose block's
            // apply removed them after moving the head; above the tip, one
            // whose head never moved (the entry's re-apply writes it again).
            if height <= since || height > tip {
                self.tree.remove(&k)?;
                continue;
            }
            let changes: Vec<(AccountId, Amount)> = decode(&v, || format!("balance delta of block {height}"))?;
            deltas.heights.push(height);
            deltas.entries += changes.len();
            balances.extend(changes);
        }
        Ok((balances, deltas))
    }

    /// Moves the checkpoint of a data dir from before [`CHECKPOINT_TREE`]
    /// there. Inserted first: a crash in between leaves two equal copies.
    fn move_checkpoint_key(&self) -> Result<(), LedgerError> {
        let Some(value) = self.tree.get(KEY_BALANCES)? else {
            return Ok(());
        };
        let (since, _): Checkpoint = decode(&value, || "m:balances".into())?;
        self.checkpoints.insert(since.to_be_bytes(), value)?;
        self.tree.remove(KEY_BALANCES)?;
        Ok(())
    }

    /// Removes every checkpoint but the one stored under `keep`.
    fn remove_checkpoints_except(&self, keep: &[u8]) -> Result<(), LedgerError> {
        for k in self.checkpoints.iter().keys() {
            let k = k?;
            if k != keep {
                self.checkpoints.remove(k)?;
            }
        }
        Ok(())
    }

    /// Moves balances from per-account keys (data dirs written before
    /// checkpoints) into a checkpoint at the tip; those dirs hold no deltas.
    fn move_account_keys(&self) -> Result<(), LedgerError> {
        if self.tree.scan_prefix(PREFIX_ACCOUNT).next().is_none() {
            return Ok(());
        }
        if self.tree.get(KEY_BALANCES)?.is_none() {
            let mut balances = BTreeMap::new();
            for kv in self.tree.scan_prefix(PREFIX_ACCOUNT) {
                let (k, v) = kv?;
                let (account, balance) = account_record(&k, &v)?;
                balances.insert(account, balance);
            }
            let tip = self.stored_tip()?;
            let checkpoint: Checkpoint = (tip.map_or(0, |t| t.0), balances);
            self.tree.insert(KEY_BALANCES, encode(&checkpoint, "balances")?)?;
            tracing::info!("moved {} balances into a checkpoint", checkpoint.1.len());
        }
        // The checkpoint is in first: a crash part way leaves keys that the
        // next start removes.
        let mut batch = ChunkedBatch::new(&self.tree);
        for k in self.tree.scan_prefix(PREFIX_ACCOUNT).keys() {
            batch.remove(k?)?;
        }
        batch.finish()?;
        self.db.flush()?;
        Ok(())
    }

    /// Moves whole blocks stored in sled (data dirs written before block
    /// files) into the block files. Safe to cut short: each chunk moves its
    /// blocks' index entries in and their values out in one batch, and
    /// what a crash appended past the last indexed block is cut first.
    fn move_block_values(&self) -> Result<(), LedgerError> {
        if self.tree.scan_prefix(PREFIX_BLOCK).next().is_none() {
            return Ok(());
        }
        let last_moved = match self.tree.scan_prefix(PREFIX_LOCATION).next_back() {
            Some(kv) => {
                let (k, at) = kv?;
                Some(decode_location(
                    key_number(&k, PREFIX_LOCATION, "block location")?,
                    &at,
                )?)
            }
            None => None,
        };
        self.blocks.keep_through(last_moved)?;
        let mut moved = 0u64;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for kv in self.tree.scan_prefix(PREFIX_BLOCK) {
            let (k, v) = kv?;
            let height = key_number(&k, PREFIX_BLOCK, "block")?;
            let at = self.blocks.append(&v)?;
            batch.insert(location_key(height), &at.encode()[..]);
            batch.remove(k);
            in_batch += 1;
            moved += 1;
            if in_batch == 64 {
                self.blocks.sync()?;
                self.tree.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        self.blocks.sync()?;
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        tracing::info!("moved {moved} blocks from sled into the block files");
        Ok(())
    }

    /// Removes what a crash left of a block's apply above the tip: its index
    /// entry and the records of its transactions, which the apply writes one
    /// by one before the head ([`Ledger::write_block`]), the index entry
    /// first and the block durable in the block files before it. The entry's
    /// re-apply writes them again; until then nothing of the block shows.
    fn cut_unapplied_writes(&self) -> Result<(), LedgerError> {
        let Some((tip, _)) = self.stored_tip()? else {
            return Ok(());
        };
        let above = location_key(tip.saturating_add(1));
        let mut removed = (0u64, 0u64);
        for kv in self.tree.range(above.as_slice()..) {
            let (k, at) = kv?;
            if !k.starts_with(PREFIX_LOCATION) {
                break;
            }
            let height = key_number(&k, PREFIX_LOCATION, "block location")?;
            let bytes = read_block(&self.blocks, height, &at)?;
            let block: Block = decode(&bytes, || format!("block {height}"))?;
            for id in block.txs.iter().filter_map(Transaction::id) {
                if self.tx_record(id)?.is_some_and(|r| r.height > tip) {
                    self.tree.remove(tx_key(id))?;
                    removed.1 += 1;
                }
            }
            self.tree.remove(&k)?;
            removed.0 += 1;
        }
        if removed.0 > 0 {
            // On disk before the block files are cut back below these
            // blocks: a crash in between would find them again, pointing
            // past the files' end.
            self.db.flush()?;
            tracing::info!(
                "removed what a crash left of the apply of {} block(s) above the tip at {tip} ({} transaction records); the log applies them again",
                removed.0,
                removed.1
            );
        }
        Ok(())
    }

    /// Cuts off what a crash left in the block files after the tip's block:
    /// written, but its index entry never reached sled.
    fn cut_unindexed_blocks(&self) -> Result<(), LedgerError> {
        let Some((height, _)) = self.stored_tip()? else {
            return Ok(());
        };
        let at = self.tree.get(location_key(height))?.ok_or(LedgerError::Corruption {
            height,
            reason: "the tip block is not in the block files".into(),
        })?;
        self.blocks
            .keep_through(Some(decode_location(height, &at)?))
            .map_err(block_damage(height))
    }

    /// Brings `chain.jsonl` in line with sled after a crash: cut back lines
    /// sled never committed, or rebuild it if lines were lost.
    fn reconcile_chain_view(&self) -> Result<(), LedgerError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| LedgerError::Io { path, source }
        };
        let expected = stored_head(&self.tree)?.view_len;
        let view = match ChainView::open(&self.states_dir, expected).map_err(io(&self.states_dir))? {
            Some(view) => view,
            None => {
                if expected != u64::MAX {
                    tracing::info!(
                        "rebuilding {} from the ledger",
                        self.states_dir.join(views::CHAIN_FILE).display()
                    );
                }
                let mut view = ChainView::create(&self.states_dir).map_err(io(&self.states_dir))?;
                for stored in self.stored_blocks(u64::MAX) {
                    let (height, bytes) = stored?;
                    let block: Block = decode(&bytes, || format!("block {height}"))?;
                    let records = self.records_of(&block)?;
                    let line = views::block_line(&block, block.hash(), &records);
                    view.append(&line).map_err(io(view.path()))?;
                }
                let mut batch = sled::Batch::default();
                self.update_head(&mut batch, |h| h.view_len = view.len())?;
                self.tree.apply_batch(batch)?;
                view
            }
        };
        *self.chain_view.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
        Ok(())
    }

    /// The records of a stored block's transactions, for rebuilding views.
    fn records_of(&self, block: &Block) -> Result<Vec<TxRecord>, LedgerError> {
        let hash = block.hash();
        let mut out = Vec::with_capacity(block.txs.len());
        for tx in &block.txs {
            let rec = match tx.id() {
                Some(id) => self.tx_record(id)?,
                None => None,
            };
            out.push(rec.unwrap_or(TxRecord {
                tx_hash: tx.content_hash(),
                height: block.height(),
                block_hash: hash,
                outcome: Ok(rules::Applied { balance: None }),
            }));
        }
        Ok(out)
    }

    /// Runs a block's transactions against `balances` without writing anything.
    fn execute(
        &self,
        balances: &BTreeMap<AccountId, Amount>,
        block: &Block,
        hash: Hash32,
        genesis: bool,
    ) -> Result<Execution, LedgerError> {
        let mut overlay = Overlay::new(balances);
        let mut records = Vec::with_capacity(block.txs.len());
        let mut new_records: Vec<(TxId, TxRecord)> = Vec::new();
        let mut fresh: HashMap<TxId, usize> = HashMap::new();
        let height = block.height();
        for tx in &block.txs {
            let tx_hash = tx.content_hash();
            let record = |outcome| TxRecord {
                tx_hash,
                height,
                block_hash: hash,
                outcome,
            };
            let rec = match tx.id() {
                None => record(rules::apply(&mut overlay, tx, genesis)),
                Some(id) => {
                    let earlier = match fresh.get(id) {
                        Some(&i) => Some(new_records[i].1.clone()),
                        // One at this height or above is no earlier apply:
                        // a crash cut short this block's (or the genesis
                        // write), and a start removes such records.
                        None => self.tx_record(id)?.filter(|r| r.height < height),
                    };
                    match earlier {
                        // Same id, same content: it was applied once already.
                        Some(first) if first.tx_hash == tx_hash => first,
                        Some(_) => record(Err(RejectReason::IdConflict { id: id.clone() })),
                        None => {
                            let rec = record(rules::apply(&mut overlay, tx, genesis));
                            fresh.insert(id.clone(), new_records.len());
                            new_records.push((id.clone(), rec.clone()));
                            rec
                        }
                    }
                }
            };
            records.push(rec);
        }
        Ok(Execution {
            changes: overlay.into_changes(),
            records,
            new_records,
        })
    }

    /// First half of applying one committed block at `log_id`: verifies and
    /// executes it in memory and hands its records to whoever waits for them
    /// ([`Ledger::watch_outcome`]). A refused block is recorded at once.
    /// [`Ledger::write_block`] must follow before the next entry.
    pub(crate) fn prepare_block(&self, block: &Block, log_id: LogId) -> Result<Prepared, LedgerError> {
        let started = std::time::Instant::now();
        crate::timeline::mark(crate::timeline::Point::ApplyIn);
        let (tip_height, tip_hash) = {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            (s.tip_height, s.tip_hash)
        };
        let mut batch = sled::Batch::default();
        let hash = match block.verify_extends(self.chain_id, self.difficulty, tip_height, tip_hash) {
            Ok(hash) => hash,
            Err(e) => {
                // Deterministic on every node: same tip, same block, same verdict.
                tracing::warn!("refused block at log index {}: {e}", log_id.index);
                self.update_head(&mut batch, |h| h.applied = Some(log_id))?;
                self.tree.apply_batch(batch)?;
                self.state.write().unwrap_or_else(|p| p.into_inner()).last_applied = Some(log_id);
                return Ok(Prepared::Done(BlockOutcome::Refused { reason: e.to_string() }));
            }
        };
        let deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        let (exec, digest, checkpoint) = {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            let exec = self.execute(&s.balances, block, hash, false)?;
            let mut digest = s.balance_digest;
            for (account, new) in &exec.changes {
                if let Some(old) = s.balances.get(account) {
                    xor_into(&mut digest, balance_term(*account, *old));
                }
                xor_into(&mut digest, balance_term(*account, *new));
            }
            let entries = deltas.entries + exec.changes.len();
            let max_blocks = self.checkpoint_max_blocks.load(std::sync::atomic::Ordering::Relaxed);
            let checkpoint = (entries >= s.balances.len().max(CHECKPOINT_MIN_ENTRIES)
                || deltas.heights.len() + 1 >= max_blocks)
                .then(|| {
                    let mut all = s.balances.clone();
                    all.extend(exec.changes.iter().map(|(a, b)| (*a, *b)));
                    encode(&(block.height(), all), "balances")
                })
                .transpose()?;
            (exec, digest, checkpoint)
        };
        drop(deltas);
        // The entry is committed (on disk on a majority) and apply is
        // deterministic: every node computes these records for it. Whoever
        // waits can have them now; the writes only make this node's copy
        // durable, and a crash before them re-applies the entry.
        let announced = self.announce_outcome(&hash, &exec.records);
        Ok(Prepared::Ready(PreparedBlock {
            hash,
            exec,
            digest,
            checkpoint,
            started,
            announced,
        }))
    }

    /// Second half of applying a block: writes what
    /// [`Ledger::prepare_block`] computed, then makes it visible.
    pub(crate) fn write_block(
        &self,
        block: &Block,
        log_id: LogId,
        p: PreparedBlock,
    ) -> Result<BlockOutcome, LedgerError> {
        let PreparedBlock {
            hash,
            exec,
            digest,
            checkpoint,
            started,
            ..
        } = p;
        let mut deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        // Durably: the index entry below may reach disk with any later sled
        // write.
        let at = self.blocks.append(&encode(block, "block")?)?;
        self.blocks.sync()?;
        // Single inserts, the head last, not one batch: every sled 0.34 batch
        // hands the write buffer to sled's IO threads twice (before and after
        // it), two writes and wake-ups per block on every node. sled recovers
        // a prefix of its log, so a crash keeps some of these writes and never
        // the head without them; a start removes what lies above the tip
        // ([`Ledger::cut_unapplied_writes`], [`Ledger::load_balances`]) and
        // the entry is applied again.
        self.before_write()?;
        self.tree.insert(location_key(block.height()), &at.encode()[..])?;
        for (id, rec) in &exec.new_records {
            self.before_write()?;
            self.tree.insert(tx_key(id), encode(rec, "tx record")?)?;
        }
        let checkpoint_key = block.height().to_be_bytes();
        match &checkpoint {
            Some(all) => {
                self.before_write()?;
                self.checkpoints.insert(checkpoint_key, all.as_slice())?;
            }
            None if exec.changes.is_empty() => {}
            None => {
                let changes: Vec<(AccountId, Amount)> = exec.changes.iter().map(|(a, b)| (*a, *b)).collect();
                self.before_write()?;
                self.tree
                    .insert(delta_key(block.height()), encode(&changes, "balance delta")?)?;
            }
        }
        let line = views::block_line(block, hash, &exec.records);
        let mut view_guard = self.chain_view.lock().unwrap_or_else(|p| p.into_inner());
        let view_len = match view_guard.as_ref() {
            Some(view) => view.len() + line.len() as u64,
            // No view open (an install under way): keep what is stored.
            None => stored_head(&self.tree)?.view_len,
        };
        let head = Head {
            applied: Some(log_id),
            tip: Some((block.height(), hash)),
            balance_digest: Some(digest),
            view_len,
        };
        self.before_write()?;
        self.tree.insert(KEY_HEAD, encode(&head, "head")?)?;
        if checkpoint.is_some() {
            // After the head: until it moves, the old checkpoint and these
            // deltas are the balances.
            for h in &deltas.heights {
                self.before_write()?;
                self.tree.remove(delta_key(*h))?;
            }
            self.before_write()?;
            self.remove_checkpoints_except(&checkpoint_key)?;
            *deltas = Deltas::default();
        } else if !exec.changes.is_empty() {
            deltas.heights.push(block.height());
            deltas.entries += exec.changes.len();
        }
        drop(deltas);
        self.sync_new_blobs()?;
        {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            s.balances.extend(exec.changes.iter().map(|(a, b)| (*a, *b)));
            s.balance_digest = digest;
            s.tip_height = block.height();
            s.tip_hash = hash;
            s.last_applied = Some(log_id);
        }
        stats::record(Stage::Apply, started.elapsed());
        let view_started = std::time::Instant::now();
        if let Some(view) = view_guard.as_mut() {
            if let Err(e) = view.append(&line) {
                // The view is rebuilt from sled at next start; keep serving.
                tracing::warn!("cannot append to {}: {e}", view.path().display());
            }
        }
        drop(view_guard);
        stats::record(Stage::ChainView, view_started.elapsed());
        crate::timeline::mark(crate::timeline::Point::ApplyDone);
        let committed = exec
            .records
            .iter()
            .filter(|r| r.height == block.height() && r.outcome.is_ok())
            .count();
        let rejected = exec
            .records
            .iter()
            .filter(|r| r.height == block.height() && r.outcome.is_err())
            .count();
        stats::block_applied(committed as u64, rejected as u64);
        let mut own_line = false;
        self.log_quiet_blocks(|log| {
            let (own, quiet) = log.admit(
                std::time::Instant::now(),
                block.height(),
                block.txs.len() as u64,
                committed as u64,
            );
            own_line = own;
            quiet
        });
        if own_line {
            tracing::info!(
                "committed block height={} txs={} ok={committed} hash={hash}",
                block.height(),
                block.txs.len()
            );
        }
        Ok(BlockOutcome::Committed {
            height: block.height(),
            hash,
            records: exec.records,
        })
    }

    /// Registers interest in the outcome of the block with `hash`: the
    /// receiver gets its records once the block is committed and executed
    /// on this node, before it is written. Nothing arrives if the block is
    /// refused or never committed; [`Ledger::forget_outcome`] withdraws the
    /// interest. None when [`MAX_OUTCOME_WAITERS`] are already waiting.
    pub fn watch_outcome(&self, hash: Hash32) -> Option<tokio::sync::oneshot::Receiver<Vec<TxRecord>>> {
        let mut waiters = self.outcome_waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.retain(|_, tx| !tx.is_closed());
        if waiters.len() >= MAX_OUTCOME_WAITERS {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        waiters.insert(hash, tx);
        Some(rx)
    }

    /// Withdraws interest in the outcome of the block with `hash`.
    pub fn forget_outcome(&self, hash: &Hash32) {
        self.outcome_waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    /// Hands `records` to whoever waits for the block `hash`; true if someone did.
    fn announce_outcome(&self, hash: &Hash32, records: &[TxRecord]) -> bool {
        let waiter = {
            let mut waiters = self.outcome_waiters.lock().unwrap_or_else(|p| p.into_inner());
            if waiters.is_empty() {
                return false;
            }
            waiters.remove(hash)
        };
        waiter.is_some_and(|tx| tx.send(records.to_vec()).is_ok())
    }

    pub(crate) fn apply_marker(&self, log_id: LogId, membership: Option<StoredMembership>) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        self.update_head(&mut batch, |h| h.applied = Some(log_id))?;
        if let Some(m) = &membership {
            batch.insert(KEY_MEMBERSHIP, encode(m, "membership")?);
        }
        self.tree.apply_batch(batch)?;
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.last_applied = Some(log_id);
        if let Some(m) = membership {
            s.membership = m;
        }
        Ok(())
    }

    // ---- reads, for the API and the block producer ----

    /// Proof-of-work difficulty every block must meet.
    pub fn difficulty(&self) -> u8 {
        self.difficulty
    }

    /// Checks that a transfer is signed by its source account's key; other
    /// transactions need no signature.
    pub fn authorize(&self, tx: &Transaction) -> Result<(), TransferAuthError> {
        match tx.signed() {
            Some(t) => self
                .keys
                .verify_transfer(self.chain_id, t.id, t.from, t.to, t.amount, t.signature),
            None => Ok(()),
        }
    }

    /// [`Ledger::authorize`] for many transactions at once (their
    /// signatures checked in batches); one result each, in order.
    pub fn authorize_many(&self, txs: &[Transaction]) -> Vec<Result<(), TransferAuthError>> {
        let (at, signed): (Vec<usize>, Vec<SignedTransfer>) = txs
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i, t.signed()?)))
            .unzip();
        let mut out: Vec<Result<(), TransferAuthError>> = vec![Ok(()); txs.len()];
        // verify_transfers gives one verdict per transfer, in order.
        for (i, verdict) in at.into_iter().zip(self.keys.verify_transfers(self.chain_id, &signed)) {
            out[i] = verdict;
        }
        out
    }

    pub fn keys(&self) -> &AccountKeys {
        &self.keys
    }

    pub fn chain_id(&self) -> Hash32 {
        self.chain_id
    }

    /// Runs `f` on the applied state under a read lock.
    /// True once the node is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Has each block's new sled blob files synced by `files` (see the
    /// field); set once, by the node.
    pub fn sync_blobs_with(&self, files: Arc<super::sled_sync::SledSync>) {
        let _ = self.blob_sync.set(files);
    }

    fn sync_new_blobs(&self) -> Result<(), LedgerError> {
        match self.blob_sync.get() {
            Some(files) => files.sync_blobs().map_err(|source| LedgerError::Io {
                path: "sled blobs".into(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Logs the blocks a second that is over left without a line of their
    /// own; called periodically, so a burst's summary does not wait for the
    /// next block.
    pub fn flush_block_log(&self) {
        self.log_quiet_blocks(|log| log.end_window(std::time::Instant::now()));
    }

    /// Logs the blocks of the current second that had no line of their own
    /// yet: at shutdown, so the log accounts for every block applied.
    pub fn flush_block_log_now(&self) {
        self.log_quiet_blocks(BlockLog::take);
    }

    /// Runs `f` on the block log and logs the summary it hands back, after
    /// the lock is released.
    fn log_quiet_blocks(&self, f: impl FnOnce(&mut BlockLog) -> Option<QuietBlocks>) {
        let quiet = f(&mut self.block_log.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(q) = quiet {
            tracing::info!(
                "committed {} more blocks, heights {}..={}, txs={} ok={} (at most {BLOCK_LINES_PER_SECOND} block lines a second)",
                q.blocks,
                q.first_height,
                q.last_height,
                q.txs,
                q.ok
            );
        }
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&LedgerState) -> T) -> T {
        f(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Balance of `account` and the tip height it was read at.
    pub fn balance(&self, account: AccountId) -> Option<(Amount, u64)> {
        self.with_state(|s| s.balances.get(&account).map(|b| (*b, s.tip_height)))
    }

    pub fn tip(&self) -> (u64, Hash32) {
        self.with_state(|s| (s.tip_height, s.tip_hash))
    }

    /// Called before each sled write of a block's apply; in tests, fails
    /// where [`Ledger::crash_after_writes`] says.
    #[inline]
    fn before_write(&self) -> Result<(), LedgerError> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering::Relaxed;
            match self.writes_before_crash.load(Relaxed) {
                u64::MAX => {}
                0 => {
                    return Err(LedgerError::Io {
                        path: "a test's crash point".into(),
                        source: std::io::Error::other("crashed"),
                    })
                }
                n => self.writes_before_crash.store(n - 1, Relaxed),
            }
        }
        Ok(())
    }

    pub fn tx_record(&self, id: &TxId) -> Result<Option<TxRecord>, LedgerError> {
        match self.tree.get(tx_key(id))? {
            None => Ok(None),
            Some(v) => decode(&v, || format!("tx record {id}")).map(Some),
        }
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, LedgerError> {
        let Some(v) = self.block_bytes(height)? else {
            return Ok(None);
        };
        let block: Block = decode(&v, || format!("block {height}"))?;
        if block.height() != height {
            return Err(LedgerError::Corruption {
                height,
                reason: format!("the block stored for it says height {}", block.height()),
            });
        }
        Ok(Some(block))
    }

    /// The stored encoding of block `height`, if the chain has it.
    fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        match self.tree.get(location_key(height))? {
            None => Ok(None),
            Some(at) => read_block(&self.blocks, height, &at).map(Some),
        }
    }

    /// Blocks `0..=last` in order, as (height in the index, stored bytes); a
    /// gap shows as the next height present.
    fn stored_blocks(&self, last: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>), LedgerError>> + '_ {
        self.tree.range(location_key(0)..=location_key(last)).map(move |kv| {
            let (k, at) = kv?;
            let height = key_number(&k, PREFIX_LOCATION, "block location")?;
            Ok((height, read_block(&self.blocks, height, &at)?))
        })
    }

    /// A stored block as its `chain.jsonl` line (without the newline).
    pub fn block_json(&self, height: u64) -> Result<Option<String>, LedgerError> {
        let Some(block) = self.block(height)? else {
            return Ok(None);
        };
        let records = self.records_of(&block)?;
        let mut line = views::block_line(&block, block.hash(), &records);
        line.pop();
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    // ---- explorer ----

    /// A committed transaction by id: where it is and what became of it.
    pub fn tx_json(&self, id: &TxId) -> Result<Option<serde_json::Value>, LedgerError> {
        let Some(rec) = self.tx_record(id)? else {
            return Ok(None);
        };
        let tx = self
            .block(rec.height)?
            .and_then(|b| b.txs.into_iter().find(|t| t.id() == Some(id)));
        let result = views::TxResultView::of(&rec, rec.height);
        Ok(Some(serde_json::json!({
            "tx_id": id,
            "height": rec.height,
            "block_hash": rec.block_hash,
            "status": result.status,
            "reason": result.reason,
            "balance": result.balance,
            "tx": tx,
        })))
    }

    /// The transactions touching `account` (as source, destination or
    /// audited account), newest first, from blocks below `before` (default:
    /// all). Without an index this walks blocks backwards, so the walk is
    /// bounded: whole blocks until at least `limit` entries, and at most
    /// [`HISTORY_MAX_BLOCKS`] blocks and [`HISTORY_MAX_TXS`] transactions
    /// per call; `next_before` says where to go on (absent once block 0 was
    /// read).
    pub fn account_history(
        &self,
        account: AccountId,
        limit: usize,
        before: Option<u64>,
    ) -> Result<serde_json::Value, LedgerError> {
        self.account_history_within(account, limit, before, HISTORY_MAX_TXS)
    }

    /// [`Ledger::account_history`] with its own transaction budget.
    pub(crate) fn account_history_within(
        &self,
        account: AccountId,
        limit: usize,
        before: Option<u64>,
        max_txs: usize,
    ) -> Result<serde_json::Value, LedgerError> {
        let (tip, _) = self.tip();
        if before == Some(0) {
            return Ok(serde_json::json!({
                "account": account,
                "balance": self.balance(account).map(|(b, _)| b),
                "entries": [],
                "next_before": null,
            }));
        }
        let start = before.map_or(tip, |b| (b - 1).min(tip));
        let mut entries = Vec::new();
        let mut h = start;
        let mut scanned = 0u64;
        let mut scanned_txs = 0usize;
        let mut next_before = None;
        loop {
            if scanned == HISTORY_MAX_BLOCKS || scanned_txs >= max_txs || entries.len() >= limit {
                next_before = Some(h + 1);
                break;
            }
            let Some(block) = self.block(h)? else { break };
            scanned += 1;
            scanned_txs += block.txs.len();
            let hash = block.hash();
            for tx in block.txs.iter().rev() {
                let touches = match tx {
                    Transaction::Transfer { from, to, .. } => *from == account || *to == account,
                    Transaction::BalanceCheck { account: a, .. } | Transaction::Allocation { account: a, .. } => {
                        *a == account
                    }
                };
                if !touches {
                    continue;
                }
                let (status, reason, balance) = match tx.id() {
                    Some(id) => match self.tx_record(id)? {
                        // A later copy of an id (a retry) was not executed again.
                        Some(r) if r.height != h => continue,
                        Some(r) => {
                            let v = views::TxResultView::of(&r, h);
                            (v.status, v.reason, v.balance)
                        }
                        None => ("unknown", None, None),
                    },
                    None => ("committed", None, None),
                };
                entries.push(serde_json::json!({
                    "height": h, "block_hash": hash, "status": status, "reason": reason,
                    "balance": balance, "tx": tx,
                }));
            }
            if h == 0 {
                break;
            }
            h -= 1;
        }
        Ok(serde_json::json!({
            "account": account,
            "balance": self.balance(account).map(|(b, _)| b),
            "entries": entries,
            "next_before": next_before,
        }))
    }

    /// Makes the next block's apply fail after `writes` of its sled writes,
    /// as a crash there would (sled keeps a prefix of its writes).
    #[cfg(test)]
    pub(crate) fn crash_after_writes(&self, writes: u64) {
        self.writes_before_crash
            .store(writes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lowers [`CHECKPOINT_MAX_BLOCKS`], so tests cross checkpoints quickly.
    #[cfg(test)]
    pub(crate) fn set_checkpoint_max_blocks(&self, blocks: usize) {
        self.checkpoint_max_blocks
            .store(blocks, std::sync::atomic::Ordering::Relaxed);
    }

    /// Heights of the balance deltas stored after the checkpoint.
    #[cfg(test)]
    pub(crate) fn delta_heights(&self) -> Vec<u64> {
        self.tree
            .scan_prefix(PREFIX_DELTA)
            .keys()
            .map(|k| key_number(&k.unwrap(), PREFIX_DELTA, "balance delta").unwrap())
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn blocks_for_test(&self) -> &BlockFiles {
        &self.blocks
    }

    /// [`edit_stored_block`] on this open ledger.
    #[cfg(test)]
    pub(crate) fn edit_block(&self, height: u64, f: impl FnOnce(&mut Block)) -> Result<(), LedgerError> {
        edit_block_in(&self.tree, &self.blocks, height, f)
    }

    /// The raw tree, for tests that damage it on purpose.
    #[cfg(test)]
    pub(crate) fn raw_tree(&self) -> &sled::Tree {
        &self.tree
    }

    #[cfg(test)]
    pub(crate) fn raw_checkpoints(&self) -> &sled::Tree {
        &self.checkpoints
    }

    #[cfg(test)]
    pub(crate) fn raw_db(&self) -> &sled::Db {
        &self.db
    }

    // ---- verification ----

    /// Re-checks the whole stored ledger: every block's height, link to its
    /// parent, chain, difficulty, merkle root and proof of work; every
    /// transaction re-executed from genesis must give the outcome recorded for
    /// it; the balances and tip the node serves must be what the chain gives.
    /// The first disagreement is a [`LedgerError::Corruption`] naming the
    /// block height. Costs one pass over the history (O(accounts) memory).
    /// Safe while the node applies: it checks the state as of its start (a
    /// cut, like a snapshot's), and blocks and records up to there never change.
    pub fn verify(&self) -> Result<VerifyReport, LedgerError> {
        use std::sync::atomic::Ordering;
        let installs = self.installs.load(Ordering::SeqCst);
        match self.verify_cut() {
            Err(LedgerError::Corruption { .. })
                if installs % 2 == 1 || self.installs.load(Ordering::SeqCst) != installs =>
            {
                Err(LedgerError::VerifyInterrupted)
            }
            other => other,
        }
    }

    /// Whether a snapshot install began or ran since `cut` was taken: the
    /// ledger a build reads from has then been replaced under it.
    pub fn installed_since(&self, cut: &SnapshotCut) -> bool {
        let now = self.installs.load(std::sync::atomic::Ordering::SeqCst);
        now != cut.installs || now % 2 == 1
    }

    /// Makes any verification in progress end at its next block.
    pub fn stop_verifying(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn verify_cut(&self) -> Result<VerifyReport, LedgerError> {
        let started = std::time::Instant::now();
        let corrupt = |height: u64, reason: String| LedgerError::Corruption { height, reason };
        let cut = self.cut();
        let mut balances: BTreeMap<AccountId, Amount> = BTreeMap::new();
        let mut report = VerifyReport::default();
        let mut prev: Option<Hash32> = None;
        for stored in self.stored_blocks(cut.height) {
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(LedgerError::VerifyStopped);
            }
            let height = report.blocks;
            let (key_height, v) = stored?;
            if key_height != height {
                return Err(corrupt(
                    height,
                    format!("block {height} is missing (next stored: {key_height})"),
                ));
            }
            let block: Block = decode(&v, || format!("block {height}"))
                .map_err(|e| corrupt(height, format!("block does not decode: {e}")))?;
            if block.height() != height {
                return Err(corrupt(height, format!("block says height {}", block.height())));
            }
            let hash = self.verify_block(&block, prev)?;
            self.verify_transactions(&block, hash, Some(&mut balances), &mut report)?;
            prev = Some(hash);
            report.blocks += 1;
        }
        let tip_height = report.blocks.saturating_sub(1);
        if prev != Some(cut.tip_hash) || cut.height != tip_height {
            return Err(corrupt(
                tip_height,
                format!(
                    "the ledger's tip is {} at height {}, but its chain ends at height {tip_height} with {:?}",
                    cut.tip_hash, cut.height, prev
                ),
            ));
        }
        let served: BTreeMap<AccountId, Amount> = cut.balances.into_iter().collect();
        if let Some((account, served)) = served.iter().find(|(a, b)| balances.get(a) != Some(b)) {
            return Err(corrupt(
                tip_height,
                format!(
                    "balance of account {account} is {served} in the ledger, but the chain gives {:?}",
                    balances.get(account)
                ),
            ));
        }
        if let Some(account) = balances.keys().find(|a| !served.contains_key(a)) {
            return Err(corrupt(
                tip_height,
                format!("account {account} is missing from the ledger"),
            ));
        }
        self.check_digest(tip_height)?;
        report.tip_height = tip_height;
        report.tip_hash = cut.tip_hash;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The check a node runs at every start, whose cost does not grow with
    /// history: the last `blocks` blocks (all if 0: then it is [`Ledger::verify`]),
    /// or fewer once they hold `max_txs` transactions (at least the tip
    /// block; nodes use [`START_VERIFY_MAX_TXS`]), are checked for height, link, chain, merkle
    /// root, proof of work, signatures and records; the balances were
    /// already checked against their digest when the ledger was opened.
    /// `bank-server verify` re-executes everything.
    pub fn verify_recent(&self, blocks: u64, max_txs: usize) -> Result<VerifyReport, LedgerError> {
        if blocks == 0 {
            return self.verify();
        }
        let started = std::time::Instant::now();
        let (tip_height, tip_hash) = self.tip();
        self.check_digest(tip_height)?;
        let corrupt = |height: u64, reason: String| LedgerError::Corruption { height, reason };
        // Signatures cost ~40 us each: full blocks of 4,096 would make the
        // check of 64 blocks take seconds, so it stops at a transaction budget.
        let read = |height: u64| {
            self.block(height)
                .map_err(|e| corrupt(height, format!("block does not decode: {e}")))?
                .ok_or_else(|| corrupt(height, "block is missing".into()))
        };
        // The window, newest first, each block read once.
        let mut window = Vec::new();
        let mut first = tip_height;
        let mut txs = 0usize;
        loop {
            let block = read(first)?;
            txs += block.txs.len();
            window.push(block);
            if first == 0 || window.len() as u64 >= blocks || txs >= max_txs {
                break;
            }
            first -= 1;
        }
        let mut prev = match first {
            0 => None,
            h => Some(
                self.block(h - 1)?
                    .ok_or_else(|| corrupt(h - 1, "block is missing".into()))?
                    .hash(),
            ),
        };
        let mut report = VerifyReport::default();
        for block in window.iter().rev() {
            let hash = self.verify_block(block, prev)?;
            self.verify_transactions(block, hash, None, &mut report)?;
            prev = Some(hash);
            report.blocks += 1;
        }
        if prev != Some(tip_hash) {
            return Err(corrupt(
                tip_height,
                format!("the ledger's tip {tip_hash} is not its last block"),
            ));
        }
        report.tip_height = tip_height;
        report.tip_hash = tip_hash;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Checks one stored block against its parent's hash (`None` for
    /// block 0: then its hash must be the chain id); returns its hash.
    fn verify_block(&self, block: &Block, prev: Option<Hash32>) -> Result<Hash32, LedgerError> {
        let height = block.height();
        let corrupt = |reason: String| LedgerError::Corruption { height, reason };
        let hash = match prev {
            None => block.verify_contents().map_err(|e| corrupt(e.to_string()))?,
            Some(p) => block
                .verify_extends(self.chain_id, self.difficulty, height.saturating_sub(1), p)
                .map_err(|e| corrupt(e.to_string()))?,
        };
        if prev.is_none() && (height != 0 || hash != self.chain_id) {
            return Err(corrupt(format!(
                "genesis block hash {hash} is not the chain id {}",
                self.chain_id
            )));
        }
        // Blocks up to here hold genesis's unsigned transfers: they must be
        // the file's own blocks.
        if height == self.genesis_tip.0 && hash != self.genesis_tip.1 {
            return Err(corrupt(format!(
                "block {height} is not the genesis file's last block {}",
                self.genesis_tip.1
            )));
        }
        Ok(hash)
    }

    fn check_digest(&self, tip_height: u64) -> Result<(), LedgerError> {
        if self.digest_mismatch.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(LedgerError::Corruption {
                height: tip_height,
                reason: "the stored balances do not match their digest: a balance was changed outside the ledger \
                         (`bank-server verify` names the account)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Checks every transfer's signature (in batches, ~20 us each), spread
    /// over the machine's cores for big blocks; the first bad one in block
    /// order is reported.
    fn verify_signatures(&self, block: &Block) -> Result<(), TransferAuthError> {
        const MIN_PER_THREAD: usize = 256;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(block.txs.len() / MIN_PER_THREAD).max(1);
        let first_bad = |txs: &[Transaction]| self.authorize_many(txs).into_iter().find(Result::is_err);
        if threads == 1 {
            return first_bad(&block.txs).unwrap_or(Ok(()));
        }
        let chunk = block.txs.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = block
                .txs
                .chunks(chunk)
                .map(|part| s.spawn(move || first_bad(part)))
                .collect();
            for part in parts {
                match part.join() {
                    Ok(Some(bad)) => return bad,
                    Ok(None) => {}
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(())
        })
    }

    /// Re-executes one block's transactions (the first occurrence of each id)
    /// and compares each outcome with its stored record.
    fn verify_transactions(
        &self,
        block: &Block,
        hash: Hash32,
        mut balances: Option<&mut BTreeMap<AccountId, Amount>>,
        report: &mut VerifyReport,
    ) -> Result<(), LedgerError> {
        let height = block.height();
        let corrupt = |reason: String| LedgerError::Corruption { height, reason };
        let mut seen_here: std::collections::HashSet<&TxId> = std::collections::HashSet::new();
        if height > self.genesis_tip.0 {
            self.verify_signatures(block).map_err(|e| corrupt(e.to_string()))?;
        }
        for tx in &block.txs {
            if matches!(tx, Transaction::Transfer { .. }) {
                report.transfers += 1;
            }
            let Some(id) = tx.id() else {
                if let Some(b) = balances.as_deref_mut() {
                    rules::apply(b, tx, height == 0).map_err(|e| corrupt(format!("allocation fails: {e}")))?;
                }
                continue;
            };
            let rec = self
                .tx_record(id)?
                .ok_or_else(|| corrupt(format!("transaction {id} has no record")))?;
            // Later copies of an id (retries, conflicts) were not executed.
            if rec.height != height || !seen_here.insert(id) {
                if rec.height > height {
                    return Err(corrupt(format!(
                        "transaction {id} is recorded at later height {}",
                        rec.height
                    )));
                }
                continue;
            }
            if rec.tx_hash != tx.content_hash() || rec.block_hash != hash {
                return Err(corrupt(format!(
                    "the record of transaction {id} does not match the block"
                )));
            }
            let Some(b) = balances.as_deref_mut() else {
                continue;
            };
            let outcome = rules::apply(b, tx, height == 0);
            if outcome != rec.outcome {
                return Err(corrupt(format!(
                    "transaction {id} re-executes to {outcome:?} but is recorded as {:?}",
                    rec.outcome
                )));
            }
        }
        Ok(())
    }

    // ---- snapshots ----

    /// Captures what a snapshot at the current applied state needs; called
    /// between two applies, so it is a consistent cut. Costs O(accounts).
    pub fn cut(&self) -> SnapshotCut {
        self.with_state(|s| SnapshotCut {
            installs: self.installs.load(std::sync::atomic::Ordering::SeqCst),
            last_applied: s.last_applied,
            membership: s.membership.clone(),
            height: s.tip_height,
            tip_hash: s.tip_hash,
            balances: s.balances.iter().map(|(a, b)| (*a, *b)).collect(),
        })
    }

    /// Streams the snapshot described by `cut` into a file at `path`.
    ///
    /// The transaction records come from `previous` (a snapshot of this
    /// chain at or below the cut) where it can be read, plus those of the
    /// blocks after it, looked up by their ids: records never change once
    /// written. Reading all of them from sled instead pages in the whole
    /// index, which sled's cache lets go of only after thousands of further
    /// accesses (a leader's peak RSS rose ~40 MB at each snapshot of a
    /// 1,000,000-transfer chain). Falls back to that when `previous` is
    /// missing or unusable.
    pub fn write_snapshot(
        &self,
        cut: &SnapshotCut,
        meta: &SnapshotMeta,
        path: &Path,
        previous: Option<&Path>,
    ) -> Result<SnapshotWritten, LedgerError> {
        if let Some(prev) = previous.filter(|p| p.exists()) {
            match self.write_snapshot_from(cut, meta, path, Some(prev)) {
                Err(LedgerError::PreviousSnapshot(e)) => tracing::warn!(
                    "cannot take transaction records from {}: {e}; reading them from the ledger",
                    prev.display()
                ),
                other => return other,
            }
        }
        self.write_snapshot_from(cut, meta, path, None)
    }

    fn write_snapshot_from(
        &self,
        cut: &SnapshotCut,
        meta: &SnapshotMeta,
        path: &Path,
        previous: Option<&Path>,
    ) -> Result<SnapshotWritten, LedgerError> {
        let previous = previous
            .map(|p| {
                self.open_previous_snapshot(p, cut)
                    .map_err(|e| LedgerError::PreviousSnapshot(Box::new(e)))
            })
            .transpose()?;
        let mut w = SnapshotWriter::create(path, meta)?;
        let mut written = SnapshotWritten::default();
        w.record(KEY_GENESIS, &encode(&self.chain_id(), "genesis")?)?;
        w.record(KEY_TIP, &encode(&Some((cut.height, cut.tip_hash)), "tip")?)?;
        w.record(KEY_APPLIED, &encode(&cut.last_applied, "applied")?)?;
        w.record(KEY_MEMBERSHIP, &encode(&cut.membership, "membership")?)?;
        for (account, balance) in &cut.balances {
            w.record(&account_key(*account), &encode(balance, "balance")?)?;
            written.records += 1;
        }
        // Blocks up to the cut never change: read them while applies go on.
        for (expected, stored) in (0u64..).zip(self.stored_blocks(cut.height)) {
            let (height, bytes) = stored?;
            if height != expected {
                return Err(LedgerError::Corruption {
                    height: expected,
                    reason: format!("block {expected} is missing under a snapshot's cut (next stored: {height})"),
                });
            }
            w.record(&block_key(height), &bytes)?;
            written.records += 1;
            // Blocks after the previous snapshot: their records, by id, while
            // the block is at hand.
            if previous.as_ref().is_some_and(|(_, prev_height)| height > *prev_height) {
                let block: Block = decode(&bytes, || format!("block {height}"))?;
                written.records += self.write_records_of(&mut w, &block)?;
            }
        }
        let last: Option<Block> = self.block(cut.height)?;
        if last.map(|b| b.hash()) != Some(cut.tip_hash) {
            return Err(LedgerError::Corruption {
                height: cut.height,
                reason: "the chain changed under a snapshot being built".into(),
            });
        }
        match previous {
            Some((mut reader, _)) => {
                while let Some((k, v)) = reader
                    .next_record()
                    .map_err(|e| LedgerError::PreviousSnapshot(Box::new(e.into())))?
                {
                    if k.starts_with(PREFIX_TX) {
                        w.record(&k, &v)?;
                        written.records += 1;
                        written.reused_records += 1;
                    }
                }
            }
            None => {
                // Records of later blocks are left out: they belong after the cut.
                for kv in self.tree.scan_prefix(PREFIX_TX) {
                    let (k, v) = kv?;
                    let rec: TxRecord = decode(&v, || format!("tx record {:?}", String::from_utf8_lossy(&k[2..])))?;
                    if rec.height <= cut.height {
                        w.record(&k, &v)?;
                        written.records += 1;
                    }
                }
            }
        }
        w.finish()?;
        Ok(written)
    }

    /// Writes the records `block` created (a record belongs to the block
    /// that first applied its id); returns how many.
    fn write_records_of(&self, w: &mut SnapshotWriter, block: &Block) -> Result<u64, LedgerError> {
        let height = block.height();
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for id in block.txs.iter().filter_map(Transaction::id) {
            let rec = self.tx_record(id)?.ok_or_else(|| LedgerError::Corruption {
                height,
                reason: format!("transaction {id} has no record"),
            })?;
            if rec.height == height && seen.insert(id) {
                w.record(&tx_key(id), &encode(&rec, "tx record")?)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// A snapshot of this chain at or below `cut`, positioned after the
    /// genesis and tip records its writer puts first, and its height.
    fn open_previous_snapshot(&self, path: &Path, cut: &SnapshotCut) -> Result<(SnapshotReader, u64), LedgerError> {
        let mut r = SnapshotReader::open(path)?;
        let (mut genesis, mut tip) = (None, None);
        while genesis.is_none() || tip.is_none() {
            let corrupt = |reason: &str| SnapshotError::Corrupt {
                path: path.display().to_string(),
                reason: reason.into(),
            };
            let (k, v) = r.next_record()?.ok_or_else(|| corrupt("no genesis and tip records"))?;
            if k == KEY_GENESIS {
                genesis = Some(decode::<Hash32>(&v, || "snapshot genesis".into())?);
            } else if k == KEY_TIP {
                tip = Some(decode::<Option<(u64, Hash32)>>(&v, || "snapshot tip".into())?);
            } else {
                return Err(corrupt("genesis and tip are not its first records").into());
            }
        }
        if genesis != Some(self.chain_id()) {
            return Err(LedgerError::GenesisMismatch {
                stored: genesis.unwrap_or(Hash32::ZERO),
                file: self.chain_id(),
            });
        }
        let (height, hash) = tip.flatten().ok_or(LedgerError::Corruption {
            height: 0,
            reason: "the previous snapshot has no tip".into(),
        })?;
        if height > cut.height || self.block(height)?.map(|b| b.hash()) != Some(hash) {
            return Err(LedgerError::Corruption {
                height,
                reason: "the previous snapshot is not a prefix of this cut".into(),
            });
        }
        Ok((r, height))
    }

    /// Replaces the whole ledger with the snapshot file at `path`.
    ///
    /// Crash-safe: the file is verified first, then a pending mark is set
    /// before the ledger is touched and cleared after; a node that crashes in
    /// between redoes the install from the same file when it starts.
    pub fn install_snapshot(&self, path: &Path) -> Result<(), LedgerError> {
        let mut probe = SnapshotReader::open(path)?;
        let mut their_genesis = None;
        while let Some((k, v)) = probe.next_record()? {
            if k == KEY_GENESIS {
                their_genesis = Some(decode::<Hash32>(&v, || "snapshot genesis".into())?);
            }
        }
        if their_genesis != Some(self.chain_id()) {
            return Err(LedgerError::GenesisMismatch {
                stored: their_genesis.unwrap_or(Hash32::ZERO),
                file: self.chain_id(),
            });
        }
        self.installs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.install_meta
            .insert(KEY_PENDING_INSTALL, path.to_string_lossy().as_bytes())?;
        self.db.flush()?;
        let loaded = self.load_snapshot(path).and_then(|()| {
            self.install_meta.remove(KEY_PENDING_INSTALL)?;
            self.db.flush()?;
            self.reload()?;
            self.reconcile_chain_view()
        });
        self.installs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        loaded
    }

    /// Clears the ledger and loads a verified snapshot file, in bounded batches.
    fn load_snapshot(&self, path: &Path) -> Result<(), LedgerError> {
        let mut batch = ChunkedBatch::new(&self.tree);
        for kv in self.tree.iter().keys() {
            batch.remove(kv?)?;
        }
        self.checkpoints.clear()?;
        self.blocks.keep_through(None)?;
        let mut r = SnapshotReader::open(path)?;
        let meta = r.meta.clone();
        let mut balances = BTreeMap::new();
        let mut tip = None;
        while let Some((k, v)) = r.next_record()? {
            // Folded into the head below; the log id is the metadata's.
            if k == KEY_APPLIED {
                continue;
            }
            if k.starts_with(PREFIX_ACCOUNT) {
                let (account, balance) = account_record(&k, &v)?;
                balances.insert(account, balance);
                continue;
            }
            if k.starts_with(PREFIX_BLOCK) {
                let height = key_number(&k, PREFIX_BLOCK, "snapshot block")?;
                let at = self.blocks.append(&v)?;
                batch.insert(location_key(height), at.encode().to_vec())?;
                continue;
            }
            if k == KEY_TIP {
                tip = decode::<Option<(u64, Hash32)>>(&v, || "snapshot tip".into())?;
                continue;
            }
            batch.insert(k, v)?;
        }
        // Before the batch that finishes the install (and the flush after it).
        self.blocks.sync()?;
        let head = Head {
            applied: meta.last_log_id,
            tip,
            balance_digest: Some(balance_digest(&balances)),
            view_len: u64::MAX,
        };
        let at = tip.map_or(0, |t| t.0);
        let checkpoint: Checkpoint = (at, balances);
        // Before the last chunk, which holds the head.
        self.checkpoints
            .insert(at.to_be_bytes(), encode(&checkpoint, "balances")?)?;
        batch.insert(KEY_MEMBERSHIP.to_vec(), encode(&meta.last_membership, "membership")?)?;
        batch.insert(KEY_HEAD.to_vec(), encode(&head, "head")?)?;
        batch.finish()
    }
}

/// Overwrites the stored balance of `account` where a start reads it (its
/// latest delta, else the checkpoint), as damage on disk would; returns the
/// balance it replaced. For tests of tamper detection.
#[doc(hidden)]
pub fn overwrite_stored_balance(
    db: &sled::Db,
    account: AccountId,
    balance: Amount,
) -> Result<Option<Amount>, LedgerError> {
    let tree = db.open_tree(LEDGER_TREE)?;
    for kv in tree.scan_prefix(PREFIX_DELTA).rev() {
        let (k, v) = kv?;
        let mut changes: Vec<(AccountId, Amount)> = decode(&v, || "balance delta".into())?;
        if let Some(entry) = changes.iter_mut().find(|(a, _)| *a == account) {
            let old = std::mem::replace(&mut entry.1, balance);
            tree.insert(k, encode(&changes, "balance delta")?)?;
            return Ok(Some(old));
        }
    }
    let checkpoints = db.open_tree(CHECKPOINT_TREE)?;
    let Some((k, v)) = checkpoints.last()? else {
        return Ok(None);
    };
    let mut checkpoint: Checkpoint = decode(&v, || "balance checkpoint".into())?;
    let old = checkpoint.1.insert(account, balance);
    checkpoints.insert(k, encode(&checkpoint, "balances")?)?;
    Ok(old)
}

/// Decodes one per-account balance record (snapshot files, old data dirs).
fn account_record(key: &[u8], value: &[u8]) -> Result<(AccountId, Amount), LedgerError> {
    let account = key_number(key, PREFIX_ACCOUNT, "account")?;
    Ok((account, decode(value, || format!("balance of {account}"))?))
}

/// Reads block `height` from the block files at the location `at` (as
/// stored); damage is a [`LedgerError::Corruption`] naming the height.
fn read_block(blocks: &BlockFiles, height: u64, at: &[u8]) -> Result<Vec<u8>, LedgerError> {
    blocks.read(decode_location(height, at)?).map_err(block_damage(height))
}

/// A stored location of block `height`.
fn decode_location(height: u64, at: &[u8]) -> Result<Location, LedgerError> {
    Location::decode(at).ok_or(LedgerError::Corruption {
        height,
        reason: "its location in the block files does not decode".into(),
    })
}

/// Damage found in the block files (a bad record, or the file of an indexed
/// one gone) is corruption of the chain at `height`.
fn block_damage(height: u64) -> impl FnOnce(BlockFileError) -> LedgerError {
    move |e| match e {
        BlockFileError::Io { ref source, .. } if source.kind() != std::io::ErrorKind::NotFound => {
            LedgerError::Blocks(e)
        }
        _ => LedgerError::Corruption {
            height,
            reason: e.to_string(),
        },
    }
}

/// Replaces the stored bytes of block `height` with `f`'s edit of them, as
/// damage on disk would: the blocks after it are written again behind it.
/// For tests of tamper detection, on a stopped node (`tree` is its ledger
/// tree, `blocks_dir` its [`super::NodePaths::blocks`]).
#[doc(hidden)]
pub fn edit_stored_block(
    tree: &sled::Tree,
    blocks_dir: &Path,
    height: u64,
    f: impl FnOnce(&mut Block),
) -> Result<(), LedgerError> {
    edit_block_in(tree, &BlockFiles::open(blocks_dir)?, height, f)
}

fn edit_block_in(
    tree: &sled::Tree,
    blocks: &BlockFiles,
    height: u64,
    f: impl FnOnce(&mut Block),
) -> Result<(), LedgerError> {
    let at = |h: u64| -> Result<Option<Location>, LedgerError> {
        Ok(tree.get(location_key(h))?.as_deref().and_then(Location::decode))
    };
    let mut later = Vec::new();
    let mut h = height;
    while let Some(loc) = at(h)? {
        later.push(blocks.read(loc).map_err(block_damage(h))?);
        h += 1;
    }
    let Some(first) = later.first_mut() else {
        return Err(LedgerError::Corruption {
            height,
            reason: "no such block".into(),
        });
    };
    let mut block: Block = decode(first, || format!("block {height}"))?;
    f(&mut block);
    *first = encode(&block, "block")?;
    blocks.keep_through(height.checked_sub(1).map(at).transpose()?.flatten())?;
    for (i, bytes) in later.iter().enumerate() {
        let loc = blocks.append(bytes)?;
        tree.insert(location_key(height + i as u64), &loc.encode()[..])?;
    }
    blocks.sync()?;
    Ok(())
}

/// The big-endian number after `prefix` in a key.
fn key_number(key: &[u8], prefix: &[u8], what: &str) -> Result<u64, LedgerError> {
    key.get(prefix.len()..)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| LedgerError::Corruption {
            height: 0,
            reason: format!("malformed {what} key"),
        })
}

/// Writes to a tree in batches of at most [`ChunkedBatch::MAX`] inserts, for
/// loads too big for one batch; atomic per chunk only.
///
/// Small chunks bound memory: sled copies a leaf for every insert and frees
/// the old copy only after the batch, which holds one epoch guard throughout.
/// A heap profile of a snapshot install (600,000 transfers) peaked at 438 MB,
/// most of it such copies, with chunks of 4,096; with 128, a fresh node's
/// peak RSS writing a 100,000-account genesis fell from 375 MB to 88 MB.
struct ChunkedBatch<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    len: usize,
}

impl<'a> ChunkedBatch<'a> {
    const MAX: usize = 128;

    fn new(tree: &'a sled::Tree) -> Self {
        ChunkedBatch {
            tree,
            batch: sled::Batch::default(),
            len: 0,
        }
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), LedgerError> {
        self.batch.insert(key, value);
        self.push()
    }

    fn remove(&mut self, key: sled::IVec) -> Result<(), LedgerError> {
        self.batch.remove(key);
        self.push()
    }

    fn push(&mut self) -> Result<(), LedgerError> {
        self.len += 1;
        if self.len >= Self::MAX {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.len = 0;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), LedgerError> {
        self.tree.apply_batch(self.batch)?;
        Ok(())
    }
}

/// What [`Ledger::verify`] checked.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub blocks: u64,
    pub transfers: u64,
    pub tip_height: u64,
    pub tip_hash: Hash32,
    pub elapsed: std::time::Duration,
}

impl VerifyReport {
    /// "N blocks, M transfers verified in T ms (X blocks/s, Y transfers/s)".
    pub fn describe(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "{} blocks, {} transfers verified in {} ms ({:.0} blocks/s, {:.0} transfers/s); tip {} at height {}",
            self.blocks,
            self.transfers,
            self.elapsed.as_millis(),
            self.blocks as f64 / secs,
            self.transfers as f64 / secs,
            self.tip_hash,
            self.tip_height
        )
    }
}

/// What [`Ledger::write_snapshot`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotWritten {
    pub records: u64,
    /// Transaction records copied from the previous snapshot.
    pub reused_records: u64,
}

/// What a snapshot at one applied state holds besides immutable blocks and records.
#[derive(Debug, Clone)]
pub struct SnapshotCut {
    /// [`Ledger::installs`] when the cut was taken.
    pub installs: u64,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub height: u64,
    pub tip_hash: Hash32,
    pub balances: Vec<(AccountId, Amount)>,
}

#[cfg(test)]
mod block_log_tests {
    use super::{BlockLog, QuietBlocks, BLOCK_LINES_PER_SECOND};
    use std::time::{Duration, Instant};

    #[test]
    fn a_second_logs_its_first_blocks_and_sums_up_the_rest_once_it_is_over() {
        let mut log = BlockLog::default();
        let t0 = Instant::now();
        let limit = u64::from(BLOCK_LINES_PER_SECOND);
        for h in 1..=limit {
            assert_eq!(log.admit(t0, h, 3, 2), (true, None), "block {h}");
        }
        for h in limit + 1..=limit + 15 {
            assert_eq!(log.admit(t0 + Duration::from_millis(900), h, 3, 2), (false, None));
        }
        // Still the same second: nothing to sum up yet.
        assert_eq!(log.end_window(t0 + Duration::from_millis(999)), None);
        let expected = QuietBlocks {
            blocks: 15,
            first_height: limit + 1,
            last_height: limit + 15,
            txs: 45,
            ok: 30,
        };
        // The next block, a second later, brings the summary and has a line.
        assert_eq!(log.admit(t0 + Duration::from_secs(1), 99, 1, 1), (true, Some(expected)));
        // Nothing is summed up twice.
        assert_eq!(log.end_window(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn a_burst_is_summed_up_without_waiting_for_the_next_block() {
        let mut log = BlockLog::default();
        let t0 = Instant::now();
        for h in 0..u64::from(BLOCK_LINES_PER_SECOND) + 2 {
            log.admit(t0, h, 1, 1);
        }
        let q = log
            .end_window(t0 + Duration::from_secs(1))
            .expect("two blocks had no line");
        assert_eq!((q.blocks, q.first_height, q.last_height), (2, 10, 11));
        assert_eq!(log.end_window(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn at_shutdown_the_unfinished_second_is_summed_up_too() {
        let mut log = BlockLog::default();
        let t0 = Instant::now();
        for h in 0..u64::from(BLOCK_LINES_PER_SECOND) + 3 {
            log.admit(t0, h, 1, 1);
        }
        assert_eq!(log.end_window(t0 + Duration::from_millis(10)), None);
        assert_eq!(log.take().map(|q| q.blocks), Some(3));
        assert_eq!(log.take(), None);
    }
}
