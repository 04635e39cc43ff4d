//! Transfer sets through apply, the views' records and the full
//! re-execution, where they meet what a block does before and after them:
//! a key rotated earlier in the block, an id another copy claims.

use super::*;
use crate::ledger::{set_digest, AccountKey, Applied, RejectReason, Signature, Signer};
use openraft::storage::RaftStateMachine;

/// `items` signed as one set, each by the key `keys` gives its signer.
fn set_of(l: &Ledger, mut items: Vec<Transaction>, key: impl Fn(u64) -> AccountKey) -> Transaction {
    let digest = set_digest(&items);
    for item in items.iter_mut() {
        let Some(Signer::Account(a)) = item.signer() else {
            panic!("account items only")
        };
        let sig = key(a).sign_set_item(l.chain_id(), digest, item);
        item.set_signature(sig);
    }
    Transaction::Set { items }
}

fn unsigned(id: &str, from: u64, to: u64, amount: u64) -> Transaction {
    Transaction::Transfer {
        id: TxId::new(id).unwrap(),
        from,
        to,
        amount,
        expires_ms: EXPIRES_MS,
        signature: Signature::NONE,
    }
}

fn outcomes(records: &[crate::ledger::TxRecord]) -> Vec<Result<Applied, RejectReason>> {
    records.iter().map(|r| r.outcome.clone()).collect()
}

#[tokio::test]
async fn sets_are_checked_under_the_keys_before_their_block_and_audited_to_what_apply_did() {
    let dir = tempfile::tempdir().unwrap();
    let (l, mut sm) = open_with(
        dir.path(),
        r#"{"difficulty":4,"accounts":[{"id":0,"balance":100},{"id":1,"balance":100},{"id":2,"balance":100}]}"#,
    );
    let transfer = |id: &str, from: u64, to: u64, amount: u64| {
        AccountKey::dev(from).transfer(l.chain_id(), TxId::new(id).unwrap(), to, amount, EXPIRES_MS)
    };
    let new_key = AccountKey::dev(9);
    let mut rotate = Transaction::RotateKey {
        id: TxId::new("rot").unwrap(),
        account: 0,
        public_key: new_key.public(),
        expires_ms: EXPIRES_MS,
        signature: Signature::NONE,
    };
    rotate.set_signature(AccountKey::dev(0).sign(l.chain_id(), &rotate));
    // Signed with account 0's key before the rotation in the same block:
    // that is the key it is checked under.
    let old_signed = set_of(
        &l,
        vec![unsigned("a1", 0, 1, 5), unsigned("a2", 1, 2, 3)],
        AccountKey::dev,
    );
    let b1 = next_block(&l, vec![rotate, old_signed]);
    sm.apply(vec![entry(1, b1.clone())]).await.unwrap();
    assert_eq!(
        outcomes(&l.records_of(&b1).unwrap()),
        vec![Ok(Applied { balance: None }); 2]
    );

    // A set with one item not signed over it is refused claiming no id;
    // a lone copy of that item later in the block takes the id.
    let key = |a: u64| if a == 0 { AccountKey::dev(9) } else { AccountKey::dev(a) };
    let mut bad = set_of(&l, vec![unsigned("b1", 0, 1, 1), unsigned("b2", 1, 2, 1)], key);
    if let Transaction::Set { items } = &mut bad {
        let lone_sig = AccountKey::dev(1).sign(l.chain_id(), &items[1]);
        items[1].set_signature(lone_sig);
    }
    let lone = transfer("b2", 1, 2, 1);
    let b2 = next_block(&l, vec![bad, lone]);
    sm.apply(vec![entry(2, b2.clone())]).await.unwrap();
    let got = outcomes(&l.records_of(&b2).unwrap());
    assert!(
        matches!(&got[0], Err(RejectReason::InSet { item: 2, reason, .. }) if matches!(**reason, RejectReason::Unauthorized { .. })),
        "{got:?}"
    );
    assert_eq!(got[1], Ok(Applied { balance: None }));
    assert_eq!(
        l.tx_record(&super::key("b1", 0)).unwrap(),
        None,
        "the refused set claimed b1"
    );

    // An id used earlier in the same block refuses a set naming it; the
    // same set sent again after it ran is its first outcome.
    let again = set_of(&l, vec![unsigned("c1", 0, 1, 1)], key);
    let b3 = next_block(
        &l,
        vec![
            transfer("c2", 2, 0, 1),
            set_of(&l, vec![unsigned("c2", 2, 0, 2)], key),
            again.clone(),
            again,
        ],
    );
    sm.apply(vec![entry(3, b3.clone())]).await.unwrap();
    let got = outcomes(&l.records_of(&b3).unwrap());
    assert!(
        matches!(&got[1], Err(RejectReason::InSet { item: 1, reason, .. }) if matches!(**reason, RejectReason::IdUsed { .. })),
        "{got:?}"
    );
    assert_eq!(got[2], Ok(Applied { balance: None }));
    assert_eq!(got[3], Ok(Applied { balance: None }));
    assert_eq!(l.balance(1).map(|b| b.0), Some(100 + 5 - 3 - 1 + 1));

    // The full re-execution reaches every record apply wrote.
    l.verify().expect("the chain verifies");
}
