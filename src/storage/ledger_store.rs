//! The ledger state machine: blocks, balances and transaction records in sled.
//!
//! Apply contract: every committed entry is applied in log order; a block is
//! verified (chain, link, merkle root, proof of work: one header hash, never
//! re-mined) and then its transactions run through [`rules::apply`]. The block,
//! the changed balances, the new transaction records and `last_applied` go to
//! sled in one atomic batch. State-machine writes need no flush of their own:
//! the log is durable, and after a crash openraft re-applies from
//! `last_applied`.

use super::views::{self, ChainView};
use crate::codec;
use crate::ledger::rules::{self, Overlay};
use crate::ledger::{AccountId, Amount, Block, Genesis, Hash32, RejectReason, TxId};
use crate::raft::{BlockOutcome, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TxRecord, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

const KEY_GENESIS: &[u8] = b"m:genesis";
const KEY_APPLIED: &[u8] = b"m:applied";
const KEY_MEMBERSHIP: &[u8] = b"m:membership";
const KEY_TIP: &[u8] = b"m:tip";
/// Node-local: length of this node's chain.jsonl; never part of a snapshot.
const KEY_VIEW_LEN: &[u8] = b"m:view_len";
const PREFIX_BLOCK: &[u8] = b"b:";
const PREFIX_ACCOUNT: &[u8] = b"a:";
const PREFIX_TX: &[u8] = b"t:";

/// Raw keys and values of the ledger tree: a snapshot's contents.
type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

fn block_key(height: u64) -> Vec<u8> {
    [PREFIX_BLOCK, &height.to_be_bytes()].concat()
}
fn account_key(account: AccountId) -> Vec<u8> {
    [PREFIX_ACCOUNT, &account.to_be_bytes()].concat()
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
    /// A view or snapshot file could not be written.
    #[error("file {path}: {source}")]
    Io { path: String, source: std::io::Error },
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
}

/// A node's ledger: shared by the state machine (writer) and the API (readers).
pub struct Ledger {
    db: sled::Db,
    tree: sled::Tree,
    genesis: Arc<Genesis>,
    state: RwLock<LedgerState>,
    chain_view: Mutex<Option<ChainView>>,
    states_dir: PathBuf,
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
    pub fn open(db: &sled::Db, genesis: Arc<Genesis>, states_dir: &Path) -> Result<Arc<Ledger>, LedgerError> {
        let tree = db.open_tree("ledger")?;
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
        };
        let ledger = Ledger {
            db: db.clone(),
            tree,
            genesis,
            state: RwLock::new(empty_state),
            chain_view: Mutex::new(None),
            states_dir: states_dir.to_path_buf(),
        };
        if fresh {
            ledger.write_genesis()?;
        }
        ledger.reload()?;
        ledger.reconcile_chain_view()?;
        Ok(Arc::new(ledger))
    }

    /// Writes the genesis blocks, derived from the file exactly as on every node.
    fn write_genesis(&self) -> Result<(), LedgerError> {
        let mut balances = BTreeMap::new();
        let mut batch = sled::Batch::default();
        for block in &self.genesis.blocks {
            let hash = block.hash();
            let exec = self.execute(&balances, block, hash, block.height() == 0)?;
            if let Some(bad) = exec.records.iter().find(|r| r.outcome.is_err()) {
                return Err(LedgerError::Corruption {
                    height: block.height(),
                    reason: format!("genesis transaction fails: {:?}", bad.outcome),
                });
            }
            balances.extend(exec.changes.iter().map(|(a, b)| (*a, *b)));
            Self::stage_block(&mut batch, block, hash, &exec)?;
        }
        let last = self.genesis.blocks.last().map(|b| (b.height(), b.hash()));
        batch.insert(KEY_TIP, encode(&last, "tip")?);
        batch.insert(KEY_GENESIS, encode(&self.genesis.chain_id(), "genesis")?);
        // The chain view is rebuilt from sled right after.
        batch.insert(KEY_VIEW_LEN, encode(&u64::MAX, "view length")?);
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Reloads the in-memory mirror from sled.
    fn reload(&self) -> Result<(), LedgerError> {
        let mut balances = BTreeMap::new();
        for kv in self.tree.scan_prefix(PREFIX_ACCOUNT) {
            let (k, v) = kv?;
            let account = u64::from_be_bytes(k[2..].try_into().map_err(|_| LedgerError::Corruption {
                height: 0,
                reason: "malformed account key".into(),
            })?);
            balances.insert(account, decode::<Amount>(&v, || format!("balance of {account}"))?);
        }
        let tip: Option<(u64, Hash32)> = match self.tree.get(KEY_TIP)? {
            Some(v) => decode(&v, || "m:tip".into())?,
            None => None,
        };
        let (tip_height, tip_hash) = tip.ok_or(LedgerError::Corruption {
            height: 0,
            reason: "no chain tip recorded".into(),
        })?;
        let last_applied = match self.tree.get(KEY_APPLIED)? {
            Some(v) => decode(&v, || "m:applied".into())?,
            None => None,
        };
        let membership = match self.tree.get(KEY_MEMBERSHIP)? {
            Some(v) => decode(&v, || "m:membership".into())?,
            None => StoredMembership::default(),
        };
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = LedgerState {
            balances,
            tip_height,
            tip_hash,
            last_applied,
            membership,
        };
        Ok(())
    }

    /// Brings `chain.jsonl` in line with sled after a crash: cut back lines
    /// sled never committed, or rebuild it if lines were lost.
    fn reconcile_chain_view(&self) -> Result<(), LedgerError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| LedgerError::Io { path, source }
        };
        let expected: u64 = match self.tree.get(KEY_VIEW_LEN)? {
            Some(v) => decode(&v, || "m:view_len".into())?,
            None => u64::MAX,
        };
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
                for kv in self.tree.scan_prefix(PREFIX_BLOCK) {
                    let (k, v) = kv?;
                    let block: Block = decode(&v, || format!("block key {k:?}"))?;
                    let records = self.records_of(&block)?;
                    let line = views::block_line(&block, block.hash(), &records);
                    view.append(&line).map_err(io(view.path()))?;
                }
                self.tree.insert(KEY_VIEW_LEN, encode(&view.len(), "view length")?)?;
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
                tx_hash: tx.hash(),
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
            let tx_hash = tx.hash();
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
                        None => self.tx_record(id)?,
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

    fn stage_block(batch: &mut sled::Batch, block: &Block, _hash: Hash32, exec: &Execution) -> Result<(), LedgerError> {
        batch.insert(block_key(block.height()), encode(block, "block")?);
        for (account, balance) in &exec.changes {
            batch.insert(account_key(*account), encode(balance, "balance")?);
        }
        for (id, rec) in &exec.new_records {
            batch.insert(tx_key(id), encode(rec, "tx record")?);
        }
        Ok(())
    }

    /// Applies one committed block at `log_id`.
    fn apply_block(&self, block: &Block, log_id: LogId) -> Result<BlockOutcome, LedgerError> {
        let (tip_height, tip_hash) = {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            (s.tip_height, s.tip_hash)
        };
        let mut batch = sled::Batch::default();
        batch.insert(KEY_APPLIED, encode(&Some(log_id), "applied")?);
        let hash = match block.verify_extends(self.genesis.chain_id(), self.genesis.difficulty(), tip_height, tip_hash)
        {
            Ok(hash) => hash,
            Err(e) => {
                // Deterministic on every node: same tip, same block, same verdict.
                tracing::warn!("refused block at log index {}: {e}", log_id.index);
                self.tree.apply_batch(batch)?;
                self.state.write().unwrap_or_else(|p| p.into_inner()).last_applied = Some(log_id);
                return Ok(BlockOutcome::Refused { reason: e.to_string() });
            }
        };
        let exec = {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            self.execute(&s.balances, block, hash, false)?
        };
        Self::stage_block(&mut batch, block, hash, &exec)?;
        batch.insert(KEY_TIP, encode(&Some((block.height(), hash)), "tip")?);

        let line = views::block_line(block, hash, &exec.records);
        let mut view_guard = self.chain_view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(view) = view_guard.as_ref() {
            batch.insert(KEY_VIEW_LEN, encode(&(view.len() + line.len() as u64), "view length")?);
        }
        self.tree.apply_batch(batch)?;
        {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            s.balances.extend(exec.changes.iter().map(|(a, b)| (*a, *b)));
            s.tip_height = block.height();
            s.tip_hash = hash;
            s.last_applied = Some(log_id);
        }
        if let Some(view) = view_guard.as_mut() {
            if let Err(e) = view.append(&line) {
                // The view is rebuilt from sled at next start; keep serving.
                tracing::warn!("cannot append to {}: {e}", view.path().display());
            }
        }
        drop(view_guard);
        let committed = exec
            .records
            .iter()
            .filter(|r| r.height == block.height() && r.outcome.is_ok())
            .count();
        tracing::info!(
            "committed block height={} txs={} ok={committed} hash={hash}",
            block.height(),
            block.txs.len()
        );
        Ok(BlockOutcome::Committed {
            height: block.height(),
            hash,
            records: exec.records,
        })
    }

    fn apply_marker(&self, log_id: LogId, membership: Option<StoredMembership>) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        batch.insert(KEY_APPLIED, encode(&Some(log_id), "applied")?);
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

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn chain_id(&self) -> Hash32 {
        self.genesis.chain_id()
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

    pub fn tx_record(&self, id: &TxId) -> Result<Option<TxRecord>, LedgerError> {
        match self.tree.get(tx_key(id))? {
            None => Ok(None),
            Some(v) => decode(&v, || format!("tx record {id}")).map(Some),
        }
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, LedgerError> {
        match self.tree.get(block_key(height))? {
            None => Ok(None),
            Some(v) => decode(&v, || format!("block {height}")).map(Some),
        }
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

    // ---- snapshots ----

    /// Every replicated key and value: the whole ledger, for a snapshot.
    fn export(&self) -> Result<KvPairs, LedgerError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            if &*k != KEY_VIEW_LEN {
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Replaces the whole ledger with a snapshot's contents, atomically.
    fn import(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), LedgerError> {
        let kvs: KvPairs = decode(data, || "snapshot".into())?;
        let their_genesis = kvs
            .iter()
            .find(|(k, _)| k == KEY_GENESIS)
            .map(|(_, v)| decode::<Hash32>(v, || "snapshot genesis".into()))
            .transpose()?;
        if their_genesis != Some(self.chain_id()) {
            return Err(LedgerError::GenesisMismatch {
                stored: their_genesis.unwrap_or(Hash32::ZERO),
                file: self.chain_id(),
            });
        }
        let mut batch = sled::Batch::default();
        for kv in self.tree.iter() {
            let (k, _) = kv?;
            batch.remove(k);
        }
        for (k, v) in kvs {
            batch.insert(k, v);
        }
        batch.insert(KEY_APPLIED, encode(&meta.last_log_id, "applied")?);
        batch.insert(KEY_MEMBERSHIP, encode(&meta.last_membership, "membership")?);
        batch.insert(KEY_VIEW_LEN, encode(&u64::MAX, "view length")?);
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        self.reload()?;
        self.reconcile_chain_view()
    }
}

fn sm_err(verb: ErrorVerb, e: LedgerError) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

/// Writes a snapshot file atomically: its metadata and the exported ledger.
fn write_snapshot_file(path: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
    let bytes = codec::encode(&(meta, data)).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    std::fs::rename(&tmp, path).map_err(|e| snap_err(ErrorVerb::Write, e))
}

/// The openraft face of [`Ledger`].
pub struct LedgerStateMachine {
    ledger: Arc<Ledger>,
    snapshot_path: PathBuf,
}

impl LedgerStateMachine {
    pub fn new(ledger: Arc<Ledger>, snapshot_path: PathBuf) -> LedgerStateMachine {
        LedgerStateMachine { ledger, snapshot_path }
    }
}

/// Holds a consistent copy of the ledger, taken between two applies.
pub struct LedgerSnapshotBuilder {
    meta: SnapshotMeta,
    data: Result<Vec<u8>, String>,
    snapshot_path: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = self
            .data
            .clone()
            .map_err(|e| snap_err(ErrorVerb::Read, std::io::Error::other(e)))?;
        write_snapshot_file(&self.snapshot_path, &self.meta, &data)?;
        tracing::info!(
            "built snapshot up to log index {:?} ({} bytes)",
            self.meta.last_log_id.map(|l| l.index),
            data.len()
        );
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.ledger.with_state(|s| (s.last_applied, s.membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BlockOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let outcome = match &entry.payload {
                EntryPayload::Blank => self.ledger.apply_marker(log_id, None).map(|_| BlockOutcome::NoBlock),
                EntryPayload::Membership(m) => self
                    .ledger
                    .apply_marker(log_id, Some(StoredMembership::new(Some(log_id), m.clone())))
                    .map(|_| BlockOutcome::NoBlock),
                EntryPayload::Normal(block) => self.ledger.apply_block(block, log_id),
            };
            out.push(outcome.map_err(|e| sm_err(ErrorVerb::Write, e))?);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies: the export is a consistent cut.
        let (last_log_id, last_membership) = self.ledger.with_state(|s| (s.last_applied, s.membership.clone()));
        let snapshot_id = format!(
            "{}-{}",
            last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
            last_log_id.map(|l| l.index).unwrap_or(0)
        );
        let data = self
            .ledger
            .export()
            .and_then(|kvs| encode(&kvs, "snapshot"))
            .map_err(|e| e.to_string());
        LedgerSnapshotBuilder {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            data,
            snapshot_path: self.snapshot_path.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.ledger
            .import(meta, &data)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        write_snapshot_file(&self.snapshot_path, meta, &data)?;
        let (height, hash) = self.ledger.tip();
        tracing::info!(
            "installed snapshot up to log index {:?}: height={height} tip={hash}",
            meta.last_log_id.map(|l| l.index)
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let bytes = match std::fs::read(&self.snapshot_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(snap_err(ErrorVerb::Read, e)),
        };
        let (meta, data): (SnapshotMeta, Vec<u8>) = codec::decode(&bytes).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Transaction, TxId};
    use openraft::{CommittedLeaderId, EntryPayload};

    const GENESIS: &str = r#"{"difficulty":4,"accounts":[{"id":0,"balance":100},{"id":1,"balance":100}]}"#;

    fn open(dir: &Path) -> (Arc<Ledger>, LedgerStateMachine) {
        let db = crate::storage::open_db(&dir.join("db")).unwrap();
        let ledger = Ledger::open(&db, Arc::new(Genesis::from_json(GENESIS).unwrap()), &dir.join("states")).unwrap();
        let sm = LedgerStateMachine::new(Arc::clone(&ledger), dir.join("snap.bin"));
        (ledger, sm)
    }

    fn transfer(id: &str, from: u64, to: u64, amount: u64) -> Transaction {
        Transaction::Transfer {
            id: TxId::new(id).unwrap(),
            from,
            to,
            amount,
        }
    }

    fn entry(index: u64, block: Block) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(block),
        }
    }

    fn next_block(ledger: &Ledger, txs: Vec<Transaction>) -> Block {
        let (h, tip) = ledger.tip();
        Block::new(ledger.chain_id(), h + 1, tip, 1, 4, txs).mined()
    }

    #[tokio::test]
    async fn a_block_that_no_longer_links_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        // Two leaders built on the same tip: the second to commit is stale.
        let a = next_block(&ledger, vec![transfer("a", 0, 1, 10)]);
        let b = next_block(&ledger, vec![transfer("b", 0, 1, 20)]);
        let out = sm.apply(vec![entry(1, a), entry(2, b)]).await.unwrap();
        assert!(matches!(out[0], BlockOutcome::Committed { height: 1, .. }));
        assert!(matches!(&out[1], BlockOutcome::Refused { reason } if reason.contains("expected height 2")));
        assert_eq!(ledger.balance(0), Some((90, 1)));
        assert_eq!(ledger.tx_record(&TxId::new("b").unwrap()).unwrap(), None);
        assert_eq!(ledger.with_state(|s| s.last_applied.map(|l| l.index)), Some(2));
    }

    #[tokio::test]
    async fn a_transaction_in_two_blocks_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open(dir.path());
        let b1 = next_block(&ledger, vec![transfer("t1", 0, 1, 10)]);
        sm.apply(vec![entry(1, b1)]).await.unwrap();
        let b2 = next_block(&ledger, vec![transfer("t1", 0, 1, 10), transfer("t1", 0, 1, 99)]);
        let out = sm.apply(vec![entry(2, b2)]).await.unwrap();
        let BlockOutcome::Committed { records, .. } = &out[0] else {
            panic!("block 2 must commit: {out:?}");
        };
        assert_eq!(records[0].height, 1, "the duplicate reports its first block");
        assert!(matches!(records[1].outcome, Err(RejectReason::IdConflict { .. })));
        assert_eq!(ledger.balance(0), Some((90, 2)));
    }

    #[tokio::test]
    async fn state_and_views_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (ledger, mut sm) = open(dir.path());
            let b1 = next_block(&ledger, vec![transfer("t1", 1, 0, 30)]);
            sm.apply(vec![entry(1, b1)]).await.unwrap();
        }
        // Simulate a crash that left a line sled never committed.
        let chain = dir.path().join("states").join(views::CHAIN_FILE);
        let good = std::fs::read_to_string(&chain).unwrap();
        std::fs::write(&chain, format!("{good}{{\"torn\":")).unwrap();
        let (ledger, _) = open(dir.path());
        assert_eq!(ledger.balance(1), Some((70, 1)));
        assert_eq!(std::fs::read_to_string(&chain).unwrap(), good);
        // Lines lost instead: the view is rebuilt from sled.
        drop(ledger);
        std::fs::write(&chain, "").unwrap();
        let (ledger, _) = open(dir.path());
        assert_eq!(std::fs::read_to_string(&chain).unwrap(), good);
        assert_eq!(ledger.tip().0, 1);
    }
}
