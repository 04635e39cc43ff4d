//! Blocks: a header hashed over a canonical fixed layout, proof of work over
//! that header, and the transactions committed to by a merkle root.

use super::sha256x2::compress_pair;
use super::{merkle, Hash32, Transaction};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Layout version of [`BlockHeader::encode`].
pub const BLOCK_VERSION: u16 = 1;

/// Size of the canonical header encoding in bytes.
pub const HEADER_LEN: usize = 2 + 32 + 8 + 32 + 32 + 8 + 1 + 4 + 8;
/// One SHA-256 input block: the header prefix mining hashes only once.
const MIDSTATE_LEN: usize = 64;
const _: () = assert!(HEADER_LEN >= MIDSTATE_LEN + 8, "the nonce must lie after the midstate");

/// Hard cap on transactions in one block, whatever the producer is configured
/// to: bounds the memory and time one Raft entry can cost a node.
pub const MAX_BLOCK_TXS: usize = 65_536;

/// Highest difficulty a genesis may ask for: beyond this a block would take
/// hours to mine on one core.
pub const MAX_DIFFICULTY: u8 = 32;

/// What is hashed and mined. Everything a block commits to is reachable from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub version: u16,
    /// Hash of the genesis block; zero in the genesis block itself. Ties every
    /// block to one chain, so blocks cannot be replayed on another cluster.
    pub chain_id: Hash32,
    pub height: u64,
    pub prev_hash: Hash32,
    pub merkle_root: Hash32,
    /// Set by the leader that cut the block (Unix ms), never before its
    /// parent's; apply compares signed transactions' expiries with it.
    pub timestamp_ms: u64,
    /// Required leading zero bits of the header hash.
    pub difficulty: u8,
    pub tx_count: u32,
    pub nonce: u64,
}

impl BlockHeader {
    /// Canonical encoding: fields in declaration order, fixed width, big-endian.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.version.to_be_bytes());
        put(&self.chain_id.0);
        put(&self.height.to_be_bytes());
        put(&self.prev_hash.0);
        put(&self.merkle_root.0);
        put(&self.timestamp_ms.to_be_bytes());
        put(&[self.difficulty]);
        put(&self.tx_count.to_be_bytes());
        put(&self.nonce.to_be_bytes());
        out
    }

    pub fn hash(&self) -> Hash32 {
        Hash32::digest(&[&self.encode()])
    }

    /// Finds the smallest nonce, from the current one up, whose hash meets the
    /// difficulty: the same on every node, as the genesis blocks must be.
    /// The cost depends on the difficulty only, never on the transactions.
    /// From difficulty [`PARALLEL_MINING_FROM`] two threads search alternate
    /// nonces; the answer is the same as one thread's.
    pub fn mine(&mut self) {
        self.search(Find::Smallest);
    }

    /// Finds a nonce, from the current one up, whose hash meets the
    /// difficulty: the first either thread finds. A block the leader
    /// proposes needs no particular one, and the finder does not wait for
    /// the other thread to search up to its find (on a busy machine, to be
    /// scheduled at all).
    pub fn mine_any(&mut self) {
        self.search(Find::First);
    }

    fn search(&mut self, find: Find) {
        let search = Arc::new(NonceSearch::new(self));
        let found = Arc::new(AtomicU64::new(u64::MAX));
        let start = self.nonce;
        if self.difficulty >= PARALLEL_MINING_FROM {
            if let Some(helper) = MiningHelper::get() {
                let (done, finished) = std::sync::mpsc::sync_channel(1);
                let job = HelperJob {
                    search: Arc::clone(&search),
                    start: start.wrapping_add(1),
                    found: Arc::clone(&found),
                    find,
                    done,
                };
                // Not a blocking send: after a first-find search the helper
                // may not have picked up (or dropped) that search's job yet,
                // and this one then mines alone.
                if helper.try_send(job).is_ok() {
                    search.run(start, 2, &found, find);
                    if find == Find::Smallest {
                        // The helper stops within one attempt of the find.
                        let _ = finished.recv();
                    }
                    self.nonce = found.load(Ordering::Relaxed);
                    return;
                }
            }
        }
        search.run(start, 1, &found, find);
        self.nonce = found.load(Ordering::Relaxed);
    }
}

/// Which nonce a search returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Find {
    /// The smallest that meets the difficulty: the searchers go on until
    /// none can find a smaller one.
    Smallest,
    /// Whichever a searcher finds first: all stop at the first find.
    First,
}

/// Half of a search, for the helper thread.
struct HelperJob {
    search: Arc<NonceSearch>,
    start: u64,
    found: Arc<AtomicU64>,
    find: Find,
    done: std::sync::mpsc::SyncSender<()>,
}

/// A second mining thread that lives as long as the process: starting a
/// thread for each block cost ~60 us of a ~0.3 ms search. One search uses
/// it at a time; a concurrent one mines alone.
struct MiningHelper {
    jobs: Mutex<std::sync::mpsc::SyncSender<HelperJob>>,
}

impl MiningHelper {
    /// The helper, if it could be started, locked for one search.
    fn get() -> Option<std::sync::MutexGuard<'static, std::sync::mpsc::SyncSender<HelperJob>>> {
        static HELPER: OnceLock<Option<MiningHelper>> = OnceLock::new();
        let helper = HELPER.get_or_init(|| {
            let (jobs, rx) = std::sync::mpsc::sync_channel::<HelperJob>(1);
            std::thread::Builder::new()
                .name("miner".into())
                .spawn(move || {
                    for job in rx {
                        job.search.run(job.start, 2, &job.found, job.find);
                        let _ = job.done.send(());
                    }
                })
                .ok()
                .map(|_| MiningHelper { jobs: Mutex::new(jobs) })
        });
        helper.as_ref()?.jobs.try_lock().ok()
    }
}

/// Difficulty from which a second thread helps mining: below it a block
/// takes fewer attempts than starting a thread costs.
const PARALLEL_MINING_FROM: u8 = 8;

/// One header's proof-of-work search. Only the nonce (the last 8 bytes)
/// changes between attempts, so the first 64-byte SHA-256 block is
/// compressed once and each attempt runs SHA-256's compression function on
/// the two blocks left (the tail with the nonce, then the padding) straight
/// from that state, reading the leading zero bits off the state words: no
/// hasher state copied, no padding logic, no output bytes per attempt.
/// Measured per block at difficulty 12, one thread: 0.76 ms hashing the
/// whole header, 0.53 ms resuming a cloned hasher, and this (see
/// `mining_finds_the_first_nonce_a_full_hash_accepts` for its agreement
/// with a full hash).
struct NonceSearch {
    mid: [u32; 8],
    blocks: [[u8; 64]; 2],
    difficulty: u32,
}

type Sha256Block = sha2::digest::generic_array::GenericArray<u8, sha2::digest::consts::U64>;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Where the nonce sits in the first block after the midstate.
const NONCE_AT: usize = HEADER_LEN - MIDSTATE_LEN - 8;
const _: () = assert!(
    HEADER_LEN - MIDSTATE_LEN <= 64,
    "the nonce lies in the first block after the midstate"
);
const _: () = assert!(
    HEADER_LEN - MIDSTATE_LEN + 9 > 64 && HEADER_LEN - MIDSTATE_LEN + 9 <= 128,
    "the 0x80 byte and the length take exactly one block more"
);

impl NonceSearch {
    fn new(header: &BlockHeader) -> NonceSearch {
        let bytes = header.encode();
        let mut mid = SHA256_IV;
        sha2::compress256(&mut mid, &[*Sha256Block::from_slice(&bytes[..MIDSTATE_LEN])]);
        // Padding as SHA-256 defines it: 0x80, zeros, the length in bits.
        let mut padded = [0u8; 128];
        padded[..HEADER_LEN - MIDSTATE_LEN].copy_from_slice(&bytes[MIDSTATE_LEN..]);
        padded[HEADER_LEN - MIDSTATE_LEN] = 0x80;
        padded[120..].copy_from_slice(&(HEADER_LEN as u64 * 8).to_be_bytes());
        NonceSearch {
            mid,
            blocks: [
                padded[..64].try_into().expect("64 of 128 bytes"),
                padded[64..].try_into().expect("64 of 128 bytes"),
            ],
            difficulty: u32::from(header.difficulty),
        }
    }

    /// The header hash with `nonce`, computed as the search does.
    #[cfg(test)]
    fn hash_at(&self, nonce: u64) -> Hash32 {
        let mut blocks = self.blocks.map(|b| *Sha256Block::from_slice(&b));
        blocks[0][NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_be_bytes());
        let mut state = self.mid;
        sha2::compress256(&mut state, &blocks);
        let mut out = [0u8; 32];
        for (chunk, w) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        Hash32(out)
    }

    /// Leading zero bits of the hash whose final state is `state`.
    fn zero_bits(state: &[u32; 8]) -> u32 {
        let mut bits = 0;
        for w in state {
            bits += w.leading_zeros();
            if *w != 0 {
                break;
            }
        }
        bits
    }

    /// Tries `start`, `start + stride`, ... until one meets the difficulty or
    /// another searcher's find ends the search (`find`); records its find in
    /// `found` (the minimum of all finds).
    ///
    /// Two nonces of the sequence are hashed together ([`compress_pair`]),
    /// the smaller checked first, so the find is the same as one at a time.
    fn run(&self, start: u64, stride: u64, found: &AtomicU64, find: Find) {
        let [mut tail_a, padding] = self.blocks;
        let mut tail_b = tail_a;
        let mut nonce = start;
        let go_on = |nonce: u64| match find {
            Find::Smallest => nonce < found.load(Ordering::Relaxed),
            Find::First => found.load(Ordering::Relaxed) == u64::MAX,
        };
        while go_on(nonce) {
            let next = nonce.wrapping_add(stride);
            tail_a[NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_be_bytes());
            tail_b[NONCE_AT..NONCE_AT + 8].copy_from_slice(&next.to_be_bytes());
            let (mut a, mut b) = (self.mid, self.mid);
            compress_pair(&mut a, &mut b, &tail_a, &tail_b);
            compress_pair(&mut a, &mut b, &padding, &padding);
            if Self::zero_bits(&a) >= self.difficulty {
                found.fetch_min(nonce, Ordering::Relaxed);
                return;
            }
            if Self::zero_bits(&b) >= self.difficulty {
                found.fetch_min(next, Ordering::Relaxed);
                return;
            }
            nonce = next.wrapping_add(stride);
        }
    }
}

/// A header and the transactions it commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
}

/// Why a block is not valid where it was offered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The block belongs to another chain (different genesis).
    #[error("block {height}: chain id {got} is not this chain's {expected}")]
    WrongChain { height: u64, expected: Hash32, got: Hash32 },
    /// The block does not extend the tip: another block took its place.
    #[error("block {got}: expected height {expected}")]
    WrongHeight { expected: u64, got: u64 },
    /// `prev_hash` is not the tip's hash.
    #[error("block {height}: prev_hash {got} does not link to tip {expected}")]
    BrokenLink { height: u64, expected: Hash32, got: Hash32 },
    /// The merkle root does not match the transactions.
    #[error("block {height}: merkle root does not match its transactions")]
    MerkleMismatch { height: u64 },
    /// `tx_count` does not match the transactions, or exceeds the cap.
    #[error("block {height}: header says {header} transactions, body holds {body}")]
    TxCountMismatch { height: u64, header: u32, body: usize },
    /// Too many transactions in one block.
    #[error("block {height}: {count} transactions exceed the cap of {MAX_BLOCK_TXS}")]
    TooManyTxs { height: u64, count: usize },
    /// The difficulty is not the chain's.
    #[error("block {height}: difficulty {got}, chain requires {expected}")]
    WrongDifficulty { height: u64, expected: u8, got: u8 },
    /// The header hash does not have enough leading zero bits.
    #[error("block {height}: hash {hash} has {bits} leading zero bits, {need} required")]
    InsufficientWork {
        height: u64,
        hash: Hash32,
        bits: u32,
        need: u8,
    },
    /// An unsupported header layout.
    #[error("block {height}: unsupported version {version}")]
    BadVersion { height: u64, version: u16 },
    /// The block's time is before its parent's.
    #[error("block {height}: time {got} ms is before its parent's {parent} ms")]
    TimeBackwards { height: u64, got: u64, parent: u64 },
}

impl Block {
    /// Builds the header for `txs` on top of `prev`; the result still needs [`Block::mine`].
    pub fn new(
        chain_id: Hash32,
        height: u64,
        prev_hash: Hash32,
        timestamp_ms: u64,
        difficulty: u8,
        txs: Vec<Transaction>,
    ) -> Block {
        let header = BlockHeader {
            version: BLOCK_VERSION,
            chain_id,
            height,
            prev_hash,
            merkle_root: merkle_root_of(&txs),
            timestamp_ms,
            difficulty,
            tx_count: txs.len() as u32,
            nonce: 0,
        };
        Block { header, txs }
    }

    pub fn mined(mut self) -> Block {
        self.header.mine();
        self
    }

    /// With any nonce that meets the difficulty ([`BlockHeader::mine_any`]).
    pub fn mined_any(mut self) -> Block {
        self.header.mine_any();
        self
    }

    pub fn hash(&self) -> Hash32 {
        self.header.hash()
    }

    pub fn height(&self) -> u64 {
        self.header.height
    }

    /// Checks what a block proves about itself: layout version, transaction
    /// count, merkle root and proof of work. One header hash, no re-mining.
    pub fn verify_contents(&self) -> Result<Hash32, BlockError> {
        let h = &self.header;
        if h.version != BLOCK_VERSION {
            return Err(BlockError::BadVersion {
                height: h.height,
                version: h.version,
            });
        }
        // The cap bounds what a leader may propose. Block 0 is never
        // proposed: every node derives it from the genesis file, which opens
        // up to MAX_GENESIS_ACCOUNTS accounts in it.
        // A set's items count one each: the cap bounds the signatures too.
        let items: usize = self.txs.iter().map(|t| t.items().len()).sum();
        if h.height > 0 && items > MAX_BLOCK_TXS {
            return Err(BlockError::TooManyTxs {
                height: h.height,
                count: items,
            });
        }
        if h.tx_count as usize != self.txs.len() {
            return Err(BlockError::TxCountMismatch {
                height: h.height,
                header: h.tx_count,
                body: self.txs.len(),
            });
        }
        if merkle_root_of(&self.txs) != h.merkle_root {
            return Err(BlockError::MerkleMismatch { height: h.height });
        }
        let hash = self.hash();
        let bits = hash.leading_zero_bits();
        if bits < u32::from(h.difficulty) {
            return Err(BlockError::InsufficientWork {
                height: h.height,
                hash,
                bits,
                need: h.difficulty,
            });
        }
        Ok(hash)
    }

    /// Checks that this block extends a tip (`tip_height`, `tip_hash`) of the
    /// chain `chain_id` with the chain's difficulty, then its contents.
    /// Returns the block's hash.
    pub fn verify_extends(
        &self,
        chain_id: Hash32,
        difficulty: u8,
        tip_height: u64,
        tip_hash: Hash32,
    ) -> Result<Hash32, BlockError> {
        let h = &self.header;
        if h.chain_id != chain_id {
            return Err(BlockError::WrongChain {
                height: h.height,
                expected: chain_id,
                got: h.chain_id,
            });
        }
        if h.height != tip_height + 1 {
            return Err(BlockError::WrongHeight {
                expected: tip_height + 1,
                got: h.height,
            });
        }
        if h.prev_hash != tip_hash {
            return Err(BlockError::BrokenLink {
                height: h.height,
                expected: tip_hash,
                got: h.prev_hash,
            });
        }
        if h.difficulty != difficulty {
            return Err(BlockError::WrongDifficulty {
                height: h.height,
                expected: difficulty,
                got: h.difficulty,
            });
        }
        self.verify_contents()
    }

    /// Checks that this block's time is not before its parent's
    /// (`parent_ms`): a block's time decides which signed transactions
    /// have expired, and a leader must not be able to turn it back.
    pub fn verify_time_after(&self, parent_ms: u64) -> Result<(), BlockError> {
        let h = &self.header;
        if h.timestamp_ms < parent_ms {
            return Err(BlockError::TimeBackwards {
                height: h.height,
                got: h.timestamp_ms,
                parent: parent_ms,
            });
        }
        Ok(())
    }

    /// Size of the block's canonical encoding, for size limits.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.txs.iter().map(Transaction::encoded_len).sum::<usize>()
    }
}

/// Merkle root over the transactions' leaf hashes.
pub fn merkle_root_of(txs: &[Transaction]) -> Hash32 {
    let leaves: Vec<Hash32> = txs.iter().map(Transaction::hash).collect();
    merkle::root(&leaves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::TxId;
    use proptest::prelude::*;

    fn transfer(i: u64) -> Transaction {
        Transaction::Transfer {
            id: TxId::new(format!("t{i}")).unwrap(),
            from: 1,
            to: 2,
            amount: i + 1,
            expires_ms: 0,
            signature: crate::ledger::Signature::NONE,
        }
    }

    fn block(prev: Hash32, height: u64, n: u64) -> Block {
        Block::new(Hash32([7; 32]), height, prev, 1, 8, (0..n).map(transfer).collect()).mined()
    }

    #[test]
    fn mined_block_verifies_and_meets_difficulty() {
        let b = block(Hash32([1; 32]), 5, 3);
        let hash = b.verify_extends(Hash32([7; 32]), 8, 4, Hash32([1; 32])).unwrap();
        assert!(hash.leading_zero_bits() >= 8);
    }

    proptest! {
        #[test]
        fn the_searchs_hash_is_the_headers_hash(
            chain in any::<[u8; 32]>(),
            prev in any::<[u8; 32]>(),
            height in any::<u64>(),
            timestamp in any::<u64>(),
            nonce in any::<u64>(),
            difficulty in 0u8..=32,
        ) {
            let mut header = Block::new(Hash32(chain), height, Hash32(prev), timestamp, difficulty, vec![]).header;
            let search = NonceSearch::new(&header);
            header.nonce = nonce;
            prop_assert_eq!(search.hash_at(nonce), header.hash());
            let bits = header.hash().leading_zero_bits();
            let mut state = [0u32; 8];
            for (w, chunk) in state.iter_mut().zip(header.hash().0.chunks_exact(4)) {
                *w = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
            prop_assert_eq!(NonceSearch::zero_bits(&state), bits);
        }
    }

    #[test]
    fn mining_finds_the_first_nonce_a_full_hash_accepts() {
        for difficulty in [0, 4, 10] {
            let mut b = Block::new(
                Hash32([7; 32]),
                3,
                Hash32([2; 32]),
                1,
                difficulty,
                (0..4).map(transfer).collect(),
            );
            let mut reference = b.header.clone();
            while reference.hash().leading_zero_bits() < u32::from(difficulty) {
                reference.nonce += 1;
            }
            b.header.mine();
            assert_eq!(b.header.nonce, reference.nonce, "difficulty {difficulty}");
        }
    }

    #[test]
    fn mining_any_nonce_meets_the_difficulty_with_one_thread_or_two() {
        for difficulty in [0, 4, PARALLEL_MINING_FROM, 12] {
            for seed in 0..8u64 {
                let b = Block::new(
                    Hash32([7; 32]),
                    3,
                    Hash32([seed as u8; 32]),
                    seed,
                    difficulty,
                    (0..4).map(transfer).collect(),
                )
                .mined_any();
                assert!(
                    b.hash().leading_zero_bits() >= u32::from(difficulty),
                    "difficulty {difficulty}, seed {seed}"
                );
            }
        }
    }

    #[test]
    fn only_the_genesis_block_may_exceed_the_transaction_cap() {
        let txs: Vec<Transaction> = (0..MAX_BLOCK_TXS as u64 + 1)
            .map(|account| Transaction::Allocation {
                account,
                amount: 1,
                public_key: crate::ledger::PublicKey([0; 32]),
            })
            .collect();
        let genesis = Block::new(Hash32([7; 32]), 0, Hash32::ZERO, 1, 0, txs.clone());
        assert!(genesis.verify_contents().is_ok());
        let later = Block::new(Hash32([7; 32]), 1, Hash32([1; 32]), 1, 0, txs);
        assert!(matches!(
            later.verify_contents(),
            Err(BlockError::TooManyTxs { height: 1, .. })
        ));
    }

    #[test]
    fn a_sets_items_count_against_the_transaction_cap() {
        let set = |n: usize| Transaction::Set {
            items: (0..n as u64).map(transfer).collect(),
        };
        let sets = MAX_BLOCK_TXS / crate::ledger::MAX_SET_ITEMS;
        let full: Vec<Transaction> = (0..sets).map(|_| set(crate::ledger::MAX_SET_ITEMS)).collect();
        let ok = Block::new(Hash32([7; 32]), 1, Hash32([1; 32]), 1, 0, full.clone());
        assert!(ok.verify_contents().is_ok());
        let mut over = full;
        over.push(set(1));
        let over = Block::new(Hash32([7; 32]), 1, Hash32([1; 32]), 1, 0, over);
        assert!(matches!(
            over.verify_contents(),
            Err(BlockError::TooManyTxs { count, .. }) if count == MAX_BLOCK_TXS + 1
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let b = block(Hash32::ZERO, 1, 3);
        let mut t = b.clone();
        t.txs[1] = transfer(99);
        assert_eq!(t.verify_contents(), Err(BlockError::MerkleMismatch { height: 1 }));

        let mut t = b.clone();
        // A changed nonce almost never still meets the work; step until it does not.
        while t.hash().leading_zero_bits() >= 8 {
            t.header.nonce += 1;
        }
        assert!(matches!(
            t.verify_contents(),
            Err(BlockError::InsufficientWork { need: 8, .. })
        ));

        let mut t = b.clone();
        t.txs.pop();
        assert!(matches!(t.verify_contents(), Err(BlockError::TxCountMismatch { .. })));
    }

    #[test]
    fn link_errors_are_precise() {
        let b = block(Hash32([1; 32]), 5, 1);
        let chain = Hash32([7; 32]);
        assert!(matches!(
            b.verify_extends(chain, 8, 4, Hash32([2; 32])),
            Err(BlockError::BrokenLink { height: 5, .. })
        ));
        assert!(matches!(
            b.verify_extends(chain, 8, 5, Hash32([1; 32])),
            Err(BlockError::WrongHeight { expected: 6, got: 5 })
        ));
        assert!(matches!(
            b.verify_extends(Hash32([9; 32]), 8, 4, Hash32([1; 32])),
            Err(BlockError::WrongChain { .. })
        ));
        assert!(matches!(
            b.verify_extends(chain, 9, 4, Hash32([1; 32])),
            Err(BlockError::WrongDifficulty { .. })
        ));
    }

    #[test]
    fn header_encoding_has_fixed_length_and_is_json_round_trippable() {
        let b = block(Hash32::ZERO, 1, 2);
        assert_eq!(b.header.encode().len(), HEADER_LEN);
        let json = serde_json::to_string(&b).unwrap();
        let back: Block = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.hash(), b.hash());
        let bin = bincode::serialize(&b).unwrap();
        assert_eq!(bincode::deserialize::<Block>(&bin).unwrap(), b);
    }

    proptest! {
        #[test]
        fn every_header_field_is_hashed(field in 0usize..9, delta in 1u64..1000) {
            let b = Block::new(Hash32([3; 32]), 10, Hash32([4; 32]), 100, 0, vec![transfer(1)]);
            let mut h = b.header.clone();
            match field {
                0 => h.version = h.version.wrapping_add(delta as u16 | 1),
                1 => h.chain_id.0[0] ^= (delta as u8) | 1,
                2 => h.height += delta,
                3 => h.prev_hash.0[31] ^= (delta as u8) | 1,
                4 => h.merkle_root.0[5] ^= (delta as u8) | 1,
                5 => h.timestamp_ms += delta,
                6 => h.difficulty = h.difficulty.wrapping_add(delta as u8 | 1),
                7 => h.tx_count += delta as u32,
                _ => h.nonce += delta,
            }
            prop_assert_ne!(h.hash(), b.header.hash());
        }
    }
}
