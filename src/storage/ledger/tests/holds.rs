//! Holds through applies, reopens, snapshots and the full re-execution:
//! pending holds as versioned entries, settlements recorded under their
//! hold, and releases by block time alike on every node.

use super::*;
use crate::ledger::{AccountKey, HoldEnd, HoldKey, RejectReason, Signature, Signer, TxKey};
use openraft::storage::RaftStateMachine;

fn signed(ledger: &Ledger, mut tx: Transaction) -> Transaction {
    let Some(Signer::Account(a)) = tx.signer() else {
        panic!("holds are signed by accounts")
    };
    tx.set_signature(AccountKey::dev(a).sign(ledger.chain_id(), &tx));
    tx
}

fn id(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn hold(l: &Ledger, hold_id: &str, from: u64, to: u64, amount: u64, timeout_ms: u64) -> Transaction {
    signed(
        l,
        Transaction::Hold {
            id: id(hold_id),
            from,
            to,
            amount,
            timeout_ms,
            expires_ms: EXPIRES_MS,
            signature: Signature::NONE,
        },
    )
}

fn post(l: &Ledger, own: &str, hold_id: &str, from: u64, to: u64, amount: u64) -> Transaction {
    signed(
        l,
        Transaction::Post {
            id: id(own),
            hold_id: id(hold_id),
            from,
            to,
            amount,
            expires_ms: EXPIRES_MS,
            signature: Signature::NONE,
        },
    )
}

fn void(l: &Ledger, own: &str, hold_id: &str, from: u64, to: u64) -> Transaction {
    signed(
        l,
        Transaction::Void {
            id: id(own),
            hold_id: id(hold_id),
            from,
            to,
            expires_ms: EXPIRES_MS,
            signature: Signature::NONE,
        },
    )
}

/// The next block of `l`'s chain, at time `ms`.
fn block_at(l: &Ledger, ms: u64, txs: Vec<Transaction>) -> Block {
    let (h, tip) = l.tip();
    Block::new(l.chain_id(), h + 1, tip, ms, 4, txs).mined()
}

fn outcomes(outcome: crate::ledger::BlockOutcome) -> Vec<Result<crate::ledger::Applied, RejectReason>> {
    match outcome {
        crate::ledger::BlockOutcome::Committed { records, .. } => records.into_iter().map(|r| r.outcome).collect(),
        other => panic!("block not committed: {other:?}"),
    }
}

fn pending(l: &Ledger) -> Vec<(HoldKey, crate::ledger::Hold)> {
    l.with_state(|s| s.registry.holds.iter().map(|(k, h)| (k.clone(), *h)).collect())
}

#[tokio::test]
async fn holds_settle_once_release_by_block_time_and_come_through_snapshots_and_reopens() {
    use openraft::storage::RaftSnapshotBuilder;
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, mut sm_a) = open(a_dir.path());
    let (b, mut sm_b) = open(b_dir.path());
    let first = block_at(
        &a,
        10,
        vec![
            hold(&a, "h1", 0, 1, 60, 1_000_000),
            hold(&a, "h2", 1, 0, 10, 1_000_000),
            hold(&a, "h3", 0, 1, 5, 100),
        ],
    );
    let mut out = Vec::new();
    for r in sm_a.apply(vec![entry(1, first.clone())]).await.unwrap() {
        out.extend(outcomes(r));
    }
    sm_b.apply(vec![entry(1, first)]).await.unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(a.with_state(|s| s.registry.holds.held(0).out), 65);

    // Block time 110 reaches h3's deadline (10 + 100): it is released first,
    // so a post of it in the same block finds it ended.
    let second = block_at(
        &a,
        110,
        vec![
            post(&a, "p1", "h1", 0, 1, 35),
            void(&a, "v1", "h1", 0, 1),
            post(&a, "p3", "h3", 0, 1, 5),
        ],
    );
    let out = outcomes(sm_a.apply(vec![entry(2, second)]).await.unwrap().remove(0));
    assert_eq!(out[0], Ok(crate::ledger::Applied { balance: Some(35) }));
    let settled = |end| {
        Err(RejectReason::HoldSettled {
            account: 0,
            id: id("h1"),
            end,
        })
    };
    assert_eq!(out[1], settled(HoldEnd::Posted { amount: 35, height: 2 }));
    assert_eq!(
        out[2],
        Err(RejectReason::HoldSettled {
            account: 0,
            id: id("h3"),
            end: HoldEnd::Expired
        })
    );
    let h2 = HoldKey { from: 1, id: id("h2") };
    assert_eq!(
        pending(&a).into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
        vec![h2.clone()]
    );
    assert_eq!(
        a.balance(0).map(|b| b.0),
        Some(100 - 35),
        "a post moves money, a release none"
    );
    let settlement = TxKey {
        signer: Signer::Settled(0),
        id: id("h1"),
    };
    assert!(a.tx_record(&settlement).unwrap().is_some());

    // b catches up by snapshot: the pending hold and the settlement record
    // come with it, so b refuses a second settlement exactly as a does.
    let snap = sm_a.get_snapshot_builder().await.build_snapshot().await.unwrap();
    drop(sm_b.begin_receiving_snapshot().await.unwrap());
    sm_b.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
    assert_eq!(pending(&b), pending(&a));
    assert_eq!(b.tx_record(&settlement).unwrap(), a.tx_record(&settlement).unwrap());
    let third = block_at(&a, 120, vec![void(&a, "v1b", "h1", 0, 1), void(&a, "v2", "h2", 1, 0)]);
    let on_a = outcomes(sm_a.apply(vec![entry(3, third.clone())]).await.unwrap().remove(0));
    let on_b = outcomes(sm_b.apply(vec![entry(3, third)]).await.unwrap().remove(0));
    assert_eq!(on_a, on_b);
    assert_eq!(on_a[0], settled(HoldEnd::Posted { amount: 35, height: 2 }));
    assert!(on_a[1].is_ok());
    assert!(pending(&b).is_empty());

    // A hold pending across a reopen stays; one ended leaves no entry.
    let fourth = block_at(&a, 130, vec![hold(&a, "h4", 1, 0, 7, 1_000_000)]);
    sm_b.apply(vec![entry(4, fourth)]).await.unwrap();
    let before = pending(&b);
    drop((b, sm_b));
    let (b, _sm_b) = open(b_dir.path());
    assert_eq!(pending(&b), before);
    assert_eq!(
        b.version_count(),
        2,
        "the pending hold's entry and the supply's (an install writes it); ended holds none"
    );
    b.verify().unwrap();
    a.verify().unwrap();
}
