//! Linearizable reads in real time: a read that starts after a transfer was
//! acknowledged shows that transfer, whichever node answers and whatever
//! node restarted in between.

mod common;

use bank_ledger::client::{connect, request};
use bank_ledger::proto::bank::{BalanceRequest, BalancesRequest, GetTxRequest, SetFaultsRequest, StatusRequest};
use common::{wait_for, Cluster, TEST_GENESIS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Heartbeats rare and elections rarer: a follower learns a new commit
/// index only from the next append, and a leader SIGKILLed and restarted at
/// once is still the leader of its term when it comes back (no follower
/// has timed out), as it is in production when a restart beats the
/// election timeout.
const SLOW_RAFT: &[&str] = &[
    "--heartbeat-ms",
    "1500",
    "--election-timeout-min-ms",
    "8000",
    "--election-timeout-max-ms",
    "9000",
];

fn status(rt: &tokio::runtime::Runtime, addr: &str) -> Option<bank_ledger::proto::bank::StatusReply> {
    rt.block_on(async {
        let mut c = connect(addr).ok()?;
        c.status(request(StatusRequest {}, Duration::from_millis(500)))
            .await
            .ok()
            .map(|r| r.into_inner())
    })
}

/// Transfers around a ring of accounts from `lanes` concurrent clients until
/// `stop`; returns the acknowledged transfer with the greatest height.
fn load_until(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    leader: u64,
    round: u32,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Option<(u64, String)>>> {
    (0..4u64)
        .map(|lane| {
            let addr = c.addr(leader).to_string();
            let stop = Arc::clone(stop);
            let signed: Vec<_> = (0..2000)
                .map(|i| c.signed(&format!("r{round}-l{lane}-{i}"), lane, (lane + 1) % 4, 1))
                .collect();
            rt.spawn(async move {
                let mut client = connect(&addr).ok()?;
                let mut best: Option<(u64, String)> = None;
                for tx in signed {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = tx.tx_id.clone();
                    match client.transfer(request(tx, Duration::from_secs(2))).await {
                        Ok(r) if best.as_ref().is_none_or(|b| r.get_ref().height > b.0) => {
                            best = Some((r.get_ref().height, id));
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                best
            })
        })
        .collect()
}

/// The root cause of stale reads seen under chaos: a leader SIGKILLed under
/// load and restarted before any follower times out comes back as the
/// leader of the same term, with its commit index read back from disk
/// (saved unflushed, so up to sled's flush interval behind). Its read
/// barrier must still cover everything it acknowledged before the kill.
///
/// The followers are paused (SIGSTOP) while it restarts, so that the reads
/// reach it before any follower's answer could advance its commit index:
/// a barrier taken from what it remembers is then deterministically stale.
#[test]
fn a_leader_restarted_within_its_term_reads_no_older_than_it_acknowledged() {
    let mut c = Cluster::start_with(3, TEST_GENESIS, SLOW_RAFT);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let leader = c.wait_leader();
    let followers: Vec<u64> = (0..3).filter(|n| *n != leader).collect();
    // Two rounds: a round whose kill lands right after sled's periodic
    // flush has nothing stale to show.
    for round in 0..2 {
        let term = status(&rt, c.addr(leader)).expect("leader answers").term;
        let stop = Arc::new(AtomicBool::new(false));
        let lanes = load_until(&c, &rt, leader, round, &stop);
        // Long enough for several sled flush intervals of blocks.
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        c.kill(leader);
        let (height, last_tx) = lanes
            .into_iter()
            .filter_map(|l| rt.block_on(l).expect("load lane"))
            .max()
            .expect("some transfer was acknowledged");
        for f in &followers {
            c.pause(*f);
        }
        c.spawn(leader);
        wait_for(
            "the restarted node to lead its term again",
            Duration::from_secs(30),
            || {
                let s = status(&rt, c.addr(leader))?;
                assert_eq!(s.term, term, "the restart is meant to beat the election timeout");
                (s.role == "leader").then_some(())
            },
        );

        let addr = c.addr(leader).to_string();
        let all = {
            let addr = addr.clone();
            rt.spawn(async move {
                let mut client = connect(&addr).expect("client");
                client
                    .balances(request(BalancesRequest {}, Duration::from_secs(8)))
                    .await
                    .map(|r| r.into_inner().height)
            })
        };
        let one = {
            let addr = addr.clone();
            rt.spawn(async move {
                let mut client = connect(&addr).expect("client");
                let msg = BalanceRequest {
                    account: 3,
                    ..Default::default()
                };
                client
                    .balance(request(msg, Duration::from_secs(8)))
                    .await
                    .map(|r| r.into_inner().height)
            })
        };
        let tx = {
            let id = last_tx.clone();
            rt.spawn(async move {
                let mut client = connect(&addr).expect("client");
                client
                    .get_tx(request(
                        GetTxRequest {
                            tx_id: id,
                            ..Default::default()
                        },
                        Duration::from_secs(8),
                    ))
                    .await
                    .map(|r| r.into_inner().json)
            })
        };
        // The reads take their barrier as they arrive and then wait for a
        // quorum that is paused; nothing observable says they arrived, so
        // give loopback ample time before letting the followers answer.
        std::thread::sleep(Duration::from_millis(500));
        for f in &followers {
            c.resume(*f);
        }
        let all = rt.block_on(all).expect("balances task");
        let one = rt.block_on(one).expect("balance task");
        let tx = rt.block_on(tx).expect("tx task");
        let all = all.unwrap_or_else(|e| panic!("round {round}: balances failed: {e}"));
        assert!(
            all >= height,
            "round {round}: balances read at height {all}, after transfer {last_tx} was acknowledged at height {height}"
        );
        let one = one.unwrap_or_else(|e| panic!("round {round}: balance failed: {e}"));
        assert!(
            one >= height,
            "round {round}: balance read at height {one}, after transfer {last_tx} was acknowledged at height {height}"
        );
        let tx = tx.unwrap_or_else(|e| panic!("round {round}: acknowledged transfer {last_tx} not found: {e}"));
        let tx: serde_json::Value = serde_json::from_str(&tx).expect("tx JSON");
        assert_eq!(tx["height"].as_u64(), Some(height), "{tx}");
    }
}

/// A follower learns of a commit only from the leader's next message; here
/// every message the leader sends waits 300 ms, so a lookup that a
/// follower answers from its own state alone misses a transaction the
/// leader has just acknowledged.
#[test]
fn a_transaction_acknowledged_by_the_leader_is_found_at_once_through_a_follower() {
    let c = Cluster::start_with(3, TEST_GENESIS, SLOW_RAFT);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let leader = c.wait_leader();
    let follower = (leader + 1) % 3;
    rt.block_on(async {
        let slow = SetFaultsRequest {
            set_delay: true,
            delay_min_ms: 300,
            delay_max_ms: 300,
            ..Default::default()
        };
        connect(c.addr(leader))
            .expect("client")
            .set_faults(request(slow, Duration::from_secs(5)))
            .await
            .expect("delay the leader's messages");
    });
    rt.block_on(async {
        let mut at_leader = connect(c.addr(leader)).expect("client");
        let mut at_follower = connect(c.addr(follower)).expect("client");
        for i in 0..5 {
            let id = format!("seen-{i}");
            let ack = at_leader
                .transfer(request(c.signed(&id, 3, 0, 1), Duration::from_secs(8)))
                .await
                .unwrap_or_else(|e| panic!("transfer {id}: {e}"))
                .into_inner();
            let found = at_follower
                .get_tx(request(
                    GetTxRequest {
                        tx_id: id.clone(),
                        ..Default::default()
                    },
                    Duration::from_secs(8),
                ))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{id}, acknowledged at height {}, not found via node {follower}: {e}",
                        ack.height
                    )
                })
                .into_inner();
            let tx: serde_json::Value = serde_json::from_str(&found.json).expect("tx JSON");
            assert_eq!(tx["height"].as_u64(), Some(ack.height), "{tx}");
        }
    });
}
