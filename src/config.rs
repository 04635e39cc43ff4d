//! A node's settings and the cluster topology.

use crate::raft::NodeId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The built-in 3-node topology on loopback.
pub const DEFAULT_PEERS: &str = "0=127.0.0.1:50051,1=127.0.0.1:50052,2=127.0.0.1:50053";

/// The client API addresses of [`DEFAULT_PEERS`], in id order.
pub const DEFAULT_SERVERS: &str = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

/// A malformed setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--peers` could not be parsed.
    #[error("bad --peers entry {entry:?}: expected ID=HOST:PORT")]
    BadPeer { entry: String },
    /// An id appears twice in `--peers`.
    #[error("node {0} appears twice in --peers")]
    DuplicatePeer(NodeId),
    /// `--id` is not among `--peers`.
    #[error("node {id} is not in --peers ({known})")]
    NotAPeer { id: NodeId, known: String },
}

/// Parses `0=host:port,1=host:port,...`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ConfigError::BadPeer {
            entry: entry.to_string(),
        };
        let (id, addr) = entry.split_once('=').ok_or_else(bad)?;
        let id: NodeId = id.trim().parse().map_err(|_| bad())?;
        let addr = addr.trim();
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError::DuplicatePeer(id));
        }
    }
    if peers.is_empty() {
        return Err(ConfigError::BadPeer { entry: s.to_string() });
    }
    Ok(peers)
}

/// Everything one node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Every voter of the initial cluster, this node included.
    pub peers: BTreeMap<NodeId, String>,
    /// Address to bind; defaults to this node's entry in `peers`.
    pub listen: Option<String>,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    /// Longest a client request may take before it is answered with a timeout.
    pub request_timeout: Duration,
    pub producer: ProducerConfig,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind the last snapshot, so a briefly lagging
    /// follower catches up from the log rather than by snapshot.
    pub keep_log_entries: u64,
    /// Address of a current member: this node joins an existing cluster
    /// (and waits to be added) instead of forming one from `peers`.
    pub join: Option<String>,
    /// Allow listening on a non-loopback address without TLS.
    pub insecure: bool,
    /// Serve and dial peers over TLS with these files (mutual TLS between nodes).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Where the HTTP dashboard, JSON API, /metrics and health checks
    /// listen; None: no HTTP.
    pub http_listen: Option<String>,
    /// Blocks checked at start (0: the whole chain, re-executed).
    pub verify_blocks: u64,
    /// After a bounded start-time check, check the whole chain while serving.
    pub background_verify: bool,
    /// Required on control-plane calls; None: loopback callers only.
    pub admin_token: Option<crate::auth::AdminToken>,
    /// Required (`Authorization: Bearer`) on every HTTP page but the
    /// health checks; None: HTTP may listen on loopback only.
    pub http_token: Option<crate::auth::AdminToken>,
    /// Without TLS: the file of the secret peers prove membership with;
    /// None: `cluster.secret` in the data dir, created if absent.
    pub cluster_secret_file: Option<PathBuf>,
    /// Test builds only: propose transfers without checking their
    /// signatures, as a compromised leader would.
    #[cfg(feature = "test-hooks")]
    pub propose_unchecked: bool,
}

impl NodeConfig {
    pub fn new(id: NodeId, peers: BTreeMap<NodeId, String>, data_dir: PathBuf, genesis: PathBuf) -> NodeConfig {
        NodeConfig {
            id,
            peers,
            listen: None,
            data_dir,
            genesis,
            request_timeout: Duration::from_secs(10),
            producer: ProducerConfig::default(),
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 5000,
            keep_log_entries: 1000,
            join: None,
            admin_token: None,
            http_token: None,
            cluster_secret_file: None,
            #[cfg(feature = "test-hooks")]
            propose_unchecked: false,
            verify_blocks: 64,
            background_verify: true,
            insecure: false,
            tls: None,
            http_listen: None,
        }
    }

    /// This node's advertised address: its `peers` entry, or, when joining,
    /// the address it listens on.
    pub fn addr(&self) -> Result<&str, ConfigError> {
        if self.join.is_some() {
            if let Some(listen) = &self.listen {
                return Ok(listen);
            }
        }
        self.peers
            .get(&self.id)
            .map(String::as_str)
            .ok_or_else(|| ConfigError::NotAPeer {
                id: self.id,
                known: self.peers.keys().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
            })
    }
}

/// Limits of the producer.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Most transactions in one block.
    pub batch_max_txs: usize,
    /// Most bytes (canonical encoding) of transactions in one block.
    pub batch_max_bytes: usize,
    /// Most transactions waiting for a block; beyond it requests are refused.
    pub queue_max_txs: usize,
    /// Most blocks proposed and not yet committed at once.
    pub pipeline_depth: usize,
    /// While blocks are in flight, how long a block may wait for more
    /// transactions before it is cut; zero cuts at once.
    pub batch_max_wait: std::time::Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_max_txs: 4096,
            batch_max_bytes: 1024 * 1024,
            queue_max_txs: 65_536,
            pipeline_depth: 3,
            batch_max_wait: std::time::Duration::ZERO,
        }
    }
}

/// Reads and parses the genesis file at `path` (the file I/O around the
/// domain's [`Genesis::from_json`]).
pub fn load_genesis(path: &std::path::Path) -> Result<crate::ledger::Genesis, crate::ledger::GenesisError> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::ledger::GenesisError::Read {
        path: path.display().to_string(),
        source,
    })?;
    crate::ledger::Genesis::from_json(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_errors_name_the_entry() {
        let p = parse_peers(DEFAULT_PEERS).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&1], "127.0.0.1:50052");
        assert!(parse_peers("0=a:1,x=b:2")
            .unwrap_err()
            .to_string()
            .contains("\"x=b:2\""));
        assert!(parse_peers("0=a").is_err());
        assert!(parse_peers("0=a:1,0=b:2").unwrap_err().to_string().contains("twice"));
    }
}
