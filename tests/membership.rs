//! Membership changes, snapshots and log compaction with real processes.

mod common;

use common::{wait_for, Cluster, TEST_GENESIS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Small snapshot policy: joiners and laggards must be brought up by snapshot.
const SMALL_SNAPSHOTS: [&str; 4] = ["--snapshot-every", "10", "--keep-log-entries", "2"];

/// Transfers 1 from account 3 to account 0, one after another, each retried
/// with its id until it has a definite answer: the count of acknowledged
/// transfers is then exact.
struct SteadyTransfers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    servers: Arc<Mutex<String>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl SteadyTransfers {
    fn start(servers: String, keystore: std::path::PathBuf) -> SteadyTransfers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let servers = Arc::new(Mutex::new(servers));
        let (s, a, sv) = (stop.clone(), acked.clone(), servers.clone());
        let handle = thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                let id = format!("steady-{i}");
                loop {
                    let list = sv.lock().unwrap().clone();
                    let out = std::process::Command::new(common::CLIENT)
                        .args([
                            "--servers",
                            &list,
                            "--timeout-ms",
                            "5000",
                            "--keystore",
                            keystore.to_str().expect("utf-8 path"),
                            "transfer",
                            "3",
                            "0",
                            "1",
                            "--id",
                            &id,
                        ])
                        .output()
                        .expect("run bank-client");
                    if out.status.success() {
                        a.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(
                        err.contains("no quorum") || err.contains("no server reachable") || err.contains("timed out"),
                        "unexpected refusal of {id}: {err}"
                    );
                }
            }
        });
        SteadyTransfers {
            stop,
            acked,
            servers,
            handle: Some(handle),
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    fn wait_acked(&self, n: u64) {
        wait_for("transfers to be acknowledged", Duration::from_secs(60), || {
            (self.acked() >= n).then_some(())
        });
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("transfer thread");
        }
        self.acked()
    }
}

fn voters(c: &Cluster, servers: &str) -> Vec<u64> {
    let st = c.json_at(servers, &["status"]);
    let leader = st
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "leader")
        .cloned()
        .unwrap_or_default();
    leader["voters"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn growing_3_to_5_to_3_under_steady_transfers_loses_nothing() {
    let mut c = Cluster::start_with(3, TEST_GENESIS, &SMALL_SNAPSHOTS);
    let steady = SteadyTransfers::start(c.all_servers(), c.keystore());
    steady.wait_acked(25);

    // Two new nodes, no copy of anyone's data: they catch up by snapshot.
    let a = c.add_joiner(0);
    let b = c.add_joiner(1);
    for n in [a, b] {
        let out = c.client_at(
            &c.servers_of(&[0, 1, 2]),
            &["cluster", "add", &n.to_string(), c.addr(n)],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    *steady.servers.lock().unwrap() = c.servers_of(&[0, 1, 2, 3, 4]);
    assert_eq!(voters(&c, &c.all_servers()), vec![0, 1, 2, 3, 4]);
    let grown = steady.acked();
    steady.wait_acked(grown + 10);

    // Shrink back to three, removing the original nodes 0 and 1.
    for n in [0u64, 1] {
        let out = c.client_at(&c.servers_of(&[2, 3, 4]), &["cluster", "remove", &n.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    *steady.servers.lock().unwrap() = c.servers_of(&[2, 3, 4]);
    c.kill(0);
    c.kill(1);
    let shrunk = steady.acked();
    steady.wait_acked(shrunk + 10);
    let acked = steady.finish();

    let (height, _) = c.wait_converged_among(&[2, 3, 4]);
    let servers = c.servers_of(&[2, 3, 4]);
    assert_eq!(voters(&c, &servers), vec![2, 3, 4]);
    let b = c.json_at(&servers, &["balances"]);
    assert_eq!(
        b["balances"]["3"],
        1000 - acked,
        "every acknowledged transfer applied once"
    );
    assert_eq!(b["balances"]["0"], 115 + acked);
    assert_eq!(b["total"], 1300);
    // A node that joined late holds the whole chain, from genesis on.
    let chain = std::fs::read_to_string(c.chain_file(a)).unwrap();
    assert_eq!(chain.lines().count() as u64, height + 1);
    let genesis_block = c.json_at(c.addr(a), &["block", "0"]);
    assert_eq!(genesis_block["header"]["height"], 0);
    assert!(
        c.log_of(a).contains("installed snapshot"),
        "node {a} caught up by snapshot"
    );
}

#[test]
fn a_far_behind_node_catches_up_by_snapshot_and_the_log_stays_bounded() {
    let mut c = Cluster::start_with(3, TEST_GENESIS, &SMALL_SNAPSHOTS);
    c.kill(2);
    for i in 0..30u64 {
        c.transfer(3, 1, 1, &format!("while-down-{i}"));
    }
    // The leader's log before its snapshot is purged.
    let leader = c.wait_leader();
    // Snapshots are built in the background: wait for the purge to show.
    let (purged, last) = wait_for("the leader to purge its log", Duration::from_secs(10), || {
        let st = c.json_at(c.addr(leader), &["status"]);
        let me = st.as_array()?.first()?.clone();
        Some((me["purged_index"].as_u64()?, me["last_log_index"].as_u64()?))
    });
    assert!(
        last - purged <= 10 + 2 + 10,
        "log bounded by the policy: {purged}..{last}"
    );

    c.spawn(2);
    let (height, tip) = c.wait_converged();
    assert!(c.log_of(2).contains("installed snapshot"), "{}", c.log_of(2));
    let chain = std::fs::read_to_string(c.chain_file(2)).unwrap();
    assert_eq!(
        chain.lines().count() as u64,
        height + 1,
        "full chain after snapshot install"
    );
    assert!(chain.lines().last().unwrap().contains(&tip));
    assert_eq!(c.json_at(c.addr(2), &["balances"])["balances"]["1"], 95 + 30);
    // The leader's later snapshots took the transaction records of its
    // earlier ones; the installed node still knows every transfer by id.
    let reused = c
        .log_of(leader)
        .lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" taken from the previous snapshot")?;
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .max();
    assert!(reused > Some(0), "{}", c.log_of(leader));
    for i in [0, 15, 29] {
        let tx = c.json_at(c.addr(2), &["tx", &format!("while-down-{i}")]);
        assert_eq!(tx["status"], "committed", "{tx}");
    }
}

#[test]
fn a_wiped_node_under_its_old_id_is_refused_and_replaced_by_a_new_member() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    c.transfer(3, 0, 5, "before-wipe");
    c.kill(2);
    // Half a wipe: the Raft log is left. The node refuses to start on it.
    std::fs::remove_dir_all(c.data_dir().join("server_2_db")).unwrap();
    std::fs::remove_dir_all(c.data_dir().join("server_2_blocks")).unwrap();
    // Every start refuses, not only the first.
    for _ in 0..2 {
        c.spawn(2);
        let status = c.wait_exit(2, "the half-wiped node to stop");
        assert!(!status.success());
        let err = c.stderr_of(2);
        assert!(err.contains("state is partial"), "stderr: {err}");
    }
    // The whole state gone, as with a lost disk.
    for dir in ["server_2_db", "server_2_blocks", "server_2_raftlog"] {
        let _ = std::fs::remove_dir_all(c.data_dir().join(dir));
    }
    c.spawn(2);
    let status = c.wait_exit(2, "the wiped node to stop");
    assert!(!status.success());
    let err = c.stderr_of(2);
    assert!(err.contains("node 2 lost its state"), "stderr: {err}");
    assert!(err.contains("cluster remove 2"), "the error says what to do: {err}");
    c.transfer(3, 0, 1, "still-committing");

    // The documented procedure: remove the old id, add a fresh node.
    c.ok(&["cluster", "remove", "2"]);
    let fresh = c.add_joiner(0);
    let out = c.client_at(
        &c.servers_of(&[0, 1]),
        &["cluster", "add", &fresh.to_string(), c.addr(fresh)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let servers = c.servers_of(&[0, 1, fresh]);
    c.json_at(&servers, &["transfer", "3", "0", "2", "--id", "after-replace"]);
    c.wait_converged_among(&[0, 1, fresh]);
    assert_eq!(voters(&c, &servers), vec![0, 1, fresh]);
    assert_eq!(c.json_at(c.addr(fresh), &["balances"])["balances"]["3"], 1000 - 8);
}

#[test]
fn status_shows_when_a_dead_peer_was_last_heard_and_how_far_behind_it_is() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let dead = (0..3).find(|i| *i != leader).unwrap();
    c.kill(dead);
    for i in 0..3u64 {
        c.transfer(3, 0, 1, &format!("behind-{i}"));
    }
    let peer = wait_for("the leader to notice", Duration::from_secs(10), || {
        let st = c.json_at(c.addr(leader), &["status"]);
        let me = st.as_array()?.first()?.clone();
        let p = me["peers"].as_array()?.iter().find(|p| p["id"] == dead)?.clone();
        (p["last_heard_ms"].as_u64()? >= 1000).then_some(p)
    });
    assert!(peer["lag_entries"].as_u64().unwrap() >= 3, "{peer}");
    let out = c.client_at(c.addr(leader), &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("LAST HEARD") && text.contains("entries"), "{text}");
}
