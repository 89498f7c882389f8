//! Key epochs (`docs/PROTOCOL.md` §9.3): the version-2 bundle, the factor key pairs that let a
//! device seal a new master key to a factor it does not hold, and the keyring that keeps the
//! older epochs' keys readable under the newest one.
//!
//! ```text
//! password ──Argon2id──▶ KEK_pw ──XAEAD──▶ s_P ‖ a_P      (password factor: X25519 secret, auth key)
//! code j   ──HKDF─────▶ KEK_j  ──XAEAD──▶ s_R ‖ a_R      (recovery factor, same for every code)
//! MK_e ──seal(P_pub, a_P)──▶ pw_seal        MK_e ──seal(R_pub, a_R)──▶ rec_seal
//! MK_e ──HKDF──▶ K_ring ──XAEAD──▶ a_P ‖ P_pub ‖ a_R ‖ R_pub ‖ (epoch ‖ MK_epoch)* (older epochs)
//! ```
//!
//! Why: a password change or new recovery codes start a new epoch with a fresh master key, so a
//! replaced password or code, even together with every bundle the relay ever stored, opens
//! nothing written after the change. The device changing one factor does not hold the other
//! (the codes are shown once; the password is not kept), so it *seals* the new key to the other
//! factor's public key. The seal's key also mixes in the factor's auth key `a_X`, known only to
//! holders of the factor or of a master key, so the relay cannot seal a key of its own choosing.
//! The factor public keys the sealer uses come from the keyring (authenticated under the master
//! key), never from clear bundle bytes the relay could swap.

use alloc::vec::Vec;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use haven_protocol::encoding::Reader;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{
    DiaryError, KdfParams, MasterKey, SALT_LEN, TYPE_BUNDLE, WRAPPED_LEN, XNONCE_LEN, hkdf32,
};

/// Version byte of the epoch bundle (and of item ciphertexts of epochs ≥ 1).
pub const EPOCH_VERSION: u8 = 0x02;
/// Most older epochs a keyring keeps (a password change or code regeneration adds one).
pub const MAX_OLD_EPOCHS: usize = 1024;

pub(crate) const SEAL_LABEL: &[u8] = b"Haven_DiarySeal_v1";
pub(crate) const KEYRING_LABEL: &[u8] = b"Haven_DiaryKeyring_v1";
/// Factor tag of the password factor in seals (`'P'`).
pub(crate) const FACTOR_PASSWORD: u8 = 0x50;
/// Factor tag of the recovery factor in seals (`'R'`).
pub(crate) const FACTOR_RECOVERY: u8 = 0x52;
/// `s_X ‖ a_X` wrapped: 64 bytes and the tag.
pub(crate) const FACTOR_WRAPPED_LEN: usize = 64 + 16;
const KEYRING_FIXED: usize = 4 * 32;
const KEYRING_ENTRY: usize = 4 + 32;
const TAG_LEN: usize = 16;

/// The secret half of a factor: the X25519 secret `s_X` and the auth key `a_X`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct FactorSecret {
    pub(crate) secret: [u8; 32],
    pub(crate) auth: [u8; 32],
}

impl FactorSecret {
    pub(crate) fn public(&self) -> [u8; 32] {
        PublicKey::from(&StaticSecret::from(self.secret)).to_bytes()
    }

    fn to_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut b = Zeroizing::new([0u8; 64]);
        b[..32].copy_from_slice(&self.secret);
        b[32..].copy_from_slice(&self.auth);
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(Self {
            secret: b.get(..32)?.try_into().ok()?,
            auth: b.get(32..64)?.try_into().ok()?,
        })
    }

    /// What a sealer needs: the auth key and the public key.
    pub(crate) fn sealing(&self) -> FactorSealing {
        FactorSealing {
            auth: self.auth,
            public: self.public(),
        }
    }
}

/// What a device holding a master key knows of a factor: enough to seal to it, not to open.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub(crate) struct FactorSealing {
    pub(crate) auth: [u8; 32],
    pub(crate) public: [u8; 32],
}

pub(crate) fn xaead_seal(
    key: &[u8; 32],
    nonce: &[u8; XNONCE_LEN],
    ad: &[u8],
    msg: &[u8],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    // Messages here are at most a few tens of kilobytes: far below the AEAD's limit.
    cipher
        .encrypt(&XNonce::from(*nonce), Payload { msg, aad: ad })
        .unwrap_or_default()
}

pub(crate) fn xaead_open(
    key: &[u8; 32],
    nonce: &[u8; XNONCE_LEN],
    ad: &[u8],
    ct: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    cipher
        .decrypt(&XNonce::from(*nonce), Payload { msg: ct, aad: ad })
        .ok()
        .map(Zeroizing::new)
}

/// `AD_pw` of a version-2 password slot (it wraps `s_P ‖ a_P`).
pub(crate) fn password_ad(params: &KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    super::password_ad_v(EPOCH_VERSION, params, salt)
}

/// `AD_j` of a version-2 recovery slot (it wraps `s_R ‖ a_R`).
pub(crate) fn recovery_ad(index: u8, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    super::recovery_ad_v(EPOCH_VERSION, index, salt)
}

pub(crate) fn wrap_factor(
    kek: &[u8; 32],
    nonce: &[u8; XNONCE_LEN],
    ad: &[u8],
    factor: &FactorSecret,
) -> [u8; FACTOR_WRAPPED_LEN] {
    let mut out = [0u8; FACTOR_WRAPPED_LEN];
    let ct = xaead_seal(kek, nonce, ad, factor.to_bytes().as_slice());
    if ct.len() == FACTOR_WRAPPED_LEN {
        out.copy_from_slice(&ct);
    }
    out
}

pub(crate) fn unwrap_factor(
    kek: &[u8; 32],
    nonce: &[u8; XNONCE_LEN],
    ad: &[u8],
    wrapped: &[u8; FACTOR_WRAPPED_LEN],
) -> Option<FactorSecret> {
    FactorSecret::from_bytes(&xaead_open(kek, nonce, ad, wrapped)?)
}

/// A master key sealed to a factor: the ephemeral public key and `XAEAD(MK)`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Seal {
    pub(crate) ephemeral: [u8; 32],
    pub(crate) sealed: [u8; WRAPPED_LEN],
}

fn seal_ad(factor: u8, epoch: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(SEAL_LABEL.len() + 6);
    ad.extend_from_slice(SEAL_LABEL);
    ad.push(EPOCH_VERSION);
    ad.push(factor);
    ad.extend_from_slice(&epoch.to_be_bytes());
    ad
}

/// `okm = HKDF(salt = a_X, ikm = X25519(…), info = label ‖ X ‖ epoch ‖ eph_pub ‖ X_pub, 56)`.
fn seal_key(
    factor: u8,
    epoch: u32,
    auth: &[u8; 32],
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    public: &[u8; 32],
) -> Zeroizing<[u8; 56]> {
    let mut okm = Zeroizing::new([0u8; 56]);
    // 56 bytes is always a valid HKDF-SHA-256 output length.
    let _ = hkdf::Hkdf::<sha2::Sha256>::new(Some(auth), shared).expand_multi_info(
        &[
            SEAL_LABEL,
            &[factor],
            &epoch.to_be_bytes(),
            ephemeral,
            public,
        ],
        okm.as_mut_slice(),
    );
    okm
}

fn split_key(okm: &[u8; 56]) -> (Zeroizing<[u8; 32]>, [u8; XNONCE_LEN]) {
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; XNONCE_LEN];
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// Seals `master` (epoch `epoch`) to a factor with the ephemeral secret `ephemeral`.
///
/// # Errors
/// [`DiaryError::Malformed`] if the factor's public key is a low-order point.
pub(crate) fn seal(
    factor: u8,
    epoch: u32,
    to: &FactorSealing,
    ephemeral: [u8; 32],
    master: &MasterKey,
) -> Result<Seal, DiaryError> {
    let eph = StaticSecret::from(ephemeral);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared =
        crate::identity::dh(&eph, &PublicKey::from(to.public)).ok_or(DiaryError::Malformed)?;
    let okm = seal_key(factor, epoch, &to.auth, &shared, &eph_pub, &to.public);
    let (key, nonce) = split_key(&okm);
    let ct = xaead_seal(&key, &nonce, &seal_ad(factor, epoch), master.0.as_slice());
    let mut sealed = [0u8; WRAPPED_LEN];
    if ct.len() == WRAPPED_LEN {
        sealed.copy_from_slice(&ct);
    }
    Ok(Seal {
        ephemeral: eph_pub,
        sealed,
    })
}

/// Opens a seal with the factor's secret half; `None` if it does not authenticate.
pub(crate) fn open_seal(
    factor: u8,
    epoch: u32,
    with: &FactorSecret,
    seal: &Seal,
) -> Option<MasterKey> {
    let secret = StaticSecret::from(with.secret);
    let public = PublicKey::from(&secret).to_bytes();
    let shared = crate::identity::dh(&secret, &PublicKey::from(seal.ephemeral))?;
    let okm = seal_key(factor, epoch, &with.auth, &shared, &seal.ephemeral, &public);
    let (key, nonce) = split_key(&okm);
    let pt = xaead_open(&key, &nonce, &seal_ad(factor, epoch), &seal.sealed)?;
    MasterKey::from_slice(&pt)
}

/// The keyring's plaintext: both factors' sealing halves and the older epochs' keys.
pub(crate) struct Keyring {
    pub(crate) password: FactorSealing,
    pub(crate) recovery: FactorSealing,
    /// Older epochs, ascending.
    pub(crate) old: Vec<(u32, MasterKey)>,
}

fn keyring_ad(epoch: u32, count: u16) -> Vec<u8> {
    let mut ad = Vec::with_capacity(KEYRING_LABEL.len() + 7);
    ad.extend_from_slice(KEYRING_LABEL);
    ad.push(EPOCH_VERSION);
    ad.extend_from_slice(&epoch.to_be_bytes());
    ad.extend_from_slice(&count.to_be_bytes());
    ad
}

fn keyring_key(master: &MasterKey, epoch: u32) -> Zeroizing<[u8; 32]> {
    hkdf32(
        None,
        master.0.as_slice(),
        &[KEYRING_LABEL, &epoch.to_be_bytes()],
    )
}

impl Keyring {
    /// `XAEAD(K_ring, nonce, a_P ‖ P_pub ‖ a_R ‖ R_pub ‖ (epoch ‖ MK)*, AD)`.
    pub(crate) fn seal(
        &self,
        master: &MasterKey,
        epoch: u32,
        nonce: [u8; XNONCE_LEN],
    ) -> Result<SealedKeyring, DiaryError> {
        let count = u16::try_from(self.old.len())
            .ok()
            .filter(|c| usize::from(*c) <= MAX_OLD_EPOCHS)
            .ok_or(DiaryError::TooManyEpochs)?;
        let mut pt = Zeroizing::new(Vec::with_capacity(
            KEYRING_FIXED + KEYRING_ENTRY * self.old.len(),
        ));
        pt.extend_from_slice(&self.password.auth);
        pt.extend_from_slice(&self.password.public);
        pt.extend_from_slice(&self.recovery.auth);
        pt.extend_from_slice(&self.recovery.public);
        for (e, k) in &self.old {
            pt.extend_from_slice(&e.to_be_bytes());
            pt.extend_from_slice(k.0.as_slice());
        }
        let ct = xaead_seal(
            &keyring_key(master, epoch),
            &nonce,
            &keyring_ad(epoch, count),
            &pt,
        );
        Ok(SealedKeyring {
            nonce,
            count,
            ciphertext: ct,
        })
    }

    /// Opens and decodes a sealed keyring; `None` if it does not authenticate or decode
    /// (older epochs must be ascending and below `epoch`).
    pub(crate) fn open(sealed: &SealedKeyring, master: &MasterKey, epoch: u32) -> Option<Self> {
        let pt = xaead_open(
            &keyring_key(master, epoch),
            &sealed.nonce,
            &keyring_ad(epoch, sealed.count),
            &sealed.ciphertext,
        )?;
        let mut r = Reader::new(&pt);
        let mut sealing = || -> Option<FactorSealing> {
            Some(FactorSealing {
                auth: r.array()?,
                public: r.array()?,
            })
        };
        let password = sealing()?;
        let recovery = sealing()?;
        let mut old: Vec<(u32, MasterKey)> = Vec::with_capacity(usize::from(sealed.count));
        for _ in 0..sealed.count {
            let e = r.u32()?;
            let key = MasterKey::from_slice(r.take(32)?)?;
            if e >= epoch || old.last().is_some_and(|(prev, _)| *prev >= e) {
                return None;
            }
            old.push((e, key));
        }
        r.finish()?;
        Some(Self {
            password,
            recovery,
            old,
        })
    }
}

/// The keyring as stored in the bundle.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SealedKeyring {
    pub(crate) nonce: [u8; XNONCE_LEN],
    pub(crate) count: u16,
    pub(crate) ciphertext: Vec<u8>,
}

/// The password slot of a version-2 bundle (wraps `s_P ‖ a_P`; kept as is when only the codes
/// change).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PasswordFactor {
    pub(crate) params: KdfParams,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) nonce: [u8; XNONCE_LEN],
    pub(crate) wrapped: [u8; FACTOR_WRAPPED_LEN],
}

/// One recovery slot of a version-2 bundle (wraps `s_R ‖ a_R` under one code).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RecoveryFactorSlot {
    pub(crate) nonce: [u8; XNONCE_LEN],
    pub(crate) wrapped: [u8; FACTOR_WRAPPED_LEN],
}

/// The recovery slots of a version-2 bundle (kept as they are when only the password changes).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RecoveryFactor {
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) slots: Vec<RecoveryFactorSlot>,
}

/// A version-2 bundle.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct EpochBundle {
    pub(crate) epoch: u32,
    pub(crate) password: PasswordFactor,
    pub(crate) password_seal: Seal,
    pub(crate) recovery: RecoveryFactor,
    pub(crate) recovery_seal: Seal,
    pub(crate) keyring: SealedKeyring,
}

impl EpochBundle {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let p = &self.password;
        out.extend_from_slice(&[EPOCH_VERSION, TYPE_BUNDLE]);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&p.params.m_cost_kib.to_be_bytes());
        out.extend_from_slice(&p.params.t_cost.to_be_bytes());
        out.extend_from_slice(&p.params.p_cost.to_be_bytes());
        out.extend_from_slice(&p.salt);
        out.extend_from_slice(&p.nonce);
        out.extend_from_slice(&p.wrapped);
        out.extend_from_slice(&self.password_seal.ephemeral);
        out.extend_from_slice(&self.password_seal.sealed);
        out.extend_from_slice(&self.recovery.salt);
        out.extend_from_slice(&self.recovery_seal.ephemeral);
        out.extend_from_slice(&self.recovery_seal.sealed);
        out.push(self.recovery.slots.len() as u8); // <= MAX_RECOVERY_SLOTS
        for s in &self.recovery.slots {
            out.extend_from_slice(&s.nonce);
            out.extend_from_slice(&s.wrapped);
        }
        out.extend_from_slice(&self.keyring.nonce);
        out.extend_from_slice(&self.keyring.count.to_be_bytes());
        out.extend_from_slice(&self.keyring.ciphertext);
    }

    /// Decodes the bytes after the version and type bytes.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let epoch = r.u32()?;
        let password = PasswordFactor {
            params: KdfParams {
                m_cost_kib: r.u32()?,
                t_cost: r.u32()?,
                p_cost: r.u32()?,
            },
            salt: r.array()?,
            nonce: r.array()?,
            wrapped: r.array()?,
        };
        let password_seal = Seal {
            ephemeral: r.array()?,
            sealed: r.array()?,
        };
        let salt = r.array()?;
        let recovery_seal = Seal {
            ephemeral: r.array()?,
            sealed: r.array()?,
        };
        let n = usize::from(r.u8()?);
        if n > super::MAX_RECOVERY_SLOTS {
            return None;
        }
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            slots.push(RecoveryFactorSlot {
                nonce: r.array()?,
                wrapped: r.array()?,
            });
        }
        let nonce = r.array()?;
        let count = u16::from_be_bytes(r.array()?);
        if usize::from(count) > MAX_OLD_EPOCHS {
            return None;
        }
        let len = KEYRING_FIXED + KEYRING_ENTRY * usize::from(count) + TAG_LEN;
        let ciphertext = r.take(len)?.to_vec();
        Some(Self {
            epoch,
            password,
            password_seal,
            recovery: RecoveryFactor { salt, slots },
            recovery_seal,
            keyring: SealedKeyring {
                nonce,
                count,
                ciphertext,
            },
        })
    }
}
