//! What a node knows about its peers: when it last heard from each (for
//! `status`), and each peer's incarnation.
//!
//! An incarnation is a random id a node draws the first time it starts on an
//! empty data dir. Every Raft message carries it, and every receiver
//! remembers the first one it sees per peer. A node that lost its disk and
//! comes back under its old id has a new incarnation and is refused: its
//! empty log would otherwise contradict what it acknowledged before, which
//! can lose committed entries. It must rejoin as a new member.

use super::NodeId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KEY_INCARNATION: &[u8] = b"incarnation";
const IDENTITY_TREE: &str = "node_identity";

/// Refusal reasons start with this, so the refused node can recognise them.
pub const LOST_STATE: &str = "lost its state";

/// Why a peer's message (or this node) is refused for its incarnation.
#[derive(Debug, thiserror::Error)]
pub enum IncarnationError {
    #[error(
        "node {peer} {LOST_STATE}: its data dir is not the one it ran with before. \
         A node that lost its disk must rejoin as a new member: \
         `bank-client cluster remove {peer}`, then start it with a new --id and --join, \
         then `bank-client cluster add`"
    )]
    PeerLostState { peer: NodeId },
    #[error(
        "this node {LOST_STATE}: node {peer} knew it under another data dir (incarnation {expected}, \
         now {mine}). A node that lost its disk must rejoin as a new member: \
         `bank-client cluster remove ID`, then start it with a new --id and --join, then `bank-client cluster add`"
    )]
    ThisNodeLostState {
        peer: NodeId,
        expected: String,
        mine: String,
    },
    #[error("cannot read or record a peer's incarnation: {0}")]
    Store(#[from] sled::Error),
}

pub struct Peers {
    incarnation: String,
    heard: Mutex<HashMap<NodeId, Instant>>,
    /// Peer id (big-endian) -> the incarnation first seen for it.
    known: sled::Tree,
}

impl Peers {
    /// Loads this node's incarnation from `db`, drawing one on first start.
    pub fn open(db: &sled::Db) -> Result<Peers, sled::Error> {
        let identity = db.open_tree(IDENTITY_TREE)?;
        let incarnation = match identity.get(KEY_INCARNATION)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let fresh = format!("{:032x}", rand::random::<u128>());
                identity.insert(KEY_INCARNATION, fresh.as_bytes())?;
                db.flush()?;
                fresh
            }
        };
        Ok(Peers {
            incarnation,
            heard: Mutex::new(HashMap::new()),
            known: db.open_tree("peer_incarnations")?,
        })
    }

    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// Whether `db` holds an incarnation: false for a new database (or
    /// one from before incarnations).
    pub fn has_identity(db: &sled::Db) -> Result<bool, sled::Error> {
        Ok(db.open_tree(IDENTITY_TREE)?.get(KEY_INCARNATION)?.is_some())
    }

    /// Records that a message from (or a reply by) `peer` arrived now.
    pub fn heard_from(&self, peer: NodeId) {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, Instant::now());
    }

    /// How long ago `peer` was last heard from, if ever since this node started.
    pub fn last_heard(&self, peer: NodeId) -> Option<Duration> {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .map(|t| t.elapsed())
    }

    /// Accepts `peer`'s incarnation if it is the first seen or the same as
    /// before; refuses a changed one with a reason for the operator.
    pub fn check_incarnation(&self, peer: NodeId, incarnation: &str) -> Result<(), IncarnationError> {
        if incarnation.is_empty() {
            // Nothing to compare or remember.
            return Ok(());
        }
        let key = peer.to_be_bytes();
        match self.known.get(key)? {
            Some(v) if v.as_ref() == incarnation.as_bytes() => Ok(()),
            Some(_) => Err(IncarnationError::PeerLostState { peer }),
            None => {
                self.known.insert(key, incarnation.as_bytes())?;
                self.known.flush()?;
                Ok(())
            }
        }
    }

    /// The incarnation remembered for `peer`, if any.
    pub fn known(&self, peer: NodeId) -> Option<String> {
        let v = self.known.get(peer.to_be_bytes()).ok()??;
        Some(String::from_utf8_lossy(&v).into_owned())
    }

    /// Checks what a peer believes this node's incarnation to be: a
    /// different one means this node's data dir was replaced under it.
    pub fn check_expected(&self, peer: NodeId, expected: &str) -> Result<(), IncarnationError> {
        if expected.is_empty() || expected == self.incarnation {
            return Ok(());
        }
        Err(IncarnationError::ThisNodeLostState {
            peer,
            expected: expected.to_string(),
            mine: self.incarnation.clone(),
        })
    }

    /// Forgets a peer that left the cluster, so its id may be reused.
    pub fn forget(&self, peer: NodeId) {
        let _ = self.known.remove(peer.to_be_bytes());
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
    }

    /// Ids whose incarnation this node remembers.
    pub fn remembered(&self) -> Vec<NodeId> {
        self.known
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 8]>::try_from(k.as_ref()).ok())
            .map(u64::from_be_bytes)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_incarnation_is_refused_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let p = Peers::open(&db).unwrap();
        assert!(p.check_incarnation(2, "aaa").is_ok());
        assert!(p.check_incarnation(2, "aaa").is_ok());
        let err = p.check_incarnation(2, "bbb").unwrap_err().to_string();
        assert!(err.contains("node 2 lost its state"), "{err}");
        p.forget(2);
        assert!(p.check_incarnation(2, "bbb").is_ok());
        // A node keeps its own incarnation across restarts.
        let mine = p.incarnation().to_string();
        drop(p);
        assert_eq!(Peers::open(&db).unwrap().incarnation(), mine);
    }
}
