//! SHA-256 digests, shown to people as lowercase hex.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 digest. Serialized as hex so JSON views stay readable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero hash: the genesis block's `prev_hash`.
    pub const ZERO: Hash32 = Hash32([0u8; 32]);

    /// SHA-256 of the concatenation of `parts`, without copying them together.
    pub fn digest(parts: &[&[u8]]) -> Hash32 {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        Hash32(h.finalize().into())
    }

    /// Number of leading zero bits: the proof-of-work measure.
    pub fn leading_zero_bits(&self) -> u32 {
        let mut bits = 0;
        for b in self.0 {
            if b == 0 {
                bits += 8;
            } else {
                bits += b.leading_zeros();
                break;
            }
        }
        bits
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Hash32, HexError> {
        let v = hex::decode(s).map_err(|reason| HexError::NotHex {
            what: "hash",
            text: s.to_string(),
            reason,
        })?;
        let arr: [u8; 32] = v.try_into().map_err(|_| HexError::Length {
            what: "hash",
            text: s.to_string(),
        })?;
        Ok(Hash32(arr))
    }
}

/// A hash or key given as text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HexError {
    #[error("bad {what} {text:?}: {reason} (expected 64 hex digits)")]
    NotHex {
        what: &'static str,
        text: String,
        reason: hex::FromHexError,
    },
    #[error("bad {what} {text:?}: expected 32 bytes")]
    Length { what: &'static str, text: String },
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", &self.to_hex()[..16])
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Hash32, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Hash32::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            Ok(Hash32(<[u8; 32]>::deserialize(d)?))
        }
    }
}
