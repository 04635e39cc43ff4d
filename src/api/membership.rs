//! Membership changes, kept apart from the data plane: add a node (as a
//! learner, promoted to voter once it has caught up) and remove one. Both
//! are control-plane calls (admin token) and run on the leader.

use super::forward::Attempt;
use super::BankApi;
use crate::auth::authorize_control;
use crate::proto::bank::{AddNodeRequest, Membership as MembershipMsg, RemoveNodeRequest};
use crate::raft::{BasicNode, NodeId};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

pub(super) async fn add_node(api: &BankApi, req: Request<AddNodeRequest>) -> Result<Response<MembershipMsg>, Status> {
    authorize_control(api.parts.admin_token.as_ref(), &req)?;
    let (msg, via) = api.received_control(req)?;
    crate::config::parse_peers(&format!("{}={}", msg.id, msg.addr))
        .map_err(|_| Status::invalid_argument(format!("bad node address {:?}: expected HOST:PORT", msg.addr)))?;
    let reply = api
        .on_leader(via, &msg, || api.add_node_here(msg.id, &msg.addr, via.deadline))
        .await?;
    Ok(Response::new(reply))
}

pub(super) async fn remove_node(
    api: &BankApi,
    req: Request<RemoveNodeRequest>,
) -> Result<Response<MembershipMsg>, Status> {
    authorize_control(api.parts.admin_token.as_ref(), &req)?;
    let (msg, via) = api.received_control(req)?;
    let reply = api.on_leader(via, &msg, || api.remove_node_here(msg.id)).await?;
    Ok(Response::new(reply))
}

impl BankApi {
    fn membership_msg(&self) -> MembershipMsg {
        let m = self.parts.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        MembershipMsg {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// Adds `id` as a learner, waits until it has caught up, then makes it a voter.
    async fn add_node_here(&self, id: NodeId, addr: &str, deadline: Instant) -> Result<MembershipMsg, Attempt> {
        let m = self.parts.raft.metrics().borrow().clone();
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
        self.parts
            .raft
            .add_learner(id, node, false)
            .await
            .map_err(membership_attempt)?;
        // openraft's own wait counts a learner within `replication_lag_threshold`
        // (5000 entries) as caught up, even one that never answered: wait here
        // until it holds everything the leader had when it was added.
        let target = self.parts.raft.metrics().borrow().last_log_index.unwrap_or(0);
        let mut metrics = self.parts.raft.metrics();
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
        self.parts
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_attempt)?;
        Ok(self.membership_msg())
    }

    async fn remove_node_here(&self, id: NodeId) -> Result<MembershipMsg, Attempt> {
        let m = self.parts.raft.metrics().borrow().clone();
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
        self.parts
            .raft
            .change_membership(change, false)
            .await
            .map_err(membership_attempt)?;
        Ok(self.membership_msg())
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
