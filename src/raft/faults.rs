//! Network faults on command: partitions, delays and message loss applied by
//! every node's own transport to server-to-server traffic (Raft messages and
//! request forwarding). Client-to-server traffic is never cut, so a person can
//! still ask a cut-off node what it thinks.
//!
//! Settings live in memory only: a restarted node starts with none. Because
//! both ends check a partition (the sender before sending, the receiver on
//! arrival), a node that restarts inside a partition stays cut off as long as
//! its peers keep theirs.

use super::NodeId;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::Duration;

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

/// One node's live fault settings, shared by its transport and services.
pub struct Faults {
    self_id: NodeId,
    settings: RwLock<FaultSettings>,
}

impl Faults {
    pub fn new(self_id: NodeId) -> Faults {
        Faults {
            self_id,
            settings: RwLock::new(FaultSettings::default()),
        }
    }

    pub fn get(&self) -> FaultSettings {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, s: FaultSettings) -> Result<(), FaultError> {
        s.validate()?;
        let text = s.describe();
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = s;
        tracing::info!("network faults now: {text}");
        Ok(())
    }

    /// Whether this node may exchange messages with `peer`.
    pub fn can_reach(&self, peer: NodeId) -> bool {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .connected(self.self_id, peer)
    }

    /// The delay to inject before one message, if any.
    pub fn delay(&self) -> Option<Duration> {
        let s = self.settings.read().unwrap_or_else(|p| p.into_inner());
        if s.delay_max_ms == 0 {
            return None;
        }
        let ms = rand::thread_rng().gen_range(s.delay_min_ms..=s.delay_max_ms);
        Some(Duration::from_millis(ms))
    }

    /// Whether to drop one message.
    pub fn drop_message(&self) -> bool {
        let loss = self.settings.read().unwrap_or_else(|p| p.into_inner()).loss;
        loss > 0.0 && rand::thread_rng().gen_bool(loss.min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_nodes_stand_alone() {
        let s = FaultSettings {
            partition: vec![vec![0, 1]],
            ..Default::default()
        };
        assert!(s.connected(0, 1));
        assert!(!s.connected(0, 2));
        assert!(!s.connected(2, 3));
        assert!(s.connected(2, 2));
        assert!(FaultSettings::default().connected(0, 2));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = |s: FaultSettings| s.validate().unwrap_err().to_string();
        assert!(bad(FaultSettings {
            partition: vec![vec![0, 1], vec![1]],
            ..Default::default()
        })
        .contains("two"));
        assert!(bad(FaultSettings {
            delay_min_ms: 5,
            delay_max_ms: 1,
            ..Default::default()
        })
        .contains("exceeds"));
        assert!(bad(FaultSettings {
            loss: 1.5,
            ..Default::default()
        })
        .contains("loss"));
        assert!(bad(FaultSettings {
            loss: f64::NAN,
            ..Default::default()
        })
        .contains("loss"));
    }
}
