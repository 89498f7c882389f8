//! The attachments' JavaScript face (`#[wasm_bindgen]` exports): `WebUpload`, `WebDownload` and
//! `describeAttachment` check their arguments, call [`UploadCore`] / [`DownloadCore`] and turn
//! results into JS values and failures into `HavenError`s.

use std::cell::RefCell;

use haven_client_core::attachments::{Progress, part_etag};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{DownloadCore, Piece, UploadCore, content_type_arg, describe_pointer, size_arg};
use crate::api::{
    JsResult, bytes_arg, closed, js_error, lift, number_arg, opt_string_arg, string_arg, to_js,
};
use crate::error::{ErrorCode, WebError, WebResult, invalid};

#[wasm_bindgen(typescript_custom_section)]
const TS_ATTACHMENTS: &'static str = r#"
export interface UploadPlan { blobSize: number; partCount: number; storedBytes: number; alreadyComplete: boolean; }
/** Ciphertext of one part: collect the pieces of a part and upload them when `endsPart`. */
export interface UploadPiece { part: number; bytes: Uint8Array; endsPart: boolean; stored: boolean; }
export interface PartTarget { part: number; url: string; len: number; reportEtag: boolean; }
export interface TransferProgress { done: number; total: number; }
export interface AttachmentInfo {
  blobId: string; size: number; blobSize: number; contentType: string; fileName: string | null;
  hasThumbnail: boolean; thumbnail: Uint8Array | null;
}
"#;

fn reentrant() -> JsValue {
    js_error(WebError::new(ErrorCode::InvalidState, "re-entrant call"))
}

fn set(obj: &Object, key: &str, value: &JsValue) -> JsResult<()> {
    Reflect::set(obj, &key.into(), value).map(|_| ())
}

/// A byte count for JavaScript (sizes are below 2^53: blobs are at most 2^36 + overhead).
fn num(n: u64) -> JsValue {
    // Lossless below 2^53, which every size here is.
    JsValue::from_f64(n as f64)
}

fn progress_js(p: Progress) -> JsResult<JsValue> {
    let out = Object::new();
    set(&out, "done", &num(p.done))?;
    set(&out, "total", &num(p.total))?;
    Ok(out.into())
}

fn pieces_js(pieces: Vec<Piece>) -> JsResult<JsValue> {
    let out = Array::new();
    for p in pieces {
        let o = Object::new();
        set(&o, "part", &num(p.part))?;
        set(&o, "bytes", &Uint8Array::from(p.bytes.as_slice()).into())?;
        set(&o, "endsPart", &p.ends_part.into())?;
        set(&o, "stored", &p.stored.into())?;
        out.push(&o);
    }
    Ok(out.into())
}

fn opt_number_arg(v: &JsValue, what: &str) -> WebResult<Option<u64>> {
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        number_arg(v, what).map(Some)
    }
}

/// One attachment upload: reserve the blob, plan its parts, push the file through the
/// encryptor, upload each part as it completes, complete the blob, then `pointer()`.
#[wasm_bindgen]
pub struct WebUpload {
    inner: RefCell<Option<UploadCore>>,
}

impl std::fmt::Debug for WebUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebUpload").finish_non_exhaustive()
    }
}

impl WebUpload {
    fn with<T>(&self, f: impl FnOnce(&mut UploadCore) -> WebResult<T>) -> JsResult<T> {
        let mut guard = self.inner.try_borrow_mut().map_err(|_| reentrant())?;
        let core = guard.as_mut().ok_or_else(|| js_error(closed()))?;
        lift(f(core))
    }

    fn wrap(core: UploadCore) -> Self {
        Self {
            inner: RefCell::new(Some(core)),
        }
    }
}

#[wasm_bindgen]
impl WebUpload {
    /// A new upload of `size` plaintext bytes (a fresh key); next `createBody()`.
    pub async fn start(
        #[wasm_bindgen(unchecked_param_type = "number")] size: JsValue,
    ) -> JsResult<WebUpload> {
        let size = lift(number_arg(&size, "size").and_then(size_arg))?;
        Ok(Self::wrap(lift(UploadCore::start(size))?))
    }

    /// An upload resumed from `resumeState()`; next `statusPath()` and `plan()`.
    pub async fn resume(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] state: JsValue,
    ) -> JsResult<WebUpload> {
        let state = lift(bytes_arg(&state, "state"))?;
        Ok(Self::wrap(lift(UploadCore::resume(&state))?))
    }

    /// The JSON body of `POST /v1/blobs` (`ttlSecs`: the relay's default when omitted).
    #[wasm_bindgen(js_name = createBody)]
    pub fn create_body(
        &self,
        #[wasm_bindgen(js_name = ttlSecs, unchecked_param_type = "number | undefined")]
        ttl_secs: JsValue,
    ) -> JsResult<String> {
        let ttl = lift(opt_number_arg(&ttl_secs, "ttlSecs"))?;
        self.with(|u| u.create_body(ttl))
    }

    /// Takes the answer to `POST /v1/blobs`.
    pub fn created(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
    ) -> JsResult<()> {
        let answer = lift(string_arg(&answer, "answer"))?;
        self.with(|u| u.created(&answer))
    }

    /// The blob id (32 hex).
    #[wasm_bindgen(js_name = blobId)]
    pub fn blob_id(&self) -> JsResult<String> {
        self.with(|u| u.blob_id())
    }

    /// The resume state: secret (it holds the key); keep it only encrypted.
    #[wasm_bindgen(js_name = resumeState)]
    pub fn resume_state(&self) -> JsResult<Vec<u8>> {
        self.with(|u| u.resume_state().map(|s| s.to_vec()))
    }

    /// `GET` this path, then `plan(answer)`.
    #[wasm_bindgen(js_name = statusPath)]
    pub fn status_path(&self) -> JsResult<String> {
        self.with(|u| u.status_path())
    }

    /// Takes the answer to `GET /v1/blobs/{id}`: the blob's parts and which are stored.
    #[wasm_bindgen(unchecked_return_type = "UploadPlan")]
    pub fn plan(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
    ) -> JsResult<JsValue> {
        let answer = lift(string_arg(&answer, "answer"))?;
        let view = self.with(|u| u.plan(&answer))?;
        to_js(&view)
    }

    /// Encrypts the next bytes of the file (at most 64 KiB at a time keeps memory constant);
    /// returns the ciphertext pieces completed, cut at part boundaries.
    #[wasm_bindgen(unchecked_return_type = "UploadPiece[]")]
    pub fn push(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] plaintext: JsValue,
    ) -> JsResult<JsValue> {
        let data = lift(
            plaintext
                .dyn_ref::<Uint8Array>()
                .ok_or_else(|| invalid("plaintext must be a Uint8Array")),
        )?;
        let bytes = zeroize::Zeroizing::new(data.to_vec());
        let pieces = self.with(|u| u.push(&bytes))?;
        pieces_js(pieces)
    }

    /// After the whole file: the next pieces of the tail, `null` once the blob is complete.
    #[wasm_bindgen(js_name = nextTail, unchecked_return_type = "UploadPiece[] | null")]
    pub fn next_tail(&self) -> JsResult<JsValue> {
        match self.with(UploadCore::next_tail)? {
            Some(pieces) => pieces_js(pieces),
            None => Ok(JsValue::NULL),
        }
    }

    /// `POST` this path with `partUrlsBody(part)` for a part's upload URL.
    #[wasm_bindgen(js_name = partsPath)]
    pub fn parts_path(&self) -> JsResult<String> {
        self.with(|u| u.parts_path())
    }

    /// The JSON body asking for part `part`'s URL.
    #[wasm_bindgen(js_name = partUrlsBody)]
    pub fn part_urls_body(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] part: JsValue,
    ) -> JsResult<String> {
        let part = lift(number_arg(&part, "part"))?;
        self.with(|u| u.part_urls_body(part))
    }

    /// Where to `PUT` part `part` (from the answer to the part URL request).
    #[wasm_bindgen(js_name = partTarget, unchecked_return_type = "PartTarget")]
    pub fn part_target(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] part: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
    ) -> JsResult<JsValue> {
        let part = lift(number_arg(&part, "part"))?;
        let answer = lift(string_arg(&answer, "answer"))?;
        let target = self.with(|u| u.part_target(part, &answer))?;
        to_js(&target)
    }

    /// The `ETag` of an uploaded part: the `ETag` header (S3), else the relay's JSON answer.
    #[wasm_bindgen(js_name = partEtag)]
    pub fn part_etag(
        &self,
        #[wasm_bindgen(js_name = etagHeader, unchecked_param_type = "string | null")]
        etag_header: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] body: JsValue,
    ) -> JsResult<String> {
        let header = lift(opt_string_arg(&etag_header, "etagHeader"))?;
        let body = lift(string_arg(&body, "body"))?;
        lift(part_etag(header.as_deref(), body.as_bytes()).map_err(WebError::from))
    }

    /// `PUT` this path with `partReportBody(etag)` when the target says `reportEtag`.
    #[wasm_bindgen(js_name = partReportPath)]
    pub fn part_report_path(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] part: JsValue,
    ) -> JsResult<String> {
        let part = lift(number_arg(&part, "part"))?;
        self.with(|u| u.part_report_path(part))
    }

    /// The JSON body reporting a part's `ETag`.
    #[wasm_bindgen(js_name = partReportBody)]
    pub fn part_report_body(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] etag: JsValue,
    ) -> JsResult<String> {
        let etag = lift(string_arg(&etag, "etag"))?;
        self.with(|u| u.part_report_body(&etag))
    }

    /// `POST` this path once every part is uploaded (unless the plan said `alreadyComplete`).
    #[wasm_bindgen(js_name = completePath)]
    pub fn complete_path(&self) -> JsResult<String> {
        self.with(|u| u.complete_path())
    }

    /// Ciphertext bytes produced so far.
    #[wasm_bindgen(unchecked_return_type = "TransferProgress")]
    pub fn progress(&self) -> JsResult<JsValue> {
        let p = self.with(|u| Ok(u.progress()))?;
        progress_js(p)
    }

    /// The encoded pointer (§14) for the message, once the blob is complete: secret (it holds
    /// the key).
    pub fn pointer(
        &self,
        #[wasm_bindgen(js_name = contentType, unchecked_param_type = "string")]
        content_type: JsValue,
        #[wasm_bindgen(js_name = fileName, unchecked_param_type = "string | undefined")]
        file_name: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | undefined")] thumbnail: JsValue,
    ) -> JsResult<Vec<u8>> {
        let content_type = lift(string_arg(&content_type, "contentType"))?;
        lift(content_type_arg(&content_type))?;
        let file_name = lift(opt_string_arg(&file_name, "fileName"))?;
        let thumbnail = if thumbnail.is_undefined() || thumbnail.is_null() {
            None
        } else {
            Some(lift(bytes_arg(&thumbnail, "thumbnail"))?)
        };
        self.with(|u| {
            u.pointer(&content_type, file_name.as_deref(), thumbnail)
                .map(|p| p.to_vec())
        })
    }

    /// Wipes the upload (its key) from memory; later calls throw `closed`.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }
}

/// One attachment download: locate the blob, push its bytes through the decryptor as they
/// arrive, `finish()` checks the digest.
#[wasm_bindgen]
pub struct WebDownload {
    inner: RefCell<Option<DownloadCore>>,
}

impl std::fmt::Debug for WebDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDownload").finish_non_exhaustive()
    }
}

impl WebDownload {
    fn with<T>(&self, f: impl FnOnce(&mut DownloadCore) -> WebResult<T>) -> JsResult<T> {
        let mut guard = self.inner.try_borrow_mut().map_err(|_| reentrant())?;
        let core = guard.as_mut().ok_or_else(|| js_error(closed()))?;
        lift(f(core))
    }
}

#[wasm_bindgen]
impl WebDownload {
    /// A download of the attachment `pointer` (encoded, §14) names; next `path()`.
    pub async fn start(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] pointer: JsValue,
    ) -> JsResult<WebDownload> {
        let pointer = lift(bytes_arg(&pointer, "pointer").map(zeroize::Zeroizing::new))?;
        Ok(Self {
            inner: RefCell::new(Some(lift(DownloadCore::start(&pointer))?)),
        })
    }

    /// `GET` this path (with the access token), then `located(answer)`.
    pub fn path(&self) -> JsResult<String> {
        self.with(|d| Ok(d.path()))
    }

    /// Takes the download answer; returns the URL to `GET` without the access token (relative
    /// to the relay when it starts with `/`).
    pub fn located(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] answer: JsValue,
    ) -> JsResult<String> {
        let answer = lift(string_arg(&answer, "answer"))?;
        self.with(|d| d.located(&answer))
    }

    /// Blob bytes in (at most 64 KiB at a time keeps memory constant); the plaintext of the
    /// chunks they completed and verified out (often empty). Discard everything if a later
    /// call throws.
    pub fn push(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] ciphertext: JsValue,
    ) -> JsResult<Vec<u8>> {
        let data = lift(
            ciphertext
                .dyn_ref::<Uint8Array>()
                .ok_or_else(|| invalid("ciphertext must be a Uint8Array")),
        )?;
        let bytes = data.to_vec();
        self.with(|d| d.push(&bytes).map(|p| p.to_vec()))
    }

    /// After the last byte: the last plaintext, once the final chunk authenticates and the
    /// blob's digest is the pointer's (throws `decryption_failed` otherwise).
    pub fn finish(&self) -> JsResult<Vec<u8>> {
        self.with(|d| d.finish().map(|p| p.to_vec()))
    }

    /// Blob bytes received so far.
    #[wasm_bindgen(unchecked_return_type = "TransferProgress")]
    pub fn progress(&self) -> JsResult<JsValue> {
        let p = self.with(|d| Ok(d.progress()))?;
        progress_js(p)
    }

    /// What the pointer says about the file.
    #[wasm_bindgen(unchecked_return_type = "AttachmentInfo")]
    pub fn info(&self) -> JsResult<JsValue> {
        let view = self.with(|d| Ok(d.describe()))?;
        to_js(&view)
    }

    /// Wipes the download (its key) from memory; later calls throw `closed`.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.try_borrow_mut() {
            *g = None;
        }
    }
}

/// What an encoded attachment pointer says about its file (size, type, name, thumbnail), without
/// its key: for showing a message's attachment before it is downloaded.
#[wasm_bindgen(js_name = describeAttachment, unchecked_return_type = "AttachmentInfo")]
pub fn describe_attachment(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] pointer: JsValue,
) -> JsResult<JsValue> {
    let pointer = lift(bytes_arg(&pointer, "pointer").map(zeroize::Zeroizing::new))?;
    let (view, thumbnail) = lift(describe_pointer(&pointer))?;
    let out = to_js(&view)?;
    let thumb: JsValue = match thumbnail {
        Some(t) => Uint8Array::from(t.as_slice()).into(),
        None => JsValue::NULL,
    };
    Reflect::set(&out, &"thumbnail".into(), &thumb)?;
    Ok(out)
}
