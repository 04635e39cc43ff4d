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

/// A one-node `bank-server` in `dir` serving gRPC on `listen` and HTTP on `http`.
fn lone_server(
    dir: &Path,
    genesis: &Path,
    port: u16,
    listen: &str,
    http: &str,
    extra: &[&str],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(common::SERVER);
    cmd.args(["--id", "0", "--peers", &format!("0=127.0.0.1:{port}")])
        .args(["--listen", listen, "--http-listen", http])
        .arg("--data-dir")
        .arg(dir)
        .arg("--genesis")
        .arg(genesis)
        .args(extra);
    cmd
}

/// Runs a server that must refuse to start; returns its one-line error.
fn refused_at_start(mut cmd: std::process::Command) -> String {
    let out = cmd.output().expect("run bank-server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
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

#[test]
fn control_plane_needs_the_admin_token_and_data_plane_does_not() {
    let secrets = tempfile::TempDir::new().expect("temp dir");
    let token = write_token(secrets.path(), "admin.token", "cluster-admin-token-0123456789\n");
    let wrong = write_token(secrets.path(), "wrong.token", "not-the-admin-token-0123456789\n");
    let c = Cluster::start_with(3, TEST_GENESIS, &["--admin-token-file", &token]);

    let err = c.refused(&["partition", "0,1", "2"]);
    assert!(err.contains("needs the admin token"), "{err}");
    let err = c.refused(&["--admin-token-file", &wrong, "delay", "--min-ms", "5", "--max-ms", "50"]);
    assert!(err.contains("wrong admin token"), "{err}");
    let err = c.refused(&["cluster", "remove", "2"]);
    assert!(err.contains("admin token"), "{err}");
    let err = c.refused(&["--admin-token-file", &wrong, "cluster", "remove", "2"]);
    assert!(err.contains("wrong admin token"), "{err}");
    // A whole-chain re-execution is the operator's to ask for.
    let err = c.refused(&["verify"]);
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
    let http = format!("127.0.0.1:{}", common::free_port());
    let server = |extra: &[&str]| lone_server(dir.path(), &genesis, port, &format!("0.0.0.0:{port}"), &http, extra);
    let err = refused_at_start(server(&[]));
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

#[test]
fn http_off_loopback_needs_a_token_and_every_page_but_health_asks_for_it() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let genesis = dir.path().join("genesis.json");
    std::fs::write(&genesis, bank_ledger::ledger::genesis::with_dev_keys(TEST_GENESIS)).expect("write genesis");
    // `bank-server secret` makes the token: fresh, owner-only, never overwritten.
    let token_path = dir.path().join("http.token");
    let made = std::process::Command::new(common::SERVER)
        .args(["secret", "--out"])
        .arg(&token_path)
        .output()
        .expect("run bank-server secret");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let text = std::fs::read_to_string(&token_path).expect("read the token");
    let secret = text.trim().to_string();
    assert!(
        secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "{text:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o077, 0, "the token file is readable by others: {mode:o}");
    let again = std::process::Command::new(common::SERVER)
        .args(["secret", "--out"])
        .arg(&token_path)
        .output()
        .expect("run bank-server secret");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(std::fs::read_to_string(&token_path).expect("read"), text);
    let token = token_path.to_str().expect("utf-8 temp path").to_string();
    let port = common::free_port();
    let http_port = common::free_port();
    let http = format!("0.0.0.0:{http_port}");
    let listen = format!("127.0.0.1:{port}");
    let server = |extra: &[&str]| lone_server(dir.path(), &genesis, port, &listen, &http, extra);
    let err = refused_at_start(server(&[]));
    assert!(
        err.contains("not a loopback address") && err.contains("--http-token-file"),
        "{err}"
    );

    let mut child = server(&["--http-token-file", &token])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start bank-server");
    let get = |path: &str, bearer: Option<&str>| {
        let mut req = ureq::get(&format!("http://127.0.0.1:{http_port}{path}"));
        if let Some(t) = bearer {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => Some((r.status(), r.into_string().unwrap_or_default())),
            Err(ureq::Error::Status(code, r)) => Some((code, r.into_string().unwrap_or_default())),
            Err(_) => None,
        }
    };
    wait_for("the HTTP side to answer", Duration::from_secs(20), || {
        get("/healthz", None).filter(|(code, _)| *code == 200)
    });
    for path in [
        "/metrics",
        "/api/balances",
        "/api/blocks",
        "/api/status",
        "/api/tx/x",
        "/api/account/1",
    ] {
        let (code, body) = get(path, None).expect("an answer");
        assert_eq!(code, 401, "{path} without a token: {body}");
        assert!(body.contains("Authorization: Bearer"), "{path}: {body}");
        let (code, body) = get(path, Some(&format!("{secret}0"))).expect("an answer");
        assert_eq!(code, 401, "{path} with a wrong token: {body}");
    }
    let (code, body) = get("/metrics", Some(&secret)).expect("an answer");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("bank_raft_term"), "{body}");
    let (code, body) = get("/api/balances", Some(&secret)).expect("an answer");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"total\""), "{body}");
    // The static page holds no data; probes carry no credentials.
    assert_eq!(get("/", None).expect("an answer").0, 200);
    assert_eq!(get("/healthz", None).expect("an answer").0, 200);
    assert!(get("/readyz", None).is_some());
    let _ = child.kill();
    let _ = child.wait();
}
