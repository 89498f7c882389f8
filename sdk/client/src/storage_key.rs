//! The storage key of a device's local store, from a passphrase: Argon2id over the passphrase
//! and a random salt kept next to the store (the salt file of a state directory). The CLIs and
//! the bindings derive it here, so a store made by one opens in the others.
//!
//! ```text
//! storage_key = Argon2id(v0x13, m = 64 MiB, t = 3, p = 1, out = 32,
//!                        password = passphrase (its bytes as given), salt = 16 random bytes)
//! ```
//!
//! A wrong passphrase gives a wrong key, which [`crate::ClientStore::open`] refuses.

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use haven_sdk::KdfParams;
use zeroize::Zeroizing;

/// Length of a storage key.
pub const KEY_LEN: usize = 32;
/// Length of the salt a state directory keeps.
pub const SALT_LEN: usize = 16;
/// Shortest salt accepted (RFC 9106 recommends 16 bytes).
pub const MIN_SALT_LEN: usize = 16;
/// Name of the salt file in a state directory.
pub const SALT_FILE: &str = "salt";
/// The Argon2id cost of a local passphrase unless a caller chooses another.
pub const DEFAULT_COST: KdfParams = KdfParams::DEFAULT;

/// Errors deriving or loading a storage key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageKeyError {
    /// The salt is shorter than [`MIN_SALT_LEN`].
    #[error("salt of {len} bytes is shorter than {MIN_SALT_LEN}")]
    ShortSalt {
        /// Its length.
        len: usize,
    },
    /// The Argon2id cost is outside the accepted bounds (see [`KdfParams::validate`]).
    #[error("key derivation parameters: {0}")]
    Cost(String),
    /// A state directory's salt file has the wrong length.
    #[error("the salt file of {} is damaged", .0.display())]
    DamagedSalt(PathBuf),
    /// The directory has no salt file (it holds no store yet).
    #[error("{} holds no salt file", .0.display())]
    NoSalt(PathBuf),
    /// Reading or writing the salt file failed.
    #[error("salt file: {0}")]
    Io(#[from] std::io::Error),
    /// A key given as text is not 64 hex digits.
    #[error("a storage key is 64 hex digits")]
    BadHex,
}

/// Derives a storage key from `passphrase` and `salt` at `cost`.
///
/// # Errors
/// [`StorageKeyError::ShortSalt`], [`StorageKeyError::Cost`].
pub fn derive(
    passphrase: &[u8],
    salt: &[u8],
    cost: KdfParams,
) -> Result<Zeroizing<[u8; KEY_LEN]>, StorageKeyError> {
    if salt.len() < MIN_SALT_LEN {
        return Err(StorageKeyError::ShortSalt { len: salt.len() });
    }
    cost.validate()
        .map_err(|e| StorageKeyError::Cost(e.to_string()))?;
    let params = Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(KEY_LEN))
        .map_err(|e| StorageKeyError::Cost(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, key.as_mut_slice())
        .map_err(|e| StorageKeyError::Cost(e.to_string()))?;
    Ok(key)
}

/// The salt of the state directory `dir`: read from its salt file, or, with `create`, made
/// (16 random bytes) and written there (creating the directory) when there is none.
///
/// # Errors
/// [`StorageKeyError::NoSalt`] without a salt file unless `create`,
/// [`StorageKeyError::DamagedSalt`], I/O errors.
pub fn state_dir_salt(dir: &Path, create: bool) -> Result<[u8; SALT_LEN], StorageKeyError> {
    let path = dir.join(SALT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => bytes
            .as_slice()
            .try_into()
            .map_err(|_| StorageKeyError::DamagedSalt(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::create_dir_all(dir)?;
            let mut salt = [0u8; SALT_LEN];
            rand::Rng::fill_bytes(&mut rand::rng(), &mut salt);
            std::fs::write(&path, salt)?;
            Ok(salt)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(StorageKeyError::NoSalt(dir.to_path_buf()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The storage key of the state directory `dir` for `passphrase` at the default cost (see
/// [`state_dir_salt`] for `create`).
///
/// # Errors
/// As [`state_dir_salt`] and [`derive`].
pub fn for_state_dir(
    dir: &Path,
    passphrase: &[u8],
    create: bool,
) -> Result<Zeroizing<[u8; KEY_LEN]>, StorageKeyError> {
    let salt = state_dir_salt(dir, create)?;
    derive(passphrase, &salt, DEFAULT_COST)
}

/// A key given as 64 hex digits (surrounding whitespace ignored).
///
/// # Errors
/// [`StorageKeyError::BadHex`].
pub fn from_hex(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, StorageKeyError> {
    let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| StorageKeyError::BadHex)?);
    let key: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StorageKeyError::BadHex)?;
    Ok(Zeroizing::new(key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The cheapest accepted cost, so the test is quick; the default is the same function.
    const CHEAP: KdfParams = KdfParams::MIN;

    #[test]
    fn same_inputs_same_key_and_every_input_matters() {
        let salt = [7u8; 16];
        let a = derive(b"passphrase", &salt, CHEAP).unwrap();
        assert_eq!(*a, *derive(b"passphrase", &salt, CHEAP).unwrap());
        assert_ne!(*a, *derive(b"passphrasf", &salt, CHEAP).unwrap());
        assert_ne!(*a, *derive(b"passphrase", &[8u8; 16], CHEAP).unwrap());
        assert!(matches!(
            derive(b"p", &[0u8; 15], CHEAP),
            Err(StorageKeyError::ShortSalt { len: 15 })
        ));
        let weak = KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        };
        assert!(matches!(
            derive(b"p", &salt, weak),
            Err(StorageKeyError::Cost(_))
        ));
    }

    #[test]
    fn state_directory_salt_is_made_once_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(matches!(
            state_dir_salt(&state, false),
            Err(StorageKeyError::NoSalt(_))
        ));
        let salt = state_dir_salt(&state, true).unwrap();
        assert_eq!(state_dir_salt(&state, false).unwrap(), salt);
        assert_eq!(state_dir_salt(&state, true).unwrap(), salt);
        std::fs::write(state.join(SALT_FILE), [1u8; 15]).unwrap();
        assert!(matches!(
            state_dir_salt(&state, false),
            Err(StorageKeyError::DamagedSalt(_))
        ));
    }

    #[test]
    fn hex_keys() {
        assert_eq!(
            *from_hex(&format!(" {} ", "ab".repeat(32))).unwrap(),
            [0xab; 32]
        );
        for bad in ["", "zz", &"ab".repeat(31), &"ab".repeat(33)] {
            assert!(matches!(from_hex(bad), Err(StorageKeyError::BadHex)));
        }
    }
}
