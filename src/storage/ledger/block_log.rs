//! The log's "committed block" lines, at most [`BLOCK_LINES_PER_SECOND`]
//! a second, the rest summed up once their second is over.

use super::Ledger;
use crate::ledger::Hash32;

/// Most "committed block" log lines in one second. One line per block is
/// what a person watching a few blocks a second wants, but at hundreds of
/// blocks a second it costs each node a write to stderr and a wake-up of the
/// log file's writer per block, and grows the log by ~60 KB a second.
const BLOCK_LINES_PER_SECOND: u32 = 10;

/// Blocks committed in one second beyond [`BLOCK_LINES_PER_SECOND`]: logged
/// as one line when that second is over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct QuietBlocks {
    blocks: u64,
    first_height: u64,
    last_height: u64,
    txs: u64,
    ok: u64,
}

/// Which committed blocks get a log line of their own.
#[derive(Debug, Default)]
pub(super) struct BlockLog {
    window_start: Option<std::time::Instant>,
    lines: u32,
    quiet: QuietBlocks,
}

impl BlockLog {
    /// Whether the block at `height` gets its own line, and the blocks left
    /// unlogged in a second that is now over.
    fn admit(&mut self, now: std::time::Instant, height: u64, txs: u64, ok: u64) -> (bool, Option<QuietBlocks>) {
        let summary = self.end_window(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
            self.lines = 0;
        }
        if self.lines < BLOCK_LINES_PER_SECOND {
            self.lines += 1;
            return (true, summary);
        }
        let q = &mut self.quiet;
        if q.blocks == 0 {
            q.first_height = height;
        }
        q.blocks += 1;
        q.last_height = height;
        q.txs += txs;
        q.ok += ok;
        (false, summary)
    }

    /// Closes the current second, over or not; returns its unlogged blocks.
    fn take(&mut self) -> Option<QuietBlocks> {
        self.window_start = None;
        let quiet = std::mem::take(&mut self.quiet);
        (quiet.blocks > 0).then_some(quiet)
    }

    /// Closes the current second if it is over; returns its unlogged blocks.
    fn end_window(&mut self, now: std::time::Instant) -> Option<QuietBlocks> {
        let over = self
            .window_start
            .is_some_and(|w| now.duration_since(w) >= std::time::Duration::from_secs(1));
        if !over {
            return None;
        }
        self.take()
    }
}

impl Ledger {
    /// Logs the blocks a second that is over left without a line of their
    /// own; called periodically, so a burst's summary does not wait for the
    /// next block.
    pub fn flush_block_log(&self) {
        self.log_quiet_blocks(|log| log.end_window(std::time::Instant::now()));
    }

    /// Logs the blocks of the current second that had no line of their own
    /// yet: at shutdown, so the log accounts for every block applied.
    pub fn flush_block_log_now(&self) {
        self.log_quiet_blocks(BlockLog::take);
    }

    /// Runs `f` on the block log and logs the summary it hands back, after
    /// the lock is released.
    fn log_quiet_blocks(&self, f: impl FnOnce(&mut BlockLog) -> Option<QuietBlocks>) {
        let quiet = f(&mut self.block_log.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(q) = quiet {
            tracing::info!(
                "committed {} more blocks, heights {}..={}, txs={} ok={} (at most {BLOCK_LINES_PER_SECOND} block lines a second)",
                q.blocks,
                q.first_height,
                q.last_height,
                q.txs,
                q.ok
            );
        }
    }

    /// Logs a committed block: a line of its own while the second has lines
    /// left, else counted into that second's summary.
    pub(super) fn log_committed(&self, height: u64, txs: u64, ok: u64, hash: Hash32) {
        let mut own_line = false;
        self.log_quiet_blocks(|log| {
            let (own, quiet) = log.admit(std::time::Instant::now(), height, txs, ok);
            own_line = own;
            quiet
        });
        if own_line {
            tracing::info!("committed block height={height} txs={txs} ok={ok} hash={hash}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BlockLog, QuietBlocks, BLOCK_LINES_PER_SECOND};
    use std::time::{Duration, Instant};

    #[test]
    fn a_second_logs_its_first_blocks_and_sums_up_the_rest_once_it_is_over() {
        let mut log = BlockLog::default();
        let t0 = Instant::now();
        let limit = u64::from(BLOCK_LINES_PER_SECOND);
        for h in 1..=limit {
            assert_eq!(log.admit(t0, h, 3, 2), (true, None), "block {h}");
        }
        for h in limit + 1..=limit + 15 {
            assert_eq!(log.admit(t0 + Duration::from_millis(900), h, 3, 2), (false, None));
        }
        // Still the same second: nothing to sum up yet.
        assert_eq!(log.end_window(t0 + Duration::from_millis(999)), None);
        let expected = QuietBlocks {
            blocks: 15,
            first_height: limit + 1,
            last_height: limit + 15,
            txs: 45,
            ok: 30,
        };
        // The next block, a second later, brings the summary and has a line.
        assert_eq!(log.admit(t0 + Duration::from_secs(1), 99, 1, 1), (true, Some(expected)));
        // Nothing is summed up twice.
        assert_eq!(log.end_window(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn a_burst_is_summed_up_without_waiting_for_the_next_block() {
        let mut log = BlockLog::default();
        let t0 = Instant::now();
        for h in 0..u64::from(BLOCK_LINES_PER_SECOND) + 2 {
            log.admit(t0, h, 1, 1);
        }
        let q = log
            .end_window(t0 + Duration::from_secs(1))
            .expect("two blocks had no line");
        assert_eq!((q.blocks, q.first_height, q.last_height), (2, 10, 11));
        assert_eq!(log.end_window(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn at_shutdown_the_unfinished_second_is_summed_up_too() {
        let mut log = BlockLog::default();
        let t0 = Instant::now();
        for h in 0..u64::from(BLOCK_LINES_PER_SECOND) + 3 {
            log.admit(t0, h, 1, 1);
        }
        assert_eq!(log.end_window(t0 + Duration::from_millis(10)), None);
        assert_eq!(log.take().map(|q| q.blocks), Some(3));
        assert_eq!(log.take(), None);
    }
}
