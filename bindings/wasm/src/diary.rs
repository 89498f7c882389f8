//! The diary on the web: the key hierarchy of PROTOCOL §9 (password-wrapped master key,
//! recovery codes) and entries sealed as vault items (§9.5). The page stores the wrapped bundle
//! and the sealed entries (IndexedDB, or the relay's vault): all of it ciphertext.

use haven_sdk::diary::entry::SealedEntry;
use haven_sdk::{DiaryKeys, Entry, KdfParams, WrappedKeyBundle};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ErrorCode, WebError, WebResult, invalid};
use crate::frames::parse_id;

/// An entry as the page gives and gets it (JSON, camelCase).
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryJson {
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// Mood label.
    #[serde(default)]
    pub mood: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Creation time, Unix ms.
    #[serde(default)]
    pub created_ms: u64,
    /// Last edit time, Unix ms.
    #[serde(default)]
    pub updated_ms: u64,
}

/// A sealed entry: the two blobs of one vault item revision.
#[derive(Debug)]
pub struct SealedJson {
    /// Item id (32 hex).
    pub item_id: String,
    /// Revision the blobs are bound to.
    pub revision: u64,
    /// Encrypted body.
    pub body: Vec<u8>,
    /// Encrypted metadata.
    pub meta: Vec<u8>,
}

/// Unlocked diary keys and the diary's collection id.
pub struct DiaryCore {
    keys: DiaryKeys,
    bundle: WrappedKeyBundle,
    collection_id: [u8; 16],
    recovery_codes: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for DiaryCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiaryCore")
            .field("collection_id", &hex::encode(self.collection_id))
            .finish_non_exhaustive()
    }
}

fn diary_error(e: haven_sdk::DiaryError) -> WebError {
    use haven_sdk::DiaryError as E;
    let code = match e {
        E::WrongPassword | E::WrongRecoveryCode | E::InvalidRecoveryCode => {
            ErrorCode::WrongPassword
        }
        E::KdfParamsTooWeak { .. } | E::KdfParamsTooExpensive { .. } | E::ItemTooLarge(_) => {
            ErrorCode::Limit
        }
        E::ItemDecryptionFailed => ErrorCode::DecryptionFailed,
        _ => ErrorCode::Malformed,
    };
    WebError::new(code, e.to_string())
}

fn entry_error(e: haven_sdk::diary::entry::EntryError) -> WebError {
    use haven_sdk::diary::entry::EntryError as E;
    let code = match e {
        E::Diary(haven_sdk::DiaryError::ItemDecryptionFailed) | E::BodyMismatch => {
            ErrorCode::DecryptionFailed
        }
        E::FieldTooLong { .. } | E::TooMany { .. } => ErrorCode::Limit,
        _ => ErrorCode::Malformed,
    };
    WebError::new(code, e.to_string())
}

impl DiaryCore {
    /// A new diary: fresh master key wrapped under `passphrase` (Argon2id with the given cost)
    /// and under ten recovery codes, and a fresh collection id.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an empty passphrase, [`ErrorCode::Limit`] for KDF
    /// parameters outside PROTOCOL §9.1's bounds.
    pub fn create(passphrase: &[u8], m_cost_kib: u32, t_cost: u32) -> WebResult<Self> {
        if passphrase.is_empty() {
            return Err(invalid("empty passphrase"));
        }
        let params = KdfParams {
            m_cost_kib,
            t_cost,
            p_cost: 1,
        };
        let mut rng = rand::rng();
        let (keys, bundle, codes) =
            DiaryKeys::create(passphrase, params, &mut rng).map_err(diary_error)?;
        let mut collection_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut rng, &mut collection_id);
        Ok(Self {
            keys,
            bundle,
            collection_id,
            recovery_codes: codes.iter().map(|c| c.to_text()).collect(),
        })
    }

    /// Unlocks a diary from its record ([`DiaryCore::record`]) with the passphrase.
    ///
    /// # Errors
    /// [`ErrorCode::WrongPassword`], [`ErrorCode::Malformed`] for a bad record.
    pub fn unlock(record: &[u8], passphrase: &[u8]) -> WebResult<Self> {
        let (collection_id, bundle) = parse_record(record)?;
        let keys = DiaryKeys::unlock_with_password(&bundle, passphrase).map_err(diary_error)?;
        Ok(Self {
            keys,
            bundle,
            collection_id,
            recovery_codes: Vec::new(),
        })
    }

    /// The diary record to store in clear next to the entries:
    /// `0x01 · collection_id [16] · u32be(len) · bundle` (the §11.16.1 key-bundle item body
    /// without its padding). It holds no secret in clear.
    #[must_use]
    pub fn record(&self) -> Vec<u8> {
        let bundle = self.bundle.to_bytes();
        let mut out = Vec::with_capacity(21 + bundle.len());
        out.push(0x01);
        out.extend_from_slice(&self.collection_id);
        out.extend_from_slice(&u32::try_from(bundle.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&bundle);
        out
    }

    /// The recovery codes, once: available only right after [`DiaryCore::create`].
    pub fn take_recovery_codes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.recovery_codes)
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect()
    }

    /// The collection id (32 hex).
    #[must_use]
    pub fn collection_id(&self) -> String {
        hex::encode(self.collection_id)
    }

    /// Seals an entry (JSON of [`EntryJson`]) as revision `revision` of item `item_id` (a new
    /// random id when `None`).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (JSON, id), [`ErrorCode::Limit`] (field lengths).
    pub fn encrypt_entry(
        &self,
        entry_json: &str,
        item_id: Option<&str>,
        revision: u64,
    ) -> WebResult<SealedJson> {
        let e: EntryJson = serde_json::from_str(entry_json)
            .map_err(|err| invalid(format!("entry JSON: {err}")))?;
        let item = match item_id {
            Some(id) => parse_id(id)?,
            None => {
                let mut id = [0u8; 16];
                rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
                id
            }
        };
        let entry = Entry {
            title: e.title.clone(),
            body: e.body.clone(),
            mood: e.mood.clone(),
            tags: e.tags.clone(),
            created_ms: e.created_ms,
            updated_ms: e.updated_ms,
            attachments: Vec::new(),
        };
        drop(Zeroizing::new(e.body));
        let sealed = entry
            .seal(
                &self.keys,
                &self.collection_id,
                &item,
                revision,
                &mut rand::rng(),
            )
            .map_err(entry_error)?;
        Ok(SealedJson {
            item_id: hex::encode(item),
            revision,
            body: sealed.body,
            meta: sealed.meta,
        })
    }

    /// Opens the two blobs of item `item_id` at `revision`; returns the entry as JSON.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] (id), [`ErrorCode::DecryptionFailed`] (tampered, moved,
    /// rolled back or another diary's), [`ErrorCode::Malformed`].
    pub fn decrypt_entry(
        &self,
        item_id: &str,
        revision: u64,
        body: &[u8],
        meta: &[u8],
    ) -> WebResult<Zeroizing<String>> {
        let item = parse_id(item_id)?;
        let sealed = SealedEntry {
            body: body.to_vec(),
            meta: meta.to_vec(),
        };
        let entry = Entry::open(&self.keys, &self.collection_id, &item, revision, &sealed)
            .map_err(entry_error)?;
        let out = EntryJson {
            title: entry.title.clone(),
            body: entry.body.clone(),
            mood: entry.mood.clone(),
            tags: entry.tags.clone(),
            created_ms: entry.created_ms,
            updated_ms: entry.updated_ms,
        };
        let text = serde_json::to_string(&out).map_err(|e| invalid(e.to_string()))?;
        drop(Zeroizing::new(out.body));
        Ok(Zeroizing::new(text))
    }
}

fn parse_record(record: &[u8]) -> WebResult<([u8; 16], WrappedKeyBundle)> {
    let malformed = || WebError::new(ErrorCode::Malformed, "diary record is malformed");
    let (format, rest) = record.split_first().ok_or_else(malformed)?;
    if *format != 0x01 {
        return Err(malformed());
    }
    let (collection, rest) = rest.split_at_checked(16).ok_or_else(malformed)?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(malformed)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| malformed())?) as usize;
    if rest.len() != len {
        return Err(malformed());
    }
    let bundle = WrappedKeyBundle::from_bytes(rest).map_err(|_| malformed())?;
    let collection: [u8; 16] = collection.try_into().map_err(|_| malformed())?;
    Ok((collection, bundle))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn create_seal_unlock_open_and_typed_failures() {
        let mut d = DiaryCore::create(b"pass phrase", 19 * 1024, 2).unwrap();
        assert_eq!(d.take_recovery_codes().len(), 10);
        assert!(d.take_recovery_codes().is_empty());
        let sealed = d
            .encrypt_entry(r#"{"title":"Sunday","body":"Walked to the harbour.","tags":["sea"],"createdMs":1,"updatedMs":2}"#, None, 0)
            .unwrap();
        let record = d.record();
        let again = DiaryCore::unlock(&record, b"pass phrase").unwrap();
        let text = again
            .decrypt_entry(&sealed.item_id, 0, &sealed.body, &sealed.meta)
            .unwrap();
        assert!(text.contains("Walked to the harbour."));
        assert_eq!(
            DiaryCore::unlock(&record, b"wrong").unwrap_err().code,
            ErrorCode::WrongPassword
        );
        assert_eq!(
            again
                .decrypt_entry(&sealed.item_id, 1, &sealed.body, &sealed.meta)
                .unwrap_err()
                .code,
            ErrorCode::DecryptionFailed
        );
        for n in 0..30 {
            assert_eq!(
                DiaryCore::unlock(&record[..n], b"pass phrase")
                    .unwrap_err()
                    .code,
                ErrorCode::Malformed
            );
        }
        assert_eq!(
            DiaryCore::create(b"p", 1024, 1).unwrap_err().code,
            ErrorCode::Limit
        );
        assert_eq!(
            d.encrypt_entry("{", None, 0).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            d.encrypt_entry("{}", Some("XYZ"), 0).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }
}
