//! Hostile input against real `bank-server` processes: each gets a precise
//! error, the server keeps serving, nothing is applied.

mod common;

use bank_ledger::ledger::Genesis;
use bank_ledger::proto::bank::bank_client::BankClient;
use bank_ledger::proto::bank::TransferRequest;
use bank_ledger::proto::raft::raft_service_client::RaftServiceClient;
use bank_ledger::proto::raft::RaftPayload;
use bank_ledger::raft::network::CHAIN_HEADER;
use bytes::{Buf, BufMut};
use common::{Cluster, TEST_GENESIS};
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Balances after TEST_GENESIS's initial transfers.
const START: [u64; 4] = [115, 95, 90, 1000];

/// Sends raw bytes as a gRPC message body: what a broken or hostile client
/// can put on the wire, bypassing protobuf encoding.
#[derive(Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy()
}

/// Sends `body` to `path`; with `member`, as node 0 proving it is one.
async fn raw_call(
    addr: &str,
    path: &'static str,
    body: Vec<u8>,
    member: Option<&bank_ledger::peer_auth::PeerGate>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel(addr));
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(body);
    if let Some(gate) = member {
        gate.stamp(0, req.metadata_mut());
    }
    grpc.unary(req, path.parse().expect("path"), RawCodec)
        .await
        .map(|r| r.into_inner())
}

fn assert_unchanged(c: &Cluster) {
    let balances = c.json(&["balances"]);
    for (account, expected) in START.iter().enumerate() {
        assert_eq!(balances["balances"][account.to_string()], *expected, "{balances}");
    }
}

#[test]
fn malformed_protobuf_is_refused_and_the_server_keeps_serving() {
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bodies: [&[u8]; 4] = [
        // Field 1 claims 200 bytes of string and the message ends.
        &[0x0a, 0xc8, 0x01, b'x'],
        // An invalid wire type (7).
        &[0x0f, 0x01],
        // A varint that never ends.
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // Field 1 (id) holding bytes that are not UTF-8.
        &[0x0a, 0x02, 0xff, 0xfe],
    ];
    for addr in [c.addr(leader), c.addr((leader + 1) % 3)] {
        for body in bodies {
            let err = rt
                .block_on(raw_call(addr, "/bank.v1.Bank/Transfer", body.to_vec(), None))
                .expect_err("malformed body refused");
            assert!(
                matches!(err.code(), Code::Internal | Code::InvalidArgument),
                "{body:?}: {err:?}"
            );
            assert!(err.message().contains("decode"), "{body:?}: {err:?}");
        }
        // Garbage from a member (it proves it is one) is refused as garbage.
        let gate = c.peer_gate();
        let err = rt
            .block_on(raw_call(
                addr,
                "/bank.raft.RaftService/Vote",
                vec![0x0a, 0x05, 1, 2],
                Some(&gate),
            ))
            .expect_err("malformed Raft body refused");
        assert!(matches!(err.code(), Code::Internal | Code::InvalidArgument), "{err:?}");
    }
    assert_unchanged(&c);
    c.transfer(0, 1, 5, "after-garbage");
    assert_eq!(c.balance(1), START[1] + 5);
}

#[test]
fn huge_amounts_are_refused_without_overflow() {
    let c = Cluster::start(3, TEST_GENESIS);
    let servers = c.all_servers();
    let max = u64::MAX.to_string();
    let out = c.client_at(&servers, &["transfer", "0", "1", &max]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("insufficient funds"), "{err}");
    // One past u64: the CLI refuses it before sending anything.
    let out = c.client_at(&servers, &["transfer", "0", "1", "18446744073709551616"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("18446744073709551616"), "{err}");
    // Straight through gRPC, around the CLI: the same precise refusal.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = c.addr(c.wait_leader()).to_string();
    let signed = c.signed("huge-1", 0, 1, u64::MAX);
    let reply = rt
        .block_on(async move {
            let mut client = BankClient::new(channel(&addr));
            client.transfer(signed).await
        })
        .expect_err("a transfer of u64::MAX is refused");
    assert!(reply.message().contains("insufficient funds"), "{reply:?}");
    assert_unchanged(&c);
}

#[test]
fn raft_traffic_from_a_node_that_is_not_a_member_is_refused() {
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let before: Vec<u64> = c.status().iter().filter_map(|s| s["term"].as_u64()).collect();
    let genesis_path = c.data_dir().join("genesis.json");
    let chain = bank_ledger::config::load_genesis(&genesis_path)
        .expect("genesis")
        .chain_id()
        .to_hex();

    // Node 99 asks for votes with a far higher term: were it heard, every
    // node would step up to that term and the leader would be deposed.
    let vote = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(before.iter().max().copied().unwrap_or(0) + 100, 99),
        last_log_id: Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(1_000, 99),
            1_000_000,
        )),
    };
    let data = bank_ledger::codec::encode(&vote).expect("encode vote");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // It holds the cluster secret (a removed node would): what stops it is
    // that it is no member.
    let gate = c.peer_gate();
    for id in 0..3 {
        let addr = c.addr(id).to_string();
        let data = data.clone();
        let chain = chain.clone();
        let gate = gate.clone();
        let err = rt
            .block_on(async move {
                let mut client = RaftServiceClient::new(channel(&addr));
                let mut req = tonic::Request::new(RaftPayload { data });
                req.metadata_mut().insert(CHAIN_HEADER, chain.parse().expect("header"));
                gate.stamp(99, req.metadata_mut());
                client.vote(req).await
            })
            .expect_err("vote from a non-member refused");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("node 99 is not a member"), "{err:?}");
    }
    let after = c.status();
    for s in &after {
        assert!(
            before.contains(&s["term"].as_u64().unwrap_or(u64::MAX)),
            "term moved: {s}"
        );
        assert_eq!(s["leader_id"].as_u64(), Some(leader), "{s}");
    }
    c.transfer(0, 1, 5, "after-rogue-vote");
    assert_eq!(c.balance(1), START[1] + 5);
}

#[test]
fn transfers_not_signed_by_the_source_accounts_key_are_refused() {
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let follower = (leader + 1) % 3;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let send = |addr: &str, msg: TransferRequest| {
        let addr = addr.to_string();
        rt.block_on(async move { BankClient::new(channel(&addr)).transfer(msg).await })
            .expect_err("refused")
    };
    let good = c.signed("sig-1", 0, 1, 5);
    let mut cases: Vec<(&str, TransferRequest, Code, &str)> = Vec::new();
    cases.push((
        "missing",
        TransferRequest {
            signature: vec![],
            ..good.clone()
        },
        Code::Unauthenticated,
        "carries no signature",
    ));
    cases.push((
        "short",
        TransferRequest {
            signature: vec![1; 10],
            ..good.clone()
        },
        Code::InvalidArgument,
        "is 10 bytes",
    ));
    cases.push((
        "garbage",
        TransferRequest {
            signature: vec![7; 64],
            ..good.clone()
        },
        Code::Unauthenticated,
        "does not verify with the key of account 0",
    ));
    // Account 1's own valid signature, presented for a transfer out of 0.
    let mut by_other = c.signed("sig-1", 1, 1, 5);
    by_other.from = 0;
    cases.push(("other key", by_other, Code::Unauthenticated, "does not verify"));
    // A valid signature with the amount changed afterwards.
    cases.push((
        "altered amount",
        TransferRequest {
            amount: 50,
            ..good.clone()
        },
        Code::Unauthenticated,
        "does not verify",
    ));
    // Signed for another chain with the same keys: not replayable here.
    let other = Genesis::from_json(&bank_ledger::ledger::genesis::with_dev_keys(
        &TEST_GENESIS.replace("\"difficulty\": 8", "\"difficulty\": 7"),
    ))
    .expect("other genesis");
    assert_ne!(other.chain_id(), c.chain_id());
    let id = bank_ledger::ledger::TxId::new("sig-1").unwrap();
    let elsewhere =
        bank_ledger::client::signed_transfer(&bank_ledger::ledger::AccountKey::dev(0), other.chain_id(), &id, 1, 5);
    cases.push(("other chain", elsewhere, Code::Unauthenticated, "does not verify"));
    // Signed properly, but for a time now past, or valid for too long.
    let signed_until = |id: &str, expires_ms: u64| {
        let id = bank_ledger::ledger::TxId::new(id).unwrap();
        bank_ledger::client::signed_transfer_until(
            &bank_ledger::ledger::AccountKey::dev(0),
            c.chain_id(),
            &id,
            1,
            5,
            expires_ms,
        )
    };
    let now_ms = bank_ledger::client::expiry_in(Duration::ZERO);
    cases.push((
        "expired",
        signed_until("sig-expired", now_ms - 1_000),
        Code::FailedPrecondition,
        "expired at",
    ));
    cases.push((
        "valid for two days",
        signed_until("sig-forever", now_ms + 2 * 86_400_000),
        Code::FailedPrecondition,
        "more than 24 hours after",
    ));
    for (what, msg, code, text) in cases {
        // Straight to the leader, and through a follower that forwards it.
        for addr in [c.addr(leader).to_string(), c.addr(follower).to_string()] {
            let err = send(&addr, msg.clone());
            assert_eq!(err.code(), code, "{what} via {addr}: {err:?}");
            assert!(err.message().contains(text), "{what} via {addr}: {err:?}");
            assert_eq!(err.message().lines().count(), 1);
        }
    }
    assert_unchanged(&c);

    // The CLI: no key for the account in the keystore, or another account's key file.
    let empty = tempfile::tempdir().expect("tempdir");
    let servers = c.all_servers();
    let run = |keystore: &std::path::Path| {
        std::process::Command::new(common::CLIENT)
            .args(["--servers", &servers, "--keystore"])
            .arg(keystore)
            .args(["transfer", "0", "1", "5"])
            .output()
            .expect("run bank-client")
    };
    let out = run(empty.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no key for account 0"), "{err}");
    std::fs::copy(c.keystore().join("1.key"), empty.path().join("0.key")).expect("copy key");
    let out = run(empty.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("holds the key of account 1, not 0"), "{err}");
    assert_unchanged(&c);

    // A batch of nothing but forged transfers, and an empty batch: answered
    // at once, one refusal per transfer, not retried as a leader change.
    let forged: Vec<TransferRequest> = (0..50)
        .map(|i| TransferRequest {
            signature: vec![7; 64],
            ..c.signed(&format!("forged-{i}"), 0, 1, 1)
        })
        .collect();
    for transfers in [forged, Vec::new()] {
        let n = transfers.len();
        let started = std::time::Instant::now();
        let addr = c.addr(leader).to_string();
        let reply = rt
            .block_on(async move {
                BankClient::new(channel(&addr))
                    .transfer_batch(bank_ledger::proto::bank::TransferBatchRequest { transfers })
                    .await
            })
            .expect("batch answered")
            .into_inner();
        assert_eq!(reply.results.len(), n);
        assert!(
            reply.results.iter().all(|r| r.code == Code::Unauthenticated as u32),
            "{reply:?}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_unchanged(&c);

    // The real signature still goes through, once: sent again, the same
    // bytes return the first outcome and move nothing.
    for _ in 0..2 {
        let good = good.clone();
        let reply = rt
            .block_on(async { BankClient::new(channel(c.addr(follower))).transfer(good).await })
            .expect("signed transfer commits");
        assert!(reply.into_inner().height > 0);
        assert_eq!(c.balance(1), START[1] + 5);
        assert_eq!(c.balance(0), START[0] - 5);
    }
}

#[test]
fn an_oversized_request_is_refused_whole_and_the_server_keeps_serving() {
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // 5 MiB of batch: one field-1 entry (a TransferRequest) holding junk,
    // over the 4 MiB a request may carry; refused before it is decoded.
    let len: usize = 5 << 20;
    let mut body = vec![0x0a];
    let mut n = len;
    while n >= 0x80 {
        body.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    body.resize(body.len() + len, 0x08);
    for addr in [c.addr(leader).to_string(), c.addr((leader + 1) % 3).to_string()] {
        let err = rt
            .block_on(raw_call(&addr, "/bank.v1.Bank/TransferBatch", body.clone(), None))
            .expect_err("oversized request refused");
        // tonic 0.12 answers OUT_OF_RANGE (the gRPC spec suggests
        // RESOURCE_EXHAUSTED); either way, with the limit in the message.
        assert!(
            matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
            "{err:?}"
        );
        assert!(
            err.message().contains("too large") && err.message().contains("4194304"),
            "{err:?}"
        );
    }
    assert_unchanged(&c);
    c.transfer(0, 1, 5, "after-oversized");
    assert_eq!(c.balance(1), START[1] + 5);
}
