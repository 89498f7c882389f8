//! Signed prekeys (X25519), one-time prekeys (X25519), signed ML-KEM-1024 prekeys (one-time and
//! last-resort), the [`PreKeyBundle`] the relay stores and serves, and rotation policies.
//!
//! Every prekey signature covers `"Haven_PreKeySignature_v1" || IK || type || id || public_key` where
//! `type` is [`KEY_TYPE_X25519`] or [`KEY_TYPE_ML_KEM_1024`]: a signature over one kind of key
//! can never be replayed as a signature over the other kind (PQXDH §3.2 "EncodeEC / EncodeKEM").

use core::fmt;

use ml_kem::ml_kem_1024::{Ciphertext, DecapsulationKey, EncapsulationKey};
use ml_kem::{Decapsulate, KeyExport, TryKeyInit};
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::identity::{
    IDENTITY_KEY_LEN, IdentityError, IdentityKey, IdentityKeyPair, SIGNATURE_LEN, x25519_public,
};
use haven_protocol::encoding::Reader;

/// Length of an ML-KEM-1024 encapsulation (public) key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1568;
/// Length of an ML-KEM-1024 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1568;
/// Length of an ML-KEM seed (`d || z`), the stored form of a decapsulation key.
pub const KEM_SEED_LEN: usize = 64;
pub use haven_protocol::prekeys::{
    KEY_TYPE_ML_KEM_1024, KEY_TYPE_X25519, PREKEY_SIGNATURE_CONTEXT,
};
/// Version byte of the bundle encoding.
const BUNDLE_VERSION: u8 = 0x01;
/// Type byte of the bundle encoding.
const BUNDLE_TYPE: u8 = 0x20;
/// Version/type bytes of the record pickles.
const RECORD_VERSION: u8 = 0x01;
const SIGNED_RECORD_TYPE: u8 = 0x21;
const ONE_TIME_RECORD_TYPE: u8 = 0x22;
const KEM_RECORD_TYPE: u8 = 0x23;
/// Most keys a [`OneTimePreKeyPolicy`] will ask for in one batch.
pub const MAX_ONE_TIME_BATCH: u32 = 1000;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreKeyError {
    /// The encoding is truncated, has trailing bytes or an invalid field.
    #[error("malformed prekey encoding")]
    Malformed,
    /// Unknown version or type byte.
    #[error("unsupported prekey encoding version/type")]
    UnsupportedVersion,
    /// The identity key inside the bundle is invalid.
    #[error("invalid identity key in bundle")]
    InvalidIdentityKey,
    /// The ML-KEM encapsulation key failed validation.
    #[error("invalid ML-KEM public key")]
    InvalidKemKey,
    /// The signed prekey's signature does not verify under the bundle's identity key.
    #[error("signed prekey {id} has an invalid signature")]
    BadSignedPreKeySignature {
        /// Id of the signed prekey.
        id: u32,
    },
    /// The KEM prekey's signature does not verify under the bundle's identity key.
    #[error("KEM prekey {id} has an invalid signature")]
    BadKemPreKeySignature {
        /// Id of the KEM prekey.
        id: u32,
    },
}

/// The byte string a prekey signature covers (PROTOCOL §2.1), for `identity`:
/// [`haven_protocol::prekeys::prekey_signature_message`].
#[must_use]
pub fn prekey_signature_message(
    identity: &IdentityKey,
    key_type: u8,
    id: u32,
    public_key: &[u8],
) -> Vec<u8> {
    haven_protocol::prekeys::prekey_signature_message(
        &identity.to_bytes(),
        key_type,
        id,
        public_key,
    )
}

/// A signed X25519 prekey with its private half (kept by the owner).
#[derive(Clone)]
pub struct SignedPreKey {
    id: u32,
    created_at: u64,
    secret: StaticSecret,
    public: PublicKey,
    signature: [u8; SIGNATURE_LEN],
}

impl SignedPreKey {
    /// Generates and signs a new signed prekey. `now` is unix seconds.
    pub fn generate<R: CryptoRng + ?Sized>(
        identity: &IdentityKeyPair,
        id: u32,
        now: u64,
        rng: &mut R,
    ) -> Self {
        Self::from_secret(identity, id, now, StaticSecret::random_from_rng(rng))
    }

    /// Builds a signed prekey from a known secret (test vectors).
    #[must_use]
    pub fn from_secret(
        identity: &IdentityKeyPair,
        id: u32,
        now: u64,
        secret: StaticSecret,
    ) -> Self {
        let public = PublicKey::from(&secret);
        let signature = identity.sign(&prekey_signature_message(
            identity.public(),
            KEY_TYPE_X25519,
            id,
            public.as_bytes(),
        ));
        Self {
            id,
            created_at: now,
            secret,
            public,
            signature,
        }
    }

    /// Key id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Creation time (unix seconds).
    #[must_use]
    pub fn created_at(&self) -> u64 {
        self.created_at
    }
    /// Public half.
    #[must_use]
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
    /// Signature by the identity key.
    #[must_use]
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// Pickle: `0x01 || 0x21 || id u32 || created_at u64 || secret 32 || signature 64`.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(110));
        out.extend_from_slice(&[RECORD_VERSION, SIGNED_RECORD_TYPE]);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(self.secret.as_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses [`SignedPreKey::to_bytes`].
    ///
    /// # Errors
    /// [`PreKeyError::Malformed`] / [`PreKeyError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreKeyError> {
        let mut r = Reader::new(bytes);
        check_header(&mut r, SIGNED_RECORD_TYPE)?;
        let id = r.u32().ok_or(PreKeyError::Malformed)?;
        let created_at = r.u64().ok_or(PreKeyError::Malformed)?;
        let secret = StaticSecret::from(r.array::<32>().ok_or(PreKeyError::Malformed)?);
        let signature = r.array().ok_or(PreKeyError::Malformed)?;
        r.finish().ok_or(PreKeyError::Malformed)?;
        let public = PublicKey::from(&secret);
        Ok(Self {
            id,
            created_at,
            secret,
            public,
            signature,
        })
    }
}

impl fmt::Debug for SignedPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// An unsigned one-time X25519 prekey with its private half.
#[derive(Clone)]
pub struct OneTimePreKey {
    id: u32,
    secret: StaticSecret,
    public: PublicKey,
}

impl OneTimePreKey {
    /// Generates a one-time prekey.
    pub fn generate<R: CryptoRng + ?Sized>(id: u32, rng: &mut R) -> Self {
        Self::from_secret(id, StaticSecret::random_from_rng(rng))
    }

    /// Builds a one-time prekey from a known secret (test vectors).
    #[must_use]
    pub fn from_secret(id: u32, secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret);
        Self { id, secret, public }
    }

    /// Generates `count` keys with consecutive ids starting at `first_id` (wrapping).
    pub fn generate_batch<R: CryptoRng + ?Sized>(
        first_id: u32,
        count: u32,
        rng: &mut R,
    ) -> Vec<Self> {
        (0..count)
            .map(|i| Self::generate(first_id.wrapping_add(i), rng))
            .collect()
    }

    /// Key id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Public half.
    #[must_use]
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// Pickle: `0x01 || 0x22 || id u32 || secret 32`.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(38));
        out.extend_from_slice(&[RECORD_VERSION, ONE_TIME_RECORD_TYPE]);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(self.secret.as_bytes());
        out
    }

    /// Parses [`OneTimePreKey::to_bytes`].
    ///
    /// # Errors
    /// [`PreKeyError::Malformed`] / [`PreKeyError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreKeyError> {
        let mut r = Reader::new(bytes);
        check_header(&mut r, ONE_TIME_RECORD_TYPE)?;
        let id = r.u32().ok_or(PreKeyError::Malformed)?;
        let secret = StaticSecret::from(r.array::<32>().ok_or(PreKeyError::Malformed)?);
        r.finish().ok_or(PreKeyError::Malformed)?;
        Ok(Self::from_secret(id, secret))
    }
}

impl fmt::Debug for OneTimePreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePreKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Whether a KEM prekey may be used once or is the last-resort key used when none is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KemPreKeyKind {
    /// Deleted after its first use.
    OneTime,
    /// Kept after use (rotated like a signed prekey).
    LastResort,
}

/// A signed ML-KEM-1024 prekey with its private seed.
///
/// The decapsulation key expanded from the seed (FIPS 203 `KeyGen_internal`, as costly as an
/// encapsulation) is kept next to it, built once when the record is created or loaded, so a
/// handshake only decapsulates. It is zeroized on drop (`ml-kem`'s `zeroize` feature).
#[derive(Clone)]
pub struct KemPreKey {
    id: u32,
    kind: KemPreKeyKind,
    created_at: u64,
    seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    decapsulation_key: Box<DecapsulationKey>,
    public: Box<[u8; KEM_PUBLIC_KEY_LEN]>,
    signature: [u8; SIGNATURE_LEN],
}

impl KemPreKey {
    /// Generates and signs a KEM prekey. `now` is unix seconds.
    pub fn generate<R: CryptoRng + ?Sized>(
        identity: &IdentityKeyPair,
        id: u32,
        kind: KemPreKeyKind,
        now: u64,
        rng: &mut R,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(identity, id, kind, now, seed)
    }

    /// Builds a KEM prekey from its 64-byte seed `d || z` (FIPS 203 `ML-KEM.KeyGen_internal`).
    #[must_use]
    pub fn from_seed(
        identity: &IdentityKeyPair,
        id: u32,
        kind: KemPreKeyKind,
        now: u64,
        seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    ) -> Self {
        let (decapsulation_key, public) = kem_expand_seed(&seed);
        let signature = identity.sign(&prekey_signature_message(
            identity.public(),
            KEY_TYPE_ML_KEM_1024,
            id,
            public.as_slice(),
        ));
        Self {
            id,
            kind,
            created_at: now,
            seed,
            decapsulation_key,
            public,
            signature,
        }
    }

    /// Key id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }
    /// One-time or last-resort.
    #[must_use]
    pub fn kind(&self) -> KemPreKeyKind {
        self.kind
    }
    /// Creation time (unix seconds).
    #[must_use]
    pub fn created_at(&self) -> u64 {
        self.created_at
    }
    /// Encoded encapsulation key.
    #[must_use]
    pub fn public(&self) -> &[u8; KEM_PUBLIC_KEY_LEN] {
        &self.public
    }
    /// Signature by the identity key.
    #[must_use]
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// Decapsulates a ciphertext. ML-KEM uses implicit rejection: a wrong ciphertext yields an
    /// unrelated secret, which then fails the first AEAD check.
    pub(crate) fn decapsulate(&self, ciphertext: &[u8; KEM_CIPHERTEXT_LEN]) -> Zeroizing<[u8; 32]> {
        let ct: Ciphertext = (*ciphertext).into();
        let ss = self.decapsulation_key.decapsulate(&ct);
        Zeroizing::new(ss.into())
    }

    /// Pickle: `0x01 || 0x23 || id u32 || kind u8 (1 one-time, 2 last-resort) || created_at u64
    /// || seed 64 || signature 64` (the public key is recomputed from the seed).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(143));
        out.extend_from_slice(&[RECORD_VERSION, KEM_RECORD_TYPE]);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(match self.kind {
            KemPreKeyKind::OneTime => 1,
            KemPreKeyKind::LastResort => 2,
        });
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(self.seed.as_ref());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses [`KemPreKey::to_bytes`].
    ///
    /// # Errors
    /// [`PreKeyError::Malformed`] / [`PreKeyError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreKeyError> {
        let mut r = Reader::new(bytes);
        check_header(&mut r, KEM_RECORD_TYPE)?;
        let id = r.u32().ok_or(PreKeyError::Malformed)?;
        let kind = match r.u8() {
            Some(1) => KemPreKeyKind::OneTime,
            Some(2) => KemPreKeyKind::LastResort,
            _ => return Err(PreKeyError::Malformed),
        };
        let created_at = r.u64().ok_or(PreKeyError::Malformed)?;
        let seed = Zeroizing::new(r.array::<KEM_SEED_LEN>().ok_or(PreKeyError::Malformed)?);
        let signature = r.array().ok_or(PreKeyError::Malformed)?;
        r.finish().ok_or(PreKeyError::Malformed)?;
        let (decapsulation_key, public) = kem_expand_seed(&seed);
        Ok(Self {
            id,
            kind,
            created_at,
            seed,
            decapsulation_key,
            public,
            signature,
        })
    }
}

impl fmt::Debug for KemPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPreKey")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The decapsulation key expanded from `seed` and its encoded encapsulation key.
fn kem_expand_seed(
    seed: &[u8; KEM_SEED_LEN],
) -> (Box<DecapsulationKey>, Box<[u8; KEM_PUBLIC_KEY_LEN]>) {
    let dk = Box::new(DecapsulationKey::from_seed((*seed).into()));
    let ek = dk.encapsulation_key().to_bytes();
    (dk, Box::new(ek.into()))
}

/// A KEM ciphertext and the shared secret it encapsulates.
pub(crate) type KemEncapsulation = (Box<[u8; KEM_CIPHERTEXT_LEN]>, Zeroizing<[u8; 32]>);

/// Encapsulates to an encoded ML-KEM-1024 key with explicit randomness `m` (FIPS 203
/// `ML-KEM.Encaps_internal`); callers draw `m` from their RNG, vectors fix it.
pub(crate) fn kem_encapsulate(
    public: &[u8; KEM_PUBLIC_KEY_LEN],
    m: &[u8; 32],
) -> Result<KemEncapsulation, PreKeyError> {
    let ek = EncapsulationKey::new_from_slice(public).map_err(|_| PreKeyError::InvalidKemKey)?;
    let (ct, ss) = ek.encapsulate_deterministic(&(*m).into());
    Ok((Box::new(ct.into()), Zeroizing::new(ss.into())))
}

fn check_header(r: &mut Reader<'_>, ty: u8) -> Result<(), PreKeyError> {
    match (r.u8(), r.u8()) {
        (Some(RECORD_VERSION), Some(t)) if t == ty => Ok(()),
        (Some(_), Some(_)) => Err(PreKeyError::UnsupportedVersion),
        _ => Err(PreKeyError::Malformed),
    }
}

/// The public prekey material of one device, as the relay stores and serves it.
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The device's public identity.
    pub identity_key: IdentityKey,
    /// Registration id chosen by the device at registration (detects re-installs).
    pub registration_id: u32,
    /// Device id within the account.
    pub device_id: u32,
    /// Id of the signed prekey.
    pub signed_prekey_id: u32,
    /// The signed X25519 prekey.
    pub signed_prekey: PublicKey,
    /// Identity signature over the signed prekey.
    pub signed_prekey_signature: [u8; SIGNATURE_LEN],
    /// A one-time X25519 prekey, if the relay had one left.
    pub one_time_prekey: Option<(u32, PublicKey)>,
    /// Id of the KEM prekey (one-time, or last-resort when none is left).
    pub kem_prekey_id: u32,
    /// The ML-KEM-1024 encapsulation key.
    pub kem_prekey: Box<[u8; KEM_PUBLIC_KEY_LEN]>,
    /// Identity signature over the KEM prekey.
    pub kem_prekey_signature: [u8; SIGNATURE_LEN],
}

impl PreKeyBundle {
    /// Assembles a bundle from the owner's records (what a client uploads).
    #[must_use]
    pub fn new(
        identity_key: IdentityKey,
        registration_id: u32,
        device_id: u32,
        signed: &SignedPreKey,
        one_time: Option<&OneTimePreKey>,
        kem: &KemPreKey,
    ) -> Self {
        Self {
            identity_key,
            registration_id,
            device_id,
            signed_prekey_id: signed.id,
            signed_prekey: signed.public,
            signed_prekey_signature: signed.signature,
            one_time_prekey: one_time.map(|k| (k.id, k.public)),
            kem_prekey_id: kem.id,
            kem_prekey: kem.public.clone(),
            kem_prekey_signature: kem.signature,
        }
    }

    /// Verifies both prekey signatures under the bundle's identity key.
    ///
    /// # Errors
    /// [`PreKeyError::BadSignedPreKeySignature`] / [`PreKeyError::BadKemPreKeySignature`].
    pub fn verify(&self) -> Result<(), PreKeyError> {
        let m = prekey_signature_message(
            &self.identity_key,
            KEY_TYPE_X25519,
            self.signed_prekey_id,
            self.signed_prekey.as_bytes(),
        );
        self.identity_key
            .verify(&m, &self.signed_prekey_signature)
            .map_err(|_: IdentityError| PreKeyError::BadSignedPreKeySignature {
                id: self.signed_prekey_id,
            })?;
        let m = prekey_signature_message(
            &self.identity_key,
            KEY_TYPE_ML_KEM_1024,
            self.kem_prekey_id,
            self.kem_prekey.as_slice(),
        );
        self.identity_key
            .verify(&m, &self.kem_prekey_signature)
            .map_err(|_| PreKeyError::BadKemPreKeySignature {
                id: self.kem_prekey_id,
            })
    }

    /// Encoding (see PROTOCOL.md §2.4).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1850);
        out.extend_from_slice(&[BUNDLE_VERSION, BUNDLE_TYPE]);
        out.extend_from_slice(&self.registration_id.to_be_bytes());
        out.extend_from_slice(&self.device_id.to_be_bytes());
        out.extend_from_slice(&self.identity_key.to_bytes());
        out.extend_from_slice(&self.signed_prekey_id.to_be_bytes());
        out.extend_from_slice(self.signed_prekey.as_bytes());
        out.extend_from_slice(&self.signed_prekey_signature);
        match &self.one_time_prekey {
            None => out.push(0),
            Some((id, key)) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(key.as_bytes());
            }
        }
        out.extend_from_slice(&self.kem_prekey_id.to_be_bytes());
        out.extend_from_slice(self.kem_prekey.as_slice());
        out.extend_from_slice(&self.kem_prekey_signature);
        out
    }

    /// Parses [`PreKeyBundle::to_bytes`]. Does not verify signatures (see [`Self::verify`]).
    ///
    /// # Errors
    /// [`PreKeyError::Malformed`], [`PreKeyError::UnsupportedVersion`],
    /// [`PreKeyError::InvalidIdentityKey`], [`PreKeyError::InvalidKemKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PreKeyError> {
        let mut r = Reader::new(bytes);
        match (r.u8(), r.u8()) {
            (Some(BUNDLE_VERSION), Some(BUNDLE_TYPE)) => {}
            (Some(_), Some(_)) => return Err(PreKeyError::UnsupportedVersion),
            _ => return Err(PreKeyError::Malformed),
        }
        let m = PreKeyError::Malformed;
        let registration_id = r.u32().ok_or(m.clone())?;
        let device_id = r.u32().ok_or(m.clone())?;
        let identity_key = IdentityKey::from_bytes(r.take(IDENTITY_KEY_LEN).ok_or(m.clone())?)
            .map_err(|_| PreKeyError::InvalidIdentityKey)?;
        let signed_prekey_id = r.u32().ok_or(m.clone())?;
        let signed_prekey = x25519_public(r.array::<32>().ok_or(m.clone())?).ok_or(m.clone())?;
        let signed_prekey_signature = r.array().ok_or(m.clone())?;
        let one_time_prekey = match r.u8() {
            Some(0) => None,
            Some(1) => {
                let id = r.u32().ok_or(m.clone())?;
                Some((
                    id,
                    x25519_public(r.array::<32>().ok_or(m.clone())?).ok_or(m.clone())?,
                ))
            }
            _ => return Err(m),
        };
        let kem_prekey_id = r.u32().ok_or(m.clone())?;
        let kem_prekey: [u8; KEM_PUBLIC_KEY_LEN] = r.array().ok_or(m.clone())?;
        EncapsulationKey::new_from_slice(&kem_prekey).map_err(|_| PreKeyError::InvalidKemKey)?;
        let kem_prekey_signature = r.array().ok_or(m.clone())?;
        r.finish().ok_or(m)?;
        Ok(Self {
            identity_key,
            registration_id,
            device_id,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_signature,
            one_time_prekey,
            kem_prekey_id,
            kem_prekey: Box::new(kem_prekey),
            kem_prekey_signature,
        })
    }
}

impl fmt::Debug for PreKeyBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreKeyBundle")
            .field("identity_key", &self.identity_key)
            .field("device_id", &self.device_id)
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field(
                "one_time_prekey_id",
                &self.one_time_prekey.map(|(id, _)| id),
            )
            .field("kem_prekey_id", &self.kem_prekey_id)
            .finish_non_exhaustive()
    }
}

/// Rotation policy for signed prekeys and last-resort KEM prekeys (both are medium-term keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPreKeyPolicy {
    /// Generate a new key once the newest is this many seconds old.
    pub rotate_after: u64,
    /// Keep a replaced key this many seconds after its successor was created, so that
    /// handshakes started against the old bundle still complete.
    pub keep_old_for: u64,
}

impl Default for SignedPreKeyPolicy {
    /// Signal's cadence: rotate weekly, keep the previous key for 30 days.
    fn default() -> Self {
        Self {
            rotate_after: 7 * 86_400,
            keep_old_for: 30 * 86_400,
        }
    }
}

/// What a [`SignedPreKeyPolicy`] asks the client to do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RotationPlan {
    /// A new key must be generated (and uploaded).
    pub generate_new: bool,
    /// Ids of old keys to delete.
    pub delete: Vec<u32>,
}

impl SignedPreKeyPolicy {
    /// Plans rotation given every held key as `(id, created_at)` and `now` (unix seconds). The
    /// newest key is the current one; an older key retires when its successor was created.
    #[must_use]
    pub fn plan(&self, keys: &[(u32, u64)], now: u64) -> RotationPlan {
        let mut sorted = keys.to_vec();
        sorted.sort_by_key(|&(id, created)| (created, id));
        let generate_new = sorted
            .last()
            .is_none_or(|&(_, created)| created.saturating_add(self.rotate_after) <= now);
        let delete = sorted
            .windows(2)
            .filter_map(|w| match w {
                [(id, _), (_, successor_created)]
                    if successor_created.saturating_add(self.keep_old_for) <= now =>
                {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        RotationPlan {
            generate_new,
            delete,
        }
    }
}

/// Replenishment policy for one-time prekeys (X25519 and KEM alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePreKeyPolicy {
    /// Upload more when the relay reports fewer than this many left.
    pub low_watermark: u32,
    /// Target count on the relay after replenishing (capped at [`MAX_ONE_TIME_BATCH`] per call).
    pub target: u32,
}

impl Default for OneTimePreKeyPolicy {
    fn default() -> Self {
        Self {
            low_watermark: 10,
            target: 100,
        }
    }
}

impl OneTimePreKeyPolicy {
    /// How many new keys to generate given the relay's remaining count.
    #[must_use]
    pub fn to_generate(&self, remaining_on_relay: u32) -> u32 {
        if remaining_on_relay >= self.low_watermark {
            return 0;
        }
        self.target
            .saturating_sub(remaining_on_relay)
            .min(MAX_ONE_TIME_BATCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn fixture() -> (IdentityKeyPair, SignedPreKey, OneTimePreKey, KemPreKey) {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let id = IdentityKeyPair::generate(&mut rng);
        let spk = SignedPreKey::generate(&id, 7, 1000, &mut rng);
        let otpk = OneTimePreKey::generate(9, &mut rng);
        let kem = KemPreKey::generate(&id, 11, KemPreKeyKind::OneTime, 1000, &mut rng);
        (id, spk, otpk, kem)
    }

    #[test]
    fn bundle_roundtrip_and_verify() {
        let (id, spk, otpk, kem) = fixture();
        for one_time in [Some(&otpk), None] {
            let b = PreKeyBundle::new(*id.public(), 42, 3, &spk, one_time, &kem);
            b.verify().unwrap();
            let back = PreKeyBundle::from_bytes(&b.to_bytes()).unwrap();
            assert!(back == b);
            let mut extra = b.to_bytes();
            extra.push(0);
            assert_eq!(
                PreKeyBundle::from_bytes(&extra),
                Err(PreKeyError::Malformed)
            );
        }
    }

    #[test]
    fn bundle_bad_signatures_are_typed() {
        let (id, spk, _, kem) = fixture();
        let mut b = PreKeyBundle::new(*id.public(), 1, 1, &spk, None, &kem);
        b.signed_prekey_signature[5] ^= 1;
        assert_eq!(
            b.verify(),
            Err(PreKeyError::BadSignedPreKeySignature { id: 7 })
        );
        let mut b = PreKeyBundle::new(*id.public(), 1, 1, &spk, None, &kem);
        b.kem_prekey_signature[0] ^= 1;
        assert_eq!(
            b.verify(),
            Err(PreKeyError::BadKemPreKeySignature { id: 11 })
        );
        // Swapping the id is caught because the id is signed.
        let mut b = PreKeyBundle::new(*id.public(), 1, 1, &spk, None, &kem);
        b.signed_prekey_id = 8;
        assert!(b.verify().is_err());
    }

    #[test]
    fn signature_over_one_key_type_does_not_verify_as_the_other() {
        let (id, _, _, _) = fixture();
        let key = [9u8; 32];
        let sig = id.sign(&prekey_signature_message(
            id.public(),
            KEY_TYPE_X25519,
            1,
            &key,
        ));
        assert!(
            id.public()
                .verify(
                    &prekey_signature_message(id.public(), KEY_TYPE_ML_KEM_1024, 1, &key),
                    &sig
                )
                .is_err()
        );
    }

    #[test]
    fn record_pickles_roundtrip() {
        let (_, spk, otpk, kem) = fixture();
        let s = SignedPreKey::from_bytes(&spk.to_bytes()).unwrap();
        assert_eq!(
            (s.id(), s.public(), s.signature()),
            (7, spk.public(), spk.signature())
        );
        let o = OneTimePreKey::from_bytes(&otpk.to_bytes()).unwrap();
        assert_eq!(o.public(), otpk.public());
        let k = KemPreKey::from_bytes(&kem.to_bytes()).unwrap();
        assert_eq!(k.public(), kem.public());
        assert_eq!(k.kind(), KemPreKeyKind::OneTime);
        assert_eq!(
            SignedPreKey::from_bytes(&otpk.to_bytes()).unwrap_err(),
            PreKeyError::UnsupportedVersion
        );
    }

    #[test]
    fn kem_roundtrip() {
        let (_, _, _, kem) = fixture();
        let (ct, ss) = kem_encapsulate(kem.public(), &[5; 32]).unwrap();
        assert_eq!(*kem.decapsulate(&ct), *ss);
        // The expanded key a record holds after loading from its pickle (and in a clone)
        // decapsulates as the one it was created with; a tampered ciphertext gets an unrelated
        // secret (implicit rejection).
        let loaded = KemPreKey::from_bytes(&kem.to_bytes()).unwrap();
        assert_eq!(*loaded.clone().decapsulate(&ct), *ss);
        let mut tampered = ct.clone();
        tampered[0] ^= 1;
        assert_ne!(*loaded.decapsulate(&tampered), *ss);
    }

    #[test]
    fn signed_prekey_policy() {
        let p = SignedPreKeyPolicy {
            rotate_after: 100,
            keep_old_for: 50,
        };
        assert_eq!(
            p.plan(&[], 0),
            RotationPlan {
                generate_new: true,
                delete: vec![]
            }
        );
        assert_eq!(
            p.plan(&[(1, 0)], 99),
            RotationPlan {
                generate_new: false,
                delete: vec![]
            }
        );
        assert_eq!(
            p.plan(&[(1, 0)], 100),
            RotationPlan {
                generate_new: true,
                delete: vec![]
            }
        );
        // Key 1 retired at 100 (when 2 was created); deleted from 150 on.
        assert_eq!(p.plan(&[(2, 100), (1, 0)], 149).delete, Vec::<u32>::new());
        assert_eq!(
            p.plan(&[(2, 100), (1, 0)], 150),
            RotationPlan {
                generate_new: false,
                delete: vec![1]
            }
        );
    }

    #[test]
    fn one_time_policy() {
        let p = OneTimePreKeyPolicy {
            low_watermark: 10,
            target: 100,
        };
        assert_eq!(p.to_generate(10), 0);
        assert_eq!(p.to_generate(9), 91);
        assert_eq!(p.to_generate(0), 100);
        let big = OneTimePreKeyPolicy {
            low_watermark: 10,
            target: 5000,
        };
        assert_eq!(big.to_generate(0), MAX_ONE_TIME_BATCH);
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_of_private_records_is_redacted() {
        let id = IdentityKeyPair::from_secret_bytes(&[1; 32], &[2; 32]);
        let spk = SignedPreKey::from_secret(&id, 1, 0, StaticSecret::from([0xAB; 32]));
        let otpk = OneTimePreKey::from_secret(2, StaticSecret::from([0xAB; 32]));
        let kem = KemPreKey::from_seed(
            &id,
            3,
            KemPreKeyKind::LastResort,
            0,
            Zeroizing::new([0xAB; 64]),
        );
        let s = format!("{spk:?}{otpk:?}{kem:?}").to_lowercase();
        assert!(
            !s.contains("ab, ") && !s.contains("abab") && !s.contains("171"),
            "{s}"
        );
    }
}
