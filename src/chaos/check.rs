//! The checker: what must hold after a chaos run.

use super::cluster::ProcessCluster;
use super::workload::{op_balance_changes, Op, OpKind};
use super::Outcome;
use crate::client::{connect, request};
use crate::ledger::{Block, Genesis, Hash32};
use crate::proto::bank::GetBlocksRequest;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// Why the checker could not look at the cluster's end state.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cluster did not converge within {timeout:?}: {last}")]
    NotConverged { timeout: Duration, last: String },
    #[error(transparent)]
    Address(#[from] crate::tls::BadAddress),
    #[error("{addr}: {}", .status.message())]
    Call { addr: String, status: tonic::Status },
    #[error("{addr}: bad block JSON: {source}")]
    BlockJson { addr: String, source: serde_json::Error },
    #[error("{addr}: block {height} has {results} results for {txs} transactions")]
    Results {
        addr: String,
        height: u64,
        results: usize,
        txs: usize,
    },
}

/// Waits until every node answers, agrees on the tip, and has applied its
/// whole log: only then is a resubmission's answer final.
pub async fn wait_quiescent(cluster: &ProcessCluster, timeout: Duration) -> Result<(), CheckError> {
    let until = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < until {
        let st = cluster.statuses().await;
        let all: Option<Vec<_>> = st.into_iter().collect();
        match all {
            None => last = "a node does not answer".into(),
            Some(st) => {
                let same_tip = st
                    .windows(2)
                    .all(|w| w[0].tip_hash == w[1].tip_hash && w[0].height == w[1].height);
                let applied = st.iter().all(|s| s.last_applied_index == s.last_log_index);
                let leader = st.iter().filter(|s| s.role == "leader").count() == 1;
                if same_tip && applied && leader {
                    return Ok(());
                }
                last = format!(
                    "tips {:?}",
                    st.iter().map(|s| (s.id, s.height, s.role.clone())).collect::<Vec<_>>()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(CheckError::NotConverged { timeout, last })
}

/// Final balances must equal genesis plus exactly the operations that
/// succeeded, and the supply's counts the issues and redeems among them.
pub fn final_balances(genesis: &Genesis, ops: &[Op], read: &BTreeMap<u64, u64>) -> Vec<String> {
    let mut expected: BTreeMap<u64, i128> = genesis.balances.iter().map(|(a, b)| (*a, i128::from(*b))).collect();
    for op in ops.iter().filter(|t| t.outcome == Outcome::Committed) {
        for (account, change) in op_balance_changes(&op.kind) {
            *expected.entry(account).or_insert(0) += change;
        }
    }
    let mut v = Vec::new();
    for (account, want) in &expected {
        if *want < 0 {
            v.push(format!(
                "acknowledged operations drive account {account} negative ({want})"
            ));
        }
        let got = read.get(account).map(|b| i128::from(*b));
        if got != Some(*want) {
            v.push(format!(
                "account {account}: balance {got:?}, acknowledged history implies {want}"
            ));
        }
    }
    v
}

/// The supply the committed issues and redeems of `ops` add up to:
/// `(issued, redeemed)`.
pub fn supply_of(ops: &[Op]) -> (u64, u64) {
    let (mut issued, mut redeemed) = (0u64, 0u64);
    for op in ops.iter().filter(|t| t.outcome == Outcome::Committed) {
        match op.kind {
            OpKind::Issue { amount, .. } => issued += amount,
            OpKind::Redeem { amount, .. } => redeemed += amount,
            _ => {}
        }
    }
    (issued, redeemed)
}

/// A node's whole chain: each block with its transactions' statuses.
pub type Chain = Vec<(Block, Vec<String>)>;

/// Fetches a node's whole chain.
async fn fetch_chain(addr: &str, genesis_blocks: u64) -> Result<Chain, CheckError> {
    let mut client = connect(addr)?;
    let mut out = Vec::new();
    loop {
        let r = client
            .get_blocks(request(
                GetBlocksRequest {
                    from_height: out.len() as u64,
                    limit: 256,
                },
                Duration::from_secs(10),
            ))
            .await
            .map_err(|status| CheckError::Call {
                addr: addr.to_string(),
                status,
            })?
            .into_inner();
        if r.blocks_json.is_empty() {
            return Ok(out);
        }
        for json in r.blocks_json {
            let bad_json = |source| CheckError::BlockJson {
                addr: addr.to_string(),
                source,
            };
            let v: Value = serde_json::from_str(&json).map_err(bad_json)?;
            let statuses: Vec<String> = v["results"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| r["status"].as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default();
            let block: Block = serde_json::from_value(v).map_err(bad_json)?;
            // Past genesis, a block's view holds one result per transaction.
            if block.height() >= genesis_blocks && statuses.len() != block.txs.len() {
                return Err(CheckError::Results {
                    addr: addr.to_string(),
                    height: block.height(),
                    results: statuses.len(),
                    txs: block.txs.len(),
                });
            }
            out.push((block, statuses));
        }
    }
}

/// Every node holds the same valid chain; every acknowledged operation is
/// in it exactly once, with the content submitted; nothing else is.
/// Returns the first node's chain, and what is wrong.
pub async fn chains(cluster: &ProcessCluster, genesis: &Genesis, ops: &[Op]) -> (Chain, Vec<String>) {
    let mut v = Vec::new();
    let mut chains = Vec::new();
    for s in cluster.servers() {
        match fetch_chain(&s.addr, genesis.blocks.len() as u64).await {
            Ok(c) => chains.push(c),
            Err(e) => v.push(format!("cannot read chain: {e}")),
        }
    }
    if chains.is_empty() {
        return (Vec::new(), v);
    }
    let chain = &chains[0];
    let hashes = |c: &Vec<(Block, Vec<String>)>| c.iter().map(|(b, _)| b.hash()).collect::<Vec<Hash32>>();
    let reference = hashes(chain);
    for (i, c) in chains.iter().enumerate().skip(1) {
        if hashes(c) != reference {
            v.push(format!("node {i}'s chain differs from node 0's"));
        }
    }
    // Validity: genesis, links, merkle roots, proof of work.
    for (i, (block, _)) in chain.iter().enumerate() {
        let ok = if i == 0 {
            (block == &genesis.blocks[0])
                .then_some(())
                .ok_or("block 0 is not the genesis block".to_string())
        } else {
            let prev = &chain[i - 1].0;
            block
                .verify_extends(genesis.chain_id(), genesis.difficulty(), prev.height(), prev.hash())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Err(e) = ok {
            v.push(format!("invalid chain: {e}"));
        }
    }
    // Committed operations, by id (unique across a run, whatever the kind).
    let submitted: HashMap<&str, &Op> = ops.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut committed: HashMap<String, u32> = HashMap::new();
    for (block, statuses) in chain {
        for (tx, status) in block.txs.iter().zip(statuses) {
            let Some(id) = tx.id() else {
                continue;
            };
            if status != "committed" {
                continue;
            }
            *committed.entry(id.to_string()).or_insert(0) += 1;
            match submitted.get(id.as_str()) {
                None if !id.as_str().starts_with("genesis-") => {
                    v.push(format!("{} {id} is in the chain but was never submitted", tx.kind()))
                }
                Some(op) if op.content_hash() != Some(tx.content_hash()) => v.push(format!(
                    "{} {id} committed with other content than submitted",
                    tx.kind()
                )),
                Some(op) if op.outcome != Outcome::Committed => v.push(format!(
                    "{} {id} committed but was reported {:?}",
                    tx.kind(),
                    op.outcome
                )),
                _ => {}
            }
        }
    }
    for t in ops.iter().filter(|t| t.outcome == Outcome::Committed) {
        match committed.get(&t.id) {
            Some(1) => {}
            Some(n) => v.push(format!("{} {} committed {n} times", t.kind.name(), t.id)),
            None => v.push(format!("acknowledged {} {} is not in the chain", t.kind.name(), t.id)),
        }
    }
    let chain = chains.swap_remove(0);
    (chain, v)
}
