//! The diary on a device, sans I/O (PROTOCOL §9, §11.16.1): the SDK's
//! [`DiaryKeys`](haven_sdk::diary::DiaryKeys) and [`DiarySync`](haven_sdk::diary::DiarySync)
//! over the encrypted store, and the relay's vault requests as steps. The native
//! client (`haven_client::Diary`, HTTP through its `RelayClient`) and the web package
//! (`haven-wasm`, the page's `fetch`) drive the same steps, so a diary written on one syncs to
//! the other by construction.
//!
//! # What is stored where (PROTOCOL §11.16.1)
//!
//! - On the relay: the wrapped key bundle as a reserved vault item (collection and item id all
//!   zero, see [`BUNDLE_COLLECTION`]) together with the diary's random collection id, and one
//!   vault item per entry in that collection.
//! - In the client store (space [`SPACE_META`]): the bundle, its revision, the collection id and
//!   the sync token; (space [`SPACE_ITEMS`]) each item's latest revision as the relay has it
//!   (the encrypted blobs, which [`LocalDiary::unlock`] decrypts and indexes again); (space
//!   [`SPACE_PENDING`]) each local edit the relay has not acknowledged, sealed for revision 0
//!   (a revision the relay never stores).
//!
//! # Steps
//!
//! ```text
//! create    NewDiary::create ─► NewDiary::call (PUT bundle item, expected 0) ─► finish
//! unlock    LocalDiary::unlock ─► Open | NeedsBundle: call (GET bundle item) ─► finish
//! recover   bundle::fetch_call (GET) ─► NewDiary::recover ─► NewDiary::call (PUT) ─► finish
//! password  change_password | regenerate_recovery_codes ─► BundleUpload::call ─► bundle_uploaded
//! edit      write · edit (local first: a pending edit, persisted at once)
//! sync      sync_run | delete_run ─► SyncRun::next_call ─► (relay) ─► SyncRun::answer … finish
//! history   history_run ─► HistoryRun::next_call ─► answer … finish ─► [restore_from]
//! all       DiaryMachine: the above as one machine, begin_… ─► next_call ─► answer … finish
//! read      show · is_pending · list · search (the local index; nothing leaves the device)
//! ```
//!
//! A step that asks for a request returns a [`VaultCall`] (method, path, typed body); the driver
//! sends it with the session's access token and hands back a [`VaultAnswer`]: the JSON answer,
//! or the relay's refusal (status and code). A refusal a step does not expect comes back as
//! [`LocalDiaryError::Refused`]; the driver reports its own transport or relay error then.
//!
//! Writes are local first: [`LocalDiary::write`], [`LocalDiary::edit`] and
//! [`LocalDiary::restore_from`] record a pending edit; a sync pushes the pending edits (a 409
//! pulls the newer revision, merges three-way and retries) and pulls what other devices wrote.
//! A page that fails verification (tampered, moved, rolled back) is refused as a whole: the
//! error is returned and nothing local changes.

use haven_protocol::api::vault::ItemWriteRequest;
use haven_sdk::diary::{DiaryError, EntryError, RecoveryCode, SyncError};
use zeroize::Zeroizing;

use crate::store::{ClientStoreError, Space};

pub mod bundle;
pub mod machine;
mod records;
pub mod run;
pub mod state;

#[cfg(test)]
mod tests;

pub use bundle::{
    BUNDLE_COLLECTION, BUNDLE_ITEM, BUNDLE_ITEM_FORMAT, BundleUpload, StoredBundle,
    decode_bundle_item, encode_bundle_item, encode_bundle_record,
};
pub use machine::{DiaryMachine, Outcome};
pub use run::{HistoryRevision, HistoryRun, SyncReport, SyncRun};
pub use state::{BundleFetch, LocalDiary, NewDiary, Unlocked};

/// Store space of the diary's own settings (bundle, collection, sync token).
pub const SPACE_META: Space = Space::app(0x40);
/// Store space of the items as the relay has them (encrypted blobs), by item id.
pub const SPACE_ITEMS: Space = Space::app(0x41);
/// Store space of the pending local edits, by item id.
pub const SPACE_PENDING: Space = Space::app(0x42);
/// Most requests one [`SyncRun`] makes before giving up (a relay that never settles).
pub const MAX_SYNC_REQUESTS: usize = 10_000;
/// Most history pages read for one item.
pub const MAX_HISTORY_PAGES: usize = 1_000;

/// Errors of the diary steps. Messages never contain key bytes or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalDiaryError {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] ClientStoreError),
    /// Key errors: wrong password or recovery code, bad parameters.
    #[error(transparent)]
    Keys(#[from] DiaryError),
    /// Verification of the relay's data failed (tampered, moved, rolled back or forked item);
    /// nothing local changed.
    #[error("sync refused the relay's data: {0}")]
    Sync(#[from] SyncError),
    /// An entry is over a limit or does not open.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The account has no diary yet.
    #[error("this account has no diary yet (run init first)")]
    NotInitialised,
    /// The account already has a diary.
    #[error("this account already has a diary (unlock it instead)")]
    AlreadyInitialised,
    /// The reserved bundle item does not have the expected layout.
    #[error("the key bundle stored on the relay is malformed")]
    BundleMalformed,
    /// The bundle changed on another device since this one read it.
    #[error("the key bundle was changed by another device; unlock again and retry")]
    BundleConflict,
    /// No entry with this id.
    #[error("no such entry")]
    UnknownEntry,
    /// The entry changed on another device before the operation reached the relay; the newer
    /// version was pulled, retry the operation.
    #[error("the entry changed on another device; it was synced, retry")]
    Conflict,
    /// The entry has no earlier live revision to restore.
    #[error("nothing to restore")]
    NothingToRestore,
    /// The local state does not decode.
    #[error("the local diary state is corrupt")]
    CorruptState,
    /// The relay kept answering without the sync settling.
    #[error("sync did not settle after {0} requests")]
    SyncDidNotSettle(usize),
    /// The relay's answer did not have the expected shape.
    #[error("unexpected answer from the relay: {0}")]
    InvalidResponse(&'static str),
    /// The relay refused a request with an error the step does not expect (the driver reports
    /// its own error for it).
    #[error("relay refused ({status}): {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The relay's error code.
        code: String,
    },
    /// A step was called out of order (an answer without a call in flight, or a call before
    /// the previous one was answered).
    #[error("diary step out of order: {0}")]
    OutOfOrder(&'static str),
}

impl LocalDiaryError {
    /// Whether this is a verification failure of data served by the relay.
    #[must_use]
    pub fn is_tampering(&self) -> bool {
        matches!(self, Self::Sync(_))
    }
}

/// An HTTP method of a [`VaultCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

impl HttpMethod {
    /// The method's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }
}

/// A request to the relay's vault (§11.16) a step asks for: send it with the access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultCall {
    /// The method.
    pub method: HttpMethod,
    /// The path (with its query), relative to the relay's base URL.
    pub path: String,
    /// The JSON body (writes only; blobs are ciphertext or the bundle, no secret in clear).
    pub body: Option<ItemWriteRequest>,
}

/// The relay's answer to a [`VaultCall`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VaultAnswer {
    /// A success and its JSON body (`null` when empty).
    Ok(serde_json::Value),
    /// An error answer (§11.2): the HTTP status and the relay's error code.
    Refused {
        /// HTTP status.
        status: u16,
        /// The relay's error code (empty if the body had none).
        code: String,
    },
}

impl VaultAnswer {
    /// An answer from its HTTP status and body text, as a page's `fetch` sees it.
    ///
    /// # Errors
    /// [`LocalDiaryError::InvalidResponse`] for a success whose body is not JSON.
    pub fn from_http(status: u16, body: &str) -> Result<Self, LocalDiaryError> {
        if (200..300).contains(&status) {
            if body.trim().is_empty() {
                return Ok(Self::Ok(serde_json::Value::Null));
            }
            return serde_json::from_str(body)
                .map(Self::Ok)
                .map_err(|_| LocalDiaryError::InvalidResponse("answer is not JSON"));
        }
        let code = serde_json::from_str::<haven_protocol::api::error::ErrorBody>(body)
            .map(|b| b.error.code)
            .unwrap_or_default();
        Ok(Self::Refused { status, code })
    }

    /// The success body as `T`.
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(
        self,
        what: &'static str,
    ) -> Result<T, LocalDiaryError> {
        match self {
            Self::Ok(v) => {
                serde_json::from_value(v).map_err(|_| LocalDiaryError::InvalidResponse(what))
            }
            Self::Refused { status, code } => Err(LocalDiaryError::Refused { status, code }),
        }
    }
}

/// The vault path of an item.
#[must_use]
pub fn item_path(collection: &[u8; 16], item: &[u8; 16]) -> String {
    format!(
        "/v1/vault/{}/items/{}",
        hex::encode(collection),
        hex::encode(item)
    )
}

/// The recovery codes as text, to show to the user once.
#[must_use]
pub fn codes_text(codes: &[RecoveryCode]) -> Vec<Zeroizing<String>> {
    codes.iter().map(RecoveryCode::to_text).collect()
}

/// A relay blob (base64) decoded.
pub(crate) fn b64(s: &str) -> Result<Vec<u8>, LocalDiaryError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| LocalDiaryError::InvalidResponse("blob is not base64"))
}

/// Blobs as the relay takes them (base64).
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
