//! TLS with real processes: client and Raft traffic over rustls, mutual TLS
//! between nodes, certificates from `bank-server certs`.

// tonic::Status is the error of every gRPC call; boxing it here buys nothing.
#![allow(clippy::result_large_err)]

mod common;

use bank_ledger::proto::raft::raft_service_client::RaftServiceClient;
use bank_ledger::proto::raft::RaftPayload;
use bank_ledger::raft::network::{CHAIN_HEADER, FROM_HEADER};
use common::{Cluster, TEST_GENESIS};
use std::path::Path;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Sends a Raft Vote as node 0 would, over TLS trusting `ca`, presenting
/// `identity` (or no certificate).
fn vote_as_node_0(addr: &str, ca: &Path, identity: Option<Identity>, chain: String) -> Result<(), tonic::Status> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).expect("ca")));
    if let Some(id) = identity {
        tls = tls.identity(id);
    }
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config");
    let vote = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(1_000, 0),
        last_log_id: None,
    };
    let data = bank_ledger::codec::encode(&vote).expect("encode");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("{e}: {:?}", std::error::Error::source(&e))))?;
        let mut req = tonic::Request::new(RaftPayload { data });
        req.metadata_mut().insert(CHAIN_HEADER, chain.parse().expect("header"));
        req.metadata_mut().insert(FROM_HEADER, "0".parse().expect("header"));
        RaftServiceClient::new(channel).vote(req).await.map(|_| ())
    })
}

#[test]
fn a_cluster_runs_over_tls_and_raft_needs_a_node_certificate() {
    let c = Cluster::start_opts(3, TEST_GENESIS, &[], true);
    let tls = c.data_dir().join("tls");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "node-0.key"] {
            let mode = std::fs::metadata(tls.join(key)).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
    // Raft (mutual TLS) elected a leader; a transfer sent to a follower is
    // forwarded over TLS and replicated to all.
    let leader = c.wait_leader();
    let follower = (leader + 1) % 3;
    let out = c.client_at(
        c.addr(follower),
        &["transfer", "3", "0", "7", "--id", "over-tls", "--json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.wait_converged();
    assert_eq!(c.balance(0), 115 + 7);

    // A client that does not speak TLS is refused with one line; when the
    // server cut it off (rather than its deadline passing first), the line
    // says what to do.
    let plain = std::process::Command::new(common::CLIENT)
        .args(["--servers", &c.all_servers(), "--timeout-ms", "3000", "balance", "0"])
        .output()
        .expect("run bank-client");
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--tls-ca") || err.contains("timed out"), "{err}");

    // Raft over TLS without a client certificate: refused by the service.
    let chain = c.chain_id().to_hex();
    let addr = c.addr(leader).to_string();
    let err = vote_as_node_0(&addr, &tls.join("ca.pem"), None, chain.clone()).expect_err("no client certificate");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("node certificate"), "{err:?}");

    // A certificate from another CA: refused in the TLS handshake.
    let other = bank_ledger::tls::generate_dev_certs(1, &["localhost".into(), "127.0.0.1".into()]).expect("certs");
    let (cert, key) = other.nodes[0].clone();
    let err = vote_as_node_0(
        &addr,
        &tls.join("ca.pem"),
        Some(Identity::from_pem(cert, key)),
        chain.clone(),
    )
    .expect_err("foreign certificate");
    // (With TLS 1.3 the client learns it only as the connection closing.)
    assert!(
        matches!(
            err.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
        "{err:?}"
    );

    // Node 1's certificate speaking as node 0: refused, whatever it says.
    let node_1 = Identity::from_pem(
        std::fs::read(tls.join("node-1.pem")).expect("cert"),
        std::fs::read(tls.join("node-1.key")).expect("key"),
    );
    let err = vote_as_node_0(&addr, &tls.join("ca.pem"), Some(node_1), chain.clone())
        .expect_err("node 1's certificate claiming node 0");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("certificate of node 1 cannot speak as node 0"),
        "{err:?}"
    );

    // With node 0's certificate the same call is heard
    // (and answered by Raft: a vote at a stale log is simply not granted).
    let id = Identity::from_pem(
        std::fs::read(tls.join("node-0.pem")).expect("cert"),
        std::fs::read(tls.join("node-0.key")).expect("key"),
    );
    vote_as_node_0(&addr, &tls.join("ca.pem"), Some(id), chain).expect("a node's vote request is answered");

    // Nothing of the above moved money; the cluster still commits.
    c.transfer(3, 1, 1, "after-tls-probes");
    let b = c.json(&["balances"]);
    assert_eq!(b["total"], 1300);
}

#[test]
fn tls_lets_a_node_listen_beyond_loopback_without_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    let out = std::process::Command::new(common::SERVER)
        .args(["certs", "--nodes", "1", "--out"])
        .arg(&tls)
        .output()
        .expect("certs");
    assert!(out.status.success());
    let genesis = dir.path().join("genesis.json");
    let genesis_json = bank_ledger::ledger::genesis::with_dev_keys(TEST_GENESIS);
    std::fs::write(&genesis, &genesis_json).expect("genesis");
    let port = common::free_port();
    let start = |with_tls: bool| {
        let mut cmd = std::process::Command::new(common::SERVER);
        cmd.args(["--id", "0", "--peers", &format!("0=127.0.0.1:{port}")])
            .args(["--listen", &format!("0.0.0.0:{port}")])
            .args(["--http-listen", &format!("127.0.0.1:{}", common::free_port())])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--genesis")
            .arg(&genesis)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if with_tls {
            cmd.arg("--tls-cert")
                .arg(tls.join("node-0.pem"))
                .arg("--tls-key")
                .arg(tls.join("node-0.key"))
                .arg("--tls-ca")
                .arg(tls.join("ca.pem"));
        }
        cmd.spawn().expect("spawn")
    };
    let out = start(false).wait_with_output().expect("wait");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without TLS") && err.contains("--insecure"), "{err}");

    let mut node = start(true);
    let servers = format!("127.0.0.1:{port}");
    let status = common::wait_for("the TLS node to answer", std::time::Duration::from_secs(20), || {
        let out = std::process::Command::new(common::CLIENT)
            .arg("--tls-ca")
            .arg(tls.join("ca.pem"))
            .args(["--servers", &servers, "--json", "status"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v[0]["role"] == "leader").then_some(v)
    });
    assert_eq!(status[0]["id"], 0);
    node.kill().expect("kill");
    let _ = node.wait();
}
