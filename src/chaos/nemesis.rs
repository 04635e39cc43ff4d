//! The nemesis: kills, restarts, partitions and delays, on a schedule drawn
//! from a seed so a failing run can be replayed. Into every fault window
//! it mixes reads of its own: as the fault begins, while it holds, and as
//! it ends (for a kill: the moment the node is back).

use super::cluster::ProcessCluster;
use super::reads::Reader;
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
    /// SIGKILL a node (the leader half the time), restart it after the
    /// hold, long enough for the others to elect a new leader.
    Kill,
    /// SIGKILL the leader and restart it at once: it comes back before any
    /// follower's election timeout, still the leader of its term.
    KillRestart,
    /// Cut the leader off from everyone else, heal after the hold (long
    /// enough for the rest to elect a new leader).
    IsolateLeader,
    /// Split the cluster in two random halves, heal after the hold (long
    /// enough for a majority half to elect a leader of its own).
    SplitHalves,
    /// Delay server-to-server messages 10-200 ms and drop 2%, then stop.
    Delay,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::KillRestart,
        FaultKind::IsolateLeader,
        FaultKind::SplitHalves,
        FaultKind::Delay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::KillRestart => "kill-restart",
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
    /// Reads into fault windows.
    probe: Probe,
    /// Probe reads under way; each ends within the reader's timeout.
    probes: Vec<tokio::task::JoinHandle<()>>,
}

/// The nemesis's own reads: all balances and one account's.
pub struct Probe {
    pub reader: Reader,
    pub accounts: u64,
}

const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long followers go without a leader before one stands for election,
/// at the servers' default timings: openraft waits out the leader's lease
/// (the election timeout's maximum, 1 s) plus an election timeout (0.5-1
/// s). A kill or cut held shorter sees the same leader come back in the
/// same term; those that must move leadership are held at least this long.
const ELECTION_AFTER: Duration = Duration::from_millis(2500);

impl Nemesis {
    pub fn new(rng: StdRng, hold: Duration, probe: Probe) -> Nemesis {
        Nemesis {
            rng,
            hold,
            injected: BTreeMap::new(),
            probe,
            probes: Vec::new(),
        }
    }

    /// Sends an atomic read and a one-account read, without waiting for them.
    fn probe(&mut self) {
        let p = &self.probe;
        self.probes.retain(|t| !t.is_finished());
        let account = self.rng.gen_range(0..p.accounts.max(1));
        let first = self.rng.gen_range(0..usize::MAX);
        let all = p.reader.starting_at(first);
        let one = p.reader.starting_at(first.wrapping_add(1));
        self.probes.push(tokio::spawn(async move { all.all().await }));
        self.probes.push(tokio::spawn(async move { one.one(account).await }));
    }

    /// Waits for the probe reads still under way.
    pub async fn finish(&mut self) {
        for t in self.probes.drain(..) {
            let _ = t.await;
        }
    }

    /// Holds a fault for `hold`, probing once in the middle of it.
    async fn hold_with_probe(&mut self, hold: Duration) {
        tokio::time::sleep(hold / 2).await;
        self.probe();
        tokio::time::sleep(hold - hold / 2).await;
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
            let mut hold = Duration::from_millis(self.rng.gen_range(hold_ms / 2..=hold_ms * 3 / 2));
            if matches!(
                kind,
                FaultKind::Kill | FaultKind::IsolateLeader | FaultKind::SplitHalves
            ) {
                hold = hold.max(ELECTION_AFTER);
            }
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
                cluster.kill(victim)?;
                self.probe();
                self.hold_with_probe(hold).await;
                tracing::info!("nemesis: restart node {victim}");
                cluster.spawn(victim)?;
                self.probe();
            }
            FaultKind::KillRestart => {
                let victim = leader.unwrap_or(pick);
                tracing::info!("nemesis: kill -9 node {victim} and restart it at once");
                cluster.kill(victim)?;
                cluster.spawn(victim)?;
                self.probe();
                // Reads in the first moments after the start, while the
                // node leads its term again from what it had on disk.
                cluster.wait_answers(victim, Duration::from_secs(5)).await;
                self.probe();
                tokio::time::sleep(hold / 4).await;
                self.probe();
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
                self.probe();
                self.hold_with_probe(hold).await;
                tracing::info!("nemesis: heal");
                heal(cluster).await;
                self.probe();
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
                self.probe();
                self.hold_with_probe(hold).await;
                tracing::info!("nemesis: delay off");
                heal(cluster).await;
                self.probe();
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
