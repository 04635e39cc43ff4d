//! A node's background tasks: the peers' genesis check, the background
//! chain check, the gRPC health report, the cluster watch (membership and
//! identities of departed peers) and the JSON views written twice a second.

use super::NodeError;
use crate::config::NodeConfig;
use crate::ledger::Hash32;
use crate::proto::bank::StatusRequest;
use crate::raft::peers::Peers;
use crate::raft::{NodeId, Raft};
use crate::storage::views::{self, BALANCES_FILE, RAFT_STATE_FILE};
use crate::storage::{Ledger, LedgerError, LogStore, NodePaths};
use openraft::ServerState;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Starts every background task of node `config.id`; a task that finds
/// the node must stop sends its reason on `fatal`.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_all(
    config: &NodeConfig,
    chain_id: Hash32,
    raft: &Raft,
    ledger: &Arc<Ledger>,
    log_store: &LogStore,
    peers: &Arc<Peers>,
    paths: &NodePaths,
    fatal_tx: mpsc::Sender<NodeError>,
) {
    let id = config.id;
    let mut to_check: Vec<(String, String)> = config
        .peers
        .iter()
        .filter(|(p, _)| **p != id)
        .map(|(p, a)| (format!("node {p}"), a.clone()))
        .collect();
    if let Some(join) = &config.join {
        to_check.push((format!("the member at {join}"), join.clone()));
    }
    tokio::spawn(check_peer_genesis(
        to_check,
        config.join.is_some(),
        chain_id.to_hex(),
        fatal_tx.clone(),
    ));
    if config.verify_blocks != 0 && config.background_verify {
        tokio::spawn(verify_in_background(id, Arc::clone(ledger), fatal_tx));
    }
    tokio::spawn(watch_cluster(raft.clone(), Arc::clone(peers)));
    tokio::spawn(write_state_views(
        raft.clone(),
        Arc::clone(ledger),
        log_store.clone(),
        paths.clone(),
    ));
}

/// Asks each peer which chain it runs, until every peer has answered once.
/// This node stops if it is the odd one out: when joining, if the member it
/// joins through runs another chain; otherwise if more peers run another
/// chain than run this node's (itself included). A single impostor among
/// the peers is logged, and refused by the transport, but stops no one.
pub(super) async fn check_peer_genesis(
    mut pending: Vec<(String, String)>,
    joining: bool,
    ours: String,
    fatal: mpsc::Sender<NodeError>,
) {
    let mut same = 1usize; // this node
    let mut other: Vec<NodeError> = Vec::new();
    // Bounded: a peer that never comes up is Raft's business, not ours.
    for _ in 0..600 {
        let mut still = Vec::new();
        for (peer, addr) in pending {
            let answer = async {
                let mut c = crate::client::connect(&addr).ok()?;
                c.status(StatusRequest {})
                    .await
                    .ok()
                    .map(|r| r.into_inner().genesis_hash)
            };
            match tokio::time::timeout(Duration::from_secs(1), answer).await {
                Ok(Some(theirs)) if theirs != ours => {
                    let err = NodeError::PeerGenesisMismatch {
                        peer,
                        addr,
                        theirs,
                        ours: ours.clone(),
                    };
                    tracing::error!("{err}");
                    other.push(err);
                }
                Ok(Some(_)) => same += 1,
                _ => still.push((peer, addr)),
            }
        }
        if (joining && !other.is_empty()) || other.len() > same {
            if let Some(err) = other.pop() {
                let _ = fatal.send(err).await;
            }
            return;
        }
        if still.is_empty() {
            return;
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Logs elections and membership changes as events a person can follow,
/// and forgets the identity of peers that left (so their ids may be reused).
/// The rest of the start-time check: the whole chain (links, merkle roots,
/// proof of work, signatures, every outcome re-executed, balances), checked
/// while the node serves, since its cost grows with history. Damage stops
/// the node with the height, as at start.
pub(super) async fn verify_in_background(id: NodeId, ledger: Arc<Ledger>, fatal: mpsc::Sender<NodeError>) {
    // A snapshot install (a node catching up) makes a pass inconclusive:
    // start again on the installed ledger, a few times at most.
    for _ in 0..3 {
        let l = Arc::clone(&ledger);
        // Behind the blocks clients wait for: on a loaded cluster, a check
        // at normal priority on every restarted node took most of the CPU
        // for as long as it ran (a minute per million transfers).
        match crate::storage::state_machine::in_background("chain-verify", move || l.verify()).await {
            Ok(Ok(report)) => {
                tracing::info!(
                    "node {id}: whole chain verified in the background: {}",
                    report.describe()
                );
                return;
            }
            Ok(Err(e @ LedgerError::Corruption { .. })) => {
                tracing::error!("node {id}: background verification found damage: {e}");
                let _ = fatal.send(NodeError::Ledger(e)).await;
                return;
            }
            Ok(Err(LedgerError::VerifyInterrupted)) => {
                tracing::info!("node {id}: background verification overlapped a snapshot install; starting again");
            }
            Ok(Err(e)) => {
                tracing::warn!("node {id}: background verification did not finish: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("node {id}: background verification failed: {e}");
                return;
            }
        }
    }
    tracing::warn!(
        "node {id}: background verification gave up: three passes overlapped snapshot installs; run `bank-client verify` to check the chain"
    );
}

/// Keeps the gRPC health service in step with whether a leader is known.
///
/// Both watchers here read `server_metrics`, which changes only with the
/// role, vote, leader or membership: the full `metrics` channel is sent to
/// on every report of the Raft core, several times per entry, and woke
/// each of them (and cloned the whole metrics) every time.
pub(super) async fn report_health(raft: Raft, mut health: tonic_health::server::HealthReporter) {
    let mut metrics = raft.server_metrics();
    let mut last = None;
    loop {
        let serving = metrics.borrow_and_update().current_leader.is_some();
        if last != Some(serving) {
            let status = if serving {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            health.set_service_status("bank.v1.Bank", status).await;
            last = Some(serving);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

pub(super) async fn watch_cluster(raft: Raft, peers: Arc<Peers>) {
    let mut metrics = raft.server_metrics();
    let mut last = (ServerState::Learner, None, 0);
    let mut last_members: Option<(Vec<NodeId>, Vec<NodeId>)> = None;
    loop {
        let m = metrics.borrow_and_update().clone();
        let term = m.vote.leader_id().get_term();
        let now = (m.state, m.current_leader, term);
        if now != last {
            match (m.state, m.current_leader) {
                (ServerState::Leader, _) => tracing::info!("became leader term={term}"),
                (ServerState::Candidate, _) => tracing::info!("started election term={term}"),
                (_, Some(l)) => tracing::info!("following leader={l} term={term}"),
                (_, None) => tracing::info!("no leader term={term}"),
            }
            last = now;
        }
        let membership = m.membership_config.membership();
        let members = (
            membership.voter_ids().collect::<Vec<_>>(),
            membership.learner_ids().collect::<Vec<_>>(),
        );
        if last_members.as_ref() != Some(&members) && !members.0.is_empty() {
            tracing::info!("membership: voters={:?} learners={:?}", members.0, members.1);
            for peer in peers.remembered() {
                if membership.get_node(&peer).is_none() {
                    peers.forget(peer);
                }
            }
            if last_members.is_some() && membership.get_node(&m.id).is_none() {
                tracing::warn!("this node was removed from the cluster; it can be stopped");
            }
            last_members = Some(members);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps `raft_state.json` and `balances.json` current, at most twice a
/// second: each write is O(accounts), so it is decoupled from block rate.
pub(super) async fn write_state_views(raft: Raft, ledger: Arc<Ledger>, log_store: LogStore, paths: NodePaths) {
    let mut last_raft = serde_json::Value::Null;
    let mut last_height = None;
    let mut next_balances = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let m = raft.metrics().borrow().clone();
        if m.state == ServerState::Shutdown {
            return;
        }
        ledger.flush_block_log();
        let (height, tip) = ledger.tip();
        let membership = m.membership_config.membership();
        let nodes: BTreeMap<String, String> = membership
            .nodes()
            .map(|(id, n)| (id.to_string(), n.addr.clone()))
            .collect();
        let state = json!({
            "id": m.id,
            "role": format!("{:?}", m.state).to_lowercase(),
            "term": m.current_term,
            "vote": { "term": m.vote.leader_id().term, "node_id": m.vote.leader_id().voted_for(), "committed": m.vote.is_committed() },
            "leader_id": m.current_leader,
            "last_log_index": m.last_log_index,
            "committed_index": log_store.committed_index(),
            "last_applied_index": m.last_applied.map(|l| l.index),
            "snapshot_index": m.snapshot.map(|l| l.index),
            "membership": {
                "voters": membership.voter_ids().collect::<Vec<_>>(),
                "learners": membership.learner_ids().collect::<Vec<_>>(),
                "nodes": nodes,
            },
            "height": height,
            "tip_hash": tip.to_hex(),
        });
        if state != last_raft {
            if let Err(e) = views::write_json_atomic(&paths.states, RAFT_STATE_FILE, &state) {
                tracing::warn!("cannot write {RAFT_STATE_FILE}: {e}");
            }
            last_raft = state;
        }
        if last_height != Some(height) && Instant::now() >= next_balances {
            // One short read lock: balances and the height they belong to
            // agree. Serializing happens outside it, off the async workers.
            let view = ledger.with_state(|s| views::BalancesView {
                height: s.tip_height,
                tip: s.tip_hash,
                balances: s.balances.iter().map(|(a, v)| (*a, *v)).collect(),
                supply: s.registry.supply,
                accounts: s.registry.accounts.iter().map(|(a, i)| (*a, *i)).collect(),
                held: s.registry.holds.held_out().collect(),
                pending_holds: s.registry.holds.len(),
            });
            let height = view.height;
            let started = Instant::now();
            let dir = paths.states.clone();
            let written = tokio::task::spawn_blocking(move || views::write_balances(&dir, &view)).await;
            if let Ok(Err(e)) = written {
                tracing::warn!("cannot write {BALANCES_FILE}: {e}");
            }
            // The file costs O(accounts): with many accounts, write it less
            // often, so it never takes more than a tenth of the time.
            next_balances = Instant::now() + (started.elapsed() * 10).max(Duration::from_millis(500));
            last_height = Some(height);
        }
    }
}
