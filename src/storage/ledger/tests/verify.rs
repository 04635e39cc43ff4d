//! Whole-chain checks name the height of damage; reads stay bounded.

use super::*;

use openraft::storage::RaftStateMachine;

#[tokio::test]
async fn verify_passes_an_intact_ledger_and_names_the_height_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let b1 = next_block(&ledger, vec![transfer("a", 0, 1, 10), transfer("b", 1, 0, 500)]);
    sm.apply(vec![entry(1, b1)]).await.unwrap();
    let b2 = next_block(&ledger, vec![transfer("c", 1, 0, 5), transfer("a", 0, 1, 10)]);
    sm.apply(vec![entry(2, b2.clone())]).await.unwrap();
    let b3 = next_block(&ledger, vec![transfer("d", 0, 1, 1)]);
    sm.apply(vec![entry(3, b3)]).await.unwrap();
    let report = ledger.verify().unwrap();
    assert_eq!((report.blocks, report.transfers, report.tip_height), (4, 5, 3));

    // A block whose amount was edited, merkle root and work redone to
    // match: its transaction no longer matches its record.
    let mut edited = b2.clone();
    if let Transaction::Transfer { amount, .. } = &mut edited.txs[0] {
        *amount = 50;
    }
    let edited = Block::new(ledger.chain_id(), 2, edited.header.prev_hash, 1, 4, edited.txs).mined();
    let original = ledger.block(2).unwrap().unwrap();
    // Stores `b` as block 2 and returns what verify then says.
    let damaged = |b: &Block| {
        ledger.edit_block(2, |stored| *stored = b.clone()).unwrap();
        ledger.verify().unwrap_err().to_string()
    };
    let err = damaged(&edited);
    assert!(
        err.contains("corrupt chain at height 2") && err.contains("signature of transaction c does not verify"),
        "{err}"
    );
    // Re-signed too (by someone holding account 1's key): the record
    // of the transaction still disagrees.
    let resigned = transfer("c", 1, 0, 50);
    let edited = Block::new(
        ledger.chain_id(),
        2,
        edited.header.prev_hash,
        1,
        4,
        vec![resigned, b2.txs[1].clone()],
    )
    .mined();
    let err = damaged(&edited);
    assert!(
        err.contains("corrupt chain at height 2") && err.contains("record"),
        "{err}"
    );
    // Only the amount edited, nothing redone: the merkle root gives it away at 2.
    let mut lazy = b2.clone();
    if let Transaction::Transfer { amount, .. } = &mut lazy.txs[0] {
        *amount = 50;
    }
    let err = damaged(&lazy);
    assert!(
        err.contains("corrupt chain at height 2") && err.contains("merkle"),
        "{err}"
    );
    ledger.edit_block(2, |stored| *stored = original).unwrap();
    ledger.verify().unwrap();

    // An edited balance: the chain gives another.
    crate::storage::ledger::tamper::overwrite_stored_balance(ledger.raw_db(), 1, 1_000_000).unwrap();
    drop(sm);
    drop(ledger);
    let (ledger, _sm) = open(dir.path());
    let err = ledger.verify().unwrap_err().to_string();
    assert!(
        err.contains("corrupt chain at height 3") && err.contains("balance of account 1"),
        "{err}"
    );
    // The start-time check, which does not replay history, sees it too.
    let err = ledger.verify_recent(1, usize::MAX).unwrap_err().to_string();
    assert!(
        err.contains("corrupt chain at height 3") && err.contains("digest"),
        "{err}"
    );
}

#[tokio::test]
async fn account_history_reads_a_bounded_number_of_transactions_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    for i in 1..=5u64 {
        let b = next_block(&ledger, vec![transfer(&format!("h{i}"), 0, 1, i)]);
        sm.apply(vec![entry(i, b)]).await.unwrap();
    }
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["tx"]["id"].as_str().unwrap_or("allocation").to_string())
            .collect()
    };
    let all = ledger.account_history(1, 100, None).unwrap();
    assert_eq!(ids(&all), ["h5", "h4", "h3", "h2", "h1", "allocation"]);
    assert!(all["next_before"].is_null());
    // A budget of two transactions: two blocks, then where to go on.
    let page = ledger.account_history_within(1, 100, None, 2).unwrap();
    assert_eq!(ids(&page), ["h5", "h4"]);
    assert_eq!(page["next_before"], 4);
    let rest = ledger.account_history_within(1, 100, Some(4), 100).unwrap();
    assert_eq!(ids(&rest), ["h3", "h2", "h1", "allocation"]);
}

#[tokio::test]
async fn the_start_time_check_covers_the_recent_blocks_and_the_balances_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    for i in 1..=5u64 {
        let b = next_block(&ledger, vec![transfer(&format!("t{i}"), 0, 1, i)]);
        sm.apply(vec![entry(i, b)]).await.unwrap();
    }
    let r = ledger.verify_recent(3, usize::MAX).unwrap();
    assert_eq!((r.blocks, r.transfers, r.tip_height), (3, 3, 5));
    // A transaction budget stops it earlier: 2 transactions, 2 blocks;
    // the tip block is always checked.
    let r = ledger.verify_recent(3, 2).unwrap();
    assert_eq!((r.blocks, r.transfers), (2, 2));
    assert_eq!(ledger.verify_recent(3, 0).unwrap().blocks, 1);
    // Damage to block 4, inside the window: its hash changes, so block 5
    // no longer links to it (or block 4 lacks its work).
    let four = ledger.block(4).unwrap().unwrap();
    ledger.edit_block(4, |b| b.header.timestamp_ms += 1).unwrap();
    let err = ledger.verify_recent(3, usize::MAX).unwrap_err().to_string();
    assert!(
        err.contains("corrupt chain at height 4") || err.contains("corrupt chain at height 5"),
        "{err}"
    );
    ledger.edit_block(4, |b| *b = four).unwrap();
    ledger.verify_recent(3, usize::MAX).unwrap();
    // Balances changed by applying stay consistent with their digest
    // across a restart.
    drop(sm);
    drop(ledger);
    let (ledger, _sm) = open(dir.path());
    ledger.verify_recent(64, usize::MAX).unwrap();
    ledger.verify().unwrap();
}
