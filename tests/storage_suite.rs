//! openraft's own conformance suite over the sled log store and the ledger
//! state machine.

use bank_ledger::ledger::genesis::GenesisFile;
use bank_ledger::ledger::Genesis;
use bank_ledger::raft::{StorageError, TypeConfig};
use bank_ledger::storage::{open_db, Ledger, LedgerStateMachine, LogStore, NodePaths};
use openraft::testing::{StoreBuilder, Suite};
use std::sync::Arc;
use tempfile::TempDir;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, LedgerStateMachine), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let paths = NodePaths::new(dir.path(), 1);
        let db = open_db(&paths.db).expect("open sled");
        let genesis = Genesis::build(GenesisFile::dev(4, &[(0, 100), (1, 100)], &[(0, 1, 5)])).expect("genesis");
        let ledger =
            Ledger::open(&db, Arc::new(genesis), &paths.states, &paths.snapshot, &paths.blocks).expect("open ledger");
        let log = LogStore::open(&db, &paths.db).expect("open log store");
        Ok((dir, log, LedgerStateMachine::new(ledger, paths.snapshot)))
    }
}

#[test]
fn sled_store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
