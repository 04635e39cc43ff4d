//! The nemesis: kills, restarts, partitions and delays, on a schedule drawn
//! from a seed so a failing run can be replayed.

use super::cluster::ProcessCluster;
use crate::client::set_faults_everywhere;
use crate::proto::bank::{PartitionGroup, SetFaultsRequest};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The faults the nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL a node (the leader half the time), restart it after the hold.
    Kill,
    /// Cut the leader off from everyone else, heal after the hold.
    IsolateLeader,
    /// Split the cluster in two random halves, heal after the hold.
    SplitHalves,
    /// Delay server-to-server messages 10-200 ms and drop 2%, then stop.
    Delay,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Kill,
        FaultKind::IsolateLeader,
        FaultKind::SplitHalves,
        FaultKind::Delay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::SplitHalves => "split-halves",
            FaultKind::Delay => "delay",
        }
    }
}

/// Runs fault cycles: apply one fault, hold it, revert it, pause.
pub struct Nemesis {
    rng: StdRng,
    /// How long a fault is held, on average.
    hold: Duration,
    pub injected: BTreeMap<FaultKind, u64>,
}

const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

impl Nemesis {
    pub fn new(rng: StdRng, hold: Duration) -> Nemesis {
        Nemesis {
            rng,
            hold,
            injected: BTreeMap::new(),
        }
    }

    /// Injects faults until `until`. Every kind comes once per round, in a
    /// seeded order, so each is exercised equally often.
    pub async fn run(&mut self, cluster: &mut ProcessCluster, until: Instant) -> std::io::Result<()> {
        let mut round: Vec<FaultKind> = Vec::new();
        while Instant::now() < until {
            if round.is_empty() {
                round = FaultKind::ALL.to_vec();
                round.shuffle(&mut self.rng);
            }
            let kind = round.remove(0);
            let hold_ms = self.hold.as_millis() as u64;
            let hold = Duration::from_millis(self.rng.gen_range(hold_ms / 2..=hold_ms * 3 / 2));
            let pick_leader = self.rng.gen_bool(0.5);
            let pick: u64 = self.rng.gen_range(0..cluster.len());
            let mut order: Vec<u64> = (0..cluster.len()).collect();
            order.shuffle(&mut self.rng);
            let pause = Duration::from_millis(self.rng.gen_range(100..=300));

            self.inject(cluster, kind, hold, pick_leader, pick, &order).await?;
            *self.injected.entry(kind).or_insert(0) += 1;
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    async fn inject(
        &mut self,
        cluster: &mut ProcessCluster,
        kind: FaultKind,
        hold: Duration,
        pick_leader: bool,
        pick: u64,
        order: &[u64],
    ) -> std::io::Result<()> {
        let servers = cluster.servers();
        let leader = cluster.leader().await;
        match kind {
            FaultKind::Kill => {
                let victim = if pick_leader { leader.unwrap_or(pick) } else { pick };
                tracing::info!("nemesis: kill -9 node {victim}");
                cluster.kill(victim);
                tokio::time::sleep(hold).await;
                tracing::info!("nemesis: restart node {victim}");
                cluster.spawn(victim)?;
            }
            FaultKind::IsolateLeader | FaultKind::SplitHalves => {
                let groups: Vec<Vec<u64>> = if kind == FaultKind::IsolateLeader {
                    let l = leader.unwrap_or(pick);
                    vec![order.iter().copied().filter(|n| *n != l).collect(), vec![l]]
                } else {
                    let (a, b) = order.split_at(order.len() / 2);
                    vec![a.to_vec(), b.to_vec()]
                };
                tracing::info!("nemesis: partition {groups:?}");
                let req = SetFaultsRequest {
                    set_partition: true,
                    partition: groups.into_iter().map(|members| PartitionGroup { members }).collect(),
                    ..Default::default()
                };
                set_faults_everywhere(&servers, req, CONTROL_TIMEOUT, None).await;
                tokio::time::sleep(hold).await;
                tracing::info!("nemesis: heal");
                heal(cluster).await;
            }
            FaultKind::Delay => {
                tracing::info!("nemesis: delay 10-200 ms, loss 0.02");
                let req = SetFaultsRequest {
                    set_delay: true,
                    delay_min_ms: 10,
                    delay_max_ms: 200,
                    loss: 0.02,
                    ..Default::default()
                };
                set_faults_everywhere(&servers, req, CONTROL_TIMEOUT, None).await;
                tokio::time::sleep(hold).await;
                tracing::info!("nemesis: delay off");
                heal(cluster).await;
            }
        }
        Ok(())
    }
}

/// Removes every partition, delay and loss on every node.
pub async fn heal(cluster: &ProcessCluster) {
    let req = SetFaultsRequest {
        set_partition: true,
        set_delay: true,
        ..Default::default()
    };
    set_faults_everywhere(&cluster.servers(), req, CONTROL_TIMEOUT, None).await;
}
