//! Where the messenger keeps its state in the encrypted store (PROTOCOL §13.6): one space per
//! kind of record, JSON values with 32-hex-digit ids and base64 secrets.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::types::StateError;
use crate::store::{Backend, EncryptedStore, Space};

/// Contacts by account.
pub(super) const CONTACTS: Space = Space::app(0xE0);
/// Messages by conversation key (17 bytes) · message id.
pub(super) const MESSAGES: Space = Space::app(0xE1);
/// Group state by group id.
pub(super) const GROUPS: Space = Space::app(0xE2);
/// Group channel entries waiting for their sender's key, by group id · epoch · seq.
pub(super) const GROUP_PENDING: Space = Space::app(0xE3);
/// Durable follow-up tasks by random id.
pub(super) const TASKS: Space = Space::app(0xE4);
/// Per-conversation settings (disappearing timer) by conversation key.
pub(super) const CONV_SETTINGS: Space = Space::app(0xE5);
/// Sender keys that arrived before the invite of their group epoch, by group id · epoch ·
/// sender account · sender device.
pub(super) const PENDING_SENDER_KEYS: Space = Space::app(0xE6);
/// Report material of received franked messages (§16.5), by the message's key.
pub(super) const REPORTS: Space = Space::app(0xE7);
/// The franking of a [`GROUP_PENDING`] entry that was franked (§16.4), under the same key:
/// `commitment [32] · stamp [32] · u64be(created_at)`.
pub(super) const GROUP_PENDING_FRANKING: Space = Space::app(0xE8);

/// The record under `key`, decoded; `what` names it in the error when it does not decode.
pub(super) fn get_json<T: for<'de> Deserialize<'de>, B: Backend>(
    store: &EncryptedStore<B>,
    space: Space,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, StateError> {
    match store.get(space, key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| StateError::Corrupt { what }),
        None => Ok(None),
    }
}

/// Every record of `space`, decoded.
pub(super) fn all_json<T: for<'de> Deserialize<'de>, B: Backend>(
    store: &EncryptedStore<B>,
    space: Space,
    what: &'static str,
) -> Result<Vec<T>, StateError> {
    store
        .entries(space)?
        .iter()
        .map(|(_, v)| serde_json::from_slice(v).map_err(|_| StateError::Corrupt { what }))
        .collect()
}

/// Stores `value` as JSON under `key` (the encoding buffer is zeroized: records hold secrets).
pub(super) fn put_json<T: Serialize, B: Backend>(
    store: &EncryptedStore<B>,
    space: Space,
    key: &[u8],
    value: &T,
) -> Result<(), StateError> {
    let bytes = Zeroizing::new(
        serde_json::to_vec(value).map_err(|_| StateError::Corrupt { what: "record" })?,
    );
    Ok(store.put(space, key, &bytes)?)
}

/// Random bytes from `rng`.
pub(super) fn random<const N: usize, R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

/// A 16-byte id as 32 lowercase hex digits.
pub(super) mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::messenger) fn serialize<S: Serializer>(
        v: &[u8; 16],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(in crate::messenger) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
    }
}

/// A list of 16-byte ids, each as 32 lowercase hex digits.
pub(super) mod hex16_vec {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub(in crate::messenger) fn serialize<S: Serializer>(
        v: &[[u8; 16]],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    pub(in crate::messenger) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<[u8; 16]>, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        items
            .iter()
            .map(|t| {
                hex::decode(t)
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
            })
            .collect()
    }
}

/// Fixed-length secret bytes as standard base64 (with padding).
pub(super) mod b64bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::messenger) fn serialize<S: Serializer, T: AsRef<[u8]>>(
        v: &T,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v.as_ref()))
    }

    pub(in crate::messenger) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .ok()
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or_else(|| serde::de::Error::custom("bad length"))
    }
}

/// Variable-length bytes as standard base64 (with padding); empty when absent.
pub(super) mod b64vec {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::messenger) fn serialize<S: Serializer>(
        v: &[u8],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(in crate::messenger) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map_err(|_| serde::de::Error::custom("expected base64"))
    }
}
