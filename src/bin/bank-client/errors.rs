//! Server errors as one line a person can act on.

use anyhow::anyhow;

fn is_cut_off(msg: &str) -> bool {
    msg.contains("transport error") || msg.contains("h2 protocol error") || msg.contains("connection")
}

/// One line a person can act on, from a gRPC status.
pub fn explain(status: tonic::Status) -> anyhow::Error {
    let msg = status.message().replace('\n', " ");
    match status.code() {
        // A TLS server cuts a plain-text client off mid-handshake.
        tonic::Code::Unavailable if !bank_ledger::tls::client_tls_enabled() && is_cut_off(&msg) => {
            anyhow!("no server reachable: {msg} (if the cluster runs TLS, pass --tls-ca CA.pem)")
        }
        tonic::Code::Unavailable => anyhow!("no server reachable: {msg}"),
        tonic::Code::DeadlineExceeded if !msg.is_empty() => anyhow!("{msg}"),
        // The client's own deadline fired before any server answered.
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => anyhow!("timed out with no answer (no quorum?)"),
        _ => anyhow!("{msg}"),
    }
}
