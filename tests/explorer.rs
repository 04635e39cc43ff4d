//! The explorer commands against a real cluster: `tx`, `history`, `watch`.

mod common;

use common::{Cluster, TEST_GENESIS};
use serde_json::Value;
use std::io::{BufRead, BufReader};

#[test]
fn tx_history_and_watch_show_what_the_chain_holds() {
    let c = Cluster::start(3, TEST_GENESIS);
    // `watch` from the next height sees the blocks of the transfers appear.
    let start = c.wait_converged().0 + 1;
    let mut watch = std::process::Command::new(common::CLIENT)
        .args(["--servers", &c.all_servers(), "--json", "watch", "--interval-ms", "100"])
        .args(["--from", &start.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start watch");
    let ok = c.transfer(3, 0, 7, "ex-ok");
    let refused = c.client_at(&c.all_servers(), &["transfer", "1", "0", "5000", "--id", "ex-refused"]);
    assert!(!refused.status.success());
    c.json(&["balance", "0", "--record", "--id", "ex-audit"]);

    let tx = c.json(&["tx", "ex-ok"]);
    assert_eq!(tx["status"], "committed");
    assert_eq!(tx["height"], ok["height"]);
    assert_eq!(tx["block_hash"], ok["block_hash"]);
    assert_eq!(tx["tx"]["from"], 3);
    assert_eq!(tx["tx"]["amount"], 7);
    let tx = c.json(&["tx", "ex-refused"]);
    assert_eq!(tx["status"], "rejected");
    assert!(tx["reason"].as_str().unwrap().contains("insufficient funds"), "{tx}");
    let missing = c.client_at(&c.all_servers(), &["tx", "never-was"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no committed transaction never-was"), "{err}");

    // Account 0's history, newest first: the audit, the refused and the
    // committed transfer, then genesis's transfer into it and its allocation.
    let h = c.json(&["history", "0"]);
    let ids: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tx"]["id"].as_str().unwrap_or("allocation"))
        .collect();
    assert_eq!(
        ids,
        [
            "ex-audit",
            "ex-refused",
            "ex-ok",
            "genesis-3",
            "genesis-1",
            "allocation"
        ],
        "{h}"
    );
    assert_eq!(h["entries"][0]["balance"], 115 + 7);
    assert_eq!(h["balance"], 115 + 7);
    assert!(h["next_before"].is_null());
    // Paged: one block at a time, following next_before to the end.
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut args = vec!["history".to_string(), "0".into(), "--limit".into(), "1".into()];
        if let Some(b) = before {
            args.extend(["--before".into(), b.to_string()]);
        }
        let page = c.json(&args.iter().map(String::as_str).collect::<Vec<_>>());
        for e in page["entries"].as_array().unwrap() {
            seen.push(e["tx"]["id"].as_str().unwrap_or("allocation").to_string());
        }
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let unknown = c.client_at(&c.all_servers(), &["history", "99"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown account 99"));

    // The watcher printed each new block once, in order, as chain.jsonl has it.
    let tip = c.wait_converged().0;
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut heights = Vec::new();
    while heights.last() != Some(&tip) {
        let line = lines.next().expect("watch output").expect("read");
        let b: Value = serde_json::from_str(&line).expect("a block per line");
        heights.push(b["header"]["height"].as_u64().unwrap());
    }
    watch.kill().expect("stop watch");
    let _ = watch.wait();
    assert_eq!(heights, (start..=tip).collect::<Vec<_>>());
    assert!(start <= ok["height"].as_u64().unwrap());
}

/// The leader answers a transfer as soon as its apply has the outcome, before
/// the block is written; a lookup on the same node right after the answer
/// must still find it.
#[test]
fn a_transfer_is_found_on_the_node_that_answered_it_right_after_the_answer() {
    use bank_ledger::proto::bank::{bank_client::BankClient, GetTxRequest};
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let addr = format!("http://{}", c.addr(leader));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = BankClient::connect(addr).await.expect("connect to the leader");
        for i in 0..40 {
            let id = format!("ryw-{i}");
            let reply = client
                .transfer(c.signed(&id, 3, 0, 1))
                .await
                .unwrap_or_else(|e| panic!("transfer {id}: {e}"));
            assert_eq!(reply.get_ref().tx_id, id);
            let found = client
                .get_tx(GetTxRequest {
                    tx_id: id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{id} was answered but the same node does not find it: {e}"));
            let tx: Value = serde_json::from_str(&found.get_ref().json).unwrap();
            assert_eq!(tx["status"], "committed", "{tx}");
        }
    });
}

/// A block a client was told of is there when it asks any node for it,
/// even one that has not applied it yet: past its tip, a node asks the
/// leader. The leader's traffic is delayed, so followers learn of each
/// commit ~400 ms after the client does.
#[test]
fn an_acknowledged_block_is_found_through_a_follower_that_has_not_applied_it() {
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let follower = (leader + 1) % 3;
    let at_leader = c.servers_of(&[leader]);
    let out = c.client_at(&at_leader, &["delay", "--min-ms", "400", "--max-ms", "400"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = c.json_at(&at_leader, &["transfer", "3", "0", "1", "--id", "lagging"]);
    let height = t["height"].as_u64().expect("a height").to_string();
    let block = c.json_at(&c.servers_of(&[follower]), &["block", &height]);
    assert!(
        block["txs"]
            .as_array()
            .expect("txs")
            .iter()
            .any(|tx| tx["id"] == "lagging"),
        "{block}"
    );
    let out = c.client_at(&at_leader, &["delay", "--off"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
