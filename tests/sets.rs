//! Transfer sets through `bank-client transfer-set` against real
//! `bank-server` processes: every kind of item committed together in one
//! block, a set with one bad item committing nothing and naming it, its ids
//! kept by that refusal, a hold posted in one set and refused in the next,
//! bad files refused with one line, and every node's chain verified
//! offline after SIGKILL.

mod common;

use common::{genesis_with_roles, Cluster};
use serde_json::Value;

/// Writes `lines` as the set file `name` in the cluster's dir.
fn set_file(c: &Cluster, name: &str, lines: &[&str]) -> String {
    let path = c.data_dir().join(name);
    std::fs::write(&path, lines.join("\n")).expect("write set file");
    path.display().to_string()
}

fn balances(c: &Cluster) -> Value {
    c.json(&["balances"])
}

#[test]
fn a_transfer_set_commits_all_in_one_block_or_nothing_and_names_what_failed() {
    let mut c = Cluster::start(3, &genesis_with_roles());

    // Every kind of item, each signed by its own signer, in one block.
    let all = set_file(
        &c,
        "all.jsonl",
        &[
            r#"{"type":"transfer","from":3,"to":0,"amount":50,"id":"pay-1"}"#,
            "# comments and blank lines are skipped",
            "",
            r#"{"type":"issue","account":1,"amount":20,"id":"mint-1"}"#,
            r#"{"type":"hold","from":0,"to":2,"amount":30,"timeout_s":600,"id":"h1"}"#,
            r#"{"type":"redeem","account":2,"amount":10,"id":"burn-1"}"#,
        ],
    );
    let r = c.json(&["transfer-set", &all]);
    assert_eq!(r["kind"], "set", "{r}");
    assert_eq!(r["tx_ids"], serde_json::json!(["pay-1", "mint-1", "h1", "burn-1"]));
    let height = r["height"].as_u64().expect("height");
    let b = balances(&c);
    assert_eq!(
        b["balances"],
        serde_json::json!({"0": 150, "1": 120, "2": 90, "3": 950}),
        "{b}"
    );
    assert_eq!((b["issued"].as_u64(), b["redeemed"].as_u64()), (Some(20), Some(10)));
    assert_eq!(c.json(&["account", "show", "0"])["held"], 30);
    // Each item is found by its id, in its set, in the one block.
    let t = c.json(&["tx", "mint-1"]);
    assert_eq!(t["height"].as_u64(), Some(height), "{t}");
    assert_eq!(t["set"], serde_json::json!({"item": 2, "items": 4}), "{t}");
    // The same file again is the same set: its first outcome, nothing more.
    let again = c.json(&["transfer-set", &all]);
    assert_eq!(again["height"].as_u64(), Some(height), "{again}");
    assert_eq!(balances(&c)["balances"], b["balances"]);

    // One bad item: nothing commits, and the refusal names it.
    let bad = set_file(
        &c,
        "bad.jsonl",
        &[
            r#"{"type":"transfer","from":1,"to":2,"amount":10,"id":"ok-1"}"#,
            r#"{"type":"transfer","from":2,"to":3,"amount":500,"id":"big-1"}"#,
        ],
    );
    let err = c.refused(&["transfer-set", &bad]);
    // Item 2 sees what item 1 moved (90 + 10), and still falls short.
    assert!(
        err.contains("item 2 of the transfer set (big-1) fails, so none commits: insufficient funds: account 2 has 100 available, needs 500"),
        "{err}"
    );
    assert_eq!(balances(&c)["balances"], b["balances"]);
    // The refusal is final for its ids, like a lone transfer's: funded
    // now, the same set is still refused, and its good item cannot commit
    // alone under its id.
    c.ok(&["transfer", "3", "2", "600", "--id", "fund-2"]);
    let err = c.refused(&["transfer-set", &bad]);
    assert!(err.contains("item 2 of the transfer set (big-1)"), "{err}");
    let err = c.refused(&["transfer", "1", "2", "10", "--id", "ok-1"]);
    assert!(err.contains("item 2 of the transfer set (big-1)"), "{err}");
    // A set may not reuse an id a lone transaction committed.
    let reuse = set_file(
        &c,
        "reuse.jsonl",
        &[r#"{"type":"transfer","from":3,"to":0,"amount":1,"id":"fund-2"}"#],
    );
    let err = c.refused(&["transfer-set", &reuse]);
    assert!(err.contains("transaction id fund-2 was used before, in block"), "{err}");

    // A hold's receiver posts part of it in one set; a void of it in the
    // next set is refused, naming the post.
    let post = set_file(
        &c,
        "post.jsonl",
        &[
            r#"{"type":"post","hold_id":"h1","from":0,"to":2,"amount":20,"id":"cap-1"}"#,
            r#"{"type":"transfer","from":2,"to":1,"amount":5,"id":"fee-1"}"#,
        ],
    );
    c.ok(&["transfer-set", &post]);
    let b = balances(&c);
    assert_eq!(
        b["balances"],
        serde_json::json!({"0": 130, "1": 125, "2": 705, "3": 350}),
        "{b}"
    );
    assert_eq!(c.json(&["account", "show", "0"])["held"], 0);
    let void = set_file(
        &c,
        "void.jsonl",
        &[
            r#"{"type":"transfer","from":1,"to":0,"amount":1,"id":"tip-1"}"#,
            r#"{"type":"void","hold_id":"h1","from":0,"to":2,"id":"undo-1"}"#,
        ],
    );
    let err = c.refused(&["transfer-set", &void]);
    assert!(
        err.contains("item 2 of the transfer set (undo-1) fails")
            && err.contains("hold h1 of account 0 was posted (20)"),
        "{err}"
    );
    // Settling one hold twice in a set is no set at all.
    let twice = set_file(
        &c,
        "twice.jsonl",
        &[
            r#"{"type":"void","hold_id":"h9","from":0,"to":2,"id":"v1"}"#,
            r#"{"type":"void","hold_id":"h9","from":0,"to":2,"id":"v2"}"#,
        ],
    );
    let err = c.refused(&["transfer-set", &twice]);
    assert!(
        err.contains("not a valid transfer set: items settle hold h9 of account 0 twice"),
        "{err}"
    );

    // Files that are not sets: one line each, nothing sent.
    for (lines, reason) in [
        (
            &[r#"{"type":"transfer","from":1,"to":2,"amout":5}"#][..],
            "line 1: unknown field `amout`",
        ),
        (
            &[r#"{"type":"balance_check","account":1}"#][..],
            "line 1: unknown variant `balance_check`",
        ),
        (&["# nothing"][..], "holds no items"),
    ] {
        let f = set_file(&c, "broken.jsonl", lines);
        let err = c.refused(&["transfer-set", &f]);
        assert!(err.contains(reason), "{lines:?}: {err}");
    }
    let many: Vec<String> = (0..257)
        .map(|i| format!(r#"{{"type":"transfer","from":3,"to":0,"amount":1,"id":"m{i}"}}"#))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let f = set_file(&c, "many.jsonl", &many);
    assert!(c.refused(&["transfer-set", &f]).contains("more than 256 items"));

    // Every node re-executes what it holds, sets included, to the same books.
    c.ok(&["verify"]);
    c.wait_converged();
    c.kill_and_verify_offline(&[0, 1, 2]);
}
