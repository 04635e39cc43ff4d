//! The ledger state machine's storage: blocks, balances and transaction
//! records in sled and the block files.
//!
//! Apply contract ([`apply`]): every committed entry is applied in log
//! order; a block is verified (chain, link, merkle root, proof of work: one
//! header hash, never re-mined) and then its transactions run through
//! [`rules::apply`]. The block goes to the block files (synced), then its
//! index entry, the new transaction records and the changed balances to
//! sled, and last the head (`last_applied`, tip, balance digest), which makes
//! them part of the ledger. State-machine writes need no flush of their own:
//! the log is durable, and after a crash openraft re-applies from
//! `last_applied`; a start removes what a crash left above the tip
//! ([`recovery`]).
//!
//! Balances are stored as a checkpoint of all of them (one value in
//! [`schema::CHECKPOINT_TREE`], keyed by its height) plus one delta per block
//! since (`d:<height>`: the new balances of the accounts the block changed).
//! A sled insert copies a leaf, so a block of 1,024 transfers paid ~2,000
//! balance inserts when each account had its own key; a delta pays one. A
//! block rolls the deltas into a new checkpoint once they hold as many
//! entries as there are accounts (or span [`CHECKPOINT_MAX_BLOCKS`]):
//! checkpoints then cost at most what the deltas did, and a start replays
//! O(accounts) entries at most.
//!
//! The rest, one file each: the key layout ([`schema`]), the rate-limited
//! block log ([`block_log`]), the explorer's reads ([`explorer`]), whole-chain
//! checks ([`verify`]), snapshots ([`snapshot`]).

mod apply;
mod block_log;
mod checked;
mod error;
mod explorer;
pub(crate) mod holds;
mod recovery;
mod registry;
mod schema;
pub(crate) mod sets;
mod snapshot;
mod snapshot_check;
#[cfg(any(test, feature = "test-hooks"))]
pub mod tamper;
#[cfg(test)]
pub(crate) mod tests;
mod verify;

pub(crate) use apply::Prepared;
pub use apply::{ExecutionListener, CHECKPOINT_MAX_BLOCKS};
pub use error::LedgerError;
pub use explorer::{TxLookup, HISTORY_MAX_BLOCKS, HISTORY_MAX_TXS};
pub use schema::FORMAT_VERSION;
pub use snapshot::{SnapshotCut, SnapshotWritten};
pub use verify::{VerifyReport, START_VERIFY_MAX_TXS};

use self::apply::Deltas;
use self::block_log::BlockLog;
use self::schema::*;
use crate::ledger::keys::AuthError;
use crate::ledger::rules;
use crate::ledger::{
    AccountId, AccountKeys, Amount, Block, BookRef, Genesis, Hash32, PublicKey, Registry, RejectReason, Signer,
    Transaction, TxId, TxKey, TxRecord, View,
};
use crate::raft::{LogId, StoredMembership};
use crate::storage::block_file::BlockFiles;
use crate::storage::views::ChainView;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The in-memory mirror of the applied state: small (one entry per account,
/// never per transaction) and read on every request.
#[derive(Debug, Clone)]
pub struct LedgerState {
    pub balances: BTreeMap<AccountId, Amount>,
    /// Accounts' keys and states where not genesis's, and the money supply.
    pub registry: Registry,
    pub tip_height: u64,
    pub tip_hash: Hash32,
    /// The tip block's time: the next block's may not be earlier, so
    /// expiries hold against a leader that sets its clock back.
    pub tip_time_ms: u64,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// XOR of SHA-256(account, balance) over all accounts, as stored in the head.
    pub balance_digest: [u8; 32],
}

/// A node's ledger: shared by the state machine (writer) and the API (readers).
pub struct Ledger {
    db: sled::Db,
    tree: sled::Tree,
    /// [`schema::CHECKPOINT_TREE`].
    checkpoints: sled::Tree,
    /// Holds the pending-install mark, outside the tree an install replaces.
    install_meta: sled::Tree,
    /// [`schema::SNAPSHOT_CHECK_TREE`].
    snapshot_check: sled::Tree,
    /// The last snapshot check's result, for the install that follows it.
    checked_snapshot: Mutex<Option<snapshot_check::CheckedSnapshot>>,
    /// Block bodies; the tree holds where each is (`l:<height>`).
    blocks: BlockFiles,
    /// Hash of block 0: the chain's identity. Only this and the difficulty
    /// are kept of the genesis: its blocks are written once, then dropped.
    chain_id: Hash32,
    difficulty: u8,
    /// Genesis's keys: its accounts' first keys (the registry holds those
    /// set since) and the roles'. Transactions after `genesis_tip` must
    /// carry their signer's signature.
    keys: Arc<AccountKeys>,
    /// Height and hash of the last block genesis defines.
    genesis_tip: (u64, Hash32),
    /// The sum of genesis's balances: all balances sum to it plus the
    /// money issued since, less that redeemed.
    genesis_total: Amount,
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
    blob_sync: std::sync::OnceLock<Arc<crate::storage::sled_sync::SledSync>>,
    /// Told each block's records as soon as they are computed, before the
    /// block is written (the leader's producer answers its clients then).
    executions: std::sync::OnceLock<Arc<dyn ExecutionListener>>,
    /// Bounds the log's "committed block" lines (see [`BlockLog`]).
    block_log: Mutex<BlockLog>,
    /// Signatures checked before proposing, not checked again at apply.
    checked: checked::CheckedSignatures,
    /// Crash points and lowered limits for tests; nothing in other builds.
    #[cfg(any(test, feature = "test-hooks"))]
    hooks: tamper::Hooks,
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
        let install_meta = db.open_tree(INSTALL_TREE)?;
        let snapshot_check = db.open_tree(SNAPSHOT_CHECK_TREE)?;
        let checkpoints = db.open_tree(CHECKPOINT_TREE)?;
        check_format(db, &tree)?;
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
            registry: Registry::default(),
            tip_height: 0,
            tip_hash: Hash32::ZERO,
            tip_time_ms: 0,
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
            snapshot_check,
            checked_snapshot: Mutex::new(None),
            blocks: BlockFiles::open(blocks_dir)?,
            chain_id: genesis.chain_id(),
            difficulty: genesis.difficulty(),
            keys: Arc::new(genesis.keys()),
            genesis_total: genesis.total,
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
            executions: std::sync::OnceLock::new(),
            block_log: Mutex::new(BlockLog::default()),
            checked: checked::CheckedSignatures::default(),
            #[cfg(any(test, feature = "test-hooks"))]
            hooks: tamper::Hooks::default(),
        };
        if fresh {
            genesis.check_keys().map_err(LedgerError::Genesis)?;
            ledger.blocks.keep_through(None)?;
            ledger.write_genesis(&genesis)?;
        } else {
            ledger.cut_unapplied_writes()?;
            ledger.cut_unindexed_blocks()?;
        }
        ledger.reload()?;
        if pending_install {
            // The ledger is as it was before the install (its head moves
            // last): check the file against it again and finish.
            tracing::warn!("finishing a snapshot install a crash interrupted");
            ledger.install_snapshot(snapshot_path)?;
        } else {
            ledger.snapshot_check.clear()?;
        }
        ledger.reconcile_chain_view()?;
        Ok(Arc::new(ledger))
    }

    /// Height and hash of the last stored block, if any.
    fn stored_tip(&self) -> Result<Option<(u64, Hash32)>, LedgerError> {
        Ok(stored_head(&self.tree)?.and_then(|h| h.tip))
    }

    /// Rewrites the stored head with `change` applied, in `batch` (the
    /// blocks' path builds its head whole instead).
    fn update_head(&self, batch: &mut sled::Batch, change: impl FnOnce(&mut Head)) -> Result<(), LedgerError> {
        let mut head = stored_head(&self.tree)?.ok_or_else(no_head)?;
        change(&mut head);
        batch.insert(KEY_HEAD, encode(&head, "head")?);
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

    /// The records of a stored block's transactions, for rebuilding views.
    pub(crate) fn records_of(&self, block: &Block) -> Result<Vec<TxRecord>, LedgerError> {
        let hash = block.hash();
        let height = block.height();
        let block_ms = block.header.timestamp_ms;
        let stored: Vec<Option<(TxKey, Option<TxRecord>)>> = block
            .txs
            .iter()
            .map(|tx| tx.key().map(|k| self.tx_record(&k).map(|r| (k, r))).transpose())
            .collect::<Result<_, _>>()?;
        // Set items count as copies of their ids too.
        let item_keys: Vec<TxKey> = block
            .txs
            .iter()
            .filter(|tx| matches!(tx, Transaction::Set { .. }))
            .flat_map(Transaction::items)
            .filter_map(Transaction::key)
            .collect();
        let mut copies: std::collections::HashMap<&TxKey, usize> = std::collections::HashMap::new();
        for key in stored.iter().flatten().map(|(k, _)| k).chain(&item_keys) {
            *copies.entry(key).or_default() += 1;
        }
        // Where the outcome hangs on whether a copy was admitted (in time
        // and signed): a conflict with an earlier block's record, or an id
        // this block holds more than once. Rare, so checked only there.
        let needs_verdict = |i: usize| match &stored[i] {
            Some((key, Some(r))) => {
                (r.height < height && r.tx_hash != block.txs[i].content_hash())
                    || (r.height == height && copies.get(key).is_some_and(|n| *n > 1))
            }
            _ => false,
        };
        let checked: Vec<usize> = (0..block.txs.len()).filter(|i| needs_verdict(*i)).collect();
        let txs: Vec<Transaction> = checked.iter().map(|i| block.txs[*i].clone()).collect();
        // Today's keys: for a view rebuilt after a key changed, a copy
        // signed before with the old key reads as refused (the balances and
        // records, which the apply wrote, are not read from here).
        let keys = self.with_state(|s| self.keys_for(&self.book(s), &txs));
        let verdicts = crate::ledger::keys::verify_many_with(self.chain_id, &txs, &keys);
        let mut admitted: std::collections::HashMap<usize, bool> = std::collections::HashMap::new();
        for (i, v) in checked.into_iter().zip(verdicts) {
            let ok =
                height <= self.genesis_tip.0 || (v.is_ok() && rules::check_expiry(&block.txs[i], block_ms).is_ok());
            admitted.insert(i, ok);
        }
        let mut executed: std::collections::HashSet<TxKey> = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(block.txs.len());
        // Ids the transactions before the one at hand named.
        let mut named_before: std::collections::HashSet<TxKey> = std::collections::HashSet::new();
        for (i, tx) in block.txs.iter().enumerate() {
            if let Transaction::Set { items } = tx {
                out.push(self.set_record_of(tx, items, block, hash, &named_before)?);
                named_before.extend(items.iter().filter_map(Transaction::key));
                continue;
            }
            if let Some(key) = tx.key() {
                named_before.insert(key);
            }
            let tx_hash = tx.content_hash();
            let made_here = |outcome| TxRecord {
                tx_hash,
                height,
                block_hash: hash,
                outcome,
            };
            let refused = || made_here(Err(refusal_claiming_no_id(tx, block_ms)));
            let rec = match &stored[i] {
                // Allocations: genesis's own, refused anywhere else.
                None if height == 0 => made_here(Ok(rules::Applied { balance: None })),
                None => made_here(Err(RejectReason::AllocationOutsideGenesis)),
                Some((key, record)) => match (record, admitted.get(&i)) {
                    (Some(r), _) if r.height < height && r.tx_hash == tx_hash => r.clone(),
                    (Some(_), Some(false)) if !executed.contains(key) => refused(),
                    // The first admitted copy here is the one that executed.
                    (Some(r), Some(true)) if r.height == height && !executed.contains(key) => {
                        executed.insert(key.clone());
                        r.clone()
                    }
                    (Some(r), _) if r.height == height && copies.get(key).is_some_and(|n| *n == 1) => r.clone(),
                    // A later copy in this block of the one that executed.
                    (Some(r), _) if r.height == height && r.tx_hash == tx_hash => r.clone(),
                    (Some(_), Some(true)) => made_here(Err(RejectReason::IdConflict { id: key.id.clone() })),
                    // Executed transactions claim their id at their height:
                    // none here means it was refused unsigned or out of time.
                    _ => refused(),
                },
            };
            out.push(rec);
        }
        Ok(out)
    }

    /// [`Ledger::records_of`] for the transfer set `set` (of `items`) of
    /// `block` (of hash `hash`): admitted again (today's keys, as for lone
    /// transactions; ids first used earlier in this block, by
    /// `named_before`, count as used), and if it would run, its items'
    /// records from this block.
    fn set_record_of(
        &self,
        set: &Transaction,
        items: &[Transaction],
        block: &Block,
        hash: Hash32,
        named_before: &std::collections::HashSet<TxKey>,
    ) -> Result<TxRecord, LedgerError> {
        let height = block.height();
        let keys = self.with_state(|s| self.item_keys(&self.book(s), items));
        let earlier = |k: &TxKey| {
            Ok(self
                .tx_record(k)?
                .filter(|r| r.height < height || (r.height == height && named_before.contains(k))))
        };
        let signed = height > self.genesis_tip.0;
        let made_here = |outcome| TxRecord {
            tx_hash: set.content_hash(),
            height,
            block_hash: hash,
            outcome,
        };
        let block_ms = block.header.timestamp_ms;
        // A resubmission of a set that ran before: its first outcome.
        if let sets::Admission::Duplicate(first) = self.admit_set(set, items, block_ms, false, &keys, &earlier)? {
            return Ok(first);
        }
        // Ran here: in time, and its items recorded from this block (not
        // checked against today's keys, which may have rotated since).
        let in_time = !signed || items.iter().all(|i| rules::check_expiry(i, block_ms).is_ok());
        let mut ran_here = in_time && !items.is_empty();
        let mut first = None;
        for item in items {
            let r = match item.key() {
                Some(k) => self.tx_record(&k)?,
                None => None,
            };
            ran_here &= r
                .as_ref()
                .is_some_and(|r| r.height == height && r.block_hash == hash && r.tx_hash == item.content_hash());
            first = first.or(r);
        }
        if let (true, Some(r)) = (ran_here, &first) {
            return Ok(sets::set_record(set.content_hash(), r));
        }
        Ok(match self.admit_set(set, items, block_ms, signed, &keys, &earlier)? {
            sets::Admission::Refused(reason) => made_here(Err(reason)),
            sets::Admission::Duplicate(first) => first,
            // It would run with today's keys but left no records: an
            // item's key changed since, and it was refused unsigned.
            sets::Admission::Run => made_here(Err(RejectReason::Unauthorized {
                signer: items
                    .first()
                    .and_then(Transaction::signer)
                    .unwrap_or(Signer::Account(0)),
            })),
        })
    }

    /// Proof-of-work difficulty every block must meet.
    pub fn difficulty(&self) -> u8 {
        self.difficulty
    }

    /// Checks that a transaction is signed by its signer's key (before it
    /// is proposed: one that passes is not checked again at apply).
    pub fn authorize(&self, tx: &Transaction) -> Result<(), AuthError> {
        self.authorize_many(std::slice::from_ref(tx))
            .pop()
            .unwrap_or(Err(AuthError::NoVerdict))
    }

    /// [`Ledger::authorize`] for many transactions at once (their
    /// signatures checked in batches); one result each, in order.
    pub fn authorize_many(&self, txs: &[Transaction]) -> Vec<Result<(), AuthError>> {
        let keys = self.with_state(|s| self.keys_for(&self.book(s), txs));
        let verdicts = crate::ledger::keys::verify_many_with(self.chain_id, txs, &keys);
        self.checked.remember(
            txs.iter()
                .zip(&verdicts)
                .zip(&keys)
                .filter(|((tx, v), _)| v.is_ok() && tx.signature().is_some())
                .filter_map(|((tx, _), key)| Some(checked::signed_by(tx, (*key)?))),
        );
        verdicts
    }

    /// The applied state as the rules read it.
    pub(crate) fn book<'a>(&'a self, s: &'a LedgerState) -> BookRef<'a> {
        BookRef {
            balances: &s.balances,
            registry: &s.registry,
            genesis: &self.keys,
        }
    }

    /// Each transaction's signer's key in `view` (`None`: no such signer, or
    /// the transaction is unsigned).
    pub(crate) fn keys_for(&self, view: &impl View, txs: &[Transaction]) -> Vec<Option<PublicKey>> {
        txs.iter().map(|tx| tx.signer().and_then(|s| view.key_of(s))).collect()
    }

    /// The verdict on each transaction of `block` that every node reaches
    /// before it applies the block: the blocks genesis defines are the
    /// file's own and unsigned; every later transaction must carry its
    /// signer's signature under `keys` (one per transaction, the keys as
    /// they were before the block). Signatures this node checked under the
    /// same key before proposing them pass without a second check (see
    /// [`checked`]); the rest are checked, big blocks on all cores.
    pub(crate) fn authorize_for_apply(&self, block: &Block, keys: &[Option<PublicKey>]) -> Vec<Result<(), AuthError>> {
        if block.height() <= self.genesis_tip.0 {
            return vec![Ok(()); block.txs.len()];
        }
        let unchecked: Vec<usize> = (0..block.txs.len())
            .filter(|&i| !keys[i].is_some_and(|key| self.checked.take(&checked::signed_by(&block.txs[i], key))))
            .collect();
        if unchecked.len() == block.txs.len() {
            return self.check_signatures(&block.txs, keys);
        }
        let mut out = vec![Ok(()); block.txs.len()];
        let rest: Vec<Transaction> = unchecked.iter().map(|i| block.txs[*i].clone()).collect();
        let rest_keys: Vec<Option<PublicKey>> = unchecked.iter().map(|i| keys[*i]).collect();
        for (i, v) in unchecked.into_iter().zip(self.check_signatures(&rest, &rest_keys)) {
            out[i] = v;
        }
        out
    }

    /// Every signature of `block` checked under `keys`, whatever was
    /// checked before: for audits.
    pub(crate) fn authorize_block(&self, block: &Block, keys: &[Option<PublicKey>]) -> Vec<Result<(), AuthError>> {
        if block.height() <= self.genesis_tip.0 {
            return vec![Ok(()); block.txs.len()];
        }
        self.check_signatures(&block.txs, keys)
    }

    /// `txs`' signatures under `keys`, on all cores when there are many.
    fn check_signatures(&self, txs: &[Transaction], keys: &[Option<PublicKey>]) -> Vec<Result<(), AuthError>> {
        use crate::ledger::keys::verify_many_with;
        const MIN_PER_THREAD: usize = 256;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(txs.len() / MIN_PER_THREAD).max(1);
        if threads == 1 {
            return verify_many_with(self.chain_id, txs, keys);
        }
        let chunk = txs.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = txs
                .chunks(chunk)
                .zip(keys.chunks(chunk))
                .map(|(part, keys)| s.spawn(move || verify_many_with(self.chain_id, part, keys)))
                .collect();
            let mut out = Vec::with_capacity(txs.len());
            for part in parts {
                match part.join() {
                    Ok(verdicts) => out.extend(verdicts),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            out
        })
    }

    /// Genesis's keys (accounts' first keys and the roles').
    pub fn keys(&self) -> &AccountKeys {
        &self.keys
    }

    pub fn chain_id(&self) -> Hash32 {
        self.chain_id
    }

    /// The sum of the balances genesis gave.
    pub fn genesis_total(&self) -> Amount {
        self.genesis_total
    }

    /// True once the node is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Has each block's new sled blob files synced by `files` (see the
    /// field); set once, by the node.
    pub fn sync_blobs_with(&self, files: Arc<crate::storage::sled_sync::SledSync>) {
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

    /// Runs `f` on the applied state under a read lock.
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

    /// The tip block's time (Unix ms): no later block may be earlier.
    pub fn tip_time_ms(&self) -> u64 {
        self.with_state(|s| s.tip_time_ms)
    }

    /// The stored record of transaction `key`: where it committed and its outcome.
    pub fn tx_record(&self, key: &TxKey) -> Result<Option<TxRecord>, LedgerError> {
        match self.tree.get(tx_key(key))? {
            None => Ok(None),
            Some(v) => decode(&v, || format!("tx record {key}")).map(Some),
        }
    }

    /// The records of id `id` among the ids of every signer that used it,
    /// at most `max` of them, by signer.
    pub fn tx_records_of_id(&self, id: &TxId, max: usize) -> Result<Vec<(Signer, TxRecord)>, LedgerError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(tx_id_prefix(id)).take(max) {
            let (k, v) = kv?;
            let signer = tx_key_signer(&k).ok_or_else(|| LedgerError::Corruption {
                height: 0,
                reason: format!("malformed record key of transaction {id}"),
            })?;
            out.push((signer, decode(&v, || format!("tx record {id}"))?));
        }
        Ok(out)
    }

    /// Block `height` as stored, if the chain has it.
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
}

/// Why a signed transaction that claimed no id was refused: its time was
/// out, or else (its signature checked out of time) it was unsigned.
pub(super) fn refusal_claiming_no_id(tx: &Transaction, block_ms: u64) -> RejectReason {
    match rules::check_expiry(tx, block_ms) {
        Err(reason) => reason,
        Ok(()) => RejectReason::Unauthorized {
            signer: tx.signer().unwrap_or(Signer::Account(0)),
        },
    }
}

/// A ledger tree that has a chain but no head was damaged.
fn no_head() -> LedgerError {
    LedgerError::Corruption {
        height: 0,
        reason: "no chain head recorded".into(),
    }
}

/// Refuses a data dir written in another layout than [`FORMAT_VERSION`]'s,
/// and stamps a new one with it before anything else is written there.
fn check_format(db: &sled::Db, tree: &sled::Tree) -> Result<(), LedgerError> {
    let found = match tree.get(KEY_FORMAT)? {
        Some(v) => decode::<u32>(&v, || "m:format".into())?,
        None => {
            let ledger_trees = [CHECKPOINT_TREE, INSTALL_TREE]
                .into_iter()
                .map(|name| db.open_tree(name))
                .collect::<Result<Vec<_>, _>>()?;
            let empty = tree.is_empty() && ledger_trees.iter().all(sled::Tree::is_empty);
            if !empty {
                // Data, but no version: the layout version 1 names (dirs
                // written before versions were recorded), or older.
                return Err(LedgerError::FormatVersion {
                    found: u32::from(is_first_layout(db, tree)?),
                    wanted: FORMAT_VERSION,
                });
            }
            tree.insert(KEY_FORMAT, encode(&FORMAT_VERSION, "format version")?)?;
            db.flush()?;
            FORMAT_VERSION
        }
    };
    if found != FORMAT_VERSION {
        return Err(LedgerError::FormatVersion {
            found,
            wanted: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Whether an unversioned ledger is in the layout version 1 names: data
/// dirs written before versions were recorded already use it (one head,
/// block files, checkpoints in their own tree). Older layouts (a balance key
/// per account, whole blocks in sled, the head in four keys, the Raft log in
/// sled) are not read by this build.
fn is_first_layout(db: &sled::Db, tree: &sled::Tree) -> Result<bool, LedgerError> {
    const OLDER_KEYS: [&[u8]; 4] = [b"m:tip", b"m:applied", b"m:balances", b"m:balance_digest"];
    const OLDER_PREFIXES: [&[u8]; 2] = [PREFIX_ACCOUNT, PREFIX_BLOCK];
    for key in OLDER_KEYS {
        if tree.contains_key(key)? {
            return Ok(false);
        }
    }
    for prefix in OLDER_PREFIXES {
        if tree.scan_prefix(prefix).next().is_some() {
            return Ok(false);
        }
    }
    let sled_log = db.tree_names().iter().any(|n| n.as_ref() == b"raft_log");
    Ok(tree.contains_key(KEY_HEAD)? && !sled_log)
}
