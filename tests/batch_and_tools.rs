//! The batch API, the genesis generator and the benchmark tool, with real processes.

mod common;

use common::{Cluster, TEST_GENESIS};
use serde_json::Value;
use std::process::Command;

type Batch = Vec<bank_ledger::proto::bank::TransferRequest>;
type BatchReply = Result<bank_ledger::proto::bank::TransferBatchReply, tonic::Status>;

/// Sends one batch through the library client (the CLI has no batch command).
async fn send_batch(servers: &[bank_ledger::client::Server], transfers: Batch) -> BatchReply {
    bank_ledger::client::call_any(servers, std::time::Duration::from_secs(10), |mut cl, to| {
        let msg = bank_ledger::proto::bank::TransferBatchRequest {
            transfers: transfers.clone(),
        };
        async move {
            Ok(cl
                .transfer_batch(bank_ledger::client::request(msg, to))
                .await?
                .into_inner())
        }
    })
    .await
}

#[test]
fn a_batch_gets_one_result_per_transfer_and_each_stands_alone() {
    let c = Cluster::start(3, TEST_GENESIS);
    // Through the library client: the CLI has no batch command.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let servers = bank_ledger::client::parse_servers(&c.all_servers()).unwrap();
    let chain = c.chain_id();
    let t = |id: &str, from, to, amount| {
        let id = bank_ledger::ledger::TxId::new(id).unwrap();
        bank_ledger::client::signed_transfer(&bank_ledger::ledger::AccountKey::dev(from), chain, &id, to, amount)
    };
    let forged = {
        // Account 2's key signing a transfer out of account 3.
        let mut m = t("batch-forged", 2, 0, 1);
        m.from = 3;
        m
    };
    let transfers = vec![
        t("batch-ok-1", 3, 0, 10),
        t("batch-overdraft", 1, 0, 10_000),
        t("batch-unknown", 3, 99, 1),
        t("batch-ok-2", 3, 1, 20),
        t("batch-ok-1", 3, 0, 10), // the same transfer twice in one batch: applied once
        forged,
    ];
    let reply = rt.block_on(send_batch(&servers, transfers)).expect("batch answered");
    let codes: Vec<u32> = reply.results.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![0, 9, 5, 0, 0, 16], "{:?}", reply.results);
    assert!(reply.results[5]
        .error
        .contains("does not verify with the key of account 3"));
    assert!(reply.results[1].error.contains("insufficient funds"));
    assert!(reply.results[2].error.contains("unknown account 99"));
    assert_eq!(reply.results[0].block_hash, reply.results[4].block_hash);
    let b = c.json(&["balances"]);
    assert_eq!(b["balances"]["3"], 1000 - 30);
    assert_eq!(b["balances"]["0"], 115 + 10);

    // Over the limit: refused whole, nothing applied.
    let big: Vec<_> = (0..8193).map(|i| t(&format!("big-{i}"), 3, 0, 1)).collect();
    let err = rt
        .block_on(send_batch(&servers, big))
        .expect_err("oversized batch refused");
    assert!(err.message().contains("exceeds the limit of 8192"), "{err:?}");
    assert_eq!(c.json(&["balances"])["balances"]["3"], 1000 - 30);
}

#[test]
fn the_genesis_generator_writes_a_file_a_node_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.json");
    let status = Command::new(common::SERVER)
        .args([
            "genesis",
            "--accounts",
            "1000",
            "--balance",
            "5",
            "--difficulty",
            "4",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let g = bank_ledger::config::load_genesis(&out).unwrap();
    assert_eq!(g.balances.len(), 1000);
    assert_eq!(g.total, 5000);
    let bad = Command::new(common::SERVER)
        .args(["genesis", "--accounts", "2", "--balance", "18446744073709551615"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("sum to more than"), "{err}");
    // Without --keystore the accounts have the dev keys, and it says so.
    let dev = Command::new(common::SERVER)
        .args(["genesis", "--accounts", "2", "--balance", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dev.stderr).contains("public dev keys"));
    let dev: bank_ledger::ledger::genesis::GenesisFile = serde_json::from_slice(&dev.stdout).unwrap();
    assert_eq!(
        dev.accounts[1].public_key,
        bank_ledger::ledger::AccountKey::dev(1).public()
    );

    // With --keystore: a fresh key per account, its public half in the file.
    let keys = dir.path().join("keys");
    let out = dir.path().join("k.json");
    let status = Command::new(common::SERVER)
        .args(["genesis", "--accounts", "3", "--balance", "5", "--out"])
        .arg(&out)
        .arg("--keystore")
        .arg(&keys)
        .status()
        .unwrap();
    assert!(status.success());
    let g = bank_ledger::config::load_genesis(&out).unwrap();
    for a in &g.file.accounts {
        let key = bank_ledger::keystore::load_key(&bank_ledger::keystore::key_path(&keys, a.id)).unwrap();
        assert_eq!(key.public(), a.public_key);
        assert_ne!(a.public_key, bank_ledger::ledger::AccountKey::dev(a.id).public());
    }
}

#[test]
fn bank_bench_reports_what_it_measured() {
    let c = Cluster::start(3, TEST_GENESIS);
    let out = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
        .args(["--servers", &c.all_servers(), "--accounts", "4", "--concurrency", "2"])
        .args(["--batch", "3", "--duration-s", "2", "--warmup-s", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "tx_per_s",
        "p50_ms",
        "p99_ms",
        "committed",
        "errors",
        "concurrency",
        "batch",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    let committed = r["committed"].as_u64().unwrap();
    assert!(committed > 0, "{r}");
    assert!(r["stages"]["commit"]["count"].as_u64().unwrap() > 0, "{r}");
    // Money moved but none was created: the cluster agrees with the report.
    let b = c.json(&["balances"]);
    assert_eq!(b["total"], 1300);

    // Accounts the chain does not have: every transfer touching one fails,
    // and the report says why, not only how many.
    let out = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
        .args([
            "--servers",
            &c.all_servers(),
            "--accounts",
            "1000",
            "--concurrency",
            "1",
        ])
        .args(["--duration-s", "1", "--warmup-s", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["errors"].as_u64().unwrap() > 0, "{r}");
    let first = r["first_error"].as_str().unwrap_or_default();
    assert!(first.contains("account"), "{r}");
}

#[test]
fn bank_bench_timeline_shows_one_requests_path_across_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
        .args(["--local", "--runs", "1x1", "--accounts", "200", "--timeline"])
        .args(["--duration-s", "2", "--warmup-s", "1", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, timeline) = text
        .split_once("timeline of one request, 1 client x 1 transfers per request:")
        .unwrap_or_else(|| panic!("no timeline in:\n{text}"));
    // Rows: "<us after arrival>  <node>  <point>[ #n]", in order of time.
    let rows: Vec<(f64, String, String)> = timeline
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
                f.collect::<Vec<_>>().join(" "),
            ))
        })
        .collect();
    let at = |node: &str, point: &str| {
        rows.iter()
            .find(|(_, n, p)| n == node && p == point)
            .map(|(t, _, _)| *t)
            .unwrap_or_else(|| panic!("no {point} on {node} in:\n{timeline}"))
    };
    // The node the client sent to (the leader) cut, mined, logged and
    // answered, in that order; the other two appended the block to their logs.
    let entry = rows
        .iter()
        .find(|(_, _, p)| p == "block_cut")
        .map(|(_, n, _)| n.clone())
        .unwrap_or_else(|| panic!("no block_cut in:\n{timeline}"));
    let path = ["block_cut", "block_mined", "log_flushed", "answered", "transfer_out"].map(|p| at(&entry, p));
    assert!(path.windows(2).all(|w| w[0] <= w[1]), "{path:?} in:\n{timeline}");
    let followers: Vec<&String> = rows
        .iter()
        .filter(|(_, n, p)| *n != entry && p == "log_flushed")
        .map(|(_, n, _)| n)
        .collect();
    assert_eq!(followers.len(), 2, "{timeline}");
    for f in followers {
        assert!(at(f, "log_flushed") < at(&entry, "answered"), "{timeline}");
    }
    for id in 0..3 {
        assert!(dir.path().join(format!("timeline/node{id}.timeline")).exists());
    }
}

#[test]
fn bank_bench_local_runs_its_own_cluster_and_says_where_the_cpu_went() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
        .args(["--local", "--runs", "4x1,1x8", "--accounts", "200"])
        .args(["--duration-s", "2", "--warmup-s", "1", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs.as_array().expect("one JSON array");
    let shapes: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| (r["concurrency"].as_u64().unwrap(), r["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(shapes, [(4, 1), (1, 8)]);
    for r in runs {
        assert!(r["committed"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        // CPU per committed transfer: each node (one of them the leader)
        // and the client, which together are the total.
        let cpu = &r["cpu"]["us_per_tx"];
        let names: Vec<&String> = cpu.as_object().expect("cpu report on Linux").keys().collect();
        assert_eq!(names.len(), 4, "{r}");
        assert_eq!(names.iter().filter(|n| n.ends_with("(leader)")).count(), 1, "{r}");
        assert!(names.iter().any(|n| *n == "client"), "{r}");
        let sum: f64 = cpu.as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        let total = r["cpu"]["total_us_per_tx"].as_f64().unwrap();
        assert!(total > 0.0 && (sum - total).abs() < 1e-6 * total.max(1.0), "{r}");
        assert!(r["cpu"]["machine_busy"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Its nodes kept their data where it was told, and stopped with it.
    assert!(dir.path().join("server_0_states").exists());
    let left = Command::new("pgrep")
        .args(["-f", &dir.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "nodes still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
        .args(["--local", "--runs", "4"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CONCURRENCYxBATCH"));
    let bad = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
        .args(["--runs", "4x1", "--servers", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--runs needs --local"));
    let bad = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
        .args(["--timeline", "--servers", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--timeline needs --local"));
}

#[test]
fn a_burst_of_big_batches_waits_for_signature_checks_instead_of_being_refused() {
    // The leader checks one batch's signatures per core at a time; the rest
    // queue until their deadline (they were refused after 1 s: in a debug
    // build these batches take ~0.5 s each to check).
    let c = Cluster::start(3, TEST_GENESIS);
    let servers = bank_ledger::client::parse_servers(&c.all_servers()).unwrap();
    let chain = c.chain_id();
    let key = bank_ledger::ledger::AccountKey::dev(3);
    let batches: Vec<Vec<_>> = (0..6)
        .map(|b| {
            (0..80)
                .map(|i| {
                    let id = bank_ledger::ledger::TxId::new(format!("burst-{b}-{i}")).unwrap();
                    bank_ledger::client::signed_transfer(&key, chain, &id, 0, 1)
                })
                .collect()
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replies = rt.block_on(futures::future::join_all(
        batches.into_iter().map(|transfers| send_batch(&servers, transfers)),
    ));
    for reply in replies {
        let reply = reply.expect("every batch answered");
        assert_eq!(reply.results.len(), 80);
        assert!(reply.results.iter().all(|r| r.code == 0), "{:?}", reply.results);
    }
    assert_eq!(c.json(&["balances"])["balances"]["3"], 1000 - 6 * 80);
}

#[test]
fn block_limits_that_raft_could_not_carry_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        (
            "--batch-max-bytes",
            "100000000",
            "--batch-max-bytes must be between 1024 and 16777216",
        ),
        ("--batch-max-bytes", "0", "--batch-max-bytes must be between"),
        ("--batch-max-txs", "0", "--batch-max-txs must be at least 1"),
    ] {
        let out = Command::new(common::SERVER)
            .args(["--id", "0", flag, value, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
}
