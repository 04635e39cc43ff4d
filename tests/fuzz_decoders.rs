//! Property-based fuzzing of everything that decodes bytes or text from
//! outside: stored and replicated blocks and transactions (bincode), Raft
//! messages, genesis files (JSON), transaction ids and client requests
//! (protobuf). Each must return an error, never panic or run away, on any
//! input. Runs with the tests; `PROPTEST_CASES=100000 cargo test --release
//! --test fuzz_decoders` runs it longer.

use bank_ledger::codec;
use bank_ledger::ledger::genesis::with_dev_keys;
use bank_ledger::ledger::TxRecord;
use bank_ledger::ledger::{Block, Genesis, Hash32, Signature, Transaction, TxId};
use bank_ledger::proto::bank::{TransferBatchRequest, TransferRequest};
use bank_ledger::proto::raft::RaftPayload;
use bank_ledger::raft::TypeConfig;
use proptest::prelude::*;
use prost::Message;

const VALID_GENESIS: &str = r#"{
  "difficulty": 4,
  "accounts": [{"id":0,"balance":100},{"id":1,"balance":100},{"id":2,"balance":100}],
  "transfers": [{"from":0,"to":1,"amount":5},{"from":1,"to":2,"amount":10}]
}"#;

fn sample_block() -> Block {
    let txs = (0..5u64)
        .map(|i| Transaction::Transfer {
            id: TxId::new(format!("tx-{i}")).expect("valid id"),
            from: i,
            to: i + 1,
            amount: 10 * i + 1,
            expires_ms: 1_700_000_000_000 + i,
            signature: Signature([i as u8; 64]),
        })
        .collect();
    Block::new(Hash32([9; 32]), 7, Hash32([8; 32]), 1_700_000_000_000, 4, txs).mined()
}

/// Cases per property: 2,000 by default (about a second), `PROPTEST_CASES` to change.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Decodes as every type the nodes decode from bytes; only errors allowed.
fn decode_everything(bytes: &[u8]) {
    if let Ok(b) = codec::decode::<Block>(bytes) {
        let _ = b.verify_contents();
        let _ = b.hash();
    }
    let _ = codec::decode::<Transaction>(bytes);
    let _ = codec::decode::<TxRecord>(bytes);
    let _ = codec::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(bytes);
    let _ = codec::decode::<openraft::raft::VoteRequest<u64>>(bytes);
    let _ = codec::decode::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(bytes);
    let _ = TransferRequest::decode(bytes);
    let _ = TransferBatchRequest::decode(bytes);
    let _ = RaftPayload::decode(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn a_damaged_block_is_refused_or_differs(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let block = sample_block();
        let mut bytes = codec::encode(&block).expect("encode");
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        decode_everything(&bytes);
        // Whatever still decodes is either refused by verification or is
        // a different block (another hash): damage never passes as the original.
        if let Ok(b) = codec::decode::<Block>(&bytes) {
            if b.verify_contents().is_ok() && b != block {
                prop_assert_ne!(b.hash(), block.hash());
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_genesis_parser(text in ".{0,300}") {
        let _ = Genesis::from_json(&text);
    }

    #[test]
    fn a_damaged_genesis_is_refused_or_parsed(at in any::<prop::sample::Index>(), c in any::<char>(), cut in any::<prop::sample::Index>()) {
        let mut text: Vec<char> = with_dev_keys(VALID_GENESIS).chars().collect();
        let i = at.index(text.len());
        text[i] = c;
        text.truncate(cut.index(text.len() + 1).max(i));
        let text: String = text.into_iter().collect();
        let _ = Genesis::from_json(&text);
    }

    #[test]
    fn transaction_ids_accept_exactly_the_documented_alphabet(s in "\\PC{0,80}") {
        let valid = (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        prop_assert_eq!(TxId::new(s.clone()).is_ok(), valid, "{:?}", s);
    }
}

#[test]
fn a_genesis_with_huge_numbers_is_refused_not_overflowed() {
    let cases = [
        r#"{"difficulty": 4, "accounts": [{"id":0,"balance":18446744073709551615},{"id":1,"balance":1}]}"#,
        r#"{"difficulty": 4, "accounts": [{"id":0,"balance":18446744073709551616}]}"#,
        r#"{"difficulty": 255, "accounts": [{"id":0,"balance":1}]}"#,
        r#"{"difficulty": 4, "accounts": [{"id":0,"balance":1}], "transfers": [{"from":0,"to":1,"amount":18446744073709551615}]}"#,
    ];
    for text in cases {
        let err = Genesis::from_json(&with_dev_keys(text)).expect_err(text);
        assert!(!err.to_string().contains("public_key"), "{text}: {err}");
    }
}

#[test]
fn a_huge_length_prefix_is_refused_without_allocating_it() {
    // A Vec<Transaction> length of 2^60: bincode must fail on the missing
    // bytes (or the size limit), not try to reserve that much.
    let mut bytes = codec::encode(&sample_block()).expect("encode");
    let header_len = codec::encode(&sample_block().header).expect("encode").len();
    bytes.truncate(header_len);
    bytes.extend_from_slice(&[0xfd]);
    bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(codec::decode::<Block>(&bytes).is_err());
}
