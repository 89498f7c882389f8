//! TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, ±1 step of skew).
//!
//! The step a code matched is returned so the caller can store it and never accept that step (or
//! an older one) again.

use rand::RngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

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
