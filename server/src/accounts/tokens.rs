//! Access tokens (JWT HS256) and refresh tokens (32 random bytes; only SHA-256 is stored).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ids::Id;
use crate::secrets::Key32;

/// Errors from token handling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The access token is malformed, badly signed or has bad claims.
    #[error("invalid access token")]
    Invalid,
    /// The access token has expired.
    #[error("access token expired")]
    Expired,
    /// Signing failed.
    #[error("cannot sign access token")]
    Signing,
}

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Account id (hex).
    pub sub: String,
    /// Device id (hex).
    pub dev: String,
    /// Refresh-token family id (hex): the session this token belongs to.
    pub fam: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issue time, Unix seconds.
    pub iat: u64,
    /// Unique token id (hex).
    pub jti: String,
}

/// The identity an access token proves, after its claims were parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Account.
    pub account: Id,
    /// Device.
    pub device: Id,
    /// Refresh-token family.
    pub family: Id,
}

/// Signs a new access token for `session`, valid for `ttl_secs` from `now`.
pub fn sign_access(
    key: &Key32,
    session: &Session,
    now: u64,
    ttl_secs: u64,
) -> Result<String, TokenError> {
    let claims = Claims {
        sub: session.account.to_hex(),
        dev: session.device.to_hex(),
        fam: session.family.to_hex(),
        exp: now.saturating_add(ttl_secs),
        iat: now,
        jti: Id::random().to_hex(),
    };
    encode_claims(key, &claims)
}

/// Signs arbitrary claims (tests use it to mint expired tokens).
pub fn encode_claims(key: &Key32, claims: &Claims) -> Result<String, TokenError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.expose()),
    )
    .map_err(|_| TokenError::Signing)
}

/// Verifies signature, algorithm and expiry (no leeway) and parses the ids.
pub fn verify_access(key: &Key32, token: &str) -> Result<Session, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iat", "sub"]);
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key.expose()), &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
    let parse = |s: &str| s.parse::<Id>().map_err(|_| TokenError::Invalid);
    Ok(Session {
        account: parse(&data.claims.sub)?,
        device: parse(&data.claims.dev)?,
        family: parse(&data.claims.fam)?,
    })
}

/// A refresh token (32 random bytes): zeroized on drop, no `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RefreshToken([u8; 32]);

impl RefreshToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses the wire form (base64url without padding of 32 bytes).
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let token = <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Self);
        bytes.zeroize();
        token
    }

    /// The wire form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// SHA-256 of the token: the only form that is stored.
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_round_trip_and_rejections() {
        let key = Key32::random();
        let session = Session {
            account: Id::random(),
            device: Id::random(),
            family: Id::random(),
        };
        let now = 1_900_000_000;
        let token = sign_access(&key, &session, now, 60).unwrap();
        // jsonwebtoken checks exp against the real clock, so use a far-future `now`.
        assert_eq!(verify_access(&key, &token), Ok(session));
        assert_eq!(
            verify_access(&Key32::random(), &token),
            Err(TokenError::Invalid)
        );
        assert_eq!(verify_access(&key, "not.a.jwt"), Err(TokenError::Invalid));
        let expired = sign_access(&key, &session, 1_000, 60).unwrap();
        assert_eq!(verify_access(&key, &expired), Err(TokenError::Expired));
        // A token whose ids are not ids is invalid even if correctly signed.
        let bad = Claims {
            sub: "x".into(),
            dev: "y".into(),
            fam: "z".into(),
            exp: now + 60,
            iat: now,
            jti: "j".into(),
        };
        assert_eq!(
            verify_access(&key, &encode_claims(&key, &bad).unwrap()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn refresh_token_encoding() {
        let t = RefreshToken::generate();
        let parsed = RefreshToken::parse(&t.encode()).unwrap();
        assert_eq!(parsed.hash(), t.hash());
        assert_eq!(t.hash().len(), 32);
        assert!(RefreshToken::parse("short").is_none());
        assert!(RefreshToken::parse("!!!").is_none());
    }
}
