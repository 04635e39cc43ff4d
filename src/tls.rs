//! TLS for client and Raft traffic (rustls, through tonic).
//!
//! A node with TLS presents its certificate to everyone and asks for one in
//! return, without requiring it: bank clients connect with the cluster CA
//! alone, while Raft RPCs are refused unless the caller proved, with a
//! certificate signed by the cluster CA, that it is a node (mutual TLS).
//! Every outgoing connection of a process (a node's Raft and forwarding
//! traffic, a client's requests) uses one process-wide setting, made once at
//! start by the binary: a process is one node or one client.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} holds no PEM {what}", path.display())]
    NotPem { path: PathBuf, what: &'static str },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot make certificates: {0}")]
    Generate(String),
}

/// A node's TLS files: its certificate and key, and the cluster CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
        return Err(TlsError::NotPem {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(bytes)
}

/// What a node serves with and dials out with.
pub struct NodeTls {
    pub server: ServerTlsConfig,
    pub client: ClientTlsConfig,
}

impl TlsFiles {
    pub fn load(&self) -> Result<NodeTls, TlsError> {
        let cert = read_pem(&self.cert, "certificate")?;
        let key = read_pem(&self.key, "private key")?;
        let ca = Certificate::from_pem(read_pem(&self.ca, "CA certificate")?);
        let identity = Identity::from_pem(cert, key);
        Ok(NodeTls {
            server: ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(ca.clone())
                .client_auth_optional(true),
            client: ClientTlsConfig::new().ca_certificate(ca).identity(identity),
        })
    }
}

/// Client-side TLS trusting `ca` (PEM file): what a bank client needs.
pub fn client_config(ca: &Path) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(ca, "CA certificate")?)))
}

static CLIENT_TLS: OnceLock<ClientTlsConfig> = OnceLock::new();

/// Makes every later outgoing connection of this process use TLS with `cfg`.
/// Only the first call counts.
pub fn use_client_tls(cfg: ClientTlsConfig) {
    let _ = CLIENT_TLS.set(cfg);
}

/// True when this process dials out over TLS.
pub fn client_tls_enabled() -> bool {
    CLIENT_TLS.get().is_some()
}

/// A server address no endpoint can be made of.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad server address {addr:?}: {reason}")]
pub struct BadAddress {
    pub addr: String,
    pub reason: String,
}

/// An endpoint for `addr` (HOST:PORT): https with the process's TLS
/// setting, or plain http without one.
pub fn endpoint(addr: &str) -> Result<Endpoint, BadAddress> {
    let bad = |e: &dyn std::fmt::Display| BadAddress {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    match CLIENT_TLS.get() {
        Some(cfg) => Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| bad(&e))?
            .tls_config(cfg.clone())
            .map_err(|e| bad(&e)),
        None => Endpoint::from_shared(format!("http://{addr}")).map_err(|e| bad(&e)),
    }
}

/// Certificates for a development cluster: a CA, and one certificate per
/// node valid for `hosts` (names and IP addresses) as both server and client.
pub struct DevCerts {
    pub ca_pem: String,
    pub ca_key_pem: String,
    /// Per node: certificate PEM and key PEM.
    pub nodes: Vec<(String, String)>,
}

/// Makes a fresh CA and `nodes` node certificates.
pub fn generate_dev_certs(nodes: u64, hosts: &[String]) -> Result<DevCerts, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bank-ledger cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let mut out = DevCerts {
        ca_pem: ca.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        nodes: Vec::new(),
    };
    for id in 0..nodes {
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("bank-ledger node {id}"));
        // The id peers check against the sender a call names.
        let uri = rcgen::Ia5String::try_from(format!("{}{id}", crate::peer_auth::NODE_URI_PREFIX)).map_err(err)?;
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
        out.nodes.push((cert.pem(), key.serialize_pem()));
    }
    Ok(out)
}

impl DevCerts {
    /// Writes `ca.pem`, `ca.key`, `node-<id>.pem` and `node-<id>.key` into
    /// `dir` (keys readable by their owner only); never overwrites.
    pub fn write(&self, dir: &Path) -> Result<(), TlsError> {
        let write = |name: String, text: &str, secret: bool| -> Result<(), TlsError> {
            use std::io::Write;
            let path = dir.join(name);
            let werr = |source| TlsError::Write {
                path: path.clone(),
                source,
            };
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(if secret { 0o600 } else { 0o644 });
            }
            let mut f = opts.open(&path).map_err(werr)?;
            f.write_all(text.as_bytes()).map_err(werr)
        };
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write("ca.pem".into(), &self.ca_pem, false)?;
        write("ca.key".into(), &self.ca_key_pem, true)?;
        for (id, (cert, key)) in self.nodes.iter().enumerate() {
            write(format!("node-{id}.pem"), cert, false)?;
            write(format!("node-{id}.key"), key, true)?;
        }
        Ok(())
    }
}

/// The files `bank-server certs` wrote for node `id` in `dir`.
pub fn node_files(dir: &Path, id: u64) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("node-{id}.pem")),
        key: dir.join(format!("node-{id}.key")),
        ca: dir.join("ca.pem"),
    }
}
