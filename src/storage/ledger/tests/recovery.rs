//! Opening a ledger again: after a clean stop, after a crash at any write,
//! and refusing a data dir of another format.

use super::*;

use crate::storage::views;
use openraft::storage::RaftStateMachine;

#[tokio::test]
async fn balances_survive_reopen_across_checkpoints_and_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let (ledger, mut sm) = open(dir.path());
        ledger.set_checkpoint_max_blocks(3);
        for i in 1..=7u64 {
            let b = next_block(&ledger, vec![transfer(&format!("c{i}"), i % 2, (i + 1) % 2, i)]);
            sm.apply(vec![entry(i, b)]).await.unwrap();
            // Block 3 and block 6 each roll the deltas before them into a checkpoint.
            let want: Vec<u64> = ((i / 3) * 3 + 1..=i).collect();
            assert_eq!(ledger.delta_heights().unwrap(), want, "after block {i}");
        }
        (ledger.balance(0), ledger.balance(1))
    };
    // Account 0: 100 + 1 - 2 + 3 - 4 + 5 - 6 + 7.
    assert_eq!(expected, (Some((104, 7)), Some((96, 7))));
    let (ledger, _sm) = open(dir.path());
    assert_eq!((ledger.balance(0), ledger.balance(1)), expected);
    ledger.verify_recent(64, usize::MAX).unwrap();
    ledger.verify().unwrap();
}

/// Applies one transfer (25 from account 0 to 1), lets `edit` change
/// what is stored as a crash or an older version would have left it, and
/// checks that the ledger opens again with the same balances, one
/// checkpoint in its tree, and a chain that verifies.
async fn reopens_with_the_same_balances(id: &str, edit: impl FnOnce(&Ledger)) -> Arc<Ledger> {
    let dir = tempfile::tempdir().unwrap();
    {
        let (ledger, mut sm) = open(dir.path());
        let b = next_block(&ledger, vec![transfer(id, 0, 1, 25)]);
        sm.apply(vec![entry(1, b)]).await.unwrap();
        edit(&ledger);
    }
    let (ledger, _sm) = open(dir.path());
    assert_eq!((ledger.balance(0), ledger.balance(1)), (Some((75, 1)), Some((125, 1))));
    assert_eq!(ledger.raw_checkpoints().len(), 1);
    ledger.verify().unwrap();
    ledger
}

#[tokio::test]
async fn a_checkpoint_above_the_tip_is_ignored_and_removed() {
    // What a crash leaves between writing a block's checkpoint and the
    // batch that moves the tip to the block.
    reopens_with_the_same_balances("c2", |ledger| {
        let tip = ledger.with_state(|s| s.tip_height);
        let ahead: (u64, std::collections::BTreeMap<u64, u64>) = (tip + 1, [(0, 1), (1, 1)].into());
        ledger
            .raw_checkpoints()
            .insert((tip + 1).to_be_bytes(), crate::codec::encode(&ahead).unwrap())
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_lost_block_file_is_corruption_at_the_height_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open(dir.path());
    let b = next_block(&ledger, vec![transfer("g1", 0, 1, 5)]);
    sm.apply(vec![entry(1, b)]).await.unwrap();
    for f in std::fs::read_dir(dir.path().join("blocks")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err = ledger.block(1).unwrap_err().to_string();
    assert!(err.contains("corrupt chain at height 1"), "{err}");
    let err = ledger.verify().unwrap_err().to_string();
    assert!(err.contains("corrupt chain at height 0"), "{err}");
}

#[tokio::test]
async fn a_block_written_but_never_indexed_is_cut_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (next, indexed_bytes) = {
        let (ledger, mut sm) = open(dir.path());
        let b = next_block(&ledger, vec![transfer("u1", 0, 1, 5)]);
        sm.apply(vec![entry(1, b)]).await.unwrap();
        let next = next_block(&ledger, vec![transfer("u2", 1, 0, 7)]);
        let indexed_bytes = ledger.block_files().disk_bytes().unwrap();
        // A crash after the block's record was written and before
        // sled's batch: a record past the tip's.
        ledger.block_files().append(b"torn").unwrap();
        (next, indexed_bytes)
    };
    let (ledger, mut sm) = open(dir.path());
    assert_eq!(ledger.tip().0, 1);
    assert_eq!(ledger.block_files().disk_bytes().unwrap(), indexed_bytes);
    sm.apply(vec![entry(2, next.clone())]).await.unwrap();
    drop((ledger, sm));
    let (ledger, _sm) = open(dir.path());
    assert_eq!(ledger.block(2).unwrap(), Some(next));
    ledger.verify().unwrap();
}

/// A crash part way through a block's apply keeps a prefix of its sled
/// writes (sled recovers a prefix of its log). At every such point the
/// ledger reopens at the block before it (nothing of the block visible,
/// and the entry's re-apply completes it) or at the block itself, and
/// ends as an apply never interrupted would: same balances, records and
/// chain, one checkpoint, no stale deltas.
#[tokio::test]
async fn a_crash_at_any_write_of_a_blocks_apply_loses_nothing() {
    let id = |s: &str| key(s, if s == "x2" { 1 } else { 0 });
    for checkpoint in [false, true] {
        for writes in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let (ledger, mut sm) = open(dir.path());
            // With a checkpoint every 3 blocks, the third rolls the first
            // two blocks' deltas into one.
            ledger.set_checkpoint_max_blocks(if checkpoint { 3 } else { 1000 });
            for i in 1..=2u64 {
                let b = next_block(&ledger, vec![transfer(&format!("p{i}"), 0, 1, i)]);
                sm.apply(vec![entry(i, b)]).await.unwrap();
            }
            let third = next_block(
                &ledger,
                vec![
                    transfer("x1", 0, 1, 10),
                    transfer("x2", 1, 0, 4),
                    transfer("p1", 0, 1, 1),
                ],
            );
            ledger.crash_after_writes(writes);
            let crashed = sm.apply(vec![entry(3, third.clone())]).await.is_err();
            drop((ledger, sm));
            let at = format!("checkpoint {checkpoint}, crash after {writes} writes");

            let (mut ledger, mut sm) = open(dir.path());
            if ledger.tip().0 == 2 {
                assert!(crashed, "{at}");
                assert_eq!(ledger.tx_record(&id("x1")).unwrap(), None, "{at}");
                assert_eq!(ledger.block(3).unwrap(), None, "{at}");
                assert_eq!(ledger.balance(0), Some((97, 2)), "{at}");
                sm.apply(vec![entry(3, third.clone())]).await.unwrap();
            }
            for _reopened in 0..2 {
                assert_eq!(ledger.tip().0, 3, "{at}");
                assert_eq!(ledger.block(3).unwrap().as_ref(), Some(&third), "{at}");
                // 100 - 1 - 2 - 10 + 4; p1 again is its first apply's record.
                assert_eq!(
                    (ledger.balance(0), ledger.balance(1)),
                    (Some((91, 3)), Some((109, 3))),
                    "{at}"
                );
                let x2 = ledger.tx_record(&id("x2")).unwrap().unwrap();
                assert_eq!((x2.height, x2.outcome.is_ok()), (3, true), "{at}");
                assert_eq!(ledger.tx_record(&id("p1")).unwrap().unwrap().height, 1, "{at}");
                assert_eq!(ledger.raw_checkpoints().len(), 1, "{at}");
                let (since, _) = ledger.raw_checkpoints().last().unwrap().unwrap();
                let since = u64::from_be_bytes(since.as_ref().try_into().unwrap());
                assert!(
                    ledger
                        .delta_heights()
                        .unwrap()
                        .iter()
                        .all(|h| (since + 1..=3).contains(h)),
                    "{at}"
                );
                ledger.verify().unwrap();
                drop((ledger, sm));
                (ledger, sm) = open(dir.path());
            }
            let chain = std::fs::read_to_string(dir.path().join("states").join(views::CHAIN_FILE)).unwrap();
            assert_eq!(chain.lines().count(), 4, "{at}: genesis and three blocks");
            if !crashed {
                assert!(writes > 4, "the apply makes at least five writes");
                break;
            }
        }
    }
}

#[tokio::test]
async fn state_and_views_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (ledger, mut sm) = open(dir.path());
        let b1 = next_block(&ledger, vec![transfer("t1", 1, 0, 30)]);
        sm.apply(vec![entry(1, b1)]).await.unwrap();
    }
    // Simulate a crash that left a line sled never committed.
    let chain = dir.path().join("states").join(views::CHAIN_FILE);
    let good = std::fs::read_to_string(&chain).unwrap();
    std::fs::write(&chain, format!("{good}{{\"torn\":")).unwrap();
    let (ledger, _) = open(dir.path());
    assert_eq!(ledger.balance(1), Some((70, 1)));
    assert_eq!(std::fs::read_to_string(&chain).unwrap(), good);
    // Lines lost instead: the view is rebuilt from sled.
    drop(ledger);
    std::fs::write(&chain, "").unwrap();
    let (ledger, _) = open(dir.path());
    assert_eq!(std::fs::read_to_string(&chain).unwrap(), good);
    assert_eq!(ledger.tip().0, 1);
}

#[tokio::test]
async fn a_data_dir_of_another_format_version_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let db = loop {
        match crate::storage::open_db(&dir.path().join("db")) {
            Ok(db) => break db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    let tree = crate::storage::ledger::tamper::ledger_tree(&db).unwrap();
    let next = crate::storage::ledger::FORMAT_VERSION + 1;
    tree.insert(b"m:format", crate::codec::encode(&next).unwrap()).unwrap();
    let genesis = Arc::new(Genesis::from_json(&crate::ledger::genesis::with_dev_keys(GENESIS)).unwrap());
    let open_again = |db: &sled::Db| {
        Ledger::open(
            db,
            Arc::clone(&genesis),
            &dir.path().join("states"),
            &dir.path().join("snap.bin"),
            &dir.path().join("blocks"),
        )
        .map(drop)
    };
    let err = open_again(&db).unwrap_err().to_string();
    assert!(
        err.contains(&format!("format version {next}")) && err.contains(&format!("reads format version {}", next - 1)),
        "{err}"
    );
    // Written before versions were kept, in the layout version 1 names
    // (records by id alone): refused, and left as it is.
    tree.remove(b"m:format").unwrap();
    let err = open_again(&db).unwrap_err().to_string();
    assert!(err.contains("format version 1,"), "{err}");
    assert!(tree.get(b"m:format").unwrap().is_none());
    // Unversioned, in an older layout (the head in four keys): refused, and left as it is.
    tree.remove(b"m:format").unwrap();
    tree.insert(b"m:tip", b"x").unwrap();
    let err = open_again(&db).unwrap_err().to_string();
    assert!(err.contains("format version 0"), "{err}");
    assert!(tree.get(b"m:format").unwrap().is_none());
}
