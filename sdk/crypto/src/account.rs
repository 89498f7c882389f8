//! Account identity and the signed device list (PROTOCOL.md §15).
//!
//! An account has one **account identity key** (Ed25519), shared by its devices: the first
//! device creates it, and a new device receives it end to end from a device that approves it.
//! The account key signs the account's **device list**: which device numbers the account has
//! and each one's device identity key (§1.1), under a version that only goes up. Peers pin the
//! account key on first contact and from then on accept only lists it signed with a version at
//! least the highest they have seen, so a relay can neither add a device, nor swap a device's
//! key, nor roll the list back to a device that was removed. Safety numbers are per account,
//! over the account keys (§15.4), and stay the same as devices come and go.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use haven_protocol::account::{
    ACCOUNT_KEY_LEN, DeviceListBody, DeviceListFormatError, ListedDevice, SIGNATURE_LEN,
};
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::identity::IdentityKey;

/// Version of the per-account safety number (the per-device one of §6 is version 1).
pub const ACCOUNT_SAFETY_NUMBER_VERSION: u16 = 2;
/// Secret encoding of an account key pair: version, type, seed.
const PAIR_VERSION: u8 = 0x01;
const PAIR_TYPE: u8 = 0x51;
/// Length of [`AccountIdentityKeyPair::to_bytes`].
pub const ACCOUNT_KEY_PAIR_LEN: usize = 2 + 32;

/// Errors of account identities and device lists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceListError {
    /// The bytes are not a device list (§15.2).
    #[error(transparent)]
    Format(#[from] DeviceListFormatError),
    /// The account key is not a valid Ed25519 public key (or is weak).
    #[error("invalid account key")]
    InvalidAccountKey,
    /// A listed device identity key is not a valid identity key.
    #[error("device {number} has an invalid identity key")]
    InvalidDeviceKey {
        /// The device number.
        number: u32,
    },
    /// The signature does not verify under the list's account key.
    #[error("device list signature does not verify")]
    BadSignature,
    /// The list is for another account than the one asked for.
    #[error("device list is for another account")]
    WrongAccount,
    /// The list is signed by another account key than the pinned one: the account's identity
    /// changed (or someone is impersonating it). The user must compare safety numbers and
    /// accept the new key before anything is sent to or accepted from the account.
    #[error("the account identity key changed")]
    AccountKeyChanged,
    /// The list is older than one already seen: a rollback.
    #[error("device list version {offered} is older than version {seen} already seen")]
    Rollback {
        /// The version offered.
        offered: u64,
        /// The highest version seen.
        seen: u64,
    },
    /// The same version with different contents: the account key signed two lists with one
    /// version (a forked history), which no honest device does.
    #[error("two different device lists carry version {version}")]
    Equivocation {
        /// The version.
        version: u64,
    },
    /// The secret encoding of an account key pair is malformed.
    #[error("malformed account key pair")]
    MalformedKeyPair,
}

/// An account identity public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AccountIdentityKey(VerifyingKey);

impl AccountIdentityKey {
    /// The 32-byte Ed25519 encoding.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; ACCOUNT_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Parses a key; rejects invalid and weak (small-order) points.
    ///
    /// # Errors
    /// [`DeviceListError::InvalidAccountKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeviceListError> {
        let arr: [u8; ACCOUNT_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| DeviceListError::InvalidAccountKey)?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| DeviceListError::InvalidAccountKey)?;
        if key.is_weak() {
            return Err(DeviceListError::InvalidAccountKey);
        }
        Ok(Self(key))
    }

    fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        self.0
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Debug for AccountIdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        write!(
            f,
            "AccountIdentityKey({:02x}{:02x}{:02x}{:02x}…)",
            b[0], b[1], b[2], b[3]
        )
    }
}

/// An account identity key pair. Secret: no `Debug` of the key, zeroized on drop (by
/// `ed25519-dalek`'s `zeroize` feature).
pub struct AccountIdentityKeyPair {
    signing: SigningKey,
    public: AccountIdentityKey,
}

impl fmt::Debug for AccountIdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountIdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl AccountIdentityKeyPair {
    /// A fresh key pair.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = AccountIdentityKey(signing.verifying_key());
        Self { signing, public }
    }

    /// The public key.
    #[must_use]
    pub fn public(&self) -> &AccountIdentityKey {
        &self.public
    }

    /// The secret encoding `01 | 51 | seed [32]` (store it encrypted; a linked device receives
    /// it inside the provisioning message, §15.3).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<[u8; ACCOUNT_KEY_PAIR_LEN]> {
        let mut out = Zeroizing::new([0u8; ACCOUNT_KEY_PAIR_LEN]);
        out[0] = PAIR_VERSION;
        out[1] = PAIR_TYPE;
        out[2..].copy_from_slice(self.signing.as_bytes());
        out
    }

    /// Parses [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`DeviceListError::MalformedKeyPair`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeviceListError> {
        match bytes {
            [PAIR_VERSION, PAIR_TYPE, seed @ ..] => {
                let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
                    seed.try_into()
                        .map_err(|_| DeviceListError::MalformedKeyPair)?,
                );
                Ok(Self::from_seed(&seed))
            }
            _ => Err(DeviceListError::MalformedKeyPair),
        }
    }

    /// Signs a device list for `account`: `devices` in any order (they are sorted; numbers must
    /// be distinct), `version` strictly above every version signed before.
    ///
    /// # Errors
    /// [`DeviceListError::Format`] for no device, too many, or a repeated number.
    pub fn sign_device_list(
        &self,
        account: [u8; 16],
        version: u64,
        issued_at: u64,
        devices: &[(u32, IdentityKey)],
    ) -> Result<DeviceList, DeviceListError> {
        let mut listed: Vec<ListedDevice> = devices
            .iter()
            .map(|(number, key)| ListedDevice {
                number: *number,
                identity_key: key.to_bytes(),
            })
            .collect();
        listed.sort_by_key(|d| d.number);
        let body = DeviceListBody {
            account,
            version,
            issued_at,
            account_key: self.public.to_bytes(),
            devices: listed,
        };
        let signature = self.signing.sign(&body.signing_input()?).to_bytes();
        let bytes = body.with_signature(&signature)?;
        let mut devices = devices.to_vec();
        devices.sort_by_key(|(n, _)| *n);
        Ok(DeviceList {
            account,
            version,
            issued_at,
            account_key: self.public,
            devices,
            bytes,
        })
    }
}

/// A device list whose signature verified under its account key.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceList {
    account: [u8; 16],
    version: u64,
    issued_at: u64,
    account_key: AccountIdentityKey,
    devices: Vec<(u32, IdentityKey)>,
    bytes: Vec<u8>,
}

impl fmt::Debug for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceList")
            .field("version", &self.version)
            .field(
                "devices",
                &self.devices.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl DeviceList {
    /// Parses a list and verifies its signature under the account key it names. Says nothing
    /// about whether that key is the account's: see [`DeviceList::accept`].
    ///
    /// # Errors
    /// [`DeviceListError::Format`], [`DeviceListError::InvalidAccountKey`],
    /// [`DeviceListError::InvalidDeviceKey`], [`DeviceListError::BadSignature`].
    pub fn verify(bytes: &[u8]) -> Result<Self, DeviceListError> {
        let (body, signature) = DeviceListBody::decode(bytes)?;
        let account_key = AccountIdentityKey::from_bytes(&body.account_key)?;
        if !account_key.verify(&body.signing_input()?, &signature) {
            return Err(DeviceListError::BadSignature);
        }
        let devices = body
            .devices
            .iter()
            .map(|d| {
                IdentityKey::from_bytes(&d.identity_key)
                    .map(|key| (d.number, key))
                    .map_err(|_| DeviceListError::InvalidDeviceKey { number: d.number })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            account: body.account,
            version: body.version,
            issued_at: body.issued_at,
            account_key,
            devices,
            bytes: bytes.to_vec(),
        })
    }

    /// Decides whether a peer accepts this list for `account`, given what it pinned before:
    /// the account key it trusts (`None` on first contact: trust on first use) and the last list
    /// it accepted. Returns the change from that list.
    ///
    /// # Errors
    /// [`DeviceListError::WrongAccount`], [`DeviceListError::AccountKeyChanged`],
    /// [`DeviceListError::Rollback`], [`DeviceListError::Equivocation`].
    pub fn accept(
        &self,
        account: &[u8; 16],
        pinned_key: Option<&AccountIdentityKey>,
        previous: Option<&DeviceList>,
    ) -> Result<DeviceListChange, DeviceListError> {
        if &self.account != account {
            return Err(DeviceListError::WrongAccount);
        }
        if pinned_key.is_some_and(|k| *k != self.account_key) {
            return Err(DeviceListError::AccountKeyChanged);
        }
        let Some(previous) = previous else {
            return Ok(DeviceListChange {
                added: self.devices.iter().map(|(n, _)| *n).collect(),
                removed: Vec::new(),
                rekeyed: Vec::new(),
            });
        };
        if previous.account_key != self.account_key {
            return Err(DeviceListError::AccountKeyChanged);
        }
        if self.version < previous.version {
            return Err(DeviceListError::Rollback {
                offered: self.version,
                seen: previous.version,
            });
        }
        if self.version == previous.version {
            return if self.bytes == previous.bytes {
                Ok(DeviceListChange::default())
            } else {
                Err(DeviceListError::Equivocation {
                    version: self.version,
                })
            };
        }
        let mut change = DeviceListChange::default();
        for (n, key) in &self.devices {
            match previous.device(*n) {
                None => change.added.push(*n),
                Some(old) if old != key => change.rekeyed.push(*n),
                Some(_) => {}
            }
        }
        for (n, _) in &previous.devices {
            if self.device(*n).is_none() {
                change.removed.push(*n);
            }
        }
        Ok(change)
    }

    /// The account.
    #[must_use]
    pub fn account(&self) -> &[u8; 16] {
        &self.account
    }

    /// The version.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When it was signed (the signer's clock).
    #[must_use]
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The account key that signed it.
    #[must_use]
    pub fn account_key(&self) -> &AccountIdentityKey {
        &self.account_key
    }

    /// The devices, by increasing number.
    #[must_use]
    pub fn devices(&self) -> &[(u32, IdentityKey)] {
        &self.devices
    }

    /// The identity key of device `number`, if listed.
    #[must_use]
    pub fn device(&self, number: u32) -> Option<&IdentityKey> {
        self.devices
            .iter()
            .find_map(|(n, k)| (*n == number).then_some(k))
    }

    /// Whether `(number, key)` is a device of the account: the check before encrypting to a
    /// device or accepting a message or a sender certificate from one.
    #[must_use]
    pub fn vouches_for(&self, number: u32, key: &IdentityKey) -> bool {
        self.device(number) == Some(key)
    }

    /// The signed encoding (what the relay stores and serves).
    #[must_use]
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// How an accepted list differs from the previous one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceListChange {
    /// Devices that were not listed before (on first contact: all of them).
    pub added: Vec<u32>,
    /// Devices no longer listed.
    pub removed: Vec<u32>,
    /// Devices listed before with another identity key (their sessions must be dropped).
    pub rekeyed: Vec<u32>,
}

impl DeviceListChange {
    /// Whether nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.rekeyed.is_empty()
    }
}

/// The 30 digits of one account: §6's computation with version 2 and the 32-byte account key
/// in place of a device identity key.
#[must_use]
pub fn account_party_digits(account: &[u8; 16], key: &AccountIdentityKey) -> String {
    let key = key.to_bytes();
    let mut h = Sha512::new();
    h.update(ACCOUNT_SAFETY_NUMBER_VERSION.to_be_bytes());
    h.update(key);
    h.update(account);
    let mut hash = h.finalize();
    for _ in 0..crate::safety_number::ITERATIONS {
        let mut h = Sha512::new();
        h.update(hash);
        h.update(key);
        hash = h.finalize();
    }
    crate::safety_number::digits_of(&hash)
}

/// The 60-digit safety number of two accounts (the same on both sides, stable while their
/// account keys are): the smaller party's digits first.
#[must_use]
pub fn account_safety_number(
    local: &[u8; 16],
    local_key: &AccountIdentityKey,
    remote: &[u8; 16],
    remote_key: &AccountIdentityKey,
) -> String {
    let a = account_party_digits(local, local_key);
    let b = account_party_digits(remote, remote_key);
    if a <= b { a + &b } else { b + &a }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::identity::IdentityKeyPair;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    struct Fixture {
        rng: ChaCha20Rng,
        account: [u8; 16],
        key: AccountIdentityKeyPair,
    }

    fn fixture() -> Fixture {
        let mut rng = ChaCha20Rng::from_seed([51; 32]);
        let key = AccountIdentityKeyPair::generate(&mut rng);
        Fixture {
            rng,
            account: [7; 16],
            key,
        }
    }

    fn device(rng: &mut ChaCha20Rng) -> IdentityKey {
        *IdentityKeyPair::generate(rng).public()
    }

    #[test]
    fn signed_lists_verify_and_tampering_is_caught() {
        let mut f = fixture();
        let (d1, d2) = (device(&mut f.rng), device(&mut f.rng));
        let list = f
            .key
            .sign_device_list(f.account, 1, 100, &[(2, d2), (1, d1)])
            .unwrap();
        let parsed = DeviceList::verify(list.to_bytes()).unwrap();
        assert_eq!(parsed, list);
        assert_eq!(parsed.devices()[0].0, 1, "sorted by number");
        assert!(parsed.vouches_for(1, &d1));
        assert!(!parsed.vouches_for(1, &d2));
        assert!(!parsed.vouches_for(3, &d1));
        for i in 0..list.to_bytes().len() {
            let mut bad = list.to_bytes().to_vec();
            bad[i] ^= 0x01;
            assert!(DeviceList::verify(&bad).is_err(), "byte {i} flipped");
        }
        assert!(matches!(
            f.key
                .sign_device_list(f.account, 1, 100, &[(1, d1), (1, d2)]),
            Err(DeviceListError::Format(DeviceListFormatError::Order))
        ));
        assert!(matches!(
            f.key.sign_device_list(f.account, 1, 100, &[]),
            Err(DeviceListError::Format(DeviceListFormatError::Count(0)))
        ));
    }

    #[test]
    fn a_relay_cannot_add_swap_or_roll_back() {
        let mut f = fixture();
        let (d1, d2, ghost) = (device(&mut f.rng), device(&mut f.rng), device(&mut f.rng));
        let v1 = f
            .key
            .sign_device_list(f.account, 1, 100, &[(1, d1)])
            .unwrap();
        let first = v1.accept(&f.account, None, None).unwrap();
        assert_eq!(first.added, vec![1]);
        let pinned = *v1.account_key();

        let v2 = f
            .key
            .sign_device_list(f.account, 2, 200, &[(1, d1), (2, d2)])
            .unwrap();
        let change = v2.accept(&f.account, Some(&pinned), Some(&v1)).unwrap();
        assert_eq!(change.added, vec![2]);
        assert!(change.removed.is_empty() && change.rekeyed.is_empty());

        // A list the relay made with its own key: refused, whatever it lists.
        let relay_key = AccountIdentityKeyPair::generate(&mut f.rng);
        let forged = relay_key
            .sign_device_list(f.account, 3, 300, &[(1, d1), (2, d2), (99, ghost)])
            .unwrap();
        assert_eq!(
            forged.accept(&f.account, Some(&pinned), Some(&v2)),
            Err(DeviceListError::AccountKeyChanged)
        );
        // The old list served again after a removal: a rollback.
        let v3 = f
            .key
            .sign_device_list(f.account, 3, 300, &[(2, d2)])
            .unwrap();
        assert_eq!(
            v3.accept(&f.account, Some(&pinned), Some(&v2))
                .unwrap()
                .removed,
            vec![1]
        );
        assert_eq!(
            v2.accept(&f.account, Some(&pinned), Some(&v3)),
            Err(DeviceListError::Rollback {
                offered: 2,
                seen: 3
            })
        );
        // Same version, other contents: equivocation. Same bytes: no change.
        let fork = f
            .key
            .sign_device_list(f.account, 3, 300, &[(1, d1)])
            .unwrap();
        assert_eq!(
            fork.accept(&f.account, Some(&pinned), Some(&v3)),
            Err(DeviceListError::Equivocation { version: 3 })
        );
        assert!(
            v3.accept(&f.account, Some(&pinned), Some(&v3))
                .unwrap()
                .is_empty()
        );
        // Another account's list is not this account's.
        assert_eq!(
            v3.accept(&[8; 16], Some(&pinned), None),
            Err(DeviceListError::WrongAccount)
        );
        // A device re-keyed under the same number is reported (its sessions must go).
        let v4 = f
            .key
            .sign_device_list(f.account, 4, 400, &[(2, ghost)])
            .unwrap();
        assert_eq!(
            v4.accept(&f.account, Some(&pinned), Some(&v3))
                .unwrap()
                .rekeyed,
            vec![2]
        );
    }

    #[test]
    fn key_pairs_round_trip_and_weak_keys_are_refused() {
        let f = fixture();
        let bytes = f.key.to_bytes();
        let back = AccountIdentityKeyPair::from_bytes(bytes.as_ref()).unwrap();
        assert_eq!(back.public(), f.key.public());
        assert!(AccountIdentityKeyPair::from_bytes(&bytes[..33]).is_err());
        assert!(AccountIdentityKeyPair::from_bytes(&[0x02, 0x51, 0, 0]).is_err());
        // The identity point (a small-order point) is not an account key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            AccountIdentityKey::from_bytes(&identity),
            Err(DeviceListError::InvalidAccountKey)
        );
        assert!(!format!("{:?}", f.key).contains(&hex_seed(&f.key)));
    }

    fn hex_seed(k: &AccountIdentityKeyPair) -> String {
        k.to_bytes()[2..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn account_safety_numbers_are_symmetric_and_per_account() {
        let mut f = fixture();
        let other = AccountIdentityKeyPair::generate(&mut f.rng);
        let third = AccountIdentityKeyPair::generate(&mut f.rng);
        let n = account_safety_number(&[1; 16], f.key.public(), &[2; 16], other.public());
        assert_eq!(
            n,
            account_safety_number(&[2; 16], other.public(), &[1; 16], f.key.public())
        );
        assert_eq!(n.len(), 60);
        assert_ne!(
            n,
            account_safety_number(&[1; 16], f.key.public(), &[2; 16], third.public())
        );
    }
}
