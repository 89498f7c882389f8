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
//! Collection and item keys are *derived*, not stored: nothing but the wrapped master key has to
//! be kept, and a password change re-wraps only the master key. A collection key can still be
//! shared alone because HKDF is one-way.

pub mod entry;
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
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use entry::{AttachmentRef, Entry, EntryError, EntryMeta, SealedEntry};
pub use index::{DiaryIndex, DiaryQuery};
pub use merge::{EntryMerge, TextMerge, merge_entries, merge_text};
pub use recovery::{RECOVERY_CODE_COUNT, RecoveryCode};
pub use sync::{ChangesPage, DiarySync, RemoteItem, SyncError, VaultRequest};

use crate::padding;

/// Version byte of the bundle and of item ciphertexts.
pub const DIARY_VERSION: u8 = 0x01;
/// Type byte of a [`WrappedKeyBundle`].
pub const TYPE_BUNDLE: u8 = 0x05;
/// Largest item plaintext (16 MiB); media goes through attachments.
pub const MAX_ITEM_PLAINTEXT_LEN: usize = 16 << 20;
/// Most recovery slots a bundle may hold.
pub const MAX_RECOVERY_SLOTS: usize = 16;

const SALT_LEN: usize = 16;
const XNONCE_LEN: usize = 24;
const WRAPPED_LEN: usize = 32 + 16;
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

/// The account master key. Never leaves the device unwrapped.
#[derive(Zeroize, ZeroizeOnDrop)]
struct MasterKey(Box<[u8; 32]>);

/// Argon2id(password, salt) → 32-byte key-encryption key.
pub(crate) fn password_kek(
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

fn password_ad(params: &KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64);
    ad.extend_from_slice(PASSWORD_WRAP_LABEL);
    ad.push(DIARY_VERSION);
    ad.extend_from_slice(&params.m_cost_kib.to_be_bytes());
    ad.extend_from_slice(&params.t_cost.to_be_bytes());
    ad.extend_from_slice(&params.p_cost.to_be_bytes());
    ad.extend_from_slice(salt);
    ad
}

fn recovery_ad(index: u8, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(48);
    ad.extend_from_slice(RECOVERY_WRAP_LABEL);
    ad.push(DIARY_VERSION);
    ad.push(index);
    ad.extend_from_slice(salt);
    ad
}

fn wrap(kek: &[u8; 32], nonce: &[u8; XNONCE_LEN], ad: &[u8], key: &[u8; 32]) -> [u8; WRAPPED_LEN] {
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    let mut out = [0u8; WRAPPED_LEN];
    // A 32-byte message cannot exceed the AEAD's limits.
    if let Ok(ct) = cipher.encrypt(&XNonce::from(*nonce), Payload { msg: key, aad: ad }) {
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
    let cipher = XChaCha20Poly1305::new(&(*kek).into());
    let pt = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: wrapped,
                    aad: ad,
                },
            )
            .ok()?,
    );
    let mut key = Box::new([0u8; 32]);
    key.copy_from_slice(pt.get(..32)?);
    Some(MasterKey(key))
}

fn random<const N: usize, R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; N] {
    let mut a = [0u8; N];
    rng.fill_bytes(&mut a);
    a
}

/// The password slot of a bundle.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PasswordSlot {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; XNONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

/// One recovery slot.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RecoverySlot {
    nonce: [u8; XNONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

/// The wrapped master key as stored (opaquely) in the relay's vault: the password slot and the
/// recovery slots. Contains no secret in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKeyBundle {
    pub(crate) password: PasswordSlot,
    pub(crate) recovery_salt: [u8; SALT_LEN],
    pub(crate) recovery: Vec<RecoverySlot>,
}

impl core::fmt::Debug for WrappedKeyBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WrappedKeyBundle")
            .field("params", &self.password.params)
            .field("recovery_slots", &self.recovery.len())
            .finish_non_exhaustive()
    }
}

impl WrappedKeyBundle {
    /// The Argon2 parameters of the password slot.
    #[must_use]
    pub fn kdf_params(&self) -> KdfParams {
        self.password.params
    }

    /// Number of recovery slots.
    #[must_use]
    pub fn recovery_slot_count(&self) -> usize {
        self.recovery.len()
    }

    /// Encodes the bundle (layout in `docs/PROTOCOL.md` §9).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.password;
        let mut out = Vec::new();
        out.extend_from_slice(&[DIARY_VERSION, TYPE_BUNDLE]);
        out.extend_from_slice(&p.params.m_cost_kib.to_be_bytes());
        out.extend_from_slice(&p.params.t_cost.to_be_bytes());
        out.extend_from_slice(&p.params.p_cost.to_be_bytes());
        out.extend_from_slice(&p.salt);
        out.extend_from_slice(&p.nonce);
        out.extend_from_slice(&p.wrapped);
        out.extend_from_slice(&self.recovery_salt);
        out.push(self.recovery.len() as u8); // <= MAX_RECOVERY_SLOTS
        for s in &self.recovery {
            out.extend_from_slice(&s.nonce);
            out.extend_from_slice(&s.wrapped);
        }
        out
    }

    /// Decodes a bundle. Parameters are range-checked when unlocking, not here, so a bundle
    /// with weak parameters can still be inspected and replaced.
    ///
    /// # Errors
    /// [`DiaryError::Malformed`] or [`DiaryError::UnsupportedVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DiaryError> {
        let mut r = Reader::new(bytes);
        let version = r.array::<1>().ok_or(DiaryError::Malformed)?[0];
        if version != DIARY_VERSION {
            return Err(DiaryError::UnsupportedVersion(version));
        }
        if r.array::<1>().ok_or(DiaryError::Malformed)?[0] != TYPE_BUNDLE {
            return Err(DiaryError::Malformed);
        }
        let params = KdfParams {
            m_cost_kib: u32::from_be_bytes(r.array().ok_or(DiaryError::Malformed)?),
            t_cost: u32::from_be_bytes(r.array().ok_or(DiaryError::Malformed)?),
            p_cost: u32::from_be_bytes(r.array().ok_or(DiaryError::Malformed)?),
        };
        let password = PasswordSlot {
            params,
            salt: r.array().ok_or(DiaryError::Malformed)?,
            nonce: r.array().ok_or(DiaryError::Malformed)?,
            wrapped: r.array().ok_or(DiaryError::Malformed)?,
        };
        let recovery_salt = r.array().ok_or(DiaryError::Malformed)?;
        let n = usize::from(r.array::<1>().ok_or(DiaryError::Malformed)?[0]);
        if n > MAX_RECOVERY_SLOTS {
            return Err(DiaryError::Malformed);
        }
        let mut recovery = Vec::with_capacity(n);
        for _ in 0..n {
            recovery.push(RecoverySlot {
                nonce: r.array().ok_or(DiaryError::Malformed)?,
                wrapped: r.array().ok_or(DiaryError::Malformed)?,
            });
        }
        r.finish().ok_or(DiaryError::Malformed)?;
        Ok(Self {
            password,
            recovery_salt,
            recovery,
        })
    }
}

/// Explicit random values for building a bundle (deterministic vectors).
pub(crate) struct PasswordSlotInputs {
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) nonce: [u8; XNONCE_LEN],
}

/// The unlocked diary keys of an account.
pub struct DiaryKeys {
    master: MasterKey,
}

impl DiaryKeys {
    /// Creates a new master key, wraps it under `password` (Argon2id with `params`) and under
    /// [`RECOVERY_CODE_COUNT`] fresh recovery codes. Show the codes to the user once.
    ///
    /// # Errors
    /// Parameter bounds or Argon2 failures.
    pub fn create<R: CryptoRng + ?Sized>(
        password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(Self, WrappedKeyBundle, Vec<RecoveryCode>), DiaryError> {
        let keys = Self {
            master: MasterKey(Box::new(random(rng))),
        };
        let password_slot = keys.password_slot(
            password,
            params,
            &PasswordSlotInputs {
                salt: random(rng),
                nonce: random(rng),
            },
        )?;
        let (recovery_salt, recovery, codes) = keys.recovery_slots(rng);
        Ok((
            keys,
            WrappedKeyBundle {
                password: password_slot,
                recovery_salt,
                recovery,
            },
            codes,
        ))
    }

    /// Builds keys from a known master key (deterministic tests and vectors only).
    #[cfg(any(test, feature = "test-vectors"))]
    pub(crate) fn from_master(master: [u8; 32]) -> Self {
        let mut master = Zeroizing::new(master);
        Self {
            master: MasterKey(Box::new(core::mem::take(&mut *master))),
        }
    }

    pub(crate) fn password_slot(
        &self,
        password: &[u8],
        params: KdfParams,
        inputs: &PasswordSlotInputs,
    ) -> Result<PasswordSlot, DiaryError> {
        let kek = password_kek(password, &inputs.salt, &params)?;
        let wrapped = wrap(
            &kek,
            &inputs.nonce,
            &password_ad(&params, &inputs.salt),
            &self.master.0,
        );
        Ok(PasswordSlot {
            params,
            salt: inputs.salt,
            nonce: inputs.nonce,
            wrapped,
        })
    }

    pub(crate) fn recovery_slots_from(
        &self,
        salt: [u8; SALT_LEN],
        entries: &[([u8; recovery::ENTROPY_LEN], [u8; XNONCE_LEN])],
    ) -> Vec<RecoverySlot> {
        entries
            .iter()
            .enumerate()
            .map(|(i, (entropy, nonce))| {
                let kek = hkdf32(Some(&salt), entropy, &[RECOVERY_WRAP_LABEL]);
                let wrapped = wrap(&kek, nonce, &recovery_ad(i as u8, &salt), &self.master.0);
                RecoverySlot {
                    nonce: *nonce,
                    wrapped,
                }
            })
            .collect()
    }

    fn recovery_slots<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> ([u8; SALT_LEN], Vec<RecoverySlot>, Vec<RecoveryCode>) {
        let salt = random(rng);
        let mut entries = Vec::with_capacity(RECOVERY_CODE_COUNT);
        let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        for _ in 0..RECOVERY_CODE_COUNT {
            let code = RecoveryCode::generate(rng);
            entries.push((*code.entropy(), random(rng)));
            codes.push(code);
        }
        let slots = self.recovery_slots_from(salt, &entries);
        entries.zeroize();
        (salt, slots, codes)
    }

    /// Unlocks with the password. Parameters outside [`KdfParams::MIN`]..[`KdfParams::MAX`]
    /// are rejected before running Argon2.
    ///
    /// # Errors
    /// [`DiaryError::WrongPassword`], parameter bounds, Argon2 failures.
    pub fn unlock_with_password(
        bundle: &WrappedKeyBundle,
        password: &[u8],
    ) -> Result<Self, DiaryError> {
        let p = &bundle.password;
        let kek = password_kek(password, &p.salt, &p.params)?;
        unwrap_key(&kek, &p.nonce, &password_ad(&p.params, &p.salt), &p.wrapped)
            .map(|master| Self { master })
            .ok_or(DiaryError::WrongPassword)
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
        let kek = hkdf32(
            Some(&bundle.recovery_salt),
            code.entropy(),
            &[RECOVERY_WRAP_LABEL],
        );
        bundle
            .recovery
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                unwrap_key(
                    &kek,
                    &s.nonce,
                    &recovery_ad(i as u8, &bundle.recovery_salt),
                    &s.wrapped,
                )
            })
            .map(|master| Self { master })
            .ok_or(DiaryError::WrongRecoveryCode)
    }

    /// Re-wraps the master key under a new password (fresh salt and nonce); recovery slots and
    /// every item stay as they are.
    ///
    /// # Errors
    /// Parameter bounds or Argon2 failures.
    pub fn change_password<R: CryptoRng + ?Sized>(
        &self,
        bundle: &WrappedKeyBundle,
        new_password: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<WrappedKeyBundle, DiaryError> {
        let password = self.password_slot(
            new_password,
            params,
            &PasswordSlotInputs {
                salt: random(rng),
                nonce: random(rng),
            },
        )?;
        Ok(WrappedKeyBundle {
            password,
            ..bundle.clone()
        })
    }

    /// Replaces all recovery codes (old ones stop working); the password slot is kept.
    pub fn regenerate_recovery_codes<R: CryptoRng + ?Sized>(
        &self,
        bundle: &WrappedKeyBundle,
        rng: &mut R,
    ) -> (WrappedKeyBundle, Vec<RecoveryCode>) {
        let (recovery_salt, recovery, codes) = self.recovery_slots(rng);
        (
            WrappedKeyBundle {
                password: bundle.password.clone(),
                recovery_salt,
                recovery,
            },
            codes,
        )
    }

    fn item_key(&self, collection_id: &[u8; 16], item_id: &[u8; 16]) -> Zeroizing<[u8; 32]> {
        let collection = hkdf32(
            None,
            self.master.0.as_slice(),
            &[COLLECTION_INFO, collection_id],
        );
        hkdf32(None, collection.as_slice(), &[ITEM_INFO, item_id])
    }

    /// Encrypts one revision of an item: `0x01 || nonce(24) || XAEAD(item_key, nonce,
    /// pad(plaintext), AD = 0x01 || collection_id || item_id || revision u64)`.
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

    pub(crate) fn encrypt_item_with_nonce(
        &self,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        plaintext: &[u8],
        nonce: [u8; XNONCE_LEN],
    ) -> Result<Vec<u8>, DiaryError> {
        if plaintext.len() > MAX_ITEM_PLAINTEXT_LEN {
            return Err(DiaryError::ItemTooLarge(plaintext.len()));
        }
        let padded = Zeroizing::new(
            padding::pad(plaintext).map_err(|_| DiaryError::ItemTooLarge(plaintext.len()))?,
        );
        let key = self.item_key(collection_id, item_id);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let ad = item_ad(collection_id, item_id, revision);
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
        out.push(DIARY_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts an item revision. Fails if the ciphertext was moved to another collection or
    /// item id, or served for another revision.
    ///
    /// # Errors
    /// [`DiaryError::ItemDecryptionFailed`], [`DiaryError::UnsupportedVersion`],
    /// [`DiaryError::Malformed`].
    pub fn decrypt_item(
        &self,
        collection_id: &[u8; 16],
        item_id: &[u8; 16],
        revision: u64,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DiaryError> {
        let (&version, rest) = ciphertext.split_first().ok_or(DiaryError::Malformed)?;
        if version != DIARY_VERSION {
            return Err(DiaryError::UnsupportedVersion(version));
        }
        let (nonce, body) = rest
            .split_first_chunk::<XNONCE_LEN>()
            .ok_or(DiaryError::Malformed)?;
        let key = self.item_key(collection_id, item_id);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let ad = item_ad(collection_id, item_id, revision);
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

fn item_ad(collection_id: &[u8; 16], item_id: &[u8; 16], revision: u64) -> [u8; 41] {
    let mut ad = [0u8; 41];
    ad[0] = DIARY_VERSION;
    ad[1..17].copy_from_slice(collection_id);
    ad[17..33].copy_from_slice(item_id);
    ad[33..].copy_from_slice(&revision.to_be_bytes());
    ad
}
