//! No single node is trusted: attacks by a member gone rogue and by
//! strangers, against real `bank-server` processes.

mod common;

use bank_ledger::ledger::{AccountKey, TxId};
use bank_ledger::proto::bank::bank_client::BankClient;
use bank_ledger::proto::bank::TransferRequest;
use common::{wait_for, Cluster, TEST_GENESIS};
use serde_json::Value;
use std::time::Duration;
use tonic::Code;

/// Balances after TEST_GENESIS's initial transfers.
const START: [u64; 4] = [115, 95, 90, 1000];

fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy()
}

/// Node `id`'s own balances view once it has applied `height`.
fn balances_of(c: &Cluster, id: u64, height: u64) -> Value {
    let file = c.data_dir().join(format!("server_{id}_states")).join("balances.json");
    wait_for(
        &format!("node {id}'s balances at height {height}"),
        Duration::from_secs(20),
        || {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
            (v["height"].as_u64()? >= height).then_some(v)
        },
    )
}

/// Every node acts as a leader that proposes what it is sent without
/// checking signatures (a test-build flag). Whichever leads, the nodes
/// check each transfer again as they apply its block: the unsigned and the
/// forged one move no money anywhere, are refused with their reason, and
/// every node keeps serving.
#[test]
fn a_leader_proposing_unsigned_or_forged_transfers_moves_no_money() {
    let c = Cluster::start_with(3, TEST_GENESIS, &["--rogue-propose-unchecked"]);
    let leader = c.wait_leader();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // The refusal, or None if the transfer was accepted.
    let refusal = |msg: TransferRequest| {
        let addr = c.addr(leader).to_string();
        rt.block_on(async move { BankClient::new(channel(&addr)).transfer(msg).await })
            .err()
    };
    let unsigned = TransferRequest {
        signature: Vec::new(),
        ..c.signed("rogue-unsigned", 0, 1, 100)
    };
    // Account 1's key signs a transfer out of account 0.
    let id = TxId::new("rogue-forged").expect("id");
    let forged = TransferRequest {
        signature: AccountKey::dev(1).sign_transfer(c.chain_id(), &id, 1, 100).0.to_vec(),
        ..c.signed("rogue-forged", 0, 1, 100)
    };
    for (what, msg) in [("unsigned", unsigned), ("forged", forged)] {
        let err = refusal(msg).expect("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
        assert!(
            err.message().contains("not signed by the key of account 0"),
            "{what}: {}",
            err.message()
        );
    }
    // The owner's own transfer under the forged id still goes through.
    let t = c.transfer(0, 1, 5, "rogue-forged");
    let height = t["height"].as_u64().expect("committed at a height");
    for id in 0..3 {
        let b = balances_of(&c, id, height);
        assert_eq!(b["balances"]["0"], START[0] - 5, "node {id}: {b}");
        assert_eq!(b["balances"]["1"], START[1] + 5, "node {id}: {b}");
    }
    // The refusals are in the chain, with their reason.
    let chain = std::fs::read_to_string(c.chain_file(0)).expect("chain view");
    assert_eq!(
        chain.matches("not signed by the key of account 0").count(),
        2,
        "both refusals are recorded"
    );
    let mut c = c;
    for id in 0..3 {
        assert!(c.is_alive(id), "node {id} stopped: {}", c.stderr_of(id));
    }
}

/// The call that once stopped a node: a Vote naming a member as sender and
/// claiming the receiver lost its state, from someone holding neither a
/// certificate nor the cluster secret. It is refused before it is read;
/// the node keeps serving and remembers nothing of it. A request posing as
/// forwarded by a member is refused the same way.
#[test]
fn a_stranger_posing_as_a_member_cannot_stop_a_node_or_speak_for_one() {
    use bank_ledger::proto::raft::raft_service_client::RaftServiceClient;
    use bank_ledger::proto::raft::RaftPayload;
    use bank_ledger::raft::network::{CHAIN_HEADER, EXPECT_HEADER, FROM_HEADER, INCARNATION_HEADER};
    let mut c = Cluster::start(3, TEST_GENESIS);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let chain = c.chain_id().to_hex();
    let vote = |addr: String, proof: Option<&str>| {
        let chain = chain.clone();
        let proof = proof.map(str::to_string);
        rt.block_on(async move {
            let mut req = tonic::Request::new(RaftPayload { data: b"{}".to_vec() });
            let md = req.metadata_mut();
            md.insert(CHAIN_HEADER, chain.parse().expect("header"));
            md.insert(FROM_HEADER, "1".parse().expect("header"));
            md.insert(EXPECT_HEADER, "00".parse().expect("header"));
            md.insert(INCARNATION_HEADER, "f00d".parse().expect("header"));
            if let Some(p) = proof {
                md.insert(bank_ledger::peer_auth::PROOF_HEADER, p.parse().expect("header"));
            }
            RaftServiceClient::new(channel(&addr)).vote(req).await
        })
        .expect_err("refused")
    };
    for proof in [None, Some("00".repeat(32).as_str())] {
        for id in 0..3 {
            let err = vote(c.addr(id).to_string(), proof);
            assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
            assert!(err.message().contains("cluster secret"), "{err:?}");
        }
    }
    // Posing as node 1 forwarding a transfer.
    let mut req = tonic::Request::new(c.signed("posing", 0, 1, 5));
    req.metadata_mut()
        .insert(bank_ledger::wire::FORWARDED_HEADER, "1".parse().expect("header"));
    req.metadata_mut().insert(FROM_HEADER, "1".parse().expect("header"));
    let addr = c.addr(0).to_string();
    let err = rt
        .block_on(async move { BankClient::new(channel(&addr)).transfer(req).await })
        .expect_err("refused");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Every node serves on: the cluster commits, and node 1's own traffic
    // (its incarnation unchanged) is still heard by all.
    c.transfer(3, 0, 1, "after-strangers");
    c.wait_converged();
    for id in 0..3 {
        assert!(c.is_alive(id), "node {id} stopped: {}", c.stderr_of(id));
    }
    assert_eq!(c.balance(0), START[0] + 1);
}
