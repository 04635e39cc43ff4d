//! A Raft-replicated, proof-of-work hash-chained banking ledger.
//!
//! Layers, innermost first: [`ledger`] (pure domain), [`storage`] (sled),
//! [`raft`] (openraft wiring and transport), [`api`] (client gRPC service,
//! forwarding, block production), [`node`] (one server put together).

// tonic's `Status` and openraft's `StorageError` are the error types those
// frameworks' traits demand; boxing them in our helpers would only add
// conversions at every call.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auth;
pub mod bench;
pub mod chaos;
pub mod client;
pub mod codec;
pub mod config;
pub mod cpu;
pub mod fault_settings;
pub mod http;
pub mod keystore;
pub mod launcher;
pub mod ledger;
pub mod limits;
pub mod node;
pub mod ops;
pub mod peer_auth;
pub mod producer;
pub mod raft;
pub mod stats;
pub mod storage;
pub mod timeline;
pub mod tls;
pub mod wire;

/// Code generated from `proto/`.
pub mod proto {
    /// Node-to-node Raft transport.
    pub mod raft {
        tonic::include_proto!("bank.raft");
    }
    /// The client API.
    pub mod bank {
        tonic::include_proto!("bank.v1");
    }
    /// Every compiled descriptor, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bank_descriptor.bin"));
}

/// Runs a binary's body; on error prints one line saying what is wrong and
/// exits non-zero.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()>) {
    if let Err(e) = body() {
        eprintln!("error: {}", error_line(e.as_ref()));
        std::process::exit(1);
    }
}

/// An error and its causes on one line, leaving out a cause whose text the
/// message before it already contains.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line.replace('\n', " ")
}
