//! Timelines of requests across processes, for finding where latency goes.
//!
//! Off unless a server starts with `--timeline-dir`. Then each marked point
//! of a transfer's path (received, block cut, mined, log appended, sent to a
//! follower, ...) is recorded as (monotonic clock, point) and written to
//! `<dir>/<name>.timeline`. The monotonic clock is the machine's, so files of
//! processes on one machine line up: `bank-bench --local --timeline` reads
//! them back and prints, for one-client runs, the median time of each point
//! after the leader received the transfer. Stages (`status`) say how long each
//! step takes on one node; this says what waits for what across nodes.
//!
//! Bounded: at most [`MAX_EVENTS`] events per process are kept, then
//! recording stops. Events are buffered and written in chunks of at most
//! 2,048 events or 100 ms, so a killed process loses its last chunk.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Most events one process records (9 bytes each on disk: 36 MB).
pub const MAX_EVENTS: u64 = 4_000_000;
/// Events buffered before a write.
const CHUNK_EVENTS: usize = 2048;
/// Oldest a buffered event gets before a write (at the next mark).
const FLUSH_AFTER_NS: u64 = 100_000_000;
const EVENT_BYTES: usize = 9;
const EXTENSION: &str = "timeline";

/// A point of a transfer's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Point {
    /// API: a transfer request arrived (leader or forwarding follower).
    TransferIn = 0,
    /// Leader: the producer cut a block.
    BlockCut,
    /// Leader: its proof of work is found.
    BlockMined,
    /// Any node: Raft log append begins.
    LogAppend,
    /// Any node: the appended entries are flushed.
    LogFlushed,
    /// Leader: a Raft RPC to a peer is sent.
    RpcSent,
    /// Leader: its answer is back.
    RpcAnswered,
    /// Follower: an AppendEntries RPC arrived.
    AppendIn,
    /// Follower: it is answered.
    AppendOut,
    /// Any node: applying a block begins.
    ApplyIn,
    /// Leader: the producer answered the block's callers.
    Answered,
    /// Any node: the block is written (block file, sled, chain view).
    ApplyDone,
    /// API: the transfer's reply leaves.
    TransferOut,
}

const POINTS: [Point; 13] = [
    Point::TransferIn,
    Point::BlockCut,
    Point::BlockMined,
    Point::LogAppend,
    Point::LogFlushed,
    Point::RpcSent,
    Point::RpcAnswered,
    Point::AppendIn,
    Point::AppendOut,
    Point::ApplyIn,
    Point::Answered,
    Point::ApplyDone,
    Point::TransferOut,
];

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::TransferIn => "transfer_in",
            Point::BlockCut => "block_cut",
            Point::BlockMined => "block_mined",
            Point::LogAppend => "log_append",
            Point::LogFlushed => "log_flushed",
            Point::RpcSent => "rpc_sent",
            Point::RpcAnswered => "rpc_answered",
            Point::AppendIn => "append_in",
            Point::AppendOut => "append_out",
            Point::ApplyIn => "apply_in",
            Point::Answered => "answered",
            Point::ApplyDone => "apply_done",
            Point::TransferOut => "transfer_out",
        }
    }

    fn from_u8(b: u8) -> Option<Point> {
        POINTS.get(usize::from(b)).copied()
    }
}

struct Recorder {
    buf: Mutex<Vec<u8>>,
    /// When the buffer was last written out.
    written_at: AtomicU64,
    file: Mutex<std::fs::File>,
    recorded: AtomicU64,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

/// Starts recording this process's points into `dir/<name>.timeline`.
pub fn start(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.{EXTENSION}"));
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    let _ = RECORDER.set(Recorder {
        buf: Mutex::new(Vec::with_capacity(CHUNK_EVENTS * EVENT_BYTES)),
        written_at: AtomicU64::new(now_ns()),
        file: Mutex::new(file),
        recorded: AtomicU64::new(0),
    });
    Ok(path)
}

/// The machine's monotonic clock in nanoseconds: the same clock in every
/// process on the machine (unlike `Instant`, whose origin is opaque).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Records `point` now, if recording.
pub fn mark(point: Point) {
    let Some(r) = RECORDER.get() else { return };
    if r.recorded.fetch_add(1, Ordering::Relaxed) >= MAX_EVENTS {
        return;
    }
    let now = now_ns();
    let mut buf = r.buf.lock().unwrap_or_else(|p| p.into_inner());
    buf.extend_from_slice(&now.to_le_bytes());
    buf.push(point as u8);
    if buf.len() >= CHUNK_EVENTS * EVENT_BYTES
        || now.saturating_sub(r.written_at.load(Ordering::Relaxed)) > FLUSH_AFTER_NS
    {
        r.written_at.store(now, Ordering::Relaxed);
        let chunk = std::mem::take(&mut *buf);
        drop(buf);
        // A failed write loses a chunk of a diagnostic, nothing else.
        let _ = r.file.lock().unwrap_or_else(|p| p.into_inner()).write_all(&chunk);
    }
}

/// Reads one process's recorded points, in order of time.
pub fn read(path: &Path) -> std::io::Result<Vec<(u64, Point)>> {
    let bytes = std::fs::read(path)?;
    let mut out: Vec<(u64, Point)> = bytes
        .chunks_exact(EVENT_BYTES)
        .filter_map(|e| {
            let mut ns = [0u8; 8];
            ns.copy_from_slice(&e[..8]);
            Point::from_u8(e[8]).map(|p| (u64::from_le_bytes(ns), p))
        })
        .collect();
    out.sort_unstable_by_key(|(t, _)| *t);
    Ok(out)
}

/// Every `*.timeline` file in `dir`, by name (without the extension).
pub fn read_dir(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<(u64, Point)>>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(EXTENSION) {
            if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
                out.insert(name.to_string(), read(&path)?);
            }
        }
    }
    Ok(out)
}

/// One row of a [`median_path`]: the `nth` time (from 0) `point` happened
/// on `process` within a request, at `median_us` after the request arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub process: String,
    pub point: Point,
    pub nth: usize,
    pub median_us: f64,
    /// In how many of the requests it happened.
    pub seen: usize,
}

/// The typical path of a request when requests do not overlap (one client):
/// each request runs from a [`Point::TransferIn`] on `entry` (the process
/// the client sent to) to the next [`Point::TransferOut`] there; every point
/// of every process in between is placed by its median offset. Points seen
/// in fewer than half of the requests are left out. Only events between
/// `from_ns` and `to_ns` count.
pub fn median_path(
    processes: &BTreeMap<String, Vec<(u64, Point)>>,
    entry: &str,
    from_ns: u64,
    to_ns: u64,
) -> (usize, Vec<Step>) {
    let mut all: Vec<(u64, &str, Point)> = processes
        .iter()
        .flat_map(|(name, evs)| evs.iter().map(move |(t, p)| (*t, name.as_str(), *p)))
        .filter(|(t, _, _)| (from_ns..to_ns).contains(t))
        .collect();
    all.sort_unstable_by_key(|(t, _, _)| *t);
    let mut offsets: BTreeMap<(String, Point, usize), Vec<u64>> = BTreeMap::new();
    let mut requests = 0;
    let mut i = 0;
    while i < all.len() {
        let (start, who, point) = all[i];
        if who != entry || point != Point::TransferIn {
            i += 1;
            continue;
        }
        let Some(end) = all[i + 1..]
            .iter()
            .position(|(_, w, p)| *w == entry && *p == Point::TransferOut)
            .map(|k| i + 1 + k)
        else {
            break;
        };
        let mut counts: BTreeMap<(&str, Point), usize> = BTreeMap::new();
        for &(t, w, p) in &all[i + 1..=end] {
            let n = counts.entry((w, p)).or_insert(0);
            offsets.entry((w.to_string(), p, *n)).or_default().push(t - start);
            *n += 1;
        }
        requests += 1;
        i = end + 1;
    }
    let mut steps: Vec<Step> = offsets
        .into_iter()
        .filter(|(_, v)| v.len() * 2 > requests)
        .map(|((process, point, nth), mut v)| {
            v.sort_unstable();
            Step {
                process,
                point,
                nth,
                median_us: v[v.len() / 2] as f64 / 1000.0,
                seen: v.len(),
            }
        })
        .collect();
    steps.sort_by(|a, b| a.median_us.total_cmp(&b.median_us));
    (requests, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_path_orders_the_points_of_requests_across_processes() {
        let mut p = BTreeMap::new();
        // Two requests on "leader", each with a follower's append in between;
        // the second follower append of the first request happens once only.
        p.insert(
            "leader".to_string(),
            vec![
                (1_000, Point::TransferIn),
                (1_400, Point::BlockMined),
                (2_000, Point::TransferOut),
                (10_000, Point::TransferIn),
                (10_600, Point::BlockMined),
                (11_200, Point::TransferOut),
            ],
        );
        p.insert(
            "follower".to_string(),
            vec![
                (1_500, Point::AppendIn),
                (1_550, Point::AppendIn),
                (10_700, Point::AppendIn),
            ],
        );
        let (n, steps) = median_path(&p, "leader", 0, u64::MAX);
        assert_eq!(n, 2);
        let got: Vec<(&str, Point, usize, f64)> = steps
            .iter()
            .map(|s| (s.process.as_str(), s.point, s.nth, s.median_us))
            .collect();
        // Offsets 400/600 ns, 500/700 ns and 1,000/1,200 ns: the upper median.
        // The second follower append happened in one request of two: left out.
        assert_eq!(
            got,
            vec![
                ("leader", Point::BlockMined, 0, 0.6),
                ("follower", Point::AppendIn, 0, 0.7),
                ("leader", Point::TransferOut, 0, 1.2),
            ]
        );
        // Only the second request lies in the window.
        let (n, steps) = median_path(&p, "leader", 5_000, u64::MAX);
        assert_eq!(n, 1);
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn recorded_points_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.timeline");
        let mut bytes = Vec::new();
        for (t, p) in [(30u64, Point::Answered), (10, Point::TransferIn), (20, Point::BlockCut)] {
            bytes.extend_from_slice(&t.to_le_bytes());
            bytes.push(p as u8);
        }
        // An unknown point and a torn last event are skipped.
        bytes.extend_from_slice(&40u64.to_le_bytes());
        bytes.push(200);
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            vec![(10, Point::TransferIn), (20, Point::BlockCut), (30, Point::Answered)]
        );
        assert_eq!(read_dir(dir.path()).unwrap().len(), 1);
        for (i, p) in POINTS.iter().enumerate() {
            assert_eq!(*p as usize, i, "{}", p.name());
            assert_eq!(Point::from_u8(i as u8), Some(*p));
        }
    }
}
