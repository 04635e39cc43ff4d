//! The account entries and the supply on disk: versioned entries.
//!
//! A block that changes an entry writes a new version of it, keyed by the
//! block's height, before the head moves ([`super::apply`]); once the head
//! has moved, the versions below go. A crash in between leaves either a
//! version above the tip (the block's apply runs again and writes it again)
//! or versions below the newest: a start keeps, of each name, the highest
//! version at or below the tip and removes the rest. Nothing is ever
//! overwritten in place, so no crash loses the entry the head speaks for.

use super::schema::*;
use super::{Ledger, LedgerError};
use crate::ledger::{AccountInfo, Hold, Registry, Supply};

/// A versioned key split into its name and height.
fn split(key: &[u8]) -> Result<(&[u8], u64), LedgerError> {
    let corrupt = || LedgerError::Corruption {
        height: 0,
        reason: format!("malformed versioned key {:?}", String::from_utf8_lossy(key)),
    };
    let at = key
        .len()
        .checked_sub(8)
        .filter(|&n| n > PREFIX_VERSIONED.len())
        .ok_or_else(corrupt)?;
    let height = key[at..].try_into().map(u64::from_be_bytes).map_err(|_| corrupt())?;
    Ok((&key[..at], height))
}

impl Ledger {
    /// Removes the versions of `name` below `height`.
    pub(super) fn remove_versions_below(&self, name: &[u8], height: u64) -> Result<(), LedgerError> {
        for k in self.tree.range(version_key(name, 0)..version_key(name, height)).keys() {
            self.tree.remove(k?)?;
        }
        Ok(())
    }

    /// Removes every version above `tip`: what the apply of a block whose
    /// head never moved wrote.
    pub(super) fn remove_versions_above(&self, tip: u64) -> Result<(), LedgerError> {
        for k in self.tree.scan_prefix(PREFIX_VERSIONED).keys() {
            let k = k?;
            if split(&k)?.1 > tip {
                self.tree.remove(k)?;
            }
        }
        Ok(())
    }

    /// The registry as of `tip`: of each name, the highest version at or
    /// below it; every other version is removed. O(entries).
    pub(super) fn load_registry(&self, tip: u64) -> Result<Registry, LedgerError> {
        let mut registry = Registry::default();
        // Keys sort by name, then height: one name's versions are adjacent.
        let mut current: Option<(Vec<u8>, sled::IVec, sled::IVec)> = None;
        let keep = |name: &[u8], key: &[u8], value: &[u8], registry: &mut Registry| -> Result<(), LedgerError> {
            if name == SUPPLY_NAME {
                registry.supply = decode::<Supply>(value, || "supply".into())?;
            } else if name.starts_with(PREFIX_HOLD) {
                let hold = hold_of_name(name).ok_or_else(|| LedgerError::Corruption {
                    height: 0,
                    reason: format!("malformed hold entry {:?}", String::from_utf8_lossy(name)),
                })?;
                match decode::<Option<Hold>>(value, || format!("entry of {hold}"))? {
                    Some(h) => registry.holds.set(hold, Some(h)),
                    // Ended, and nothing older is left: the mark goes too.
                    None => {
                        self.tree.remove(key)?;
                    }
                }
            } else {
                let account = key_number(name, b"v:a", "account entry")?;
                let info: AccountInfo = decode(value, || format!("entry of account {account}"))?;
                registry.accounts.insert(account, info);
            }
            Ok(())
        };
        for kv in self.tree.scan_prefix(PREFIX_VERSIONED) {
            let (k, v) = kv?;
            let (name, height) = split(&k)?;
            if height > tip {
                self.tree.remove(&k)?;
                continue;
            }
            match current.take() {
                Some((n, old_key, _)) if n == name => {
                    // A newer version of the same name: the older goes.
                    self.tree.remove(old_key)?;
                }
                Some((n, key, value)) => keep(&n, &key, &value, &mut registry)?,
                None => {}
            }
            current = Some((name.to_vec(), k, v));
        }
        if let Some((n, key, value)) = current {
            keep(&n, &key, &value, &mut registry)?;
        }
        Ok(registry)
    }

    /// Writes every entry of `registry` as a version at `height`, in `batch`
    /// (a snapshot install: the head that follows makes them the entries).
    pub(super) fn write_registry_at(
        &self,
        batch: &mut ChunkedBatch<'_>,
        registry: &Registry,
        height: u64,
    ) -> Result<(), LedgerError> {
        for (account, info) in &registry.accounts {
            batch.insert(account_info_key(*account, height), encode(info, "account entry")?)?;
        }
        for (key, hold) in registry.holds.iter() {
            batch.insert(hold_version_key(key, height), encode(&Some(*hold), "hold")?)?;
        }
        batch.insert(supply_key(height), encode(&registry.supply, "supply")?)
    }
}
