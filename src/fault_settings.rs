//! The faults a node applies to its server-to-server traffic (partition
//! groups, delays, loss), as plain values: what a client asks for and a
//! node reports. The runtime that applies them is [`crate::raft::faults`].

use crate::raft::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Longest delay that may be injected per message.
pub const MAX_DELAY_MS: u64 = 10_000;

/// What a node applies to its server-to-server traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Groups of nodes that can talk to each other; empty means no partition.
    /// When set, a node not listed stands alone.
    pub partition: Vec<Vec<NodeId>>,
    /// Random delay per message, uniformly in `[delay_min_ms, delay_max_ms]`.
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Fraction of messages dropped, in `[0, 1]`.
    pub loss: f64,
}

/// A fault setting that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    #[error("node {0} is listed in two partition groups")]
    NodeInTwoGroups(NodeId),
    #[error("delay --min-ms {min} exceeds --max-ms {max}")]
    DelayOrder { min: u64, max: u64 },
    #[error("delay of {0} ms exceeds the maximum of {MAX_DELAY_MS} ms")]
    DelayTooLong(u64),
    #[error("loss must be between 0 and 1, got {0}")]
    Loss(f64),
}

impl FaultSettings {
    pub fn validate(&self) -> Result<(), FaultError> {
        let mut seen = BTreeSet::new();
        for n in self.partition.iter().flatten() {
            if !seen.insert(*n) {
                return Err(FaultError::NodeInTwoGroups(*n));
            }
        }
        if self.delay_min_ms > self.delay_max_ms {
            return Err(FaultError::DelayOrder {
                min: self.delay_min_ms,
                max: self.delay_max_ms,
            });
        }
        if self.delay_max_ms > MAX_DELAY_MS {
            return Err(FaultError::DelayTooLong(self.delay_max_ms));
        }
        if !(0.0..=1.0).contains(&self.loss) || self.loss.is_nan() {
            return Err(FaultError::Loss(self.loss));
        }
        Ok(())
    }

    /// Whether `a` and `b` may exchange messages under the partition.
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        if self.partition.is_empty() || a == b {
            return true;
        }
        self.partition.iter().any(|g| g.contains(&a) && g.contains(&b))
    }

    /// One line for people: `partition [0,1] [2]; delay 10-200 ms; loss 0.1`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.partition.is_empty() {
            let groups: Vec<String> = self
                .partition
                .iter()
                .map(|g| format!("[{}]", g.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")))
                .collect();
            parts.push(format!("partition {}", groups.join(" ")));
        }
        if self.delay_max_ms > 0 {
            parts.push(format!("delay {}-{} ms", self.delay_min_ms, self.delay_max_ms));
        }
        if self.loss > 0.0 {
            parts.push(format!("loss {}", self.loss));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }
}
