//! Human-readable JSON views of a node's state under `server_<id>_states/`.
//!
//! sled is the source of truth; these files are for people and scripts. Each
//! costs O(1) per block: the chain is append-only JSON Lines, the small files
//! are replaced atomically (write a temp file, then rename).

use crate::ledger::TxRecord;
use crate::ledger::{Block, Hash32};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const CHAIN_FILE: &str = "chain.jsonl";
pub const BALANCES_FILE: &str = "balances.json";
pub const RAFT_STATE_FILE: &str = "raft_state.json";

/// One line of `chain.jsonl`: the block as hashed, its hash, and what each
/// transaction did.
#[derive(Serialize)]
pub struct BlockLine<'a> {
    pub hash: Hash32,
    #[serde(flatten)]
    pub block: &'a Block,
    pub results: Vec<TxResultView>,
}

/// The outcome of one transaction in a block, for people.
#[derive(Serialize)]
pub struct TxResultView {
    /// "committed", "rejected" or "duplicate" (the id was committed earlier).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Audited balance, for balance checks; the amount posted, for posts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<u64>,
    /// Height of the earlier block, for duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_height: Option<u64>,
}

impl TxResultView {
    pub fn of(record: &TxRecord, height: u64) -> TxResultView {
        let duplicate = record.height != height;
        match &record.outcome {
            Ok(applied) => TxResultView {
                status: if duplicate { "duplicate" } else { "committed" },
                reason: None,
                balance: applied.balance,
                first_height: duplicate.then_some(record.height),
            },
            Err(reason) => TxResultView {
                status: if duplicate { "duplicate" } else { "rejected" },
                reason: Some(reason.to_string()),
                balance: None,
                first_height: duplicate.then_some(record.height),
            },
        }
    }
}

/// Serializes one block as its `chain.jsonl` line, newline included.
pub fn block_line(block: &Block, hash: Hash32, records: &[TxRecord]) -> Vec<u8> {
    let line = BlockLine {
        hash,
        block,
        results: records.iter().map(|r| TxResultView::of(r, block.height())).collect(),
    };
    let mut bytes =
        serde_json::to_vec(&line).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()).into_bytes());
    bytes.push(b'\n');
    bytes
}

/// The append-only chain file.
pub struct ChainView {
    path: PathBuf,
    file: File,
    len: u64,
}

impl ChainView {
    /// Opens the chain file, cutting it back to `expected_len` if a crash left
    /// lines sled never committed. Returns `None` if the file is shorter than
    /// sled says (lines were lost): the caller must rebuild it.
    pub fn open(dir: &Path, expected_len: u64) -> io::Result<Option<ChainView>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(CHAIN_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        if len < expected_len {
            return Ok(None);
        }
        if len > expected_len {
            file.set_len(expected_len)?;
        }
        Ok(Some(ChainView {
            path,
            file,
            len: expected_len,
        }))
    }

    /// Starts the chain file afresh (empty).
    pub fn create(dir: &Path) -> io::Result<ChainView> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(CHAIN_FILE);
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
        drop(file);
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(ChainView { path, file, len: 0 })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line. Not fsynced: sled holds the truth and the file is
    /// reconciled against it at start.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        self.file.write_all(line)?;
        self.len += line.len() as u64;
        Ok(())
    }
}

/// What `balances.json` shows: the balances at one tip, the supply, and
/// the entries of accounts not as genesis made them.
pub struct BalancesView {
    pub height: u64,
    pub tip: Hash32,
    pub balances: Vec<(u64, u64)>,
    pub supply: crate::ledger::Supply,
    pub accounts: Vec<(u64, crate::ledger::AccountInfo)>,
    /// What each account with money on hold holds.
    pub held: Vec<(u64, u64)>,
    pub pending_holds: usize,
}

/// Replaces `balances.json`: `{"height","tip_hash","total","issued","redeemed",
/// "balances":{"id":amount,...},"held":{"id":amount,...},"pending_holds",
/// "accounts":{"id":{"public_key","state","opened_height","key_height"},...}}`
/// (`held` names only accounts with money on hold: available is balance
/// less held), streamed (no intermediate JSON tree), atomically.
pub fn write_balances(dir: &Path, v: &BalancesView) -> io::Result<()> {
    let tmp = dir.join(format!(".{BALANCES_FILE}.tmp"));
    let total: u128 = v.balances.iter().map(|(_, b)| u128::from(*b)).sum();
    {
        let mut f = io::BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        write!(
            f,
            "{{\n  \"height\": {},\n  \"tip_hash\": \"{}\",\n  \"total\": {total},\n  \"issued\": {},\n  \"redeemed\": {},\n  \"balances\": {{",
            v.height, v.tip, v.supply.issued, v.supply.redeemed
        )?;
        for (i, (account, balance)) in v.balances.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}\n    \"{account}\": {balance}")?;
        }
        write!(f, "\n  }},\n  \"held\": {{")?;
        for (i, (account, held)) in v.held.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}\n    \"{account}\": {held}")?;
        }
        write!(
            f,
            "\n  }},\n  \"pending_holds\": {},\n  \"accounts\": {{",
            v.pending_holds
        )?;
        for (i, (account, info)) in v.accounts.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let entry = serde_json::to_string(info).map_err(io::Error::other)?;
            write!(f, "{sep}\n    \"{account}\": {entry}")?;
        }
        writeln!(f, "\n  }}\n}}")?;
        f.flush()?;
    }
    std::fs::rename(&tmp, dir.join(BALANCES_FILE))
}

/// Replaces `dir/name` with `value` as pretty JSON, atomically.
pub fn write_json_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.write_all(b"\n")?;
    }
    std::fs::rename(&tmp, dir.join(name))
}
