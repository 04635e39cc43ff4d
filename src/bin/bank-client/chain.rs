//! The chain: one block, a range of blocks, following new ones, and how a
//! block or transaction reads as text.

use crate::context::Ctx;
use anyhow::{anyhow, Context};
use bank_ledger::client::request;
use bank_ledger::proto::bank::GetBlocksRequest;
use serde_json::Value;
use std::time::Duration;

/// `block`: one block by height.
pub async fn block(ctx: &Ctx, height: u64) -> anyhow::Result<()> {
    let blocks = fetch_blocks(ctx, height, 1).await?;
    let block = blocks
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no block at height {height}"))?;
    ctx.print(|| &block, || print_block(&block));
    Ok(())
}

/// `chain`: up to `limit` blocks from height `from` on.
pub async fn chain(ctx: &Ctx, from: u64, limit: u64) -> anyhow::Result<()> {
    let blocks = Value::Array(fetch_blocks(ctx, from, limit).await?);
    ctx.print(
        || &blocks,
        || {
            for b in blocks.as_array().into_iter().flatten() {
                out!(
                    "{:>6}  {}  txs={}",
                    b["header"]["height"],
                    b["hash"].as_str().unwrap_or("?"),
                    b["txs"].as_array().map_or(0, Vec::len)
                );
            }
        },
    );
    Ok(())
}

/// `watch`: prints each new block as it is committed, from height `from`
/// (default: the next block), polling every `interval_ms`; never returns
/// but with an error.
pub async fn watch(ctx: &Ctx, from: Option<u64>, interval_ms: u64) -> anyhow::Result<()> {
    let mut next = match from {
        Some(h) => h,
        None => {
            let r = ctx
                .call(|mut c, t| async move {
                    let msg = GetBlocksRequest {
                        from_height: u64::MAX,
                        limit: 1,
                    };
                    Ok(c.get_blocks(request(msg, t)).await?.into_inner())
                })
                .await?;
            r.tip_height + 1
        }
    };
    if !ctx.json {
        out!("watching from height {next} (Ctrl+C stops)");
    }
    loop {
        // A server that goes away is retried: watching outlives failovers.
        match fetch_blocks(ctx, next, 256).await {
            Ok(blocks) => {
                for b in &blocks {
                    ctx.print(
                        || b,
                        || {
                            let ms = b["header"]["timestamp_ms"].as_u64().unwrap_or(0);
                            let day_ms = ms % 86_400_000;
                            out!(
                                "{:>8}  {}  txs={:<5} {:02}:{:02}:{:02}.{:03} UTC",
                                b["header"]["height"].as_u64().unwrap_or(0),
                                b["hash"].as_str().unwrap_or("?"),
                                b["txs"].as_array().map_or(0, Vec::len),
                                day_ms / 3_600_000,
                                day_ms / 60_000 % 60,
                                day_ms / 1000 % 60,
                                day_ms % 1000
                            );
                        },
                    );
                }
                next += blocks.len() as u64;
            }
            Err(e) => eprintln!("watch: {e}; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(interval_ms.max(50))).await;
    }
}

/// Fetches up to `limit` blocks from `from` on, page by page.
async fn fetch_blocks(ctx: &Ctx, from: u64, limit: u64) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = from;
    while (out.len() as u64) < limit {
        let want = (limit - out.len() as u64).min(256) as u32;
        let msg = GetBlocksRequest {
            from_height: next,
            limit: want,
        };
        let r = ctx
            .call(|mut c, t| async move { Ok(c.get_blocks(request(msg, t)).await?.into_inner()) })
            .await?;
        if r.blocks_json.is_empty() {
            break;
        }
        for b in r.blocks_json {
            out.push(serde_json::from_str(&b).context("server sent a malformed block")?);
            next += 1;
        }
    }
    Ok(out)
}

/// One line for a transaction's JSON (as in `chain.jsonl`).
pub fn describe_tx(tx: &Value, balance: &Value) -> String {
    match tx["type"].as_str() {
        Some("transfer") => format!("transfer {} -> {} amount {}", tx["from"], tx["to"], tx["amount"]),
        Some("balance_check") => format!("balance check of {} = {balance}", tx["account"]),
        Some("allocation") => format!("allocation to {} amount {}", tx["account"], tx["amount"]),
        Some("open_account") => format!(
            "open account {} key {} (registrar {})",
            tx["account"],
            tx["public_key"].as_str().unwrap_or("?"),
            tx["registrar"]
        ),
        Some("freeze_account") => format!(
            "{} account {} (registrar {})",
            if tx["frozen"] == true { "freeze" } else { "unfreeze" },
            tx["account"],
            tx["registrar"]
        ),
        Some("close_account") => format!("close account {}", tx["account"]),
        Some("rotate_key") => format!(
            "rotate key of account {} to {}",
            tx["account"],
            tx["public_key"].as_str().unwrap_or("?")
        ),
        Some("issue") => format!(
            "issue {} to account {} (issuer {})",
            tx["amount"], tx["account"], tx["issuer"]
        ),
        Some("redeem") => match tx["issuer"].as_u64() {
            Some(i) => format!("redeem {} from account {} (issuer {i})", tx["amount"], tx["account"]),
            None => format!(
                "withdraw {} from account {} (by its owner)",
                tx["amount"], tx["account"]
            ),
        },
        Some("hold") => format!(
            "hold {} of account {} for account {}, {} s",
            tx["amount"],
            tx["from"],
            tx["to"],
            tx["timeout_ms"].as_u64().unwrap_or(0) / 1000
        ),
        Some("post") => format!(
            "post {} of hold {} of account {} to account {}",
            tx["amount"],
            tx["hold_id"].as_str().unwrap_or("?"),
            tx["from"],
            tx["to"]
        ),
        Some("void") => format!(
            "void hold {} of account {} (by account {})",
            tx["hold_id"].as_str().unwrap_or("?"),
            tx["from"],
            tx["to"]
        ),
        Some("set") => {
            let items: Vec<String> = tx["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|i| format!("{}: {}", i["id"].as_str().unwrap_or("?"), describe_tx(i, &Value::Null)))
                        .collect()
                })
                .unwrap_or_default();
            format!("transfer set, all or none: {}", items.join("; "))
        }
        _ => tx.to_string(),
    }
}

fn print_block(b: &Value) {
    let h = &b["header"];
    out!("block {}  {}", h["height"], b["hash"].as_str().unwrap_or("?"));
    out!("  prev_hash    {}", h["prev_hash"].as_str().unwrap_or("?"));
    out!("  merkle_root  {}", h["merkle_root"].as_str().unwrap_or("?"));
    out!(
        "  timestamp_ms {}  difficulty {}  nonce {}",
        h["timestamp_ms"],
        h["difficulty"],
        h["nonce"]
    );
    let results = b["results"].as_array().cloned().unwrap_or_default();
    for (i, tx) in b["txs"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let r = results.get(i).cloned().unwrap_or(Value::Null);
        let status = r["status"].as_str().unwrap_or("?");
        let what = describe_tx(tx, &r["balance"]);
        let id = tx["id"].as_str().unwrap_or("-");
        let reason = r["reason"].as_str().map(|s| format!(": {s}")).unwrap_or_default();
        out!("  {i:>4}  {id:<24} {what}  [{status}{reason}]");
    }
}
