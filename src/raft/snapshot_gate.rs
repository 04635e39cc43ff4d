//! What a member may send of a snapshot, checked before openraft takes it.
//! openraft writes a chunk wherever it says and installs whatever arrived
//! once the last chunk does, and a write or an install that fails stops
//! the node. So chunks are admitted only in order and within a size limit
//! ([`SnapshotChunks`]), this gate keeps a copy of what arrived, and the
//! last chunk is admitted only once the whole snapshot is checked against
//! this node's chain ([`Ledger::check_snapshot`]): a forged snapshot is
//! refused to its sender and the node keeps its state and serves on.

use crate::limits::MAX_SNAPSHOT_BYTES;
use crate::storage::ledger::Ledger;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Admits the chunks of snapshots a member sends (see the module).
pub struct SnapshotGate {
    chunks: tokio::sync::Mutex<SnapshotChunks>,
    /// Where the copy of the snapshot arriving is kept.
    copy: PathBuf,
    ledger: Arc<Ledger>,
}

impl SnapshotGate {
    pub fn new(ledger: Arc<Ledger>, copy: PathBuf) -> SnapshotGate {
        SnapshotGate {
            chunks: tokio::sync::Mutex::default(),
            copy,
            ledger,
        }
    }

    /// Admits the chunk `data` at `offset` of snapshot `id` (the last if
    /// `done`), or says why not.
    pub async fn admit(&self, id: &str, offset: u64, data: &[u8], done: bool) -> Result<(), String> {
        // Held to the end: chunks and checks one at a time, like openraft's.
        let mut chunks = self.chunks.lock().await;
        if !chunks.admit(id, offset, data.len())? {
            return Ok(());
        }
        let (copy, ledger, data) = (self.copy.clone(), Arc::clone(&self.ledger), data.to_vec());
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let io = |e: std::io::Error| format!("cannot keep a copy of it in {}: {e}", copy.display());
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(offset == 0)
                .open(&copy)
                .map_err(io)?;
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            // Written as openraft writes its own: a chunk sent again
            // overwrites what it covers.
            f.write_all(&data).map_err(io)?;
            drop(f);
            if done {
                ledger.check_snapshot(&copy).map_err(|e| e.to_string())?;
                let _ = std::fs::remove_file(&copy);
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("its check did not finish: {e}"))?
    }
}

/// Where the next chunk of a snapshot may go: at or before the end of what
/// arrived of its snapshot, and within [`MAX_SNAPSHOT_BYTES`].
#[derive(Debug, Default)]
pub struct SnapshotChunks {
    id: String,
    received: u64,
}

impl SnapshotChunks {
    /// Admits a chunk of `len` bytes at `offset` of snapshot `id`, or says
    /// why not; false if openraft refuses it itself and writes nothing.
    pub fn admit(&mut self, id: &str, offset: u64, len: usize) -> Result<bool, String> {
        let end = offset
            .checked_add(len as u64)
            .filter(|end| *end <= MAX_SNAPSHOT_BYTES)
            .ok_or_else(|| {
                format!("snapshot chunk at {offset} (+{len} bytes) passes the limit of {MAX_SNAPSHOT_BYTES} bytes")
            })?;
        if offset == 0 {
            // A new stream, or the current one sent again from the start.
            *self = SnapshotChunks {
                id: id.to_string(),
                received: end,
            };
            return Ok(true);
        }
        if id != self.id {
            // openraft refuses it itself (it expects offset 0) and writes nothing.
            return Ok(false);
        }
        if offset > self.received {
            return Err(format!(
                "snapshot chunk at {offset} leaves a hole: {} bytes of snapshot {id} arrived",
                self.received
            ));
        }
        self.received = self.received.max(end);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_chunks_come_in_order_within_the_limit() {
        let mut c = SnapshotChunks::default();
        assert_eq!(c.admit("s1", 0, 100), Ok(true));
        assert!(c.admit("s1", 100, 100).is_ok());
        // A chunk sent again after a lost answer overwrites, it does not grow the file.
        assert!(c.admit("s1", 100, 100).is_ok());
        let hole = c.admit("s1", 1 << 39, 10).unwrap_err();
        assert!(hole.contains("leaves a hole: 200 bytes"), "{hole}");
        assert!(c.admit("s1", u64::MAX - 5, 10).unwrap_err().contains("limit"));
        assert!(c.admit("s1", 0, 0).is_ok());
        assert_eq!(c.admit("s2", 0, 10), Ok(true), "a new snapshot starts over");
        assert_eq!(c.admit("s3", 10, 10), Ok(false), "openraft refuses it itself");
        assert!(c.admit("s2", 200, 10).is_err());
    }
}
