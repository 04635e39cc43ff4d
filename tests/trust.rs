//! No single node is trusted: attacks by a member gone rogue and by
//! strangers, against real `bank-server` processes.

mod common;

use bank_ledger::ledger::{AccountKey, Signature, Transaction, TxId};
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
    let base = c.signed("rogue-forged", 0, 1, 100);
    let as_signed = Transaction::Transfer {
        id: TxId::new("rogue-forged").expect("id"),
        from: 0,
        to: 1,
        amount: 100,
        expires_ms: base.expires_ms,
        signature: Signature::NONE,
    };
    let forged = TransferRequest {
        signature: AccountKey::dev(1).sign(c.chain_id(), &as_signed).0.to_vec(),
        ..base
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
        let b = c.balances_view(id, height);
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

/// Ids are each signer's own: an account's recorded check under an id
/// leaves another account's owner free to use it; nothing enters the chain
/// unsigned, and nobody signs a check for an account not theirs.
#[test]
fn nobody_can_take_another_accounts_id_or_write_to_the_chain_unsigned() {
    use bank_ledger::proto::bank::BalanceRequest;
    let c = Cluster::start(3, TEST_GENESIS);
    // What once squatted the id: now account 1's own check, signed by its key.
    c.ok(&["balance", "1", "--record", "--id", "pay-42"]);
    let t = c.transfer(0, 1, 5, "pay-42");
    assert_eq!(t["status"], "committed", "{t}");
    let mine = c.json(&["tx", "pay-42", "--account", "0"]);
    assert_eq!(mine["tx"]["type"], "transfer", "{mine}");
    assert_eq!(mine["signer"], serde_json::json!({"account": 0}), "{mine}");
    let theirs = c.json(&["tx", "pay-42", "--account", "1"]);
    assert_eq!(theirs["tx"]["type"], "balance_check", "{theirs}");
    let err = c.refused(&["tx", "pay-42"]);
    assert!(
        err.contains("account 0, account 1") && err.contains("--account"),
        "{err}"
    );

    // Straight to the API: unsigned, or signed by another account's key.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let leader = c.wait_leader();
    let ask = |msg: BalanceRequest| {
        let addr = c.addr(leader).to_string();
        rt.block_on(async move { BankClient::new(channel(&addr)).balance(msg).await })
            .expect_err("refused")
    };
    let unsigned = BalanceRequest {
        account: 2,
        record: true,
        tx_id: "squat".into(),
        expires_ms: bank_ledger::client::expiry_in(Duration::from_secs(60)),
        ..Default::default()
    };
    let err = ask(unsigned);
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("carries no signature"), "{err:?}");
    let by_other = bank_ledger::client::signed_balance_check(
        &AccountKey::dev(1),
        c.chain_id(),
        &TxId::new("squat").expect("id"),
        2,
        None,
    );
    let err = ask(by_other);
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("key of account 2"), "{err:?}");
    let err = ask(BalanceRequest {
        account: 2,
        record: true,
        ..Default::default()
    });
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c.refused(&["tx", "squat"]);
    assert!(err.contains("no committed transaction squat"), "{err}");
    // The CLI signs with the account's key, and has none for an unknown account.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(common::CLIENT)
        .args(["--servers", &c.all_servers(), "--keystore"])
        .arg(empty.path())
        .args(["balance", "2", "--record"])
        .output()
        .expect("run bank-client");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success());
    assert!(
        err.contains("no key for account 2") && err.lines().count() == 1,
        "{err}"
    );
}

/// `bank-server genesis` gives every file a nonce: two files with the same
/// accounts make two chains, and a transfer signed for one is refused by
/// the other. An auditor the file names signs checks of any account, in
/// ids of its own.
#[test]
fn each_generated_genesis_is_its_own_chain_and_its_auditors_sign_checks() {
    use bank_ledger::ledger::Genesis;
    let dir = tempfile::tempdir().expect("tempdir");
    let generate = || {
        let out = std::process::Command::new(common::SERVER)
            .args(["genesis", "--accounts", "4", "--balance", "100", "--difficulty", "4"])
            .output()
            .expect("run bank-server genesis");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("genesis JSON");
        v
    };
    let (mut a, b) = (generate(), generate());
    assert!(a["nonce"].as_str().is_some_and(|n| n.len() == 64), "{a}");
    let chain_of = |v: &Value| Genesis::from_json(&v.to_string()).expect("valid genesis").chain_id();
    assert_ne!(chain_of(&a), chain_of(&b), "same accounts, another chain");

    // An auditor for chain a, with a key of its own.
    let auditor_dir = dir.path().join("auditor");
    let out = std::process::Command::new(common::CLIENT)
        .args(["--json", "--keystore"])
        .arg(&auditor_dir)
        .args(["keygen", "900"])
        .output()
        .expect("run bank-client keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).expect("keygen JSON");
    a["auditors"] = serde_json::json!([made["public_key"]]);
    let c = Cluster::start(3, &a.to_string());
    assert_eq!(c.chain_id(), chain_of(&a));

    // Signed for chain b: not good here.
    let leader = c.wait_leader();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let elsewhere = bank_ledger::client::signed_transfer(
        &AccountKey::dev(0),
        chain_of(&b),
        &TxId::new("replayed").expect("id"),
        1,
        5,
    );
    let addr = c.addr(leader).to_string();
    let err = rt
        .block_on(async move { BankClient::new(channel(&addr)).transfer(elsewhere).await })
        .expect_err("refused");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("does not verify"), "{err:?}");
    c.transfer(0, 1, 5, "replayed");

    let key_file = auditor_dir.join("900.key");
    let key_file = key_file.to_str().expect("utf-8 path");
    let audited = c.json(&[
        "balance",
        "2",
        "--record",
        "--id",
        "replayed",
        "--auditor",
        "0",
        "--auditor-key",
        key_file,
    ]);
    assert_eq!(audited["balance"], 100, "{audited}");
    let found = c.json(&["tx", "replayed", "--auditor", "0"]);
    assert_eq!(found["signer"], serde_json::json!({"auditor": 0}), "{found}");
    assert_eq!(found["tx"]["auditor"], 0, "{found}");
    let err = c.refused(&["balance", "2", "--record", "--auditor", "1", "--auditor-key", key_file]);
    assert!(err.contains("unknown auditor 1"), "{err}");
    // An account's key is no auditor's.
    let err = c.refused(&[
        "balance",
        "2",
        "--record",
        "--auditor",
        "0",
        "--auditor-key",
        c.keystore().join("2.key").to_str().expect("utf-8 path"),
    ]);
    assert!(err.contains("does not verify with the key of auditor 0"), "{err}");
}

/// Sends `data` as the chunk at `offset` of snapshot `meta` to node `to`,
/// as node `from` would (with its proof); the refusal, if any.
#[allow(clippy::too_many_arguments)]
fn send_snapshot_chunk(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    from: u64,
    to: u64,
    meta: bank_ledger::raft::SnapshotMeta,
    offset: u64,
    data: Vec<u8>,
    done: bool,
) -> Option<tonic::Status> {
    use bank_ledger::proto::raft::raft_service_client::RaftServiceClient;
    use bank_ledger::proto::raft::RaftPayload;
    use bank_ledger::raft::network::CHAIN_HEADER;
    let chunk = openraft::raft::InstallSnapshotRequest::<bank_ledger::raft::TypeConfig> {
        vote: openraft::Vote::new_committed(1, from),
        meta,
        offset,
        data,
        done,
    };
    let mut req = tonic::Request::new(RaftPayload {
        data: bank_ledger::codec::encode(&chunk).expect("encode"),
    });
    c.peer_gate().stamp(from, req.metadata_mut());
    req.metadata_mut()
        .insert(CHAIN_HEADER, c.chain_id().to_hex().parse().expect("header"));
    let addr = c.addr(to).to_string();
    rt.block_on(async move { RaftServiceClient::new(channel(&addr)).install_snapshot(req).await })
        .err()
}

/// A member may send only what a snapshot can be: a chunk past the size
/// limit, or one that leaves a hole in the file, is refused before
/// openraft writes it (openraft would seek wherever a chunk says, and a
/// failed write stops the node). The node keeps serving and catches up.
#[test]
fn a_members_oversized_or_holed_snapshot_chunk_is_refused_and_the_node_serves_on() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let target = (leader + 1) % 3;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let meta = bank_ledger::raft::SnapshotMeta {
        snapshot_id: "forged-1".into(),
        ..Default::default()
    };
    let send = |offset: u64, len: usize| {
        send_snapshot_chunk(&c, &rt, leader, target, meta.clone(), offset, vec![7; len], false)
    };
    let err = send(bank_ledger::limits::MAX_SNAPSHOT_BYTES, 16).expect("past the limit");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("passes the limit"), "{err:?}");
    // A first chunk may reach openraft (which refuses or keeps it as the
    // start of a snapshot); a chunk far past it may not.
    let _ = send(0, 16);
    let err = send(1 << 30, 16).expect("a hole");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("leaves a hole"), "{err:?}");

    // The node serves on and stays with the cluster.
    assert!(c.is_alive(target), "node {target} stopped: {}", c.stderr_of(target));
    c.transfer(0, 1, 5, "after-chunks");
    c.wait_converged();
    for id in 0..3 {
        assert!(c.is_alive(id), "node {id} stopped: {}", c.stderr_of(id));
    }
}

/// A snapshot is checked against the chain before it is used: the
/// leader's own snapshot with money moved in its balances (the blocks say
/// otherwise), sent whole by the leader, is refused with what is wrong; the
/// follower keeps its balances and serves on.
#[test]
fn a_forged_snapshot_from_the_leader_is_refused_and_the_node_keeps_its_state() {
    use bank_ledger::storage::snapshot::{SnapshotReader, SnapshotWriter};
    let mut c = Cluster::start_with(3, TEST_GENESIS, &["--snapshot-every", "1", "--keep-log-entries", "2"]);
    let leader = c.wait_leader();
    let target = (leader + 1) % 3;
    c.transfer(0, 1, 5, "before-snapshot");
    let (height, _) = c.wait_converged();
    // The leader's snapshot of the chain as it is now.
    let file = c.data_dir().join(format!("server_{leader}_snapshot.bin"));
    let account = |id: u64| [b"a:".as_slice(), &id.to_be_bytes()].concat();
    let (meta, mut records) = wait_for("the leader's snapshot at the tip", Duration::from_secs(20), || {
        let mut r = SnapshotReader::open(&file).ok()?;
        let mut records = Vec::new();
        while let Some(rec) = r.next_record().ok()? {
            records.push(rec);
        }
        let (_, tip) = records.iter().find(|(k, _)| k.as_slice() == b"m:tip")?;
        let tip: Option<(u64, bank_ledger::ledger::Hash32)> = bank_ledger::codec::decode(tip).ok()?;
        (tip?.0 == height).then_some((r.meta, records))
    });
    // 50 of account 3's money moved to account 0, with no transfer.
    for (k, v) in records.iter_mut() {
        let delta: i64 = if *k == account(0) {
            50
        } else if *k == account(3) {
            -50
        } else {
            continue;
        };
        let balance: u64 = bank_ledger::codec::decode(v).expect("balance");
        *v = bank_ledger::codec::encode(&balance.checked_add_signed(delta).expect("amount")).expect("encode");
    }
    let forged = c.data_dir().join("forged.bin");
    let meta = bank_ledger::raft::SnapshotMeta {
        snapshot_id: "forged-2".into(),
        ..meta
    };
    let mut w = SnapshotWriter::create(&forged, &meta).expect("create");
    for (k, v) in &records {
        w.record(k, v).expect("record");
    }
    w.finish().expect("finish");
    let before = c.balances_view(target, height);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let data = std::fs::read(&forged).expect("read");
    let err = send_snapshot_chunk(&c, &rt, leader, target, meta, 0, data, true).expect("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("snapshot refused: it gives account 0 a balance of 160, but its blocks give Some(110)"),
        "{err:?}"
    );
    assert!(c.is_alive(target), "node {target} stopped: {}", c.stderr_of(target));
    assert_eq!(c.balances_view(target, height)["balances"], before["balances"]);
    c.transfer(0, 1, 5, "after-snapshot");
    let (after, _) = c.wait_converged();
    assert!(after > height);
    assert_eq!(c.balances_view(target, after)["balances"]["0"], 105);
    for id in 0..3 {
        assert!(c.is_alive(id), "node {id} stopped: {}", c.stderr_of(id));
    }
}
