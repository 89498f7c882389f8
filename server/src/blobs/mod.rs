//! Blobs: padded attachment ciphertexts (PROTOCOL.md §10, §11.17).
//!
//! The relay never sees a blob's key, plaintext, type or file name: it stores objects named by a
//! random id whose sizes are only ever valid padded blob sizes (`is_valid_blob_size`), owned by
//! an account (which pays its quota) and deleted at expiry. Metadata lives in the database
//! ([`crate::blobs::store::BlobMetaStore`]); bytes live behind [`BlobBackend`].

pub mod backend;
pub mod routes;
pub mod settings;
pub mod store;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroize as _;

pub use backend::{BackendError, BlobBackend, ByteStream};
pub use settings::{BlobBackendKind, BlobSettings};

use crate::blobs::store::{BlobRecord, BlobState};
use crate::db::Store;
use crate::db::error::StoreError;
use crate::ids::Id;
use crate::secrets::Key32;
use crate::secrets::SecretStore;
use crate::settings::Settings;

/// Errors while starting the blob service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobSetupError {
    /// `blobs.token_secret` is not base64 of 32 bytes.
    #[error("configured secret blobs.token_secret is malformed")]
    MalformedTokenSecret,
    /// The backend could not be opened.
    #[error("blob store: {0}")]
    Backend(#[from] BackendError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The blob store, its token key and its settings (shared by the handlers and the collector).
pub struct BlobService {
    backend: Arc<dyn BlobBackend>,
    token_key: Key32,
    settings: BlobSettings,
}

impl std::fmt::Debug for BlobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobService")
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

/// Where the local backend keeps blobs when `[blobs] dir` is unset: `blobs/` next to an SQLite
/// database file, else `data/blobs`.
#[must_use]
pub fn default_dir(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest));
    match file {
        Some(f) if !f.is_empty() && !f.starts_with(":memory:") => {
            let parent = std::path::Path::new(f)
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            parent.join("blobs")
        }
        _ => PathBuf::from("data/blobs"),
    }
}

impl BlobService {
    /// Opens the configured backend and loads (or generates and stores) the token key.
    ///
    /// # Errors
    /// [`BlobSetupError`].
    pub async fn open<S: SecretStore>(
        settings: &Settings,
        store: &S,
    ) -> Result<Self, BlobSetupError> {
        let blob_settings = settings.blobs.clone();
        let token_key = match &blob_settings.token_secret {
            Some(secret) => {
                let mut bytes = STANDARD
                    .decode(secret.expose().trim())
                    .map_err(|_| BlobSetupError::MalformedTokenSecret)?;
                let key = <[u8; 32]>::try_from(bytes.as_slice())
                    .map(Key32::from_bytes)
                    .map_err(|_| BlobSetupError::MalformedTokenSecret);
                bytes.zeroize();
                key?
            }
            None => {
                let fresh = Key32::random();
                let stored = store
                    .secret_or_insert("blob_token_key", fresh.expose())
                    .await?;
                <[u8; 32]>::try_from(stored.expose())
                    .map(Key32::from_bytes)
                    .map_err(|_| BlobSetupError::MalformedTokenSecret)?
            }
        };
        let backend = backend::open(&blob_settings, &default_dir(settings.database_url.expose()))?;
        Ok(Self {
            backend,
            token_key,
            settings: blob_settings,
        })
    }

    /// The blob store.
    #[must_use]
    pub fn backend(&self) -> &dyn BlobBackend {
        self.backend.as_ref()
    }

    /// Key of the local transfer tokens.
    #[must_use]
    pub fn token_key(&self) -> &Key32 {
        &self.token_key
    }

    /// The `[blobs]` settings.
    #[must_use]
    pub fn settings(&self) -> &BlobSettings {
        &self.settings
    }

    /// Lifetime of URLs and tokens.
    #[must_use]
    pub fn url_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.url_ttl_secs)
    }

    /// Deletes a blob's objects, then its row (refunding the quota). If the objects cannot be
    /// deleted the row stays, so the collector retries later.
    ///
    /// # Errors
    /// The backend's or the store's error.
    pub async fn delete<S: Store>(&self, store: &S, blob: &BlobRecord) -> Result<(), DeleteError> {
        self.backend.delete(blob).await?;
        store.delete_blob(&blob.id).await?;
        Ok(())
    }

    /// Deletes every blob of `account` from the blob store and the database (account
    /// deletion). Returns how many were deleted.
    ///
    /// # Errors
    /// The first failure; blobs not yet deleted are left to the collector, which removes the
    /// blobs of accounts that no longer exist.
    pub async fn delete_account<S: Store>(
        &self,
        store: &S,
        account: &Id,
    ) -> Result<u64, DeleteError> {
        let mut deleted = 0u64;
        loop {
            let batch = store.account_blobs(account, 500).await?;
            if batch.is_empty() {
                return Ok(deleted);
            }
            for blob in &batch {
                self.delete(store, blob).await?;
                deleted += 1;
            }
        }
    }

    /// One garbage-collection pass: deletes expired blobs, uploads pending for longer than
    /// `pending_ttl_secs`, blobs of deleted accounts, and objects without a metadata row (older
    /// than `pending_ttl_secs`, so an upload racing the pass is never touched).
    ///
    /// # Errors
    /// A store or backend failure that stopped the pass.
    pub async fn collect<S: Store>(&self, store: &S, now: i64) -> Result<GcReport, DeleteError> {
        let mut report = GcReport::default();
        let grace = i64::try_from(self.settings.pending_ttl_secs).unwrap_or(i64::MAX);
        let pending_before = now.saturating_sub(grace);
        loop {
            let batch = store.collectable_blobs(now, pending_before, 500).await?;
            let mut progress = false;
            for blob in &batch {
                match self.delete(store, blob).await {
                    Ok(()) => {
                        progress = true;
                        report.blobs += 1;
                    }
                    Err(err) => {
                        tracing::warn!(%err, "blob garbage collection: delete failed");
                        report.failed += 1;
                    }
                }
            }
            if batch.len() < 500 || !progress {
                break;
            }
        }
        for (id, newest) in self.backend.stored_blobs().await? {
            if newest > pending_before || store.blob_exists(&id).await? {
                continue;
            }
            let stray = BlobRecord {
                id,
                account: id,
                size: 0,
                part_size: self.settings.part_size_bytes,
                state: BlobState::Complete,
                upload_id: None,
                created_at: 0,
                expires_at: 0,
            };
            match self.backend.delete(&stray).await {
                Ok(()) => report.stray_objects += 1,
                Err(err) => {
                    tracing::warn!(%err, "blob garbage collection: stray delete failed");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}

/// What a garbage-collection pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs (rows and objects) deleted.
    pub blobs: u64,
    /// Blobs whose objects had no metadata row.
    pub stray_objects: u64,
    /// Deletions that failed (retried next pass).
    pub failed: u64,
}

/// A failed deletion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteError {
    /// The blob store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs [`BlobService::collect`] every `gc_interval_secs` until `stop` turns true.
pub async fn gc_task<S: Store>(
    store: S,
    service: Arc<BlobService>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = Duration::from_secs(service.settings.gc_interval_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match service.collect(&store, crate::clock::now_i64()).await {
                    Ok(r) if r == GcReport::default() => {}
                    Ok(r) => tracing::info!(
                        blobs = r.blobs, stray = r.stray_objects, failed = r.failed,
                        "blob garbage collection"
                    ),
                    Err(err) => tracing::warn!(%err, "blob garbage collection failed"),
                }
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
        }
    }
}
