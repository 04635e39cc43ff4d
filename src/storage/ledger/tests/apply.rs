//! Applying blocks: verdicts, records, deduplication, what is synced.

use super::*;
use crate::ledger::{BlockOutcome, Hash32, RejectReason};
use openraft::storage::RaftStateMachine;

#[tokio::test]
async fn a_block_that_no_longer_links_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    // Two leaders built on the same tip: the second to commit is stale.
    let a = next_block(&ledger, vec![transfer("a", 0, 1, 10)]);
    let b = next_block(&ledger, vec![transfer("b", 0, 1, 20)]);
    let out = sm.apply(vec![entry(1, a), entry(2, b)]).await.unwrap();
    assert!(matches!(out[0], BlockOutcome::Committed { height: 1, .. }));
    assert!(matches!(&out[1], BlockOutcome::Refused { reason } if reason.contains("expected height 2")));
    assert_eq!(ledger.balance(0), Some((90, 1)));
    assert_eq!(ledger.tx_record(&key("b", 0)).unwrap(), None);
    assert_eq!(ledger.with_state(|s| s.last_applied.map(|l| l.index)), Some(2));
}

/// Keeps every block's records it is told, as the producer's registry would.
#[derive(Default)]
struct Told(std::sync::Mutex<Vec<(Hash32, Vec<crate::ledger::TxRecord>)>>);

impl crate::storage::ledger::ExecutionListener for Told {
    fn executed(&self, hash: &Hash32, records: &[crate::ledger::TxRecord]) -> bool {
        self.0.lock().unwrap().push((*hash, records.to_vec()));
        true
    }
}

#[tokio::test]
async fn a_listener_gets_a_blocks_records_once_executed_before_the_block_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let told = Arc::new(Told::default());
    ledger.listen_to_executions(Arc::clone(&told) as _);
    let b1 = next_block(&ledger, vec![transfer("w1", 0, 1, 10), transfer("w2", 1, 0, 1_000)]);
    let (h0, _) = ledger.tip();
    let crate::storage::ledger::Prepared::Ready(prepared) =
        ledger.prepare_block(&b1, entry(1, b1.clone()).log_id).unwrap()
    else {
        panic!("block 1 links");
    };
    assert!(prepared.announced);
    let (hash, early) = told
        .0
        .lock()
        .unwrap()
        .pop()
        .expect("the records arrive when the block is executed");
    assert_eq!(hash, b1.hash());
    // Nothing is written or visible yet: a crash here re-applies the entry.
    assert_eq!(ledger.tip().0, h0);
    assert_eq!(ledger.tx_record(&key("w1", 0)).unwrap(), None);
    let written = ledger.write_block(&b1, entry(1, b1.clone()).log_id, prepared).unwrap();
    let BlockOutcome::Committed { records, .. } = written else {
        panic!("block 1 must commit: {written:?}");
    };
    assert_eq!(early, records, "the early records are the apply's");
    assert!(early[0].outcome.is_ok());
    assert!(matches!(early[1].outcome, Err(RejectReason::InsufficientFunds { .. })));
    assert_eq!(ledger.tip().0, h0 + 1);

    // A refused block tells nothing.
    let stale = Block::new(
        ledger.chain_id(),
        h0 + 1,
        Hash32::ZERO,
        1,
        4,
        vec![transfer("w3", 0, 1, 1)],
    )
    .mined();
    let out = sm.apply(vec![entry(2, stale)]).await.unwrap();
    assert!(matches!(out[0], BlockOutcome::Refused { .. }));
    assert!(told.0.lock().unwrap().is_empty());
}

/// What a leader proposes is checked by every node as it applies: an
/// unsigned transfer and one signed by another account's key move no
/// money, are refused with their reason, and claim no id.
#[tokio::test]
async fn a_block_of_unsigned_or_forged_transfers_moves_no_money_and_claims_no_id() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let unsigned = with_signature(transfer("unsigned", 0, 1, 60), crate::ledger::Signature::NONE);
    // Account 1's key signs a transfer out of account 0.
    let steal = transfer("steal", 0, 1, 60);
    let forged = with_signature(
        steal.clone(),
        crate::ledger::AccountKey::dev(1).sign(ledger.chain_id(), &steal),
    );
    let b1 = next_block(&ledger, vec![unsigned, forged, transfer("honest", 1, 0, 5)]);
    let out = sm.apply(vec![entry(1, b1.clone())]).await.unwrap();
    let BlockOutcome::Committed { records, .. } = &out[0] else {
        panic!("the block links and commits: {out:?}");
    };
    let refused = Err(RejectReason::Unauthorized {
        signer: crate::ledger::Signer::Account(0),
    });
    assert_eq!(records[0].outcome, refused);
    assert_eq!(records[1].outcome, refused);
    assert!(records[2].outcome.is_ok(), "the signed transfer beside them applies");
    assert_eq!(ledger.balance(0), Some((105, 1)));
    assert_eq!(ledger.balance(1), Some((95, 1)));
    assert_eq!(
        ledger.tx_record(&key("steal", 0)).unwrap(),
        None,
        "the forgery claims no id"
    );
    // Rebuilt views say what the apply said.
    assert_eq!(ledger.records_of(&b1).unwrap(), *records);
    ledger.verify().expect("a chain holding refused forgeries verifies");

    // The owner's own transfer under that id goes through.
    let b2 = next_block(&ledger, vec![transfer("steal", 0, 1, 60)]);
    sm.apply(vec![entry(2, b2)]).await.unwrap();
    assert_eq!(ledger.balance(0), Some((45, 2)));
    ledger.verify().expect("the chain verifies");

    // A forged copy of a transfer ahead of the signed one in the same
    // block: the copy is refused, the transfer applies once.
    let signed = transfer("twice", 1, 0, 7);
    let copy = with_signature(signed.clone(), crate::ledger::Signature::NONE);
    let b3 = next_block(&ledger, vec![copy, signed]);
    let out = sm.apply(vec![entry(3, b3)]).await.unwrap();
    let BlockOutcome::Committed { records, .. } = &out[0] else {
        panic!("block 3 commits: {out:?}");
    };
    assert_eq!(
        records[0].outcome,
        Err(RejectReason::Unauthorized {
            signer: crate::ledger::Signer::Account(1)
        })
    );
    assert!(records[1].outcome.is_ok());
    assert_eq!(ledger.balance(0), Some((52, 3)));
    ledger
        .verify()
        .expect("a refused copy beside its signed transfer verifies");
}

#[tokio::test]
async fn a_transaction_in_two_blocks_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let b1 = next_block(&ledger, vec![transfer("t1", 0, 1, 10)]);
    sm.apply(vec![entry(1, b1)]).await.unwrap();
    let b2 = next_block(&ledger, vec![transfer("t1", 0, 1, 10), transfer("t1", 0, 1, 99)]);
    let out = sm.apply(vec![entry(2, b2)]).await.unwrap();
    let BlockOutcome::Committed { records, .. } = &out[0] else {
        panic!("block 2 must commit: {out:?}");
    };
    assert_eq!(records[0].height, 1, "the duplicate reports its first block");
    assert!(matches!(records[1].outcome, Err(RejectReason::IdConflict { .. })));
    assert_eq!(ledger.balance(0), Some((90, 2)));
}

#[tokio::test]
async fn the_blob_files_of_a_blocks_large_values_are_synced_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // 12,000 accounts: a checkpoint of all balances is far over sled's
    // blob threshold (~32 KB with this database's segment size).
    let accounts: Vec<String> = (0..12_000)
        .map(|i| format!(r#"{{"id":{i},"balance":1000000000000}}"#))
        .collect();
    let json = format!(r#"{{"difficulty":4,"accounts":[{}]}}"#, accounts.join(","));
    let (ledger, mut sm) = open_with(dir.path(), &json);
    let files = Arc::new(crate::storage::sled_sync::SledSync::open(&dir.path().join("db")).unwrap());
    ledger.sync_blobs_with(Arc::clone(&files));
    ledger.set_checkpoint_max_blocks(1);
    for i in 1..=2u64 {
        let b = next_block(&ledger, vec![]);
        sm.apply(vec![entry(i, b)]).await.unwrap();
        let on_disk: std::collections::HashSet<std::ffi::OsString> =
            std::fs::read_dir(dir.path().join("db").join("blobs"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
        assert!(!on_disk.is_empty(), "block {i}: the checkpoint went to a blob");
        assert_eq!(files.synced_names(), on_disk, "block {i}: every blob synced");
    }
}

/// A record of the block being applied, stored before its apply (left
/// by one a crash cut short, had a start missed it) is not taken for an
/// earlier apply of the same transfer: the transfer still moves money.
#[tokio::test]
async fn a_record_left_at_the_height_being_applied_is_not_an_earlier_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let tx = transfer("left", 0, 1, 30);
    let block = next_block(&ledger, vec![tx.clone()]);
    let leftover = crate::ledger::TxRecord {
        tx_hash: tx.content_hash(),
        height: 1,
        block_hash: block.hash(),
        outcome: Ok(crate::ledger::rules::Applied { balance: None }),
    };
    let key = [b"t:".as_slice(), b"left"].concat();
    ledger
        .raw_tree()
        .insert(key, crate::codec::encode(&leftover).unwrap())
        .unwrap();
    sm.apply(vec![entry(1, block)]).await.unwrap();
    assert_eq!((ledger.balance(0), ledger.balance(1)), (Some((70, 1)), Some((130, 1))));
    ledger.verify().unwrap();
}

/// Ids belong to their signer; a transaction out of time is refused on
/// every node without claiming its id; a block may not turn time back;
/// nothing enters the chain unsigned, balance checks included.
#[tokio::test]
async fn ids_are_each_signers_own_and_time_decides_what_a_block_may_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let chain = ledger.chain_id();
    let dev = crate::ledger::AccountKey::dev;
    let late = dev(0).transfer(chain, TxId::new("late").unwrap(), 1, 3, 0);
    let early = dev(0).transfer(chain, TxId::new("early").unwrap(), 1, 3, EXPIRES_MS * 1000);
    let check = |by: u64, signed: bool| {
        let tx = Transaction::BalanceCheck {
            id: TxId::new("audit").unwrap(),
            account: 1,
            auditor: None,
            expires_ms: EXPIRES_MS,
            signature: crate::ledger::Signature::NONE,
        };
        let sig = if signed {
            dev(by).sign(chain, &tx)
        } else {
            tx.signature().copied().unwrap()
        };
        with_signature(tx, sig)
    };
    let b1 = next_block(
        &ledger,
        vec![
            transfer("same", 0, 1, 10),
            transfer("same", 1, 0, 4),
            late,
            early,
            check(1, false),
            check(0, true),
            check(1, true),
        ],
    );
    let out = sm.apply(vec![entry(1, b1.clone())]).await.unwrap();
    let BlockOutcome::Committed { records, .. } = &out[0] else {
        panic!("block 1 commits: {out:?}");
    };
    assert!(records[0].outcome.is_ok() && records[1].outcome.is_ok(), "{records:?}");
    assert_eq!(ledger.balance(0), Some((94, 1)));
    assert!(matches!(
        records[2].outcome,
        Err(RejectReason::Expired {
            expires_ms: 0,
            block_ms: 1
        })
    ));
    assert!(matches!(records[3].outcome, Err(RejectReason::ExpiresTooLate { .. })));
    assert_eq!(ledger.tx_record(&key("late", 0)).unwrap(), None, "claims no id");
    let unauthorized = Err(RejectReason::Unauthorized {
        signer: crate::ledger::Signer::Account(1),
    });
    assert_eq!(records[4].outcome, unauthorized, "unsigned");
    assert_eq!(records[5].outcome, unauthorized, "signed by another account");
    assert_eq!(records[6].outcome.as_ref().unwrap().balance, Some(106));
    assert_eq!(ledger.records_of(&b1).unwrap(), *records);
    ledger.verify().expect("the chain verifies");

    // The same id signed again with a later expiry is the same transfer.
    let again = dev(0).transfer(chain, TxId::new("same").unwrap(), 1, 10, EXPIRES_MS + 1);
    let b2 = next_block(&ledger, vec![again]);
    let out = sm.apply(vec![entry(2, b2)]).await.unwrap();
    let BlockOutcome::Committed { records, .. } = &out[0] else {
        panic!("block 2 commits: {out:?}");
    };
    assert_eq!(records[0].height, 1, "the first outcome: {records:?}");
    assert_eq!(ledger.balance(0), Some((94, 2)));

    // A block whose time is before its parent's is refused on every node.
    let (h, tip) = ledger.tip();
    let past = Block::new(chain, h + 1, tip, 0, 4, vec![transfer("past", 0, 1, 1)]).mined();
    let out = sm.apply(vec![entry(3, past)]).await.unwrap();
    assert!(
        matches!(&out[0], BlockOutcome::Refused { reason } if reason.contains("before its parent's")),
        "{out:?}"
    );
    assert_eq!(ledger.tip().0, h);
}

/// What passed the check before proposing is not checked again at apply;
/// anything else in the block is, down to a copy that differs only in its
/// signature bytes.
#[tokio::test]
async fn only_the_exact_bytes_checked_before_proposing_skip_the_check_at_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let good = transfer("checked", 0, 1, 10);
    assert_eq!(ledger.authorize(&good), Ok(()));
    let mut forged_sig = *good.signature().unwrap();
    forged_sig.0[63] ^= 1;
    let forged = with_signature(transfer("checked-2", 0, 1, 10), forged_sig);
    let copy = with_signature(good.clone(), forged_sig);
    let b1 = next_block(&ledger, vec![copy, good, forged]);
    let out = sm.apply(vec![entry(1, b1)]).await.unwrap();
    let BlockOutcome::Committed { records, .. } = &out[0] else {
        panic!("block 1 commits: {out:?}");
    };
    let refused = Err(RejectReason::Unauthorized {
        signer: crate::ledger::Signer::Account(0),
    });
    assert_eq!(records[0].outcome, refused, "the copy with other signature bytes");
    assert!(records[1].outcome.is_ok());
    assert_eq!(records[2].outcome, refused);
    assert_eq!(ledger.balance(0), Some((90, 1)));
    ledger.verify().expect("an audit checks every signature and agrees");
}

/// An allocation only genesis may make: in a later block it is refused,
/// the same way by apply, by the rebuilt views and by an audit.
#[tokio::test]
async fn an_allocation_past_genesis_is_refused_alike_by_apply_views_and_audits() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let mint = Transaction::Allocation {
        account: 0,
        amount: 1_000_000,
        public_key: crate::ledger::AccountKey::dev(0).public(),
    };
    let b1 = next_block(&ledger, vec![mint, transfer("beside", 0, 1, 1)]);
    let out = sm.apply(vec![entry(1, b1.clone())]).await.unwrap();
    let BlockOutcome::Committed { records, .. } = &out[0] else {
        panic!("block 1 commits: {out:?}");
    };
    assert_eq!(records[0].outcome, Err(RejectReason::AllocationOutsideGenesis));
    assert!(records[1].outcome.is_ok());
    assert_eq!(ledger.balance(0), Some((99, 1)));
    assert_eq!(ledger.records_of(&b1).unwrap(), *records);
    ledger
        .verify()
        .expect("an honest chain holding a refused allocation verifies");
    let history = ledger.account_history(0, 10, None).unwrap();
    assert_eq!(history["entries"][1]["status"], "rejected", "{history}");
}
