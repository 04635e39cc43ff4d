//! Fuzzing of the files a node reads back: snapshot files (which also
//! arrive from peers), the Raft log's segments and the block files. Any
//! content, damaged or cut copies of real files, and length fields at and
//! just past their limits must give an error (or, for a torn log tail, a
//! log cut back), never a panic or an allocation the limit does not allow.
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz_files` runs longer.

use bank_ledger::limits::{MAX_SNAPSHOT_RECORD_BYTES, MAX_STORED_RECORD_BYTES};
use bank_ledger::raft::SnapshotMeta;
use bank_ledger::storage::block_file::{BlockFiles, Location};
use bank_ledger::storage::raft_wal::Wal;
use bank_ledger::storage::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};
use proptest::prelude::*;
use std::path::Path;

/// Cases per property: 256 by default (each writes files), `PROPTEST_CASES` to change.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Reads every record of the snapshot file at `path`; the first error, if any.
fn read_snapshot(path: &Path) -> Result<usize, SnapshotError> {
    let mut r = SnapshotReader::open(path)?;
    let mut n = 0;
    while r.next_record()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// A snapshot file of a few records, as bytes.
fn sample_snapshot(dir: &Path) -> Vec<u8> {
    let path = dir.join("sample.bin");
    let mut w = SnapshotWriter::create(&path, &SnapshotMeta::default()).expect("create");
    for i in 0u8..6 {
        w.record(&[b'k', i], &vec![i; 40 * usize::from(i)]).expect("record");
    }
    w.finish().expect("finish");
    std::fs::read(&path).expect("read")
}

/// The bytes of a snapshot file up to its first record's key length.
fn snapshot_head() -> Vec<u8> {
    let meta = bank_ledger::codec::encode(&SnapshotMeta::default()).expect("meta");
    let mut out = b"BANKSNP1".to_vec();
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_snapshot_file_is_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048), magic in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        // Half the cases past the magic, where the length fields are.
        let content = if magic { [snapshot_head(), bytes].concat() } else { bytes };
        std::fs::write(&path, content).unwrap();
        prop_assert!(read_snapshot(&path).is_err());
    }

    #[test]
    fn a_damaged_or_cut_snapshot_file_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255, cut in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = sample_snapshot(dir.path());
        let i = at.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] ^= flip;
        }
        let path = dir.path().join("s.bin");
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(read_snapshot(&path).is_err(), "damage at {i} (cut: {cut}) went unnoticed");
    }

    #[test]
    fn any_raft_log_segment_opens_cut_back_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{:020}.raftlog", 1)), &bytes).unwrap();
        if let Ok(wal) = Wal::open(dir.path(), None) {
            // What it kept reads back; nothing past it.
            if let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) {
                for i in first..=last {
                    prop_assert!(wal.read(i).is_ok());
                }
                prop_assert!(wal.read(last + 1).unwrap().is_none());
            }
        }
    }

    #[test]
    fn any_block_file_location_reads_or_is_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        offset in 0u64..2100,
        len in prop_oneof![0u32..2100, Just(MAX_STORED_RECORD_BYTES as u32), Just(u32::MAX)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{:010}.blocks", 0)), &bytes).unwrap();
        let blocks = BlockFiles::open(dir.path()).unwrap();
        // A read that succeeds found a record with a matching checksum.
        let at = Location { segment: 0, offset, len };
        if let Ok(payload) = blocks.read(at) {
            prop_assert_eq!(payload.len() as u32, len);
        }
        let elsewhere = Location { segment: 7, offset, len };
        prop_assert!(blocks.read(elsewhere).is_err());
    }
}

#[test]
fn snapshot_length_fields_at_their_limit_are_refused_without_allocating_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.bin");
    let limit = MAX_SNAPSHOT_RECORD_BYTES;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "metadata past the limit",
            [b"BANKSNP1".as_slice(), &(limit + 1).to_be_bytes()].concat(),
            "metadata of",
        ),
        (
            "key at the limit, not there",
            [snapshot_head(), limit.to_be_bytes().to_vec()].concat(),
            "truncated",
        ),
        (
            "key past the limit",
            [snapshot_head(), (limit + 1).to_be_bytes().to_vec()].concat(),
            "key of",
        ),
        (
            "value past the limit",
            [
                snapshot_head(),
                1u32.to_be_bytes().to_vec(),
                b"k".to_vec(),
                (limit + 1).to_be_bytes().to_vec(),
            ]
            .concat(),
            "value of",
        ),
    ];
    for (what, bytes, reason) in cases {
        std::fs::write(&path, bytes).unwrap();
        let err = read_snapshot(&path).expect_err(what).to_string();
        assert!(err.contains(reason), "{what}: {err}");
    }
    // The writer refuses what the reader would.
    let mut w = SnapshotWriter::create(&path, &SnapshotMeta::default()).unwrap();
    assert!(w.record(b"k", &vec![0; limit as usize]).is_err());
}

#[test]
fn raft_log_lengths_at_and_past_the_limit_end_the_log_there() {
    for len in [
        MAX_STORED_RECORD_BYTES as u32,
        MAX_STORED_RECORD_BYTES as u32 + 1,
        u32::MAX,
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path(), None).unwrap();
            wal.append([(1u64, b"one".as_slice()), (2, b"two")]).unwrap();
            wal.sync().unwrap();
        }
        // A last record claiming `len` bytes, with a few after it: a torn append.
        let seg = dir.path().join(format!("{:020}.raftlog", 1));
        let mut bytes = std::fs::read(&seg).unwrap();
        let mut header = len.to_le_bytes().to_vec();
        header.extend_from_slice(&[0; 4]);
        header.extend_from_slice(&3u64.to_le_bytes());
        header.extend_from_slice(&3u64.to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(b"three");
        std::fs::write(&seg, &bytes).unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!(wal.last_index(), Some(2), "length {len}");
        assert_eq!(wal.read(2).unwrap().as_deref(), Some(b"two".as_slice()));
    }
}

#[test]
fn a_block_location_past_its_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = BlockFiles::open(dir.path()).unwrap();
    let at = blocks.append(b"block").unwrap();
    blocks.sync().unwrap();
    assert_eq!(blocks.read(at).unwrap(), b"block");
    for len in [MAX_STORED_RECORD_BYTES as u32, u32::MAX] {
        let err = blocks.read(Location { len, ..at }).unwrap_err().to_string();
        assert!(err.contains("passes the end of the file"), "{err}");
    }
    let err = blocks
        .read(Location {
            offset: u64::MAX - 3,
            ..at
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("at offset"), "{err}");
}
