//! Holds (two-phase transfers) through `bank-client` against real
//! `bank-server` processes: reserve, post part, void, release at the
//! timeout by the chain's own clock, each refusal, and pending holds kept
//! through SIGKILL of every node.

mod common;

use common::{Cluster, TEST_GENESIS};
use serde_json::Value;
use std::time::Duration;

fn account(c: &Cluster, id: u64) -> Value {
    c.json(&["account", "show", &id.to_string()])
}

/// Balance, held and available of `id`.
fn money(c: &Cluster, id: u64) -> (u64, u64, u64) {
    let a = account(c, id);
    let n = |k: &str| a[k].as_u64().unwrap_or_else(|| panic!("{k} in {a}"));
    (n("balance"), n("held"), n("available"))
}

#[test]
fn holds_reserve_money_settle_once_and_end_at_their_timeout() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    let start = [c.balance(0), c.balance(1), c.balance(2)];
    let total: u64 = start.iter().sum();

    // A hold reserves: the balance stays, the available balance drops.
    let placed = c.json(&["transfer", "0", "1", "60", "--hold", "--id", "cart-1"]);
    assert_eq!(placed["kind"], "hold", "{placed}");
    assert_eq!(money(&c, 0), (start[0], 60, start[0] - 60));
    // Every node's JSON view shows what is held.
    let height = placed["height"].as_u64().expect("height");
    for id in 0..3 {
        let view = c.balances_view(id, height);
        assert_eq!(view["held"], serde_json::json!({"0": 60}), "{view}");
        assert_eq!(view["pending_holds"], 1, "{view}");
    }
    let shown = c.json(&["tx", "cart-1"]);
    assert_eq!(shown["hold"]["state"], "pending", "{shown}");
    assert_eq!(shown["hold"]["amount"], 60);
    // Held money cannot be spent twice.
    let err = c.refused(&["transfer", "0", "2", &(start[0] - 59).to_string()]);
    assert!(err.contains(&format!("has {} available", start[0] - 60)), "{err}");
    // The same id again is the same hold: nothing more is reserved.
    c.ok(&["transfer", "0", "1", "60", "--hold", "--id", "cart-1"]);
    assert_eq!(money(&c, 0).1, 60);

    // Only the receiver settles it (the CLI signs with the receiver's key,
    // so a keystore without it cannot), and never above the held amount.
    let err = c.refused(&["post", "cart-1", "--amount", "61"]);
    assert!(err.contains("cannot post 61") && err.contains("holds 60"), "{err}");
    // Its sender holds money, so it cannot close (an account at 0 that is
    // to receive a pending hold cannot either: the rules' tests show it).
    let err = c.refused(&["account", "close", "0"]);
    assert!(err.contains("only an account at 0 may close"), "{err}");

    // Post part of it: that much moves, the rest is released.
    let posted = c.json(&["post", "cart-1", "--amount", "45", "--id", "capture-1"]);
    assert_eq!(posted["kind"], "post");
    assert_eq!(money(&c, 0), (start[0] - 45, 0, start[0] - 45));
    assert_eq!(c.balance(1), start[1] + 45);
    // A retry of the same post is answered with its first outcome.
    c.ok(&["post", "cart-1", "--amount", "45", "--id", "capture-1"]);
    assert_eq!(c.balance(1), start[1] + 45);
    // A second settlement, post or void, is refused naming the first.
    let err = c.refused(&["void", "cart-1"]);
    assert!(
        err.contains("hold cart-1 of account 0 was posted (45) in block"),
        "{err}"
    );
    let err = c.refused(&["post", "cart-1", "--amount", "1"]);
    assert!(err.contains("was posted (45)"), "{err}");
    assert_eq!(c.json(&["tx", "cart-1"])["hold"]["state"], "posted");

    // Void: all of it comes back; a post after it is refused.
    c.ok(&["transfer", "2", "0", "30", "--hold", "--id", "cart-2"]);
    assert_eq!(money(&c, 2).1, 30);
    c.ok(&["void", "cart-2"]);
    assert_eq!(money(&c, 2), (start[2], 0, start[2]));
    let err = c.refused(&["post", "cart-2"]);
    assert!(err.contains("hold cart-2 of account 2 was voided in block"), "{err}");
    let err = c.refused(&["post", "no-such-hold"]);
    assert!(err.contains("no-such-hold"), "{err}");

    // A hold with a timeout of 1 s is released by the first block whose
    // time is past it: no wall clock in apply, the block's time decides.
    c.ok(&[
        "transfer",
        "1",
        "2",
        "20",
        "--hold",
        "--timeout-s",
        "1",
        "--id",
        "short",
    ]);
    // One that stays pending, kept through a restart of every node.
    c.ok(&["transfer", "1", "0", "7", "--hold", "--id", "long"]);
    assert_eq!(money(&c, 1).1, 27);
    std::thread::sleep(Duration::from_millis(1_100));
    // Any block after the deadline releases it; this transfer makes one.
    c.transfer(2, 0, 1, "tick");
    assert_eq!(money(&c, 1).1, 7);
    assert_eq!(c.json(&["tx", "short"])["hold"]["state"], "released");
    let err = c.refused(&["post", "short"]);
    assert!(
        err.contains("hold short of account 1 was released at its timeout"),
        "{err}"
    );

    // Everything holds through SIGKILL of the whole cluster, and a full
    // re-execution of the chain agrees with what every node stored.
    for id in 0..3 {
        c.kill(id);
    }
    for id in 0..3 {
        c.spawn(id);
    }
    c.wait_leader();
    assert_eq!(money(&c, 1), (start[1] + 45, 7, start[1] + 45 - 7));
    assert_eq!(c.json(&["tx", "long"])["hold"]["state"], "pending");
    c.ok(&["post", "long"]);
    assert_eq!(money(&c, 1), (start[1] + 38, 0, start[1] + 38));
    let sum: u64 = (0..3).map(|a| c.balance(a)).sum();
    assert_eq!(sum, total, "holds move money, never make or lose it");
    c.wait_converged();
    c.ok(&["verify"]);
    c.kill_and_verify_offline(&[0, 1, 2]);
}
