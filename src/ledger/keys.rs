//! Account keys and transfer signatures (ed25519).
//!
//! Every account has a public key, fixed by genesis (block 0 carries it, so
//! the chain id commits to it), and so has every auditor genesis names. A
//! transaction is signed by its signer's key over
//! [`Transaction::signing_message`]: a domain tag, the chain id, the
//! transaction's canonical content and its expiry. The chain id keeps a
//! signature from being replayed on another cluster (and `bank-server
//! genesis` gives every file a fresh nonce, so two clusters share a chain id
//! only if they share the file); the id, unique forever among its signer's,
//! keeps it from being replayed on this one, and the expiry keeps a
//! signature nobody submitted from being used later.

use super::hash::HexError;
use super::transaction::{Signer, Transaction};
use super::{AccountId, Amount, Hash32, TxId};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use ed25519_zebra::{batch, VerificationKeyBytes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// Seed prefix of the public, insecure dev keys.
const DEV_KEY_DOMAIN: &[u8] = b"bank-ledger/INSECURE-dev-key/v1";
const DEV_ROLE_KEY_DOMAIN: &[u8] = b"bank-ledger/INSECURE-dev-role-key/v1";

/// An ed25519 public key, as its 32-byte compressed encoding; hex for people.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature; hex for people. All zeros on the transfers genesis
/// itself defines, which nobody signs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// What an unsigned transfer carries.
    pub const NONE: Signature = Signature([0; 64]);
}

/// Why a signature or key is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("transaction {id} carries no signature; sign it with the key of {signer}")]
    Missing { id: TxId, signer: Signer },
    #[error("signature of transaction {id} does not verify with the key of {signer}")]
    Invalid { id: TxId, signer: Signer },
    #[error("the registered public key of {signer} is not a valid ed25519 key")]
    BadKey { signer: Signer },
}

/// A secret key that signs an account's transfers.
#[derive(Clone)]
pub struct AccountKey {
    pub account: AccountId,
    key: SigningKey,
    /// One of the public dev keys; key files say so.
    pub insecure_dev_key: bool,
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AccountKey {{ account: {}, public: {} }}",
            self.account,
            self.public()
        )
    }
}

impl AccountKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(account: AccountId) -> AccountKey {
        AccountKey {
            account,
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            insecure_dev_key: false,
        }
    }

    /// The public, well-known dev key of `account`: derived from the account
    /// id alone, so anyone can spend from an account that registers it. For
    /// demos, tests and benchmarks only.
    pub fn dev(account: AccountId) -> AccountKey {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(DEV_KEY_DOMAIN)
            .chain_update(account.to_be_bytes())
            .finalize()
            .into();
        AccountKey {
            account,
            key: SigningKey::from_bytes(&seed),
            insecure_dev_key: true,
        }
    }

    /// The public, well-known dev key of a genesis role (`signer` a
    /// registrar, issuer or auditor), derived from the role alone, like
    /// [`AccountKey::dev`]; `account` is unused for such keys and 0.
    pub fn dev_role(signer: Signer) -> AccountKey {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(DEV_ROLE_KEY_DOMAIN)
            .chain_update(signer.to_bytes())
            .finalize()
            .into();
        AccountKey {
            account: 0,
            key: SigningKey::from_bytes(&seed),
            insecure_dev_key: true,
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs `tx` as it stands (its signature field aside); an
    /// allocation, which nobody signs, gets [`Signature::NONE`].
    pub fn sign(&self, chain_id: Hash32, tx: &Transaction) -> Signature {
        match tx.signing_message(chain_id) {
            Some(msg) => Signature(self.key.sign(&msg).to_bytes()),
            None => Signature::NONE,
        }
    }

    /// Signs `tx` as an item of the transfer set whose digest is `digest`
    /// ([`super::set_digest`]).
    pub fn sign_set_item(&self, chain_id: Hash32, digest: Hash32, tx: &Transaction) -> Signature {
        match tx.set_item_signing_message(chain_id, digest) {
            Some(msg) => Signature(self.key.sign(&msg).to_bytes()),
            None => Signature::NONE,
        }
    }

    /// A transfer from this key's account, signed.
    pub fn transfer(&self, chain_id: Hash32, id: TxId, to: AccountId, amount: Amount, expires_ms: u64) -> Transaction {
        let mut tx = Transaction::Transfer {
            id,
            from: self.account,
            to,
            amount,
            expires_ms,
            signature: Signature::NONE,
        };
        let signed = self.sign(chain_id, &tx);
        if let Transaction::Transfer { signature, .. } = &mut tx {
            *signature = signed;
        }
        tx
    }

    /// The key of `account` from its 32 secret bytes.
    pub fn from_secret(account: AccountId, secret: [u8; 32], insecure_dev_key: bool) -> AccountKey {
        AccountKey {
            account,
            key: SigningKey::from_bytes(&secret),
            insecure_dev_key,
        }
    }

    /// The 32 secret bytes, for a key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

/// The public keys of all accounts, sorted by account for binary search
/// (40 bytes per account: a map of decompressed keys would take ~5x that),
/// and of the auditors genesis names.
#[derive(Debug, Clone, Default)]
pub struct AccountKeys {
    keys: Vec<(AccountId, PublicKey)>,
    auditors: Vec<PublicKey>,
    registrars: Vec<PublicKey>,
    issuers: Vec<PublicKey>,
}

impl AccountKeys {
    pub fn new(mut keys: Vec<(AccountId, PublicKey)>) -> AccountKeys {
        keys.sort_unstable_by_key(|(a, _)| *a);
        AccountKeys {
            keys,
            ..AccountKeys::default()
        }
    }

    /// These keys, and `auditors` as auditors 0, 1, ...
    pub fn with_auditors(mut self, auditors: Vec<PublicKey>) -> AccountKeys {
        self.auditors = auditors;
        self
    }

    /// These keys, and the registrars' and issuers' keys, as registrars
    /// and issuers 0, 1, ...
    pub fn with_roles(mut self, registrars: Vec<PublicKey>, issuers: Vec<PublicKey>) -> AccountKeys {
        self.registrars = registrars;
        self.issuers = issuers;
        self
    }

    pub fn get(&self, account: AccountId) -> Option<PublicKey> {
        self.keys
            .binary_search_by_key(&account, |(a, _)| *a)
            .ok()
            .map(|i| self.keys[i].1)
    }

    /// The key that signs for `signer`, if there is one.
    pub fn key_of(&self, signer: Signer) -> Option<PublicKey> {
        match signer {
            Signer::Account(a) => self.get(a),
            Signer::Auditor(i) => self.auditors.get(i as usize).copied(),
            Signer::Registrar(i) => self.registrars.get(i as usize).copied(),
            Signer::Issuer(i) => self.issuers.get(i as usize).copied(),
            Signer::Holds(_) | Signer::Settled(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a transaction's signature against its signer's key, by the
    /// rule of [`AccountKeys::verify_many`].
    pub fn verify(&self, chain_id: Hash32, tx: &Transaction) -> Result<(), AuthError> {
        // One verdict per transaction; refuse rather than pass if there were none.
        self.verify_many(chain_id, std::slice::from_ref(tx))
            .pop()
            .unwrap_or(Err(AuthError::NoVerdict))
    }

    /// Checks many transactions' signatures; one result per transaction, in
    /// order. Allocations, which only genesis makes, carry none and pass.
    ///
    /// The rule, the same on the leader, on every replica applying a block
    /// and in audits, one transaction or many: ed25519 as ZIP-215 defines
    /// it (ed25519-zebra), the cofactored equation `[8]([s]B - R - [k]A) =
    /// 0` with `s` canonical, plus our refusal of keys of small order, under
    /// which anyone could sign. Every signature that passes strict RFC 8032
    /// verification passes it. What matters for replicas: a batch's verdict
    /// on each signature is that signature's single verdict, whichever
    /// others share its batch, so every honest node refuses the same ones.
    ///
    /// Signatures are checked [`VERIFY_BATCH`] at a time; a batch that fails
    /// is checked one by one to name the bad ones, so a bad signature costs
    /// its sender's request, not others'.
    pub fn verify_many(&self, chain_id: Hash32, txs: &[Transaction]) -> Vec<Result<(), AuthError>> {
        let keys: Vec<Option<PublicKey>> = txs.iter().map(|tx| tx.signer().and_then(|s| self.key_of(s))).collect();
        verify_many_with(chain_id, txs, &keys)
    }
}

/// [`AccountKeys::verify_many`] with each transaction's signer's key given
/// (`keys[i]` for `txs[i]`, `None`: no such signer): the ledger's keys
/// change as accounts open and rotate theirs.
pub fn verify_many_with(
    chain_id: Hash32,
    txs: &[Transaction],
    keys: &[Option<PublicKey>],
) -> Vec<Result<(), AuthError>> {
    verify_messages(txs, keys, |tx| tx.signing_message(chain_id))
}

/// The items of one transfer set checked by the rule of
/// [`AccountKeys::verify_many`], each over its set-item message (see
/// [`Transaction::set_item_signing_message`]) under `keys[i]`; one result
/// per item.
pub fn verify_set_items(
    chain_id: Hash32,
    items: &[Transaction],
    keys: &[Option<PublicKey>],
) -> Vec<Result<(), AuthError>> {
    let digest = super::set_digest(items);
    let mut out = verify_messages(items, keys, |tx| tx.set_item_signing_message(chain_id, digest));
    // Allocations and sets carry no signature, and would pass above.
    for (tx, v) in items.iter().zip(out.iter_mut()) {
        if tx.signer().is_none() {
            *v = Err(AuthError::NotAnItem(tx.kind()));
        }
    }
    out
}

/// [`verify_many_with`] with the message each transaction is signed over.
fn verify_messages(
    txs: &[Transaction],
    keys: &[Option<PublicKey>],
    message: impl Fn(&Transaction) -> Option<Vec<u8>>,
) -> Vec<Result<(), AuthError>> {
    let mut out: Vec<Result<(), AuthError>> = Vec::with_capacity(txs.len());
    // Those that get to the equation, with the index of their result.
    let mut checked: Vec<(usize, batch::Item)> = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        let (Some(signer), Some(signature), Some(message)) = (tx.signer(), tx.signature(), message(tx)) else {
            out.push(Ok(()));
            continue;
        };
        let Some(key) = keys.get(i).copied().flatten() else {
            out.push(Err(AuthError::UnknownSigner(signer)));
            continue;
        };
        let id = || tx.id().cloned().unwrap_or_else(TxId::random);
        if *signature == Signature::NONE {
            out.push(Err(SignatureError::Missing { id: id(), signer }.into()));
            continue;
        }
        if key.check().is_err() {
            out.push(Err(SignatureError::BadKey { signer }.into()));
            continue;
        }
        let signature = ed25519_zebra::Signature::from_bytes(&signature.0);
        out.push(Ok(()));
        checked.push((
            i,
            batch::Item::from((VerificationKeyBytes::from(key.0), signature, &message)),
        ));
    }
    let invalid = |i: usize| -> Result<(), AuthError> {
        let tx = &txs[i];
        Err(SignatureError::Invalid {
            id: tx.id().cloned().unwrap_or_else(TxId::random),
            signer: tx.signer().unwrap_or(Signer::Account(0)),
        }
        .into())
    };
    for part in checked.chunks(VERIFY_BATCH) {
        if let [(i, one)] = part {
            if one.clone().verify_single().is_err() {
                out[*i] = invalid(*i);
            }
            continue;
        }
        let mut verifier = batch::Verifier::new();
        for (_, item) in part {
            verifier.queue(item.clone());
        }
        if verifier.verify(rand::thread_rng()).is_ok() {
            continue;
        }
        for (i, item) in part {
            if item.clone().verify_single().is_err() {
                out[*i] = invalid(*i);
            }
        }
    }
    out
}

/// Most signatures checked in one batch: beyond ~1,000 a batch is no cheaper
/// per signature, and its scratch memory grows with it.
pub const VERIFY_BATCH: usize = 1024;

/// Why a transaction is not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The signer does not exist, so it has no key.
    #[error("unknown {0}")]
    UnknownSigner(Signer),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Cannot happen: every transaction checked gets a verdict.
    #[error("no verdict on the signature")]
    NoVerdict,
    /// Only signed transactions may be items of a transfer set.
    #[error("a {0} cannot be an item of a transfer set")]
    NotAnItem(&'static str),
}

/// A public key that cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("public key {0} is not an ed25519 point")]
    NotAPoint(PublicKey),
    #[error("public key {0} is a weak (small-order) key")]
    Weak(PublicKey),
}

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits. Whether they are a valid ed25519 point is
    /// [`PublicKey::check`]'s business: decompressing costs ~4 us, which
    /// for a genesis of 100,000 accounts would be paid at every start.
    pub fn from_hex(s: &str) -> Result<PublicKey, HexError> {
        let mut arr = [0u8; 32];
        hex::decode_to_slice(s, &mut arr).map_err(|reason| HexError::NotHex {
            what: "public key",
            text: s.to_string(),
            reason,
        })?;
        Ok(PublicKey(arr))
    }

    /// Whether the key is a valid ed25519 public key that can sign: under
    /// the cofactored rule anyone could sign for a point of small order
    /// (weak), so [`AccountKeys::verify_transfers`] refuses such keys too.
    pub fn check(&self) -> Result<(), KeyError> {
        match VerifyingKey::from_bytes(&self.0) {
            Err(_) => Err(KeyError::NotAPoint(*self)),
            Ok(k) if k.is_weak() => Err(KeyError::Weak(*self)),
            Ok(_) => Ok(()),
        }
    }
}

impl Signature {
    /// From the bytes a request carries: empty means unsigned.
    pub fn from_slice(b: &[u8]) -> Option<Signature> {
        match b.len() {
            0 => Some(Signature::NONE),
            _ => b.try_into().ok().map(Signature),
        }
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", &hex::encode(&self.0[..8]))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            Ok(PublicKey(<[u8; 32]>::deserialize(d)?))
        }
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(self.0))
        } else {
            // serde implements arrays only up to 32 elements.
            use serde::ser::SerializeTuple;
            let mut t = s.serialize_tuple(64)?;
            for b in &self.0 {
                t.serialize_element(b)?;
            }
            t.end()
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            hex::decode(&s)
                .ok()
                .and_then(|v| <[u8; 64]>::try_from(v).ok())
                .map(Signature)
                .ok_or_else(|| serde::de::Error::custom(format!("bad signature {s:?}: expected 128 hex digits")))
        } else {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Signature;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("64 signature bytes")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                    let mut out = [0u8; 64];
                    for (i, b) in out.iter_mut().enumerate() {
                        *b = seq
                            .next_element()?
                            .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                    }
                    Ok(Signature(out))
                }
            }
            d.deserialize_tuple(64, V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;
    use rand::Rng;
    use sha2::Sha512;

    fn id(s: &str) -> TxId {
        TxId::new(s).unwrap()
    }

    /// A transfer carrying `signature`.
    fn transfer(id_: &str, from: AccountId, to: AccountId, amount: Amount, signature: Signature) -> Transaction {
        Transaction::Transfer {
            id: id(id_),
            from,
            to,
            amount,
            expires_ms: 1_000,
            signature,
        }
    }

    /// `tx` signed by `key`.
    fn signed_by(key: &AccountKey, chain: Hash32, mut tx: Transaction) -> Transaction {
        let sig = key.sign(chain, &tx);
        tx.set_signature(sig);
        tx
    }

    fn set_amount(tx: &mut Transaction, to: Amount) {
        if let Transaction::Transfer { amount, .. } = tx {
            *amount = to;
        }
    }

    fn invalid(r: Result<(), AuthError>) -> bool {
        matches!(r, Err(AuthError::Signature(SignatureError::Invalid { .. })))
    }

    #[test]
    fn a_set_items_signature_holds_in_its_set_only() {
        let chain = Hash32([7; 32]);
        let (k1, k2) = (AccountKey::dev(1), AccountKey::dev(2));
        let keys = AccountKeys::new(vec![(1, k1.public()), (2, k2.public())]);
        let sign_all = |items: &mut Vec<Transaction>| {
            let digest = crate::ledger::set_digest(items);
            for item in items.iter_mut() {
                let key = if item.signer() == Some(Signer::Account(1)) {
                    &k1
                } else {
                    &k2
                };
                let sig = key.sign_set_item(chain, digest, item);
                item.set_signature(sig);
            }
        };
        let mut items = vec![
            transfer("a", 1, 2, 5, Signature::NONE),
            transfer("b", 2, 1, 3, Signature::NONE),
        ];
        sign_all(&mut items);
        let set_keys = vec![Some(k1.public()), Some(k2.public())];
        assert!(verify_set_items(chain, &items, &set_keys).iter().all(Result::is_ok));
        // Alone, an item's signature fails: it is over its set.
        assert!(invalid(keys.verify(chain, &items[0])));
        // In another order, or another set, too.
        let swapped = vec![items[1].clone(), items[0].clone()];
        let v = verify_set_items(chain, &swapped, &[Some(k2.public()), Some(k1.public())]);
        assert!(v.iter().all(|r| invalid(r.clone())), "{v:?}");
        let mut bigger = items.clone();
        bigger.push(transfer("c", 1, 2, 1, Signature::NONE));
        let mut extra = vec![bigger[2].clone()];
        sign_all(&mut extra);
        bigger[2] = extra.remove(0);
        let v = verify_set_items(
            chain,
            &bigger,
            &[Some(k1.public()), Some(k2.public()), Some(k1.public())],
        );
        assert!(invalid(v[0].clone()) && invalid(v[1].clone()), "{v:?}");
        // A lone transfer's signature does not pass as an item.
        let lone = signed_by(&k1, chain, transfer("a", 1, 2, 5, Signature::NONE));
        let v = verify_set_items(chain, &[lone, items[1].clone()], &set_keys);
        assert!(invalid(v[0].clone()), "{v:?}");
        // Nothing unsigned passes as an item.
        let alloc = Transaction::Allocation {
            account: 1,
            amount: 5,
            public_key: k1.public(),
        };
        assert_eq!(
            verify_set_items(chain, &[alloc], &[Some(k1.public())]),
            vec![Err(AuthError::NotAnItem("allocation"))]
        );
    }

    #[test]
    fn a_signature_verifies_only_for_its_own_transfer_chain_and_key() {
        let chain = Hash32([7; 32]);
        let k1 = AccountKey::dev(1);
        let keys = AccountKeys::new(vec![(1, k1.public()), (2, AccountKey::dev(2).public())]);
        let good = k1.transfer(chain, id("t1"), 2, 50, 1_000);
        assert_eq!(keys.verify(chain, &good), Ok(()));
        let sig = *good.signature().unwrap();
        let invalid = |r| matches!(r, Err(AuthError::Signature(SignatureError::Invalid { .. })));
        assert!(invalid(keys.verify(chain, &transfer("t1", 1, 2, 51, sig))));
        assert!(invalid(keys.verify(chain, &transfer("t2", 1, 2, 50, sig))));
        assert!(invalid(keys.verify(Hash32([8; 32]), &good)));
        // The expiry is signed: a later one is not the owner's.
        let mut later = good.clone();
        if let Transaction::Transfer { expires_ms, .. } = &mut later {
            *expires_ms += 1;
        }
        assert!(invalid(keys.verify(chain, &later)));
        // Account 2's key cannot spend from account 1.
        let by_2 = signed_by(&AccountKey::dev(2), chain, transfer("t1", 1, 2, 50, Signature::NONE));
        assert!(invalid(keys.verify(chain, &by_2)));
        assert!(matches!(
            keys.verify(chain, &transfer("t1", 1, 2, 50, Signature::NONE)),
            Err(AuthError::Signature(SignatureError::Missing { .. }))
        ));
        assert_eq!(
            keys.verify(chain, &transfer("t1", 9, 2, 50, sig)),
            Err(AuthError::UnknownSigner(Signer::Account(9)))
        );
    }

    #[test]
    fn a_balance_check_is_signed_by_the_owner_or_a_named_auditor() {
        let chain = Hash32([7; 32]);
        let auditor = AccountKey::generate(u64::MAX);
        let keys = AccountKeys::new(vec![(1, AccountKey::dev(1).public())]).with_auditors(vec![auditor.public()]);
        let check = |by: Option<u32>| Transaction::BalanceCheck {
            id: id("audit-1"),
            account: 1,
            auditor: by,
            expires_ms: 1_000,
            signature: Signature::NONE,
        };
        assert_eq!(
            keys.verify(chain, &signed_by(&AccountKey::dev(1), chain, check(None))),
            Ok(())
        );
        assert_eq!(keys.verify(chain, &signed_by(&auditor, chain, check(Some(0)))), Ok(()));
        // Neither may sign as the other, and an auditor genesis does not name has no key.
        assert!(keys.verify(chain, &signed_by(&auditor, chain, check(None))).is_err());
        assert!(keys
            .verify(chain, &signed_by(&AccountKey::dev(1), chain, check(Some(0))))
            .is_err());
        assert_eq!(
            keys.verify(chain, &signed_by(&auditor, chain, check(Some(1)))),
            Err(AuthError::UnknownSigner(Signer::Auditor(1)))
        );
        assert!(matches!(
            keys.verify(chain, &check(None)),
            Err(AuthError::Signature(SignatureError::Missing { .. }))
        ));
    }

    #[test]
    fn many_signatures_checked_at_once_get_the_verdicts_each_gets_alone() {
        let chain = Hash32([7; 32]);
        let keys = AccountKeys::new((0..4).map(|a| (a, AccountKey::dev(a).public())).collect());
        let mut txs: Vec<Transaction> = (0..600u64)
            .map(|i| AccountKey::dev(i % 3).transfer(chain, id(&format!("m{i}")), 3, 10, 1_000))
            .collect();
        // In two batches: a forged one (another key), one for another amount,
        // a missing one, and one from an account with no key.
        txs[7] = signed_by(&AccountKey::dev(3), chain, transfer("m7", 1, 3, 10, Signature::NONE));
        set_amount(&mut txs[500], 11);
        txs[9].set_signature(Signature::NONE);
        txs[300] = signed_by(&AccountKey::dev(0), chain, transfer("m300", 99, 3, 10, Signature::NONE));
        let together = keys.verify_many(chain, &txs);
        let alone: Vec<_> = txs.iter().map(|t| keys.verify(chain, t)).collect();
        assert_eq!(together, alone);
        let bad: Vec<usize> = (0..600).filter(|i| together[*i].is_err()).collect();
        assert_eq!(bad, [7, 9, 300, 500]);
        assert!(matches!(
            together[7],
            Err(AuthError::Signature(SignatureError::Invalid { .. }))
        ));
        assert_eq!(together[300], Err(AuthError::UnknownSigner(Signer::Account(99))));
        assert!(keys.verify_many(chain, &[]).is_empty());
    }

    /// A key's owner signs with a small-order component added to `R`:
    /// strict verification refuses it, the cofactored rule accepts it, and
    /// the verdict must not depend on the batch it is checked in.
    #[test]
    fn a_crafted_small_order_component_gets_one_verdict_alone_and_in_any_batch() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let chain = Hash32([7; 32]);
        let random_scalar = || {
            let mut b = [0u8; 64];
            rand::thread_rng().fill(&mut b[..]);
            Scalar::from_bytes_mod_order_wide(&b)
        };
        let secret = random_scalar();
        let public = PublicKey(EdwardsPoint::mul_base(&secret).compress().0);
        let keys = AccountKeys::new(
            std::iter::once((5, public))
                .chain((0..4).map(|a| (a, AccountKey::dev(a).public())))
                .collect(),
        );
        let mut crafted = transfer("crafted", 5, 1, 10, Signature::NONE);
        let msg = crafted.signing_message(chain).unwrap();
        let nonce = random_scalar();
        let r = (EdwardsPoint::mul_base(&nonce) + EIGHT_TORSION[1]).compress().0;
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r)
                .chain_update(public.0)
                .chain_update(&msg)
                .finalize()
                .into(),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice((nonce + k * secret).as_bytes());
        crafted.set_signature(Signature(sig));
        let strict = VerifyingKey::from_bytes(&public.0)
            .unwrap()
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig));
        assert!(strict.is_err(), "the case where the rules differ");
        assert_eq!(keys.verify(chain, &crafted), Ok(()));

        let honest: Vec<Transaction> = (0..40u64)
            .map(|i| AccountKey::dev(i % 4).transfer(chain, id(&format!("c{i}")), 1, 10, 1_000))
            .collect();
        for size in [1, 2, 3, 7, 16, 40] {
            for _ in 0..8 {
                let mut batch: Vec<Transaction> = honest[..size].to_vec();
                let at = rand::thread_rng().gen_range(0..=batch.len());
                batch.insert(at, crafted.clone());
                assert!(
                    keys.verify_many(chain, &batch).iter().all(Result::is_ok),
                    "batch of {}",
                    batch.len()
                );
                // The same signature on other content is refused, wherever it sits.
                set_amount(&mut batch[at], 11);
                let verdicts = keys.verify_many(chain, &batch);
                let bad: Vec<usize> = (0..batch.len()).filter(|i| verdicts[*i].is_err()).collect();
                assert_eq!(bad, [at]);
            }
        }
    }

    /// Under the cofactored rule a key of small order verifies signatures
    /// nobody made: with `A` the identity, `R` the identity and `s = 0`
    /// the equation holds for every message. Such a key is refused.
    #[test]
    fn a_small_order_key_is_refused_though_its_forgery_satisfies_the_equation() {
        let chain = Hash32([7; 32]);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let keys = AccountKeys::new(vec![(5, PublicKey(identity))]);
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let verdict = keys.verify(chain, &transfer("any", 5, 1, 10, Signature(forged)));
        assert_eq!(
            verdict,
            Err(SignatureError::BadKey {
                signer: Signer::Account(5)
            }
            .into())
        );
    }

    /// For signatures made the usual way, and for damaged ones, the rule
    /// agrees with strict verification.
    #[test]
    fn honest_and_damaged_signatures_get_the_verdict_strict_verification_gives() {
        let chain = Hash32([9; 32]);
        let keys = AccountKeys::new((0..3).map(|a| (a, AccountKey::dev(a).public())).collect());
        let mut rng = rand::thread_rng();
        for i in 0..200u64 {
            let from = i % 3;
            let mut tx = AccountKey::dev(from).transfer(chain, id(&format!("s{i}")), 2, i, 1_000);
            let mut sig = *tx.signature().unwrap();
            if i % 2 == 1 {
                let byte = rng.gen_range(0..64);
                sig.0[byte] ^= 1 << rng.gen_range(0..8);
            }
            tx.set_signature(sig);
            let strict = VerifyingKey::from_bytes(&keys.get(from).unwrap().0)
                .unwrap()
                .verify_strict(
                    &tx.signing_message(chain).unwrap(),
                    &ed25519_dalek::Signature::from_bytes(&sig.0),
                )
                .is_ok();
            assert_eq!(keys.verify(chain, &tx).is_ok(), strict, "transfer {i}");
        }
    }

    #[test]
    fn dev_keys_are_fixed_and_distinct() {
        assert_eq!(AccountKey::dev(3).public(), AccountKey::dev(3).public());
        assert_ne!(AccountKey::dev(3).public(), AccountKey::dev(4).public());
        assert_ne!(AccountKey::generate(3).public(), AccountKey::generate(3).public());
    }

    #[test]
    fn signatures_survive_both_encodings() {
        let tx = AccountKey::dev(1).transfer(Hash32::ZERO, id("x"), 2, 3, 4);
        let sig = *tx.signature().unwrap();
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), sig);
        let bin = bincode::serialize(&sig).unwrap();
        assert_eq!(bin.len(), 64);
        assert_eq!(bincode::deserialize::<Signature>(&bin).unwrap(), sig);
        assert!(serde_json::from_str::<PublicKey>("\"00\"").is_err());
    }
}
