//! The server side of node-to-node Raft traffic: decodes openraft requests,
//! hands them to the local Raft, encodes the answer.

use super::network::{CHAIN_HEADER, FROM_HEADER};
use super::{NodeId, Raft};
use crate::codec;
use crate::ledger::Hash32;
use crate::proto::raft::{raft_service_server::RaftService, RaftPayload, RaftReply};
use openraft::error::RaftError;
use serde::{de::DeserializeOwned, Serialize};
use tonic::{Request, Response, Status};

/// Serves `RaftService` for one node.
pub struct RaftRpc {
    raft: Raft,
    chain_id: String,
}

impl RaftRpc {
    pub fn new(raft: Raft, chain_id: Hash32) -> RaftRpc {
        RaftRpc {
            raft,
            chain_id: chain_id.to_hex(),
        }
    }

    /// Refuses traffic from a node of another chain, with a clear reason.
    fn admit<T: DeserializeOwned>(&self, req: Request<RaftPayload>) -> Result<T, Status> {
        let md = req.metadata();
        let from = md
            .get(FROM_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        let theirs = md
            .get(CHAIN_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if theirs != self.chain_id {
            tracing::error!(from = %from, "refused Raft traffic from another chain: theirs={theirs:?} ours={}", self.chain_id);
            return Err(Status::failed_precondition(format!(
                "genesis mismatch: node {from} is on chain {theirs:?}, this node is on chain {}",
                self.chain_id
            )));
        }
        codec::decode(&req.into_inner().data).map_err(|e| {
            Status::invalid_argument(format!("malformed Raft message from node {from}: {e}"))
        })
    }
}

fn reply<T: Serialize, E: Serialize>(
    result: Result<T, RaftError<NodeId, E>>,
) -> Result<Response<RaftReply>, Status> {
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
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.admit(req)?;
        reply(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.admit(req)?;
        reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.admit(req)?;
        reply(self.raft.install_snapshot(rpc).await)
    }
}
