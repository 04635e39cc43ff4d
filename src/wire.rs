//! Names of the gRPC metadata headers clients and nodes exchange on the
//! client API (the Raft transport's are in [`crate::raft::network`]).

/// Carries the caller's time budget in milliseconds. tonic keeps the standard
/// `grpc-timeout` header from handlers, so callers state it again here.
pub const TIMEOUT_HEADER: &str = "x-bank-timeout-ms";

/// Set on a request one node forwards to another, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-bank-forwarded";
