//! Forwarding, written once: every call that must run on the leader goes
//! through [`BankApi::on_leader`], which runs it here when this node leads
//! and otherwise sends the request on to the leader (once: a forwarded
//! request is marked and never forwarded again), retrying across elections
//! until the request's deadline.

use super::errors::reject_status;
use super::BankApi;
use crate::producer::SubmitError;
use crate::proto::bank::bank_client::BankClient;
use crate::proto::bank::{
    AccountReply, AccountRequest, AddNodeRequest, BalanceReply, BalanceRequest, BalancesReply, BalancesRequest,
    GetBlocksReply, GetBlocksRequest, GetTxRequest, JsonReply, Membership as MembershipMsg, RemoveNodeRequest,
    SubmitRequest, SubmitSetRequest, TransferBatchReply, TransferBatchRequest, TransferRequest, TxReply,
};
use crate::raft::read_barrier::ReadBarrierError;
use crate::raft::NodeId;
use crate::wire::{FORWARDED_HEADER, TIMEOUT_HEADER};
use futures::future::BoxFuture;
use openraft::ServerState;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Pause between attempts while a leader is being elected.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why one attempt on the leader did not finish the request.
pub(super) enum Attempt {
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

/// How a request arrived: when to give up on it, and whether (and by which
/// node) it was forwarded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Via {
    pub(super) deadline: Instant,
    /// `Some(from)` when node `from` forwarded it (proven, not claimed).
    pub(super) forwarded: Option<NodeId>,
}

/// A request a follower can forward to the leader: the RPC that carries it.
pub(super) trait Forward: Clone + Send + 'static {
    type Reply: Send + 'static;
    fn send(
        client: BankClient<Channel>,
        req: Request<Self>,
    ) -> BoxFuture<'static, Result<Response<Self::Reply>, Status>>;
}

macro_rules! forwarded_by {
    ($($req:ty => $reply:ty, $rpc:ident;)*) => {$(
        impl Forward for $req {
            type Reply = $reply;
            fn send(mut client: BankClient<Channel>, req: Request<Self>) -> BoxFuture<'static, Result<Response<$reply>, Status>> {
                Box::pin(async move { client.$rpc(req).await })
            }
        }
    )*};
}

forwarded_by! {
    TransferRequest => TxReply, transfer;
    TransferBatchRequest => TransferBatchReply, transfer_batch;
    BalanceRequest => BalanceReply, balance;
    BalancesRequest => BalancesReply, balances;
    SubmitRequest => TxReply, submit;
    SubmitSetRequest => TxReply, submit_set;
    AccountRequest => AccountReply, account;
    GetTxRequest => JsonReply, get_tx;
    GetBlocksRequest => GetBlocksReply, get_blocks;
    AddNodeRequest => MembershipMsg, add_node;
    RemoveNodeRequest => MembershipMsg, remove_node;
}

/// The caller's time budget, if it stated one.
fn client_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let ms: u64 = req.metadata().get(TIMEOUT_HEADER)?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_millis(ms))
}

impl BankApi {
    /// A data-plane request: its message, and how it arrived.
    pub(super) fn received<T>(&self, req: Request<T>) -> Result<(T, Via), Status> {
        let via = Via {
            deadline: self.deadline(&req),
            forwarded: self.forwarded(&req)?,
        };
        Ok((req.into_inner(), via))
    }

    /// A control-plane request (membership): its message, and how it
    /// arrived, with the longer deadline such calls get.
    pub(super) fn received_control<T>(&self, req: Request<T>) -> Result<(T, Via), Status> {
        let via = Via {
            deadline: self.control_deadline(&req),
            forwarded: self.forwarded(&req)?,
        };
        Ok((req.into_inner(), via))
    }

    /// Membership changes may wait for a new node to catch up: they get the
    /// client's whole budget, up to this.
    fn control_deadline<T>(&self, req: &Request<T>) -> Instant {
        const MAX_CONTROL: Duration = Duration::from_secs(600);
        let t = client_timeout(req).map_or(self.parts.request_timeout, |c| (c * 9 / 10).min(MAX_CONTROL));
        Instant::now() + t
    }

    /// When to give up on a request: a little before the client does, so the
    /// client gets our reason rather than its own bare timeout.
    fn deadline<T>(&self, req: &Request<T>) -> Instant {
        let t = client_timeout(req).map_or(self.parts.request_timeout, |c| {
            (c * 9 / 10).min(self.parts.request_timeout)
        });
        Instant::now() + t
    }

    /// Which node forwarded this request, if one did: a request marked
    /// forwarded must prove its sender like Raft traffic does.
    fn forwarded<T>(&self, req: &Request<T>) -> Result<Option<NodeId>, Status> {
        if !req.metadata().contains_key(FORWARDED_HEADER) {
            return Ok(None);
        }
        match self.parts.peer_gate.check(req) {
            Ok(from) => Ok(Some(from)),
            Err(e) => {
                crate::stats::refused("peer_unauthenticated");
                Err(e.into())
            }
        }
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

    /// Runs `local` if this node leads, else forwards `msg` to the leader;
    /// retries across leader changes until the request's deadline.
    pub(super) async fn on_leader<M, L, LF>(&self, via: Via, msg: &M, local: L) -> Result<M::Reply, Status>
    where
        M: Forward,
        L: Fn() -> LF,
        LF: Future<Output = Result<M::Reply, Attempt>>,
    {
        let Via { deadline, forwarded } = via;
        if let Some(from) = forwarded {
            if !self.parts.faults.can_reach(from) {
                return Err(Status::unavailable(format!("partitioned from node {from}")));
            }
        }
        let forwarded = forwarded.is_some();
        let started = Instant::now();
        let mut last = String::from("no leader elected");
        let mut metrics = self.parts.raft.metrics();
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
                Some((leader, _)) if leader == self.parts.id && m.state == ServerState::Leader => {
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
                Some((leader, addr)) if leader != self.parts.id => {
                    if forwarded {
                        return Err(Status::unavailable(format!("node {} is not the leader", self.parts.id)));
                    }
                    if !self.parts.faults.can_reach(leader) {
                        last = format!("partitioned from leader {leader}");
                        tokio::time::sleep(RETRY_PAUSE.min(deadline - now)).await;
                        continue;
                    }
                    let client = self.peer(leader, &addr)?;
                    let forward = self.forward_request(msg.clone(), deadline - now);
                    match M::send(client, forward).await {
                        Ok(v) => return Ok(v.into_inner()),
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

    /// Marks a request as forwarded by this node.
    fn forward_request<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut r = crate::wire::request(msg, timeout);
        let md = r.metadata_mut();
        md.insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
        self.parts.peer_gate.stamp(self.parts.id, md);
        // The caller was authorized here; the leader checks this node's token.
        if let Some(t) = &self.parts.admin_token {
            t.attach(&mut r);
        }
        r
    }
}
