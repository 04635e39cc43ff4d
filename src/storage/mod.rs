//! Persistence: the Raft log store, the ledger state machine, and the JSON
//! views derived from it. The log's entries are in segment files of their
//! own ([`raft_wal`]); one sled database per node holds the vote (tree
//! `raft_meta`) and the ledger (tree `ledger`); block bodies are in segment
//! files beside it ([`block_file`]).

pub mod block_file;
pub mod ledger;
pub mod log_store;
pub mod raft_wal;
pub mod sled_sync;
pub mod snapshot;
pub mod state_machine;
pub mod views;

pub use ledger::{Ledger, LedgerError, TxLookup, VerifyReport};
pub use log_store::{LogStore, LogStoreError};
pub use state_machine::LedgerStateMachine;

use std::path::{Path, PathBuf};

/// Where a node keeps its files, all under one data dir.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// sled database.
    pub db: PathBuf,
    /// The Raft log's entries ([`raft_wal`]).
    pub raft_log: PathBuf,
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
            raft_log: data_dir.join(format!("server_{id}_raftlog")),
            blocks: data_dir.join(format!("server_{id}_blocks")),
            states: data_dir.join(format!("server_{id}_states")),
            snapshot: data_dir.join(format!("server_{id}_snapshot.bin")),
            log: data_dir.join(format!("server_{id}.log")),
        }
    }
}

/// sled's log segment size for a new database (sled's default is 512 KiB).
///
/// Measured with the 3-node fill of `deploy/measure-history.sh` (batches of
/// 1,024, 4 clients, 1.25 M transfers): with 512 KiB segments the nodes'
/// peak RSS was 167-215 MB and sled's dirs 557-601 MB; with 128 KiB,
/// 149-176 MB and 266-305 MB, throughput the same. A standalone sled test
/// (a 300 KB log entry plus 1,024 random 90-byte inserts per round, flushed)
/// reached 1,064 MB at 512 KiB, 334 MB at 256 KiB, 154 MB at 128 KiB after
/// 900 rounds: sled holds memory per segment it writes.
const NEW_DB_SEGMENT_BYTES: usize = 128 * 1024;

/// The segment size a database was created with: sled refuses to open one
/// with another (it is read back from the `conf` file sled writes).
fn stored_segment_bytes(path: &Path) -> Option<usize> {
    // Text lines, then a binary checksum.
    let conf = std::fs::read(path.join("conf")).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size:")?.trim().parse().ok())
}

/// Opens the sled database. The periodic background flush stays on, but
/// durability never depends on it: the log store flushes explicitly.
pub fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(path)
        .cache_capacity(16 * 1024 * 1024)
        .segment_size(stored_segment_bytes(path).unwrap_or(NEW_DB_SEGMENT_BYTES))
        .open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_keeps_the_segment_size_it_was_created_with() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        // A data dir from before: sled's default segment size.
        let db = sled::Config::new().path(&old).segment_size(512 * 1024).open().unwrap();
        db.insert(b"k", b"v").unwrap();
        db.flush().unwrap();
        drop(db);
        let reopen = |p: &Path| loop {
            // sled's flusher thread lets go of the lock shortly after the drop.
            match open_db(p) {
                Ok(db) => break db,
                Err(sled::Error::Io(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(reopen(&old).get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(stored_segment_bytes(&old), Some(512 * 1024));
        let new = dir.path().join("new");
        drop(reopen(&new));
        assert_eq!(stored_segment_bytes(&new), Some(NEW_DB_SEGMENT_BYTES));
    }
}
