//! A cluster of real `bank-server` processes on loopback, for the chaos tool:
//! free ports, one data dir, SIGKILL and restart on command.

use crate::client::{connect, request, Server};
use crate::launcher::{peers_arg, NodeLaunch, NodeProcess};
use crate::proto::bank::{StatusReply, StatusRequest};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One node process.
struct Proc {
    id: u64,
    addr: String,
    process: NodeProcess,
}

/// Node processes sharing a data dir and genesis file.
pub struct ProcessCluster {
    server_bin: PathBuf,
    /// Extra flags for every node.
    server_args: Vec<String>,
    dir: PathBuf,
    genesis: PathBuf,
    peers: String,
    procs: Vec<Proc>,
}

pub use crate::launcher::free_port;

impl ProcessCluster {
    /// Starts `n` nodes.
    pub fn start(
        n: u64,
        server_bin: &Path,
        server_args: &[String],
        dir: &Path,
        genesis: &Path,
    ) -> std::io::Result<ProcessCluster> {
        let mut procs = Vec::new();
        let mut ports = std::collections::BTreeSet::new();
        for id in 0..n {
            let mut port = free_port()?;
            while !ports.insert(port) {
                port = free_port()?;
            }
            procs.push(Proc {
                id,
                addr: format!("127.0.0.1:{port}"),
                process: NodeProcess::default(),
            });
        }
        let peers = peers_arg(procs.iter().map(|p| (p.id, p.addr.as_str())));
        let mut c = ProcessCluster {
            server_bin: server_bin.to_path_buf(),
            server_args: server_args.to_vec(),
            dir: dir.to_path_buf(),
            genesis: genesis.to_path_buf(),
            peers,
            procs,
        };
        for id in 0..n {
            c.spawn(id)?;
        }
        Ok(c)
    }

    pub fn len(&self) -> u64 {
        self.procs.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Starts node `id` (again) on its data dir; its output is appended to `node<id>.stderr`.
    pub fn spawn(&mut self, id: u64) -> std::io::Result<()> {
        let mut launch = NodeLaunch::new(&self.server_bin, id, &self.peers, &self.dir, &self.genesis);
        launch.http_listen = Some("off".into());
        launch.extra_args = self.server_args.clone();
        let stderr = self.dir.join(format!("node{id}.stderr"));
        self.procs[id as usize].process.start(&launch, &stderr, true)
    }

    /// SIGKILL: the node gets no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) -> std::io::Result<()> {
        self.procs[id as usize].process.kill()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.procs[id as usize].process.is_running()
    }

    /// Every node as a client sees it.
    pub fn servers(&self) -> Vec<Server> {
        self.procs
            .iter()
            .map(|p| Server {
                id: Some(p.id),
                addr: p.addr.clone(),
            })
            .collect()
    }

    /// Every running node and its process id.
    pub fn pids(&self) -> Vec<(Server, u32)> {
        self.procs
            .iter()
            .filter_map(|p| {
                let pid = p.process.pid()?;
                Some((
                    Server {
                        id: Some(p.id),
                        addr: p.addr.clone(),
                    },
                    pid,
                ))
            })
            .collect()
    }

    /// Each node's status, `None` where it does not answer.
    pub async fn statuses(&self) -> Vec<Option<StatusReply>> {
        let calls = self.procs.iter().map(|p| async move {
            let mut c = connect(&p.addr).ok()?;
            c.status(request(StatusRequest {}, Duration::from_secs(1)))
                .await
                .ok()
                .map(|r| r.into_inner())
        });
        futures::future::join_all(calls).await
    }

    /// Waits until node `id` answers a status call (it serves again);
    /// false if it did not within `timeout`.
    pub async fn wait_answers(&self, id: u64, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        let addr = &self.procs[id as usize].addr;
        while tokio::time::Instant::now() < until {
            if let Ok(mut c) = connect(addr) {
                if c.status(request(StatusRequest {}, Duration::from_millis(200)))
                    .await
                    .is_ok()
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The node most nodes currently name as leader.
    pub async fn leader(&self) -> Option<u64> {
        let mut votes = std::collections::BTreeMap::new();
        for s in self.statuses().await.into_iter().flatten() {
            if let Some(l) = s.leader_id {
                *votes.entry(l).or_insert(0) += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, n)| *n).map(|(l, _)| l)
    }

    /// Waits until the nodes agree on a leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<u64> {
        let until = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < until {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Kills every node.
    pub fn stop_all(&mut self) -> std::io::Result<()> {
        for id in 0..self.len() {
            self.kill(id)?;
        }
        Ok(())
    }
}
