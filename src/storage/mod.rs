//! Persistence in sled: the Raft log store, the ledger state machine, and the
//! JSON views derived from it. One sled database per node holds both the log
//! (trees `raft_log`, `raft_meta`) and the ledger (tree `ledger`); block
//! bodies are in segment files beside it ([`block_file`]).

pub mod block_file;
pub mod ledger_store;
pub mod log_store;
pub mod snapshot;
pub mod state_machine;
pub mod views;

pub use ledger_store::{Ledger, LedgerError, VerifyReport};
pub use log_store::LogStore;
pub use state_machine::LedgerStateMachine;

use std::path::{Path, PathBuf};

/// Where a node keeps its files, all under one data dir.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// sled database.
    pub db: PathBuf,
    /// Block bodies ([`block_file`]); sled indexes them.
    pub blocks: PathBuf,
    /// JSON views for people: `server_<id>_states/`.
    pub states: PathBuf,
    /// The last snapshot built or installed.
    pub snapshot: PathBuf,
    /// The node's log file.
    pub log: PathBuf,
}

impl NodePaths {
    pub fn new(data_dir: &Path, id: u64) -> NodePaths {
        NodePaths {
            db: data_dir.join(format!("server_{id}_db")),
            blocks: data_dir.join(format!("server_{id}_blocks")),
            states: data_dir.join(format!("server_{id}_states")),
            snapshot: data_dir.join(format!("server_{id}_snapshot.bin")),
            log: data_dir.join(format!("server_{id}.log")),
        }
    }
}

/// Opens the sled database. The periodic background flush stays on, but
/// durability never depends on it: the log store flushes explicitly.
pub fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new().path(path).cache_capacity(16 * 1024 * 1024).open()
}
