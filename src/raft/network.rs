//! The client side of node-to-node Raft traffic, over tonic.
//!
//! Every request carries this node's chain id (genesis hash) and id in its
//! metadata: a node of another chain is refused at the door, so two clusters
//! with different genesis files can never mix logs.

use super::faults::Faults;
use super::peers::Peers;
use super::{BasicNode, NodeId, TypeConfig};
use crate::codec;
use crate::ledger::Hash32;
use crate::proto::raft::{raft_service_client::RaftServiceClient, RaftPayload, RaftReply};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// Metadata key carrying the sender's chain id.
pub const CHAIN_HEADER: &str = "x-bank-chain";
pub use crate::peer_auth::FROM_HEADER;
/// Metadata key carrying the sender's incarnation (see [`Peers`]); replies
/// carry the receiver's.
pub const INCARNATION_HEADER: &str = "x-bank-incarnation";
/// Metadata key carrying the incarnation the sender remembers for the receiver.
pub const EXPECT_HEADER: &str = "x-bank-expect";

pub use crate::limits::MAX_RAFT_MESSAGE_BYTES;

/// Builds one [`PeerClient`] per target node.
#[derive(Clone)]
pub struct Network {
    pub self_id: NodeId,
    pub chain_id: Hash32,
    /// Proves to peers that calls come from this node.
    pub gate: Arc<crate::peer_auth::PeerGate>,
    /// Injected partitions, delays and loss, applied before each send.
    pub faults: Arc<Faults>,
    /// Liveness and identity of peers.
    pub peers: Arc<Peers>,
    /// Told when a peer refuses this node for good (another chain, or this
    /// node lost its state): the node must stop rather than retry forever.
    pub refused: tokio::sync::mpsc::Sender<String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let client = crate::tls::endpoint(&node.addr)
            .map(|e| {
                let channel = e
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .connect_lazy();
                RaftServiceClient::new(channel)
                    .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            })
            .map_err(|e| format!("node {target}: {e}"));
        PeerClient {
            target,
            self_id: self.self_id,
            chain_id: self.chain_id.to_hex(),
            gate: Arc::clone(&self.gate),
            client,
            faults: Arc::clone(&self.faults),
            peers: Arc::clone(&self.peers),
            refused: self.refused.clone(),
        }
    }
}

/// A connection to one peer's Raft service.
pub struct PeerClient {
    target: NodeId,
    self_id: NodeId,
    chain_id: String,
    gate: Arc<crate::peer_auth::PeerGate>,
    client: Result<RaftServiceClient<Channel>, String>,
    faults: Arc<Faults>,
    peers: Arc<Peers>,
    refused: tokio::sync::mpsc::Sender<String>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

/// A transport failure, as openraft's error types want it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if !self.faults.can_reach(self.target) {
            let err = TransportError(format!("partitioned from node {}", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&err)));
        }
        if let Some(d) = self.faults.delay() {
            tokio::time::sleep(d.min(ttl)).await;
        }
        if self.faults.drop_message() {
            let err = TransportError(format!("message to node {} dropped (injected loss)", self.target));
            return Err(RPCError::Network(NetworkError::new(&err)));
        }
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&TransportError(e.clone())))),
        };
        let data = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(ttl);
        let md = request.metadata_mut();
        if let Ok(v) = self.chain_id.parse() {
            md.insert(CHAIN_HEADER, v);
        }
        self.gate.stamp(self.self_id, md);
        if let Ok(v) = self.peers.incarnation().parse() {
            md.insert(INCARNATION_HEADER, v);
        }
        if let Some(v) = self.peers.known(self.target).and_then(|k| k.parse().ok()) {
            md.insert(EXPECT_HEADER, v);
        }
        crate::timeline::mark(crate::timeline::Point::RpcSent);
        let result = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        crate::timeline::mark(crate::timeline::Point::RpcAnswered);
        let reply: RaftReply = match result {
            Ok(r) => {
                let theirs = r
                    .metadata()
                    .get(INCARNATION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                // A reply from a peer whose data dir was replaced must not
                // count: it would acknowledge entries it no longer holds.
                if let Err(reason) = self.peers.check_incarnation(self.target, &theirs) {
                    tracing::error!("ignoring reply: {reason}");
                    return Err(RPCError::Unreachable(Unreachable::new(&reason)));
                }
                self.peers.heard_from(self.target);
                r.into_inner()
            }
            Err(status) => {
                if status.code() == tonic::Code::FailedPrecondition {
                    let reason = format!("node {} refused this node: {}", self.target, status.message());
                    tracing::error!("{reason}");
                    // Stop only when the refusal says *this* node lost its
                    // state. A peer of another chain refusing us says nothing
                    // about who is right: an impostor must not stop the cluster.
                    let about_me = format!("node {} {}", self.self_id, super::peers::LOST_STATE);
                    if status.message().starts_with(&about_me) {
                        let _ = self.refused.try_send(reason);
                    }
                }
                let err = TransportError(format!("node {}: {}", self.target, status.message()));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::FailedPrecondition | tonic::Code::Unknown => {
                        RPCError::Unreachable(Unreachable::new(&err))
                    }
                    _ => RPCError::Network(NetworkError::new(&err)),
                });
            }
        };
        if !reply.error.is_empty() {
            let remote: RaftError<NodeId, E> =
                serde_json::from_str(&reply.error).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            return Err(RPCError::RemoteError(RemoteError::new(self.target, remote)));
        }
        codec::decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}
