//! Who may do what: control-plane calls (fault injection, membership) need
//! the cluster's admin token once nodes are started with one; data-plane
//! calls never do. Real `bank-server` processes on loopback.

mod common;

use common::{wait_for, Cluster, TEST_GENESIS};
use std::path::Path;
use std::time::Duration;

fn write_token(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write token file");
    path.to_str().expect("utf-8 temp path").to_string()
}

fn voters(c: &Cluster) -> Vec<u64> {
    // A status taken during an election has no leader: wait for one.
    wait_for("a leader to report its voters", Duration::from_secs(20), || {
        let st = c.status();
        let leader = st.iter().find(|s| s["role"] == "leader")?;
        leader["voters"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_u64()).collect())
    })
}

/// Runs a client command that must be refused; returns its one-line error.
fn refused(c: &Cluster, args: &[&str]) -> String {
    let out = c.client_at(&c.all_servers(), args);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "bank-client {args:?} should have been refused");
    assert_eq!(err.lines().count(), 1, "one line of error for {args:?}: {err}");
    err
}

#[test]
fn control_plane_needs_the_admin_token_and_data_plane_does_not() {
    let secrets = tempfile::TempDir::new().expect("temp dir");
    let token = write_token(secrets.path(), "admin.token", "cluster-admin-token-0123456789\n");
    let wrong = write_token(secrets.path(), "wrong.token", "not-the-admin-token-0123456789\n");
    let c = Cluster::start_with(3, TEST_GENESIS, &["--admin-token-file", &token]);

    let err = refused(&c, &["partition", "0,1", "2"]);
    assert!(err.contains("needs the admin token"), "{err}");
    let err = refused(
        &c,
        &["--admin-token-file", &wrong, "delay", "--min-ms", "5", "--max-ms", "50"],
    );
    assert!(err.contains("wrong admin token"), "{err}");
    let err = refused(&c, &["cluster", "remove", "2"]);
    assert!(err.contains("admin token"), "{err}");
    let err = refused(&c, &["--admin-token-file", &wrong, "cluster", "remove", "2"]);
    assert!(err.contains("wrong admin token"), "{err}");
    // A whole-chain re-execution is the operator's to ask for.
    let err = refused(&c, &["verify"]);
    assert!(err.contains("needs the admin token"), "{err}");

    // Nothing was applied: no faults anywhere, membership unchanged.
    let st = c.status();
    assert_eq!(st.len(), 3);
    for s in &st {
        assert_eq!(s["faults"]["partition"], serde_json::json!([]), "{s}");
        assert_eq!(s["faults"]["delay_max_ms"], 0, "{s}");
    }
    assert_eq!(voters(&c), vec![0, 1, 2]);

    // The data plane needs no token.
    c.ok(&["transfer", "0", "1", "5"]);
    let bal = c.json(&["balance", "1"]);
    assert!(bal["balance"].as_u64().is_some(), "{bal}");

    // With the token, control-plane calls take effect on every node.
    c.ok(&["--admin-token-file", &token, "partition", "0,1", "2"]);
    assert!(c
        .status()
        .iter()
        .all(|s| s["faults"]["partition"] == serde_json::json!([[0, 1], [2]])));
    c.ok(&["--admin-token-file", &token, "heal"]);
    c.ok(&["--admin-token-file", &token, "verify"]);
    assert!(c
        .status()
        .iter()
        .all(|s| s["faults"]["partition"] == serde_json::json!([])));
}

#[test]
fn a_bad_token_file_stops_the_server_and_the_client_with_one_line() {
    let secrets = tempfile::TempDir::new().expect("temp dir");
    let short = write_token(secrets.path(), "short.token", "abc\n");
    let out = std::process::Command::new(common::SERVER)
        .args(["--id", "0", "--admin-token-file", &short, "--data-dir"])
        .arg(secrets.path())
        .output()
        .expect("run bank-server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin token file") && err.contains("16"), "{err}");

    let missing = secrets.path().join("absent.token");
    let out = std::process::Command::new(common::CLIENT)
        .args(["--servers", "127.0.0.1:1", "--admin-token-file"])
        .arg(&missing)
        .args(["heal"])
        .output()
        .expect("run bank-client");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot read admin token file"), "{err}");
}

#[test]
fn a_non_loopback_address_needs_insecure_and_gets_a_warning() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let genesis = dir.path().join("genesis.json");
    std::fs::write(&genesis, TEST_GENESIS).expect("write genesis");
    let port = common::free_port();
    let server = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(common::SERVER);
        cmd.args(["--id", "0", "--peers", &format!("0=127.0.0.1:{port}")])
            .args(["--listen", &format!("0.0.0.0:{port}")])
            .args(["--http-listen", &format!("127.0.0.1:{}", common::free_port())])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--genesis")
            .arg(&genesis)
            .args(extra);
        cmd
    };
    let out = server(&[]).output().expect("run bank-server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure"),
        "{err}"
    );

    let mut child = server(&["--insecure"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start bank-server");
    let log = dir.path().join("server_0.log");
    common::wait_for("the warning in the log", std::time::Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("NOT encrypted").then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
}
