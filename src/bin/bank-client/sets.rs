//! `transfer-set FILE`: transfers, issues, redeems, holds, posts and voids
//! that commit together in one block, or not at all. The file holds one
//! item per line (JSON Lines); each item is signed with its signer's key
//! from the keystore, over the set's digest too, so no item is valid alone.

use crate::accounts::signer_key;
use crate::context::Ctx;
use crate::transfer::explain_transfer;
use anyhow::{anyhow, bail, Context};
use bank_ledger::client::{call_any, chain_id, expiry_in, request};
use bank_ledger::ledger::{set_digest, Signature, Transaction, TxId, MAX_SET_ITEMS};
use serde::Deserialize;
use serde_json::json;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Largest set file read: far more than [`MAX_SET_ITEMS`] lines need.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Default time a hold in a set waits for its post or void.
const DEFAULT_HOLD_TIMEOUT_S: u64 = 3600;

/// One line of a set file. Ids are optional (a random one is made); the
/// issuer is genesis issuer 0 unless named.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Transfer {
        from: u64,
        to: u64,
        amount: u64,
        id: Option<String>,
    },
    Issue {
        account: u64,
        amount: u64,
        #[serde(default)]
        issuer: u32,
        id: Option<String>,
    },
    Redeem {
        account: u64,
        amount: u64,
        #[serde(default)]
        issuer: u32,
        /// Signed by the account's own key: a withdrawal.
        #[serde(default)]
        by_owner: bool,
        id: Option<String>,
    },
    Hold {
        from: u64,
        to: u64,
        amount: u64,
        timeout_s: Option<u64>,
        id: Option<String>,
    },
    Post {
        hold_id: String,
        from: u64,
        to: u64,
        amount: u64,
        id: Option<String>,
    },
    Void {
        hold_id: String,
        from: u64,
        to: u64,
        id: Option<String>,
    },
}

impl Line {
    /// The transaction, unsigned, valid until `expires_ms`.
    fn transaction(self, expires_ms: u64) -> anyhow::Result<Transaction> {
        let id = |id: Option<String>| -> anyhow::Result<TxId> {
            Ok(match id {
                Some(id) => TxId::new(id)?,
                None => TxId::random(),
            })
        };
        let signature = Signature::NONE;
        Ok(match self {
            Line::Transfer {
                from,
                to,
                amount,
                id: i,
            } => Transaction::Transfer {
                id: id(i)?,
                from,
                to,
                amount,
                expires_ms,
                signature,
            },
            Line::Issue {
                account,
                amount,
                issuer,
                id: i,
            } => Transaction::Issue {
                id: id(i)?,
                account,
                amount,
                issuer,
                expires_ms,
                signature,
            },
            Line::Redeem {
                account,
                amount,
                issuer,
                by_owner,
                id: i,
            } => Transaction::Redeem {
                id: id(i)?,
                account,
                amount,
                issuer: (!by_owner).then_some(issuer),
                expires_ms,
                signature,
            },
            Line::Hold {
                from,
                to,
                amount,
                timeout_s,
                id: i,
            } => Transaction::Hold {
                id: id(i)?,
                from,
                to,
                amount,
                timeout_ms: timeout_s.unwrap_or(DEFAULT_HOLD_TIMEOUT_S).saturating_mul(1000),
                expires_ms,
                signature,
            },
            Line::Post {
                hold_id,
                from,
                to,
                amount,
                id: i,
            } => Transaction::Post {
                id: id(i)?,
                hold_id: TxId::new(hold_id)?,
                from,
                to,
                amount,
                expires_ms,
                signature,
            },
            Line::Void {
                hold_id,
                from,
                to,
                id: i,
            } => Transaction::Void {
                id: id(i)?,
                hold_id: TxId::new(hold_id)?,
                from,
                to,
                expires_ms,
                signature,
            },
        })
    }
}

/// The items of the set file at `path`, unsigned, each valid until `expires_ms`.
fn read_items(path: &Path, expires_ms: u64) -> anyhow::Result<Vec<Transaction>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        bail!(
            "{} is over {} KiB: a set holds at most {MAX_SET_ITEMS} items",
            path.display(),
            MAX_FILE_BYTES >> 10
        );
    }
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if items.len() == MAX_SET_ITEMS {
            bail!(
                "{} holds more than {MAX_SET_ITEMS} items, the most a set may",
                path.display()
            );
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| anyhow!("{} line {}: {e}", path.display(), n + 1))?;
        items.push(
            parsed
                .transaction(expires_ms)
                .map_err(|e| anyhow!("{} line {}: {e}", path.display(), n + 1))?,
        );
    }
    if items.is_empty() {
        bail!("{} holds no items", path.display());
    }
    Ok(items)
}

/// `transfer-set FILE`: signs every item with its signer's key and submits
/// the set; prints the block that holds it, or which item failed and why.
pub async fn transfer_set(ctx: &Ctx, path: &Path, lifetime: Duration) -> anyhow::Result<()> {
    let mut items = read_items(path, expiry_in(lifetime))?;
    let chain = chain_id(&ctx.servers, ctx.timeout, ctx.chain_id)
        .await
        .map_err(crate::errors::explain)?;
    let digest = set_digest(&items);
    for (i, item) in items.iter_mut().enumerate() {
        let signer = item.signer().ok_or_else(|| anyhow!("item {} has no signer", i + 1))?;
        let key = signer_key(ctx, signer).with_context(|| format!("item {}", i + 1))?;
        let signature = key.sign_set_item(chain, digest, item);
        item.set_signature(signature);
    }
    let ids: Vec<String> = items
        .iter()
        .map(|t| t.id().map(TxId::to_string).unwrap_or_default())
        .collect();
    let tx = Transaction::Set { items };
    let msg = bank_ledger::ops::set_request(&tx).ok_or_else(|| anyhow!("the set has no SubmitSet form"))?;
    let first = TxId::new(ids.first().cloned().unwrap_or_default()).unwrap_or_else(|_| TxId::random());
    let r = call_any(&ctx.servers, ctx.timeout, |mut c, t| {
        let msg = msg.clone();
        async move { Ok(c.submit_set(request(msg, t)).await?.into_inner()) }
    })
    .await
    .map_err(|s| explain_transfer(s, &first))?;
    let kinds: Vec<&str> = tx.items().iter().map(Transaction::kind).collect();
    ctx.print(
        || {
            json!({"kind": "set", "tx_ids": ids, "kinds": kinds, "height": r.height,
                   "block_hash": r.block_hash, "status": "committed"})
        },
        || {
            out!(
                "committed transfer set of {} items in block {} {}",
                ids.len(),
                r.height,
                r.block_hash
            );
            for (i, (id, kind)) in ids.iter().zip(&kinds).enumerate() {
                out!("  {:>3}  {kind:<8} {id}", i + 1);
            }
        },
    );
    Ok(())
}
