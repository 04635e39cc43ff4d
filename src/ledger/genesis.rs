//! Genesis: the accounts, opening balances, difficulty and initial transfers
//! every node derives its first blocks from. The same file gives byte-identical
//! blocks on every node: no clock and no randomness go into them.

use super::block::{MAX_BLOCK_TXS, MAX_DIFFICULTY};
use super::keys::{AccountKey, AccountKeys, PublicKey, Signature};
use super::rules::{self, RejectReason};
use super::{AccountId, Amount, Block, Hash32, Transaction, TxId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Difficulty of the shipped `first_blockchain.json` and of generated genesis files.
pub const DEFAULT_DIFFICULTY: u8 = 12;

/// Most accounts a genesis file may open.
pub const MAX_GENESIS_ACCOUNTS: usize = 10_000_000;
/// Most initial transfers a genesis file may hold.
pub const MAX_GENESIS_TRANSFERS: usize = 100_000;
/// Most keys of each role (auditors, registrars, issuers) a genesis file may name.
pub const MAX_ROLE_KEYS: usize = 256;
/// Initial transfers per genesis block.
const GENESIS_TRANSFERS_PER_BLOCK: usize = 4096;

/// `first_blockchain.json`, as written by people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// Proof-of-work difficulty (leading zero bits) of every block; 0 disables it.
    pub difficulty: u8,
    /// Accounts and their opening balances.
    pub accounts: Vec<GenesisAccount>,
    /// Transfers applied right after the opening balances, as block 1 onwards.
    #[serde(default)]
    pub transfers: Vec<GenesisTransfer>,
    /// Keys that may sign audited balance checks of any account, as
    /// auditors 0, 1, ... (64 hex digits each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auditors: Vec<PublicKey>,
    /// Keys that may open, freeze and unfreeze accounts, as registrars 0, 1, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registrars: Vec<PublicKey>,
    /// Keys that may issue and redeem money, as issuers 0, 1, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<PublicKey>,
    /// 64 random hex digits (`bank-server genesis` writes them), so that
    /// two files with the same accounts still make different chains: a
    /// signature is good on one chain only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub id: AccountId,
    pub balance: Amount,
    /// The ed25519 key that signs the account's transfers (64 hex digits).
    pub public_key: PublicKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisTransfer {
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Amount,
}

/// Why a genesis file cannot start a chain.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read.
    #[error("cannot read genesis file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file is not valid genesis JSON.
    #[error("invalid genesis JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No accounts.
    #[error("genesis opens no accounts")]
    NoAccounts,
    /// Too many accounts or transfers.
    #[error("genesis holds {count} {what}; at most {max} allowed")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    /// An account id appears twice.
    #[error("genesis opens account {0} twice")]
    DuplicateAccount(AccountId),
    /// The difficulty is too high to mine.
    #[error("genesis difficulty {0} exceeds the maximum of {MAX_DIFFICULTY}")]
    Difficulty(u8),
    /// The sum of opening balances does not fit in u64.
    #[error("genesis balances sum to more than {}", u64::MAX)]
    TotalOverflow,
    /// An account's public key is not an ed25519 key.
    #[error("genesis account {account}: {reason}")]
    BadKey {
        account: AccountId,
        reason: crate::ledger::keys::KeyError,
    },
    /// A role key (auditor, registrar, issuer) is not an ed25519 key.
    #[error("genesis {role} {index}: {reason}")]
    BadRoleKey {
        role: &'static str,
        index: usize,
        reason: crate::ledger::keys::KeyError,
    },
    /// An initial transfer breaks a rule.
    #[error("genesis transfer #{index} is invalid: {reason}")]
    BadTransfer { index: usize, reason: RejectReason },
}

/// A validated genesis and the blocks it produces.
///
/// ```
/// use bank_ledger::ledger::{genesis::GenesisFile, Genesis};
/// let g = Genesis::build(GenesisFile::dev(4, &[(1, 50), (2, 0)], &[(1, 2, 20)])).unwrap();
/// assert_eq!(g.blocks.len(), 2); // block 0: opening balances; block 1: the transfer
/// assert_eq!(g.balances[&2], 20);
/// assert!(g.chain_id().leading_zero_bits() >= 4);
/// ```
#[derive(Debug, Clone)]
pub struct Genesis {
    pub file: GenesisFile,
    /// Block 0 (opening balances) and the blocks of initial transfers.
    pub blocks: Vec<Block>,
    /// Balances after all genesis blocks.
    pub balances: BTreeMap<AccountId, Amount>,
    /// Sum of all balances: what conservation of money is checked against.
    pub total: Amount,
}

impl GenesisFile {
    /// `accounts` accounts numbered from 0, each opening with `balance` and
    /// holding the key `key(id)` gives.
    pub fn generated(
        accounts: u64,
        balance: Amount,
        difficulty: u8,
        mut key: impl FnMut(AccountId) -> PublicKey,
    ) -> GenesisFile {
        GenesisFile {
            difficulty,
            accounts: (0..accounts)
                .map(|id| GenesisAccount {
                    id,
                    balance,
                    public_key: key(id),
                })
                .collect(),
            transfers: Vec::new(),
            auditors: Vec::new(),
            registrars: Vec::new(),
            issuers: Vec::new(),
            nonce: None,
        }
    }

    /// Accounts with the public dev keys ([`AccountKey::dev`]): anyone can
    /// spend from them. For demos, tests and benchmarks.
    pub fn dev(difficulty: u8, accounts: &[(AccountId, Amount)], transfers: &[(AccountId, AccountId, Amount)]) -> Self {
        GenesisFile {
            difficulty,
            accounts: accounts
                .iter()
                .map(|&(id, balance)| GenesisAccount {
                    id,
                    balance,
                    public_key: AccountKey::dev(id).public(),
                })
                .collect(),
            transfers: transfers
                .iter()
                .map(|&(from, to, amount)| GenesisTransfer { from, to, amount })
                .collect(),
            auditors: Vec::new(),
            registrars: Vec::new(),
            issuers: Vec::new(),
            nonce: None,
        }
    }
}

impl GenesisFile {
    /// What block 0 holds as its `prev_hash`, so the chain id commits to
    /// the whole file: zero for a file of accounts alone (the chain ids of
    /// such files stay what they were), else the hash of nonce, auditors
    /// and initial transfers. Without the transfers, a node given a file
    /// with other transfers would take other blocks as genesis's own, and
    /// skip their signature checks, under the same chain id.
    fn commitment(&self) -> Hash32 {
        if self.auditors.is_empty()
            && self.nonce.is_none()
            && self.transfers.is_empty()
            && self.registrars.is_empty()
            && self.issuers.is_empty()
        {
            return Hash32::ZERO;
        }
        let nonce = self.nonce.unwrap_or(Hash32::ZERO);
        let count = (self.auditors.len() as u64).to_be_bytes();
        let transfers: Vec<u8> = self
            .transfers
            .iter()
            .flat_map(|t| [t.from, t.to, t.amount])
            .flat_map(u64::to_be_bytes)
            .collect();
        let transfer_count = (self.transfers.len() as u64).to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![b"bank-ledger/genesis/v1", &nonce.0, &count];
        parts.extend(self.auditors.iter().map(|k| &k.0[..]));
        parts.extend([&transfer_count[..], &transfers]);
        // Only files with roles add them: the chain ids of files without
        // stay what they were.
        let role_counts = [self.registrars.len() as u64, self.issuers.len() as u64].map(u64::to_be_bytes);
        if !self.registrars.is_empty() || !self.issuers.is_empty() {
            parts.extend([&b"roles/v1"[..], &role_counts[0]]);
            parts.extend(self.registrars.iter().map(|k| &k.0[..]));
            parts.push(&role_counts[1]);
            parts.extend(self.issuers.iter().map(|k| &k.0[..]));
        }
        Hash32::digest(&parts)
    }
}

impl Genesis {
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        Genesis::build(serde_json::from_str(text)?)
    }

    pub fn build(file: GenesisFile) -> Result<Genesis, GenesisError> {
        if file.accounts.is_empty() {
            return Err(GenesisError::NoAccounts);
        }
        if file.accounts.len() > MAX_GENESIS_ACCOUNTS {
            return Err(GenesisError::TooMany {
                what: "accounts",
                count: file.accounts.len(),
                max: MAX_GENESIS_ACCOUNTS,
            });
        }
        if file.transfers.len() > MAX_GENESIS_TRANSFERS {
            return Err(GenesisError::TooMany {
                what: "transfers",
                count: file.transfers.len(),
                max: MAX_GENESIS_TRANSFERS,
            });
        }
        for (what, keys) in [
            ("auditors", &file.auditors),
            ("registrars", &file.registrars),
            ("issuers", &file.issuers),
        ] {
            if keys.len() > MAX_ROLE_KEYS {
                return Err(GenesisError::TooMany {
                    what,
                    count: keys.len(),
                    max: MAX_ROLE_KEYS,
                });
            }
        }
        if file.difficulty > MAX_DIFFICULTY {
            return Err(GenesisError::Difficulty(file.difficulty));
        }
        let mut seen = BTreeSet::new();
        let mut total: Amount = 0;
        for a in &file.accounts {
            if !seen.insert(a.id) {
                return Err(GenesisError::DuplicateAccount(a.id));
            }
            total = total.checked_add(a.balance).ok_or(GenesisError::TotalOverflow)?;
        }

        let mut book = rules::Book::default();
        let allocations: Vec<Transaction> = file
            .accounts
            .iter()
            .map(|a| Transaction::Allocation {
                account: a.id,
                amount: a.balance,
                public_key: a.public_key,
            })
            .collect();
        for tx in &allocations {
            // Cannot fail: ids are unique and the total fits in u64.
            rules::apply(&mut book, tx, rules::At { height: 0, block_ms: 0 })
                .map_err(|_| GenesisError::TotalOverflow)?;
        }
        let block0 = Block::new(Hash32::ZERO, 0, file.commitment(), 0, file.difficulty, allocations).mined();
        let chain_id = block0.hash();

        let mut blocks = vec![block0];
        let mut index = 0usize;
        for chunk in file.transfers.chunks(GENESIS_TRANSFERS_PER_BLOCK.min(MAX_BLOCK_TXS)) {
            let mut txs = Vec::with_capacity(chunk.len());
            for t in chunk {
                index += 1;
                let tx = Transaction::Transfer {
                    id: genesis_tx_id(index),
                    from: t.from,
                    to: t.to,
                    amount: t.amount,
                    // Genesis itself defines these transfers; nobody signs
                    // them, and they never expire.
                    expires_ms: 0,
                    signature: Signature::NONE,
                };
                let at = rules::At {
                    height: blocks.len() as u64,
                    block_ms: 0,
                };
                rules::apply(&mut book, &tx, at).map_err(|reason| GenesisError::BadTransfer { index, reason })?;
                txs.push(tx);
            }
            let prev = &blocks[blocks.len() - 1];
            let block = Block::new(chain_id, prev.height() + 1, prev.hash(), 0, file.difficulty, txs).mined();
            blocks.push(block);
        }
        Ok(Genesis {
            file,
            blocks,
            balances: book.balances,
            total,
        })
    }

    /// Checks every account's key is a valid ed25519 key (~4 us each):
    /// done once, when a node creates its ledger from this genesis, since
    /// an account with a bad key could never spend.
    pub fn check_keys(&self) -> Result<(), GenesisError> {
        for a in &self.file.accounts {
            a.public_key
                .check()
                .map_err(|reason| GenesisError::BadKey { account: a.id, reason })?;
        }
        for (role, keys) in [
            ("auditor", &self.file.auditors),
            ("registrar", &self.file.registrars),
            ("issuer", &self.file.issuers),
        ] {
            for (index, k) in keys.iter().enumerate() {
                k.check()
                    .map_err(|reason| GenesisError::BadRoleKey { role, index, reason })?;
            }
        }
        Ok(())
    }

    /// Hash of block 0: the chain's identity.
    pub fn chain_id(&self) -> Hash32 {
        self.blocks[0].hash()
    }

    pub fn difficulty(&self) -> u8 {
        self.file.difficulty
    }

    /// Height of the last block genesis defines: blocks up to it are fixed
    /// by the file; every later transfer is signed.
    pub fn last_height(&self) -> u64 {
        self.blocks.len() as u64 - 1
    }

    /// The accounts' and the role keys' public keys.
    pub fn keys(&self) -> AccountKeys {
        AccountKeys::new(self.file.accounts.iter().map(|a| (a.id, a.public_key)).collect())
            .with_auditors(self.file.auditors.clone())
            .with_roles(self.file.registrars.clone(), self.file.issuers.clone())
    }
}

/// Fills in the dev key ([`AccountKey::dev`]) of every account of a genesis
/// JSON text that names no `public_key`: for tests and throwaway demos.
/// Text that is not genesis-shaped JSON is returned unchanged.
pub fn with_dev_keys(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_string();
    };
    if let Some(accounts) = v.get_mut("accounts").and_then(|a| a.as_array_mut()) {
        for a in accounts {
            let id = a.get("id").and_then(|i| i.as_u64());
            if let (Some(id), Some(obj)) = (id, a.as_object_mut()) {
                obj.entry("public_key")
                    .or_insert_with(|| AccountKey::dev(id).public().to_hex().into());
            }
        }
    }
    v.to_string()
}

/// Initial transfers are numbered from 1 in file order: `genesis-1`, `genesis-2`, ...
fn genesis_tx_id(index: usize) -> TxId {
    TxId::new(format!("genesis-{index}")).unwrap_or_else(|_| unreachable!("genesis ids are short"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = r#"{
        "difficulty": 8,
        "accounts": [{"id":0,"balance":100},{"id":1,"balance":100},{"id":2,"balance":100}],
        "transfers": [{"from":0,"to":1,"amount":5},{"from":1,"to":2,"amount":10},{"from":2,"to":0,"amount":20}]
    }"#;

    #[test]
    fn demo_genesis_matches_the_original() {
        let g = Genesis::from_json(&with_dev_keys(DEMO)).unwrap();
        assert_eq!(g.blocks.len(), 2);
        assert_eq!(g.balances, BTreeMap::from([(0, 115), (1, 95), (2, 90)]));
        assert_eq!(g.total, 300);
        let b1 = &g.blocks[1];
        b1.verify_extends(g.chain_id(), 8, 0, g.blocks[0].hash()).unwrap();
    }

    #[test]
    fn keys_are_part_of_the_chain_id() {
        let a = Genesis::from_json(&with_dev_keys(DEMO)).unwrap();
        let mut file = a.file.clone();
        file.accounts[0].public_key = AccountKey::dev(77).public();
        assert_ne!(Genesis::build(file).unwrap().chain_id(), a.chain_id());
        assert_eq!(a.keys().get(1), Some(AccountKey::dev(1).public()));
        assert_eq!(a.last_height(), 1);
    }

    #[test]
    fn same_file_same_blocks_other_file_other_chain() {
        let a = Genesis::from_json(&with_dev_keys(DEMO)).unwrap();
        let b = Genesis::from_json(&with_dev_keys(DEMO)).unwrap();
        assert_eq!(a.blocks, b.blocks);
        let other =
            Genesis::from_json(&with_dev_keys(&DEMO.replace("\"balance\":100}]", "\"balance\":101}]"))).unwrap();
        assert_ne!(a.chain_id(), other.chain_id());
    }

    #[test]
    fn the_nonce_the_auditors_and_the_transfers_are_part_of_the_chain_id() {
        let plain = Genesis::from_json(&with_dev_keys(DEMO)).unwrap();
        // The initial transfers are part of it too.
        let mut edited = plain.file.clone();
        edited.transfers[0].amount += 1;
        assert_ne!(Genesis::build(edited).unwrap().chain_id(), plain.chain_id());
        let accounts_only =
            Genesis::from_json(&with_dev_keys(r#"{"difficulty":0,"accounts":[{"id":5,"balance":1}]}"#)).unwrap();
        assert_eq!(accounts_only.blocks[0].header.prev_hash, Hash32::ZERO);
        let with = |nonce: Option<Hash32>, auditors: Vec<PublicKey>| {
            let mut file = plain.file.clone();
            file.nonce = nonce;
            file.auditors = auditors;
            let g = Genesis::build(file).unwrap();
            // Through JSON and back: the same chain.
            let again = Genesis::from_json(&serde_json::to_string(&g.file).unwrap()).unwrap();
            assert_eq!(again.chain_id(), g.chain_id());
            g.chain_id()
        };
        let a = with(Some(Hash32([1; 32])), vec![]);
        let b = with(Some(Hash32([2; 32])), vec![]);
        let c = with(Some(Hash32([1; 32])), vec![AccountKey::dev(9).public()]);
        let d = with(None, vec![AccountKey::dev(9).public()]);
        let all = [plain.chain_id(), a, b, c, d];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        let mut file = plain.file.clone();
        file.auditors = vec![AccountKey::dev(9).public()];
        assert_eq!(
            Genesis::build(file)
                .unwrap()
                .keys()
                .key_of(crate::ledger::Signer::Auditor(0)),
            Some(AccountKey::dev(9).public())
        );
    }

    #[test]
    fn empty_transfer_list_gives_only_the_genesis_block() {
        let g = Genesis::from_json(&with_dev_keys(
            r#"{"difficulty":0,"accounts":[{"id":5,"balance":1}],"transfers":[]}"#,
        ))
        .unwrap();
        assert_eq!(g.blocks.len(), 1);
    }

    #[test]
    fn invalid_files_are_refused_with_a_reason() {
        let bad = |s: &str| Genesis::from_json(&with_dev_keys(s)).unwrap_err().to_string();
        assert!(bad(r#"{"difficulty":0,"accounts":[]}"#).contains("no accounts"));
        assert!(
            bad(r#"{"difficulty":0,"accounts":[{"id":1,"balance":1},{"id":1,"balance":2}]}"#)
                .contains("account 1 twice")
        );
        assert!(bad(r#"{"difficulty":99,"accounts":[{"id":1,"balance":1}]}"#).contains("difficulty"));
        assert!(
            bad(r#"{"difficulty":0,"accounts":[{"id":1,"balance":18446744073709551615},{"id":2,"balance":1}]}"#)
                .contains("sum")
        );
        assert!(bad(
            r#"{"difficulty":0,"accounts":[{"id":1,"balance":1},{"id":2,"balance":0}],"transfers":[{"from":1,"to":2,"amount":2}]}"#
        )
        .contains("genesis transfer #1 is invalid: insufficient funds"));
        assert!(bad(r#"{"difficulty":0,"accounts":[{"id":1,"balance":1}],"extra":1}"#).contains("unknown field"));
        let no_key = Genesis::from_json(r#"{"difficulty":0,"accounts":[{"id":1,"balance":1}]}"#).unwrap_err();
        assert!(no_key.to_string().contains("missing field `public_key`"), "{no_key}");
        let bad_key = r#"{"difficulty":0,"accounts":[{"id":1,"balance":1,"public_key":"abcd"}]}"#;
        let err = Genesis::from_json(bad_key).unwrap_err().to_string();
        assert!(err.contains("bad public key"), "{err}");
        // 32 bytes, but not a curve point: refused when a ledger is created.
        let not_a_point = format!(
            r#"{{"difficulty":0,"accounts":[{{"id":1,"balance":1,"public_key":"{}"}}]}}"#,
            "02".to_string() + &"00".repeat(30) + "80"
        );
        let g = Genesis::from_json(&not_a_point).unwrap();
        assert!(g.check_keys().unwrap_err().to_string().contains("genesis account 1"));
        Genesis::from_json(&with_dev_keys(DEMO)).unwrap().check_keys().unwrap();
        // The identity point: a valid encoding, but of a small-order key.
        let weak = format!(
            r#"{{"difficulty":0,"accounts":[{{"id":1,"balance":1,"public_key":"01{}"}}]}}"#,
            "00".repeat(31)
        );
        let err = Genesis::from_json(&weak).unwrap().check_keys().unwrap_err();
        assert!(err.to_string().contains("weak"), "{err}");
    }
}
