//! The signed device list's layout (PROTOCOL.md §15.2): which devices an account has, as the
//! account itself states it, versioned so that no one can present an older list as current.
//!
//! ```text
//! body = 01 | 50 | account [16] | version u64 | issued_at u64 | account key [32]
//!        | count u16 | count × ( device u32 | identity key [64] )
//! list = body | Ed25519 signature [64] by the account key over ("Haven_DeviceList_v1" || body)
//! ```
//!
//! Devices are listed in strictly increasing device-number order (so one set has one encoding),
//! at least one and at most [`MAX_LIST_DEVICES`]. This module is the layout only: the SDK signs
//! and verifies (`haven_sdk::account`); the relay stores and serves the bytes.

use crate::encoding::{self, Reader};

/// Version byte.
pub const VERSION: u8 = 0x01;
/// Type byte of a device list.
pub const TYPE: u8 = 0x50;
/// Domain-separation prefix of the account key's signature.
pub const SIGNATURE_CONTEXT: &[u8] = b"Haven_DeviceList_v1";
/// Length of an account identity (Ed25519 public) key.
pub const ACCOUNT_KEY_LEN: usize = 32;
/// Length of a device identity key (X25519 public key, then Ed25519 public key).
pub const DEVICE_KEY_LEN: usize = 64;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Most devices one list names.
pub const MAX_LIST_DEVICES: usize = 64;
/// Length of the fixed part of the body (before the devices).
pub const HEADER_LEN: usize = 2 + 16 + 8 + 8 + ACCOUNT_KEY_LEN + 2;
/// Length of one listed device.
pub const DEVICE_ENTRY_LEN: usize = 4 + DEVICE_KEY_LEN;
/// Longest encoded list.
pub const MAX_LIST_LEN: usize = HEADER_LEN + MAX_LIST_DEVICES * DEVICE_ENTRY_LEN + SIGNATURE_LEN;

/// Why device-list bytes were refused (before any signature check).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceListFormatError {
    /// Truncated, trailing bytes, or a length that disagrees with the count.
    #[error("malformed device list")]
    Malformed,
    /// Unknown version or type byte.
    #[error("unsupported device list version or type")]
    UnsupportedVersion,
    /// No device, or more than [`MAX_LIST_DEVICES`].
    #[error("a device list names 1 to {MAX_LIST_DEVICES} devices, not {0}")]
    Count(usize),
    /// Device numbers not in strictly increasing order (or repeated).
    #[error("device numbers are not strictly increasing")]
    Order,
}

/// One device of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedDevice {
    /// Its device number within the account.
    pub number: u32,
    /// Its identity key (PROTOCOL.md §1.1).
    pub identity_key: [u8; DEVICE_KEY_LEN],
}

/// What a device list states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceListBody {
    /// The account.
    pub account: [u8; 16],
    /// Strictly increasing with every change the account makes.
    pub version: u64,
    /// When the list was signed (Unix seconds, the signer's clock; informative).
    pub issued_at: u64,
    /// The account identity key that signs the list.
    pub account_key: [u8; ACCOUNT_KEY_LEN],
    /// The devices, by increasing number.
    pub devices: Vec<ListedDevice>,
}

impl DeviceListBody {
    /// Checks the count and order rules.
    ///
    /// # Errors
    /// [`DeviceListFormatError::Count`], [`DeviceListFormatError::Order`].
    pub fn check(&self) -> Result<(), DeviceListFormatError> {
        let n = self.devices.len();
        if n == 0 || n > MAX_LIST_DEVICES {
            return Err(DeviceListFormatError::Count(n));
        }
        if self.devices.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(DeviceListFormatError::Order);
        }
        Ok(())
    }

    /// The signed body.
    ///
    /// # Errors
    /// As [`Self::check`]: only well-formed lists are encoded.
    pub fn encode(&self) -> Result<Vec<u8>, DeviceListFormatError> {
        self.check()?;
        let mut b = Vec::with_capacity(HEADER_LEN + self.devices.len() * DEVICE_ENTRY_LEN);
        b.extend_from_slice(&[VERSION, TYPE]);
        b.extend_from_slice(&self.account);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&self.issued_at.to_be_bytes());
        b.extend_from_slice(&self.account_key);
        // check() bounds the count by MAX_LIST_DEVICES.
        let count = u16::try_from(self.devices.len())
            .map_err(|_| DeviceListFormatError::Count(self.devices.len()))?;
        b.extend_from_slice(&count.to_be_bytes());
        for d in &self.devices {
            b.extend_from_slice(&d.number.to_be_bytes());
            b.extend_from_slice(&d.identity_key);
        }
        Ok(b)
    }

    /// What the account key signs: [`SIGNATURE_CONTEXT`] `||` body.
    ///
    /// # Errors
    /// As [`Self::check`].
    pub fn signing_input(&self) -> Result<Vec<u8>, DeviceListFormatError> {
        Ok(encoding::signing_input(SIGNATURE_CONTEXT, &self.encode()?))
    }

    /// The list: body `||` signature.
    ///
    /// # Errors
    /// As [`Self::check`].
    pub fn with_signature(
        &self,
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<Vec<u8>, DeviceListFormatError> {
        Ok(encoding::with_signature(self.encode()?, signature))
    }

    /// Splits a list into its body and signature (the signature is not verified).
    ///
    /// # Errors
    /// [`DeviceListFormatError`] for anything but a well-formed list.
    pub fn decode(bytes: &[u8]) -> Result<(Self, [u8; SIGNATURE_LEN]), DeviceListFormatError> {
        let m = DeviceListFormatError::Malformed;
        if bytes.len() > MAX_LIST_LEN {
            return Err(m);
        }
        let mut r = Reader::new(bytes);
        match (r.u8(), r.u8()) {
            (Some(VERSION), Some(TYPE)) => {}
            (Some(_), Some(_)) => return Err(DeviceListFormatError::UnsupportedVersion),
            _ => return Err(m),
        }
        let account = r.array().ok_or(m)?;
        let version = r.u64().ok_or(m)?;
        let issued_at = r.u64().ok_or(m)?;
        let account_key = r.array().ok_or(m)?;
        let count = usize::from(r.u16().ok_or(m)?);
        if count == 0 || count > MAX_LIST_DEVICES {
            return Err(DeviceListFormatError::Count(count));
        }
        let mut devices = Vec::with_capacity(count);
        for _ in 0..count {
            devices.push(ListedDevice {
                number: r.u32().ok_or(m)?,
                identity_key: r.array().ok_or(m)?,
            });
        }
        let signature = r.array().ok_or(m)?;
        r.finish().ok_or(m)?;
        let body = Self {
            account,
            version,
            issued_at,
            account_key,
            devices,
        };
        body.check()?;
        Ok((body, signature))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(numbers: &[u32]) -> DeviceListBody {
        DeviceListBody {
            account: [1; 16],
            version: 7,
            issued_at: 1_800_000_000,
            account_key: [2; 32],
            devices: numbers
                .iter()
                .map(|&n| ListedDevice {
                    number: n,
                    identity_key: [u8::try_from(n).unwrap(); 64],
                })
                .collect(),
        }
    }

    #[test]
    fn layout_round_trip_and_refusals() {
        let b = body(&[1, 3]);
        let list = b.with_signature(&[9; 64]).unwrap();
        assert_eq!(list.len(), HEADER_LEN + 2 * DEVICE_ENTRY_LEN + 64);
        assert_eq!(&list[..2], &[0x01, 0x50]);
        assert_eq!(&list[18..26], &7u64.to_be_bytes());
        assert_eq!(&list[66..68], &2u16.to_be_bytes());
        assert_eq!(&list[68..72], &1u32.to_be_bytes());
        assert_eq!(DeviceListBody::decode(&list).unwrap(), (b, [9; 64]));
        assert!(
            body(&[1, 3])
                .signing_input()
                .unwrap()
                .starts_with(SIGNATURE_CONTEXT)
        );
        for cut in 0..list.len() {
            assert!(DeviceListBody::decode(&list[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = list.clone();
        longer.push(0);
        assert_eq!(
            DeviceListBody::decode(&longer),
            Err(DeviceListFormatError::Malformed)
        );
        let mut other = list;
        other[1] = 0x51;
        assert_eq!(
            DeviceListBody::decode(&other),
            Err(DeviceListFormatError::UnsupportedVersion)
        );
    }

    #[test]
    fn counts_and_order_are_enforced_both_ways() {
        assert_eq!(body(&[]).encode(), Err(DeviceListFormatError::Count(0)));
        assert_eq!(body(&[2, 2]).encode(), Err(DeviceListFormatError::Order));
        assert_eq!(body(&[3, 1]).encode(), Err(DeviceListFormatError::Order));
        let many: Vec<u32> = (1..=65).collect();
        assert_eq!(body(&many).encode(), Err(DeviceListFormatError::Count(65)));
        // A hand-made list with a repeated number is refused on decode too.
        let mut list = body(&[1, 2]).with_signature(&[0; 64]).unwrap();
        list[68 + DEVICE_ENTRY_LEN..68 + DEVICE_ENTRY_LEN + 4].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(
            DeviceListBody::decode(&list),
            Err(DeviceListFormatError::Order)
        );
        let mut zero = body(&[1]).with_signature(&[0; 64]).unwrap();
        zero[66..68].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(
            DeviceListBody::decode(&zero[..68]),
            Err(DeviceListFormatError::Count(0))
        );
    }
}
