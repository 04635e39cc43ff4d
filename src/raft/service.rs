//! The server side of node-to-node Raft traffic: decodes openraft requests,
//! hands them to the local Raft, encodes the answer.

use super::faults::Faults;
use super::network::{CHAIN_HEADER, EXPECT_HEADER, INCARNATION_HEADER};
use super::peers::Peers;
use super::snapshot_gate::SnapshotGate;
use super::{NodeId, Raft};
use crate::codec;
use crate::ledger::Hash32;
use crate::peer_auth::ProvenPeer;
use crate::proto::raft::{raft_service_server::RaftService, RaftPayload, RaftReply};
use openraft::error::RaftError;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `RaftService` for one node.
pub struct RaftRpc {
    raft: Raft,
    chain_id: String,
    faults: Arc<Faults>,
    peers: Arc<Peers>,
    /// Told when a peer shows this node lost its state: it must stop.
    lost_state: tokio::sync::mpsc::Sender<String>,
    /// What a member may send of a snapshot: see [`SnapshotGate`].
    snapshots: SnapshotGate,
}

impl RaftRpc {
    pub fn new(
        raft: Raft,
        chain_id: Hash32,
        faults: Arc<Faults>,
        peers: Arc<Peers>,
        lost_state: tokio::sync::mpsc::Sender<String>,
        snapshots: SnapshotGate,
    ) -> RaftRpc {
        RaftRpc {
            raft,
            chain_id: chain_id.to_hex(),
            faults,
            peers,
            lost_state,
            snapshots,
        }
    }

    /// Admits traffic from a member of this chain, proven to be who it
    /// says (the gate in front of this service checked that, see
    /// [`crate::peer_auth`]); refuses the rest with a clear reason.
    fn admit<T: DeserializeOwned>(&self, req: Request<RaftPayload>) -> Result<T, Status> {
        let Some(&ProvenPeer(peer)) = req.extensions().get::<ProvenPeer>() else {
            return Err(Status::unauthenticated("the caller did not prove which node it is"));
        };
        let md = req.metadata();
        // The receiving end enforces a partition too: a sender that has not
        // heard of it (e.g. it just restarted) is still cut off.
        if !self.faults.can_reach(peer) {
            return Err(Status::unavailable(format!("partitioned from node {peer}")));
        }
        let theirs = md.get(CHAIN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if theirs != self.chain_id {
            tracing::error!(
                "refused Raft traffic from node {peer} of another chain: theirs={theirs:?} ours={}",
                self.chain_id
            );
            return Err(Status::failed_precondition(format!(
                "genesis mismatch: node {peer} is on chain {theirs:?}, this node is on chain {}",
                self.chain_id
            )));
        }
        if !self.is_member(Some(peer)) {
            tracing::warn!("refused Raft traffic from node {peer}: not a member of this cluster");
            return Err(Status::permission_denied(format!(
                "node {peer} is not a member of this cluster"
            )));
        }
        let incarnation = md.get(INCARNATION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Err(reason) = self.peers.check_incarnation(peer, incarnation) {
            tracing::error!("refused Raft traffic: {reason}");
            return Err(Status::failed_precondition(reason.to_string()));
        }
        let expected = md.get(EXPECT_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Err(reason) = self.peers.check_expected(peer, expected) {
            let reason = reason.to_string();
            tracing::error!("{reason}");
            let _ = self.lost_state.try_send(reason.clone());
            return Err(Status::failed_precondition(reason));
        }
        self.peers.heard_from(peer);
        let from = peer;
        codec::decode(&req.into_inner().data)
            .map_err(|e| Status::invalid_argument(format!("malformed Raft message from node {from}: {e}")))
    }
}

impl RaftRpc {
    /// Whether Raft traffic from `from` may reach this node's Raft: it must be
    /// a voter or learner of the membership this node knows, so a removed or
    /// foreign node cannot force elections with a higher term. A node that
    /// knows no membership yet (one about to join) hears from anyone of its
    /// chain: the leader adding it is not in its (empty) config.
    fn is_member(&self, from: Option<NodeId>) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let mut nodes = membership.nodes().map(|(id, _)| *id).peekable();
        if nodes.peek().is_none() {
            return true;
        }
        from.is_some_and(|f| membership.get_node(&f).is_some())
    }

    /// Encodes the answer, stamped with this node's incarnation.
    fn reply<T: Serialize, E: Serialize>(
        &self,
        result: Result<T, RaftError<NodeId, E>>,
    ) -> Result<Response<RaftReply>, Status> {
        let mut r = reply(result)?;
        if let Ok(v) = self.peers.incarnation().parse() {
            r.metadata_mut().insert(INCARNATION_HEADER, v);
        }
        Ok(r)
    }
}

fn reply<T: Serialize, E: Serialize>(result: Result<T, RaftError<NodeId, E>>) -> Result<Response<RaftReply>, Status> {
    let reply = match result {
        Ok(v) => RaftReply {
            data: codec::encode(&v).map_err(|e| Status::internal(e.to_string()))?,
            error: String::new(),
        },
        Err(e) => RaftReply {
            data: Vec::new(),
            error: serde_json::to_string(&e).map_err(|e| Status::internal(e.to_string()))?,
        },
    };
    Ok(Response::new(reply))
}

#[tonic::async_trait]
impl RaftService for RaftRpc {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftReply>, Status> {
        crate::timeline::mark(crate::timeline::Point::AppendIn);
        let rpc = self.admit(req)?;
        let result = self.raft.append_entries(rpc).await;
        crate::timeline::mark(crate::timeline::Point::AppendOut);
        self.reply(result)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.admit(req)?;
        self.reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<Response<RaftReply>, Status> {
        let rpc: openraft::raft::InstallSnapshotRequest<super::TypeConfig> = self.admit(req)?;
        self.snapshots
            .admit(&rpc.meta.snapshot_id, rpc.offset, &rpc.data, rpc.done)
            .await
            .map_err(|reason| {
                tracing::warn!("refused snapshot {}: {reason}", rpc.meta.snapshot_id);
                Status::invalid_argument(reason)
            })?;
        self.reply(self.raft.install_snapshot(rpc).await)
    }
}
