//! The Raft log's entries in append-only segment files of our own.
//!
//! Why not sled: making an entry durable through sled 0.34 took `Db::flush`
//! (sled's write buffer handed to its IO pool, which wakes all its idle
//! threads for each write, then `pwrite` + `sync_file_range`) and then an
//! `fdatasync` of sled's file ([`super::sled_sync`]). Here an append is one
//! `pwrite` and its sync one `fdatasync`, made by the thread that waits for
//! it: at one client the leader's log append is ~0.2 ms shorter and CPU per
//! transfer ~10% lower than through sled (docs/PERFORMANCE.md).
//!
//! Record: `len: u32 LE | crc32(rest of header, payload): u32 LE | index:
//! u64 LE | first index of its append: u64 LE | payload`, indexes
//! consecutive across the segments. A segment is named after the index of
//! its first record and closed (synced) once it holds [`SEGMENT_BYTES`].
//! Only the last append can be torn by a crash (every earlier one was synced
//! before the next began, and a segment is synced before the next is
//! created), and within it any of its records (pages reach the disk in any
//! order). So at open an unreadable record in the last segment ends the log
//! there and the file is cut back, unless an intact record after it belongs
//! to a later append: then the damage is in entries already synced, and the
//! open stops, as it does for damage in any other segment.
//!
//! Memory: the offset of each entry still in the log (24 bytes each); the
//! log is purged behind snapshots, so this is bounded by the snapshot
//! interval, never by history.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment is closed once it holds this much.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 24;
/// A length beyond it can only be damage or a torn write.
const MAX_RECORD: u32 = crate::limits::MAX_STORED_RECORD_BYTES as u32;
const SUFFIX: &str = ".raftlog";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("raft log {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("raft log {path} at offset {offset}: {reason}")]
    Corrupt { path: String, offset: u64, reason: String },
    #[error("raft log: {0}")]
    Misuse(String),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where one entry's record is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// First index of the segment holding it.
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    len: u64,
}

/// The entries of one node's Raft log, by index.
pub struct Wal {
    dir: PathBuf,
    /// By first index; the last is the one appended to.
    segments: BTreeMap<u64, Segment>,
    /// Index of `slots[0]`.
    first: u64,
    slots: VecDeque<Slot>,
    /// Index the next append must start at, when the log is not empty or
    /// was purged; `None` for a log that never held an entry.
    next: Option<u64>,
}

fn record_crc(index: u64, append_first: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&append_first.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A record's header fields.
struct Header {
    len: u32,
    crc: u32,
    index: u64,
    append_first: u64,
}

impl Header {
    fn parse(bytes: &[u8]) -> Option<Header> {
        Some(Header {
            len: u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?),
            crc: u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?),
            index: u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?),
            append_first: u64::from_le_bytes(bytes.get(16..24)?.try_into().ok()?),
        })
    }

    fn encode_into(out: &mut Vec<u8>, index: u64, append_first: u64, payload: &[u8], len: u32) {
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&record_crc(index, append_first, payload).to_le_bytes());
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&append_first.to_le_bytes());
        out.extend_from_slice(payload);
    }
}

/// Whether `tail` (the bytes after a damaged record whose index would have
/// been `expected`, in the segment starting at `segment_first`) holds an
/// intact record of an append that began after the damaged entry: then the
/// damage is in entries synced before that append, not a torn write. Every
/// offset is tried, as the damaged length cannot be trusted; a header must
/// be plausible (an index a record could have there, an append that starts
/// in this segment) before its checksum is computed, which keeps the scan
/// linear in practice.
fn later_append_after(tail: &[u8], expected: u64, segment_first: u64) -> bool {
    let max_index = expected.saturating_add((tail.len() / HEADER) as u64);
    let mut at = 1;
    while at + HEADER <= tail.len() {
        let intact = Header::parse(&tail[at..]).and_then(|h| {
            let end = at.checked_add(HEADER)?.checked_add(h.len as usize)?;
            let plausible = h.index > expected
                && h.index <= max_index
                && (segment_first..=h.index).contains(&h.append_first)
                && h.len <= MAX_RECORD
                && end <= tail.len();
            (plausible && record_crc(h.index, h.append_first, &tail[at + HEADER..end]) == h.crc)
                .then_some((h.append_first, end))
        });
        match intact {
            Some((append_first, _)) if append_first > expected => return true,
            // Part of the damaged record's own append: look past it.
            Some((_, end)) => at = end,
            None => at += 1,
        }
    }
    false
}

/// Makes a new or removed directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`; cuts a torn last append.
    /// `purged`: the index the log was purged to, if any; segments that hold
    /// nothing after it are deleted first (a purge's deletions are not
    /// synced, and a crash may bring back some of them but not others).
    pub fn open(dir: &Path, purged: Option<u64>) -> Result<Wal, WalError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            first: 0,
            slots: VecDeque::new(),
            next: None,
        };
        let mut names = wal.segment_names()?;
        if let Some(purged) = purged {
            // A segment holds nothing after the purge point when the next
            // one starts at or before the entry following it.
            let keep_from = names.iter().rposition(|f| *f <= purged.saturating_add(1)).unwrap_or(0);
            for first in names.drain(..keep_from) {
                wal.remove_segment(first)?;
            }
        }
        for (i, first) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            wal.load_segment(*first, last)?;
        }
        Ok(wal)
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}{SUFFIX}"))
    }

    fn segment_names(&self) -> Result<Vec<u64>, WalError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let entry = entry.map_err(io_at(&self.dir))?;
            let name = entry.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) {
                if let Ok(n) = n.parse::<u64>() {
                    out.push(n);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Reads a segment's records into the index. In the last segment the
    /// first unreadable record and everything after it are cut off.
    fn load_segment(&mut self, first: u64, last: bool) -> Result<(), WalError> {
        let path = self.segment_path(first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let size = file.metadata().map_err(io_at(&path))?.len();
        if let Some(next) = self.next {
            if first != next {
                return Err(WalError::Corrupt {
                    path: path.display().to_string(),
                    offset: 0,
                    reason: format!("segment starts at index {first}, the log before it continues at {next}"),
                });
            }
        }
        let mut offset = 0u64;
        let mut expected = first;
        let mut slots = Vec::new();
        let mut header = [0u8; HEADER];
        let damage = loop {
            if offset == size {
                break None;
            }
            if size - offset < HEADER as u64 {
                break Some("a record header cut short");
            }
            file.read_exact_at(&mut header, offset).map_err(io_at(&path))?;
            let h = Header::parse(&header).ok_or(WalError::Misuse("header size".into()))?;
            if h.len > MAX_RECORD || size - offset - (HEADER as u64) < u64::from(h.len) {
                break Some("a record longer than the file");
            }
            if h.index != expected {
                break Some("an index out of sequence");
            }
            let mut payload = vec![0u8; h.len as usize];
            file.read_exact_at(&mut payload, offset + HEADER as u64)
                .map_err(io_at(&path))?;
            if record_crc(h.index, h.append_first, &payload) != h.crc {
                break Some("a record whose checksum does not match");
            }
            slots.push(Slot {
                segment: first,
                offset,
                len: h.len,
            });
            offset += (HEADER as u64) + u64::from(h.len);
            expected += 1;
        };
        if let Some(reason) = damage {
            let corrupt = |reason: String| WalError::Corrupt {
                path: path.display().to_string(),
                offset,
                reason,
            };
            if !last {
                return Err(corrupt(reason.to_string()));
            }
            let mut tail = vec![0u8; (size - offset) as usize];
            file.read_exact_at(&mut tail, offset).map_err(io_at(&path))?;
            if later_append_after(&tail, expected, first) {
                return Err(corrupt(format!(
                    "{reason} (entry {expected}), followed by intact entries of a later append: \
                     damage in entries already synced, not a torn write"
                )));
            }
            tracing::warn!(
                "raft log {}: {reason} at offset {offset}: cutting off {} bytes of an append a crash interrupted",
                path.display(),
                size - offset
            );
            file.set_len(offset).map_err(io_at(&path))?;
            file.sync_all().map_err(io_at(&path))?;
        }
        if self.slots.is_empty() {
            self.first = first;
        }
        self.slots.extend(slots);
        self.next = Some(expected);
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                len: offset,
            },
        );
        Ok(())
    }

    /// Index of the first entry held, if any.
    pub fn first_index(&self) -> Option<u64> {
        (!self.slots.is_empty()).then_some(self.first)
    }

    /// Index of the last entry held, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.slots.len().checked_sub(1).map(|n| self.first + n as u64)
    }

    /// Appends entries `(index, payload)` with consecutive indexes, the
    /// first one past the log's last (anywhere in a log that never held an
    /// entry; past the purge point in one purged to empty). One that starts
    /// inside the log replaces it from there on (and that cut is synced at
    /// once). Durable once [`Wal::sync`] returns.
    pub fn append<'a>(&mut self, entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<(), WalError> {
        let entries: Vec<(u64, &[u8])> = entries.into_iter().collect();
        let Some(&(first_new, _)) = entries.first() else {
            return Ok(());
        };
        if self.last_index().is_some_and(|last| first_new <= last) && first_new >= self.first {
            self.truncate_from(first_new)?;
        }
        let in_sequence = self.next.is_none_or(|n| n == first_new)
            && entries.windows(2).all(|w| w[0].0.checked_add(1) == Some(w[1].0));
        if !in_sequence {
            return Err(WalError::Misuse(format!(
                "append of entries {first_new}..: not consecutive, or not next to the log's last{}",
                self.next.map(|n| format!(" (the next is {n})")).unwrap_or_default()
            )));
        }
        let active = self.active_for_append(first_new)?;
        let segment = self.segments.get_mut(&active).expect("active segment exists");
        let mut records = Vec::new();
        let mut slots = Vec::with_capacity(entries.len());
        let mut offset = segment.len;
        for (index, payload) in &entries {
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| WalError::Misuse(format!("an entry of {} bytes is over the limit", payload.len())))?;
            Header::encode_into(&mut records, *index, first_new, payload, len);
            slots.push(Slot {
                segment: active,
                offset,
                len,
            });
            offset += (HEADER as u64) + u64::from(len);
        }
        let path = self.dir.join(format!("{active:020}{SUFFIX}"));
        segment.file.write_all_at(&records, segment.len).map_err(io_at(&path))?;
        segment.len = offset;
        if self.slots.is_empty() {
            self.first = first_new;
        }
        self.slots.extend(slots);
        self.next = Some(first_new + entries.len() as u64);
        Ok(())
    }

    /// The segment an append starting at `first_new` goes to: the last one,
    /// or a new one (named after `first_new`) when there is none or the last
    /// is full.
    fn active_for_append(&mut self, first_new: u64) -> Result<u64, WalError> {
        if let Some((&last, segment)) = self.segments.iter().next_back() {
            if segment.len < SEGMENT_BYTES {
                return Ok(last);
            }
            // Closed: synced before the next exists, so only the last
            // segment can ever hold a torn append.
            let path = self.segment_path(last);
            segment.file.sync_data().map_err(io_at(&path))?;
        }
        self.create_segment(first_new)?;
        Ok(first_new)
    }

    fn create_segment(&mut self, first: u64) -> Result<(), WalError> {
        let path = self.segment_path(first);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        sync_dir(&self.dir)?;
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                len: 0,
            },
        );
        Ok(())
    }

    /// The file a sync must reach to make every append so far durable
    /// (closed segments were synced when closed). Synced by the caller,
    /// outside any lock on the log.
    pub fn sync_target(&self) -> Option<(PathBuf, Arc<File>)> {
        let (&first, segment) = self.segments.iter().next_back()?;
        Some((self.segment_path(first), Arc::clone(&segment.file)))
    }

    /// Appends so far made durable.
    pub fn sync(&self) -> Result<(), WalError> {
        match self.sync_target() {
            Some((path, file)) => file.sync_data().map_err(io_at(&path)),
            None => Ok(()),
        }
    }

    /// The payload of entry `index`, if held; checked against its checksum.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>, WalError> {
        let Some(slot) = index
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get(i))
        else {
            return Ok(None);
        };
        let path = self.segment_path(slot.segment);
        let segment = self.segments.get(&slot.segment).ok_or_else(|| WalError::Corrupt {
            path: path.display().to_string(),
            offset: slot.offset,
            reason: "the segment is gone".into(),
        })?;
        let mut record = vec![0u8; HEADER + slot.len as usize];
        segment
            .file
            .read_exact_at(&mut record, slot.offset)
            .map_err(io_at(&path))?;
        let payload = record.split_off(HEADER);
        let intact = Header::parse(&record)
            .is_some_and(|h| h.index == index && record_crc(h.index, h.append_first, &payload) == h.crc);
        if !intact {
            return Err(WalError::Corrupt {
                path: path.display().to_string(),
                offset: slot.offset,
                reason: format!("entry {index}: the checksum does not match"),
            });
        }
        Ok(Some(payload))
    }

    /// Removes entries from `index` on, durably (a follower's log that
    /// conflicts with the leader's).
    pub fn truncate_from(&mut self, index: u64) -> Result<(), WalError> {
        let keep = index.saturating_sub(self.first);
        if keep >= self.slots.len() as u64 {
            return Ok(());
        }
        let cut = self.slots[keep as usize];
        self.slots.truncate(keep as usize);
        // Later segments go first, durably: a crash must not leave the cut
        // segment short with a later one still there (a hole at open).
        let later: Vec<u64> = self
            .segments
            .range(cut.segment.saturating_add(1)..)
            .map(|(f, _)| *f)
            .collect();
        for first in later {
            self.remove_segment(first)?;
        }
        if cut.offset == 0 {
            self.remove_segment(cut.segment)?;
        }
        sync_dir(&self.dir)?;
        if let Some(segment) = self.segments.get_mut(&cut.segment) {
            let path = self.dir.join(format!("{:020}{SUFFIX}", cut.segment));
            segment.file.set_len(cut.offset).map_err(io_at(&path))?;
            segment.file.sync_all().map_err(io_at(&path))?;
            segment.len = cut.offset;
        }
        self.next = Some(self.last_index().map_or(index, |last| last + 1));
        Ok(())
    }

    /// Forgets entries up to and including `index` and deletes the segments
    /// that hold nothing later. Not synced: the caller records the purge
    /// point durably first, and a segment that comes back after a crash is
    /// forgotten again by the next purge to that point.
    pub fn purge_to(&mut self, index: u64) -> Result<(), WalError> {
        if self.last_index().is_none_or(|last| last <= index) {
            let all: Vec<u64> = self.segments.keys().copied().collect();
            for first in all {
                self.remove_segment(first)?;
            }
            self.slots.clear();
            self.next = Some(index.saturating_add(1));
            self.first = index.saturating_add(1);
            return Ok(());
        }
        let drop = index.saturating_add(1).saturating_sub(self.first) as usize;
        self.slots.drain(..drop.min(self.slots.len()));
        self.first = self.first.max(index.saturating_add(1));
        // Segments wholly before the one now holding the first entry.
        let holder = self.slots.front().map(|s| s.segment).unwrap_or(u64::MAX);
        let before: Vec<u64> = self.segments.range(..holder).map(|(f, _)| *f).collect();
        for first in before {
            self.remove_segment(first)?;
        }
        Ok(())
    }

    fn remove_segment(&mut self, first: u64) -> Result<(), WalError> {
        self.segments.remove(&first);
        let path = self.segment_path(first);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Bytes in the segment files, for tests and status.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(index: u64) -> Vec<u8> {
        // Sizes vary so records straddle nothing in particular.
        format!("entry {index} ").repeat(1 + (index % 7) as usize).into_bytes()
    }

    fn append_range(wal: &mut Wal, range: std::ops::RangeInclusive<u64>) {
        let entries: Vec<(u64, Vec<u8>)> = range.map(|i| (i, payload(i))).collect();
        wal.append(entries.iter().map(|(i, p)| (*i, p.as_slice()))).unwrap();
        wal.sync().unwrap();
    }

    fn assert_holds(wal: &Wal, range: std::ops::RangeInclusive<u64>) {
        assert_eq!(
            (wal.first_index(), wal.last_index()),
            (Some(*range.start()), Some(*range.end()))
        );
        for i in range {
            assert_eq!(wal.read(i).unwrap(), Some(payload(i)), "entry {i}");
        }
    }

    /// Overwrites bytes of the last segment at `offset`, as damage would.
    fn overwrite_in_last_segment(dir: &Path, offset: u64, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(last_segment(dir)).unwrap();
        f.write_all_at(bytes, offset).unwrap();
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        names.pop().unwrap()
    }

    #[test]
    fn entries_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut wal = Wal::open(&path, None).unwrap();
        assert_eq!(wal.last_index(), None);
        append_range(&mut wal, 0..=9);
        append_range(&mut wal, 10..=10);
        assert_eq!(wal.read(11).unwrap(), None);
        drop(wal);
        let mut wal = Wal::open(&path, None).unwrap();
        assert_holds(&wal, 0..=10);
        append_range(&mut wal, 11..=12);
        assert_holds(&wal, 0..=12);
    }

    #[test]
    fn an_append_with_a_hole_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 5..=6);
        let (p9, p10) = (payload(9), payload(10));
        assert!(matches!(wal.append([(9, p9.as_slice())]), Err(WalError::Misuse(_))));
        assert!(matches!(
            wal.append([(7, p9.as_slice()), (9, p10.as_slice())]),
            Err(WalError::Misuse(_))
        ));
        assert_holds(&wal, 5..=6);
        drop(wal);
        assert_holds(&Wal::open(dir.path(), None).unwrap(), 5..=6);
    }

    #[test]
    fn a_torn_last_append_is_cut_off_at_open() {
        for cut in [1u64, HEADER as u64 - 1, HEADER as u64 + 3] {
            let dir = tempfile::tempdir().unwrap();
            let mut wal = Wal::open(dir.path(), None).unwrap();
            append_range(&mut wal, 1..=4);
            let size_before = wal.disk_bytes();
            append_range(&mut wal, 5..=5);
            drop(wal);
            // The crash kept only part of the last append.
            let seg = last_segment(dir.path());
            let f = OpenOptions::new().write(true).open(&seg).unwrap();
            f.set_len(size_before + cut).unwrap();
            let mut wal = Wal::open(dir.path(), None).unwrap();
            assert_holds(&wal, 1..=4);
            assert_eq!(
                std::fs::metadata(&seg).unwrap().len(),
                size_before,
                "the file is cut back"
            );
            // And the log goes on from there.
            append_range(&mut wal, 5..=6);
            drop(wal);
            assert_holds(&Wal::open(dir.path(), None).unwrap(), 1..=6);
        }
    }

    #[test]
    fn a_garbled_last_record_is_cut_off_but_damage_in_a_closed_segment_stops_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 1..=3);
        let last_at = wal.disk_bytes() - (HEADER + payload(3).len()) as u64;
        drop(wal);
        overwrite_in_last_segment(dir.path(), last_at + HEADER as u64, b"X");
        assert_holds(&Wal::open(dir.path(), None).unwrap(), 1..=2);

        // Same damage in a segment that is not the last: nothing is cut.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 1..=3);
        drop(wal);
        let first_seg = last_segment(dir.path());
        std::fs::write(dir.path().join(format!("{:020}{SUFFIX}", 4)), b"").unwrap();
        let f = OpenOptions::new().write(true).open(&first_seg).unwrap();
        f.write_all_at(b"X", HEADER as u64).unwrap();
        drop(f);
        match Wal::open(dir.path(), None) {
            Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a damaged closed segment was accepted"),
        }
    }

    #[test]
    fn full_segments_are_closed_and_the_log_reads_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        // Two entries of 40 MiB fill a segment; the third starts the next.
        let big = vec![7u8; 40 * 1024 * 1024];
        for i in 1..=3u64 {
            wal.append([(i, big.as_slice())]).unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(wal.segment_count(), 2);
        drop(wal);
        let mut wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(3)));
        assert_eq!(wal.read(3).unwrap().map(|p| p.len()), Some(big.len()));
        // Purging the first segment's entries deletes its file.
        wal.purge_to(2).unwrap();
        assert_eq!((wal.segment_count(), wal.first_index()), (1, Some(3)));
        assert_eq!(wal.read(2).unwrap(), None);
        // Truncating into the first record of a segment removes the segment.
        wal.truncate_from(3).unwrap();
        assert_eq!((wal.segment_count(), wal.last_index()), (0, None));
        let p = payload(3);
        wal.append([(3, p.as_slice())]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        assert_holds(&Wal::open(dir.path(), None).unwrap(), 3..=3);
    }

    #[test]
    fn truncate_removes_the_tail_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 0..=9);
        wal.truncate_from(6).unwrap();
        assert_holds(&wal, 0..=5);
        // The leader's entries replace the removed ones.
        append_range(&mut wal, 6..=7);
        drop(wal);
        assert_holds(&Wal::open(dir.path(), None).unwrap(), 0..=7);
    }

    #[test]
    fn an_append_inside_the_log_replaces_it_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 1..=5);
        let other = b"another leader's entry".to_vec();
        wal.append([(3, other.as_slice())]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(3)));
        assert_eq!(wal.read(2).unwrap(), Some(payload(2)));
        assert_eq!(wal.read(3).unwrap(), Some(other));
    }

    #[test]
    fn purge_forgets_a_prefix_and_purging_past_the_end_moves_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 0..=9);
        wal.purge_to(3).unwrap();
        assert_holds(&wal, 4..=9);
        assert_eq!(wal.read(3).unwrap(), None);
        // A snapshot installed beyond the log: the next entry follows it.
        wal.purge_to(20).unwrap();
        assert_eq!(
            (wal.first_index(), wal.last_index(), wal.segment_count()),
            (None, None, 0)
        );
        let p = payload(20);
        assert!(wal.append([(20, p.as_slice())]).is_err());
        append_range(&mut wal, 21..=22);
        drop(wal);
        assert_holds(&Wal::open(dir.path(), None).unwrap(), 21..=22);
    }

    #[test]
    fn damage_before_a_later_append_stops_the_open_but_a_torn_append_is_cut() {
        // Entry 2 damaged, entry 3 (a later append) intact: synced data is
        // damaged, and nothing may be cut silently.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 1..=1);
        let at2 = wal.disk_bytes();
        append_range(&mut wal, 2..=2);
        append_range(&mut wal, 3..=3);
        drop(wal);
        overwrite_in_last_segment(dir.path(), at2 + HEADER as u64, b"X");
        match Wal::open(dir.path(), None) {
            Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, at2),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("damage before a later append was cut silently"),
        }

        // Entry 2 damaged inside the synced append 2..=4, then append 5: the
        // scan must look past entries 3 and 4 (same append) to find 5.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 1..=1);
        let at2 = wal.disk_bytes();
        append_range(&mut wal, 2..=4);
        append_range(&mut wal, 5..=5);
        drop(wal);
        overwrite_in_last_segment(dir.path(), at2 + HEADER as u64, b"X");
        assert!(
            matches!(Wal::open(dir.path(), None), Err(WalError::Corrupt { .. })),
            "damage before a later append was cut silently"
        );

        // One append of 2..=3 whose first record did not reach the disk but
        // whose second did: a torn append, cut back to entry 1.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        append_range(&mut wal, 1..=1);
        let at2 = wal.disk_bytes();
        append_range(&mut wal, 2..=3);
        drop(wal);
        overwrite_in_last_segment(dir.path(), at2, &[0u8; HEADER]);
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_holds(&wal, 1..=1);
    }

    #[test]
    fn segments_a_purge_deleted_only_in_part_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 40 * 1024 * 1024];
        let mut wal = Wal::open(dir.path(), None).unwrap();
        // Segments starting at 1, 3 and 5.
        for i in 1..=6u64 {
            wal.append([(i, big.as_slice())]).unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(wal.segment_count(), 3);
        drop(wal);
        // A purge to 4 deleted the segment at 3 but a crash brought back
        // the one at 1: read alone, the log would have a hole.
        std::fs::remove_file(dir.path().join(format!("{:020}{SUFFIX}", 3))).unwrap();
        assert!(matches!(Wal::open(dir.path(), None), Err(WalError::Corrupt { .. })));
        let wal = Wal::open(dir.path(), Some(4)).unwrap();
        assert_eq!(
            (wal.segment_count(), wal.first_index(), wal.last_index()),
            (1, Some(5), Some(6))
        );
    }
}
