//! Accounts opened, frozen, closed and re-keyed at runtime, and money issued
//! and redeemed, through `bank-client` against real `bank-server` processes:
//! each command, each refusal, and all of it surviving SIGKILL of every node.

mod common;

use bank_ledger::ledger::{AccountKey, Signer};
use common::{genesis_with_roles, Cluster};
use serde_json::Value;

fn account(c: &Cluster, id: u64) -> Value {
    c.json(&["account", "show", &id.to_string()])
}

/// The `balances` read: its total and the supply it reports.
fn supply(c: &Cluster) -> (u64, u64, u64, u64) {
    let v = c.json(&["balances"]);
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    (n("total"), n("genesis_total"), n("issued"), n("redeemed"))
}

/// A keystore of its own holding `src`'s files, for signing with other keys.
fn keystore_copy(c: &Cluster, name: &str) -> std::path::PathBuf {
    let dir = c.data_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(c.keystore()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn accounts_open_freeze_close_and_money_is_issued_and_redeemed_under_control() {
    let mut c = Cluster::start(3, &genesis_with_roles());

    // Open with a key made here: it lands in the keystore, and the account
    // starts at 0, open, at the height of its block.
    let opened = c.json(&["account", "open", "10", "--keygen", "--id", "open-10"]);
    let height = opened["height"].as_u64().unwrap();
    let a = account(&c, 10);
    let key = bank_ledger::keystore::load_key(&c.keystore().join("10.key")).expect("the new key is kept");
    assert_eq!(a["balance"], 0);
    assert_eq!(a["held"], 0);
    assert_eq!(a["available"], 0);
    assert_eq!(a["state"], "open");
    assert_eq!(a["opened_height"], height);
    assert_eq!(a["public_key"], key.public().to_hex());
    // Retrying the same id answers the first outcome; another id is refused.
    let again = c.json(&[
        "account",
        "open",
        "10",
        "--public-key",
        &key.public().to_hex(),
        "--id",
        "open-10",
    ]);
    assert!(again.is_object());
    let pk = AccountKey::dev(11).public().to_hex();
    assert!(c
        .refused(&["account", "open", "10", "--public-key", &pk])
        .contains("account 10 exists already"));
    assert!(c
        .refused(&["account", "open", "11", "--public-key", &"00".repeat(32)])
        .contains("cannot sign"));

    // Wrong role: the issuer's key where the registrar's should sign, and
    // an account's key where the issuer's should: refused as unsigned.
    let wrong = keystore_copy(&c, "wrong-roles");
    std::fs::remove_file(wrong.join("registrar-0.key")).unwrap();
    let issuer_as_registrar = AccountKey::dev_role(Signer::Issuer(0));
    bank_ledger::keystore::save_role_key(
        &issuer_as_registrar,
        Signer::Registrar(0),
        &wrong.join("registrar-0.key"),
    )
    .unwrap();
    let err = c.refused_signing_with(&wrong, &["account", "open", "11", "--public-key", &pk]);
    assert!(err.contains("signature") && err.contains("registrar 0"), "{err}");
    std::fs::remove_file(wrong.join("issuer-0.key")).unwrap();
    bank_ledger::keystore::save_role_key(&AccountKey::dev(3), Signer::Issuer(0), &wrong.join("issuer-0.key")).unwrap();
    let err = c.refused_signing_with(&wrong, &["issue", "3", "1000000"]);
    assert!(err.contains("signature") && err.contains("issuer 0"), "{err}");
    // A registrar genesis does not name.
    let err = c.refused(&["account", "open", "11", "--public-key", &pk, "--registrar", "1"]);
    assert!(err.contains("registrar 1"), "{err}");
    assert!(c.refused(&["account", "show", "11"]).contains("unknown account 11"));

    // Money in, moved, and out; the total is genesis + issued - redeemed.
    c.ok(&["issue", "10", "500"]);
    c.transfer(10, 1, 100, "from-new-account");
    assert_eq!(c.balance(10), 400);
    assert_eq!(supply(&c), (1800, 1300, 500, 0));
    assert!(c.refused(&["issue", "10", "0"]).contains("zero"));
    assert!(c
        .refused(&["redeem", "10", "401", "--by-owner"])
        .contains("insufficient"));

    // Frozen: receives, does not send; unfrozen, sends again.
    c.ok(&["account", "freeze", "10"]);
    assert_eq!(account(&c, 10)["state"], "frozen");
    assert!(c.refused(&["account", "freeze", "10"]).contains("frozen already"));
    assert!(c
        .refused(&["transfer", "10", "1", "5"])
        .contains("account 10 is frozen"));
    assert!(c
        .refused(&["redeem", "10", "5", "--by-owner"])
        .contains("account 10 is frozen"));
    c.transfer(1, 10, 5, "to-frozen");
    c.ok(&["account", "unfreeze", "10"]);
    c.transfer(10, 2, 5, "after-unfreeze");

    // Closing with money is refused; emptied (an issuer redeems part, the
    // owner withdraws the rest), it closes for good.
    let err = c.refused(&["account", "close", "10"]);
    assert!(err.contains("account 10 holds 400"), "{err}");
    c.ok(&["redeem", "10", "150"]);
    c.ok(&["redeem", "10", "250", "--by-owner"]);
    c.ok(&["account", "close", "10"]);
    assert_eq!(account(&c, 10)["state"], "closed");
    assert!(c
        .refused(&["transfer", "1", "10", "1"])
        .contains("account 10 is closed"));
    assert!(c
        .refused(&["account", "unfreeze", "10"])
        .contains("account 10 is closed"));
    assert_eq!(supply(&c), (1400, 1300, 500, 400));

    // Rotation: the old key stops signing, the new one signs.
    c.ok(&["account", "open", "12", "--keygen"]);
    c.ok(&["issue", "12", "50"]);
    let rotated = keystore_copy(&c, "rotated");
    std::fs::remove_file(rotated.join("12.key")).unwrap();
    let new_key = AccountKey::generate(12);
    bank_ledger::keystore::save_key(&new_key, &rotated.join("12.key")).unwrap();
    c.ok(&[
        "account",
        "rotate-key",
        "12",
        "--public-key",
        &new_key.public().to_hex(),
    ]);
    assert_eq!(account(&c, 12)["public_key"], new_key.public().to_hex());
    let err = c.refused(&["transfer", "12", "1", "10"]);
    assert!(err.contains("signature"), "the old key no longer signs: {err}");
    let out = c.client_signing_with(&rotated, &c.all_servers(), 10_000, &["transfer", "12", "1", "10"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Every node keeps all of it through SIGKILL of the whole cluster, and
    // a full re-execution of the chain agrees with what it stored.
    for id in 0..3 {
        c.kill(id);
    }
    for id in 0..3 {
        c.spawn(id);
    }
    c.wait_leader();
    assert_eq!(account(&c, 10)["state"], "closed");
    assert_eq!(account(&c, 12)["public_key"], new_key.public().to_hex());
    assert_eq!(account(&c, 12)["balance"], 40);
    assert_eq!(supply(&c), (1450, 1300, 550, 400));
    c.wait_converged();
    c.ok(&["verify"]);
    c.kill_and_verify_offline(&[0, 1, 2]);
}
