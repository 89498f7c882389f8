//! The diary's key hierarchy (`docs/PROTOCOL.md` §9).
//!
//! ```text
//! password ──Argon2id──▶ KEK_pw ──XAEAD wrap──┐
//! recovery code i ──HKDF──▶ KEK_i ──XAEAD wrap─┼─▶ master key (32 random bytes)
//!                                              │        │ HKDF(collection id)
//!                                              │   collection key
//!                                              │        │ HKDF(item id)
//!                                              │     item key ──XAEAD(AD = version, collection,
//!                                              │                 item, revision)──▶ item
//! ```
//!
//! Collection and item keys are *derived*, not stored: nothing but the bundle has to be kept. A
//! collection key can still be shared alone because HKDF is one-way.
//!
//! A password change or new recovery codes start a new key *epoch* ([`epoch`]): a fresh master
//! key for everything written from then on, the older epochs' keys kept in a keyring under it,
//! so a replaced password or code opens nothing new even with every bundle the relay stored.

pub mod entry;
pub mod epoch;
pub mod index;
pub mod merge;
mod recovery;
pub mod sync;

use alloc::boxed::Box;
use alloc::vec::Vec;
use haven_protocol::encoding::Reader;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use epoch::{
    EPOCH_VERSION, EpochBundle, FACTOR_PASSWORD, FACTOR_RECOVERY, FactorSealing, FactorSecret,
    Keyring, MAX_OLD_EPOCHS, PasswordFactor, RecoveryFactor, RecoveryFactorSlot,
};

pub use entry::{AttachmentRef, Entry, EntryError, EntryMeta, SealedEntry};
pub use index::{DiaryIndex, DiaryQuery};
pub use merge::{EntryMerge, TextMerge, merge_entries, merge_text};
pub use recovery::{RECOVERY_CODE_COUNT, RecoveryCode};
pub use sync::{ChangesPage, DiarySync, RemoteItem, SyncError, VaultRequest};

use crate::padding;
use crate::password::normalize_password;

/// Version byte of the version-1 bundle and of item ciphertexts of epoch 0.
pub const DIARY_VERSION: u8 = 0x01;
/// Type byte of a [`WrappedKeyBundle`].
pub const TYPE_BUNDLE: u8 = 0x05;
/// Largest item plaintext (16 MiB); media goes through attachments.
pub const MAX_ITEM_PLAINTEXT_LEN: usize = 16 << 20;
/// Most recovery slots a bundle may hold.
pub const MAX_RECOVERY_SLOTS: usize = 16;

pub(crate) const SALT_LEN: usize = 16;
pub(crate) const XNONCE_LEN: usize = 24;
pub(crate) const WRAPPED_LEN: usize = 32 + 16;
const PASSWORD_WRAP_LABEL: &[u8] = b"Haven_DiaryPasswordWrap_v1";
pub(crate) const RECOVERY_WRAP_LABEL: &[u8] = b"Haven_DiaryRecoveryWrap_v1";
pub(crate) const COLLECTION_INFO: &[u8] = b"Haven_DiaryCollectionKey_v1";
pub(crate) const ITEM_INFO: &[u8] = b"Haven_DiaryItemKey_v1";

/// Errors from the diary key hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiaryError {
    /// The Argon2 parameters are below the enforced minimum (a downgraded or tampered header).
    #[error("KDF parameters below the minimum (m = {m_cost_kib} KiB, t = {t_cost}, p = {p_cost})")]
    KdfParamsTooWeak {
        /// Memory in KiB.
        m_cost_kib: u32,
        /// Passes.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
    },
    /// The Argon2 parameters exceed the maximum (a header crafted to exhaust the device).
    #[error("KDF parameters above the maximum (m = {m_cost_kib} KiB, t = {t_cost}, p = {p_cost})")]
    KdfParamsTooExpensive {
        /// Memory in KiB.
        m_cost_kib: u32,
        /// Passes.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
    },
    /// Argon2 itself failed (out of memory, password too long).
    #[error("password hashing failed")]
    Kdf,
    /// The password does not unwrap the master key (or the bundle was tampered with).
    #[error("wrong password")]
    WrongPassword,
    /// No recovery slot opens with this code (or the bundle was tampered with).
    #[error("wrong recovery code")]
    WrongRecoveryCode,
    /// The text is not a recovery code (bad characters, length or checksum).
    #[error("invalid recovery code format")]
    InvalidRecoveryCode,
    /// The bundle or item bytes are not well formed.
    #[error("malformed diary data")]
    Malformed,
    /// Unknown version byte.
    #[error("unsupported diary format version {0}")]
    UnsupportedVersion(u8),
    /// The item plaintext exceeds [`MAX_ITEM_PLAINTEXT_LEN`].
    #[error("item of {0} bytes is too large")]
    ItemTooLarge(usize),
    /// The item does not decrypt under this key, collection, item id and revision.
    #[error("item decryption failed")]
    ItemDecryptionFailed,
    /// The item was written under a key epoch these keys do not hold (a newer one: the
    /// password or codes changed on another device; fetch the bundle and unlock again).
    #[error("item written under unknown key epoch {0}")]
    UnknownEpoch(u32),
    /// The keyring holds [`epoch::MAX_OLD_EPOCHS`] older epochs, or the epoch counter is
    /// exhausted: no further password change or code regeneration is possible.
    #[error("too many key epochs")]
    TooManyEpochs,
    /// Upgrading a version-1 bundle with new recovery codes needs keys unlocked by its password
    /// (change the password instead, which upgrades it too).
    #[error("unlock with the password first")]
    PasswordRequired,
}

/// Argon2id cost parameters, stored in clear in the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl KdfParams {
    /// Default: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended option, memory-hard
    /// enough for phones and browsers).
    pub const DEFAULT: Self = Self {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// Minimum accepted on unwrap and wrap: OWASP's Argon2id floor (19 MiB, t = 2, p = 1).
    pub const MIN: Self = Self {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// Maximum accepted: 4 GiB, 64 passes, 16 lanes.
    pub const MAX: Self = Self {
        m_cost_kib: 4 * 1024 * 1024,
        t_cost: 64,
        p_cost: 16,
    };

    /// Checks the bounds.
    ///
    /// # Errors
    /// [`DiaryError::KdfParamsTooWeak`] / [`DiaryError::KdfParamsTooExpensive`].
    pub fn validate(&self) -> Result<(), DiaryError> {
        let (m, t, p) = (self.m_cost_kib, self.t_cost, self.p_cost);
        if m < Self::MIN.m_cost_kib || t < Self::MIN.t_cost || p < Self::MIN.p_cost {
            return Err(DiaryError::KdfParamsTooWeak {
                m_cost_kib: m,
                t_cost: t,
                p_cost: p,
            });
        }
        if m > Self::MAX.m_cost_kib || t > Self::MAX.t_cost || p > Self::MAX.p_cost {
            return Err(DiaryError::KdfParamsTooExpensive {
                m_cost_kib: m,
                t_cost: t,
                p_cost: p,
            });
        }
        Ok(())
    }

    /// Picks parameters that take about `target_ms` on this device using at most
    /// `max_mem_kib` of memory. `measure` runs one derivation with the given parameters and
    /// returns its duration in milliseconds (the host times it: this crate reads no clock).
    ///
    /// Memory first (the scarce resource for attackers): `m = min(max_mem, MAX)`, at least the
    /// minimum; `p = 1`. One measurement at `t = MIN.t_cost`; while it is slower than the
    /// target and memory can halve without going below the minimum, halve it and measure
    /// again; then scale `t` linearly to the target, clamped to `[MIN.t_cost, MAX.t_cost]`.
    pub fn calibrate(
        target_ms: u32,
        max_mem_kib: u32,
        mut measure: impl FnMut(&KdfParams) -> u64,
    ) -> KdfParams {
        let mut params = KdfParams {
            m_cost_kib: max_mem_kib.clamp(Self::MIN.m_cost_kib, Self::MAX.m_cost_kib),
            t_cost: Self::MIN.t_cost,
            p_cost: 1,
        };
        let mut ms = measure(&params).max(1);
        while ms > u64::from(target_ms) && params.m_cost_kib / 2 >= Self::MIN.m_cost_kib {
            params.m_cost_kib /= 2;
            ms = measure(&params).max(1);
        }
        let scaled = u64::from(params.t_cost) * u64::from(target_ms) / ms;
        params.t_cost = u32::try_from(scaled)
            .unwrap_or(u32::MAX)
            .clamp(Self::MIN.t_cost, Self::MAX.t_cost);
        params
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A master key (one epoch's). Never leaves the device unwrapped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct MasterKey(Box<[u8; 32]>);

impl MasterKey {
    fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Box::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        Self(key)
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Box::new([0u8; 32]);
        key.copy_from_slice(bytes.get(..32)?);
        (bytes.len() == 32).then_some(Self(key))
    }
}

/// Argon2id(normalised password, salt) → 32-byte key-encryption key (§9.1, §9.1.1).
pub(crate) fn password_kek(
    password: &[u8],
    salt: &[u8; SALT_LEN],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, DiaryError> {
    argon2_kek(&normalize_password(password), salt, params)
}

/// Argon2id(bytes, salt) → 32-byte key-encryption key, the bytes used as given (bundles wrapped
/// before passwords were normalised are opened this way, §9.1.1).
fn argon2_kek(
    password: &[u8],
    salt: &[u8; SALT_LEN],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, DiaryError> {
    params.validate()?;
    let p = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|_| DiaryError::Kdf)?;
    let mut kek = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, kek.as_mut_slice())
        .map_err(|_| DiaryError::Kdf)?;
    Ok(kek)
}

pub(crate) fn hkdf32(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA-256 output length.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand_multi_info(info, out.as_mut_slice());
    out
}

fn password_ad_v(version: u8, params: &KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64);
    ad.extend_from_slice(PASSWORD_WRAP_LABEL);
    ad.push(version);
    ad.extend_from_slice(&params.m_cost_kib.to_be_bytes());
    ad.extend_from_slice(&params.t_cost.to_be_bytes());
    ad.extend_from_slice(&params.p_cost.to_be_bytes());
    ad.extend_from_slice(salt);
    ad
}

fn recovery_ad_v(version: u8, index: u8, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(48);
    ad.extend_from_slice(RECOVERY_WRAP_LABEL);
    ad.push(version);
    ad.push(index);
    ad.extend_from_slice(salt);
    ad
}

fn wrap(kek: &[u8; 32], nonce: &[u8; XNONCE_LEN], ad: &[u8], key: &[u8; 32]) -> [u8; WRAPPED_LEN] {
    let mut out = [0u8; WRAPPED_LEN];
    let ct = epoch::xaead_seal(kek, nonce, ad, key);
    if ct.len() == WRAPPED_LEN {
        out.copy_from_slice(&ct);
    }
    out
}

fn unwrap_key(
    kek: &[u8; 32],
    nonce: &[u8; XNONCE_LEN],
    ad: &[u8],
    wrapped: &[u8; WRAPPED_LEN],
) -> Option<MasterKey> {
    MasterKey::from_slice(&epoch::xaead_open(kek, nonce, ad, wrapped)?)
}

fn random<const N: usize, R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; N] {
    let mut a = [0u8; N];
    rng.fill_bytes(&mut a);
    a
}

/// The password slot of a version-1 bundle (wraps the master key itself).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PasswordSlot {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; XNONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

/// One recovery slot of a version-1 bundle.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RecoverySlot {
    nonce: [u8; XNONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

/// A version-1 bundle: one master key wrapped under the password and under each code. Still
/// opened; replaced by a version-2 bundle at the first password change or code regeneration.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LegacyBundle {
    pub(crate) password: PasswordSlot,
    pub(crate) recovery_salt: [u8; SALT_LEN],
    pub(crate) recovery: Vec<RecoverySlot>,
}

#[derive(Clone, PartialEq, Eq)]
enum BundleFormat {
    Legacy(LegacyBundle),
    Epochs(Box<EpochBundle>),
}

/// The wrapped keys as stored (opaquely) in the relay's vault. Contains no secret in clear.
///
/// Version 2 (written): the current epoch's master key sealed to the password factor and to the
/// recovery factor, and the keyring of older epochs; version 1 (read, and upgraded at the first
/// change): one master key wrapped under the password and each code.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKeyBundle {
    format: BundleFormat,
}

impl core::fmt::Debug for WrappedKeyBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WrappedKeyBundle")
            .field("params", &self.kdf_params())
            .field("epoch", &self.epoch())
            .field("recovery_slots", &self.recovery_slot_count())
            .finish_non_exhaustive()
    }
}

impl WrappedKeyBundle {
    pub(crate) fn legacy(bundle: LegacyBundle) -> Self {
        Self {
            format: BundleFormat::Legacy(bundle),
        }
    }

    /// The Argon2 parameters of the password slot.
    #[must_use]
    pub fn kdf_params(&self) -> KdfParams {
        match &self.format {
            BundleFormat::Legacy(b) => b.password.params,
            BundleFormat::Epochs(b) => b.password.params,
        }
    }

    /// Number of recovery slots.
    #[must_use]
    pub fn recovery_slot_count(&self) -> usize {
        match &self.format {
            BundleFormat::Legacy(b) => b.recovery.len(),
            BundleFormat::Epochs(b) => b.recovery.slots.len(),
        }
    }

    /// The current key epoch (0 for a version-1 bundle).
    #[must_use]
    pub fn epoch(&self) -> u32 {
        match &self.format {
            BundleFormat::Legacy(_) => 0,
            BundleFormat::Epochs(b) => b.epoch,
        }
    }

    /// Whether this is a version-1 bundle (no key epochs yet).
    #[must_use]
    pub fn is_legacy(&self) -> bool {
        matches!(self.format, BundleFormat::Legacy(_))
    }

    /// Encodes the bundle (layouts in `docs/PROTOCOL.md` §9.3).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.format {
            BundleFormat::Legacy(b) => {
                let p = &b.password;
                out.extend_from_slice(&[DIARY_VERSION, TYPE_BUNDLE]);
                out.extend_from_slice(&p.params.m_cost_kib.to_be_bytes());
                out.extend_from_slice(&p.params.t_cost.to_be_bytes());
                out.extend_from_slice(&p.params.p_cost.to_be_bytes());
                out.extend_from_slice(&p.salt);
                out.extend_from_slice(&p.nonce);
                out.extend_from_slice(&p.wrapped);
                out.extend_from_slice(&b.recovery_salt);
                out.push(b.recovery.len() as u8); // <= MAX_RECOVERY_SLOTS
                for s in &b.recovery {
                    out.extend_from_slice(&s.nonce);
                    out.extend_from_slice(&s.wrapped);
                }
            }
            BundleFormat::Epochs(b) => b.encode(&mut out),
        }
        out
    }

    /// Decodes a bundle of either version. Parameters are range-checked when unlocking, not
    /// here, so a bundle with weak parameters can still be inspected and replaced.
    ///
    /// # Errors
    /// [`DiaryError::Malformed`] or [`DiaryError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DiaryError> {
        let mut r = Reader::new(bytes);
        let version = r.u8().ok_or(DiaryError::Malformed)?;
        if version != DIARY_VERSION && version != EPOCH_VERSION {
            return Err(DiaryError::UnsupportedVersion(version));
        }
        if r.u8().ok_or(DiaryError::Malformed)? != TYPE_BUNDLE {
            return Err(DiaryError::Malformed);
        }
        let format = if version == EPOCH_VERSION {
            BundleFormat::Epochs(Box::new(
                EpochBundle::decode(&mut r).ok_or(DiaryError::Malformed)?,
            ))
        } else {
            BundleFormat::Legacy(Self::decode_legacy(&mut r).ok_or(DiaryError::Malformed)?)
        };
        r.finish().ok_or(DiaryError::Malformed)?;
        Ok(Self { format })
    }

    fn decode_legacy(r: &mut Reader<'_>) -> Option<LegacyBundle> {
        let params = KdfParams {
            m_cost_kib: r.u32()?,
            t_cost: r.u32()?,
            p_cost: r.u32()?,
        };
        let password = PasswordSlot {
            params,
            salt: r.array()?,
            nonce: r.array()?,
            wrapped: r.array()?,
        };
        let recovery_salt = r.array()?;
        let n = usize::from(r.u8()?);
        if n > MAX_RECOVERY_SLOTS {
            return None;
        }
        let mut recovery = Vec::with_capacity(n);
        for _ in 0..n {
            recovery.push(RecoverySlot {
                nonce: r.array()?,
                wrapped: r.array()?,
            });
        }
        Some(LegacyBundle {
            password,
            recovery_salt,
            recovery,
        })
    }
}

/// Explicit random values for building a password slot (deterministic vectors).
pub(crate) struct PasswordSlotInputs {
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) nonce: [u8; XNONCE_LEN],
}

/// Explicit random values of one epoch's seals and keyring (deterministic vectors).
pub(crate) struct EpochInputs {
    pub(crate) password_ephemeral: [u8; 32],
    pub(crate) recovery_ephemeral: [u8; 32],
    pub(crate) keyring_nonce: [u8; XNONCE_LEN],
}

impl EpochInputs {
    fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            password_ephemeral: random(rng),
            recovery_ephemeral: random(rng),
            keyring_nonce: random(rng),
        }
    }
}

/// The password key-encryption key of a version-1 bundle, kept after a password unlock so that
/// new recovery codes can upgrade the bundle without asking for the password again.
#[derive(Clone)]
struct LegacyPassword {
    kek: Zeroizing<[u8; 32]>,
    params: KdfParams,
    salt: [u8; SALT_LEN],
}

/// What the keys know about the unlock factors.
#[derive(Clone)]
enum Factors {
    /// From a version-2 bundle: enough to seal a new master key to both factors.
    Epochs {
        password: FactorSealing,
        recovery: FactorSealing,
    },
    /// From a version-1 bundle (or built from a bare master key).
    Legacy { password: Option<LegacyPassword> },
}

/// A new key epoch: the keys to use from now on, the bundle to upload, and new recovery codes
/// when they were replaced (to show to the user once; empty when the codes stay).
pub struct Rotation {
    /// The keys of the new epoch (older epochs stay readable).
    pub keys: DiaryKeys,
    /// The bundle to store.
    pub bundle: WrappedKeyBundle,
    /// New recovery codes (regeneration, or the upgrade of a version-1 bundle), else empty.
    pub codes: Vec<RecoveryCode>,
}

impl core::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rotation")
            .field("bundle", &self.bundle)
            .field("codes", &self.codes.len())
            .finish_non_exhaustive()
    }
}

/// The unlocked diary keys of an account: the current epoch's master key and every older
/// epoch's, so that entries written before a password change stay readable.
#[derive(Clone)]
pub struct DiaryKeys {
    epoch: u32,
    master: MasterKey,
    /// Older epochs, ascending.
    old: Vec<(u32, MasterKey)>,
    factors: Factors,
    /// The password opened the bundle only in the bytes as typed, not normalised (§9.1.1).
    unnormalised_password: bool,
}

/// A new recovery factor: its secret, the slots wrapping it under each code, and the codes.
struct NewRecovery {
    secret: FactorSecret,
    part: RecoveryFactor,
    codes: Vec<RecoveryCode>,
}

/// A new password factor: its secret and its slot.
struct NewPassword {
    secret: FactorSecret,
    part: PasswordFactor,
}

impl DiaryKeys {
    /// Creates a new master key (epoch 0) and a version-2 bundle that seals it to `password`
    /// (Argon2id with `params`) and to [`RECOVERY_CODE_COUNT`] fresh recovery codes. Show the
    /// codes to the user once.
    ///
    /// # Errors
    /// Parameter bounds or Argon2 failures.
    pub fn create<R: CryptoRng + ?Sized>(
        password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(Self, WrappedKeyBundle, Vec<RecoveryCode>), DiaryError> {
        let new_password = new_password_factor(
            password,
            params,
            &PasswordSlotInputs {
                salt: random(rng),
                nonce: random(rng),
            },
            random_factor(rng),
        )?;
        let recovery = new_recovery_factor(rng);
        let keys = Self {
            epoch: 0,
            master: MasterKey::random(rng),
            old: Vec::new(),
            factors: Factors::Epochs {
                password: new_password.secret.sealing(),
                recovery: recovery.secret.sealing(),
            },
            unnormalised_password: false,
        };
        let bundle = keys.assemble(new_password.part, recovery.part, &EpochInputs::random(rng))?;
        Ok((keys, bundle, recovery.codes))
    }

    /// Builds keys from a known master key, epoch 0 (deterministic tests and vectors only).
    #[cfg(any(test, feature = "test-vectors"))]
    pub(crate) fn from_master(master: [u8; 32]) -> Self {
        let mut master = Zeroizing::new(master);
        Self {
            epoch: 0,
            master: MasterKey(Box::new(core::mem::take(&mut *master))),
            old: Vec::new(),
            factors: Factors::Legacy { password: None },
            unnormalised_password: false,
        }
    }

    /// Keys at epoch `masters.len() - 1` with the given factors (deterministic vectors only).
    #[cfg(any(test, feature = "test-vectors"))]
    pub(crate) fn from_epochs(
        masters: &[[u8; 32]],
        password: &FactorSecret,
        recovery: &FactorSecret,
    ) -> Self {
        let mut old: Vec<(u32, MasterKey)> = masters
            .iter()
            .enumerate()
            .map(|(e, k)| (e as u32, MasterKey(Box::new(*k))))
            .collect();
        let (epoch, master) = old.pop().unwrap_or((0, MasterKey(Box::new([0; 32]))));
        Self {
            epoch,
            master,
            old,
            factors: Factors::Epochs {
                password: password.sealing(),
                recovery: recovery.sealing(),
            },
            unnormalised_password: false,
        }
    }

    /// The current key epoch (new items are encrypted under it).
    #[must_use]
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The version-2 bundle of these keys with the given factor slots.
    pub(crate) fn assemble(
        &self,
        password: PasswordFactor,
        recovery: RecoveryFactor,
        inputs: &EpochInputs,
    ) -> Result<WrappedKeyBundle, DiaryError> {
        let Factors::Epochs {
            password: to_password,
            recovery: to_recovery,
        } = &self.factors
        else {
            return Err(DiaryError::Malformed);
        };
        let password_seal = epoch::seal(
            FACTOR_PASSWORD,
            self.epoch,
            to_password,
            inputs.password_ephemeral,
            &self.master,
        )?;
        let recovery_seal = epoch::seal(
            FACTOR_RECOVERY,
            self.epoch,
            to_recovery,
            inputs.recovery_ephemeral,
            &self.master,
        )?;
        let keyring = Keyring {
            password: to_password.clone(),
            recovery: to_recovery.clone(),
            old: self.old.clone(),
        }
        .seal(&self.master, self.epoch, inputs.keyring_nonce)?;
        Ok(WrappedKeyBundle {
            format: BundleFormat::Epochs(Box::new(EpochBundle {
                epoch: self.epoch,
                password,
                password_seal,
                recovery,
                recovery_seal,
                keyring,
            })),
        })
    }

    /// The keys of the next epoch: a fresh master key, this epoch's key moved to the older ones.
    pub(crate) fn next_epoch(
        &self,
        master: MasterKey,
        password: FactorSealing,
        recovery: FactorSealing,
    ) -> Result<Self, DiaryError> {
        let epoch = self.epoch.checked_add(1).ok_or(DiaryError::TooManyEpochs)?;
        let mut old = self.old.clone();
        old.push((self.epoch, self.master.clone()));
        if old.len() > MAX_OLD_EPOCHS {
            return Err(DiaryError::TooManyEpochs);
        }
        Ok(Self {
            epoch,
            master,
            old,
            factors: Factors::Epochs { password, recovery },
            unnormalised_password: false,
        })
    }

    /// Unlocks with the password, in its normalised form (§9.1.1). Parameters outside
    /// [`KdfParams::MIN`]..[`KdfParams::MAX`] are rejected before running Argon2.
    ///
    /// A bundle wrapped before passwords were normalised still opens: when the normalised form
    /// differs from the bytes given and does not open the bundle, the bytes as given are tried
    /// (a second Argon2 run), and [`password_needs_rewrap`](Self::password_needs_rewrap) then
    /// asks the caller to store [`rewrap_normalised_password`](Self::rewrap_normalised_password)'s
    /// bundle.
    ///
    /// # Errors
    /// [`DiaryError::WrongPassword`] (also for a bundle whose seals or keyring were tampered
    /// with), parameter bounds, Argon2 failures.
    pub fn unlock_with_password(
        bundle: &WrappedKeyBundle,
        password: &[u8],
    ) -> Result<Self, DiaryError> {
        let normalised = normalize_password(password);
        match Self::unlock_with_password_bytes(bundle, &normalised) {
            Err(DiaryError::WrongPassword) if normalised.as_slice() != password => {
                let mut keys = Self::unlock_with_password_bytes(bundle, password)?;
                keys.unnormalised_password = true;
                Ok(keys)
            }
            result => result,
        }
    }

    /// Whether the password opened the bundle only in the bytes as typed, not in their
    /// normalised form (§9.1.1): the bundle was wrapped before passwords were normalised, and a
    /// device whose keyboard produces another form of the same password (a decomposed `é`, a
    /// no-break space) cannot open it until
    /// [`rewrap_normalised_password`](Self::rewrap_normalised_password)'s bundle is stored.
    #[must_use]
    pub fn password_needs_rewrap(&self) -> bool {
        self.unnormalised_password
    }

    /// `bundle` with its password slot re-wrapped under the normalised form of `password` (the
    /// password these keys were unlocked with), and the keys that go with it; `None` when
    /// [`password_needs_rewrap`](Self::password_needs_rewrap) is false. Only the password slot
    /// changes (new salt and nonce, the same Argon2 parameters): the epoch, the seals, the
    /// keyring and the recovery slots are kept, so nothing else needs re-encrypting. Store it
    /// like a password change (expecting the bundle's revision).
    ///
    /// # Errors
    /// [`DiaryError::WrongPassword`] if `password` does not open `bundle` as typed, parameter
    /// bounds, Argon2 failures.
    pub fn rewrap_normalised_password<R: CryptoRng + ?Sized>(
        &self,
        bundle: &WrappedKeyBundle,
        password: &[u8],
        rng: &mut R,
    ) -> Result<Option<(Self, WrappedKeyBundle)>, DiaryError> {
        if !self.unnormalised_password {
            return Ok(None);
        }
        let inputs = PasswordSlotInputs {
            salt: random(rng),
            nonce: random(rng),
        };
        match &bundle.format {
            BundleFormat::Legacy(b) => {
                let p = &b.password;
                let old = argon2_kek(password, &p.salt, &p.params)?;
                let master = unwrap_key(
                    &old,
                    &p.nonce,
                    &password_ad_v(DIARY_VERSION, &p.params, &p.salt),
                    &p.wrapped,
                )
                .ok_or(DiaryError::WrongPassword)?;
                if !bool::from(master.0.as_slice().ct_eq(self.master.0.as_slice())) {
                    return Err(DiaryError::WrongPassword);
                }
                let kek = password_kek(password, &inputs.salt, &p.params)?;
                let slot = self.legacy_password_slot(&kek, p.params, &inputs);
                let keys = Self {
                    factors: Factors::Legacy {
                        password: Some(LegacyPassword {
                            kek,
                            params: p.params,
                            salt: inputs.salt,
                        }),
                    },
                    unnormalised_password: false,
                    ..self.clone()
                };
                let bundle = WrappedKeyBundle::legacy(LegacyBundle {
                    password: slot,
                    ..b.clone()
                });
                Ok(Some((keys, bundle)))
            }
            BundleFormat::Epochs(b) => {
                let p = &b.password;
                let old = argon2_kek(password, &p.salt, &p.params)?;
                let factor = epoch::unwrap_factor(
                    &old,
                    &p.nonce,
                    &epoch::password_ad(&p.params, &p.salt),
                    &p.wrapped,
                )
                .ok_or(DiaryError::WrongPassword)?;
                let rewrapped = new_password_factor(password, p.params, &inputs, factor)?;
                let keys = Self {
                    unnormalised_password: false,
                    ..self.clone()
                };
                let bundle = WrappedKeyBundle {
                    format: BundleFormat::Epochs(Box::new(EpochBundle {
                        password: rewrapped.part,
                        ..(**b).clone()
                    })),
                };
                Ok(Some((keys, bundle)))
            }
        }
    }

    /// Unlocks with the password bytes as given (no normalisation).
    fn unlock_with_password_bytes(
        bundle: &WrappedKeyBundle,
        password: &[u8],
    ) -> Result<Self, DiaryError> {
        match &bundle.format {
            BundleFormat::Legacy(b) => {
                let p = &b.password;
                let kek = argon2_kek(password, &p.salt, &p.params)?;
                let master = unwrap_key(
                    &kek,
                    &p.nonce,
                    &password_ad_v(DIARY_VERSION, &p.params, &p.salt),
                    &p.wrapped,
                )
                .ok_or(DiaryError::WrongPassword)?;
                Ok(Self {
                    epoch: 0,
                    master,
                    old: Vec::new(),
                    factors: Factors::Legacy {
                        password: Some(LegacyPassword {
                            kek,
                            params: p.params,
                            salt: p.salt,
                        }),
                    },
                    unnormalised_password: false,
                })
            }
            BundleFormat::Epochs(b) => {
                let p = &b.password;
                let kek = argon2_kek(password, &p.salt, &p.params)?;
                let factor = epoch::unwrap_factor(
                    &kek,
                    &p.nonce,
                    &epoch::password_ad(&p.params, &p.salt),
                    &p.wrapped,
                )
                .ok_or(DiaryError::WrongPassword)?;
                Self::open_epochs(b, FACTOR_PASSWORD, &factor).ok_or(DiaryError::WrongPassword)
            }
        }
    }

    /// Opens the seal to `factor` and the keyring, checking that the keyring names this factor.
    fn open_epochs(b: &EpochBundle, factor: u8, secret: &FactorSecret) -> Option<Self> {
        let seal = if factor == FACTOR_PASSWORD {
            &b.password_seal
        } else {
            &b.recovery_seal
        };
        let master = epoch::open_seal(factor, b.epoch, secret, seal)?;
        let ring = Keyring::open(&b.keyring, &master, b.epoch)?;
        let named = if factor == FACTOR_PASSWORD {
            &ring.password
        } else {
            &ring.recovery
        };
        // The sealer took the factor's public and auth key from this keyring: they must be the
        // factor's own, or a later rotation would seal to a key this factor cannot open.
        let own = secret.sealing();
        let same = named.auth.ct_eq(&own.auth) & named.public.ct_eq(&own.public);
        if !bool::from(same) {
            return None;
        }
        Some(Self {
            epoch: b.epoch,
            master,
            old: ring.old,
            factors: Factors::Epochs {
                password: ring.password,
                recovery: ring.recovery,
            },
            unnormalised_password: false,
        })
    }

    /// Unlocks with one of the recovery codes (text as shown to the user; case, spaces and
    /// hyphens are ignored). Codes stay valid until
    /// [`regenerate_recovery_codes`](Self::regenerate_recovery_codes); do that after a use.
    ///
    /// # Errors
    /// [`DiaryError::InvalidRecoveryCode`] (typo caught by the checksum) or
    /// [`DiaryError::WrongRecoveryCode`].
    pub fn unlock_with_recovery_code(
        bundle: &WrappedKeyBundle,
        code: &str,
    ) -> Result<Self, DiaryError> {
        let code = RecoveryCode::parse(code)?;
        match &bundle.format {
            BundleFormat::Legacy(b) => {
                let kek = hkdf32(
                    Some(&b.recovery_salt),
                    code.entropy(),
                    &[RECOVERY_WRAP_LABEL],
                );
                b.recovery
                    .iter()
                    .enumerate()
                    .find_map(|(i, s)| {
                        unwrap_key(
                            &kek,
                            &s.nonce,
                            &recovery_ad_v(DIARY_VERSION, i as u8, &b.recovery_salt),
                            &s.wrapped,
                        )
                    })
                    .map(|master| Self {
                        epoch: 0,
                        master,
                        old: Vec::new(),
                        factors: Factors::Legacy { password: None },
                        unnormalised_password: false,
                    })
                    .ok_or(DiaryError::WrongRecoveryCode)
            }
            BundleFormat::Epochs(b) => {
                let salt = &b.recovery.salt;
                let kek = hkdf32(Some(salt), code.entropy(), &[RECOVERY_WRAP_LABEL]);
                let factor = b
                    .recovery
                    .slots
                    .iter()
                    .enumerate()
                    .find_map(|(i, s)| {
                        epoch::unwrap_factor(
                            &kek,
                            &s.nonce,
                            &epoch::recovery_ad(i as u8, salt),
                            &s.wrapped,
                        )
                    })
                    .ok_or(DiaryError::WrongRecoveryCode)?;
                Self::open_epochs(b, FACTOR_RECOVERY, &factor).ok_or(DiaryError::WrongRecoveryCode)
            }
        }
    }

    /// Changes the password and starts a new key epoch: a fresh master key, sealed to the new
    /// password and to the current recovery codes; the older keys go into the keyring, so every
    /// entry stays readable, while the old password (even with every bundle the relay ever
    /// stored) opens nothing written from now on. `bundle` is the bundle these keys were
    /// unlocked from or last rotated to. A version-1 bundle is upgraded, which also replaces
    /// the recovery codes ([`Rotation::codes`], to show once): its codes wrap the old master
    /// key itself, so keeping them would keep the old password's reach.
    ///
    /// # Errors
    /// Parameter bounds, Argon2 failures, [`DiaryError::TooManyEpochs`].
    pub fn change_password<R: CryptoRng + ?Sized>(
        &self,
        bundle: &WrappedKeyBundle,
        new_password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<Rotation, DiaryError> {
        let password = new_password_factor(
            new_password,
            params,
            &PasswordSlotInputs {
                salt: random(rng),
                nonce: random(rng),
            },
            random_factor(rng),
        )?;
        let (recovery, to_recovery, codes) = match (&self.factors, &bundle.format) {
            (Factors::Epochs { recovery, .. }, BundleFormat::Epochs(b)) => {
                (b.recovery.clone(), recovery.clone(), Vec::new())
            }
            _ => {
                let fresh = new_recovery_factor(rng);
                (fresh.part, fresh.secret.sealing(), fresh.codes)
            }
        };
        let keys = self.next_epoch(
            MasterKey::random(rng),
            password.secret.sealing(),
            to_recovery,
        )?;
        let bundle = keys.assemble(password.part, recovery, &EpochInputs::random(rng))?;
        Ok(Rotation {
            keys,
            bundle,
            codes,
        })
    }

    /// Replaces all recovery codes (old ones stop working) and starts a new key epoch, as
    /// [`change_password`](Self::change_password) does: an old code opens nothing written
    /// from now on. The password slot is kept; a version-1 bundle is upgraded with the password
    /// these keys were unlocked with.
    ///
    /// # Errors
    /// [`DiaryError::PasswordRequired`] to upgrade a version-1 bundle with keys not unlocked by
    /// its password (change the password instead), [`DiaryError::TooManyEpochs`].
    pub fn regenerate_recovery_codes<R: CryptoRng + ?Sized>(
        &self,
        bundle: &WrappedKeyBundle,
        rng: &mut R,
    ) -> Result<Rotation, DiaryError> {
        let (password, to_password) = match (&self.factors, &bundle.format) {
            (Factors::Epochs { password, .. }, BundleFormat::Epochs(b)) => {
                (b.password.clone(), password.clone())
            }
            (
                Factors::Legacy {
                    password: Some(legacy),
                },
                _,
            ) => {
                let secret = random_factor(rng);
                let nonce = random(rng);
                let part = PasswordFactor {
                    params: legacy.params,
                    salt: legacy.salt,
                    nonce,
                    wrapped: epoch::wrap_factor(
                        &legacy.kek,
                        &nonce,
                        &epoch::password_ad(&legacy.params, &legacy.salt),
                        &secret,
                    ),
                };
                (part, secret.sealing())
            }
            _ => return Err(DiaryError::PasswordRequired),
        };
        let recovery = new_recovery_factor(rng);
        let keys = self.next_epoch(
            MasterKey::random(rng),
            to_password,
            recovery.secret.sealing(),
        )?;
        let bundle = keys.assemble(password, recovery.part, &EpochInputs::random(rng))?;
        Ok(Rotation {
            keys,
            bundle,
            codes: recovery.codes,
        })
    }

    /// Re-wraps a version-1 bundle's master key under a new password, keeping its format and
    /// recovery slots (a recovery on a version-1 bundle: the codes are not known, so it cannot
    /// be upgraded without replacing them; the next password change or code regeneration
    /// does). `None` for a version-2 bundle (use [`change_password`](Self::change_password)).
    ///
    /// # Errors
    /// Parameter bounds or Argon2 failures.
    pub fn rewrap_legacy_password<R: CryptoRng + ?Sized>(
        &self,
        bundle: &WrappedKeyBundle,
        new_password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<Option<(Self, WrappedKeyBundle)>, DiaryError> {
        let BundleFormat::Legacy(b) = &bundle.format else {
            return Ok(None);
        };
        let inputs = PasswordSlotInputs {
            salt: random(rng),
            nonce: random(rng),
        };
        let kek = password_kek(new_password, &inputs.salt, &params)?;
        let password = self.legacy_password_slot(&kek, params, &inputs);
        let keys = Self {
            factors: Factors::Legacy {
                password: Some(LegacyPassword {
                    kek,
                    params,
                    salt: inputs.salt,
                }),
            },
            unnormalised_password: false,
            ..self.clone()
        };
        Ok(Some((
            keys,
            WrappedKeyBundle::legacy(LegacyBundle {
                password,
                ..b.clone()
            }),
        )))
    }

    /// A version-1 password slot (vectors of the version-1 format, and legacy re-wraps).
    pub(crate) fn legacy_password_slot(
        &self,
        kek: &[u8; 32],
        params: KdfParams,
        inputs: &PasswordSlotInputs,
    ) -> PasswordSlot {
        PasswordSlot {
            params,
            salt: inputs.salt,
            nonce: inputs.nonce,
            wrapped: wrap(
                kek,
                &inputs.nonce,
                &password_ad_v(DIARY_VERSION, &params, &inputs.salt),
                &self.master.0,
            ),
        }
    }

    /// Version-1 recovery slots (vectors of the version-1 format).
    #[cfg(any(test, feature = "test-vectors"))]
    pub(crate) fn legacy_recovery_slots(
        &self,
        salt: [u8; SALT_LEN],
        entries: &[([u8; recovery::ENTROPY_LEN], [u8; XNONCE_LEN])],
    ) -> Vec<RecoverySlot> {
        entries
            .iter()
            .enumerate()
            .map(|(i, (entropy, nonce))| {
                let kek = hkdf32(Some(&salt), entropy, &[RECOVERY_WRAP_LABEL]);
                let wrapped = wrap(
                    &kek,
                    nonce,
                    &recovery_ad_v(DIARY_VERSION, i as u8, &salt),
                    &self.master.0,
                );
                RecoverySlot {
                    nonce: *nonce,
                    wrapped,
                }
            })
            .collect()
    }

    /// The master key of `epoch`, if these keys hold it.
    fn master_of(&self, epoch: u32) -> Option<&MasterKey> {
        if epoch == self.epoch {
            return Some(&self.master);
        }
        self.old
            .binary_search_by_key(&epoch, |(e, _)| *e)
            .ok()
            .and_then(|i| self.old.get(i))
            .map(|(_, k)| k)
    }

    fn item_key(
        master: &MasterKey,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
    ) -> Zeroizing<[u8; 32]> {
        let collection = hkdf32(None, master.0.as_slice(), &[COLLECTION_INFO, collection_id]);
        hkdf32(None, collection.as_slice(), &[ITEM_INFO, item_id])
    }

    /// Encrypts one revision of an item under the current epoch. Epoch 0:
    /// `0x01 || nonce(24) || XAEAD(item_key, nonce, pad(plaintext), AD = 0x01 || collection_id
    /// || item_id || revision u64)`; epoch `e ≥ 1`: `0x02 || e u32 || random(20) || XAEAD(…)`
    /// with the 24 bytes after the version byte as nonce and `AD = 0x02 || e u32 ||
    /// collection_id || item_id || revision u64` (PROTOCOL.md §9.4).
    ///
    /// # Errors
    /// [`DiaryError::ItemTooLarge`].
    pub fn encrypt_item<R: CryptoRng + ?Sized>(
        &self,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, DiaryError> {
        self.encrypt_item_with_nonce(collection_id, item_id, revision, plaintext, random(rng))
    }

    /// As [`Self::encrypt_item`] with 24 given random bytes (from epoch 1 on, the first four
    /// are replaced by the epoch).
    pub(crate) fn encrypt_item_with_nonce(
        &self,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        plaintext: &[u8],
        mut nonce: [u8; XNONCE_LEN],
    ) -> Result<Vec<u8>, DiaryError> {
        if plaintext.len() > MAX_ITEM_PLAINTEXT_LEN {
            return Err(DiaryError::ItemTooLarge(plaintext.len()));
        }
        let padded = Zeroizing::new(
            padding::pad(plaintext).map_err(|_| DiaryError::ItemTooLarge(plaintext.len()))?,
        );
        let version = if self.epoch == 0 {
            DIARY_VERSION
        } else {
            nonce[..4].copy_from_slice(&self.epoch.to_be_bytes());
            EPOCH_VERSION
        };
        let key = Self::item_key(&self.master, collection_id, item_id);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let ad = item_ad(version, self.epoch, collection_id, item_id, revision);
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &padded,
                    aad: &ad,
                },
            )
            .map_err(|_| DiaryError::ItemTooLarge(plaintext.len()))?;
        let mut out = Vec::with_capacity(1 + XNONCE_LEN + ct.len());
        out.push(version);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts an item revision of any epoch these keys hold. Fails if the ciphertext was
    /// moved to another collection or item id, or served for another revision.
    ///
    /// # Errors
    /// [`DiaryError::ItemDecryptionFailed`], [`DiaryError::UnknownEpoch`] (written under a newer
    /// epoch: fetch the bundle and unlock again), [`DiaryError::UnsupportedVersion`],
    /// [`DiaryError::Malformed`].
    pub fn decrypt_item(
        &self,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DiaryError> {
        let (&version, rest) = ciphertext.split_first().ok_or(DiaryError::Malformed)?;
        let (nonce, body) = rest
            .split_first_chunk::<XNONCE_LEN>()
            .ok_or(DiaryError::Malformed)?;
        let epoch = match version {
            DIARY_VERSION => 0,
            EPOCH_VERSION => {
                let e = u32::from_be_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]);
                if e == 0 {
                    return Err(DiaryError::Malformed);
                }
                e
            }
            other => return Err(DiaryError::UnsupportedVersion(other)),
        };
        let master = self
            .master_of(epoch)
            .ok_or(DiaryError::UnknownEpoch(epoch))?;
        let key = Self::item_key(master, collection_id, item_id);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let ad = item_ad(version, epoch, collection_id, item_id, revision);
        let padded = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(*nonce),
                    Payload {
                        msg: body,
                        aad: &ad,
                    },
                )
                .map_err(|_| DiaryError::ItemDecryptionFailed)?,
        );
        let plaintext = padding::unpad(&padded).map_err(|_| DiaryError::Malformed)?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }
}

/// A fresh factor: a random X25519 secret and auth key.
fn random_factor<R: CryptoRng + ?Sized>(rng: &mut R) -> FactorSecret {
    FactorSecret {
        secret: random(rng),
        auth: random(rng),
    }
}

/// The password factor `factor` wrapped under `password`.
fn new_password_factor(
    password: &[u8],
    params: KdfParams,
    inputs: &PasswordSlotInputs,
    factor: FactorSecret,
) -> Result<NewPassword, DiaryError> {
    let kek = password_kek(password, &inputs.salt, &params)?;
    let wrapped = epoch::wrap_factor(
        &kek,
        &inputs.nonce,
        &epoch::password_ad(&params, &inputs.salt),
        &factor,
    );
    Ok(NewPassword {
        secret: factor,
        part: PasswordFactor {
            params,
            salt: inputs.salt,
            nonce: inputs.nonce,
            wrapped,
        },
    })
}

/// The recovery factor `factor` wrapped under each code of `entries` (entropy, slot nonce).
pub(crate) fn recovery_factor_slots(
    factor: &FactorSecret,
    salt: [u8; SALT_LEN],
    entries: &[([u8; recovery::ENTROPY_LEN], [u8; XNONCE_LEN])],
) -> RecoveryFactor {
    let slots = entries
        .iter()
        .enumerate()
        .map(|(i, (entropy, nonce))| {
            let kek = hkdf32(Some(&salt), entropy, &[RECOVERY_WRAP_LABEL]);
            RecoveryFactorSlot {
                nonce: *nonce,
                wrapped: epoch::wrap_factor(
                    &kek,
                    nonce,
                    &epoch::recovery_ad(i as u8, &salt),
                    factor,
                ),
            }
        })
        .collect();
    RecoveryFactor { salt, slots }
}

/// A fresh recovery factor wrapped under [`RECOVERY_CODE_COUNT`] fresh codes.
fn new_recovery_factor<R: CryptoRng + ?Sized>(rng: &mut R) -> NewRecovery {
    let secret = random_factor(rng);
    let salt = random(rng);
    let mut entries = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        let code = RecoveryCode::generate(rng);
        entries.push((*code.entropy(), random(rng)));
        codes.push(code);
    }
    let part = recovery_factor_slots(&secret, salt, &entries);
    entries.zeroize();
    NewRecovery {
        secret,
        part,
        codes,
    }
}

fn item_ad(
    version: u8,
    epoch: u32,
    collection_id: &[u8; 16],
    item_id: &[u8; 16],
    revision: u64,
) -> Vec<u8> {
    let mut ad = Vec::with_capacity(45);
    ad.push(version);
    if version != DIARY_VERSION {
        ad.extend_from_slice(&epoch.to_be_bytes());
    }
    ad.extend_from_slice(collection_id);
    ad.extend_from_slice(item_id);
    ad.extend_from_slice(&revision.to_be_bytes());
    ad
}

/// hazmat: diaries as versions before password normalisation (§9.1.1) wrote them, for tests of
/// the migration (test builds and the `test-vectors` feature only).
#[cfg(any(test, feature = "test-vectors"))]
pub mod hazmat {
    use super::*;

    /// hazmat: [`DiaryKeys::create`] as it was before §9.1.1: the password factor wrapped under
    /// the Argon2id of `password` exactly as given, not normalised. Only for tests of the
    /// migration; no diary may be created this way.
    ///
    /// # Errors
    /// As [`DiaryKeys::create`].
    pub fn create_unnormalised<R: CryptoRng + ?Sized>(
        password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(DiaryKeys, WrappedKeyBundle, Vec<RecoveryCode>), DiaryError> {
        let factor = random_factor(rng);
        let inputs = PasswordSlotInputs {
            salt: random(rng),
            nonce: random(rng),
        };
        let kek = argon2_kek(password, &inputs.salt, &params)?;
        let ad = epoch::password_ad(&params, &inputs.salt);
        let wrapped = epoch::wrap_factor(&kek, &inputs.nonce, &ad, &factor);
        let recovery = new_recovery_factor(rng);
        let keys = DiaryKeys {
            epoch: 0,
            master: MasterKey::random(rng),
            old: Vec::new(),
            factors: Factors::Epochs {
                password: factor.sealing(),
                recovery: recovery.secret.sealing(),
            },
            unnormalised_password: false,
        };
        let part = PasswordFactor {
            params,
            salt: inputs.salt,
            nonce: inputs.nonce,
            wrapped,
        };
        let bundle = keys.assemble(part, recovery.part, &EpochInputs::random(rng))?;
        Ok((keys, bundle, recovery.codes))
    }
}

#[cfg(test)]
mod password_tests;
