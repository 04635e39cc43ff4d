//! Holds: `transfer --hold` reserves money for a receiver, who settles it
//! with `post` (up to the held amount) or `void`; the chain releases it at
//! its timeout. The hold is signed by its sender, posts and voids by its
//! receiver, each with its key from the keystore.

use crate::accounts::{new_id, submit, Signing};
use crate::context::Ctx;
use crate::reads::parse_json;
use anyhow::{anyhow, bail};
use bank_ledger::client::{expiry_in, request};
use bank_ledger::ledger::{Signature, Transaction, TxId};
use bank_ledger::proto::bank::GetTxRequest;
use std::time::Duration;

/// `transfer FROM TO AMOUNT --hold`: reserves AMOUNT of FROM for TO for `timeout`.
pub async fn hold(ctx: &Ctx, from: u64, to: u64, amount: u64, timeout: Duration, s: Signing) -> anyhow::Result<()> {
    let id = new_id(s.id)?;
    let tx = Transaction::Hold {
        id: id.clone(),
        from,
        to,
        amount,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    let what = format!(
        "hold {amount} of account {from} for account {to}, {} s: settle it with `bank-client post {id}` or `void {id}`",
        timeout.as_secs()
    );
    submit(ctx, tx, what).await
}

/// The hold's receiver and amount, as the ledger committed it.
async fn committed_hold(ctx: &Ctx, hold_id: &TxId, from: Option<u64>) -> anyhow::Result<(u64, u64, u64)> {
    let r = ctx
        .call(|mut c, t| {
            let msg = GetTxRequest {
                tx_id: hold_id.to_string(),
                account: from,
                auditor: None,
            };
            async move { Ok(c.get_tx(request(msg, t)).await?.into_inner()) }
        })
        .await?;
    let v = parse_json(&r.json)?;
    let tx = &v["tx"];
    if tx["type"] != "hold" {
        bail!(
            "transaction {hold_id} is a {}, not a hold",
            tx["type"].as_str().unwrap_or("transaction")
        );
    }
    let field = |name: &str| {
        tx[name]
            .as_u64()
            .ok_or_else(|| anyhow!("the server's copy of hold {hold_id} has no {name}"))
    };
    Ok((field("from")?, field("to")?, field("amount")?))
}

/// `post HOLD_ID [--amount A]`: moves A (default: all held) to the receiver.
pub async fn post(
    ctx: &Ctx,
    hold_id: String,
    from: Option<u64>,
    amount: Option<u64>,
    s: Signing,
) -> anyhow::Result<()> {
    let hold_id = TxId::new(hold_id)?;
    let (from, to, held) = committed_hold(ctx, &hold_id, from).await?;
    let amount = amount.unwrap_or(held);
    let tx = Transaction::Post {
        id: new_id(s.id)?,
        hold_id: hold_id.clone(),
        from,
        to,
        amount,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    let rest = held.saturating_sub(amount);
    let what = format!("post {amount} of hold {hold_id} from account {from} to account {to}; {rest} released");
    submit(ctx, tx, what).await
}

/// `void HOLD_ID`: releases the whole hold.
pub async fn void(ctx: &Ctx, hold_id: String, from: Option<u64>, s: Signing) -> anyhow::Result<()> {
    let hold_id = TxId::new(hold_id)?;
    let (from, to, held) = committed_hold(ctx, &hold_id, from).await?;
    let tx = Transaction::Void {
        id: new_id(s.id)?,
        hold_id: hold_id.clone(),
        from,
        to,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    let what = format!("void hold {hold_id} of account {from}: {held} released");
    submit(ctx, tx, what).await
}
