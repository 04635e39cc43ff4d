//! Binary encoding for sled values and Raft RPC payloads.
//!
//! One set of bincode options everywhere, with a size limit so a corrupt or
//! hostile length prefix cannot make a node allocate without bound.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

pub use crate::limits::MAX_ENCODED_BYTES;

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_ENCODED_BYTES)
}

/// Encodes `value`; fails only if it exceeds [`MAX_ENCODED_BYTES`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    options().serialize(value)
}

/// Decodes bytes written by [`encode`]; rejects trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    options().deserialize(bytes)
}
