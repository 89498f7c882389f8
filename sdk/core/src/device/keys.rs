//! The device's prekeys (PROTOCOL §2, §2.5) and the bodies of `PUT /v1/keys` (§11.11).
//!
//! Private keys are stored before a body naming them is returned: the relay may hand out a
//! bundle the moment it has the public half. Key ids come from counters in the device's
//! settings, so they are never reused:
//!
//! ```text
//! one-time X25519 prekeys   next_otpk, PREKEY_BATCH per batch, from 1
//! one-time KEM prekeys      next_kem,  PREKEY_BATCH per batch, from 1
//! signed prekeys            next_spk,  one per rotation, from 1
//! last-resort KEM prekeys   0x8000_0000 | next_lr (top half: never a one-time id)
//! ```
//!
//! Each signed prekey is uploaded with a new last-resort KEM prekey; `lr_for_spk:` · u32be(spk)
//! remembers which, so both retire together.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::keys::{
    KeyCountsResponse, KeyUploadRequest, OneTimeKeyBody, SignedKeyBody,
};
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::prekeys::{
    KEY_TYPE_X25519, KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey, SignedPreKeyPolicy,
    prekey_signature_message,
};
use haven_sdk::store::{IdentityStore, PreKeyStore};
use rand_core::CryptoRng;

use super::DeviceError;
use super::space::META;
use crate::store::{Backend, EncryptedStore};

/// One-time prekeys of each kind uploaded per batch (at registration and per top-up).
pub const PREKEY_BATCH: u32 = 50;

/// Last-resort KEM key ids use the top half of the id space.
const LAST_RESORT_BIT: u32 = 0x8000_0000;

/// A signed prekey as the key directory takes it (§11.11).
fn signed_key_body(key_id: u32, public_key: &[u8], signature: &[u8]) -> SignedKeyBody {
    SignedKeyBody {
        key_id,
        public_key: STANDARD.encode(public_key),
        signature: STANDARD.encode(signature),
    }
}

/// The next `count` ids of counter `name` (the first is returned, the counter advances).
fn next_id<B: Backend>(
    store: &EncryptedStore<B>,
    name: &[u8],
    count: u32,
) -> Result<u32, DeviceError> {
    let next = store
        .get(META, name)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map_or(1, u32::from_be_bytes);
    store.put(META, name, &next.wrapping_add(count).to_be_bytes())?;
    Ok(next)
}

fn last_resort_name(spk_id: u32) -> Vec<u8> {
    let mut k = b"lr_for_spk:".to_vec();
    k.extend_from_slice(&spk_id.to_be_bytes());
    k
}

/// Generates and stores a batch of one-time X25519 and KEM prekeys; returns their bodies.
fn one_time_batch<B: Backend, R: CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    identity: &IdentityKeyPair,
    now: u64,
    rng: &mut R,
) -> Result<(Vec<OneTimeKeyBody>, Vec<SignedKeyBody>), DeviceError> {
    let first = next_id(store, b"next_otpk", PREKEY_BATCH)?;
    let first_kem = next_id(store, b"next_kem", PREKEY_BATCH)?;
    let mut otpks = Vec::new();
    let mut kems = Vec::new();
    for i in 0..PREKEY_BATCH {
        let k = OneTimePreKey::generate(first.wrapping_add(i), rng);
        // Signed, so the relay stores only keys this device made (a stolen access token cannot
        // fill the pool with junk, PROTOCOL §11.11); the signature is not kept or served.
        let signature = identity.sign(&prekey_signature_message(
            identity.public(),
            KEY_TYPE_X25519,
            k.id(),
            k.public().as_bytes(),
        ));
        otpks.push(OneTimeKeyBody {
            key_id: k.id(),
            public_key: STANDARD.encode(k.public().as_bytes()),
            signature: Some(STANDARD.encode(signature)),
        });
        store.save_one_time_prekey(k)?;
        let q = KemPreKey::generate(
            identity,
            first_kem.wrapping_add(i),
            KemPreKeyKind::OneTime,
            now,
            rng,
        );
        kems.push(signed_key_body(q.id(), q.public(), q.signature()));
        store.save_kem_prekey(q)?;
    }
    Ok((otpks, kems))
}

/// Generates and stores a new signed prekey with its last-resort KEM prekey; sets both in
/// `body`.
fn signed_pair<B: Backend, R: CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    identity: &IdentityKeyPair,
    now: u64,
    rng: &mut R,
    body: &mut KeyUploadRequest,
) -> Result<(), DeviceError> {
    let spk_id = next_id(store, b"next_spk", 1)?;
    let lr_id = LAST_RESORT_BIT | next_id(store, b"next_lr", 1)?;
    let spk = SignedPreKey::generate(identity, spk_id, now, rng);
    let lr = KemPreKey::generate(identity, lr_id, KemPreKeyKind::LastResort, now, rng);
    body.signed_prekey = Some(signed_key_body(
        spk.id(),
        spk.public().as_bytes(),
        spk.signature(),
    ));
    body.last_resort_kem_prekey = Some(signed_key_body(lr.id(), lr.public(), lr.signature()));
    store.save_signed_prekey(spk)?;
    store.save_kem_prekey(lr)?;
    store.put(META, &last_resort_name(spk_id), &lr_id.to_be_bytes())?;
    Ok(())
}

/// Body of `PUT /v1/keys`: a batch of one-time prekeys, and the base keys (registration id,
/// signed prekey, last-resort KEM prekey) when the store holds no signed prekey yet (the first
/// upload of a device).
///
/// # Errors
/// Store errors (nothing is kept then).
pub fn upload<B: Backend, R: CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    now: u64,
    rng: &mut R,
) -> Result<KeyUploadRequest, DeviceError> {
    store.atomically_mut(|s| {
        let identity = s.identity_key_pair()?;
        let (otpks, kems) = one_time_batch(s, &identity, now, rng)?;
        let mut body = KeyUploadRequest {
            one_time_prekeys: otpks,
            one_time_kem_prekeys: kems,
            ..KeyUploadRequest::default()
        };
        if s.signed_prekey_ages()?.is_empty() {
            signed_pair(s, &identity, now, rng, &mut body)?;
            body.registration_id = Some(s.local_registration_id()?);
        }
        Ok(body)
    })
}

/// The top-up decision from `GET /v1/keys/counts`: a body of `PUT /v1/keys` with a new batch of
/// one-time prekeys when the relay reports low stock, else `None`.
///
/// # Errors
/// Store errors.
pub fn replenish<B: Backend, R: CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    counts: &KeyCountsResponse,
    now: u64,
    rng: &mut R,
) -> Result<Option<KeyUploadRequest>, DeviceError> {
    if !counts.low {
        return Ok(None);
    }
    store
        .atomically_mut(|s| {
            let identity = s.identity_key_pair()?;
            let (otpks, kems) = one_time_batch(s, &identity, now, rng)?;
            Ok(KeyUploadRequest {
                one_time_prekeys: otpks,
                one_time_kem_prekeys: kems,
                ..KeyUploadRequest::default()
            })
        })
        .map(Some)
}

/// What [`rotate`] asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Body of `PUT /v1/keys` with a new signed prekey and last-resort KEM prekey (already
    /// stored), when one is due.
    pub upload: Option<KeyUploadRequest>,
    /// Signed prekeys to delete once the upload (if any) succeeded: pass them to [`retire`].
    pub retire: Vec<u32>,
}

/// Plans signed-prekey rotation on `policy`'s schedule: a new signed prekey (with a new
/// last-resort KEM prekey) when the newest is older than `policy.rotate_after`, stored before
/// the body is returned; and the retired keys whose successor is older than
/// `policy.keep_old_for` (handshakes started against an old bundle still complete meanwhile).
///
/// # Errors
/// Store errors.
pub fn rotate<B: Backend, R: CryptoRng + ?Sized>(
    store: &mut EncryptedStore<B>,
    policy: &SignedPreKeyPolicy,
    now: u64,
    rng: &mut R,
) -> Result<Rotation, DeviceError> {
    let plan = policy.plan(&store.signed_prekey_ages()?, now);
    let upload = if plan.generate_new {
        let body = store.atomically_mut(|s| -> Result<_, DeviceError> {
            let identity = s.identity_key_pair()?;
            let mut body = KeyUploadRequest::default();
            signed_pair(s, &identity, now, rng, &mut body)?;
            Ok(body)
        })?;
        Some(body)
    } else {
        None
    };
    Ok(Rotation {
        upload,
        retire: plan.delete,
    })
}

/// Deletes retired signed prekeys and the last-resort KEM prekeys uploaded with them.
///
/// # Errors
/// Store errors (nothing is deleted then).
pub fn retire<B: Backend>(store: &mut EncryptedStore<B>, ids: &[u32]) -> Result<(), DeviceError> {
    if ids.is_empty() {
        return Ok(());
    }
    store.atomically_mut(|s| {
        for &id in ids {
            s.remove_signed_prekey(id)?;
            let name = last_resort_name(id);
            if let Some(lr) = s.get(META, &name)?
                && let Ok(lr) = <[u8; 4]>::try_from(lr.as_slice())
            {
                s.remove_kem_prekey(u32::from_be_bytes(lr))?;
                s.delete(META, &name)?;
            }
        }
        Ok(())
    })
}
