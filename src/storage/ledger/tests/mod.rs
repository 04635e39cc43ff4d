//! Tests of the ledger store, real sled and block files in temp dirs, each
//! file for the step it checks: applying blocks, recovering at open, and
//! the whole-chain checks and bounded reads.

mod apply;
mod holds;
mod recovery;
mod registry;
mod sets;
mod verify;

use crate::ledger::{Block, Genesis, Transaction, TxId};
use crate::raft::{Entry, LogId};
use crate::storage::{Ledger, LedgerStateMachine};
use openraft::{CommittedLeaderId, EntryPayload};
use std::path::Path;
use std::sync::Arc;

pub(super) const GENESIS: &str = r#"{"difficulty":4,"accounts":[{"id":0,"balance":100},{"id":1,"balance":100}]}"#;

/// A ledger and its state machine in `dir`, from genesis `json`.
pub(crate) fn open_with(dir: &Path, json: &str) -> (Arc<Ledger>, LedgerStateMachine) {
    // A reopen waits: sled's background flusher lets go of the file lock
    // shortly after the last handle is dropped, not at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let db = loop {
        match crate::storage::open_db(&dir.join("db")) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() >= deadline => panic!("cannot open the ledger: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    let genesis = Arc::new(Genesis::from_json(&crate::ledger::genesis::with_dev_keys(json)).unwrap());
    let ledger = Ledger::open(
        &db,
        genesis,
        &dir.join("states"),
        &dir.join("snap.bin"),
        &dir.join("blocks"),
    )
    .unwrap();
    let sm = LedgerStateMachine::new(Arc::clone(&ledger), dir.join("snap.bin"));
    (ledger, sm)
}

pub(super) fn open(dir: &Path) -> (Arc<Ledger>, LedgerStateMachine) {
    open_with(dir, GENESIS)
}

/// When the transfers of [`transfer`] expire: well within a day of the
/// blocks of [`next_block`], whose time is 1.
pub(super) const EXPIRES_MS: u64 = 1_000_000;

/// A transfer signed by `from`'s dev key for the chain of [`GENESIS`].
pub(super) fn transfer(id: &str, from: u64, to: u64, amount: u64) -> Transaction {
    let chain = Genesis::from_json(&crate::ledger::genesis::with_dev_keys(GENESIS))
        .unwrap()
        .chain_id();
    crate::ledger::AccountKey::dev(from).transfer(chain, TxId::new(id).unwrap(), to, amount, EXPIRES_MS)
}

/// `tx` with its signature replaced.
pub(super) fn with_signature(mut tx: Transaction, sig: crate::ledger::Signature) -> Transaction {
    if let Transaction::Transfer { signature, .. } | Transaction::BalanceCheck { signature, .. } = &mut tx {
        *signature = sig;
    }
    tx
}

/// The key of id `id` among account `account`'s.
pub(super) fn key(id: &str, account: u64) -> crate::ledger::TxKey {
    crate::ledger::TxKey {
        signer: crate::ledger::Signer::Account(account),
        id: TxId::new(id).unwrap(),
    }
}

pub(super) fn entry(index: u64, block: Block) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(block),
    }
}

pub(super) fn next_block(ledger: &Ledger, txs: Vec<Transaction>) -> Block {
    let (h, tip) = ledger.tip();
    Block::new(ledger.chain_id(), h + 1, tip, 1, 4, txs).mined()
}
