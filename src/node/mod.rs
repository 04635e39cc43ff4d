//! One server put together: storage, Raft, the gRPC services, the block
//! producer and the JSON views, from a [`NodeConfig`]. [`run`] opens the
//! storage and checks it, starts Raft, the producer and the API, spawns the
//! background tasks ([`tasks`]) and serves until told to stop.

use crate::api::{ApiParts, BankApi};
use crate::config::{ConfigError, NodeConfig};
use crate::ledger::GenesisError;
use crate::peer_auth::{ClusterSecret, PeerGate};
use crate::producer::BlockProducer;
use crate::proto::bank::bank_server::BankServer;
use crate::proto::raft::raft_service_server::RaftServiceServer;
use crate::raft::faults::Faults;
use crate::raft::network::{Network, MAX_RAFT_MESSAGE_BYTES};
use crate::raft::peers::Peers;
use crate::raft::read_barrier::{ReadBarrier, RestoredTerm};
use crate::raft::service::RaftRpc;
use crate::raft::snapshot_gate::SnapshotGate;
use crate::raft::{BasicNode, NodeId, Raft};
use crate::storage::{open_db, Ledger, LedgerError, LedgerStateMachine, LogStore, NodePaths, VerifyReport};
use openraft::storage::RaftLogStorage;
use openraft::SnapshotPolicy;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

mod tasks;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] crate::peer_auth::SecretError),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot open the database at {path}: {source}")]
    Db { path: String, source: sled::Error },
    #[error("cannot open the Raft log: {0}")]
    Log(#[from] crate::storage::LogStoreError),
    #[error("node {id}: the Raft log in {log} holds entries but the database {db} is new: this node's state is partial, and it may have acknowledged what it no longer has. Restore the database, or treat the node as lost: remove its whole state, `bank-client cluster remove {id}`, then start it with a new --id and --join")]
    PartialState { id: NodeId, log: String, db: String },
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("invalid Raft settings: {0}")]
    RaftConfig(String),
    #[error("raft failed: {0}")]
    Raft(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("refusing to listen on {addr}, which is not a loopback address, without TLS: its traffic would cross the network unencrypted; pass --tls-cert/--tls-key/--tls-ca (see `bank-server certs`), or --insecure to accept that")]
    Insecure { addr: String },
    #[error("refusing to serve HTTP on {addr}, which is not a loopback address, without a token: the dashboard, /api and /metrics show every balance; pass --http-token-file FILE (pages then need `Authorization: Bearer TOKEN`)")]
    OpenHttp { addr: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A peer refuses this node for good.
    #[error("{0}; stopping")]
    Refused(String),
    /// A peer runs another chain: this node must not join it.
    #[error("genesis mismatch: {peer} at {addr} is on chain {theirs}, but this node's genesis file gives chain {ours}; refusing to join")]
    PeerGenesisMismatch {
        peer: String,
        addr: String,
        theirs: String,
        ours: String,
    },
}

/// Verifies the ledger in node `id`'s data dir while the node is stopped
/// (`bank-server verify`): the same check a node runs at start.
pub fn verify_offline(data_dir: &Path, id: NodeId, genesis: &Path) -> Result<VerifyReport, NodeError> {
    let paths = NodePaths::new(data_dir, id);
    if !paths.db.is_dir() {
        return Err(NodeError::DataDir {
            path: paths.db.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("no database of node {id} here")),
        });
    }
    let genesis = Arc::new(crate::config::load_genesis(genesis)?);
    let db = open_db(&paths.db).map_err(|source| NodeError::Db {
        path: format!("{} (is the node still running?)", paths.db.display()),
        source,
    })?;
    let ledger = Ledger::open(&db, genesis, &paths.states, &paths.snapshot, &paths.blocks)?;
    Ok(ledger.verify()?)
}

/// Runs a node until `shutdown` resolves or a fatal error occurs.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), NodeError> {
    let id = config.id;
    let addr = config.addr()?.to_string();
    let listen = config.listen.clone().unwrap_or_else(|| addr.clone());
    let paths = NodePaths::new(&config.data_dir, id);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;

    // Bind first: a taken port fails the start before anything is written.
    let (listener, http_listener, tls) = bind(&config, &listen).await?;
    let genesis = Arc::new(crate::config::load_genesis(&config.genesis)?);
    let chain_id = genesis.chain_id();
    let db = open_db(&paths.db).map_err(|source| NodeError::Db {
        path: paths.db.display().to_string(),
        source,
    })?;
    let ledger = Ledger::open(&db, genesis, &paths.states, &paths.snapshot, &paths.blocks)?;
    // A node serves nothing it cannot vouch for: an edited block, record or
    // balance stops the start with the height it was found at.
    let report = ledger.verify_recent(config.verify_blocks, crate::storage::ledger::START_VERIFY_MAX_TXS)?;
    tracing::info!("node {id}: chain verified: {}", report.describe());
    let db_err = |source| NodeError::Db {
        path: paths.db.display().to_string(),
        source,
    };
    let log_store = LogStore::open(&db, &paths.db, &paths.raft_log)?;
    log_store.attach_ledger(Arc::clone(&ledger));
    let pristine = log_store.is_pristine().map_err(db_err)?;
    let (height, tip) = ledger.tip();
    if pristine {
        tracing::info!("node {id}: starting fresh from genesis, chain={chain_id} height={height}");
    } else {
        let applied = ledger.with_state(|s| s.last_applied);
        tracing::info!(
            "node {id}: recovered from disk: height={height} tip={tip} last_applied={:?}",
            applied.map(|l| l.index)
        );
    }

    let raft_config = raft_config(&config)?;

    let faults = Arc::new(Faults::new(id));
    // A database that has neither identity nor applied anything is new;
    // with a log that holds entries, the rest of the state was lost.
    // Checked before the identity is drawn, so that every start refuses.
    let new_db = !Peers::has_identity(&db).map_err(db_err)? && ledger.with_state(|s| s.last_applied).is_none();
    if new_db && !pristine {
        return Err(NodeError::PartialState {
            id,
            log: paths.raft_log.display().to_string(),
            db: paths.db.display().to_string(),
        });
    }
    let peers = Arc::new(Peers::open(&db).map_err(db_err)?);
    // The identity is durable before the log can hold an entry: a log
    // without it would read as the partial state refused above.
    log_store.sync_sled().await?;
    let (refused_tx, mut refused_rx) = mpsc::channel::<String>(1);
    let gate = Arc::new(peer_gate(&config, chain_id)?);
    let network = Network {
        self_id: id,
        chain_id,
        gate: Arc::clone(&gate),
        faults: Arc::clone(&faults),
        peers: Arc::clone(&peers),
        refused: refused_tx.clone(),
    };
    let restored = restored_term(id, &log_store).await?;
    let sm = LedgerStateMachine::new(Arc::clone(&ledger), paths.snapshot.clone());
    let raft = Raft::new(id, Arc::new(raft_config), network, log_store.clone(), sm)
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;

    if pristine && config.join.is_some() {
        tracing::info!("node {id}: waiting to be added: run `bank-client cluster add {id} {addr}`");
    } else if pristine {
        // Every pristine node proposes the same initial membership; openraft
        // makes that safe, so the cluster forms with no separate init step.
        let members: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, a)| (*id, BasicNode { addr: a.clone() }))
            .collect();
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!("initialize: {e}");
        }
    }

    let reads = ReadBarrier::new(raft.clone(), restored);
    let producer = BlockProducer::start(
        raft.clone(),
        reads.clone(),
        Arc::clone(&ledger),
        id,
        config.producer.clone(),
    );
    let api = BankApi::new(ApiParts {
        id,
        addr: addr.clone(),
        raft: raft.clone(),
        reads,
        ledger: Arc::clone(&ledger),
        log_store: log_store.clone(),
        producer,
        request_timeout: config.request_timeout,
        faults: Arc::clone(&faults),
        peers_seen: Arc::clone(&peers),
        admin_token: config.admin_token.clone(),
        peer_gate: Arc::clone(&gate),
        #[cfg(feature = "test-hooks")]
        propose_unchecked: config.propose_unchecked,
    });

    tracing::info!(
        "node {id}: listening on {listen} (client API and Raft), data dir {}",
        config.data_dir.display()
    );
    if config.admin_token.is_some() {
        tracing::info!("control plane (faults, membership): admin token required");
    } else {
        tracing::info!("control plane (faults, membership): callers on this host only (no --admin-token-file)");
    }

    let (fatal_tx, mut fatal_rx) = mpsc::channel::<NodeError>(1);
    tasks::spawn_all(&config, chain_id, &raft, &ledger, &log_store, &peers, &paths, fatal_tx);

    let raft_rpc = RaftRpc::new(
        raft.clone(),
        chain_id,
        Arc::clone(&faults),
        Arc::clone(&peers),
        refused_tx,
        SnapshotGate::new(Arc::clone(&ledger), paths.snapshot.with_extension("arriving")),
    );
    let server = grpc_server(id, &listen, tls, gate, &raft, raft_rpc, api)?;
    // Nagle's algorithm would hold small replies back ~40 ms behind delayed
    // ACKs: every Raft round trip and client answer is latency-critical.
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, Some(Duration::from_secs(60)))
        .map_err(|e| NodeError::Listen {
            addr: listen.clone(),
            reason: e.to_string(),
        })?;

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = http_listener.map(|l| {
        let state = crate::http::HttpState {
            id,
            raft: raft.clone(),
            ledger: Arc::clone(&ledger),
            log_store: log_store.clone(),
            quorum_timeout: Duration::from_millis(config.election_timeout_max_ms),
            history_slots: Arc::new(tokio::sync::Semaphore::new(2)),
            status_cache: Arc::default(),
            token: config.http_token.clone(),
        };
        serve_http(l, state, http_stop_rx)
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            })
            .await
    });

    let result = tokio::select! {
        _ = shutdown => {
            tracing::info!("node {id}: shutting down");
            Ok(())
        }
        Some(e) = fatal_rx.recv() => Err(e),
        Some(reason) = refused_rx.recv() => Err(NodeError::Refused(reason)),
    };
    let _ = stop_tx.send(());
    let _ = http_stop_tx.send(());
    // A background verification would hold the runtime's shutdown for as
    // long as it has left to run.
    ledger.stop_verifying();
    let _ = raft.shutdown().await;
    ledger.flush_block_log_now();
    let _ = serve.await;
    if let Some(h) = http {
        let _ = h.await;
    }
    if let Err(e) = db.flush_async().await {
        tracing::warn!("final flush failed: {e}");
    }
    result
}

/// openraft's settings for this node.
fn raft_config(config: &NodeConfig) -> Result<openraft::Config, NodeError> {
    openraft::Config {
        cluster_name: "bank".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        // Each entry is a whole block of up to batch_max_bytes: one append
        // message carries ~8 MiB of them at most (or one block), well within
        // MAX_RAFT_MESSAGE_BYTES (see `limits`).
        max_payload_entries: (8 * 1024 * 1024 / config.producer.batch_max_bytes.max(1)).clamp(1, 64) as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
        max_in_snapshot_log_to_keep: config.keep_log_entries,
        install_snapshot_timeout: 2000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| NodeError::RaftConfig(e.to_string()))
}

/// The term this node led when it stopped, if its committed vote says so:
/// read before openraft starts, since such a node is the leader of that
/// term again at once, and its reads need a barrier of their own (see
/// `raft::read_barrier`).
async fn restored_term(id: NodeId, log_store: &LogStore) -> Result<Option<RestoredTerm>, NodeError> {
    let mut store = log_store.clone();
    let vote = store.read_vote().await.map_err(|e| NodeError::Raft(e.to_string()))?;
    let last_log = store
        .get_log_state()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?
        .last_log_id;
    Ok(RestoredTerm::at_start(id, vote.as_ref(), last_log))
}

/// How this node proves itself to peers and checks them: by certificate
/// under TLS, else by the cluster secret.
fn peer_gate(config: &NodeConfig, chain_id: crate::ledger::Hash32) -> Result<PeerGate, NodeError> {
    if config.tls.is_some() {
        return Ok(PeerGate::Certificate);
    }
    let secret = match &config.cluster_secret_file {
        Some(path) => ClusterSecret::load(path)?,
        None => ClusterSecret::load_or_create(&config.data_dir.join(crate::peer_auth::DEFAULT_SECRET_FILE))?,
    };
    Ok(PeerGate::Secret { secret, chain_id })
}

/// The node's gRPC server: the Raft service (callers proven to be members
/// before a message is read), the client API, health and reflection.
fn grpc_server(
    id: NodeId,
    listen: &str,
    tls: Option<crate::tls::NodeTls>,
    gate: Arc<PeerGate>,
    raft: &Raft,
    raft_rpc: RaftRpc,
    api: BankApi,
) -> Result<tonic::transport::server::Router, NodeError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server).map_err(|e| NodeError::Listen {
            addr: listen.to_string(),
            reason: format!("TLS: {e}"),
        })?;
        tracing::info!("node {id}: TLS on; Raft traffic needs a certificate of the cluster CA");
    }
    // The standard health service says SERVING while this node knows a
    // leader (the same rule as /readyz); reflection lists the client API.
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(tasks::report_health(raft.clone(), health));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("bank.v1.Bank")
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_err = |e: tonic_reflection::server::Error| NodeError::Listen {
        addr: listen.to_string(),
        reason: format!("gRPC reflection: {e}"),
    };
    let reflection_v1 = reflection().build_v1().map_err(reflection_err)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_err)?;
    let raft_service = RaftServiceServer::new(raft_rpc)
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
    Ok(builder
        .tcp_nodelay(true)
        .concurrency_limit_per_connection(1024)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            raft_service,
            move |req: tonic::Request<()>| gate.admit(req),
        ))
        .add_service(BankServer::new(api))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha))
}

/// Binds the node's gRPC port and its HTTP port (unless off), and loads its
/// TLS files; refuses to listen beyond loopback without TLS unless
/// `--insecure` says so.
async fn bind(
    config: &NodeConfig,
    listen: &str,
) -> Result<
    (
        tokio::net::TcpListener,
        Option<tokio::net::TcpListener>,
        Option<crate::tls::NodeTls>,
    ),
    NodeError,
> {
    let socket: SocketAddr = tokio::net::lookup_host(&listen)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| NodeError::Listen {
            addr: listen.to_string(),
            reason: "cannot resolve the address".into(),
        })?;
    // Without TLS, off this host, transfers, Raft traffic and the admin
    // token would cross the network in clear.
    let tls = config.tls.as_ref().map(crate::tls::TlsFiles::load).transpose()?;
    if let Some(tls) = &tls {
        // Raft, forwarding and the peer checks dial out with the node's own
        // certificate (mutual TLS), from their first connection on.
        crate::tls::use_client_tls(tls.client.clone());
    }
    if tls.is_none() && !socket.ip().is_loopback() {
        if !config.insecure {
            return Err(NodeError::Insecure {
                addr: listen.to_string(),
            });
        }
        tracing::warn!(
            "listening on {listen} with --insecure: client, Raft and admin traffic is NOT encrypted or authenticated"
        );
    }
    let listener = tokio::net::TcpListener::bind(socket)
        .await
        .map_err(|e| NodeError::Listen {
            addr: listen.to_string(),
            reason: e.to_string(),
        })?;
    let http_listener = match &config.http_listen {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| NodeError::Listen {
                    addr: addr.clone(),
                    reason: format!("HTTP: {e}"),
                })?;
            if config.http_token.is_none() && l.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
                return Err(NodeError::OpenHttp { addr: addr.clone() });
            }
            Some(l)
        }
    };
    Ok((listener, http_listener, tls))
}

/// Serves the dashboard, JSON API, metrics and health on `listener` until
/// `stop` fires.
fn serve_http(
    listener: tokio::net::TcpListener,
    state: crate::http::HttpState,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let id = state.id;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!("node {id}: dashboard http://{addr}/ (also /metrics, /healthz, /readyz; read-only, plain HTTP)");
    if listener.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            "the dashboard on {addr} is plain HTTP: its token and the balances it shows cross the network unencrypted; keep it on a private network"
        );
    }
    tokio::spawn(crate::http::serve(listener, state, async {
        let _ = stop.await;
    }))
}
