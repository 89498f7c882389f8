//! Haven's client-side cryptographic core (sans-I/O).
//!
//! No function here performs I/O, reads a clock or draws OS randomness: operations take the
//! random number generator (`rand_core::CryptoRng`) as an argument.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod attachment;
pub mod diary;
pub mod groups;
pub mod padding;
pub mod store;

#[cfg(test)]
mod vectors;

pub use attachment::{AttachmentDecryptor, AttachmentEncryptor, AttachmentError, AttachmentKey};

pub use diary::{DiaryError, DiaryKeys, KdfParams, RecoveryCode, WrappedKeyBundle};
pub use groups::{
    DistributionId, GroupError, GroupSenderSession, SenderKeyDistributionMessage, SenderKeyMessage,
    SenderKeyRecord,
};
pub use padding::{PaddingError, pad, unpad};
pub use store::sender_keys::{InMemorySenderKeyStore, SenderKeyName, SenderKeyStore};
