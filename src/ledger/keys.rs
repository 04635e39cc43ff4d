//! Account keys and transfer signatures (ed25519).
//!
//! Every account has a public key, fixed by genesis (block 0 carries it, so
//! the chain id commits to it). A transfer is signed by its source account's
//! key over [`transfer_message`]: a domain tag, the chain id and the
//! transfer's canonical bytes. The chain id keeps a signature from being
//! replayed on another cluster; the transaction id, unique forever within a
//! chain, keeps it from being replayed on this one.

use super::hash::HexError;
use super::{AccountId, Amount, Hash32, TxId};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use ed25519_zebra::{batch, VerificationKeyBytes};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// Separates transfer signatures from any other use of the same key.
const TRANSFER_DOMAIN: &[u8] = b"bank-ledger/transfer/v1";
/// Seed prefix of the public, insecure dev keys.
const DEV_KEY_DOMAIN: &[u8] = b"bank-ledger/INSECURE-dev-key/v1";

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
    #[error("transfer {id} carries no signature; sign it with the key of account {account}")]
    Missing { id: TxId, account: AccountId },
    #[error("signature of transfer {id} does not verify with the key of account {account}")]
    Invalid { id: TxId, account: AccountId },
    #[error("account {account}'s registered public key is not a valid ed25519 key")]
    BadKey { account: AccountId },
}

/// What a transfer's signature covers.
pub fn transfer_message(chain_id: Hash32, id: &TxId, from: AccountId, to: AccountId, amount: Amount) -> Vec<u8> {
    let mut m = Vec::with_capacity(TRANSFER_DOMAIN.len() + 32 + 1 + id.as_str().len() + 24);
    m.extend_from_slice(TRANSFER_DOMAIN);
    m.extend_from_slice(&chain_id.0);
    let idb = id.as_str().as_bytes();
    // TxId bounds ids to 64 bytes: the length fits in one byte.
    m.push(idb.len() as u8);
    m.extend_from_slice(idb);
    m.extend_from_slice(&from.to_be_bytes());
    m.extend_from_slice(&to.to_be_bytes());
    m.extend_from_slice(&amount.to_be_bytes());
    m
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

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs a transfer from this key's account.
    pub fn sign_transfer(&self, chain_id: Hash32, id: &TxId, to: AccountId, amount: Amount) -> Signature {
        let msg = transfer_message(chain_id, id, self.account, to, amount);
        Signature(self.key.sign(&msg).to_bytes())
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

/// The public keys of all accounts, sorted by account for binary search:
/// 40 bytes per account (a map of decompressed keys would take ~5x that).
#[derive(Debug, Clone, Default)]
pub struct AccountKeys {
    keys: Vec<(AccountId, PublicKey)>,
}

impl AccountKeys {
    pub fn new(mut keys: Vec<(AccountId, PublicKey)>) -> AccountKeys {
        keys.sort_unstable_by_key(|(a, _)| *a);
        AccountKeys { keys }
    }

    pub fn get(&self, account: AccountId) -> Option<PublicKey> {
        self.keys
            .binary_search_by_key(&account, |(a, _)| *a)
            .ok()
            .map(|i| self.keys[i].1)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a transfer's signature against its source account's key, by
    /// the rule of [`AccountKeys::verify_transfers`].
    pub fn verify_transfer(
        &self,
        chain_id: Hash32,
        id: &TxId,
        from: AccountId,
        to: AccountId,
        amount: Amount,
        signature: &Signature,
    ) -> Result<(), TransferAuthError> {
        let one = SignedTransfer {
            id,
            from,
            to,
            amount,
            signature,
        };
        // One verdict per transfer; refuse rather than pass if there were none.
        self.verify_transfers(chain_id, &[one])
            .pop()
            .unwrap_or_else(|| Err(one.invalid()))
    }

    /// Checks many transfers' signatures; one result per transfer, in order.
    ///
    /// The rule, the same on the leader, on every replica applying a block
    /// and in audits, one transfer or many: ed25519 as ZIP-215 defines it
    /// (ed25519-zebra), the cofactored equation `[8]([s]B - R - [k]A) = 0`
    /// with `s` canonical, plus our refusal of keys of small order, under
    /// which anyone could sign. Every signature that passes strict RFC 8032
    /// verification passes it. What matters for replicas: a batch's verdict
    /// on each signature is that signature's single verdict, whichever
    /// others share its batch, so every honest node refuses the same ones.
    ///
    /// Signatures are checked [`VERIFY_BATCH`] at a time; a batch that fails
    /// is checked one by one to name the bad ones, so a bad signature costs
    /// its sender's request, not others'.
    pub fn verify_transfers(
        &self,
        chain_id: Hash32,
        transfers: &[SignedTransfer<'_>],
    ) -> Vec<Result<(), TransferAuthError>> {
        let mut out: Vec<Result<(), TransferAuthError>> = Vec::with_capacity(transfers.len());
        // Those that get to the equation, with the index of their result.
        let mut checked: Vec<(usize, batch::Item)> = Vec::with_capacity(transfers.len());
        for (i, t) in transfers.iter().enumerate() {
            let key = match self.get(t.from) {
                Some(k) => k,
                None => {
                    out.push(Err(TransferAuthError::UnknownAccount(t.from)));
                    continue;
                }
            };
            if *t.signature == Signature::NONE {
                out.push(Err(SignatureError::Missing {
                    id: t.id.clone(),
                    account: t.from,
                }
                .into()));
                continue;
            }
            if key.check().is_err() {
                out.push(Err(SignatureError::BadKey { account: t.from }.into()));
                continue;
            }
            let message = transfer_message(chain_id, t.id, t.from, t.to, t.amount);
            let signature = ed25519_zebra::Signature::from_bytes(&t.signature.0);
            out.push(Ok(()));
            checked.push((
                i,
                batch::Item::from((VerificationKeyBytes::from(key.0), signature, &message)),
            ));
        }
        for part in checked.chunks(VERIFY_BATCH) {
            if let [(i, one)] = part {
                if one.clone().verify_single().is_err() {
                    out[*i] = Err(transfers[*i].invalid());
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
                    out[*i] = Err(transfers[*i].invalid());
                }
            }
        }
        out
    }
}

/// Most signatures checked in one batch: beyond ~1,000 a batch is no cheaper
/// per signature, and its scratch memory grows with it.
pub const VERIFY_BATCH: usize = 1024;

/// A transfer's signed fields, for [`AccountKeys::verify_transfers`].
#[derive(Debug, Clone, Copy)]
pub struct SignedTransfer<'a> {
    pub id: &'a TxId,
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Amount,
    pub signature: &'a Signature,
}

impl SignedTransfer<'_> {
    /// Its signature does not verify with its source account's key.
    fn invalid(&self) -> TransferAuthError {
        SignatureError::Invalid {
            id: self.id.clone(),
            account: self.from,
        }
        .into()
    }
}

/// Why a transfer is not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferAuthError {
    /// The source account does not exist, so it has no key.
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    #[error(transparent)]
    Signature(#[from] SignatureError),
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

    #[test]
    fn a_signature_verifies_only_for_its_own_transfer_chain_and_key() {
        let chain = Hash32([7; 32]);
        let k1 = AccountKey::dev(1);
        let keys = AccountKeys::new(vec![(1, k1.public()), (2, AccountKey::dev(2).public())]);
        let sig = k1.sign_transfer(chain, &id("t1"), 2, 50);
        assert_eq!(keys.verify_transfer(chain, &id("t1"), 1, 2, 50, &sig), Ok(()));
        let invalid = |r| matches!(r, Err(TransferAuthError::Signature(SignatureError::Invalid { .. })));
        assert!(invalid(keys.verify_transfer(chain, &id("t1"), 1, 2, 51, &sig)));
        assert!(invalid(keys.verify_transfer(chain, &id("t2"), 1, 2, 50, &sig)));
        assert!(invalid(keys.verify_transfer(
            Hash32([8; 32]),
            &id("t1"),
            1,
            2,
            50,
            &sig
        )));
        // Account 2's key cannot spend from account 1.
        let by_2 = AccountKey::dev(2).sign_transfer(chain, &id("t1"), 2, 50);
        assert!(invalid(keys.verify_transfer(chain, &id("t1"), 1, 2, 50, &by_2)));
        assert!(matches!(
            keys.verify_transfer(chain, &id("t1"), 1, 2, 50, &Signature::NONE),
            Err(TransferAuthError::Signature(SignatureError::Missing { .. }))
        ));
        assert_eq!(
            keys.verify_transfer(chain, &id("t1"), 9, 2, 50, &sig),
            Err(TransferAuthError::UnknownAccount(9))
        );
    }

    #[test]
    fn many_signatures_checked_at_once_get_the_verdicts_each_gets_alone() {
        let chain = Hash32([7; 32]);
        let keys = AccountKeys::new((0..4).map(|a| (a, AccountKey::dev(a).public())).collect());
        let ids: Vec<TxId> = (0..600).map(|i| id(&format!("m{i}"))).collect();
        let mut sigs: Vec<Signature> = ids
            .iter()
            .enumerate()
            .map(|(i, t)| AccountKey::dev(i as u64 % 3).sign_transfer(chain, t, 3, 10))
            .collect();
        // In two batches: a forged one (another key), one for another amount,
        // a missing one, and one from an account with no key.
        sigs[7] = AccountKey::dev(3).sign_transfer(chain, &ids[7], 3, 10);
        sigs[500] = AccountKey::dev(500 % 3).sign_transfer(chain, &ids[500], 3, 11);
        sigs[9] = Signature::NONE;
        let transfers: Vec<SignedTransfer> = ids
            .iter()
            .zip(&sigs)
            .enumerate()
            .map(|(i, (t, signature))| SignedTransfer {
                id: t,
                from: if i == 300 { 99 } else { i as u64 % 3 },
                to: 3,
                amount: 10,
                signature,
            })
            .collect();
        let together = keys.verify_transfers(chain, &transfers);
        let alone: Vec<_> = transfers
            .iter()
            .map(|t| keys.verify_transfer(chain, t.id, t.from, t.to, t.amount, t.signature))
            .collect();
        assert_eq!(together, alone);
        let bad: Vec<usize> = (0..600).filter(|i| together[*i].is_err()).collect();
        assert_eq!(bad, [7, 9, 300, 500]);
        assert!(matches!(
            together[7],
            Err(TransferAuthError::Signature(SignatureError::Invalid { .. }))
        ));
        assert_eq!(together[300], Err(TransferAuthError::UnknownAccount(99)));
        assert!(keys.verify_transfers(chain, &[]).is_empty());
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
        let crafted_id = id("crafted");
        let msg = transfer_message(chain, &crafted_id, 5, 1, 10);
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
        let crafted = Signature(sig);
        let strict = VerifyingKey::from_bytes(&public.0)
            .unwrap()
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig));
        assert!(strict.is_err(), "the case where the rules differ");
        assert_eq!(keys.verify_transfer(chain, &crafted_id, 5, 1, 10, &crafted), Ok(()));

        let ids: Vec<TxId> = (0..40).map(|i| id(&format!("c{i}"))).collect();
        let sigs: Vec<Signature> = ids
            .iter()
            .enumerate()
            .map(|(i, t)| AccountKey::dev(i as u64 % 4).sign_transfer(chain, t, 1, 10))
            .collect();
        for size in [1, 2, 3, 7, 16, 40] {
            for _ in 0..8 {
                let mut batch: Vec<SignedTransfer> = ids[..size]
                    .iter()
                    .zip(&sigs)
                    .enumerate()
                    .map(|(i, (t, signature))| SignedTransfer {
                        id: t,
                        from: i as u64 % 4,
                        to: 1,
                        amount: 10,
                        signature,
                    })
                    .collect();
                let at = rand::thread_rng().gen_range(0..=batch.len());
                batch.insert(
                    at,
                    SignedTransfer {
                        id: &crafted_id,
                        from: 5,
                        to: 1,
                        amount: 10,
                        signature: &crafted,
                    },
                );
                assert!(
                    keys.verify_transfers(chain, &batch).iter().all(Result::is_ok),
                    "batch of {}",
                    batch.len()
                );
                // The same signature on other content is refused, wherever it sits.
                batch[at].amount = 11;
                let verdicts = keys.verify_transfers(chain, &batch);
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
        let verdict = keys.verify_transfer(chain, &id("any"), 5, 1, 10, &Signature(forged));
        assert_eq!(verdict, Err(SignatureError::BadKey { account: 5 }.into()));
    }

    /// For signatures made the usual way, and for damaged ones, the rule
    /// agrees with strict verification.
    #[test]
    fn honest_and_damaged_signatures_get_the_verdict_strict_verification_gives() {
        let chain = Hash32([9; 32]);
        let keys = AccountKeys::new((0..3).map(|a| (a, AccountKey::dev(a).public())).collect());
        let mut rng = rand::thread_rng();
        for i in 0..200u64 {
            let t = id(&format!("s{i}"));
            let from = i % 3;
            let mut sig = AccountKey::dev(from).sign_transfer(chain, &t, 2, i);
            if i % 2 == 1 {
                let byte = rng.gen_range(0..64);
                sig.0[byte] ^= 1 << rng.gen_range(0..8);
            }
            let strict = VerifyingKey::from_bytes(&keys.get(from).unwrap().0)
                .unwrap()
                .verify_strict(
                    &transfer_message(chain, &t, from, 2, i),
                    &ed25519_dalek::Signature::from_bytes(&sig.0),
                )
                .is_ok();
            assert_eq!(
                keys.verify_transfer(chain, &t, from, 2, i, &sig).is_ok(),
                strict,
                "transfer {i}"
            );
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
        let sig = AccountKey::dev(1).sign_transfer(Hash32::ZERO, &id("x"), 2, 3);
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), sig);
        let bin = bincode::serialize(&sig).unwrap();
        assert_eq!(bin.len(), 64);
        assert_eq!(bincode::deserialize::<Signature>(&bin).unwrap(), sig);
        assert!(serde_json::from_str::<PublicKey>("\"00\"").is_err());
    }
}
