//! TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, ±1 step of skew).
//!
//! The step a code matched is returned so the caller can store it and never accept that step (or
//! an older one) again.
//!
//! # At rest
//!
//! A TOTP secret is stored sealed (`crate::sealing`) under a key kept out of the database
//! (`secrets::TotpKeyring`), bound to its account, so a dump of the database does not hold the secrets, and a row copied
//! to another account does not open:
//!
//! ```text
//! K_seal  = HMAC-SHA256(K, "haven/totp/seal/v1" || 0x00)
//! key_id  = HMAC-SHA256(K, "haven/totp/key-id/v1" || 0x00)[0..8]
//! aad     = "haven/totp-secret/v1" || 0x01 || key_id || account id (16)
//! sealed  = 0x01 || key_id (8) || nonce (24) || XChaCha20-Poly1305(K_seal, nonce, secret, aad)
//! ```
//!
//! 69 bytes for a 20-byte secret. A stored value of exactly [`SECRET_LEN`] bytes is a secret
//! stored in the clear before sealing existed: it is accepted, and sealed at the next start
//! ([`reseal_all`]) or its next use ([`reseal_if_stale`]); so is one sealed under an earlier
//! key (`totp_previous_keys`).

use rand::RngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::accounts::store::AccountStore;
use crate::db::error::StoreResult;
use crate::ids::Id;
use crate::secrets::TotpKeyring;

/// Bytes of a TOTP secret (160 bits, the RFC 4226 recommendation).
pub const SECRET_LEN: usize = 20;
/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "Haven";

fn totp(secret: &[u8], label: &str) -> TOTP {
    // `new_unchecked` because our secret length and parameters are fixed and valid; the checked
    // constructor would only reject inputs we never produce.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        label.to_owned(),
    )
}

/// A fresh random secret.
pub fn generate_secret() -> [u8; SECRET_LEN] {
    let mut secret = [0u8; SECRET_LEN];
    OsRng.fill_bytes(&mut secret);
    secret
}

/// Base32 form of the secret and the `otpauth://` URI (labelled with `label`, e.g. the account
/// id: the relay does not know the username).
pub fn provisioning(secret: &[u8], label: &str) -> (String, String) {
    let t = totp(secret, label);
    (t.get_secret_base32(), t.get_url())
}

/// The code for the time step containing `unix_secs` (tests use it as the authenticator app).
pub fn code_at(secret: &[u8], unix_secs: u64) -> String {
    totp(secret, "x").generate(unix_secs)
}

/// If `code` is valid at `now` (±1 step), the matching time step; every candidate is compared in
/// constant time and all are checked.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, "x");
    let current = now / STEP_SECS;
    let mut found = None;
    for step in [
        current.saturating_sub(1),
        current,
        current.saturating_add(1),
    ] {
        let expected = t.generate(step.saturating_mul(STEP_SECS));
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = i64::try_from(step).ok();
        }
    }
    found
}

/// The TOTP use of the at-rest sealing (`crate::sealing`); the context is the account id.
const PURPOSE: crate::sealing::Purpose = crate::sealing::Purpose {
    seal_label: b"haven/totp/seal/v1",
    key_id_label: b"haven/totp/key-id/v1",
    aad_label: b"haven/totp-secret/v1",
};
/// Accounts read per page by [`reseal_all`].
const RESEAL_PAGE: u32 = 500;

pub use crate::sealing::SealError;

/// A stored secret, opened.
pub struct Opened {
    /// The secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// Whether it is sealed under the current key (else it should be sealed again).
    pub current: bool,
}

/// Seals `secret` for `account` under the current key.
pub fn seal(keys: &TotpKeyring, account: &Id, secret: &[u8]) -> Result<Vec<u8>, SealError> {
    crate::sealing::seal(keys, &PURPOSE, account.as_bytes(), secret)
}

/// Opens what [`seal`] sealed for `account` under the current or an earlier key, or a secret
/// stored in the clear by an earlier version ([`SECRET_LEN`] bytes).
pub fn open(keys: &TotpKeyring, account: &Id, stored: &[u8]) -> Result<Opened, SealError> {
    if stored.len() == SECRET_LEN {
        return Ok(Opened {
            secret: Zeroizing::new(stored.to_vec()),
            current: false,
        });
    }
    let opened = crate::sealing::open(keys, &PURPOSE, account.as_bytes(), stored)?;
    Ok(Opened {
        secret: opened.value,
        current: opened.current,
    })
}

/// After a successful use of the secret `stored` of `account`: seals it under the current key
/// if it is not yet (plaintext, or an earlier key). Only replaces exactly `stored`, so a secret
/// set up meanwhile is kept. Errors are logged, not returned: the use itself succeeded.
pub async fn reseal_if_stale<S: AccountStore + Sync>(
    store: &S,
    keys: &TotpKeyring,
    account: &Id,
    stored: &[u8],
    opened: &Opened,
) {
    if opened.current {
        return;
    }
    let resealed = match seal(keys, account, &opened.secret) {
        Ok(sealed) => store.replace_totp_secret(account, stored, &sealed).await,
        Err(err) => {
            tracing::error!(%err, "sealing a TOTP secret again failed");
            return;
        }
    };
    if let Err(err) = resealed {
        tracing::error!(%err, "storing a resealed TOTP secret failed");
    }
}

/// What [`reseal_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Secrets sealed under the current key now (plaintext or an earlier key before).
    pub resealed: u64,
    /// Secrets already under the current key.
    pub current: u64,
    /// Secrets that do not open (unknown key, corrupt): left as they are.
    pub unreadable: u64,
}

/// Seals every stored TOTP secret that is in the clear or under an earlier key under the
/// current key (run at start-up; instances running it at once only repeat each other's work:
/// each replacement is conditional on the value it read).
pub async fn reseal_all<S: AccountStore + Sync>(
    store: &S,
    keys: &TotpKeyring,
) -> StoreResult<Resealed> {
    let mut done = Resealed::default();
    let mut after = None;
    loop {
        let page = store.totp_secrets_page(after.as_ref(), RESEAL_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for (account, stored) in &page {
            match open(keys, account, stored.expose()) {
                Ok(opened) if opened.current => done.current += 1,
                Ok(opened) => match seal(keys, account, &opened.secret) {
                    Ok(sealed) => {
                        if store
                            .replace_totp_secret(account, stored.expose(), &sealed)
                            .await?
                        {
                            done.resealed += 1;
                        }
                    }
                    Err(_) => done.unreadable += 1,
                },
                Err(_) => done.unreadable += 1,
            }
        }
        if page.len() < RESEAL_PAGE as usize {
            break;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector_and_skew() {
        // RFC 6238 Appendix B, SHA-1 secret "12345678901234567890", T = 59 → 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59), "287082");
        assert_eq!(matching_step(secret, "287082", 59), Some(1));
        assert_eq!(matching_step(secret, "287082", 59 + 30), Some(1));
        assert_eq!(matching_step(secret, "287082", 59 + 60), None);
        assert_eq!(matching_step(secret, "28708", 59), None);
        assert_eq!(matching_step(secret, "abcdef", 59), None);
        let (b32, uri) = provisioning(secret, "acct");
        assert_eq!(b32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(uri.starts_with("otpauth://totp/Haven:acct?"), "{uri}");
    }
}
