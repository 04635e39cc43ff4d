//! The server side of node-to-node Raft traffic: decodes openraft requests,
//! hands them to the local Raft, encodes the answer.

use super::faults::Faults;
use super::network::{CHAIN_HEADER, EXPECT_HEADER, INCARNATION_HEADER};
use super::peers::Peers;
use super::{NodeId, Raft};
use crate::codec;
use crate::ledger::Hash32;
use crate::limits::MAX_SNAPSHOT_BYTES;
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
    /// The snapshot being received and how many bytes of it arrived: see
    /// [`SnapshotChunks`].
    receiving: std::sync::Mutex<SnapshotChunks>,
}

/// Where the next chunk of a snapshot may go. openraft writes a chunk at
/// whatever offset it names, seeking past the end if told to, and a write
/// that fails stops the node; so a chunk is taken only at or before the
/// end of what arrived of its snapshot, and within [`MAX_SNAPSHOT_BYTES`].
#[derive(Debug, Default)]
pub struct SnapshotChunks {
    id: String,
    received: u64,
}

impl SnapshotChunks {
    /// Admits a chunk of `len` bytes at `offset` of snapshot `id`, or says why not.
    pub fn admit(&mut self, id: &str, offset: u64, len: usize) -> Result<(), String> {
        let end = offset
            .checked_add(len as u64)
            .filter(|end| *end <= MAX_SNAPSHOT_BYTES)
            .ok_or_else(|| {
                format!("snapshot chunk at {offset} (+{len} bytes) passes the limit of {MAX_SNAPSHOT_BYTES} bytes")
            })?;
        if offset == 0 {
            // A new stream, or the current one sent again from the start.
            *self = SnapshotChunks {
                id: id.to_string(),
                received: end,
            };
            return Ok(());
        }
        if id != self.id {
            // openraft refuses it itself (it expects offset 0) and writes nothing.
            return Ok(());
        }
        if offset > self.received {
            return Err(format!(
                "snapshot chunk at {offset} leaves a hole: {} bytes of snapshot {id} arrived",
                self.received
            ));
        }
        self.received = self.received.max(end);
        Ok(())
    }
}

impl RaftRpc {
    pub fn new(
        raft: Raft,
        chain_id: Hash32,
        faults: Arc<Faults>,
        peers: Arc<Peers>,
        lost_state: tokio::sync::mpsc::Sender<String>,
    ) -> RaftRpc {
        RaftRpc {
            raft,
            chain_id: chain_id.to_hex(),
            faults,
            peers,
            lost_state,
            receiving: std::sync::Mutex::new(SnapshotChunks::default()),
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
        self.receiving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&rpc.meta.snapshot_id, rpc.offset, rpc.data.len())
            .map_err(|reason| {
                tracing::warn!("refused a snapshot chunk: {reason}");
                Status::invalid_argument(reason)
            })?;
        self.reply(self.raft.install_snapshot(rpc).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_chunks_come_in_order_within_the_limit() {
        let mut c = SnapshotChunks::default();
        assert!(c.admit("s1", 0, 100).is_ok());
        assert!(c.admit("s1", 100, 100).is_ok());
        // A chunk sent again after a lost answer overwrites, it does not grow the file.
        assert!(c.admit("s1", 100, 100).is_ok());
        let hole = c.admit("s1", 1 << 39, 10).unwrap_err();
        assert!(hole.contains("leaves a hole: 200 bytes"), "{hole}");
        assert!(c.admit("s1", u64::MAX - 5, 10).unwrap_err().contains("limit"));
        assert!(c.admit("s1", 0, 0).is_ok());
        assert!(c.admit("s2", 0, 10).is_ok(), "a new snapshot starts over");
        assert!(c.admit("s2", 200, 10).is_err());
    }
}
