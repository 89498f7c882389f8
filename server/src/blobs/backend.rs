//! The blob store: one trait over `object_store`, with a local-directory backend (the relay
//! streams bytes itself) and an S3 backend (clients use presigned URLs).
//!
//! Object names carry only the random blob id (`blobs/<hex id>` on S3, `blobs/<hex id>/<part>`
//! locally): no file name, no type, no owner.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::signer::{Method, SignedUrlOptions, Signer, Url};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload};

use super::settings::{BlobBackendKind, BlobSettings};
use crate::blobs::store::{BlobPart, BlobRecord};
use crate::ids::Id;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, BackendError>>;

/// Bytes gathered before one write to the local file (bounds memory per upload).
const WRITE_BUFFER: usize = 1 << 20;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The uploaded body or object does not have the announced length.
    #[error("expected {expected} bytes, got {actual}")]
    WrongSize {
        /// Announced length.
        expected: u64,
        /// Bytes received (a lower bound if the body was longer).
        actual: u64,
    },
    /// The client's request body failed (disconnect, timeout).
    #[error("request body failed: {0}")]
    Body(String),
    /// The object (or a part of it) does not exist.
    #[error("object not found")]
    NotFound,
    /// S3 refused to assemble the parts (missing, wrong ETag, too small).
    #[error("the parts do not form the blob: {0}")]
    InvalidParts(String),
    /// This backend does not do that (e.g. relay-streamed transfers on S3).
    #[error("not supported by this backend")]
    NotSupported,
    /// The object store failed.
    #[error("object store: {0}")]
    Store(String),
}

impl From<object_store::Error> for BackendError {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Store(other.to_string()),
        }
    }
}

/// Where the blob bytes live.
#[async_trait]
pub trait BlobBackend: Send + Sync + 'static {
    /// Which backend this is.
    fn kind(&self) -> BlobBackendKind;
    /// Prepares an upload; returns the S3 multipart upload id, if the backend has one.
    async fn begin_upload(&self, blob: &Id) -> Result<Option<String>, BackendError>;
    /// A presigned URL for uploading part `part` of exactly `len` bytes, or `None` if the relay
    /// receives the part itself ([`write_part`](Self::write_part)).
    async fn part_url(
        &self,
        blob: &BlobRecord,
        part: u64,
        len: u64,
        ttl: Duration,
    ) -> Result<Option<Url>, BackendError>;
    /// Stores part `part` from `body`, which must be exactly `len` bytes; returns its ETag.
    /// Memory stays bounded by [`WRITE_BUFFER`] whatever the length.
    async fn write_part(
        &self,
        blob: &Id,
        part: u64,
        len: u64,
        body: ByteStream,
    ) -> Result<String, BackendError>;
    /// Seals an upload whose parts are `parts` (in order); checks the stored size.
    async fn complete(&self, blob: &BlobRecord, parts: &[BlobPart]) -> Result<(), BackendError>;
    /// A presigned download URL, or `None` if the relay serves the blob itself
    /// ([`read`](Self::read)).
    async fn download_url(
        &self,
        blob: &BlobRecord,
        ttl: Duration,
    ) -> Result<Option<Url>, BackendError>;
    /// Streams a complete blob from byte `offset`.
    async fn read(&self, blob: &BlobRecord, offset: u64) -> Result<ByteStream, BackendError>;
    /// Deletes every object of a blob and aborts its pending upload; deleting what is already
    /// gone succeeds.
    async fn delete(&self, blob: &BlobRecord) -> Result<(), BackendError>;
    /// Ids of the blobs that have objects, with the Unix time of their newest object (the
    /// garbage collector removes those without a metadata row).
    async fn stored_blobs(&self) -> Result<Vec<(Id, i64)>, BackendError>;
}

fn blob_prefix(blob: &Id) -> ObjPath {
    ObjPath::from(format!("blobs/{}", blob.to_hex()))
}

fn part_path(blob: &Id, part: u64) -> ObjPath {
    ObjPath::from(format!("blobs/{}/{part:06}", blob.to_hex()))
}

/// The blob id an object belongs to, from its path (`blobs/<hex>` or `blobs/<hex>/<part>`).
fn id_of(path: &ObjPath) -> Option<Id> {
    let mut parts = path.parts();
    if parts.next()?.as_ref() != "blobs" {
        return None;
    }
    parts.next()?.as_ref().parse().ok()
}

async fn collect_stored(store: &dyn ObjectStore) -> Result<Vec<(Id, i64)>, BackendError> {
    let mut found: std::collections::BTreeMap<Id, i64> = std::collections::BTreeMap::new();
    let mut list = store.list(Some(&ObjPath::from("blobs")));
    while let Some(meta) = list.next().await {
        let meta = meta?;
        if let Some(id) = id_of(&meta.location) {
            let t = meta.last_modified.timestamp();
            let entry = found.entry(id).or_insert(t);
            *entry = (*entry).max(t);
        }
    }
    Ok(found.into_iter().collect())
}

/// Blobs in a local directory, one file per part. The directory is created on the first
/// upload, so a relay that never stores a blob leaves no trace on disk.
#[derive(Debug)]
pub struct LocalBackend {
    dir: std::path::PathBuf,
    store: std::sync::OnceLock<Arc<LocalFileSystem>>,
}

impl LocalBackend {
    /// A backend on the directory `dir` (created when first written to).
    ///
    /// # Errors
    /// None yet; kept fallible for symmetry with [`S3Backend::open`].
    pub fn open(dir: &FsPath) -> Result<Self, BackendError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            store: std::sync::OnceLock::new(),
        })
    }

    /// The object store over the directory; `None` if it does not exist and `create` is false.
    fn store(&self, create: bool) -> Result<Option<Arc<LocalFileSystem>>, BackendError> {
        if let Some(store) = self.store.get() {
            return Ok(Some(Arc::clone(store)));
        }
        if !self.dir.exists() {
            if !create {
                return Ok(None);
            }
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| BackendError::Store(format!("cannot create blob directory: {e}")))?;
        }
        let store = LocalFileSystem::new_with_prefix(&self.dir)?.with_automatic_cleanup(true);
        let _ = self.store.set(Arc::new(store));
        Ok(self.store.get().map(Arc::clone))
    }

    fn existing(&self) -> Result<Arc<LocalFileSystem>, BackendError> {
        self.store(false)?.ok_or(BackendError::NotFound)
    }
}

#[async_trait]
impl BlobBackend for LocalBackend {
    fn kind(&self) -> BlobBackendKind {
        BlobBackendKind::Local
    }

    async fn begin_upload(&self, _blob: &Id) -> Result<Option<String>, BackendError> {
        Ok(None)
    }

    async fn part_url(
        &self,
        _blob: &BlobRecord,
        _part: u64,
        _len: u64,
        _ttl: Duration,
    ) -> Result<Option<Url>, BackendError> {
        Ok(None)
    }

    async fn write_part(
        &self,
        blob: &Id,
        part: u64,
        len: u64,
        mut body: ByteStream,
    ) -> Result<String, BackendError> {
        let path = part_path(blob, part);
        let store = self.store(true)?.ok_or(BackendError::NotFound)?;
        let mut upload = store.put_multipart(&path).await?;
        let mut buf = BytesMut::with_capacity(WRITE_BUFFER);
        let mut total = 0u64;
        let written: Result<(), BackendError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                total = total.saturating_add(chunk.len() as u64);
                if total > len {
                    return Err(BackendError::WrongSize {
                        expected: len,
                        actual: total,
                    });
                }
                buf.extend_from_slice(&chunk);
                if buf.len() >= WRITE_BUFFER {
                    upload
                        .put_part(PutPayload::from(buf.split().freeze()))
                        .await?;
                }
            }
            if total != len {
                return Err(BackendError::WrongSize {
                    expected: len,
                    actual: total,
                });
            }
            if !buf.is_empty() {
                upload
                    .put_part(PutPayload::from(buf.split().freeze()))
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = written {
            // Removes the staging file; the previous content of the part (if any) stays.
            let _ = upload.abort().await;
            return Err(err);
        }
        let done = upload.complete().await?;
        Ok(done.e_tag.unwrap_or_default())
    }

    async fn complete(&self, blob: &BlobRecord, parts: &[BlobPart]) -> Result<(), BackendError> {
        // Every part must be on disk with its exact length (the database says it arrived; the
        // file system is the truth).
        let store = self.existing()?;
        for p in parts {
            let meta = store.head(&part_path(&blob.id, p.part)).await?;
            let expected = blob.part_len(p.part).unwrap_or(0);
            if meta.size != expected {
                return Err(BackendError::WrongSize {
                    expected,
                    actual: meta.size,
                });
            }
        }
        Ok(())
    }

    async fn download_url(
        &self,
        _blob: &BlobRecord,
        _ttl: Duration,
    ) -> Result<Option<Url>, BackendError> {
        Ok(None)
    }

    async fn read(&self, blob: &BlobRecord, offset: u64) -> Result<ByteStream, BackendError> {
        let part_size = blob.part_size.max(1);
        let first = offset / part_size;
        let reads: Vec<(ObjPath, u64)> = (first..blob.part_count())
            .map(|p| {
                let skip = if p == first { offset % part_size } else { 0 };
                (part_path(&blob.id, p), skip)
            })
            .collect();
        let store = self.existing()?;
        let s = stream::iter(reads)
            .then(move |(path, skip)| {
                let store = Arc::clone(&store);
                async move {
                    let options = GetOptions {
                        range: (skip > 0).then_some(GetRange::Offset(skip)),
                        ..GetOptions::default()
                    };
                    let got = store.get_opts(&path, options).await?;
                    Ok::<_, BackendError>(got.into_stream().map_err(BackendError::from))
                }
            })
            .try_flatten();
        Ok(Box::pin(s))
    }

    async fn delete(&self, blob: &BlobRecord) -> Result<(), BackendError> {
        let Some(store) = self.store(false)? else {
            return Ok(());
        };
        let prefix = blob_prefix(&blob.id);
        let locations = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        let mut deleted = store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    async fn stored_blobs(&self) -> Result<Vec<(Id, i64)>, BackendError> {
        match self.store(false)? {
            Some(store) => collect_stored(store.as_ref()).await,
            None => Ok(Vec::new()),
        }
    }
}

/// Blobs in an S3 bucket, one object per blob, uploaded in parts with presigned URLs.
#[derive(Debug)]
pub struct S3Backend {
    store: Arc<AmazonS3>,
}

impl S3Backend {
    /// Connects to the bucket described by `settings` (no request is made yet).
    ///
    /// # Errors
    /// [`BackendError::Store`] if the settings do not describe a usable bucket.
    pub fn open(settings: &BlobSettings) -> Result<Self, BackendError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(settings.s3_bucket.clone().unwrap_or_default())
            .with_region(settings.s3_region.clone())
            .with_allow_http(settings.s3_allow_http);
        if let Some(endpoint) = &settings.s3_endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(key) = &settings.s3_access_key_id {
            builder = builder.with_access_key_id(key.expose());
        }
        if let Some(secret) = &settings.s3_secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        Ok(Self {
            store: Arc::new(builder.build()?),
        })
    }

    fn object(blob: &Id) -> ObjPath {
        blob_prefix(blob)
    }
}

#[async_trait]
impl BlobBackend for S3Backend {
    fn kind(&self) -> BlobBackendKind {
        BlobBackendKind::S3
    }

    async fn begin_upload(&self, blob: &Id) -> Result<Option<String>, BackendError> {
        let id = self.store.create_multipart(&Self::object(blob)).await?;
        Ok(Some(id))
    }

    async fn part_url(
        &self,
        blob: &BlobRecord,
        part: u64,
        len: u64,
        ttl: Duration,
    ) -> Result<Option<Url>, BackendError> {
        let upload_id = blob.upload_id.clone().ok_or(BackendError::NotFound)?;
        // S3 part numbers start at 1. object_store does not let a presigned URL bind
        // Content-Length, so the size is enforced when the upload completes: S3 refuses
        // non-final parts under 5 MiB, and `complete` checks the assembled object's size.
        let _ = len;
        let options = SignedUrlOptions::default().with_query([
            ("partNumber".to_owned(), (part + 1).to_string()),
            ("uploadId".to_owned(), upload_id),
        ]);
        let url = self
            .store
            .signed_url_opts(Method::PUT, &Self::object(&blob.id), ttl, &options)
            .await?;
        Ok(Some(url))
    }

    async fn write_part(
        &self,
        _blob: &Id,
        _part: u64,
        _len: u64,
        _body: ByteStream,
    ) -> Result<String, BackendError> {
        Err(BackendError::NotSupported)
    }

    async fn complete(&self, blob: &BlobRecord, parts: &[BlobPart]) -> Result<(), BackendError> {
        let path = Self::object(&blob.id);
        let upload_id = blob.upload_id.clone().ok_or(BackendError::NotFound)?;
        let ids = parts
            .iter()
            .map(|p| PartId {
                content_id: p.etag.clone(),
            })
            .collect();
        self.store
            .complete_multipart(&path, &upload_id, ids)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => BackendError::NotFound,
                other => BackendError::InvalidParts(other.to_string()),
            })?;
        let meta = self.store.head(&path).await?;
        if meta.size != blob.size {
            // The parts had other lengths than announced: the object is not a blob.
            let _ = self.store.delete(&path).await;
            return Err(BackendError::WrongSize {
                expected: blob.size,
                actual: meta.size,
            });
        }
        Ok(())
    }

    async fn download_url(
        &self,
        blob: &BlobRecord,
        ttl: Duration,
    ) -> Result<Option<Url>, BackendError> {
        let url = self
            .store
            .signed_url(Method::GET, &Self::object(&blob.id), ttl)
            .await?;
        Ok(Some(url))
    }

    async fn read(&self, blob: &BlobRecord, offset: u64) -> Result<ByteStream, BackendError> {
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&Self::object(&blob.id), options)
            .await?;
        Ok(Box::pin(got.into_stream().map_err(BackendError::from)))
    }

    async fn delete(&self, blob: &BlobRecord) -> Result<(), BackendError> {
        let path = Self::object(&blob.id);
        if let Some(upload_id) = &blob.upload_id {
            match self.store.abort_multipart(&path, upload_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => tracing::warn!(%err, "aborting a multipart upload failed"),
            }
        }
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn stored_blobs(&self) -> Result<Vec<(Id, i64)>, BackendError> {
        collect_stored(self.store.as_ref()).await
    }
}

/// Opens the backend named by `settings`; `default_dir` is used when `[blobs] dir` is unset.
///
/// # Errors
/// As [`LocalBackend::open`] / [`S3Backend::open`].
pub fn open(
    settings: &BlobSettings,
    default_dir: &FsPath,
) -> Result<Arc<dyn BlobBackend>, BackendError> {
    Ok(match settings.backend {
        BlobBackendKind::Local => Arc::new(LocalBackend::open(
            settings.dir.as_deref().unwrap_or(default_dir),
        )?),
        BlobBackendKind::S3 => Arc::new(S3Backend::open(settings)?),
    })
}
