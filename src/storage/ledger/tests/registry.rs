//! Account entries and the supply through applies, crashes, reopens and
//! snapshots: the versioned entries of [`super::super::registry`].

use super::*;
use crate::ledger::{AccountInfo, AccountKey, AccountState, Signature, Signer, Supply, View};
use openraft::storage::RaftStateMachine;

/// [`GENESIS`] with registrar 0 and issuer 0 (their dev keys).
fn genesis() -> String {
    let hex = |s| AccountKey::dev_role(s).public().to_hex();
    format!(
        r#"{{"difficulty":4,"accounts":[{{"id":0,"balance":100}},{{"id":1,"balance":100}}],"registrars":["{}"],"issuers":["{}"]}}"#,
        hex(Signer::Registrar(0)),
        hex(Signer::Issuer(0))
    )
}

/// `tx` signed by its signer's dev key for `ledger`'s chain.
fn signed(ledger: &Ledger, mut tx: Transaction) -> Transaction {
    let key = match tx.signer().unwrap() {
        Signer::Account(a) => AccountKey::dev(a),
        role => AccountKey::dev_role(role),
    };
    tx.set_signature(key.sign(ledger.chain_id(), &tx));
    tx
}

fn id(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

fn open_account(ledger: &Ledger, tx: &str, account: u64) -> Transaction {
    signed(
        ledger,
        Transaction::OpenAccount {
            id: id(tx),
            account,
            public_key: AccountKey::dev(account).public(),
            registrar: 0,
            expires_ms: EXPIRES_MS,
            signature: Signature::NONE,
        },
    )
}

fn issue(ledger: &Ledger, tx: &str, account: u64, amount: u64) -> Transaction {
    signed(
        ledger,
        Transaction::Issue {
            id: id(tx),
            account,
            amount,
            issuer: 0,
            expires_ms: EXPIRES_MS,
            signature: Signature::NONE,
        },
    )
}

fn entries(ledger: &Ledger) -> (Option<AccountInfo>, Option<AccountInfo>, Supply) {
    ledger.with_state(|s| {
        let b = ledger.book(s);
        (b.account(5), s.registry.accounts.get(&1).copied(), b.supply())
    })
}

/// Where a crash falls among a block's writes, the entries it changes are
/// either all as before it (and the re-apply makes them) or all as after;
/// one version of each is left on disk; a full verify agrees.
#[tokio::test]
async fn a_crash_at_any_write_keeps_account_entries_and_supply_whole() {
    let json = genesis();
    for writes in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, mut sm) = open_with(dir.path(), &json);
        let first = next_block(
            &ledger,
            vec![open_account(&ledger, "o5", 5), issue(&ledger, "i1", 0, 50)],
        );
        sm.apply(vec![entry(1, first)]).await.unwrap();
        let before = entries(&ledger);
        let rotate = signed(
            &ledger,
            Transaction::RotateKey {
                id: id("r1"),
                account: 1,
                public_key: AccountKey::dev(77).public(),
                expires_ms: EXPIRES_MS,
                signature: Signature::NONE,
            },
        );
        let freeze = signed(
            &ledger,
            Transaction::FreezeAccount {
                id: id("f5"),
                account: 5,
                frozen: true,
                registrar: 0,
                expires_ms: EXPIRES_MS,
                signature: Signature::NONE,
            },
        );
        let second = next_block(&ledger, vec![freeze, rotate, issue(&ledger, "i2", 5, 10)]);
        ledger.crash_after_writes(writes);
        let crashed = sm.apply(vec![entry(2, second.clone())]).await.is_err();
        drop((ledger, sm));
        let at = format!("crash after {writes} writes");

        let (ledger, mut sm) = open_with(dir.path(), &json);
        if ledger.tip().0 == 1 {
            assert!(crashed, "{at}");
            assert_eq!(entries(&ledger), before, "{at}: nothing of block 2");
            sm.apply(vec![entry(2, second.clone())]).await.unwrap();
        }
        let (five, one, supply) = entries(&ledger);
        let five = five.unwrap();
        assert_eq!((five.state, five.opened_height), (AccountState::Frozen, 1), "{at}");
        let one = one.unwrap();
        assert_eq!(
            (one.public_key, one.key_height),
            (AccountKey::dev(77).public(), 2),
            "{at}"
        );
        assert_eq!(
            supply,
            Supply {
                issued: 60,
                redeemed: 0
            },
            "{at}"
        );
        assert_eq!(ledger.balance(5), Some((10, 2)), "{at}");
        drop((ledger, sm));
        let (ledger, _sm) = open_with(dir.path(), &json);
        assert_eq!(
            ledger.version_count(),
            3,
            "{at}: one version each of 5, 1 and the supply"
        );
        ledger.verify().unwrap();
        if !crashed {
            break;
        }
    }
}

/// A key set in a block signs from the next one: in its own block the key
/// before it is the one checked, and after it the old key no longer signs.
#[tokio::test]
async fn a_rotated_key_signs_from_the_next_block() {
    let json = genesis();
    let dir = tempfile::tempdir().unwrap();
    let (ledger, mut sm) = open_with(dir.path(), &json);
    let new = AccountKey::from_secret(0, [9; 32], false);
    let rotate = signed(
        &ledger,
        Transaction::RotateKey {
            id: id("r"),
            account: 0,
            public_key: new.public(),
            expires_ms: EXPIRES_MS,
            signature: Signature::NONE,
        },
    );
    let chain = ledger.chain_id();
    let by_new = |tx: &str| new.transfer(chain, id(tx), 1, 1, EXPIRES_MS);
    let by_old = |tx: &str| AccountKey::dev(0).transfer(chain, id(tx), 1, 1, EXPIRES_MS);
    let block = next_block(&ledger, vec![rotate, by_new("same-block"), by_old("old-same-block")]);
    sm.apply(vec![entry(1, block)]).await.unwrap();
    let refused = |tx: &str| {
        ledger
            .tx_record(&key(tx, 0))
            .unwrap()
            .is_none_or(|r| r.outcome.is_err())
    };
    assert!(refused("same-block"), "the new key signs only from the next block");
    assert!(
        !refused("old-same-block"),
        "the old key still signs in the rotation's block"
    );
    let block = next_block(&ledger, vec![by_new("next-block"), by_old("old-next-block")]);
    sm.apply(vec![entry(2, block)]).await.unwrap();
    assert!(!refused("next-block"));
    assert!(refused("old-next-block"), "the old key is revoked");
    assert_eq!(ledger.balance(0), Some((98, 2)));
    ledger.verify().unwrap();
    // The start-time check cannot tell the keys of blocks before the
    // rotation; it leaves those transactions to the full replay.
    ledger.verify_recent(64, 8192).unwrap();
}

/// A snapshot carries account entries and the supply to a node behind,
/// without records of their own: its replay gives them, and the install
/// keeps them through a reopen, one version each.
#[tokio::test]
async fn a_snapshot_brings_account_entries_and_supply() {
    use openraft::storage::RaftSnapshotBuilder;
    let json = genesis();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, mut sm_a) = open_with(a_dir.path(), &json);
    let (b, mut sm_b) = open_with(b_dir.path(), &json);
    let first = next_block(&a, vec![open_account(&a, "o5", 5), issue(&a, "i1", 0, 50)]);
    sm_a.apply(vec![entry(1, first.clone())]).await.unwrap();
    sm_b.apply(vec![entry(1, first)]).await.unwrap();
    let freeze = signed(
        &a,
        Transaction::FreezeAccount {
            id: id("f5"),
            account: 5,
            frozen: true,
            registrar: 0,
            expires_ms: EXPIRES_MS,
            signature: Signature::NONE,
        },
    );
    let second = next_block(&a, vec![freeze, open_account(&a, "o6", 6), issue(&a, "i2", 6, 7)]);
    sm_a.apply(vec![entry(2, second)]).await.unwrap();
    let snap = sm_a.get_snapshot_builder().await.build_snapshot().await.unwrap();
    drop(sm_b.begin_receiving_snapshot().await.unwrap());
    sm_b.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
    let registry = |l: &Ledger| l.with_state(|s| s.registry.clone());
    assert_eq!(registry(&b), registry(&a));
    assert_eq!(
        registry(&b).supply,
        Supply {
            issued: 57,
            redeemed: 0
        }
    );
    assert_eq!(b.balance(6), Some((7, 2)));
    drop((b, sm_b));
    let (b, _sm_b) = open_with(b_dir.path(), &json);
    assert_eq!(registry(&b), registry(&a));
    assert_eq!(
        b.version_count(),
        3,
        "accounts 5 and 6 and the supply, one version each"
    );
    b.verify().unwrap();
}
