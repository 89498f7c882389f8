//! Admin API keys: minting, hashing, the [`AdminAuth`] extractor, and key management.
//!
//! A key is 32 random bytes written `hvn_admin_<base64url without padding>`. The relay stores
//! only SHA-256 of the 32 bytes. A plain hash is enough here (no salt, no password hash): the
//! key is uniformly random with 256 bits of entropy, so neither a dictionary nor brute force can
//! invert the hash, and a deterministic hash lets the relay find a presented key with one indexed
//! lookup. That lookup is also the constant-time comparison: the database compares hashes, and
//! an attacker who does not know a key learns nothing from timing about any stored hash's
//! preimage.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::admin::AdminContext;
use crate::admin::store::{AdminKeyRecord, AdminStore};
use crate::client_addr::ClientKey;
use crate::db::error::StoreResult;
use crate::error::AppError;
use crate::ids::Id;

/// The prefix of every admin key (lets secret scanners and humans recognise one).
pub const ADMIN_KEY_PREFIX: &str = "hvn_admin_";

/// Longest label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 100;

/// Longest expiry accepted, in days (ten years).
pub const MAX_EXPIRES_DAYS: u32 = 3650;

/// An admin key's secret: zeroized on drop, no `Debug`, shown to the operator once.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct AdminKeySecret([u8; 32]);

impl AdminKeySecret {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses `hvn_admin_<base64url>`; `None` for anything else (wrong prefix, length or
    /// alphabet).
    pub fn parse(text: &str) -> Option<Self> {
        let encoded = text.strip_prefix(ADMIN_KEY_PREFIX)?;
        // 32 bytes are 43 base64url characters; check before decoding anything.
        if encoded.len() != 43 {
            return None;
        }
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(encoded).ok()?);
        let bytes: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Self(bytes))
    }

    /// The key as the operator types it: `hvn_admin_<base64url>`.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{ADMIN_KEY_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(self.0)
        ))
    }

    /// SHA-256 of the 32 key bytes: what the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

/// A newly created key: its record and its secret (shown once, then dropped).
pub struct CreatedAdminKey {
    /// The stored record.
    pub record: AdminKeyRecord,
    /// The secret to hand to the operator.
    pub secret: AdminKeySecret,
}

/// Checks a label: 1..=[`MAX_LABEL_BYTES`] bytes, no control characters.
pub fn validate_label(label: &str) -> Result<(), AppError> {
    let label_ok = !label.trim().is_empty()
        && label.len() <= MAX_LABEL_BYTES
        && !label.chars().any(char::is_control);
    if label_ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "invalid_label",
            "the label must be 1 to 100 bytes without control characters",
        ))
    }
}

/// Creates and stores a key labelled `label`, expiring `expires_days` days after `now` (never
/// if `None`). Validates the label and the expiry first.
pub async fn create_key<S: AdminStore>(
    store: &S,
    label: &str,
    expires_days: Option<u32>,
    now: i64,
) -> Result<CreatedAdminKey, AppError> {
    validate_label(label)?;
    if expires_days.is_some_and(|d| d == 0 || d > MAX_EXPIRES_DAYS) {
        return Err(AppError::bad_request(
            "invalid_expiry",
            "expires_days must be between 1 and 3650",
        ));
    }
    let secret = AdminKeySecret::random();
    let record = AdminKeyRecord {
        id: Id::random(),
        label: label.to_owned(),
        created_at: now,
        last_used_at: None,
        expires_at: expires_days.map(|d| now.saturating_add(i64::from(d) * 86_400)),
        revoked_at: None,
    };
    store.insert_admin_key(&record, &secret.hash()).await?;
    metrics::counter!("haven_admin_actions_total", "action" => "create_key").increment(1);
    tracing::info!(key_id = %record.id, "admin key created");
    Ok(CreatedAdminKey { record, secret })
}

/// Revokes key `id`; `false` if there is no such key.
pub async fn revoke_key<S: AdminStore>(store: &S, id: &Id, now: i64) -> StoreResult<bool> {
    let found = store.revoke_admin_key(id, now).await?;
    if found {
        metrics::counter!("haven_admin_actions_total", "action" => "revoke_key").increment(1);
        tracing::info!(key_id = %id, "admin key revoked");
    }
    Ok(found)
}

/// A request authenticated by an active admin key (`Authorization: Bearer hvn_admin_…`).
///
/// Generic over [`AdminContext`], so any feature's routes can require it without naming the
/// application state. Unknown, revoked and expired keys all answer 401 `invalid_admin_key` (one
/// code: which of the three it was would only help someone holding a stolen key); no header
/// answers 401 `missing_admin_key`, and a relay with no admin key at all answers the same way.
/// Each wrong key counts against the client address (429 once over the quota, see
/// [`crate::limits::check_admin_failures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminAuth {
    /// The id of the key used.
    pub key_id: Id,
}

impl<C: AdminContext> FromRequestParts<C> for AdminAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, ctx: &C) -> Result<Self, Self::Rejection> {
        let Ok(ClientKey(client)) = ClientKey::from_request_parts(parts, ctx).await;
        if let Some(addr) = &client {
            crate::limits::check_admin_failures(ctx, addr).await?;
        }
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            metrics::counter!("haven_admin_auth_failures_total", "reason" => "missing")
                .increment(1);
            return Err(AppError::unauthorized(
                "missing_admin_key",
                "an admin key is required (Authorization: Bearer hvn_admin_...)",
            ));
        };
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|token| AdminKeySecret::parse(token.trim()));
        let now = crate::clock::now_i64();
        let record = match &secret {
            Some(secret) => ctx.admin_store().admin_key_by_hash(&secret.hash()).await?,
            None => None,
        };
        match record {
            Some(record) if record.is_active(now) => {
                ctx.admin_store().touch_admin_key(&record.id, now).await?;
                Ok(Self { key_id: record.id })
            }
            other => {
                let reason = match (&secret, &other) {
                    (None, _) => "malformed",
                    (Some(_), None) => "unknown",
                    (Some(_), Some(r)) if r.revoked_at.is_some() => "revoked",
                    (Some(_), Some(_)) => "expired",
                };
                metrics::counter!("haven_admin_auth_failures_total", "reason" => reason)
                    .increment(1);
                tracing::info!(reason, "admin authentication failed");
                if let Some(addr) = &client {
                    crate::limits::record_admin_failure(ctx, addr).await?;
                }
                Err(AppError::unauthorized(
                    "invalid_admin_key",
                    "the admin key is unknown, revoked or expired",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_reject_malformed_text() {
        let key = AdminKeySecret::random();
        let text = key.encode();
        assert!(text.starts_with(ADMIN_KEY_PREFIX));
        let parsed = AdminKeySecret::parse(&text).unwrap();
        assert_eq!(parsed.hash(), key.hash());
        assert!(AdminKeySecret::parse(&text[1..]).is_none());
        assert!(AdminKeySecret::parse(&format!("{}A", &*text)).is_none());
        assert!(AdminKeySecret::parse(&format!("{ADMIN_KEY_PREFIX}{}", "!".repeat(43))).is_none());
        assert!(AdminKeySecret::parse("").is_none());
    }

    #[test]
    fn labels_are_checked() {
        assert!(validate_label("ops laptop").is_ok());
        assert!(validate_label(" ").is_err());
        assert!(validate_label("a\nb").is_err());
        assert!(validate_label(&"x".repeat(101)).is_err());
    }

    #[test]
    fn activity_follows_revocation_and_expiry() {
        let mut record = AdminKeyRecord {
            id: Id::random(),
            label: "l".into(),
            created_at: 0,
            last_used_at: None,
            expires_at: Some(100),
            revoked_at: None,
        };
        assert!(record.is_active(99));
        assert!(!record.is_active(100));
        record.expires_at = None;
        assert!(record.is_active(i64::MAX));
        record.revoked_at = Some(5);
        assert!(!record.is_active(6));
    }
}
