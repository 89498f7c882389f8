//! The signed group change's layout (PROTOCOL.md §13.3.1): a group's membership at one epoch, as
//! its admin states it.
//!
//! ```text
//! body   = 01 | 60 | group_id [16] | epoch u32 | admin_account [16] | admin_key [32]
//!          | key_commitment [32] | name_len u16 | name | count u16 | count × account [16]
//! change = body | Ed25519 signature [64] by admin_key over ("Haven_GroupChange_v1" || body)
//! ```
//!
//! `epoch` is 1 at creation and one more at every change; `name` is UTF-8 of at most
//! [`MAX_NAME_BYTES`] bytes; members are 1 to [`MAX_MEMBERS`] distinct account ids, in the order
//! the admin lists them. This module is the layout only: the SDK signs and verifies
//! (`haven_sdk::groups::admin`), the client core decides what a verified change may do.

use crate::encoding::{self, Reader};

/// Version byte.
pub const VERSION: u8 = 0x01;
/// Type byte of a group change.
pub const TYPE: u8 = 0x60;
/// Domain-separation prefix of the admin key's signature.
pub const SIGNATURE_CONTEXT: &[u8] = b"Haven_GroupChange_v1";
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Longest group name (bytes of UTF-8), as in a content (§13.1).
pub const MAX_NAME_BYTES: usize = crate::content::MAX_GROUP_NAME_BYTES;
/// Most members, as in a content (§13.1).
pub const MAX_MEMBERS: usize = crate::content::MAX_GROUP_MEMBERS;
/// Length of the body before the name.
pub const HEADER_LEN: usize = 2 + 16 + 4 + 16 + 32 + 32;
/// Longest encoded change (body and signature).
pub const MAX_CHANGE_LEN: usize =
    HEADER_LEN + 2 + MAX_NAME_BYTES + 2 + MAX_MEMBERS * 16 + SIGNATURE_LEN;

/// Why group-change bytes were refused (before any signature check).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupChangeFormatError {
    /// Truncated, trailing bytes, too long, or a name that is not UTF-8.
    #[error("malformed group change")]
    Malformed,
    /// Unknown version or type byte.
    #[error("unsupported group change version or type")]
    UnsupportedVersion,
    /// Epoch 0 (the first epoch is 1).
    #[error("group change for epoch 0")]
    ZeroEpoch,
    /// A name longer than [`MAX_NAME_BYTES`].
    #[error("group name too long")]
    NameTooLong,
    /// No member, more than [`MAX_MEMBERS`], or a member listed twice.
    #[error("a group change lists 1 to {MAX_MEMBERS} distinct members")]
    Members,
}

/// What a group change states.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupChangeBody {
    /// The group.
    pub group_id: [u8; 16],
    /// The epoch this change starts (1 at creation).
    pub epoch: u32,
    /// The account whose devices hold the admin key (the group's creator); invites and
    /// admin-key copies are accepted from its devices only.
    pub admin_account: [u8; 16],
    /// The group's admin key (Ed25519 public key), the same in every change of the group.
    pub admin_key: [u8; 32],
    /// Commitment to the epoch's group key (`haven_sdk::groups::group_key_commitment`).
    pub key_commitment: [u8; 32],
    /// The group's name.
    pub name: String,
    /// The member accounts after the change.
    pub members: Vec<[u8; 16]>,
}

impl std::fmt::Debug for GroupChangeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and member ids are the social graph: counts only.
        f.debug_struct("GroupChangeBody")
            .field("epoch", &self.epoch)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl GroupChangeBody {
    /// Checks the epoch, name and member rules.
    ///
    /// # Errors
    /// [`GroupChangeFormatError::ZeroEpoch`], [`GroupChangeFormatError::NameTooLong`],
    /// [`GroupChangeFormatError::Members`].
    pub fn check(&self) -> Result<(), GroupChangeFormatError> {
        if self.epoch == 0 {
            return Err(GroupChangeFormatError::ZeroEpoch);
        }
        if self.name.len() > MAX_NAME_BYTES {
            return Err(GroupChangeFormatError::NameTooLong);
        }
        let n = self.members.len();
        if n == 0 || n > MAX_MEMBERS {
            return Err(GroupChangeFormatError::Members);
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].contains(m) {
                return Err(GroupChangeFormatError::Members);
            }
        }
        Ok(())
    }

    /// The signed body.
    ///
    /// # Errors
    /// As [`Self::check`]: only well-formed changes are encoded.
    pub fn encode(&self) -> Result<Vec<u8>, GroupChangeFormatError> {
        self.check()?;
        let mut b = Vec::with_capacity(HEADER_LEN + 4 + self.name.len() + self.members.len() * 16);
        b.extend_from_slice(&[VERSION, TYPE]);
        b.extend_from_slice(&self.group_id);
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.admin_account);
        b.extend_from_slice(&self.admin_key);
        b.extend_from_slice(&self.key_commitment);
        // check() bounds both lengths well below u16::MAX.
        let name_len =
            u16::try_from(self.name.len()).map_err(|_| GroupChangeFormatError::NameTooLong)?;
        b.extend_from_slice(&name_len.to_be_bytes());
        b.extend_from_slice(self.name.as_bytes());
        let count =
            u16::try_from(self.members.len()).map_err(|_| GroupChangeFormatError::Members)?;
        b.extend_from_slice(&count.to_be_bytes());
        for m in &self.members {
            b.extend_from_slice(m);
        }
        Ok(b)
    }

    /// What the admin key signs: [`SIGNATURE_CONTEXT`] `||` body.
    ///
    /// # Errors
    /// As [`Self::check`].
    pub fn signing_input(&self) -> Result<Vec<u8>, GroupChangeFormatError> {
        Ok(encoding::signing_input(SIGNATURE_CONTEXT, &self.encode()?))
    }

    /// The change: body `||` signature.
    ///
    /// # Errors
    /// As [`Self::check`].
    pub fn with_signature(
        &self,
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<Vec<u8>, GroupChangeFormatError> {
        Ok(encoding::with_signature(self.encode()?, signature))
    }

    /// Splits a change into its body and signature (the signature is not verified).
    ///
    /// # Errors
    /// [`GroupChangeFormatError`] for anything but a well-formed change.
    pub fn decode(bytes: &[u8]) -> Result<(Self, [u8; SIGNATURE_LEN]), GroupChangeFormatError> {
        let m = GroupChangeFormatError::Malformed;
        if bytes.len() > MAX_CHANGE_LEN {
            return Err(m);
        }
        let mut r = Reader::new(bytes);
        match (r.u8(), r.u8()) {
            (Some(VERSION), Some(TYPE)) => {}
            (Some(_), Some(_)) => return Err(GroupChangeFormatError::UnsupportedVersion),
            _ => return Err(m),
        }
        let group_id = r.array().ok_or(m)?;
        let epoch = r.u32().ok_or(m)?;
        let admin_account = r.array().ok_or(m)?;
        let admin_key = r.array().ok_or(m)?;
        let key_commitment = r.array().ok_or(m)?;
        let name_len = usize::from(r.u16().ok_or(m)?);
        if name_len > MAX_NAME_BYTES {
            return Err(GroupChangeFormatError::NameTooLong);
        }
        let name = String::from_utf8(r.take(name_len).ok_or(m)?.to_vec()).map_err(|_| m)?;
        let count = usize::from(r.u16().ok_or(m)?);
        if count == 0 || count > MAX_MEMBERS {
            return Err(GroupChangeFormatError::Members);
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            members.push(r.array().ok_or(m)?);
        }
        let signature = r.array().ok_or(m)?;
        r.finish().ok_or(m)?;
        let body = Self {
            group_id,
            epoch,
            admin_account,
            admin_key,
            key_commitment,
            name,
            members,
        };
        body.check()?;
        Ok((body, signature))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body() -> GroupChangeBody {
        GroupChangeBody {
            group_id: [1; 16],
            epoch: 3,
            admin_account: [2; 16],
            admin_key: [3; 32],
            key_commitment: [4; 32],
            name: "climbing".into(),
            members: vec![[2; 16], [5; 16]],
        }
    }

    #[test]
    fn round_trips_and_every_truncation_or_extension_is_refused() {
        let b = body();
        let bytes = b.with_signature(&[9; 64]).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 2 + 8 + 2 + 32 + 64);
        let (decoded, sig) = GroupChangeBody::decode(&bytes).unwrap();
        assert_eq!(decoded, b);
        assert_eq!(sig, [9; 64]);
        for n in 0..bytes.len() {
            assert!(GroupChangeBody::decode(&bytes[..n]).is_err(), "at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(GroupChangeBody::decode(&longer).is_err());
        assert!(b.signing_input().unwrap().starts_with(SIGNATURE_CONTEXT));
    }

    #[test]
    fn rules_are_enforced_both_ways() {
        let mut b = body();
        b.epoch = 0;
        assert_eq!(b.encode(), Err(GroupChangeFormatError::ZeroEpoch));
        let mut b = body();
        b.members.push([2; 16]);
        assert_eq!(b.encode(), Err(GroupChangeFormatError::Members));
        let mut b = body();
        b.members.clear();
        assert_eq!(b.encode(), Err(GroupChangeFormatError::Members));
        let mut b = body();
        b.name = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(b.encode(), Err(GroupChangeFormatError::NameTooLong));
        // Decoding applies the same rules to hand-made bytes.
        let mut bytes = body().with_signature(&[0; 64]).unwrap();
        bytes[18..22].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            GroupChangeBody::decode(&bytes).map(|_| ()),
            Err(GroupChangeFormatError::ZeroEpoch)
        );
        let mut bytes = body().with_signature(&[0; 64]).unwrap();
        bytes[1] = 0x61;
        assert_eq!(
            GroupChangeBody::decode(&bytes).map(|_| ()),
            Err(GroupChangeFormatError::UnsupportedVersion)
        );
        let shown = format!("{:?}", body());
        assert!(!shown.contains("climbing"), "{shown}");
    }
}
