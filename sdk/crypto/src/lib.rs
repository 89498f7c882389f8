//! Haven's client-side cryptographic core (sans-I/O).
//!
//! No network, disk, clock or OS randomness: operations take `now` (unix **seconds**, `u64`)
//! and an `rng: &mut impl rand_core::CryptoRng` as arguments, so the core is deterministic under
//! test and compiles to `wasm32-unknown-unknown`. Wire formats are specified in
//! `docs/PROTOCOL.md`.
//!
//! Account identity (§15): [`account`] (the account key, signed device lists, per-account
//! safety numbers), [`provisioning`] (linking a device by approval).
//! Session crypto (§§1–6): [`identity`], [`prekeys`], [`pqxdh`], [`ratchet`],
//! [`session_cipher`] (the high-level API), [`sealed_sender`], [`safety_number`](mod@safety_number), [`store`],
//! [`snapshot`]. Abuse reports (§16): [`franking`]. Data crypto (§§7–10): [`padding`], [`groups`], [`diary`], [`attachment`];
//! [`password`] (the byte encoding of every password, §9.1.1).
//! Low-level functions whose docs start with "hazmat:" exist for test vectors; [`vectors`]
//! (feature `test-vectors`) recomputes the published vector files.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod account;
pub mod attachment;
pub mod diary;
pub mod franking;
pub mod groups;
pub mod identity;
pub mod padding;
pub mod password;
pub mod pqxdh;
pub mod prekeys;
pub mod provisioning;
pub mod ratchet;
pub mod safety_number;
pub mod sealed_sender;
pub mod session_cipher;
pub mod snapshot;
pub mod store;

#[cfg(any(test, feature = "test-vectors"))]
pub mod vectors;

pub use account::{AccountIdentityKey, AccountIdentityKeyPair, DeviceList, DeviceListError};
pub use attachment::{AttachmentDecryptor, AttachmentEncryptor, AttachmentError, AttachmentKey};
pub use diary::{
    DiaryError, DiaryIndex, DiaryKeys, DiaryQuery, DiarySync, Entry, KdfParams, RecoveryCode,
    WrappedKeyBundle,
};
pub use franking::{Delivery, Franked, FrankingError, ReceivedFranking, frank, open_franked};
pub use groups::{
    DistributionId, GroupError, GroupSenderSession, SenderKeyDistributionMessage, SenderKeyMessage,
    SenderKeyRecord,
};
pub use identity::{IdentityKey, IdentityKeyPair};
pub use padding::{PaddingError, pad, unpad};
pub use password::normalize_password;
pub use prekeys::{
    KemPreKey, KemPreKeyKind, OneTimePreKey, OneTimePreKeyPolicy, PreKeyBundle, SignedPreKey,
    SignedPreKeyPolicy,
};
pub use ratchet::session::{Session, SessionRecord};
pub use safety_number::safety_number;
pub use sealed_sender::{OpenedEnvelope, SenderCertificate, open_sealed, seal_sender};
pub use session_cipher::{SessionError, decrypt, encrypt, initiate};
pub use snapshot::StorageKey;
pub use store::sender_keys::{InMemorySenderKeyStore, SenderKeyName, SenderKeyStore};
pub use store::{
    DeviceAddress, IdentityStore, InMemoryProtocolStore, PreKeyStore, ProtocolStore, SessionStore,
};
