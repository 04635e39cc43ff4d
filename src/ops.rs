//! Account and money-supply operations as the `Submit` call carries them:
//! the one place that turns a [`Transaction`] into a [`SubmitRequest`] and
//! back, for the client that signs and the server that checks.

use crate::ledger::{PublicKey, Signature, Transaction, TxId, TxIdError, MAX_SET_ITEMS};
use crate::proto::bank::submit_request::Op;
use crate::proto::bank::{set_item, SetItem, SubmitSetRequest, TransferRequest};
use crate::proto::bank::{
    CloseAccountOp, FreezeAccountOp, HoldOp, IssueOp, OpenAccountOp, PostOp, RedeemOp, RotateKeyOp, SubmitRequest,
    VoidOp,
};

/// Why a request holds no operation the ledger can run.
#[derive(Debug, thiserror::Error)]
pub enum BadOp {
    #[error(transparent)]
    Id(#[from] TxIdError),
    #[error("the request names no operation")]
    Missing,
    #[error("signature of {id} is {len} bytes; an ed25519 signature is 64")]
    SignatureLength { id: TxId, len: usize },
    #[error("public key of {id} is {len} bytes; an ed25519 public key is 32")]
    KeyLength { id: TxId, len: usize },
    #[error("item {item} of the transfer set: {source}")]
    SetItem { item: usize, source: Box<BadOp> },
    #[error("item {item} of the transfer set holds neither a transfer nor an operation")]
    EmptySetItem { item: usize },
    #[error("a transfer set holds at most {max} items; this one holds {n}")]
    SetTooBig { n: usize, max: usize },
}

/// A transfer as a `Transfer` request (or a set's item) carries it; its
/// signature is checked later, by the leader and by every node.
pub fn transfer_of(t: &TransferRequest) -> Result<Transaction, BadOp> {
    let id = TxId::new(t.tx_id.clone())?;
    let signature = Signature::from_slice(&t.signature).ok_or_else(|| BadOp::SignatureLength {
        id: id.clone(),
        len: t.signature.len(),
    })?;
    Ok(Transaction::Transfer {
        id,
        from: t.from,
        to: t.to,
        amount: t.amount,
        expires_ms: t.expires_ms,
        signature,
    })
}

/// The request that submits the transfer set `tx` (`None` for anything else).
pub fn set_request(tx: &Transaction) -> Option<SubmitSetRequest> {
    let Transaction::Set { items } = tx else {
        return None;
    };
    let items = items
        .iter()
        .map(|item| {
            Some(SetItem {
                item: Some(match item {
                    &Transaction::Transfer {
                        ref id,
                        from,
                        to,
                        amount,
                        expires_ms,
                        ref signature,
                    } => set_item::Item::Transfer(TransferRequest {
                        tx_id: id.to_string(),
                        from,
                        to,
                        amount,
                        signature: signature.0.to_vec(),
                        expires_ms,
                    }),
                    other => set_item::Item::Op(submit_request(other)?),
                }),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(SubmitSetRequest { items })
}

/// The transfer set a `SubmitSet` request carries: at most
/// [`MAX_SET_ITEMS`] items, each decoded as its own call would; what the
/// rules refuse of it (kinds, ids) is theirs to say.
pub fn set_of(req: &SubmitSetRequest) -> Result<Transaction, BadOp> {
    if req.items.len() > MAX_SET_ITEMS {
        return Err(BadOp::SetTooBig {
            n: req.items.len(),
            max: MAX_SET_ITEMS,
        });
    }
    let items = req
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let wrap = |e: BadOp| BadOp::SetItem {
                item: i + 1,
                source: Box::new(e),
            };
            match &item.item {
                Some(set_item::Item::Transfer(t)) => transfer_of(t).map_err(wrap),
                Some(set_item::Item::Op(op)) => transaction_of(op).map_err(wrap),
                None => Err(BadOp::EmptySetItem { item: i + 1 }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Transaction::Set { items })
}

/// The request that submits `tx`; `None` for transfers, balance checks and
/// allocations, which have calls of their own.
pub fn submit_request(tx: &Transaction) -> Option<SubmitRequest> {
    let op = match *tx {
        Transaction::OpenAccount {
            account,
            public_key,
            registrar,
            ..
        } => Op::OpenAccount(OpenAccountOp {
            account,
            public_key: public_key.0.to_vec(),
            registrar,
        }),
        Transaction::FreezeAccount {
            account,
            frozen,
            registrar,
            ..
        } => Op::FreezeAccount(FreezeAccountOp {
            account,
            frozen,
            registrar,
        }),
        Transaction::CloseAccount { account, .. } => Op::CloseAccount(CloseAccountOp { account }),
        Transaction::RotateKey {
            account, public_key, ..
        } => Op::RotateKey(RotateKeyOp {
            account,
            public_key: public_key.0.to_vec(),
        }),
        Transaction::Issue {
            account,
            amount,
            issuer,
            ..
        } => Op::Issue(IssueOp {
            account,
            amount,
            issuer,
        }),
        Transaction::Redeem {
            account,
            amount,
            issuer,
            ..
        } => Op::Redeem(RedeemOp {
            account,
            amount,
            issuer,
        }),
        Transaction::Hold {
            from,
            to,
            amount,
            timeout_ms,
            ..
        } => Op::Hold(HoldOp {
            from,
            to,
            amount,
            timeout_ms,
        }),
        Transaction::Post {
            ref hold_id,
            from,
            to,
            amount,
            ..
        } => Op::Post(PostOp {
            hold_id: hold_id.to_string(),
            from,
            to,
            amount,
        }),
        Transaction::Void {
            ref hold_id, from, to, ..
        } => Op::Void(VoidOp {
            hold_id: hold_id.to_string(),
            from,
            to,
        }),
        Transaction::Transfer { .. }
        | Transaction::BalanceCheck { .. }
        | Transaction::Allocation { .. }
        | Transaction::Set { .. } => return None,
    };
    Some(SubmitRequest {
        tx_id: tx.id().map(TxId::to_string).unwrap_or_default(),
        expires_ms: tx.expires_ms().unwrap_or(0),
        signature: tx.signature().map(|s| s.0.to_vec()).unwrap_or_default(),
        op: Some(op),
    })
}

/// The transaction a `Submit` request carries; its signature is checked
/// later, by the leader and by every node as it applies.
pub fn transaction_of(req: &SubmitRequest) -> Result<Transaction, BadOp> {
    let id = TxId::new(req.tx_id.clone())?;
    let signature = Signature::from_slice(&req.signature).ok_or_else(|| BadOp::SignatureLength {
        id: id.clone(),
        len: req.signature.len(),
    })?;
    let key = |bytes: &[u8]| -> Result<PublicKey, BadOp> {
        bytes.try_into().map(PublicKey).map_err(|_| BadOp::KeyLength {
            id: id.clone(),
            len: bytes.len(),
        })
    };
    let expires_ms = req.expires_ms;
    Ok(match req.op.as_ref().ok_or(BadOp::Missing)? {
        Op::OpenAccount(o) => Transaction::OpenAccount {
            public_key: key(&o.public_key)?,
            id,
            account: o.account,
            registrar: o.registrar,
            expires_ms,
            signature,
        },
        Op::FreezeAccount(o) => Transaction::FreezeAccount {
            id,
            account: o.account,
            frozen: o.frozen,
            registrar: o.registrar,
            expires_ms,
            signature,
        },
        Op::CloseAccount(o) => Transaction::CloseAccount {
            id,
            account: o.account,
            expires_ms,
            signature,
        },
        Op::RotateKey(o) => Transaction::RotateKey {
            public_key: key(&o.public_key)?,
            id,
            account: o.account,
            expires_ms,
            signature,
        },
        Op::Issue(o) => Transaction::Issue {
            id,
            account: o.account,
            amount: o.amount,
            issuer: o.issuer,
            expires_ms,
            signature,
        },
        Op::Redeem(o) => Transaction::Redeem {
            id,
            account: o.account,
            amount: o.amount,
            issuer: o.issuer,
            expires_ms,
            signature,
        },
        Op::Hold(o) => Transaction::Hold {
            id,
            from: o.from,
            to: o.to,
            amount: o.amount,
            timeout_ms: o.timeout_ms,
            expires_ms,
            signature,
        },
        Op::Post(o) => Transaction::Post {
            hold_id: TxId::new(o.hold_id.clone())?,
            id,
            from: o.from,
            to: o.to,
            amount: o.amount,
            expires_ms,
            signature,
        },
        Op::Void(o) => Transaction::Void {
            hold_id: TxId::new(o.hold_id.clone())?,
            id,
            from: o.from,
            to: o.to,
            expires_ms,
            signature,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AccountKey, Hash32};

    #[test]
    fn every_operation_survives_the_request() {
        let k = AccountKey::dev(3);
        let pk = AccountKey::dev(9).public();
        let id = || TxId::new("op-1".to_string()).unwrap();
        let sig = Signature::NONE;
        let ops = [
            Transaction::OpenAccount {
                id: id(),
                account: 9,
                public_key: pk,
                registrar: 1,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::FreezeAccount {
                id: id(),
                account: 9,
                frozen: true,
                registrar: 0,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::CloseAccount {
                id: id(),
                account: 9,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::RotateKey {
                id: id(),
                account: 9,
                public_key: pk,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::Issue {
                id: id(),
                account: 9,
                amount: 7,
                issuer: 2,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::Redeem {
                id: id(),
                account: 9,
                amount: 7,
                issuer: None,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::Redeem {
                id: id(),
                account: 9,
                amount: 7,
                issuer: Some(1),
                expires_ms: 5,
                signature: sig,
            },
            Transaction::Hold {
                id: id(),
                from: 3,
                to: 9,
                amount: 7,
                timeout_ms: 60_000,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::Post {
                id: id(),
                hold_id: TxId::new("hold-1").unwrap(),
                from: 3,
                to: 9,
                amount: 6,
                expires_ms: 5,
                signature: sig,
            },
            Transaction::Void {
                id: id(),
                hold_id: TxId::new("hold-1").unwrap(),
                from: 3,
                to: 9,
                expires_ms: 5,
                signature: sig,
            },
        ];
        for mut tx in ops {
            tx.set_signature(k.sign(Hash32([1; 32]), &tx));
            let req = submit_request(&tx).unwrap();
            assert_eq!(transaction_of(&req).unwrap(), tx);
        }
        assert!(submit_request(&k.transfer(Hash32::ZERO, id(), 1, 1, 1)).is_none());
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let mut req = SubmitRequest {
            tx_id: "x".into(),
            expires_ms: 1,
            signature: vec![0; 64],
            op: None,
        };
        assert!(matches!(transaction_of(&req), Err(BadOp::Missing)));
        req.op = Some(Op::RotateKey(RotateKeyOp {
            account: 1,
            public_key: vec![1; 31],
        }));
        assert!(transaction_of(&req).unwrap_err().to_string().contains("31 bytes"));
        req.signature = vec![0; 3];
        assert!(transaction_of(&req).unwrap_err().to_string().contains("3 bytes"));
    }
}
