//! The relay's moderation keys (PROTOCOL.md §16.1, §11.19): the franking X25519 secret `f`
//! (and earlier ones kept for the report window), the delivery-stamp key `K_stamp`, and the
//! moderation key from which the report-sealing key and the address-ban HMAC key are derived.
//!
//! The secrets come from the settings if given; otherwise they are generated and stored like the
//! other server secrets (`secrets::ModerationSecrets`), so every instance sharing the database
//! uses the same keys.

use std::net::IpAddr;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use haven_protocol::franking::FrankingKey;
use haven_protocol::franking::verify::{FrankingSecret, StampKey};
use rand::RngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secrets::{Key32, ModerationSecrets};

/// Version byte of a sealed report.
const SEALED_VERSION: u8 = 0x01;
/// XChaCha20-Poly1305 nonce length.
const NONCE_LEN: usize = 24;

/// The moderation keys (no `Debug`; every secret is zeroized on drop).
pub struct ModerationKeys {
    franking: FrankingSecret,
    previous: Vec<FrankingSecret>,
    stamp: StampKey,
    seal: Key32,
    address: Key32,
}

impl ModerationKeys {
    /// The keys from the loaded secrets (`ServerSecrets::moderation`: configured, or generated
    /// and stored like the other server secrets, so every instance has the same).
    pub fn from_secrets(secrets: &ModerationSecrets) -> Self {
        Self {
            franking: FrankingSecret::from_bytes(*secrets.franking.expose()),
            previous: secrets
                .previous_franking
                .iter()
                .map(|k| FrankingSecret::from_bytes(*k.expose()))
                .collect(),
            stamp: StampKey::from_bytes(*secrets.stamp.expose()),
            seal: Key32::from_bytes(secrets.secret.hmac(b"haven/moderation/seal/v1", b"")),
            address: Key32::from_bytes(secrets.secret.hmac(b"haven/moderation/address/v1", b"")),
        }
    }

    /// The published franking key `F`.
    pub fn franking_key(&self) -> FrankingKey {
        self.franking.public()
    }

    /// The earlier keys still accepted for reports.
    pub fn previous_keys(&self) -> Vec<FrankingKey> {
        self.previous.iter().map(FrankingSecret::public).collect()
    }

    /// The secret of `key`, if it is the current or an earlier key this relay holds.
    pub fn secret_for(&self, key: &FrankingKey) -> Option<&FrankingSecret> {
        std::iter::once(&self.franking)
            .chain(&self.previous)
            .find(|s| bool::from(s.public().0.ct_eq(&key.0)))
    }

    /// The delivery-stamp key.
    pub fn stamp_key(&self) -> &StampKey {
        &self.stamp
    }

    /// Seals a report body at rest: `0x01 || nonce (24) || XChaCha20-Poly1305(seal key, nonce,
    /// body, aad = report id)`.
    pub fn seal(&self, report_id: &[u8; 16], body: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = XChaCha20Poly1305::new(&(*self.seal.expose()).into())
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: body,
                    aad: report_id,
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Opens what [`Self::seal`] sealed for `report_id`.
    pub fn open(&self, report_id: &[u8; 16], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (version, rest) = sealed.split_first()?;
        if *version != SEALED_VERSION {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        XChaCha20Poly1305::new(&(*self.seal.expose()).into())
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: report_id,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// The keyed hash of `ip`'s prefix (`v4_len` / `v6_len` bits; an IPv4-mapped IPv6 address
    /// counts as IPv4), the only form in which an address ban is stored.
    pub fn prefix_hash(&self, ip: IpAddr, v4_len: u8, v6_len: u8) -> [u8; 32] {
        self.address.hmac(
            b"haven/address-ban/v1",
            &crate::client_addr::prefix_bytes(ip, v4_len, v6_len),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> ModerationKeys {
        ModerationKeys {
            franking: FrankingSecret::from_bytes([1; 32]),
            previous: vec![FrankingSecret::from_bytes([2; 32])],
            stamp: StampKey::from_bytes([3; 32]),
            seal: Key32::from_bytes([4; 32]),
            address: Key32::from_bytes([5; 32]),
        }
    }

    #[test]
    fn sealing_round_trips_and_is_bound_to_the_report_id() {
        let k = keys();
        let sealed = k.seal(&[7; 16], b"content").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"content"));
        assert_eq!(&k.open(&[7; 16], &sealed).unwrap()[..], b"content");
        assert!(k.open(&[8; 16], &sealed).is_none());
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(k.open(&[7; 16], &bad).is_none());
    }

    #[test]
    fn prefixes_group_addresses() {
        let k = keys();
        let h = |s: &str| k.prefix_hash(s.parse().unwrap(), 24, 64);
        assert_eq!(h("203.0.113.7"), h("203.0.113.200"));
        assert_ne!(h("203.0.113.7"), h("203.0.114.7"));
        assert_eq!(h("::ffff:203.0.113.9"), h("203.0.113.7"));
        assert_eq!(h("2001:db8:1:2::1"), h("2001:db8:1:2:ffff::9"));
        assert_ne!(h("2001:db8:1:2::1"), h("2001:db8:1:3::1"));
        assert_eq!(
            k.prefix_hash("10.1.2.3".parse().unwrap(), 16, 64),
            k.prefix_hash("10.1.9.9".parse().unwrap(), 16, 64)
        );
    }

    #[test]
    fn previous_keys_are_accepted() {
        let k = keys();
        assert!(k.secret_for(&k.franking_key()).is_some());
        assert!(k.secret_for(&k.previous_keys()[0]).is_some());
        assert!(k.secret_for(&FrankingKey([9; 32])).is_none());
    }
}
