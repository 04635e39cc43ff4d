//! Tampering on disk is detected: `bank-client verify` against running nodes,
//! `bank-server verify` offline, and the node itself at start, each naming
//! the height. Real processes; the damage is done to a SIGKILLed node's sled.

mod common;

use bank_ledger::ledger::Transaction;
use bank_ledger::storage::ledger::tamper::{edit_stored_block, overwrite_stored_balance};
use bank_ledger::storage::NodePaths;
use common::{wait_for, Cluster, TEST_GENESIS};
use std::path::Path;
use std::time::Duration;

fn offline_verify(c: &Cluster, id: u64) -> std::process::Output {
    c.offline_verify(id)
}

/// Opens a stopped node's ledger tree, lets `f` damage it (given the tree
/// and the node's block files dir), flushes, and waits until sled has let go
/// of the data dir's lock (its flusher thread drops the last handle shortly
/// after we do), so a server can open it.
fn damage(c: &Cluster, id: u64, f: impl FnOnce(&sled::Db, &sled::Tree, &Path)) {
    let paths = NodePaths::new(c.data_dir(), id);
    let dir = paths.db;
    let db = bank_ledger::storage::open_db(&dir).expect("open sled");
    let tree = db.open_tree("ledger").expect("ledger tree");
    f(&db, &tree, &paths.blocks);
    db.flush().expect("flush");
    drop(tree);
    drop(db);
    let lock_file = std::fs::File::open(dir.join("db")).expect("sled's db file");
    wait_for("sled to release its lock", Duration::from_secs(10), || {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; non-blocking flock and unlock.
        let free = unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if free {
            unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_UN) };
        }
        free.then_some(())
    });
}

/// Adds `delta` to the amount of the first transfer in stored block `height`.
fn edit_amount(t: &sled::Tree, blocks: &Path, height: u64, delta: i64) {
    edit_stored_block(t, blocks, height, |b| {
        if let Some(Transaction::Transfer { amount, .. }) = b.txs.first_mut() {
            *amount = amount.checked_add_signed(delta).expect("an amount in range");
        }
    })
    .unwrap();
}

/// Starts node `id` and waits for it to refuse to start; returns its stderr.
fn refused_start(c: &mut Cluster, id: u64) -> String {
    c.spawn(id);
    let status = c.wait_exit(id, "the node to exit");
    assert!(!status.success());
    c.stderr_of(id)
}

#[test]
fn damage_to_a_block_or_a_balance_is_found_and_named_by_height() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    for i in 0..3 {
        c.transfer(3, i % 3, 7, &format!("t-{i}"));
    }
    let (height, _) = c.wait_converged();

    // Intact: every server says so, with the work it did.
    let v = c.json(&["verify"]);
    let rows = v.as_array().expect("array");
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r["intact"], true, "{r}");
        assert_eq!(r["blocks"].as_u64(), Some(height + 1), "{r}");
        // 3 genesis transfers + 3 here.
        assert_eq!(r["transfers"].as_u64(), Some(6), "{r}");
        assert!(r["transfers_per_s"].as_f64().is_some(), "{r}");
    }

    // A balance edited on node 2's disk. Stopped, not killed: applies are
    // not flushed (the log is, and a start re-applies from it), so after a
    // SIGKILL its ledger on disk may end blocks before the others, short of
    // the block edited below.
    c.stop(2);
    let mut healthy = None;
    damage(&c, 2, |db, _, _| {
        healthy = overwrite_stored_balance(db, 1, 1_000_000).unwrap();
    });
    let out = offline_verify(&c, 2);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("corrupt chain at height ") && err.contains("balance of account 1 is 1000000"),
        "{err}"
    );
    // At start the balances' digest gives it away in O(accounts).
    let err = refused_start(&mut c, 2);
    assert!(
        err.contains("corrupt chain at height ") && err.contains("do not match their digest"),
        "{err}"
    );

    // Restore the balance, then edit an amount inside block 2.
    damage(&c, 2, |db, _, _| {
        overwrite_stored_balance(db, 1, healthy.expect("balance was stored")).unwrap();
    });
    assert!(offline_verify(&c, 2).status.success(), "restored");
    damage(&c, 2, |_, t, blocks| edit_amount(t, blocks, 2, 1));
    let out = offline_verify(&c, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("corrupt chain at height 2"), "{err}");
    let err = refused_start(&mut c, 2);
    assert!(err.contains("corrupt chain at height 2"), "{err}");

    // Damage to an old block, outside what the start-time check reads: the
    // node starts, checks the rest of its chain in the background, and
    // stops naming the height.
    damage(&c, 2, |_, t, blocks| edit_amount(t, blocks, 2, -1));
    assert!(offline_verify(&c, 2).status.success(), "block 2 restored");
    // The block below node 2's stored tip: the start-time check of one
    // block does not read it.
    let mut old = 0;
    damage(&c, 2, |_, t, blocks| {
        let tip = bank_ledger::storage::ledger::tamper::stored_tip(t).unwrap();
        old = tip.expect("a tip").0 - 1;
        assert!(old >= 2, "an old block with a transfer: {old}");
        edit_amount(t, blocks, old, 1);
    });
    c.server_args = vec!["--verify-blocks".into(), "1".into()];
    let err = refused_start(&mut c, 2);
    assert!(err.contains(&format!("corrupt chain at height {old}")), "{err}");
    assert!(
        c.log_of(2).contains("chain verified: 1 blocks"),
        "the start-time check passed, the background one stopped it"
    );
    c.server_args.clear();

    // The healthy majority goes on; verify reports the damaged node apart.
    c.transfer(3, 0, 1, "after-damage");
    let out = c.client_at(&c.servers_of(&[0, 1]), &["verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("intact").count(), 2);
}
