//! Block bodies in append-only segment files; sled keeps only where each is.
//!
//! Why not sled: in sled 0.34 a value over 128 KiB (a leaf of 16 full
//! blocks is megabytes) is written as a "blob" whose cache entry is counted
//! as the ~20-byte pointer, and the cache acts on page accesses only after
//! 64 have queued in each of 256 shards. Pages of blocks in sled are never
//! evicted: a node's resident memory rises with the chain it reads (a
//! snapshot build reads all of it: peaks of 189, 262, 309 and 418 MB at 0.5,
//! 1, 1.5 and 2 million transfers), and a leaf is rewritten whole every ten
//! inserts.
//! Here a block is one `pwrite` when applied and one `pread` when read; no
//! cache of ours holds bodies, so memory does not grow with history.
//!
//! Record: `len: u32 LE | crc32(payload): u32 LE | payload`. A segment is
//! closed (synced) once it holds [`SEGMENT_BYTES`]; the next one is created.
//! Records past the last one the ledger indexed (a crash between the write
//! and sled's batch) are cut off at open by [`BlockFiles::keep_through`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A segment is closed once it holds this much.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: u64 = 8;
/// The largest record accepted.
const MAX_RECORD: u64 = crate::limits::MAX_STORED_RECORD_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum BlockFileError {
    #[error("block file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("block file {path} at offset {offset}: {reason}")]
    Corrupt { path: String, offset: u64, reason: String },
}

/// Where a block's record is: 16 bytes in sled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub const ENCODED_LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..4].copy_from_slice(&self.segment.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Location> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        Some(Location {
            segment: u32::from_be_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[4..12].try_into().ok()?),
            len: u32::from_be_bytes(bytes[12..].try_into().ok()?),
        })
    }

    /// Offset just past the record (`None` for a location no file can hold).
    fn end(&self) -> Option<u64> {
        self.offset.checked_add(HEADER + u64::from(self.len))
    }
}

struct Active {
    segment: u32,
    file: File,
    len: u64,
}

/// The block segment files of one node.
pub struct BlockFiles {
    dir: PathBuf,
    active: Mutex<Active>,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> BlockFileError + '_ {
    move |source| BlockFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl BlockFiles {
    /// Opens (creating if needed) the segment files in `dir`; appends go to
    /// the last segment.
    pub fn open(dir: &Path) -> Result<BlockFiles, BlockFileError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let last = Self::segments(dir)?.last().copied().unwrap_or(0);
        let active = Self::open_segment(dir, last)?;
        Ok(BlockFiles {
            dir: dir.to_path_buf(),
            active: Mutex::new(active),
        })
    }

    fn segment_path(dir: &Path, segment: u32) -> PathBuf {
        dir.join(format!("{segment:010}.blocks"))
    }

    /// Segment numbers present, in order.
    fn segments(dir: &Path) -> Result<Vec<u32>, BlockFileError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
            let entry = entry.map_err(io_at(dir))?;
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".blocks")) else {
                continue;
            };
            if let Ok(n) = n.parse::<u32>() {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn open_segment(dir: &Path, segment: u32) -> Result<Active, BlockFileError> {
        let path = Self::segment_path(dir, segment);
        // Positional writes at `len`, not O_APPEND: a failed write leaves
        // bytes past `len` that the next record overwrites.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let len = file.metadata().map_err(io_at(&path))?.len();
        Ok(Active { segment, file, len })
    }

    /// Makes a new or removed directory entry durable.
    fn sync_dir(&self) -> Result<(), BlockFileError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(&self.dir))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record; durable after [`BlockFiles::sync`].
    pub fn append(&self, payload: &[u8]) -> Result<Location, BlockFileError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| u64::from(*l) <= MAX_RECORD)
            .ok_or_else(|| BlockFileError::Corrupt {
                path: self.dir.display().to_string(),
                offset: 0,
                reason: format!("a record of {} bytes is over the limit", payload.len()),
            })?;
        let mut active = self.lock();
        if active.len > 0 && active.len + HEADER + u64::from(len) > SEGMENT_BYTES {
            active
                .file
                .sync_data()
                .map_err(io_at(&Self::segment_path(&self.dir, active.segment)))?;
            *active = Self::open_segment(&self.dir, active.segment + 1)?;
            self.sync_dir()?;
        }
        let mut record = Vec::with_capacity(payload.len() + HEADER as usize);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let loc = Location {
            segment: active.segment,
            offset: active.len,
            len,
        };
        let path = Self::segment_path(&self.dir, active.segment);
        active.file.write_all_at(&record, loc.offset).map_err(io_at(&path))?;
        active.len += record.len() as u64;
        Ok(loc)
    }

    /// Makes every record appended so far durable (segments before the
    /// active one were synced when closed).
    pub fn sync(&self) -> Result<(), BlockFileError> {
        let active = self.lock();
        active
            .file
            .sync_data()
            .map_err(io_at(&Self::segment_path(&self.dir, active.segment)))
    }

    /// Reads and checks the record at `loc`.
    pub fn read(&self, loc: Location) -> Result<Vec<u8>, BlockFileError> {
        let path = Self::segment_path(&self.dir, loc.segment);
        let corrupt = |reason: String| BlockFileError::Corrupt {
            path: path.display().to_string(),
            offset: loc.offset,
            reason,
        };
        let file = File::open(&path).map_err(io_at(&path))?;
        // A damaged index may name any length: nothing is allocated for a
        // record the file cannot hold.
        let size = file.metadata().map_err(io_at(&path))?.len();
        if u64::from(loc.len) > MAX_RECORD || loc.end().is_none_or(|end| end > size) {
            return Err(corrupt(format!(
                "a record of {} bytes there passes the end of the file ({size} bytes) or the limit",
                loc.len
            )));
        }
        let mut header = [0u8; HEADER as usize];
        file.read_exact_at(&mut header, loc.offset)
            .map_err(|e| corrupt(format!("record header unreadable: {e}")))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len != loc.len {
            return Err(corrupt(format!("record holds {len} bytes, the index says {}", loc.len)));
        }
        let mut payload = vec![0u8; len as usize];
        file.read_exact_at(&mut payload, loc.offset + HEADER)
            .map_err(|e| corrupt(format!("record unreadable: {e}")))?;
        if crc32fast::hash(&payload) != crc {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(payload)
    }

    /// Keeps the records up to and including `last` (none if `None`) and
    /// removes everything after: what a crash left unindexed, or a whole
    /// chain about to be replaced.
    pub fn keep_through(&self, last: Option<Location>) -> Result<(), BlockFileError> {
        let mut active = self.lock();
        let segment = last.map_or(0, |l| l.segment);
        let path = Self::segment_path(&self.dir, segment);
        // Checked before anything is removed.
        let end = match last {
            None => 0,
            Some(l) => {
                let on_disk = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                match l.end() {
                    Some(end) if end <= on_disk => end,
                    _ => {
                        return Err(BlockFileError::Corrupt {
                            path: path.display().to_string(),
                            offset: l.offset,
                            reason: format!(
                                "the file ({on_disk} bytes) ends before the last indexed block ({} bytes at {})",
                                l.len, l.offset
                            ),
                        })
                    }
                }
            }
        };
        for s in Self::segments(&self.dir)?.into_iter().filter(|s| *s > segment) {
            let path = Self::segment_path(&self.dir, s);
            std::fs::remove_file(&path).map_err(io_at(&path))?;
        }
        let kept = Self::open_segment(&self.dir, segment)?;
        kept.file.set_len(end).map_err(io_at(&path))?;
        kept.file.sync_all().map_err(io_at(&path))?;
        *active = Active { len: end, ..kept };
        drop(active);
        self.sync_dir()
    }

    /// Total bytes in all segments.
    pub fn disk_bytes(&self) -> Result<u64, BlockFileError> {
        let mut total = 0;
        for s in Self::segments(&self.dir)? {
            let path = Self::segment_path(&self.dir, s);
            total += std::fs::metadata(&path).map_err(io_at(&path))?.len();
        }
        Ok(total)
    }

    /// Overwrites the record at `loc` with `payload` in place (same length),
    /// as damage on disk would, keeping its checksum valid. For tests of
    /// tamper detection.
    #[doc(hidden)]
    pub fn overwrite(&self, loc: Location, payload: &[u8]) -> Result<(), BlockFileError> {
        let path = Self::segment_path(&self.dir, loc.segment);
        if payload.len() != loc.len as usize {
            return Err(BlockFileError::Corrupt {
                path: path.display().to_string(),
                offset: loc.offset,
                reason: "an overwrite must keep the record's length".into(),
            });
        }
        let file = OpenOptions::new().write(true).open(&path).map_err(io_at(&path))?;
        file.write_all_at(&crc32fast::hash(payload).to_le_bytes(), loc.offset + 4)
            .and_then(|()| file.write_all_at(payload, loc.offset + HEADER))
            .and_then(|()| file.sync_data())
            .map_err(io_at(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_across_segments_and_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path()).unwrap();
        // Records of ~20 MiB: three fill a segment, the fourth starts the next.
        let big = |b: u8| vec![b; 20 * 1024 * 1024];
        let locs: Vec<Location> = (0..5).map(|i| files.append(&big(i)).unwrap()).collect();
        files.sync().unwrap();
        assert_eq!(locs.iter().map(|l| l.segment).collect::<Vec<_>>(), vec![0, 0, 0, 1, 1]);
        for (i, l) in locs.iter().enumerate() {
            assert_eq!(files.read(*l).unwrap(), big(i as u8));
            assert_eq!(Location::decode(&l.encode()), Some(*l));
        }
        // Keep through the fourth: the fifth is gone, appends go after the fourth.
        files.keep_through(Some(locs[3])).unwrap();
        assert!(files.read(locs[4]).is_err());
        let again = files.append(b"next").unwrap();
        assert_eq!((again.segment, again.offset), (1, locs[4].offset));
        drop(files);
        let files = BlockFiles::open(dir.path()).unwrap();
        assert_eq!(files.read(again).unwrap(), b"next");
        assert_eq!(files.read(locs[0]).unwrap(), big(0));
        files.keep_through(None).unwrap();
        assert_eq!(files.disk_bytes().unwrap(), 0);
        assert_eq!(files.append(b"first").unwrap().offset, 0);
    }

    #[test]
    fn damage_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path()).unwrap();
        let loc = files.append(b"a block").unwrap();
        let path = BlockFiles::segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = files.read(loc).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        let short = Location { len: 3, ..loc };
        assert!(files.read(short).unwrap_err().to_string().contains("the index says 3"));
        // Truncated under the index: open reports it instead of serving garbage.
        std::fs::write(&path, b"").unwrap();
        let err = files.keep_through(Some(loc)).unwrap_err().to_string();
        assert!(err.contains("ends before the last indexed block"), "{err}");
    }
}
