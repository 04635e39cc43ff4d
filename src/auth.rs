//! The admin credential for control-plane calls (fault injection and
//! membership changes): a shared secret every node and every operator's
//! `bank-client` read from a file, sent in the `x-bank-admin-token` header.
//!
//! With no token configured, a node accepts control-plane calls only from
//! loopback callers, so a local demo needs no setup while a node reachable
//! from other hosts never lets anonymous clients partition or reshape the
//! cluster. Data-plane calls (transfers, reads, status) need no token.

use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// Metadata key carrying the admin token.
pub const ADMIN_TOKEN_HEADER: &str = "x-bank-admin-token";
/// Shortest token accepted: guessing must not be practical.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted (and longest token file read).
pub const MAX_TOKEN_LEN: usize = 512;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} file {path} must hold {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} printable ASCII characters (e.g. `openssl rand -hex 32`)")]
    Invalid { what: &'static str, path: String },
}

/// A bearer secret: the admin token, or the token of the HTTP side. Its
/// `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Reads the admin token from a file; surrounding whitespace (a
    /// trailing newline) is ignored.
    pub fn from_file(path: &Path) -> Result<AdminToken, TokenError> {
        AdminToken::read(path, "admin token")
    }

    /// Reads a token from a file; `what` names it in errors.
    pub fn read(path: &Path, what: &'static str) -> Result<AdminToken, TokenError> {
        let shown = path.display().to_string();
        let read_error = |source| TokenError::Read {
            what,
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_error)?;
        if meta.len() > MAX_TOKEN_LEN as u64 + 2 {
            return Err(TokenError::Invalid { what, path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        AdminToken::new(text.trim()).ok_or(TokenError::Invalid { what, path: shown })
    }

    /// A token from its text, if it is acceptable.
    pub fn new(text: &str) -> Option<AdminToken> {
        let ok = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| AdminToken(text.to_string()))
    }

    /// Adds this token to an outgoing request.
    pub fn attach<T>(&self, req: &mut Request<T>) {
        // Checked printable ASCII at construction, so this always parses.
        if let Ok(v) = MetadataValue::try_from(self.0.as_str()) {
            req.metadata_mut().insert(ADMIN_TOKEN_HEADER, v);
        }
    }

    /// Compares in time independent of where the texts differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented);
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Decides whether a control-plane call may proceed.
///
/// `remote` is the caller's address as the transport saw it (None when
/// unknown, which counts as not loopback).
pub fn authorize_control<T>(configured: Option<&AdminToken>, req: &Request<T>) -> Result<(), Status> {
    let presented = req.metadata().get(ADMIN_TOKEN_HEADER).map(|v| v.as_bytes());
    match configured {
        Some(token) => match presented {
            Some(p) if token.matches(p) => Ok(()),
            Some(_) => Err(Status::unauthenticated(
                "control-plane call refused: wrong admin token",
            )),
            None => Err(Status::unauthenticated(
                "control-plane call refused: it needs the admin token (bank-client --admin-token-file FILE, or BANK_ADMIN_TOKEN_FILE)",
            )),
        },
        None if is_loopback(req.remote_addr()) => Ok(()),
        None => Err(Status::permission_denied(
            "control-plane call refused: this node takes them only from its own host unless started with --admin-token-file FILE",
        )),
    }
}

fn is_loopback(remote: Option<SocketAddr>) -> bool {
    remote.is_some_and(|a| a.ip().is_loopback() || a.ip().to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_from(addr: Option<&str>, token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = addr {
            let a: SocketAddr = a.parse().unwrap();
            r.extensions_mut().insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(a),
            });
        }
        if let Some(t) = token {
            r.metadata_mut().insert(ADMIN_TOKEN_HEADER, t.parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_must_be_long_and_printable() {
        assert!(AdminToken::new("short").is_none());
        assert!(AdminToken::new("has a space in it!!").is_none());
        assert!(AdminToken::new(&"x".repeat(MAX_TOKEN_LEN + 1)).is_none());
        assert!(AdminToken::new("0123456789abcdef").is_some());
        assert_eq!(
            format!("{:?}", AdminToken::new("0123456789abcdef").unwrap()),
            "AdminToken(..)"
        );
    }

    #[test]
    fn with_a_token_only_the_same_token_passes_from_anywhere() {
        let t = AdminToken::new("0123456789abcdef").unwrap();
        assert!(authorize_control(Some(&t), &req_from(Some("10.1.2.3:5000"), Some("0123456789abcdef"))).is_ok());
        let wrong =
            authorize_control(Some(&t), &req_from(Some("127.0.0.1:5000"), Some("0123456789abcdeF"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let missing = authorize_control(Some(&t), &req_from(Some("127.0.0.1:5000"), None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn without_a_token_only_loopback_callers_pass() {
        assert!(authorize_control(None, &req_from(Some("127.0.0.1:5000"), None)).is_ok());
        assert!(authorize_control(None, &req_from(Some("[::1]:5000"), None)).is_ok());
        assert!(authorize_control(None, &req_from(Some("[::ffff:127.0.0.1]:5000"), None)).is_ok());
        let remote = authorize_control(None, &req_from(Some("192.168.1.9:5000"), None)).unwrap_err();
        assert_eq!(remote.code(), tonic::Code::PermissionDenied);
        let unknown = authorize_control(None, &req_from(None, None)).unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied);
    }
}
