//! Who a node-to-node call comes from, proven rather than claimed.
//!
//! Raft messages and requests one node forwards to another name their
//! sender in `x-bank-from`. That claim is believed only with proof, checked
//! on the headers before a message body is decoded:
//! - with TLS, the caller's certificate (signed by the cluster CA) must name
//!   that node: `bank-server certs` writes the id into each node's
//!   certificate as the URI `urn:bank-ledger:node:<id>`. A certificate of
//!   node 1 cannot speak as node 0, and one without a node id (a client's)
//!   cannot speak for any node;
//! - without TLS, the call carries `x-bank-peer-proof`, an HMAC-SHA256 under
//!   the cluster secret of the chain id and the sender's id. Nodes started
//!   in one directory share the secret file the first of them creates;
//!   nodes elsewhere are given the same file.

use crate::ledger::Hash32;
use crate::raft::NodeId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// Metadata key carrying the sender's node id.
pub const FROM_HEADER: &str = "x-bank-from";
/// Metadata key carrying the proof of the cluster secret (no TLS).
pub const PROOF_HEADER: &str = "x-bank-peer-proof";
/// The URI a node certificate carries its id in, before the id.
pub const NODE_URI_PREFIX: &str = "urn:bank-ledger:node:";
/// The secret file nodes use when given none.
pub const DEFAULT_SECRET_FILE: &str = "cluster.secret";

const PROOF_DOMAIN: &[u8] = b"bank-ledger/peer-proof/v1";
/// Bytes of a cluster secret.
const SECRET_BYTES: usize = 32;

/// Why a cluster secret cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the secret {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the cluster secret {} is not {SECRET_BYTES} bytes of hex", path.display())]
    Malformed { path: PathBuf },
}

/// The key nodes without TLS prove membership with.
#[derive(Clone)]
pub struct ClusterSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// Reads the secret at `path`, or creates it (random, readable by its
    /// owner only) if there is none. Nodes starting together race safely:
    /// each writes its own temp file and links it into place; all but the
    /// first find the file there and read it.
    pub fn load_or_create(path: &Path) -> Result<ClusterSecret, SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return ClusterSecret::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let fresh: [u8; SECRET_BYTES] = rand::random();
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(format!("{}\n", hex::encode(fresh)).as_bytes())
                .map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(ClusterSecret(fresh)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                ClusterSecret::parse(path, &std::fs::read_to_string(path).map_err(io)?)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Writes a fresh random secret to `path` (readable by its owner only),
    /// which must not exist: an operator's `bank-server secret`.
    pub fn create(path: &Path) -> Result<(), SecretError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let fresh: [u8; SECRET_BYTES] = rand::random();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(format!("{}\n", hex::encode(fresh)).as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads the secret at `path`, which must exist.
    pub fn load(path: &Path) -> Result<ClusterSecret, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ClusterSecret::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<ClusterSecret, SecretError> {
        let mut out = [0u8; SECRET_BYTES];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| SecretError::Malformed {
            path: path.to_path_buf(),
        })?;
        Ok(ClusterSecret(out))
    }

    fn mac(&self, chain_id: Hash32, node: NodeId) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(PROOF_DOMAIN);
        mac.update(&chain_id.0);
        mac.update(&node.to_be_bytes());
        mac
    }
}

/// How this node proves itself to peers and checks them.
#[derive(Debug, Clone)]
pub enum PeerGate {
    /// Mutual TLS: the certificate names the node.
    Certificate,
    /// A shared secret, for clusters without TLS.
    Secret { secret: ClusterSecret, chain_id: Hash32 },
}

/// Why a call is not taken as coming from the node it names.
#[derive(Debug, thiserror::Error)]
pub enum PeerAuthError {
    #[error("node-to-node calls must name their sender ({FROM_HEADER})")]
    NoSender,
    #[error("node-to-node calls need a node certificate of the cluster CA (mutual TLS)")]
    NoCertificate,
    #[error(
        "the certificate names no node id ({NODE_URI_PREFIX}<id>): only node certificates made by \
         `bank-server certs` may speak for a node"
    )]
    NotANodeCertificate,
    #[error("the certificate of node {cert} cannot speak as node {claimed}")]
    WrongNode { cert: NodeId, claimed: NodeId },
    #[error("node-to-node calls need proof of the cluster secret ({PROOF_HEADER}): none was sent")]
    NoProof,
    #[error(
        "the proof of the cluster secret for node {claimed} is wrong: give every node the same \
         --cluster-secret-file"
    )]
    BadProof { claimed: NodeId },
}

impl From<PeerAuthError> for Status {
    fn from(e: PeerAuthError) -> Status {
        match e {
            PeerAuthError::WrongNode { .. } => Status::permission_denied(e.to_string()),
            _ => Status::unauthenticated(e.to_string()),
        }
    }
}

/// The id a call proved it comes from, put in its extensions by the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenPeer(pub NodeId);

impl PeerGate {
    /// Marks an outgoing call as coming from node `me`.
    pub fn stamp(&self, me: NodeId, md: &mut MetadataMap) {
        if let Ok(v) = me.to_string().parse() {
            md.insert(FROM_HEADER, v);
        }
        if let PeerGate::Secret { secret, chain_id } = self {
            let proof = hex::encode(secret.mac(*chain_id, me).finalize().into_bytes());
            if let Ok(v) = proof.parse() {
                md.insert(PROOF_HEADER, v);
            }
        }
    }

    /// The node a call comes from, if it proves it.
    pub fn check<T>(&self, req: &Request<T>) -> Result<NodeId, PeerAuthError> {
        let claimed: NodeId = req
            .metadata()
            .get(FROM_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or(PeerAuthError::NoSender)?;
        match self {
            PeerGate::Certificate => {
                // rustls has checked the chain to the cluster CA already.
                let certs = req.peer_certs().ok_or(PeerAuthError::NoCertificate)?;
                let leaf = certs.first().ok_or(PeerAuthError::NoCertificate)?;
                let cert = node_id_of(leaf.as_ref()).ok_or(PeerAuthError::NotANodeCertificate)?;
                if cert != claimed {
                    return Err(PeerAuthError::WrongNode { cert, claimed });
                }
            }
            PeerGate::Secret { secret, chain_id } => {
                let proof = req
                    .metadata()
                    .get(PROOF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(PeerAuthError::NoProof)?;
                let proof = hex::decode(proof).map_err(|_| PeerAuthError::BadProof { claimed })?;
                secret
                    .mac(*chain_id, claimed)
                    .verify_slice(&proof)
                    .map_err(|_| PeerAuthError::BadProof { claimed })?;
            }
        }
        Ok(claimed)
    }

    /// As an interceptor: admits a proven call, noting who sent it.
    pub fn admit(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.check(&req) {
            Ok(id) => {
                req.extensions_mut().insert(ProvenPeer(id));
                Ok(req)
            }
            Err(e) => {
                crate::stats::refused("peer_unauthenticated");
                Err(e.into())
            }
        }
    }
}

/// The node id a certificate (DER) carries as `urn:bank-ledger:node:<id>`.
pub fn node_id_of(der: &[u8]) -> Option<NodeId> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX)?.parse().ok(),
        _ => None,
    });
    let id = ids.next()?;
    // A certificate naming two nodes names none.
    ids.next().is_none().then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(gate: &PeerGate, from: NodeId) -> Request<()> {
        let mut req = Request::new(());
        gate.stamp(from, req.metadata_mut());
        req
    }

    #[test]
    fn a_proof_of_the_secret_is_for_one_node_one_chain_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_SECRET_FILE);
        let secret = ClusterSecret::load_or_create(&path).unwrap();
        let again = ClusterSecret::load_or_create(&path).unwrap();
        assert_eq!(secret.0, again.0, "the file is created once, then read");
        let gate = PeerGate::Secret {
            secret: secret.clone(),
            chain_id: Hash32([1; 32]),
        };
        assert_eq!(gate.check(&call(&gate, 2)).unwrap(), 2);
        // Node 2's proof does not speak for node 0.
        let mut req = call(&gate, 2);
        req.metadata_mut().insert(FROM_HEADER, "0".parse().unwrap());
        assert!(matches!(gate.check(&req), Err(PeerAuthError::BadProof { claimed: 0 })));
        // Another chain, another secret, no proof, no sender.
        let other_chain = PeerGate::Secret {
            secret,
            chain_id: Hash32([2; 32]),
        };
        assert!(other_chain.check(&call(&gate, 2)).is_err());
        let other_secret = PeerGate::Secret {
            secret: ClusterSecret([9; SECRET_BYTES]),
            chain_id: Hash32([1; 32]),
        };
        assert!(other_secret.check(&call(&gate, 2)).is_err());
        let mut bare = Request::new(());
        bare.metadata_mut().insert(FROM_HEADER, "2".parse().unwrap());
        assert!(matches!(gate.check(&bare), Err(PeerAuthError::NoProof)));
        assert!(matches!(gate.check(&Request::new(())), Err(PeerAuthError::NoSender)));
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(ClusterSecret::load(&path), Err(SecretError::Malformed { .. })));
    }

    #[test]
    fn node_certificates_carry_their_id_and_client_ones_none() {
        let certs = crate::tls::generate_dev_certs(3, &["localhost".into()]).unwrap();
        for (id, (pem, _)) in certs.nodes.iter().enumerate() {
            let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents;
            assert_eq!(node_id_of(&der), Some(id as NodeId));
        }
        let ca = x509_parser::pem::parse_x509_pem(certs.ca_pem.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(node_id_of(&ca), None);
        assert_eq!(node_id_of(b"junk"), None);
    }
}
