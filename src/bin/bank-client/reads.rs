//! Reads of the ledger: balances, a transaction, an account's history.

use crate::chain::describe_tx;
use crate::context::Ctx;
use crate::errors::explain;
use anyhow::Context;
use bank_ledger::client::{chain_id, request, signed_balance_check};
use bank_ledger::keystore;
use bank_ledger::ledger::TxId;
use bank_ledger::proto::bank::{AccountHistoryRequest, BalanceRequest, BalancesRequest, GetTxRequest};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Who signs a recorded balance check.
pub enum CheckSigner {
    /// The account's key, from the keystore.
    Owner,
    /// Genesis auditor N, with the key in this file.
    Auditor(u32, PathBuf),
}

/// `balance`: the linearizable balance of `account`, or with `signer` an
/// audited check recorded in a block.
pub async fn balance(ctx: &Ctx, account: u64, signer: Option<CheckSigner>, id: Option<String>) -> anyhow::Result<()> {
    let msg = match signer {
        None => BalanceRequest {
            account,
            ..Default::default()
        },
        Some(signer) => {
            // The id is chosen here, once: retries are then idempotent.
            let tx_id = match id {
                Some(id) => TxId::new(id)?,
                None => TxId::random(),
            };
            let (key, auditor) = match signer {
                CheckSigner::Owner => (crate::transfer::load_key(&ctx.keystore, account)?, None),
                CheckSigner::Auditor(n, path) => (keystore::load_key(&path)?, Some(n)),
            };
            let chain = chain_id(&ctx.servers, ctx.timeout, ctx.chain_id)
                .await
                .map_err(explain)?;
            signed_balance_check(&key, chain, &tx_id, account, auditor)
        }
    };
    let r = ctx
        .call(|mut c, t| {
            let msg = msg.clone();
            async move { Ok(c.balance(request(msg, t)).await?.into_inner()) }
        })
        .await?;
    match (ctx.json, &r.record) {
        (true, None) => out!("{}", json!({"account": r.account, "balance": r.balance})),
        (true, Some(rec)) => out!(
            "{}",
            json!({"account": r.account, "balance": r.balance, "tx_id": rec.tx_id,
                   "height": rec.height, "block_hash": rec.block_hash})
        ),
        (false, None) => out!("account {}: {}", r.account, r.balance),
        (false, Some(rec)) => out!(
            "account {}: {} (audited as tx {} in block {} {})",
            r.account,
            r.balance,
            rec.tx_id,
            rec.height,
            rec.block_hash
        ),
    }
    Ok(())
}

/// `balances`: every balance, read atomically at one applied index, and
/// their total.
pub async fn balances(ctx: &Ctx) -> anyhow::Result<()> {
    let r = ctx
        .call(|mut c, t| async move { Ok(c.balances(request(BalancesRequest {}, t)).await?.into_inner()) })
        .await?;
    let total: u128 = r.balances.iter().map(|b| u128::from(b.balance)).sum();
    ctx.print(
        || {
            let balances: serde_json::Map<String, Value> = r
                .balances
                .iter()
                .map(|b| (b.account.to_string(), json!(b.balance)))
                .collect();
            json!({"height": r.height, "tip_hash": r.tip_hash, "applied_index": r.applied_index,
                   "total": total, "genesis_total": r.genesis_total, "issued": r.issued,
                   "redeemed": r.redeemed, "balances": balances})
        },
        || {
            for b in &r.balances {
                out!("account {:>8}: {}", b.account, b.balance);
            }
            out!(
                "total {total} at height {} (log index {}): genesis {} + issued {} - redeemed {}",
                r.height,
                r.applied_index,
                r.genesis_total,
                r.issued,
                r.redeemed
            );
        },
    );
    Ok(())
}

/// `tx`: a committed transaction by id: block, outcome and content.
pub async fn tx(ctx: &Ctx, id: String, account: Option<u64>, auditor: Option<u32>) -> anyhow::Result<()> {
    let tx_id = TxId::new(id)?.to_string();
    let r = ctx
        .call(|mut c, t| {
            let msg = GetTxRequest {
                tx_id: tx_id.clone(),
                account,
                auditor,
            };
            async move { Ok(c.get_tx(request(msg, t)).await?.into_inner()) }
        })
        .await?;
    let v = parse_json(&r.json)?;
    ctx.print(
        || &v,
        || {
            out!("tx       {}", v["tx_id"].as_str().unwrap_or("?"));
            out!("what     {}", describe_tx(&v["tx"], &v["balance"]));
            let reason = v["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
            out!("status   {}{reason}", v["status"].as_str().unwrap_or("?"));
            out!("block    {} {}", v["height"], v["block_hash"].as_str().unwrap_or("?"));
            let hold = &v["hold"];
            match hold["state"].as_str() {
                Some("pending") => out!(
                    "hold     pending: {} for account {} until Unix ms {}",
                    hold["amount"],
                    hold["to"],
                    hold["deadline_ms"]
                ),
                Some("posted") => out!("hold     posted: {} in block {}", hold["amount"], hold["height"]),
                Some("voided") => out!("hold     voided in block {}", hold["height"]),
                Some("released") => out!("hold     released at its timeout"),
                _ => {}
            }
        },
    );
    Ok(())
}

/// `history`: the transactions touching `account`, newest first, a page of
/// `limit` entries below height `before`.
pub async fn history(ctx: &Ctx, account: u64, limit: u32, before: Option<u64>) -> anyhow::Result<()> {
    let r = ctx
        .call(|mut c, t| {
            let msg = AccountHistoryRequest {
                account,
                limit,
                before_height: before,
            };
            async move { Ok(c.account_history(request(msg, t)).await?.into_inner()) }
        })
        .await?;
    let v = parse_json(&r.json)?;
    ctx.print(
        || &v,
        || {
            out!("account {}: balance {}", account, v["balance"]);
            out!("{:>8}  {:<36} {:<10} WHAT", "HEIGHT", "TX", "STATUS");
            for e in v["entries"].as_array().into_iter().flatten() {
                let id = e["tx"]["id"].as_str().unwrap_or("-");
                let reason = e["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
                out!(
                    "{:>8}  {:<36} {:<10} {}{reason}",
                    e["height"].as_u64().unwrap_or(0),
                    id,
                    e["status"].as_str().unwrap_or("?"),
                    describe_tx(&e["tx"], &e["balance"])
                );
            }
            if let Some(b) = v["next_before"].as_u64() {
                out!("more before height {b}: bank-client history {account} --before {b}");
            }
        },
    );
    Ok(())
}

/// A JSON document a server sent.
pub fn parse_json(json: &str) -> anyhow::Result<Value> {
    serde_json::from_str(json).context("server sent malformed JSON")
}
