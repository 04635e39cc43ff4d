//! Signed transfers, and the account keys that sign them.

use crate::context::Ctx;
use crate::errors::explain;
use anyhow::{anyhow, bail};
use bank_ledger::client::{call_any, chain_id, expiry_in, request, signed_transfer_until};
use bank_ledger::keystore::{self, create_keystore, key_path, save_key, save_role_key, signer_key_path};
use bank_ledger::ledger::{AccountKey, Signer, TxId};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// `transfer`: moves `amount` from `from` to `to`; answers once committed.
pub async fn transfer(
    ctx: &Ctx,
    from: u64,
    to: u64,
    amount: u64,
    id: Option<String>,
    lifetime: Duration,
) -> anyhow::Result<()> {
    // The id is chosen here, once: retries on other servers are then idempotent.
    let tx_id = match id {
        Some(id) => TxId::new(id)?,
        None => TxId::random(),
    };
    let key = load_key(&ctx.keystore, from)?;
    let chain = chain_id(&ctx.servers, ctx.timeout, ctx.chain_id)
        .await
        .map_err(explain)?;
    let msg = signed_transfer_until(&key, chain, &tx_id, to, amount, expiry_in(lifetime));
    let r = call_any(&ctx.servers, ctx.timeout, |mut c, t| {
        let msg = msg.clone();
        async move { Ok(c.transfer(request(msg, t)).await?.into_inner()) }
    })
    .await
    .map_err(|s| explain_transfer(s, &tx_id))?;
    ctx.print(
        || json!({"tx_id": r.tx_id, "height": r.height, "block_hash": r.block_hash, "status": "committed"}),
        || {
            out!(
                "committed tx {} ({from} -> {to}, {amount}) in block {} {}",
                r.tx_id,
                r.height,
                r.block_hash
            )
        },
    );
    Ok(())
}

/// `keygen`: a new key for `signer` (an account, a registrar or an issuer)
/// in the keystore (the public dev key with `dev`); never overwrites one.
pub fn keygen(ctx: &Ctx, signer: Signer, dev: bool) -> anyhow::Result<()> {
    create_keystore(&ctx.keystore)?;
    let path = signer_key_path(&ctx.keystore, signer);
    if path.exists() {
        bail!("{} already exists; a key is never overwritten", path.display());
    }
    let key = match (signer, dev) {
        (Signer::Account(a), true) => AccountKey::dev(a),
        (Signer::Account(a), false) => AccountKey::generate(a),
        (role, true) => AccountKey::dev_role(role),
        (_, false) => AccountKey::generate(0),
    };
    match signer {
        Signer::Account(_) => save_key(&key, &path)?,
        role => save_role_key(&key, role, &path)?,
    }
    ctx.print(
        || {
            let mut v = json!({"public_key": key.public().to_hex(), "key_file": path.display().to_string()});
            match signer {
                Signer::Account(a) => v["account"] = json!(a),
                Signer::Registrar(n) => v["registrar"] = json!(n),
                Signer::Issuer(n) => v["issuer"] = json!(n),
                Signer::Auditor(n) => v["auditor"] = json!(n),
                // keygen makes keys for signers only.
                Signer::Holds(_) | Signer::Settled(_) => {}
            }
            v
        },
        || {
            out!(
                "{signer}: public key {} (secret key in {})",
                key.public(),
                path.display()
            )
        },
    );
    Ok(())
}

/// The key that signs transfers from `account`, from the keystore.
pub fn load_key(keystore: &Path, account: u64) -> anyhow::Result<AccountKey> {
    let path = key_path(keystore, account);
    if !path.exists() {
        bail!(
            "no key for account {account}: {} not found (pass --keystore DIR, or create one with `bank-client keygen {account}` and register its public key in genesis)",
            path.display()
        );
    }
    let key = keystore::load_key(&path)?;
    if key.account != account {
        bail!(
            "{} holds the key of account {}, not {account}",
            path.display(),
            key.account
        );
    }
    Ok(key)
}

/// Like [`explain`], but a timed-out transfer names the id to resubmit: its
/// outcome is unknown, and only the same id can tell it without risk.
pub fn explain_transfer(status: tonic::Status, tx_id: &TxId) -> anyhow::Error {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => anyhow!(
            "no quorum: not committed before the deadline; the outcome is unknown: resubmit with --id {tx_id} to learn it"
        ),
        tonic::Code::Unavailable => anyhow!(
            "no server reachable ({}); if one received the transfer, resubmit with --id {tx_id} to learn its outcome",
            status.message()
        ),
        _ => explain(status),
    }
}
