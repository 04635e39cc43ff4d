//! Account key files and the keystore directory that holds them: the file
//! I/O around the domain's [`AccountKey`], kept out of `ledger/`.

use crate::ledger::{AccountId, AccountKey, PublicKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Reads a key file written by [`save_key`].
pub fn load_key(path: &Path) -> Result<AccountKey, KeyFileError> {
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
    let key = AccountKey::from_secret(file.account, secret, file.insecure_dev_key);
    if key.public() != file.public_key {
        return Err(bad("public_key does not belong to secret_key".into()));
    }
    Ok(key)
}

/// Writes the key as JSON, readable by its owner only; never overwrites.
pub fn save_key(key: &AccountKey, path: &Path) -> Result<(), KeyFileError> {
    use std::io::Write;
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = KeyFile {
        insecure_dev_key: key.insecure_dev_key,
        account: key.account,
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

/// A keystore is a directory of `<account>.key` files.
pub fn key_path(keystore: &Path, account: AccountId) -> PathBuf {
    keystore.join(format!("{account}.key"))
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
    account: AccountId,
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
        std::fs::write(&path, "{}").unwrap();
        assert!(load_key(&path)
            .unwrap_err()
            .to_string()
            .contains("not a valid key file"));
    }
}
