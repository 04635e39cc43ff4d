//! Names of the gRPC metadata headers clients and nodes exchange on the
//! client API (the Raft transport's are in [`crate::raft::network`]).

/// Carries the caller's time budget in milliseconds. tonic keeps the standard
/// `grpc-timeout` header from handlers, so callers state it again here.
pub const TIMEOUT_HEADER: &str = "x-bank-timeout-ms";

/// Set on a request one node forwards to another, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-bank-forwarded";

/// A request with a deadline the server honours: it answers with its own
/// reason (e.g. "no quorum") shortly before the deadline.
pub fn request<T>(msg: T, timeout: std::time::Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    if let Ok(v) = timeout.as_millis().to_string().parse() {
        r.metadata_mut().insert(TIMEOUT_HEADER, v);
    }
    r
}
