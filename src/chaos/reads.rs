//! The workload's reads, and the check that each was linearizable.
//!
//! Three kinds, as a client issues them: an atomic read of every balance
//! (`bank-client balances`), one account's balance (`balance`) and a
//! lookup of a transaction the client has seen acknowledged (`tx ID`).
//! Each records when it was sent and when its answer arrived, on one clock
//! shared with the transfers' acknowledgements; after the run the checker
//! replays the final chain and holds every read to three rules:
//!
//! 1. Content: a balance read equals genesis plus exactly the operations
//!    (transfers, posts, issues, redeems) committed at or below the height
//!    it reports.
//! 2. Real time: a read sent after a transfer was acknowledged reports at
//!    least that transfer's height (a lookup finds the transfer).
//! 3. Monotonic: a read sent after another read's answer arrived never
//!    reports a lower height.

use crate::client::{call_any, request, Server};
use crate::ledger::{Block, Genesis};
use crate::proto::bank::{BalanceRequest, BalancesRequest, GetTxRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;

/// Violations of one rule listed in full before the rest are only counted.
const MAX_LISTED: usize = 20;

/// What one read returned.
#[derive(Debug, Clone)]
pub enum ReadKind {
    /// Every account's balance.
    All(BTreeMap<u64, u64>),
    /// One account's balance.
    One { account: u64, balance: u64 },
    /// A lookup of a transfer acknowledged at `acked_height`; `found`
    /// is the height the node reported, `None` if it said not found.
    Tx {
        id: String,
        acked_height: u64,
        found: Option<u64>,
    },
}

impl ReadKind {
    pub fn name(&self) -> &'static str {
        match self {
            ReadKind::All(_) => "balances",
            ReadKind::One { .. } => "balance",
            ReadKind::Tx { .. } => "tx",
        }
    }
}

/// One answered read.
#[derive(Debug, Clone)]
pub struct ReadOp {
    /// When the request was sent, since the run began.
    pub sent: Duration,
    /// When the answer arrived.
    pub answered: Duration,
    /// The chain height the node read at (for a lookup: the height it
    /// found the transaction at).
    pub height: u64,
    pub kind: ReadKind,
}

/// Every read of a run.
#[derive(Debug, Default)]
pub struct ReadLog {
    pub ops: Vec<ReadOp>,
    /// Reads that got no answer (timeouts, no leader): they prove nothing.
    pub failed: u64,
}

/// Issues reads and logs them; cheap to clone into each client.
#[derive(Clone)]
pub struct Reader {
    servers: Vec<Server>,
    timeout: Duration,
    /// The clock every time in the history is measured on.
    start: Instant,
    log: Arc<Mutex<ReadLog>>,
}

impl Reader {
    pub fn new(servers: Vec<Server>, timeout: Duration, start: Instant, log: Arc<Mutex<ReadLog>>) -> Reader {
        Reader {
            servers,
            timeout,
            start,
            log,
        }
    }

    /// The same reader, trying the servers from `first` on.
    pub fn starting_at(&self, first: usize) -> Reader {
        let mut r = self.clone();
        if !r.servers.is_empty() {
            let n = first % r.servers.len();
            r.servers.rotate_left(n);
        }
        r
    }

    /// Time since the run began.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn record(&self, sent: Duration, read: Result<(u64, ReadKind), tonic::Status>) {
        let answered = self.now();
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok((height, kind)) => log.ops.push(ReadOp {
                sent,
                answered,
                height,
                kind,
            }),
            Err(_) => log.failed += 1,
        }
    }

    /// An atomic read of every balance.
    pub async fn all(&self) {
        let sent = self.now();
        let r = call_any(&self.servers, self.timeout, |mut c, t| async move {
            Ok(c.balances(request(BalancesRequest {}, t)).await?.into_inner())
        })
        .await
        .map(|r| {
            let balances = r.balances.into_iter().map(|b| (b.account, b.balance)).collect();
            (r.height, ReadKind::All(balances))
        });
        self.record(sent, r);
    }

    /// One account's balance.
    pub async fn one(&self, account: u64) {
        let sent = self.now();
        let r = call_any(&self.servers, self.timeout, |mut c, t| async move {
            let msg = BalanceRequest {
                account,
                ..Default::default()
            };
            Ok(c.balance(request(msg, t)).await?.into_inner())
        })
        .await
        .map(|r| {
            (
                r.height,
                ReadKind::One {
                    account,
                    balance: r.balance,
                },
            )
        });
        self.record(sent, r);
    }

    /// A lookup of `id`, acknowledged at `acked_height` before this call.
    pub async fn tx(&self, id: &str, acked_height: u64) {
        let sent = self.now();
        let r = call_any(&self.servers, self.timeout, |mut c, t| async move {
            // Chaos ids are random: one signer's each.
            let msg = GetTxRequest {
                tx_id: id.to_string(),
                ..Default::default()
            };
            Ok(c.get_tx(request(msg, t)).await?.into_inner())
        })
        .await;
        let kind = |found| ReadKind::Tx {
            id: id.to_string(),
            acked_height,
            found,
        };
        let r = match r {
            Ok(reply) => serde_json::from_str::<serde_json::Value>(&reply.json)
                .ok()
                .and_then(|v| v["height"].as_u64())
                .map(|h| (h, kind(Some(h))))
                .ok_or_else(|| tonic::Status::internal("lookup reply without a height")),
            Err(s) if s.code() == Code::NotFound => Ok((0, kind(None))),
            Err(s) => Err(s),
        };
        self.record(sent, r);
    }
}

/// What the read check found.
#[derive(Debug, Default)]
pub struct ReadCheck {
    pub violations: Vec<String>,
    /// Reads that missed a transfer acknowledged before they were sent.
    pub stale: u64,
    /// Reads that reported a lower height than a read answered before.
    pub went_back: u64,
    /// Reads whose content was not the chain's state at their height.
    pub wrong: u64,
}

/// The greatest height among `events` (time, height) strictly before `t`;
/// `events` sorted by time, `prefix_max[i]` the max over `events[..=i]`.
fn max_before(events: &[(Duration, u64)], prefix_max: &[u64], t: Duration) -> Option<u64> {
    let n = events.partition_point(|(at, _)| *at < t);
    n.checked_sub(1).map(|i| prefix_max[i])
}

fn sorted_with_prefix_max(mut events: Vec<(Duration, u64)>) -> (Vec<(Duration, u64)>, Vec<u64>) {
    events.sort();
    let mut max = 0;
    let prefix = events
        .iter()
        .map(|(_, h)| {
            max = max.max(*h);
            max
        })
        .collect();
    (events, prefix)
}

/// Checks every read against the final chain (`(block, per-tx status)`,
/// from genesis on) and the acknowledgements (`(when, height)`).
pub fn check(
    genesis: &Genesis,
    chain: &[(Block, Vec<String>)],
    acks: Vec<(Duration, u64)>,
    reads: &[ReadOp],
) -> ReadCheck {
    let mut out = ReadCheck::default();
    let mut listed = [0usize; 3];
    let mut note = |out: &mut ReadCheck, rule: usize, v: String| {
        if listed[rule] < MAX_LISTED {
            out.violations.push(v);
        }
        listed[rule] += 1;
    };

    // Rule 1: replay the chain once, checking reads in height order.
    let genesis_height = genesis.blocks.len().saturating_sub(1) as u64;
    let mut by_height: Vec<&ReadOp> = reads
        .iter()
        .filter(|r| !matches!(r.kind, ReadKind::Tx { .. }))
        .collect();
    by_height.sort_by_key(|r| r.height);
    let mut state: BTreeMap<u64, i128> = genesis.balances.iter().map(|(a, b)| (*a, i128::from(*b))).collect();
    let mut blocks = chain.iter().filter(|(b, _)| b.height() > genesis_height).peekable();
    for read in by_height {
        if read.height < genesis_height {
            out.wrong += 1;
            note(
                &mut out,
                0,
                format!(
                    "read at {:.3}s reports height {}, below genesis",
                    secs(read.sent),
                    read.height
                ),
            );
            continue;
        }
        while let Some((block, statuses)) = blocks.next_if(|(b, _)| b.height() <= read.height) {
            for (tx, status) in block.txs.iter().zip(statuses) {
                if status == "committed" {
                    for (account, change) in super::workload::balance_changes(tx) {
                        *state.entry(account).or_insert(0) += change;
                    }
                }
            }
        }
        let tip = chain.last().map_or(0, |(b, _)| b.height());
        if read.height > tip {
            out.wrong += 1;
            note(
                &mut out,
                0,
                format!(
                    "read at {:.3}s reports height {}, above the final tip {tip}",
                    secs(read.sent),
                    read.height
                ),
            );
            continue;
        }
        let differs = match &read.kind {
            ReadKind::All(balances) => {
                balances.len() != state.len() || balances.iter().any(|(a, b)| state.get(a) != Some(&i128::from(*b)))
            }
            ReadKind::One { account, balance } => state.get(account) != Some(&i128::from(*balance)),
            ReadKind::Tx { .. } => false,
        };
        if differs {
            out.wrong += 1;
            note(
                &mut out,
                0,
                format!(
                    "{} read at {:.3}s is not the chain's state at its height {}",
                    read.kind.name(),
                    secs(read.sent),
                    read.height
                ),
            );
        }
    }

    // Rules 2 and 3.
    let (acks, acks_max) = sorted_with_prefix_max(acks);
    let answered = reads
        .iter()
        .filter(|r| !matches!(r.kind, ReadKind::Tx { .. }))
        .map(|r| (r.answered, r.height))
        .collect();
    let (answered, answered_max) = sorted_with_prefix_max(answered);
    for read in reads {
        if let ReadKind::Tx {
            id,
            acked_height,
            found,
        } = &read.kind
        {
            if *found != Some(*acked_height) {
                out.stale += 1;
                let got = found.map_or("not found".to_string(), |h| format!("found at height {h}"));
                note(
                    &mut out,
                    1,
                    format!(
                        "stale lookup: started {:.3}s, transfer {id} acknowledged at height {acked_height} before was {got}",
                        secs(read.sent)
                    ),
                );
            }
            continue;
        }
        if let Some(h) = max_before(&acks, &acks_max, read.sent).filter(|h| *h > read.height) {
            out.stale += 1;
            note(
                &mut out,
                1,
                format!(
                    "stale read: started {:.3}s height {}, but a transfer at height {h} was acknowledged before",
                    secs(read.sent),
                    read.height
                ),
            );
        }
        if let Some(h) = max_before(&answered, &answered_max, read.sent).filter(|h| *h > read.height) {
            out.went_back += 1;
            note(
                &mut out,
                2,
                format!(
                    "read started {:.3}s at height {} after a read had returned height {h}",
                    secs(read.sent),
                    read.height
                ),
            );
        }
    }
    for (rule, what) in [
        "reads not equal to the chain's state",
        "stale reads",
        "reads back in height",
    ]
    .iter()
    .enumerate()
    {
        if listed[rule] > MAX_LISTED {
            out.violations
                .push(format!("{} more {what} not listed", listed[rule] - MAX_LISTED));
        }
    }
    out
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sent_ms: u64, answered_ms: u64, height: u64) -> ReadOp {
        ReadOp {
            sent: Duration::from_millis(sent_ms),
            answered: Duration::from_millis(answered_ms),
            height,
            kind: ReadKind::One {
                account: 0,
                balance: 100,
            },
        }
    }

    fn genesis() -> Genesis {
        let file =
            crate::ledger::genesis::GenesisFile::generated(2, 100, 0, |id| crate::ledger::AccountKey::dev(id).public());
        Genesis::build(file).expect("genesis")
    }

    #[test]
    fn a_read_sent_after_an_acknowledgement_must_reach_its_height() {
        let g = genesis();
        let base = g.blocks.len() as u64 - 1;
        let chain: Vec<(Block, Vec<String>)> = g.blocks.iter().map(|b| (b.clone(), vec![])).collect();
        // Acknowledged at height base+5 at 10 ms; a read sent at 11 ms
        // that reports base is stale; one sent at 9 ms is not.
        let acks = vec![(Duration::from_millis(10), base + 5)];
        let c = check(&g, &chain, acks.clone(), &[read(9, 12, base)]);
        assert_eq!(c.stale, 0, "{:?}", c.violations);
        let c = check(&g, &chain, acks, &[read(11, 12, base)]);
        assert_eq!(c.stale, 1, "{:?}", c.violations);
        assert!(
            c.violations[0].starts_with("stale read: started 0.011s"),
            "{:?}",
            c.violations
        );
    }

    #[test]
    fn a_read_sent_after_another_answered_must_not_go_back() {
        let g = genesis();
        let base = g.blocks.len() as u64 - 1;
        let chain: Vec<(Block, Vec<String>)> = g.blocks.iter().map(|b| (b.clone(), vec![])).collect();
        // Overlapping reads may differ; a later one may not go back.
        let overlapping = [read(0, 10, base + 3), read(5, 12, base)];
        let c = check(&g, &chain, vec![], &overlapping);
        assert_eq!(c.went_back, 0, "{:?}", c.violations);
        let after = [read(0, 10, base + 3), read(11, 12, base)];
        let c = check(&g, &chain, vec![], &after);
        assert_eq!(c.went_back, 1, "{:?}", c.violations);
        // Heights above the final tip are themselves wrong.
        assert_eq!(c.wrong, 1, "{:?}", c.violations);
    }

    #[test]
    fn a_lookup_must_find_what_was_acknowledged() {
        let g = genesis();
        let chain: Vec<(Block, Vec<String>)> = g.blocks.iter().map(|b| (b.clone(), vec![])).collect();
        let lookup = |found: Option<u64>| ReadOp {
            sent: Duration::from_millis(5),
            answered: Duration::from_millis(6),
            height: found.unwrap_or(0),
            kind: ReadKind::Tx {
                id: "c0-1".into(),
                acked_height: 7,
                found,
            },
        };
        assert_eq!(check(&g, &chain, vec![], &[lookup(Some(7))]).stale, 0);
        assert_eq!(check(&g, &chain, vec![], &[lookup(None)]).stale, 1);
    }
}
