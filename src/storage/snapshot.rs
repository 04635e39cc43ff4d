//! Snapshots of the ledger as files, streamed: building, sending and
//! installing one costs memory in proportion to the number of accounts,
//! never to the length of the chain.
//!
//! File layout: `BANKSNP1`, the snapshot's metadata (u32 length + bincode),
//! then `(u32 key length, key, u32 value length, value)` records, an end mark
//! (`u32::MAX`), and the SHA-256 of everything before it. The checksum is
//! verified before an install touches the ledger.
//!
//! Consistency without stopping the world: a snapshot is cut at a height H
//! between two applies (balances copied, O(accounts)); blocks up to H and
//! transaction records of height <= H never change afterwards, so they are
//! streamed (blocks from the block files, records from the previous snapshot
//! plus those of later blocks) while the node goes on applying.

use crate::codec;
use crate::raft::SnapshotMeta;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"BANKSNP1";
const END: u32 = u32::MAX;
use crate::limits::MAX_SNAPSHOT_RECORD_BYTES as MAX_RECORD_BYTES;

/// One key and value of the ledger tree.
pub type Record = (Vec<u8>, Vec<u8>);

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("snapshot file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

/// Writes a snapshot file record by record, hashing as it goes.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    hash: Sha256,
    path: String,
}

impl SnapshotWriter {
    pub fn create(path: &Path, meta: &SnapshotMeta) -> Result<SnapshotWriter, SnapshotError> {
        let p = path.display().to_string();
        let file = File::create(path).map_err(|source| SnapshotError::Io {
            path: p.clone(),
            source,
        })?;
        let mut w = SnapshotWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            path: p,
        };
        w.put(MAGIC)?;
        let meta = codec::encode(meta).map_err(|e| w.corrupt(e.to_string()))?;
        w.put(&(meta.len() as u32).to_be_bytes())?;
        w.put(&meta)?;
        Ok(w)
    }

    fn corrupt(&self, reason: String) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.hash.update(bytes);
        self.out.write_all(bytes).map_err(|source| SnapshotError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Adds one key and value.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        if key.len() as u64 >= u64::from(MAX_RECORD_BYTES) || value.len() as u64 >= u64::from(MAX_RECORD_BYTES) {
            return Err(self.corrupt(format!("record of {} bytes is too large", key.len() + value.len())));
        }
        self.put(&(key.len() as u32).to_be_bytes())?;
        self.put(key)?;
        self.put(&(value.len() as u32).to_be_bytes())?;
        self.put(value)
    }

    /// Ends the file with the end mark and checksum, and syncs it to disk.
    pub fn finish(mut self) -> Result<(), SnapshotError> {
        self.put(&END.to_be_bytes())?;
        let digest = self.hash.clone().finalize();
        let io = |source| SnapshotError::Io {
            path: self.path.clone(),
            source,
        };
        self.out.write_all(&digest).map_err(io)?;
        let file = self.out.into_inner().map_err(|e| SnapshotError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| SnapshotError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads a snapshot file: its metadata, then its records in order.
pub struct SnapshotReader {
    input: BufReader<File>,
    hash: Sha256,
    path: String,
    pub meta: SnapshotMeta,
    /// The file's checksum, once the last record was read and it verified.
    checksum: Option<[u8; 32]>,
}

impl SnapshotReader {
    pub fn open(path: &Path) -> Result<SnapshotReader, SnapshotError> {
        let p = path.display().to_string();
        let file = File::open(path).map_err(|source| SnapshotError::Io {
            path: p.clone(),
            source,
        })?;
        let mut r = SnapshotReader {
            input: BufReader::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            path: p,
            meta: SnapshotMeta::default(),
            checksum: None,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic)?;
        if &magic != MAGIC {
            return Err(r.corrupt("not a ledger snapshot (bad magic)".into()));
        }
        let len = r.u32()?;
        if len > MAX_RECORD_BYTES {
            return Err(r.corrupt(format!("metadata of {len} bytes")));
        }
        let mut meta = vec![0u8; len as usize];
        r.take(&mut meta)?;
        r.meta = codec::decode(&meta).map_err(|e| r.corrupt(format!("metadata: {e}")))?;
        Ok(r)
    }

    /// The file's checksum: set once [`SnapshotReader::next_record`] has
    /// read the end and found the checksum right. It names the file's content.
    pub fn checksum(&self) -> Option<[u8; 32]> {
        self.checksum
    }

    fn corrupt(&self, reason: String) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.corrupt("truncated".into()),
            _ => SnapshotError::Io {
                path: self.path.clone(),
                source: e,
            },
        })?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    /// The next record, or `None` after the last one (checksum verified).
    pub fn next_record(&mut self) -> Result<Option<Record>, SnapshotError> {
        let klen = self.u32()?;
        if klen == END {
            let expected = self.hash.clone().finalize();
            let mut got = [0u8; 32];
            self.input
                .read_exact(&mut got)
                .map_err(|_| self.corrupt("missing checksum".into()))?;
            if got[..] != expected[..] {
                return Err(self.corrupt("checksum mismatch".into()));
            }
            self.checksum = Some(got);
            return Ok(None);
        }
        if klen > MAX_RECORD_BYTES {
            return Err(self.corrupt(format!("key of {klen} bytes")));
        }
        let mut key = vec![0u8; klen as usize];
        self.take(&mut key)?;
        let vlen = self.u32()?;
        if vlen > MAX_RECORD_BYTES {
            return Err(self.corrupt(format!("value of {vlen} bytes")));
        }
        let mut value = vec![0u8; vlen as usize];
        self.take(&mut value)?;
        Ok(Some((key, value)))
    }
}
