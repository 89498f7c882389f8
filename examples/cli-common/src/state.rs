//! The state directory's encrypted store and the secrets that open it.

use std::io::Write as _;
use std::path::Path;

use haven_client::ClientStore;
use haven_client::storage_key::{self, StorageKeyError};
use zeroize::Zeroizing;

use crate::{Cli, Failure};

/// A secret from the variable `var`, or prompted for (`prompt`) on stderr and read from stdin.
///
/// # Errors
/// A usage failure when nothing was entered; I/O failures.
pub fn secret(var: &str, prompt: &str) -> Result<Zeroizing<String>, Failure> {
    if let Ok(v) = std::env::var(var) {
        return Ok(Zeroizing::new(v));
    }
    let mut err = std::io::stderr();
    write!(err, "{prompt}: ")?;
    err.flush()?;
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        return Err(Failure::usage(format!(
            "{prompt}: nothing entered (or set {var})"
        )));
    }
    Ok(trimmed)
}

impl Cli {
    /// The failure for a directory that is not this CLI's state directory.
    #[must_use]
    pub fn not_a_state_dir(&self, dir: &Path) -> Failure {
        Failure::usage(format!("{} is not {}", dir.display(), self.state_dir_kind))
    }

    /// Opens (with `create`, creates) the encrypted store of the state directory `dir`, under
    /// the key given in the CLI's key variable, or else derived from the local passphrase and
    /// the directory's salt.
    ///
    /// # Errors
    /// A usage failure when `dir` has no salt (unless `create`) or the key variable is not 64
    /// hex digits; a wrong passphrase (exit code 3); store and I/O failures.
    pub fn open_store(&self, dir: &Path, create: bool) -> Result<ClientStore, Failure> {
        let key = self.storage_key(dir, create)?;
        Ok(ClientStore::open(&dir.join(self.db_file), &key)?)
    }

    fn storage_key(&self, dir: &Path, create: bool) -> Result<Zeroizing<[u8; 32]>, Failure> {
        if let Some(var) = self.store_key_env
            && let Ok(hex_key) = std::env::var(var)
        {
            return storage_key::from_hex(&hex_key)
                .map_err(|_| Failure::usage(format!("{var} must be 64 hex digits")));
        }
        let salt = match storage_key::state_dir_salt(dir, create) {
            Err(StorageKeyError::NoSalt(_)) => return Err(self.not_a_state_dir(dir)),
            other => other?,
        };
        let passphrase = secret(self.passphrase_env, "local passphrase")?;
        Ok(storage_key::derive(
            passphrase.as_bytes(),
            &salt,
            storage_key::DEFAULT_COST,
        )?)
    }
}
