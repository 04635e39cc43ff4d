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
use std::sync::RwLock;
use std::time::Duration;

pub use crate::fault_settings::{FaultError, FaultSettings, MAX_DELAY_MS};

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
