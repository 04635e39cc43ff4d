//! A node's own view for `bank-client status` and the dashboard: role,
//! term, tip, log indexes, members and how far each lags, faults, and the
//! time spent in each stage.

use super::faults::faults_msg;
use super::BankApi;
use crate::proto::bank::{PeerState, StageStat, StatusReply, StatusRequest};
use openraft::ServerState;
use tonic::{Request, Response, Status};

pub(super) async fn status(api: &BankApi, _req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
    let m = api.parts.raft.metrics().borrow().clone();
    let (height, tip_hash) = api.parts.ledger.tip();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    Ok(Response::new(StatusReply {
        id: api.parts.id,
        addr: api.parts.addr.clone(),
        role: role_name(m.state).to_string(),
        term: m.current_term,
        leader_id: m.current_leader,
        height,
        tip_hash: tip_hash.to_hex(),
        last_log_index: m.last_log_index,
        last_applied_index: m.last_applied.map(|l| l.index),
        committed_index: api.parts.log_store.committed_index(),
        voters,
        learners,
        genesis_hash: api.parts.ledger.chain_id().to_hex(),
        faults: Some(faults_msg(&api.parts.faults.get())),
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
                    last_heard_ms: if *id == api.parts.id {
                        Some(0)
                    } else {
                        api.parts.peers_seen.last_heard(*id).map(|d| d.as_millis() as u64)
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

pub(crate) fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}
