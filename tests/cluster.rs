//! End-to-end behaviour of a 3-node cluster of real `bank-server` processes.

mod common;

use bank_ledger::ledger::genesis::with_dev_keys;
use bank_ledger::ledger::{Block, Genesis, Hash32, Transaction};
use common::{wait_for, Cluster, TEST_GENESIS};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Genesis balances after the initial transfers: 0:115, 1:95, 2:90, 3:1000.
const START: [u64; 4] = [115, 95, 90, 1000];

fn follower_of(leader: u64) -> u64 {
    (0..3).find(|i| *i != leader).expect("a follower")
}

#[test]
fn transfer_through_a_follower_is_read_back_through_another_node() {
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let f1 = follower_of(leader);
    let f2 = (0..3).find(|i| *i != leader && *i != f1).unwrap();

    let r = c.json_at(c.addr(f1), &["transfer", "1", "2", "50", "--id", "via-follower"]);
    assert_eq!(r["tx_id"], "via-follower");
    let height = r["height"].as_u64().expect("height");
    assert!(height >= 2, "genesis holds blocks 0 and 1");
    assert_eq!(r["block_hash"].as_str().map(str::len), Some(64));

    // Linearizable: a read through another follower right after the ack sees it.
    let b1 = c.json_at(c.addr(f2), &["balance", "1"]);
    assert_eq!(b1, serde_json::json!({"account": 1, "balance": START[1] - 50}));
    let b2 = c.json_at(c.addr(leader), &["balance", "2"]);
    assert_eq!(b2["balance"], START[2] + 50);

    // The block is on every node once converged.
    let (tip_height, _) = c.wait_converged();
    assert!(tip_height >= height);
    let block = c.json_at(c.addr(f2), &["block", &height.to_string()]);
    assert_eq!(block["hash"], r["block_hash"]);
    assert!(block["txs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == "via-follower"));
}

#[test]
fn rule_violations_are_refused_with_one_clear_line_and_change_nothing() {
    let c = Cluster::start(3, TEST_GENESIS);
    let servers = c.all_servers();
    let cases: [(&[&str], &str); 5] = [
        (
            &["transfer", "1", "2", "1000"],
            "insufficient funds: account 1 has 95 available, needs 1000",
        ),
        (&["transfer", "1", "9", "5"], "unknown account 9"),
        (&["transfer", "1", "1", "5"], "cannot transfer from account 1 to itself"),
        (&["transfer", "1", "2", "0"], "amount must be greater than zero"),
        (&["balance", "42"], "unknown account 42"),
    ];
    for (args, reason) in cases {
        let out = c.client_at(&servers, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: expected {reason:?} in {stderr:?}");
    }
    let bad_amount = c.client_at(&servers, &["transfer", "1", "2", "-5"]);
    assert!(!bad_amount.status.success());
    for (account, expected) in START.iter().enumerate() {
        assert_eq!(c.balance(account as u64), *expected);
    }

    // A refusal for lack of funds is committed under its id, so it is final:
    // the same request later, with the money there, is still refused.
    let out = c.client_at(&servers, &["transfer", "1", "2", "500", "--id", "too-early"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("insufficient funds"));
    c.transfer(3, 1, 900, "top-up");
    let again = c.client_at(&servers, &["transfer", "1", "2", "500", "--id", "too-early"]);
    assert!(!again.status.success(), "a refused id stays refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("account 1 has 95 available, needs 500"));
    assert_eq!(c.balance(1), START[1] + 900);
}

#[test]
fn a_resubmitted_id_is_applied_once_and_other_content_is_refused() {
    let c = Cluster::start(3, TEST_GENESIS);
    let first = c.transfer(3, 0, 10, "pay-rent-42");
    let again = c.transfer(3, 0, 10, "pay-rent-42");
    assert_eq!(first, again, "a resubmission returns the first outcome");
    assert_eq!(c.balance(3), START[3] - 10);
    assert_eq!(c.balance(0), START[0] + 10);

    let out = c.client_at(&c.all_servers(), &["transfer", "3", "0", "11", "--id", "pay-rent-42"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already used for a different transaction"));
    assert_eq!(c.balance(3), START[3] - 10);
}

#[test]
fn audited_balance_check_is_recorded_in_a_block() {
    let c = Cluster::start(3, TEST_GENESIS);
    c.transfer(3, 2, 7, "before-audit");
    let r = c.json(&["balance", "2", "--record", "--id", "audit-1"]);
    assert_eq!(r["balance"], START[2] + 7);
    let height = r["height"].as_u64().unwrap();
    let block = c.json(&["block", &height.to_string()]);
    let i = block["txs"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t["id"] == "audit-1")
        .expect("check is in the block");
    assert_eq!(block["txs"][i]["type"], "balance_check");
    assert_eq!(block["results"][i]["balance"], START[2] + 7);
}

#[test]
fn acknowledged_transfer_survives_leader_kill_and_the_old_leader_catches_up() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    c.transfer(3, 1, 100, "before-kill");
    c.kill(leader);

    let started = Instant::now();
    // The client tries the servers in turn; the dead one is skipped.
    let r = c.transfer(3, 1, 1, "after-kill");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "commit resumed after {took:?}");
    assert!(r["height"].as_u64().is_some());
    let new_leader = c.wait_leader();
    assert_ne!(new_leader, leader);
    assert_eq!(c.balance(1), START[1] + 101);

    c.spawn(leader);
    let (height, tip) = c.wait_converged();
    assert!(height >= r["height"].as_u64().unwrap());
    assert_eq!(tip.len(), 64);
    // The restarted node answers reads from its own copy with the same chain.
    let b = c.json_at(c.addr(leader), &["block", &height.to_string()]);
    assert_eq!(b["hash"], tip.as_str());
}

#[test]
fn every_acknowledged_transfer_survives_sigkill_of_the_whole_cluster() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    let mut ids = Vec::new();
    for i in 0..12u64 {
        let id = format!("durable-{i}");
        c.transfer(3, i % 3, i + 1, &id);
        ids.push(id);
    }
    let moved: u64 = (0..12u64).map(|i| i + 1).sum();
    for id in 0..3 {
        c.kill(id);
    }
    for id in 0..3 {
        c.spawn(id);
    }
    c.wait_leader();
    assert_eq!(c.balance(3), START[3] - moved);
    let total: u64 = (0..4).map(|a| c.balance(a)).sum();
    assert_eq!(total, START.iter().sum::<u64>());
    // `chain` reads the contacted node's own copy: once every node has
    // re-applied its log, each transfer is in it exactly once.
    c.wait_converged();
    let chain = c.json(&["chain", "--from", "0", "--limit", "1000"]);
    let mut seen: Vec<String> = Vec::new();
    for block in chain.as_array().unwrap() {
        for (tx, res) in block["txs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(block["results"].as_array().unwrap())
        {
            if res["status"] == "committed" {
                if let Some(id) = tx["id"].as_str() {
                    seen.push(id.to_string());
                }
            }
        }
    }
    for id in &ids {
        assert_eq!(seen.iter().filter(|s| *s == id).count(), 1, "{id} committed once");
    }
    // Resubmitting after the restart still returns the first outcome.
    let again = c.transfer(3, 0, 1, "durable-0");
    assert_eq!(c.balance(3), START[3] - moved, "{again}");
}

/// Parses and checks a `chain.jsonl` view: links, merkle roots, proof of work
/// and the recorded hashes. Returns the blocks.
fn verify_chain_view(text: &str, genesis: &Genesis) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {i} is not JSON: {e}"));
        let block: Block = serde_json::from_value(v.clone()).expect("line holds a block");
        let hash = Hash32::from_hex(v["hash"].as_str().unwrap()).unwrap();
        assert_eq!(block.hash(), hash, "recorded hash of block {i}");
        assert_eq!(block.height(), i as u64);
        if i == 0 {
            assert_eq!(block, genesis.blocks[0], "genesis block is derived identically");
            block.verify_contents().unwrap();
        } else {
            let prev = &blocks[i - 1];
            block
                .verify_extends(genesis.chain_id(), genesis.difficulty(), prev.height(), prev.hash())
                .unwrap_or_else(|e| panic!("block {i}: {e}"));
        }
        // Anyone holding the view and the genesis file can check every
        // signature: the keys are in genesis, the signatures in the blocks.
        if i as u64 > genesis.last_height() {
            let keys = genesis.keys();
            for tx in block.txs.iter().filter(|t| matches!(t, Transaction::Transfer { .. })) {
                keys.verify(genesis.chain_id(), tx)
                    .unwrap_or_else(|e| panic!("block {i}: {e}"));
            }
        }
        blocks.push(block);
    }
    blocks
}

#[test]
fn json_views_hold_a_verifiable_chain_identical_on_every_node() {
    let c = Cluster::start(3, TEST_GENESIS);
    for i in 0..5u64 {
        c.transfer(3, 0, 1 + i, &format!("view-{i}"));
    }
    c.wait_converged();
    let genesis = Genesis::from_json(&with_dev_keys(TEST_GENESIS)).unwrap();
    let files: Vec<String> = (0..3)
        .map(|id| {
            wait_for("views to catch up", Duration::from_secs(10), || {
                let text = std::fs::read_to_string(c.chain_file(id)).ok()?;
                let n = text.lines().count();
                (n >= 7).then_some(text)
            })
        })
        .collect();
    let blocks = verify_chain_view(&files[0], &genesis);
    assert!(blocks.len() >= 7, "genesis, initial transfers, and five blocks");
    assert_eq!(files[0], files[1]);
    assert_eq!(files[0], files[2]);

    let states = c.data_dir().join("server_0_states");
    let balances: Value = wait_for("balances view", Duration::from_secs(5), || {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(states.join("balances.json")).ok()?).ok()?;
        (v["height"].as_u64()? == blocks.len() as u64 - 1).then_some(v)
    });
    assert_eq!(balances["total"], START.iter().sum::<u64>());
    assert_eq!(balances["balances"]["3"], START[3] - 15);
    let raft: Value = serde_json::from_str(&std::fs::read_to_string(states.join("raft_state.json")).unwrap()).unwrap();
    for field in [
        "term",
        "vote",
        "committed_index",
        "last_applied_index",
        "membership",
        "role",
        "leader_id",
    ] {
        assert!(raft.get(field).is_some(), "raft_state.json lacks {field}: {raft}");
    }
    assert_eq!(raft["membership"]["voters"], serde_json::json!([0, 1, 2]));
}

#[test]
fn a_node_with_another_genesis_refuses_to_join() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    c.kill(2);
    // Wipe node 2 and give it a different genesis file.
    for dir in ["server_2_db", "server_2_blocks", "server_2_raftlog"] {
        std::fs::remove_dir_all(c.data_dir().join(dir)).unwrap();
    }
    let other = c.data_dir().join("other.json");
    std::fs::write(
        &other,
        with_dev_keys(&TEST_GENESIS.replace("\"balance\":1000", "\"balance\":999")),
    )
    .unwrap();
    c.nodes[2].genesis = other;
    c.spawn(2);
    let status = c.wait_exit(2, "node 2 to exit");
    assert!(!status.success());
    let err = c.stderr_of(2);
    assert!(err.contains("genesis mismatch"), "stderr: {err}");
    // The others go on committing: an impostor that refuses their messages
    // must not make them stop.
    c.transfer(3, 0, 1, "still-working");
    for id in [0, 1] {
        assert!(c.is_alive(id), "node {id} stopped: {}", c.stderr_of(id));
    }

    // A data dir created from one genesis refuses to start with another.
    c.kill(0);
    c.nodes[0].genesis = c.data_dir().join("other.json");
    c.spawn(0);
    let status = c.wait_exit(0, "node 0 to exit");
    assert!(!status.success());
    let err = c.stderr_of(0);
    assert!(
        err.contains("genesis mismatch: the data dir holds chain"),
        "stderr: {err}"
    );
}
