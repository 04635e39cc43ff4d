//! Network faults injected through `bank-client partition/heal/delay`, with
//! real processes: the ledger stays correct and heals.

mod common;

use common::{wait_for, Cluster, TEST_GENESIS};
use serde_json::Value;
use std::time::{Duration, Instant};

const TOTAL: u64 = 100 + 100 + 100 + 1000;

fn total_of(balances: &Value) -> u64 {
    let sum: u64 = balances["balances"]
        .as_object()
        .expect("balances map")
        .values()
        .map(|v| v.as_u64().expect("amount"))
        .sum();
    assert_eq!(
        balances["total"].as_u64(),
        Some(sum),
        "reported total matches the balances"
    );
    sum
}

#[test]
fn isolated_leader_is_replaced_stops_serving_writes_and_catches_up_after_heal() {
    let c = Cluster::start(3, TEST_GENESIS);
    let old = c.wait_leader();
    let rest: Vec<u64> = (0..3).filter(|i| *i != old).collect();
    let group = format!("{},{}", rest[0], rest[1]);
    c.ok(&["partition", &group, &old.to_string()]);

    // The majority elects a new leader among itself and keeps committing.
    let majority = c.servers_of(&rest);
    let new = wait_for("a new leader in the majority", Duration::from_secs(20), || {
        let st = c.json_at(&majority, &["status"]);
        st.as_array()?
            .iter()
            .filter(|s| rest.contains(&s["id"].as_u64().unwrap_or(99)))
            .find(|s| s["role"] == "leader")
            .and_then(|s| s["id"].as_u64())
    });
    assert_ne!(new, old);
    let r = c.json_at(&majority, &["transfer", "3", "0", "5", "--id", "majority-1"]);
    assert!(r["height"].as_u64().is_some());

    // A client that reaches only the old leader gets a clear refusal in time,
    // never a success for a transfer that did not commit.
    let started = Instant::now();
    let out = c.client_timed(c.addr(old), 2000, &["transfer", "3", "1", "7", "--id", "minority-1"]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the isolated leader must not acknowledge");
    assert!(err.contains("no quorum"), "{err}");
    assert!(took < Duration::from_secs(4), "answered within the deadline: {took:?}");
    let read = c.client_timed(c.addr(old), 2000, &["balance", "3"]);
    assert!(!read.status.success(), "no linearizable read from a minority");
    assert!(String::from_utf8_lossy(&read.stderr).contains("no quorum"));

    c.ok(&["heal"]);
    c.wait_converged();
    // The minority transfer's outcome was unknown: resubmitting its id settles it.
    c.transfer(3, 1, 7, "minority-1");
    let b = c.json(&["balances"]);
    assert_eq!(total_of(&b), TOTAL);
    assert_eq!(b["balances"]["3"], 1000 - 5 - 7);
    let (_, tip) = c.wait_converged();
    assert_eq!(tip.len(), 64);
}

#[test]
fn random_delays_slow_the_cluster_but_lose_nothing() {
    let c = Cluster::start(3, TEST_GENESIS);
    c.ok(&["delay", "--min-ms", "10", "--max-ms", "200"]);
    let st = c.status();
    assert!(
        st.iter().all(|s| s["faults"]["delay_max_ms"] == 200),
        "status shows the delay: {st:?}"
    );
    for i in 0..8u64 {
        c.transfer(3, i % 3, 10, &format!("slow-{i}"));
    }
    c.ok(&["delay", "--off"]);
    c.wait_converged();
    let b = c.json(&["balances"]);
    assert_eq!(total_of(&b), TOTAL);
    assert_eq!(b["balances"]["3"], 1000 - 80);
}

#[test]
fn everyone_alone_commits_nothing_and_recovers_after_heal() {
    let c = Cluster::start(3, TEST_GENESIS);
    c.transfer(3, 0, 1, "before");
    let (height, _) = c.wait_converged();
    c.ok(&["partition", "0", "1", "2"]);
    let st = c.status();
    assert!(st
        .iter()
        .all(|s| s["faults"]["partition"] == serde_json::json!([[0], [1], [2]])));

    let out = c.client_timed(&c.all_servers(), 2500, &["transfer", "3", "0", "1", "--id", "alone"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no quorum"));
    let st = c.status();
    assert!(
        st.iter().all(|s| s["height"].as_u64() == Some(height)),
        "nothing committed while everyone is alone: {st:?}"
    );

    c.ok(&["heal"]);
    c.wait_leader();
    c.transfer(3, 0, 1, "after");
    c.transfer(3, 0, 1, "alone"); // settles the unknown outcome
    c.wait_converged();
    let b = c.json(&["balances"]);
    assert_eq!(total_of(&b), TOTAL);
    assert_eq!(b["balances"]["3"], 1000 - 3);
}

#[test]
fn bad_fault_settings_are_refused_with_a_reason() {
    let c = Cluster::start(3, TEST_GENESIS);
    let servers = c.all_servers();
    for (args, reason) in [
        (
            &["partition", "0,1", "1,2"][..],
            "node 1 is listed in two partition groups",
        ),
        (&["delay", "--min-ms", "50", "--max-ms", "10"][..], "exceeds --max-ms"),
        (&["delay", "--loss", "2"][..], "loss must be between 0 and 1"),
        (&["partition", "0,x"][..], "bad group"),
    ] {
        let out = c.client_at(&servers, args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    assert!(c
        .status()
        .iter()
        .all(|s| s["faults"]["partition"] == serde_json::json!([])));
}
