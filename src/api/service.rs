//! The client gRPC service. Every node accepts every call: writes and
//! linearizable reads run on the leader, and a follower forwards them there,
//! retrying across elections until the request's deadline.

use crate::auth::{authorize_control, AdminToken};
use crate::ledger::keys::{SignatureError, TransferAuthError};
use crate::ledger::TxRecord;
use crate::ledger::{RejectReason, Signature, Transaction, TxId};
use crate::producer::{BlockProducer, SubmitError};
use crate::proto::bank::bank_client::BankClient;
use crate::proto::bank::bank_server::Bank;
use crate::proto::bank::{
    AccountBalance, BalanceReply, BalanceRequest, BalancesReply, BalancesRequest, Faults as FaultsMsg, GetBlocksReply,
    GetBlocksRequest, PartitionGroup, SetFaultsRequest, StatusReply, StatusRequest, TransferRequest, TxReply,
};
use crate::proto::bank::{AccountHistoryRequest, GetTxRequest, JsonReply};
use crate::proto::bank::{
    AddNodeRequest, Membership as MembershipMsg, PeerState, RemoveNodeRequest, VerifyReply, VerifyRequest,
};
use crate::proto::bank::{StageStat, TransferBatchReply, TransferBatchRequest, TransferResult};
use crate::raft::faults::{FaultSettings, Faults};
use crate::raft::network::FROM_HEADER;
use crate::raft::peers::Peers;
use crate::raft::read_barrier::{ReadBarrier, ReadBarrierError};
use crate::raft::BasicNode;
use crate::raft::{NodeId, Raft};
use crate::storage::{Ledger, LedgerError, LogStore};
use openraft::error::ClientWriteError;
use openraft::error::RaftError;
use openraft::ChangeMembers;
use openraft::ServerState;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Set on a request one node forwards to another, so it is never forwarded twice.
const FORWARDED_HEADER: &str = "x-bank-forwarded";

/// Most transfers one `TransferBatch` request may carry.
pub const MAX_BATCH_TRANSFERS: usize = 8192;

/// How often a batch's retryable transfers are resubmitted on the leader.
const BATCH_RETRIES: usize = 3;

/// Most blocks one `GetBlocks` call returns.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 256;

/// Most bytes of block JSON in one `GetBlocks` reply (at least one block is
/// always sent): keeps replies under gRPC's default 4 MiB message limit.
pub const MAX_BLOCKS_REPLY_BYTES: usize = 2 * 1024 * 1024;

/// Most accounts one atomic `Balances` read returns: bounds the reply.
pub const MAX_ACCOUNTS_PER_READ: usize = 1_000_000;

/// Pause between attempts while a leader is being elected.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Batches that may wait for a signature-check core beyond those being
/// checked: bounds the memory held by waiting batches (up to 8,192
/// transfers each) while letting a burst of big batches queue instead of
/// being refused.
const MAX_SIGNATURE_WAITERS: usize = 32;

/// The client API of one node.
pub struct BankApi {
    id: NodeId,
    addr: String,
    raft: Raft,
    /// Linearizable reads wait here before they read the ledger.
    reads: ReadBarrier,
    ledger: Arc<Ledger>,
    log_store: LogStore,
    producer: BlockProducer,
    /// Upper bound on how long one request may take, whatever the client asks.
    request_timeout: Duration,
    /// Connections to other nodes' APIs, for forwarding.
    peers: Mutex<HashMap<NodeId, (String, BankClient<Channel>)>>,
    /// Injected network faults; forwarding is server-to-server traffic too.
    faults: Arc<Faults>,
    /// When each peer was last heard from.
    peers_seen: Arc<Peers>,
    /// Required on control-plane calls when set; see [`crate::auth`].
    admin_token: Option<AdminToken>,
    /// One chain verification at a time: each costs a pass over the history.
    /// The permit goes with the pass, not the call: a caller that gives up
    /// (deadline) must not free it while the pass still runs.
    verifying: Arc<tokio::sync::Semaphore>,
    /// Account histories in progress (each reads up to 65,536 transactions).
    histories: Arc<tokio::sync::Semaphore>,
    /// Batches having their signatures checked: one per core, so clients
    /// cannot queue unbounded CPU work (a check goes on if its client leaves).
    signature_slots: Arc<tokio::sync::Semaphore>,
    /// Batches checking or waiting to check signatures: at most
    /// [`MAX_SIGNATURE_WAITERS`] beyond the slots.
    signature_queue: Arc<tokio::sync::Semaphore>,
}

/// Why one attempt on the leader did not finish the request.
enum Attempt {
    /// Leadership moved; try again wherever the leader now is.
    NotLeader(String),
    /// Worth retrying on the same or a new leader.
    Retry(String),
    /// Final answer.
    Done(Status),
}

impl From<ReadBarrierError> for Attempt {
    fn from(e: ReadBarrierError) -> Attempt {
        match e {
            ReadBarrierError::NotLeader(_) => Attempt::NotLeader("leadership changed".into()),
            ReadBarrierError::Unconfirmed(m) => Attempt::Retry(m),
            ReadBarrierError::Stopped(m) => Attempt::Done(Status::unavailable(m)),
        }
    }
}

impl From<SubmitError> for Attempt {
    fn from(e: SubmitError) -> Attempt {
        match e {
            SubmitError::NotLeader(_) => Attempt::NotLeader("leadership changed".into()),
            SubmitError::Retry(m) => Attempt::Retry(m),
            SubmitError::Rejected(reason) => Attempt::Done(reject_status(&reason)),
            SubmitError::Overloaded(_) => {
                crate::stats::refused("overloaded");
                Attempt::Done(Status::resource_exhausted(e.to_string()))
            }
            SubmitError::Fatal(m) => Attempt::Done(Status::unavailable(format!("node is shutting down: {m}"))),
        }
    }
}

/// A transfer as a request carries it; the signature is checked later, by
/// the leader.
fn transfer_of(t: &TransferRequest) -> Result<Transaction, String> {
    let id = TxId::new(t.tx_id.clone()).map_err(|e| e.to_string())?;
    let signature = Signature::from_slice(&t.signature).ok_or_else(|| {
        format!(
            "signature of transfer {id} is {} bytes; an ed25519 signature is 64",
            t.signature.len()
        )
    })?;
    Ok(Transaction::Transfer {
        id,
        from: t.from,
        to: t.to,
        amount: t.amount,
        signature,
    })
}

/// The gRPC status for a transfer its signer may not make.
pub fn auth_status(e: &TransferAuthError) -> Status {
    match e {
        // reject_status counts this refusal itself.
        TransferAuthError::UnknownAccount(account) => {
            return reject_status(&RejectReason::UnknownAccount { account: *account });
        }
        TransferAuthError::Signature(_) => crate::stats::refused("bad_signature"),
    }
    match e {
        TransferAuthError::Signature(SignatureError::BadKey { .. }) => Status::failed_precondition(e.to_string()),
        _ => Status::unauthenticated(e.to_string()),
    }
}

/// The gRPC status for a rule a transaction broke.
pub fn reject_status(reason: &RejectReason) -> Status {
    crate::stats::refused(match reason {
        RejectReason::ZeroAmount => "zero_amount",
        RejectReason::SameAccount { .. } => "same_account",
        RejectReason::UnknownAccount { .. } => "unknown_account",
        RejectReason::InsufficientFunds { .. } => "insufficient_funds",
        RejectReason::Overflow { .. } => "overflow",
        RejectReason::IdConflict { .. } => "id_conflict",
        RejectReason::AllocationOutsideGenesis => "invalid_request",
    });
    let msg = reason.to_string();
    match reason {
        RejectReason::ZeroAmount | RejectReason::SameAccount { .. } | RejectReason::AllocationOutsideGenesis => {
            Status::invalid_argument(msg)
        }
        RejectReason::UnknownAccount { .. } => Status::not_found(msg),
        RejectReason::InsufficientFunds { .. } | RejectReason::Overflow { .. } => Status::failed_precondition(msg),
        RejectReason::IdConflict { .. } => Status::already_exists(msg),
    }
}

/// Carries the caller's time budget in milliseconds. tonic keeps the standard
/// `grpc-timeout` header from handlers, so callers state it again here.
pub const TIMEOUT_HEADER: &str = "x-bank-timeout-ms";

/// The caller's time budget, if it stated one.
fn client_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let ms: u64 = req.metadata().get(TIMEOUT_HEADER)?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

fn tx_reply(record: &TxRecord, id: &TxId) -> TxReply {
    TxReply {
        tx_id: id.to_string(),
        height: record.height,
        block_hash: record.block_hash.to_hex(),
        balance: record.outcome.as_ref().ok().and_then(|a| a.balance).unwrap_or(0),
    }
}

pub(crate) fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl BankApi {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        addr: String,
        raft: Raft,
        reads: ReadBarrier,
        ledger: Arc<Ledger>,
        log_store: LogStore,
        producer: BlockProducer,
        request_timeout: Duration,
        faults: Arc<Faults>,
        peers_seen: Arc<Peers>,
        admin_token: Option<AdminToken>,
    ) -> BankApi {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BankApi {
            id,
            addr,
            raft,
            reads,
            ledger,
            log_store,
            producer,
            request_timeout,
            peers: Mutex::new(HashMap::new()),
            faults,
            peers_seen,
            admin_token,
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
            histories: Arc::new(tokio::sync::Semaphore::new(2)),
            signature_slots: Arc::new(tokio::sync::Semaphore::new(cores)),
            signature_queue: Arc::new(tokio::sync::Semaphore::new(cores + MAX_SIGNATURE_WAITERS)),
        }
    }

    /// Membership changes may wait for a new node to catch up: they get the
    /// client's whole budget, up to this.
    fn control_deadline<T>(&self, req: &Request<T>) -> Instant {
        const MAX_CONTROL: Duration = Duration::from_secs(600);
        let t = client_timeout(req).map_or(self.request_timeout, |c| (c * 9 / 10).min(MAX_CONTROL));
        Instant::now() + t
    }

    /// When to give up on a request: a little before the client does, so the
    /// client gets our reason rather than its own bare timeout.
    fn deadline<T>(&self, req: &Request<T>) -> Instant {
        let t = client_timeout(req).map_or(self.request_timeout, |c| (c * 9 / 10).min(self.request_timeout));
        Instant::now() + t
    }

    /// Whether another node forwarded this request, and which one.
    fn forwarded<T>(req: &Request<T>) -> Option<Option<NodeId>> {
        if !req.metadata().contains_key(FORWARDED_HEADER) {
            return None;
        }
        Some(
            req.metadata()
                .get(FROM_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        )
    }

    /// A client for the API of node `leader` at `addr`, reused across calls.
    fn peer(&self, leader: NodeId, addr: &str) -> Result<BankClient<Channel>, Status> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((a, c)) = peers.get(&leader) {
            if a == addr {
                return Ok(c.clone());
            }
        }
        let channel = crate::tls::endpoint(addr)
            .map_err(|e| Status::internal(format!("node {leader}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .connect_lazy();
        let client = BankClient::new(channel);
        peers.insert(leader, (addr.to_string(), client.clone()));
        Ok(client)
    }

    /// Runs `local` if this node leads, else forwards with `remote`; retries
    /// across leader changes until `deadline`.
    async fn on_leader<T, L, LF, F, FF>(
        &self,
        forwarded: Option<Option<NodeId>>,
        deadline: Instant,
        local: L,
        remote: F,
    ) -> Result<T, Status>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<T, Attempt>>,
        F: Fn(BankClient<Channel>, Duration) -> FF,
        FF: Future<Output = Result<T, Status>>,
    {
        if let Some(Some(from)) = forwarded {
            if !self.faults.can_reach(from) {
                return Err(Status::unavailable(format!("partitioned from node {from}")));
            }
        }
        let forwarded = forwarded.is_some();
        let started = Instant::now();
        let mut last = String::from("no leader elected");
        let mut metrics = self.raft.metrics();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "no quorum: timed out after {} ms ({last})",
                    (now - started).as_millis()
                )));
            }
            let m = metrics.borrow_and_update().clone();
            let leader_addr = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| (l, n.addr.clone()))
            });
            match leader_addr {
                Some((leader, _)) if leader == self.id && m.state == ServerState::Leader => {
                    match tokio::time::timeout_at(deadline, local()).await {
                        Err(_) => {
                            return Err(Status::deadline_exceeded(format!(
                                "no quorum: no answer within {} ms (for a write the outcome is unknown: resubmit the same id to learn it)",
                                (Instant::now() - started).as_millis()
                            )))
                        }
                        Ok(Ok(v)) => return Ok(v),
                        Ok(Err(Attempt::Done(status))) => return Err(status),
                        Ok(Err(Attempt::NotLeader(m) | Attempt::Retry(m))) => last = m,
                    }
                }
                Some((leader, addr)) if leader != self.id => {
                    if forwarded {
                        return Err(Status::unavailable(format!("node {} is not the leader", self.id)));
                    }
                    if !self.faults.can_reach(leader) {
                        last = format!("partitioned from leader {leader}");
                        tokio::time::sleep(RETRY_PAUSE.min(deadline - now)).await;
                        continue;
                    }
                    let client = self.peer(leader, &addr)?;
                    match remote(client, deadline - now).await {
                        Ok(v) => return Ok(v),
                        Err(s) if s.code() == tonic::Code::Unavailable => {
                            last = format!("leader {leader} at {addr}: {}", s.message());
                        }
                        Err(s) => return Err(s),
                    }
                }
                _ => {
                    // No leader known: wait for the election to produce one.
                    let _ = tokio::time::timeout(Duration::from_millis(200).min(deadline - now), metrics.changed()).await;
                    continue;
                }
            }
            tokio::time::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Commits a batch's transfers together; each gets its own result.
    /// Transfers refused only because leadership moved or a block went stale
    /// are resubmitted a few times before being reported as not committed.
    async fn commit_batch(&self, txs: &[Transaction]) -> Result<TransferBatchReply, Attempt> {
        let mut results: Vec<Option<TransferResult>> = vec![None; txs.len()];
        let mut pending: Vec<usize> = Vec::with_capacity(txs.len());
        for (i, auth) in self.authorize_all(txs).await?.into_iter().enumerate() {
            match auth {
                Ok(()) => pending.push(i),
                Err(e) => {
                    let id = txs[i].id().map(TxId::to_string).unwrap_or_default();
                    results[i] = Some(failed_result(id, &auth_status(&e)));
                }
            }
        }
        let mut last_retry = String::new();
        for _ in 0..BATCH_RETRIES {
            // Nothing left to propose (an empty batch, or every transfer
            // refused): answer now, not as a leader change to retry.
            if pending.is_empty() {
                break;
            }
            let outcomes =
                futures::future::join_all(pending.iter().map(|&i| self.producer.submit(txs[i].clone()))).await;
            if outcomes.iter().all(|o| matches!(o, Err(SubmitError::NotLeader(_)))) {
                return Err(Attempt::NotLeader("leadership changed".into()));
            }
            let mut again = Vec::new();
            for (i, outcome) in pending.into_iter().zip(outcomes) {
                let id = txs[i].id().map(TxId::to_string).unwrap_or_default();
                results[i] = match outcome {
                    Ok(rec) => Some(TransferResult {
                        tx_id: id,
                        code: tonic::Code::Ok as u32,
                        error: String::new(),
                        height: rec.height,
                        block_hash: rec.block_hash.to_hex(),
                    }),
                    Err(SubmitError::NotLeader(_) | SubmitError::Retry(_)) => {
                        again.push(i);
                        None
                    }
                    Err(e) => {
                        let status = match Attempt::from(e) {
                            Attempt::Done(s) => s,
                            Attempt::NotLeader(m) | Attempt::Retry(m) => Status::unavailable(m),
                        };
                        Some(failed_result(id, &status))
                    }
                };
            }
            if again.is_empty() {
                break;
            }
            last_retry = format!("{} transfers were not committed after a leader change", again.len());
            pending = again;
        }
        let unknown = Status::unavailable(format!("not committed ({last_retry}): resubmit the same id"));
        Ok(TransferBatchReply {
            results: results
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    r.unwrap_or_else(|| failed_result(txs[i].id().map(TxId::to_string).unwrap_or_default(), &unknown))
                })
                .collect(),
        })
    }

    /// Checks every transfer's signature (~20 us each in batches), off the async
    /// workers, one batch per core at a time: a full batch holds thousands.
    /// A batch waits for a core until its request's deadline (the caller's
    /// timeout ends the wait); only when [`MAX_SIGNATURE_WAITERS`] batches
    /// already wait is it refused at once.
    async fn authorize_all(&self, txs: &[Transaction]) -> Result<Vec<Result<(), TransferAuthError>>, Attempt> {
        if txs.len() <= 16 {
            return Ok(self.ledger.authorize_many(txs));
        }
        let overloaded = || {
            crate::stats::refused("overloaded");
            Attempt::Done(Status::resource_exhausted(
                "busy checking other batches' signatures; retry",
            ))
        };
        let _queued = Arc::clone(&self.signature_queue)
            .try_acquire_owned()
            .map_err(|_| overloaded())?;
        let slot = Arc::clone(&self.signature_slots)
            .acquire_owned()
            .await
            .map_err(|_| overloaded())?;
        let ledger = Arc::clone(&self.ledger);
        let txs = txs.to_vec();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            ledger.authorize_many(&txs)
        })
        .await
        .map_err(|e| Attempt::Done(Status::internal(format!("signature check failed: {e}"))))
    }

    async fn commit(&self, tx: Transaction) -> Result<TxRecord, Attempt> {
        self.producer.submit(tx).await.map_err(Attempt::from)
    }

    /// Confirms with a quorum that this node still leads, and waits until the
    /// state machine has applied everything committed before now.
    async fn confirm_leadership(&self) -> Result<(), Attempt> {
        Ok(self.reads.confirm().await?)
    }

    async fn linearizable_balance(&self, account: u64) -> Result<BalanceReply, Attempt> {
        self.confirm_leadership().await?;
        match self.ledger.balance(account) {
            Some((balance, height)) => Ok(BalanceReply {
                account,
                balance,
                height,
                record: None,
            }),
            None => Err(Attempt::Done(reject_status(&RejectReason::UnknownAccount { account }))),
        }
    }

    /// Marks a request as forwarded by this node.
    fn forward_request<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut r = crate::client::request(msg, timeout);
        let md = r.metadata_mut();
        md.insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
        if let Ok(v) = self.id.to_string().parse() {
            md.insert(FROM_HEADER, v);
        }
        // The caller was authorized here; the leader checks this node's token.
        if let Some(t) = &self.admin_token {
            t.attach(&mut r);
        }
        r
    }

    fn membership_msg(&self) -> MembershipMsg {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        MembershipMsg {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// Adds `id` as a learner, waits until it has caught up, then makes it a voter.
    async fn add_node_here(&self, id: NodeId, addr: &str, deadline: Instant) -> Result<MembershipMsg, Attempt> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if let Some(node) = membership.get_node(&id) {
            if node.addr != addr {
                return Err(Attempt::Done(Status::already_exists(format!(
                    "node {id} is already a member at {}",
                    node.addr
                ))));
            }
            if membership.voter_ids().any(|v| v == id) {
                return Ok(self.membership_msg());
            }
        }
        tracing::info!("adding node {id} at {addr} as a learner");
        let node = BasicNode { addr: addr.to_string() };
        self.raft
            .add_learner(id, node, false)
            .await
            .map_err(membership_attempt)?;
        // openraft's own wait counts a learner within `replication_lag_threshold`
        // (5000 entries) as caught up, even one that never answered: wait here
        // until it holds everything the leader had when it was added.
        let target = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
        let mut metrics = self.raft.metrics();
        let give_up = deadline.checked_sub(Duration::from_millis(200)).unwrap_or(deadline);
        loop {
            let matched = {
                let m = metrics.borrow_and_update();
                if !m.state.is_leader() {
                    return Err(Attempt::NotLeader("leadership changed while adding a node".into()));
                }
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned())
                    .flatten()
                    .map(|l| l.index)
            };
            if matched.is_some_and(|i| i >= target) {
                break;
            }
            if tokio::time::timeout_at(give_up, metrics.changed()).await.is_err() {
                return Err(Attempt::Done(Status::deadline_exceeded(format!(
                    "node {id} at {addr} has not caught up (it holds log index {} of {target}); it stays a \
                     learner: check that it runs, then run `cluster add` again",
                    matched.map_or("none".to_string(), |i| i.to_string())
                ))));
            }
        }
        tracing::info!("node {id} caught up; promoting it to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_attempt)?;
        Ok(self.membership_msg())
    }

    async fn remove_node_here(&self, id: NodeId) -> Result<MembershipMsg, Attempt> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(Attempt::Done(Status::failed_precondition(format!(
                    "node {id} is the last voter; a cluster cannot remove its last voter"
                ))));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(Attempt::Done(Status::not_found(format!("node {id} is not a member"))));
        };
        tracing::info!("removing node {id}");
        self.raft
            .change_membership(change, false)
            .await
            .map_err(membership_attempt)?;
        Ok(self.membership_msg())
    }

    async fn linearizable_balances(&self) -> Result<BalancesReply, Attempt> {
        self.confirm_leadership().await?;
        self.ledger.with_state(|s| {
            if s.balances.len() > MAX_ACCOUNTS_PER_READ {
                return Err(Attempt::Done(Status::resource_exhausted(format!(
                    "{} accounts exceed the {MAX_ACCOUNTS_PER_READ} one atomic read may return",
                    s.balances.len()
                ))));
            }
            Ok(BalancesReply {
                height: s.tip_height,
                tip_hash: s.tip_hash.to_hex(),
                applied_index: s.last_applied.map_or(0, |l| l.index),
                balances: s
                    .balances
                    .iter()
                    .map(|(a, b)| AccountBalance {
                        account: *a,
                        balance: *b,
                    })
                    .collect(),
            })
        })
    }
}

fn failed_result(tx_id: String, status: &Status) -> TransferResult {
    TransferResult {
        tx_id,
        code: status.code() as u32,
        error: status.message().to_string(),
        height: 0,
        block_hash: String::new(),
    }
}

fn membership_attempt(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Attempt {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Attempt::NotLeader("leadership changed".into()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Attempt::Done(Status::failed_precondition(e.to_string()))
        }
        RaftError::Fatal(e) => Attempt::Done(Status::unavailable(e.to_string())),
    }
}

fn faults_msg(f: &FaultSettings) -> FaultsMsg {
    FaultsMsg {
        partition: f
            .partition
            .iter()
            .map(|g| PartitionGroup { members: g.clone() })
            .collect(),
        delay_min_ms: f.delay_min_ms,
        delay_max_ms: f.delay_max_ms,
        loss: f.loss,
    }
}

#[tonic::async_trait]
impl Bank for BankApi {
    async fn transfer(&self, req: Request<TransferRequest>) -> Result<Response<TxReply>, Status> {
        let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Transfer);
        crate::timeline::mark(crate::timeline::Point::TransferIn);
        let deadline = self.deadline(&req);
        let forwarded = Self::forwarded(&req);
        let msg = req.into_inner();
        let tx = transfer_of(&msg).map_err(|e| {
            crate::stats::refused("invalid_request");
            Status::invalid_argument(e)
        })?;
        let id = tx.id().cloned().unwrap_or_else(TxId::random);
        let reply = self
            .on_leader(
                forwarded,
                deadline,
                || async {
                    // The leader checks the signature before anything is
                    // proposed; followers only forward.
                    self.ledger.authorize(&tx).map_err(|e| Attempt::Done(auth_status(&e)))?;
                    Ok(tx_reply(&self.commit(tx.clone()).await?, &id))
                },
                |mut c, t| {
                    let msg = msg.clone();
                    async move { Ok(c.transfer(self.forward_request(msg, t)).await?.into_inner()) }
                },
            )
            .await?;
        crate::timeline::mark(crate::timeline::Point::TransferOut);
        Ok(Response::new(reply))
    }

    async fn transfer_batch(&self, req: Request<TransferBatchRequest>) -> Result<Response<TransferBatchReply>, Status> {
        let _timer = crate::stats::RequestTimer::start(crate::stats::Method::TransferBatch);
        let deadline = self.deadline(&req);
        let forwarded = Self::forwarded(&req);
        let msg = req.into_inner();
        if msg.transfers.len() > MAX_BATCH_TRANSFERS {
            return Err(Status::invalid_argument(format!(
                "batch of {} transfers exceeds the limit of {MAX_BATCH_TRANSFERS}",
                msg.transfers.len()
            )));
        }
        let txs = msg
            .transfers
            .iter()
            .map(transfer_of)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| {
                crate::stats::refused("invalid_request");
                Status::invalid_argument(format!("{e} (in batch)"))
            })?;
        let reply = self
            .on_leader(
                forwarded,
                deadline,
                || self.commit_batch(&txs),
                |mut c, t| {
                    let msg = msg.clone();
                    async move { Ok(c.transfer_batch(self.forward_request(msg, t)).await?.into_inner()) }
                },
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn balance(&self, req: Request<BalanceRequest>) -> Result<Response<BalanceReply>, Status> {
        let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Balance);
        let deadline = self.deadline(&req);
        let forwarded = Self::forwarded(&req);
        let msg = req.into_inner();
        let account = msg.account;
        // A recorded check is a transaction: its id is fixed here, before any
        // forwarding or retry, so it is recorded at most once.
        let check = match (msg.record, msg.tx_id.is_empty()) {
            (false, _) => None,
            (true, true) => Some(TxId::random()),
            (true, false) => Some(TxId::new(msg.tx_id.clone()).map_err(|e| Status::invalid_argument(e.to_string()))?),
        };
        let fwd = BalanceRequest {
            tx_id: check.as_ref().map(TxId::to_string).unwrap_or_default(),
            ..msg
        };
        let reply = self
            .on_leader(
                forwarded,
                deadline,
                || async {
                    let Some(id) = &check else {
                        return self.linearizable_balance(account).await;
                    };
                    let tx = Transaction::BalanceCheck {
                        id: id.clone(),
                        account,
                    };
                    let r = tx_reply(&self.commit(tx).await?, id);
                    Ok(BalanceReply {
                        account,
                        balance: r.balance,
                        height: r.height,
                        record: Some(r),
                    })
                },
                |mut c, t| {
                    let fwd = fwd.clone();
                    async move { Ok(c.balance(self.forward_request(fwd, t)).await?.into_inner()) }
                },
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn get_blocks(&self, req: Request<GetBlocksRequest>) -> Result<Response<GetBlocksReply>, Status> {
        let msg = req.into_inner();
        let limit = if msg.limit == 0 {
            MAX_BLOCKS_PER_REQUEST
        } else {
            msg.limit.min(MAX_BLOCKS_PER_REQUEST)
        };
        let (tip_height, _) = self.ledger.tip();
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        let mut h = msg.from_height;
        while h <= tip_height && blocks.len() < limit as usize && bytes < MAX_BLOCKS_REPLY_BYTES {
            match self.ledger.block_json(h) {
                Ok(Some(json)) => {
                    bytes += json.len();
                    blocks.push(json);
                }
                Ok(None) => break,
                Err(e) => return Err(Status::data_loss(e.to_string())),
            }
            h += 1;
        }
        Ok(Response::new(GetBlocksReply {
            blocks_json: blocks,
            tip_height,
        }))
    }

    /// A transaction this node holds is committed for good, so a hit here
    /// is the answer. A miss may only mean this node has not applied, or
    /// not yet heard of, a commit: it is answered by the leader after its
    /// read barrier, so that a transaction acknowledged before the lookup
    /// began is always found.
    async fn get_tx(&self, req: Request<GetTxRequest>) -> Result<Response<JsonReply>, Status> {
        let deadline = self.deadline(&req);
        let forwarded = Self::forwarded(&req);
        let msg = req.into_inner();
        let id = TxId::new(msg.tx_id.clone()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(v) = self.ledger.tx_json(&id).map_err(|e| Status::data_loss(e.to_string()))? {
            return Ok(Response::new(JsonReply { json: v.to_string() }));
        }
        let json = self
            .on_leader(
                forwarded,
                deadline,
                || async {
                    self.confirm_leadership().await?;
                    match self.ledger.tx_json(&id) {
                        Ok(Some(v)) => Ok(v.to_string()),
                        Ok(None) => Err(Attempt::Done(Status::not_found(format!(
                            "no committed transaction {id} (leader node {} at height {})",
                            self.id,
                            self.ledger.tip().0
                        )))),
                        Err(e) => Err(Attempt::Done(Status::data_loss(e.to_string()))),
                    }
                },
                |mut c, t| {
                    let msg = msg.clone();
                    async move { Ok(c.get_tx(self.forward_request(msg, t)).await?.into_inner().json) }
                },
            )
            .await?;
        Ok(Response::new(JsonReply { json }))
    }

    async fn account_history(&self, req: Request<AccountHistoryRequest>) -> Result<Response<JsonReply>, Status> {
        let msg = req.into_inner();
        if self.ledger.balance(msg.account).is_none() {
            return Err(reject_status(&RejectReason::UnknownAccount { account: msg.account }));
        }
        let limit = match msg.limit {
            0 => 20,
            n => n.min(1000) as usize,
        };
        let slot = Arc::clone(&self.histories)
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("busy: too many history lookups at once; retry"))?;
        // Reads up to thousands of blocks: off the async workers.
        let ledger = Arc::clone(&self.ledger);
        let v = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            ledger.account_history(msg.account, limit, msg.before_height)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::data_loss(e.to_string()))?;
        Ok(Response::new(JsonReply { json: v.to_string() }))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let m = self.raft.metrics().borrow().clone();
        let (height, tip_hash) = self.ledger.tip();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        Ok(Response::new(StatusReply {
            id: self.id,
            addr: self.addr.clone(),
            role: role_name(m.state).to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            height,
            tip_hash: tip_hash.to_hex(),
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            committed_index: self.log_store.committed_index(),
            voters,
            learners,
            genesis_hash: self.ledger.chain_id().to_hex(),
            faults: Some(faults_msg(&self.faults.get())),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            peers: membership
                .nodes()
                .map(|(id, node)| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(id))
                        .map(|l| l.map_or(0, |l| l.index));
                    PeerState {
                        id: *id,
                        addr: node.addr.clone(),
                        voter: membership.voter_ids().any(|v| v == *id),
                        last_heard_ms: if *id == self.id {
                            Some(0)
                        } else {
                            self.peers_seen.last_heard(*id).map(|d| d.as_millis() as u64)
                        },
                        matched_index: matched,
                        lag_entries: matched.map(|i| m.last_log_index.unwrap_or(0).saturating_sub(i)),
                    }
                })
                .collect(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            stages: crate::stats::STAGES
                .iter()
                .map(|s| {
                    let t = crate::stats::totals(*s);
                    StageStat {
                        name: s.name().to_string(),
                        count: t.count,
                        total_us: t.total_us,
                        max_us: t.max_us,
                    }
                })
                .collect(),
        }))
    }

    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<MembershipMsg>, Status> {
        authorize_control(self.admin_token.as_ref(), &req)?;
        let deadline = self.control_deadline(&req);
        let forwarded = Self::forwarded(&req);
        let msg = req.into_inner();
        crate::config::parse_peers(&format!("{}={}", msg.id, msg.addr))
            .map_err(|_| Status::invalid_argument(format!("bad node address {:?}: expected HOST:PORT", msg.addr)))?;
        let reply = self
            .on_leader(
                forwarded,
                deadline,
                || self.add_node_here(msg.id, &msg.addr, deadline),
                |mut c, t| {
                    let msg = msg.clone();
                    async move { Ok(c.add_node(self.forward_request(msg, t)).await?.into_inner()) }
                },
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn remove_node(&self, req: Request<RemoveNodeRequest>) -> Result<Response<MembershipMsg>, Status> {
        authorize_control(self.admin_token.as_ref(), &req)?;
        let deadline = self.control_deadline(&req);
        let forwarded = Self::forwarded(&req);
        let msg = req.into_inner();
        let reply = self
            .on_leader(
                forwarded,
                deadline,
                || self.remove_node_here(msg.id),
                |mut c, t| async move { Ok(c.remove_node(self.forward_request(msg, t)).await?.into_inner()) },
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn balances(&self, req: Request<BalancesRequest>) -> Result<Response<BalancesReply>, Status> {
        let _timer = crate::stats::RequestTimer::start(crate::stats::Method::Balances);
        let deadline = self.deadline(&req);
        let forwarded = Self::forwarded(&req);
        let reply = self
            .on_leader(
                forwarded,
                deadline,
                || self.linearizable_balances(),
                |mut c, t| async move {
                    Ok(c.balances(self.forward_request(BalancesRequest {}, t))
                        .await?
                        .into_inner())
                },
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn verify(&self, _req: Request<VerifyRequest>) -> Result<Response<VerifyReply>, Status> {
        let one_at_a_time = Arc::clone(&self.verifying).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("a verification is already running on this node; try again later")
        })?;
        let ledger = Arc::clone(&self.ledger);
        // An audit reads all of history; at background priority it takes
        // the CPU live transfers leave, and all of it on an idle node.
        let report = crate::storage::state_machine::in_background("verify", move || {
            let report = ledger.verify();
            drop(one_at_a_time);
            report
        })
        .await
        .map_err(|e| Status::internal(format!("verification stopped: {e}")))?
        .map_err(|e| match e {
            LedgerError::Corruption { .. } => Status::data_loss(e.to_string()),
            LedgerError::VerifyInterrupted | LedgerError::VerifyStopped => Status::unavailable(e.to_string()),
            other => Status::internal(other.to_string()),
        })?;
        Ok(Response::new(VerifyReply {
            blocks: report.blocks,
            transfers: report.transfers,
            tip_height: report.tip_height,
            tip_hash: report.tip_hash.to_hex(),
            elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    async fn set_faults(&self, req: Request<SetFaultsRequest>) -> Result<Response<FaultsMsg>, Status> {
        authorize_control(self.admin_token.as_ref(), &req)?;
        let msg = req.into_inner();
        let mut f = self.faults.get();
        if msg.set_partition {
            f.partition = msg
                .partition
                .into_iter()
                .map(|g| g.members)
                .filter(|g| !g.is_empty())
                .collect();
        }
        if msg.set_delay {
            f.delay_min_ms = msg.delay_min_ms;
            f.delay_max_ms = msg.delay_max_ms;
            f.loss = msg.loss;
        }
        self.faults
            .set(f)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(faults_msg(&self.faults.get())))
    }
}
