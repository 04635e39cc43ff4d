//! Account key files and the keystore directory that holds them: the file
//! I/O around the domain's [`AccountKey`], kept out of `ledger/`.

use crate::ledger::{AccountId, AccountKey, PublicKey, Signer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Reads an account's key file written by [`save_key`].
pub fn load_key(path: &Path) -> Result<AccountKey, KeyFileError> {
    match load_signer_key(path)? {
        (Signer::Account(_), key) => Ok(key),
        (signer, _) => Err(KeyFileError::Invalid {
            path: path.to_path_buf(),
            reason: format!("it holds the key of {signer}, not of an account"),
        }),
    }
}

/// Reads a key file and whose key it is: an account's, or a genesis role's
/// (written by [`save_role_key`]).
pub fn load_signer_key(path: &Path) -> Result<(Signer, AccountKey), KeyFileError> {
    let bad = |reason: String| KeyFileError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let secret: [u8; 32] = hex::decode(&file.secret_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("secret_key must be 64 hex digits".into()))?;
    let signer = match (file.account, file.registrar, file.issuer) {
        (Some(a), None, None) => Signer::Account(a),
        (None, Some(r), None) => Signer::Registrar(r),
        (None, None, Some(i)) => Signer::Issuer(i),
        _ => return Err(bad("it must name exactly one of account, registrar and issuer".into())),
    };
    let key = AccountKey::from_secret(signer.account().unwrap_or(0), secret, file.insecure_dev_key);
    if key.public() != file.public_key {
        return Err(bad("public_key does not belong to secret_key".into()));
    }
    Ok((signer, key))
}

/// Writes the key as JSON, readable by its owner only; never overwrites.
pub fn save_key(key: &AccountKey, path: &Path) -> Result<(), KeyFileError> {
    write_key_file(key, Signer::Account(key.account), path)
}

/// Writes `key` as the key of genesis role `signer` (a registrar or an
/// issuer), like [`save_key`].
pub fn save_role_key(key: &AccountKey, signer: Signer, path: &Path) -> Result<(), KeyFileError> {
    write_key_file(key, signer, path)
}

fn write_key_file(key: &AccountKey, signer: Signer, path: &Path) -> Result<(), KeyFileError> {
    use std::io::Write;
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (account, registrar, issuer) = match signer {
        Signer::Account(a) => (Some(a), None, None),
        Signer::Registrar(r) => (None, Some(r), None),
        Signer::Issuer(i) => (None, None, Some(i)),
        Signer::Auditor(_) => {
            return Err(KeyFileError::Invalid {
                path: path.to_path_buf(),
                reason: "auditor keys are written as account key files".into(),
            })
        }
        Signer::Holds(_) | Signer::Settled(_) => {
            return Err(KeyFileError::Invalid {
                path: path.to_path_buf(),
                reason: "holds and their settlements have no key of their own".into(),
            })
        }
    };
    let file = KeyFile {
        insecure_dev_key: key.insecure_dev_key,
        account,
        registrar,
        issuer,
        public_key: key.public(),
        secret_key: hex::encode(key.secret_bytes()),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// A keystore is a directory of `<account>.key` files, and of
/// `registrar-<n>.key` and `issuer-<n>.key` for genesis roles.
pub fn key_path(keystore: &Path, account: AccountId) -> PathBuf {
    keystore.join(format!("{account}.key"))
}

/// Where a keystore keeps the key of `signer`.
pub fn signer_key_path(keystore: &Path, signer: Signer) -> PathBuf {
    match signer {
        Signer::Account(a) => key_path(keystore, a),
        Signer::Registrar(n) => keystore.join(format!("registrar-{n}.key")),
        Signer::Issuer(n) => keystore.join(format!("issuer-{n}.key")),
        Signer::Auditor(n) => keystore.join(format!("auditor-{n}.key")),
        // Not signers: the account's owner signs its holds.
        Signer::Holds(a) | Signer::Settled(a) => key_path(keystore, a),
    }
}

/// Creates a keystore directory, readable by its owner only when it is new.
pub fn create_keystore(dir: &Path) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// The on-disk form of an [`AccountKey`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    /// Present (true) on the public dev keys, so nobody mistakes one for a secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    insecure_dev_key: bool,
    /// Whose key: exactly one of an account, a registrar, an issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registrar: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<u32>,
    public_key: PublicKey,
    secret_key: String,
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is not a valid key file: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), 5);
        let k = AccountKey::generate(5);
        save_key(&k, &path).unwrap();
        let back = load_key(&path).unwrap();
        assert_eq!((back.account, back.public()), (5, k.public()));
        assert!(save_key(&AccountKey::generate(5), &path).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let role = signer_key_path(dir.path(), Signer::Issuer(2));
        let ik = AccountKey::dev_role(Signer::Issuer(2));
        save_role_key(&ik, Signer::Issuer(2), &role).unwrap();
        let (signer, back) = load_signer_key(&role).unwrap();
        assert_eq!((signer, back.public()), (Signer::Issuer(2), ik.public()));
        assert!(load_key(&role).unwrap_err().to_string().contains("issuer 2"));
        std::fs::write(&path, "{}").unwrap();
        assert!(load_key(&path)
            .unwrap_err()
            .to_string()
            .contains("not a valid key file"));
    }
}
