//! What it takes to make a sled 0.34 flush durable.
//!
//! Read in sled's source and seen with strace: `Db::flush` writes its log
//! file with `pwrite` + `sync_file_range` and returns; its `fsync` runs only
//! in the 500 ms background flusher. That survives a killed process but not
//! a power loss on a disk with a volatile write cache (it neither asks the
//! disk to flush its cache nor records the file's new length). And a value
//! bigger than a quarter of a segment (~32 KB here, so any Raft entry of more
//! than a few hundred transfers) goes to a file of its own under `blobs/`,
//! which sled writes and never syncs at all, nor the directory naming it.
//! [`SledSync::sync`], run after `Db::flush`, syncs both.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct SledSync {
    /// sled's log file: sled keeps it at `<dir>/db` and never replaces it.
    db: File,
    blobs: PathBuf,
    /// Blob files synced whole (sled never rewrites one), pruned to those
    /// still in the directory: bounded by what sled keeps.
    synced: Mutex<HashSet<OsString>>,
}

impl SledSync {
    /// For the sled database at `dir`.
    pub fn open(dir: &Path) -> io::Result<SledSync> {
        Ok(SledSync {
            // Any descriptor of a file syncs it.
            db: File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            synced: Mutex::new(HashSet::new()),
        })
    }

    /// Makes what the last `Db::flush` wrote durable. Call it after the
    /// flush: a flush returns only when every write up to it is complete,
    /// blobs included, so a blob still being written belongs to a later
    /// write and is left to a later sync. Blobs go first, so `db` never
    /// durably points at a blob that is not.
    pub fn sync(&self) -> io::Result<()> {
        self.sync_blobs()?;
        self.db.sync_data()
    }

    /// Names of the blob files synced so far.
    #[cfg(test)]
    pub(crate) fn synced_names(&self) -> HashSet<OsString> {
        self.synced.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Syncs the blob files sled finished since the last call, and the
    /// directory naming them. sled writes a blob in the thread that inserts
    /// the value (or rewrites the page holding it), before the pointer to it
    /// enters its log buffer; callers that wrote to sled call this right
    /// after, so the blob is durable before sled's own flushes can make the
    /// pointer so (a window of that one call remains, as sled offers no
    /// hook between its blob write and its log write).
    pub fn sync_blobs(&self) -> io::Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = HashSet::with_capacity(synced.len());
        let mut named = false;
        let listing = match std::fs::read_dir(&self.blobs) {
            Ok(listing) => Some(listing),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        for entry in listing.into_iter().flatten() {
            let name = entry?.file_name();
            if synced.contains(&name) {
                present.insert(name);
                continue;
            }
            match sync_if_whole(&self.blobs.join(&name)) {
                Ok(true) => {
                    named = true;
                    present.insert(name);
                }
                Ok(false) => {}
                // Collected by sled since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        *synced = present;
        if named {
            File::open(&self.blobs)?.sync_all()?;
        }
        Ok(())
    }
}

/// Syncs the blob file at `path` if sled has finished writing it: sled
/// writes `crc32 (little-endian) | kind | data`, the CRC over kind and data.
fn sync_if_whole(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let whole = match bytes.split_first_chunk::<4>() {
        Some((crc, rest)) => !rest.is_empty() && crc32fast::hash(rest) == u32::from_le_bytes(*crc),
        None => false,
    };
    if whole {
        file.sync_data()?;
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(s: &SledSync) -> HashSet<OsString> {
        s.synced.lock().unwrap().clone()
    }

    #[test]
    fn a_value_sled_puts_in_a_blob_file_is_synced_with_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::open_db(dir.path()).unwrap();
        let sync = SledSync::open(dir.path()).unwrap();
        db.insert(b"small", vec![1u8; 100]).unwrap();
        db.flush().unwrap();
        sync.sync().unwrap();
        assert!(synced(&sync).is_empty(), "a small value is not a blob");

        // Over a quarter of the 128 KiB segment: sled writes a blob file.
        db.insert(b"large", vec![7u8; 200_000]).unwrap();
        db.flush().unwrap();
        sync.sync().unwrap();
        let blobs: HashSet<OsString> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!blobs.is_empty(), "sled wrote no blob file for a 200 KB value");
        assert_eq!(synced(&sync), blobs, "every blob file is synced");
    }

    #[test]
    fn a_blob_still_being_written_waits_for_a_later_sync() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let sync = SledSync::open(dir.path()).unwrap();
        let body = [&[3u8][..], &[9u8; 1000][..]].concat();
        let mut blob = crc32fast::hash(&body).to_le_bytes().to_vec();
        blob.extend_from_slice(&body[..500]);
        let path = dir.path().join("blobs").join("4096");
        std::fs::write(&path, &blob).unwrap();
        sync.sync().unwrap();
        assert!(synced(&sync).is_empty(), "a half-written blob counted as synced");

        blob.extend_from_slice(&body[500..]);
        std::fs::write(&path, &blob).unwrap();
        sync.sync().unwrap();
        assert_eq!(synced(&sync), HashSet::from([OsString::from("4096")]));

        // sled collects blobs: the set follows the directory.
        std::fs::remove_file(&path).unwrap();
        sync.sync().unwrap();
        assert!(synced(&sync).is_empty());
    }
}
