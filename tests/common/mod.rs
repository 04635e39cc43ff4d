//! Cluster harness: real `bank-server` processes on loopback, free ports, a
//! temp dir each, killed with SIGKILL. Tests drive them through the real
//! `bank-client` binary, so the CLI contract is exercised too.

#![allow(dead_code)]

use bank_ledger::launcher::{Membership, NodeLaunch, NodeProcess};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const SERVER: &str = env!("CARGO_BIN_EXE_bank-server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_bank-client");

/// Genesis for tests: low difficulty keeps debug builds quick, and the
/// original demo's accounts and initial transfers.
pub const TEST_GENESIS: &str = r#"{
  "difficulty": 8,
  "accounts": [{"id":0,"balance":100},{"id":1,"balance":100},{"id":2,"balance":100},{"id":3,"balance":1000}],
  "transfers": [{"from":0,"to":1,"amount":5},{"from":1,"to":2,"amount":10},{"from":2,"to":0,"amount":20}]
}"#;

/// TEST_GENESIS's accounts with registrar 0 and issuer 0, both dev keys.
pub fn genesis_with_roles() -> String {
    let hex = |s| bank_ledger::ledger::AccountKey::dev_role(s).public().to_hex();
    format!(
        r#"{{
  "difficulty": 8,
  "accounts": [{{"id":0,"balance":100}},{{"id":1,"balance":100}},{{"id":2,"balance":100}},{{"id":3,"balance":1000}}],
  "registrars": ["{}"],
  "issuers": ["{}"],
  "transfers": []
}}"#,
        hex(bank_ledger::ledger::Signer::Registrar(0)),
        hex(bank_ledger::ledger::Signer::Issuer(0))
    )
}

/// Writes the dev key of every account of `genesis` (JSON) into `dir`, and
/// of each registrar and issuer it names by its dev key.
pub fn write_dev_keystore(dir: &Path, genesis: &str) {
    use bank_ledger::ledger::{AccountKey, Signer};
    std::fs::create_dir_all(dir).expect("keystore dir");
    let v: Value = serde_json::from_str(genesis).expect("genesis JSON");
    type Role = fn(u32) -> Signer;
    let roles: [(&str, Role); 2] = [("registrars", Signer::Registrar), ("issuers", Signer::Issuer)];
    for (field, role) in roles {
        for (i, key) in v[field].as_array().into_iter().flatten().enumerate() {
            let signer = role(i as u32);
            let dev = AccountKey::dev_role(signer);
            let path = bank_ledger::keystore::signer_key_path(dir, signer);
            if key.as_str() == Some(dev.public().to_hex().as_str()) && !path.exists() {
                bank_ledger::keystore::save_role_key(&dev, signer, &path).expect("write dev role key");
            }
        }
    }
    for a in v["accounts"].as_array().into_iter().flatten() {
        let Some(id) = a["id"].as_u64() else { continue };
        let path = bank_ledger::keystore::key_path(dir, id);
        if !path.exists() {
            bank_ledger::keystore::save_key(&bank_ledger::ledger::AccountKey::dev(id), &path).expect("write dev key");
        }
    }
}

/// Ports handed out in this test process, so parallel tests never share one.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

pub fn free_port() -> u16 {
    loop {
        let port = bank_ledger::launcher::free_port().expect("bind an ephemeral port");
        let mut used = USED_PORTS.lock().unwrap();
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

pub struct Node {
    pub id: u64,
    pub addr: String,
    /// The node's HTTP dashboard, API and metrics.
    pub http: String,
    pub process: NodeProcess,
    pub genesis: PathBuf,
    /// For nodes added later: the member they join through.
    pub join: Option<String>,
}

pub struct Cluster {
    pub dir: TempDir,
    pub nodes: Vec<Node>,
    pub peers: String,
    /// Extra `bank-server` flags for every node.
    pub server_args: Vec<String>,
    /// Nodes serve TLS with certificates from `bank-server certs` in
    /// `<dir>/tls`, and the client trusts its CA.
    pub tls: bool,
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    /// Starts `n` nodes with `genesis` and waits for a leader.
    pub fn start(n: u64, genesis: &str) -> Cluster {
        Cluster::start_with(n, genesis, &[])
    }

    /// Like [`Cluster::start`], with extra flags for every `bank-server`.
    pub fn start_with(n: u64, genesis: &str, server_args: &[&str]) -> Cluster {
        Cluster::start_opts(n, genesis, server_args, false)
    }

    /// Like [`Cluster::start_with`]; with `tls`, over TLS with a fresh CA.
    pub fn start_opts(n: u64, genesis: &str, server_args: &[&str], tls: bool) -> Cluster {
        let dir = TempDir::new().expect("temp dir");
        if tls {
            let out = Command::new(SERVER)
                .args(["certs", "--nodes", &n.to_string(), "--out"])
                .arg(dir.path().join("tls"))
                .output()
                .expect("run bank-server certs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let genesis_path = dir.path().join("genesis.json");
        // Accounts the test names no key for get the dev keys, and the
        // client's keystore holds their secret halves.
        let genesis = bank_ledger::ledger::genesis::with_dev_keys(genesis);
        std::fs::write(&genesis_path, &genesis).expect("write genesis");
        write_dev_keystore(&dir.path().join("keys"), &genesis);
        let nodes: Vec<Node> = (0..n)
            .map(|id| Node {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                http: format!("127.0.0.1:{}", free_port()),
                process: NodeProcess::default(),
                genesis: genesis_path.clone(),
                join: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir,
            nodes,
            peers,
            server_args: server_args.iter().map(|a| a.to_string()).collect(),
            tls,
        };
        for id in 0..n {
            c.spawn(id);
        }
        c.wait_leader();
        c
    }

    /// The client's keystore: dev keys of the genesis accounts.
    pub fn keystore(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) node `id` with the same data dir.
    pub fn spawn(&mut self, id: u64) {
        let node = &self.nodes[id as usize];
        assert!(!node.process.is_running(), "node {id} is already running");
        let mut launch = NodeLaunch::new(Path::new(SERVER), id, &self.peers, self.dir.path(), &node.genesis);
        if let Some(join) = &node.join {
            launch.membership = Membership::Join {
                listen: node.addr.clone(),
                via: join.clone(),
            };
        }
        launch.http_listen = Some(node.http.clone());
        launch.tls = self
            .tls
            .then(|| bank_ledger::tls::node_files(&self.dir.path().join("tls"), id));
        // Every node of the tests answers within 8 s (a test's own flags
        // must not repeat it).
        launch.extra_args = self.server_args.clone();
        launch
            .extra_args
            .extend(["--request-timeout-ms".to_string(), "8000".to_string()]);
        let stderr = self.dir.path().join(format!("node{id}.stderr"));
        self.nodes[id as usize]
            .process
            .start(&launch, &stderr, false)
            .expect("spawn bank-server");
    }

    /// Starts a new node that joins through node `via`; returns its id. It
    /// is not a member until `cluster add` is run.
    pub fn add_joiner(&mut self, via: u64) -> u64 {
        let id = self.nodes.len() as u64;
        let join = self.addr(via).to_string();
        let genesis = self.nodes[0].genesis.clone();
        self.nodes.push(Node {
            id,
            addr: format!("127.0.0.1:{}", free_port()),
            http: format!("127.0.0.1:{}", free_port()),
            process: NodeProcess::default(),
            genesis,
            join: Some(join),
        });
        self.spawn(id);
        id
    }

    /// Waits until the given nodes answer and agree on height and tip.
    pub fn wait_converged_among(&self, ids: &[u64]) -> (u64, String) {
        let servers = self.servers_of(ids);
        wait_for("the nodes to agree on the tip", Duration::from_secs(30), || {
            let st = self.try_json_at(&servers, &["status"])?;
            let st = st.as_array()?;
            if st.iter().any(|s| s["role"] == "unreachable") {
                return None;
            }
            // A block is answered from its apply before the node's tip moves, so
            // equal tips alone may all still be the one before it: every node
            // must also have applied all that any of them knows is committed.
            let committed = st.iter().filter_map(|s| s["committed_index"].as_u64()).max();
            let applied_all = st.iter().all(|s| s["last_applied_index"].as_u64() >= committed);
            let first = (st[0]["height"].as_u64()?, st[0]["tip_hash"].as_str()?.to_string());
            (applied_all
                && st
                    .iter()
                    .all(|s| s["height"].as_u64() == Some(first.0) && s["tip_hash"].as_str() == Some(&first.1)))
            .then_some(first)
        })
    }

    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("server_{id}.log"))).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self, id: u64) {
        self.nodes[id as usize].process.kill().expect("SIGKILL and reap");
    }

    /// Waits until node `id` exits by itself and returns how it ended.
    pub fn wait_exit(&mut self, id: u64, what: &str) -> ExitStatus {
        let process = &mut self.nodes[id as usize].process;
        wait_for(what, Duration::from_secs(20), || process.exited().expect("try_wait"))
    }

    /// True while node `id` has not exited.
    pub fn is_alive(&mut self, id: u64) -> bool {
        let process = &mut self.nodes[id as usize].process;
        process.exited().expect("try_wait").is_none() && process.is_running()
    }

    /// SIGTERM: the node shuts down as an operator's stop does, its
    /// ledger written out; waits for it to exit.
    pub fn stop(&mut self, id: u64) {
        let process = &mut self.nodes[id as usize].process;
        if process.is_running() {
            process.signal(libc::SIGTERM).expect("SIGTERM");
            let status = process.wait().expect("reap");
            assert!(status.is_some_and(|s| s.success()), "node {id} stopped with {status:?}");
        }
    }

    /// SIGSTOP: the node freezes where it is; its sockets stay open, so
    /// peers' messages queue up unanswered until [`Cluster::resume`].
    pub fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONT: a paused node runs on from where it stopped.
    pub fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: u64, signal: i32) {
        let process = &self.nodes[id as usize].process;
        process
            .signal(signal)
            .unwrap_or_else(|e| panic!("signal {signal} to node {id}: {e}"));
    }

    pub fn stderr_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.stderr"))).unwrap_or_default()
    }

    pub fn addr(&self, id: u64) -> &str {
        &self.nodes[id as usize].addr
    }

    pub fn all_servers(&self) -> String {
        self.nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",")
    }

    /// Runs `bank-client --servers SERVERS ARGS...`.
    pub fn client_at(&self, servers: &str, args: &[&str]) -> Output {
        self.client_timed(servers, 10_000, args)
    }

    /// Runs `bank-client` with its own deadline.
    pub fn client_timed(&self, servers: &str, timeout_ms: u64, args: &[&str]) -> Output {
        self.client_signing_with(&self.keystore(), servers, timeout_ms, args)
    }

    /// Runs `bank-client` with another keystore than the cluster's.
    pub fn client_signing_with(&self, keystore: &Path, servers: &str, timeout_ms: u64, args: &[&str]) -> Output {
        let mut cmd = Command::new(CLIENT);
        if self.tls {
            cmd.arg("--tls-ca").arg(self.dir.path().join("tls").join("ca.pem"));
        }
        cmd.args(["--servers", servers, "--timeout-ms", &timeout_ms.to_string()])
            .arg("--keystore")
            .arg(keystore)
            .args(args)
            .output()
            .expect("run bank-client")
    }

    /// Runs a client command that must fail; returns its one-line error.
    pub fn refused(&self, args: &[&str]) -> String {
        self.refused_signing_with(&self.keystore(), args)
    }

    /// [`Cluster::refused`], signing with the keys in `keystore`.
    pub fn refused_signing_with(&self, keystore: &Path, args: &[&str]) -> String {
        let out = self.client_signing_with(keystore, &self.all_servers(), 10_000, args);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert!(!out.status.success(), "bank-client {args:?} should have failed");
        assert_eq!(err.lines().count(), 1, "one line of error for {args:?}: {err}");
        err
    }

    /// Runs a client command against every node; panics unless it succeeds.
    pub fn ok(&self, args: &[&str]) {
        let out = self.client_at(&self.all_servers(), args);
        assert!(
            out.status.success(),
            "bank-client {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Comma-separated addresses of the given nodes.
    pub fn servers_of(&self, ids: &[u64]) -> String {
        ids.iter()
            .map(|i| self.addr(*i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `bank-server verify` of stopped node `id`'s data dir: the full
    /// re-execution of its chain, offline.
    pub fn offline_verify(&self, id: u64) -> Output {
        Command::new(SERVER)
            .args(["verify", "--id", &id.to_string(), "--data-dir"])
            .arg(self.data_dir())
            .arg("--genesis")
            .arg(self.data_dir().join("genesis.json"))
            .output()
            .expect("run bank-server verify")
    }

    /// Kills each node in turn and checks its chain offline; panics on a failure.
    pub fn kill_and_verify_offline(&mut self, ids: &[u64]) {
        for &id in ids {
            self.kill(id);
            let out = self.offline_verify(id);
            assert!(
                out.status.success(),
                "offline verify of node {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs the client against every node and parses its `--json` output; panics on failure.
    pub fn json(&self, args: &[&str]) -> Value {
        self.json_at(&self.all_servers(), args)
    }

    pub fn json_at(&self, servers: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.client_at(servers, &a);
        assert!(
            out.status.success(),
            "bank-client {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("client printed JSON")
    }

    /// Like [`Cluster::json_at`], but `None` when the client fails (e.g. no
    /// server is up yet): for polling.
    pub fn try_json_at(&self, servers: &str, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.client_at(servers, &a);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn status(&self) -> Vec<Value> {
        let v = self.json(&["status"]);
        v.as_array().expect("status is an array").clone()
    }

    /// The id of the leader every reachable node agrees on.
    pub fn wait_leader(&self) -> u64 {
        wait_for("a leader", Duration::from_secs(20), || {
            let st = self.try_json_at(&self.all_servers(), &["status"])?.as_array()?.clone();
            let leaders: Vec<u64> = st
                .iter()
                .filter(|s| s["role"] == "leader")
                .filter_map(|s| s["id"].as_u64())
                .collect();
            let up: Vec<&Value> = st.iter().filter(|s| s["role"] != "unreachable").collect();
            match leaders.as_slice() {
                [l] if up.iter().all(|s| s["leader_id"].as_u64() == Some(*l)) => Some(*l),
                _ => None,
            }
        })
    }

    /// Waits until every running node reports the same height and tip hash.
    /// Node `id`'s `balances.json` once it shows `height` or later.
    pub fn balances_view(&self, id: u64, height: u64) -> Value {
        let file = self
            .data_dir()
            .join(format!("server_{id}_states"))
            .join("balances.json");
        wait_for(
            &format!("node {id}'s balances view at height {height}"),
            Duration::from_secs(20),
            || {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
                (v["height"].as_u64()? >= height).then_some(v)
            },
        )
    }

    pub fn wait_converged(&self) -> (u64, String) {
        let all: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        self.wait_converged_among(&all)
    }

    pub fn balance(&self, account: u64) -> u64 {
        self.json(&["balance", &account.to_string()])["balance"]
            .as_u64()
            .expect("balance is a number")
    }

    pub fn transfer(&self, from: u64, to: u64, amount: u64, id: &str) -> Value {
        self.json(&[
            "transfer",
            &from.to_string(),
            &to.to_string(),
            &amount.to_string(),
            "--id",
            id,
        ])
    }

    /// The chain id (genesis hash) transfers are signed for.
    pub fn chain_id(&self) -> bank_ledger::ledger::Hash32 {
        let genesis = std::fs::read_to_string(&self.nodes[0].genesis).expect("read genesis");
        bank_ledger::ledger::Genesis::from_json(&genesis)
            .expect("valid genesis")
            .chain_id()
    }

    /// A transfer request signed with `from`'s dev key, for the library client.
    pub fn signed(&self, id: &str, from: u64, to: u64, amount: u64) -> bank_ledger::proto::bank::TransferRequest {
        let id = bank_ledger::ledger::TxId::new(id).expect("valid id");
        bank_ledger::client::signed_transfer(
            &bank_ledger::ledger::AccountKey::dev(from),
            self.chain_id(),
            &id,
            to,
            amount,
        )
    }

    /// What a node of this cluster proves itself with: the cluster secret
    /// the nodes share in the data dir (without TLS).
    pub fn peer_gate(&self) -> bank_ledger::peer_auth::PeerGate {
        let path = self.dir.path().join(bank_ledger::peer_auth::DEFAULT_SECRET_FILE);
        bank_ledger::peer_auth::PeerGate::Secret {
            secret: bank_ledger::peer_auth::ClusterSecret::load(&path).expect("cluster secret"),
            chain_id: self.chain_id(),
        }
    }

    pub fn chain_file(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("server_{id}_states")).join("chain.jsonl")
    }
}
