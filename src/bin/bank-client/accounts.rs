//! Accounts and the money supply: open, show, freeze, unfreeze, close and
//! rotate-key; issue and redeem. Each change is a transaction signed with
//! a key from the keystore (a registrar's or issuer's for the roles genesis
//! names, the account's own for close, rotate-key and a withdrawal).

use crate::context::Ctx;
use crate::transfer::explain_transfer;
use anyhow::{anyhow, bail, Context};
use bank_ledger::client::{call_any, chain_id, expiry_in, request};
use bank_ledger::keystore::{self, create_keystore, key_path, save_key, signer_key_path};
use bank_ledger::ledger::{AccountKey, PublicKey, Signature, Signer, Transaction, TxId};
use bank_ledger::proto::bank::AccountRequest;
use serde_json::json;
use std::time::Duration;

/// What every change takes from the command line besides its operation.
pub struct Signing {
    pub id: Option<String>,
    pub lifetime: Duration,
}

/// The key of `signer` from the keystore, or a line saying where it should be.
pub fn signer_key(ctx: &Ctx, signer: Signer) -> anyhow::Result<AccountKey> {
    let path = signer_key_path(&ctx.keystore, signer);
    if !path.exists() {
        bail!(
            "no key for {signer}: {} not found (pass --keystore DIR holding it)",
            path.display()
        );
    }
    let (found, key) = keystore::load_signer_key(&path)?;
    if found != signer {
        bail!("{} holds the key of {found}, not of {signer}", path.display());
    }
    Ok(key)
}

/// Signs `tx` with its signer's key from the keystore, submits it and
/// prints what committed (`what`, in words).
pub async fn submit(ctx: &Ctx, mut tx: Transaction, what: String) -> anyhow::Result<()> {
    let signer = tx.signer().ok_or_else(|| anyhow!("nobody signs {what}"))?;
    let key = signer_key(ctx, signer)?;
    let chain = chain_id(&ctx.servers, ctx.timeout, ctx.chain_id)
        .await
        .map_err(crate::errors::explain)?;
    tx.set_signature(key.sign(chain, &tx));
    let msg = bank_ledger::ops::submit_request(&tx).ok_or_else(|| anyhow!("{what} has no Submit form"))?;
    let tx_id = tx.id().cloned().unwrap_or_else(TxId::random);
    let r = call_any(&ctx.servers, ctx.timeout, |mut c, t| {
        let msg = msg.clone();
        async move { Ok(c.submit(request(msg, t)).await?.into_inner()) }
    })
    .await
    .map_err(|s| explain_transfer(s, &tx_id))?;
    ctx.print(
        || json!({"tx_id": r.tx_id, "kind": tx.kind(), "height": r.height, "block_hash": r.block_hash, "status": "committed"}),
        || out!("committed tx {} ({what}) in block {} {}", r.tx_id, r.height, r.block_hash),
    );
    Ok(())
}

pub fn new_id(id: Option<String>) -> anyhow::Result<TxId> {
    Ok(match id {
        Some(id) => TxId::new(id)?,
        None => TxId::random(),
    })
}

/// How an account's new key is given: its hex, or made here.
pub enum NewKey {
    Hex(String),
    /// Generate one and keep it in the keystore as `<account>.key`.
    Generate,
}

/// `account open`: opens `account` at 0, signed by genesis registrar `registrar`.
pub async fn open(ctx: &Ctx, account: u64, key: NewKey, registrar: u32, s: Signing) -> anyhow::Result<()> {
    let (public_key, made) = match key {
        NewKey::Hex(hex) => (PublicKey::from_hex(&hex).context("--public-key")?, None),
        NewKey::Generate => {
            let path = key_path(&ctx.keystore, account);
            if path.exists() {
                bail!("{} already exists; a key is never overwritten", path.display());
            }
            let key = AccountKey::generate(account);
            (key.public(), Some((key, path)))
        }
    };
    public_key
        .check()
        .map_err(|e| anyhow!("--public-key cannot sign: {e}"))?;
    let tx = Transaction::OpenAccount {
        id: new_id(s.id)?,
        account,
        public_key,
        registrar,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    // Kept before the account exists: a key lost after its account opened
    // would leave the account without an owner.
    if let Some((key, path)) = &made {
        create_keystore(&ctx.keystore)?;
        save_key(key, path)?;
    }
    submit(ctx, tx, format!("open account {account}, key {public_key}")).await
}

/// `account freeze` / `account unfreeze`.
pub async fn freeze(ctx: &Ctx, account: u64, frozen: bool, registrar: u32, s: Signing) -> anyhow::Result<()> {
    let tx = Transaction::FreezeAccount {
        id: new_id(s.id)?,
        account,
        frozen,
        registrar,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    let verb = if frozen { "freeze" } else { "unfreeze" };
    submit(ctx, tx, format!("{verb} account {account}")).await
}

/// `account close`: signed by the account's own key.
pub async fn close(ctx: &Ctx, account: u64, s: Signing) -> anyhow::Result<()> {
    let tx = Transaction::CloseAccount {
        id: new_id(s.id)?,
        account,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    submit(ctx, tx, format!("close account {account}")).await
}

/// `account rotate-key`: signed by the account's current key.
pub async fn rotate_key(ctx: &Ctx, account: u64, public_key: &str, s: Signing) -> anyhow::Result<()> {
    let public_key = PublicKey::from_hex(public_key).context("--public-key")?;
    public_key
        .check()
        .map_err(|e| anyhow!("--public-key cannot sign: {e}"))?;
    let tx = Transaction::RotateKey {
        id: new_id(s.id)?,
        account,
        public_key,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    submit(ctx, tx, format!("account {account} now signed by {public_key}")).await
}

/// `issue`: creates money in `account`, signed by genesis issuer `issuer`.
pub async fn issue(ctx: &Ctx, account: u64, amount: u64, issuer: u32, s: Signing) -> anyhow::Result<()> {
    let tx = Transaction::Issue {
        id: new_id(s.id)?,
        account,
        amount,
        issuer,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    submit(ctx, tx, format!("issue {amount} to account {account}")).await
}

/// `redeem`: takes money out of `account` and the supply, signed by genesis
/// issuer `issuer`, or (`None`) by the account's owner.
pub async fn redeem(ctx: &Ctx, account: u64, amount: u64, issuer: Option<u32>, s: Signing) -> anyhow::Result<()> {
    let tx = Transaction::Redeem {
        id: new_id(s.id)?,
        account,
        amount,
        issuer,
        expires_ms: expiry_in(s.lifetime),
        signature: Signature::NONE,
    };
    submit(ctx, tx, format!("redeem {amount} from account {account}")).await
}

/// `account show`: the account as the ledger keeps it (linearizable).
pub async fn show(ctx: &Ctx, account: u64) -> anyhow::Result<()> {
    let r = ctx
        .call(|mut c, t| async move { Ok(c.account(request(AccountRequest { account }, t)).await?.into_inner()) })
        .await?;
    ctx.print(
        || {
            json!({"account": r.account, "balance": r.balance, "held": r.held, "available": r.available,
                   "public_key": r.public_key, "state": r.state, "opened_height": r.opened_height,
                   "height": r.height})
        },
        || {
            out!(
                "account {}: {} ({} held, {} available), {}, opened at height {}, key {} (read at height {})",
                r.account,
                r.balance,
                r.held,
                r.available,
                r.state,
                r.opened_height,
                r.public_key,
                r.height
            )
        },
    );
    Ok(())
}
