//! Size limits whose relations matter, defined once and related by
//! compile-time assertions: a block fits a Raft message with room for an
//! append's other entries, a Raft message fits what the codec will decode,
//! and a stored record (Raft log, block files, snapshot) holds any block.

/// Largest `batch_max_bytes`: the transactions of one block. A block is one
/// Raft entry, and every entry must fit one Raft message.
pub const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// Largest Raft message accepted or sent: bounds one append batch. An
/// append carries at most 8 MiB of entries (`max_payload_entries` in
/// `node/mod.rs`), or one whole block.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest value the codec encodes or decodes: bounds what a corrupt or
/// hostile length prefix can make a node allocate.
pub const MAX_ENCODED_BYTES: u64 = 256 * 1024 * 1024;

/// Largest record of the Raft log and of the block files: a length beyond
/// it can only be damage or a torn write.
pub const MAX_STORED_RECORD_BYTES: u64 = MAX_ENCODED_BYTES;

/// Largest key or value of one snapshot record (a block, a transaction
/// record): bounds memory while a snapshot loads.
pub const MAX_SNAPSHOT_RECORD_BYTES: u32 = 64 * 1024 * 1024;

/// Largest snapshot a node receives. A snapshot carries the whole chain,
/// so this is far above any chain of this design; what keeps a peer from
/// filling the disk is that chunks must arrive in order (no holes), so a
/// file grows only by what was actually sent.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

// A full block with its header and encoding overhead fits one message twice over.
const _: () = assert!(2 * MAX_BLOCK_BYTES <= MAX_RAFT_MESSAGE_BYTES);
// A message the transport accepts is one the codec decodes.
const _: () = assert!(MAX_RAFT_MESSAGE_BYTES as u64 <= MAX_ENCODED_BYTES);
// Every encoded entry fits a stored record, whose length is a u32 in the Raft log.
const _: () = assert!(MAX_ENCODED_BYTES <= MAX_STORED_RECORD_BYTES);
const _: () = assert!(MAX_STORED_RECORD_BYTES <= u32::MAX as u64);
// A snapshot holds at least one of its records.
const _: () = assert!(MAX_SNAPSHOT_RECORD_BYTES as u64 <= MAX_SNAPSHOT_BYTES);
// A snapshot carries whole blocks as records.
const _: () = assert!(2 * MAX_BLOCK_BYTES <= MAX_SNAPSHOT_RECORD_BYTES as usize);
