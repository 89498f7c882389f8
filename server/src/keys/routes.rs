//! The key directory: uploading prekeys, counts, digest, and claiming bundles (PROTOCOL.md §11.11).

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ed25519_dalek::{Signature, VerifyingKey};
use haven_protocol::api::keys::{
    BundleBody, BundlesResponse, KeyCountsResponse, KeyDigestResponse, KeyUploadRequest,
    OneTimeKeyBody, SignedKeyBody,
};
use haven_protocol::prekeys::{KEY_TYPE_ML_KEM_1024, KEY_TYPE_X25519, prekey_signature_message};
use haven_ratelimit::Quota;
use sha2::{Digest as _, Sha256};

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::clock::now_i64;
use crate::db::Store;
use crate::db::error::StoreError;
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::http::{b64, decode_b64, path_id};
use crate::ids::Id;
use crate::keys::store::{ClaimedKeys, DeviceKeySet, KeyUpload, PublicPreKey, UploadOutcome};
use crate::mail::service::session_device;

/// Length of an X25519 public key.
pub const X25519_KEY_LEN: usize = 32;
/// Length of an ML-KEM-1024 encapsulation key.
pub const KEM_KEY_LEN: usize = 1568;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an SDK identity key (Ed25519 || X25519), needed for the `bundle` encoding.
pub const IDENTITY_KEY_LEN: usize = 64;
/// Domain prefix of the key digest.
pub const KEY_DIGEST_LABEL: &[u8] = b"Haven_KeyDigest_v1";

fn exact(field: &'static str, text: &str, len: usize) -> Result<Vec<u8>, AppError> {
    let bytes = decode_b64(field, text, len)?;
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(AppError::bad_request(
            "invalid_length",
            format!("{field} must be {len} bytes"),
        ))
    }
}

fn signed(
    field: &'static str,
    body: &SignedKeyBody,
    key_len: usize,
) -> Result<PublicPreKey, AppError> {
    Ok(PublicPreKey {
        key_id: body.key_id,
        public_key: exact(field, &body.public_key, key_len)?,
        signature: exact(field, &body.signature, SIGNATURE_LEN)?,
    })
}

fn unique_ids(field: &'static str, ids: impl Iterator<Item = u32>) -> Result<(), AppError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(AppError::bad_request(
                "duplicate_key_id",
                format!("{field} lists key id {id} twice"),
            ));
        }
    }
    Ok(())
}

/// Checks an upload's counts, ids and key lengths and decodes it.
fn validate_upload(req: &KeyUploadRequest, max_per_upload: usize) -> Result<KeyUpload, AppError> {
    for (field, n) in [
        ("one_time_prekeys", req.one_time_prekeys.len()),
        ("one_time_kem_prekeys", req.one_time_kem_prekeys.len()),
    ] {
        if n > max_per_upload {
            return Err(AppError::bad_request(
                "too_many_keys",
                format!("{field}: at most {max_per_upload} keys per upload"),
            ));
        }
    }
    unique_ids(
        "one_time_prekeys",
        req.one_time_prekeys.iter().map(|k| k.key_id),
    )?;
    unique_ids(
        "one_time_kem_prekeys",
        req.one_time_kem_prekeys.iter().map(|k| k.key_id),
    )?;
    Ok(KeyUpload {
        registration_id: req.registration_id,
        signed_prekey: req
            .signed_prekey
            .as_ref()
            .map(|k| signed("signed_prekey", k, X25519_KEY_LEN))
            .transpose()?,
        last_resort_kem_prekey: req
            .last_resort_kem_prekey
            .as_ref()
            .map(|k| signed("last_resort_kem_prekey", k, KEM_KEY_LEN))
            .transpose()?,
        one_time_prekeys: req
            .one_time_prekeys
            .iter()
            .map(|k| {
                Ok(PublicPreKey {
                    key_id: k.key_id,
                    public_key: exact("one_time_prekeys", &k.public_key, X25519_KEY_LEN)?,
                    signature: Vec::new(),
                })
            })
            .collect::<Result<_, AppError>>()?,
        one_time_kem_prekeys: req
            .one_time_kem_prekeys
            .iter()
            .map(|k| signed("one_time_kem_prekeys", k, KEM_KEY_LEN))
            .collect::<Result<_, AppError>>()?,
    })
}

/// Checks every key of an upload against the uploading device's identity key (PROTOCOL.md
/// §2.1): the signed prekey, the last-resort and one-time KEM prekeys, and the one-time X25519
/// prekeys, whose signatures are required in an upload but not kept. 400 `invalid_signature`
/// for a missing or wrong one; nothing is stored then.
fn verify_upload(
    identity: &[u8],
    req: &KeyUploadRequest,
    upload: &KeyUpload,
) -> Result<(), AppError> {
    let refuse = |field: &str, id: u32| {
        AppError::bad_request(
            "invalid_signature",
            format!("{field}: key {id} is not signed by this device's identity key"),
        )
    };
    let ik: Option<[u8; IDENTITY_KEY_LEN]> = identity.try_into().ok();
    let verifying = ik.and_then(|ik| {
        let ed: [u8; 32] = ik[..32].try_into().ok()?;
        VerifyingKey::from_bytes(&ed).ok().map(|vk| (ik, vk))
    });
    let check = |field: &str, key_type: u8, id: u32, public: &[u8], signature: &[u8]| {
        let (ik, vk) = verifying.as_ref().ok_or_else(|| refuse(field, id))?;
        let sig = Signature::from_slice(signature).map_err(|_| refuse(field, id))?;
        vk.verify_strict(&prekey_signature_message(ik, key_type, id, public), &sig)
            .map_err(|_| refuse(field, id))
    };
    for (field, key_type, key) in [
        (
            "signed_prekey",
            KEY_TYPE_X25519,
            upload.signed_prekey.as_ref(),
        ),
        (
            "last_resort_kem_prekey",
            KEY_TYPE_ML_KEM_1024,
            upload.last_resort_kem_prekey.as_ref(),
        ),
    ] {
        if let Some(k) = key {
            check(field, key_type, k.key_id, &k.public_key, &k.signature)?;
        }
    }
    for k in &upload.one_time_kem_prekeys {
        check(
            "one_time_kem_prekeys",
            KEY_TYPE_ML_KEM_1024,
            k.key_id,
            &k.public_key,
            &k.signature,
        )?;
    }
    for (body, k) in req.one_time_prekeys.iter().zip(&upload.one_time_prekeys) {
        let signature = body
            .signature
            .as_deref()
            .ok_or_else(|| refuse("one_time_prekeys", k.key_id))?;
        let signature = exact("one_time_prekeys", signature, SIGNATURE_LEN)?;
        check(
            "one_time_prekeys",
            KEY_TYPE_X25519,
            k.key_id,
            &k.public_key,
            &signature,
        )?;
    }
    Ok(())
}

/// Uploads or replaces the device's prekeys.
#[utoipa::path(put, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    request_body = KeyUploadRequest,
    responses((status = 204, description = "stored"),
              (status = 400, description = "malformed input, `missing_base_keys`, `duplicate_key_id`, `too_many_keys`, `invalid_signature`", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 409, description = "`key_id_taken` or `key_limit`", body = ErrorBody),
              (status = 429, description = "`rate_limited`: over `keys.uploads_per_hour` for this device", body = ErrorBody)))]
pub async fn upload<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(req): ApiJson<KeyUploadRequest>,
) -> Result<StatusCode, AppError> {
    let keys = &state.settings().keys;
    let upload = validate_upload(&req, keys.max_one_time_per_upload)?;
    let record = state
        .store()
        .device(&session.account, &session.device)
        .await?
        .ok_or_else(|| {
            AppError::unauthorized("session_revoked", "this session is no longer valid")
        })?;
    // Only keys this device signed are stored: a stolen access token cannot add junk.
    verify_upload(&record.identity_key, &req, &upload)?;
    let device = record.number;
    // A stolen access token can add at most `max_one_time_per_upload` keys per upload, this
    // many uploads an hour, and never more than the per-device stock.
    crate::limits::hit_shared(
        &state,
        &crate::limits::keyed(&state, "keys:upload", &session.device),
        Quota::new(keys.uploads_per_hour, Duration::from_secs(3600)),
    )
    .await?;
    let outcome = state
        .store()
        .upload_keys(
            &session.account,
            device,
            &upload,
            keys.max_one_time_per_device,
            now_i64(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict => AppError::conflict(
                "key_id_taken",
                "a one-time key with one of these ids is already stored",
            ),
            other => other.into(),
        })?;
    match outcome {
        UploadOutcome::Stored => Ok(StatusCode::NO_CONTENT),
        UploadOutcome::MissingBaseKeys => Err(AppError::bad_request(
            "missing_base_keys",
            "the first upload must carry registration_id, signed_prekey and last_resort_kem_prekey",
        )),
        UploadOutcome::TooManyKeys => Err(AppError::conflict(
            "key_limit",
            format!(
                "a device can store at most {} one-time keys of each kind",
                keys.max_one_time_per_device
            ),
        )),
        UploadOutcome::DeviceGone => Err(AppError::unauthorized(
            "session_revoked",
            "this session is no longer valid",
        )),
    }
}

/// The own device's key stock.
#[utoipa::path(get, path = "/v1/keys/counts", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = KeyCountsResponse),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn counts<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<KeyCountsResponse>, AppError> {
    let device = session_device(&state, &session).await?;
    let c = state.store().key_counts(&session.account, device).await?;
    let threshold = state.settings().keys.low_stock_threshold;
    Ok(Json(KeyCountsResponse {
        one_time_prekeys: c.one_time_prekeys,
        one_time_kem_prekeys: c.one_time_kem_prekeys,
        has_base_keys: c.has_base_keys,
        low: !c.has_base_keys
            || c.one_time_prekeys < threshold
            || c.one_time_kem_prekeys < threshold,
    }))
}

/// The canonical encoding the key digest is computed over (PROTOCOL.md §11.11).
pub fn key_digest_input(set: &DeviceKeySet) -> Vec<u8> {
    let mut out = KEY_DIGEST_LABEL.to_vec();
    match &set.base {
        None => out.push(0),
        Some(base) => {
            out.push(1);
            out.extend_from_slice(&base.registration_id.to_be_bytes());
            for key in [&base.signed_prekey, &base.last_resort_kem_prekey] {
                out.extend_from_slice(&key.key_id.to_be_bytes());
                out.extend_from_slice(&key.public_key);
                out.extend_from_slice(&key.signature);
            }
        }
    }
    for pool in [&set.one_time_prekeys, &set.one_time_kem_prekeys] {
        let n = u32::try_from(pool.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for key in pool {
            out.extend_from_slice(&key.key_id.to_be_bytes());
            out.extend_from_slice(&key.public_key);
            out.extend_from_slice(&key.signature);
        }
    }
    out
}

/// SHA-256 over everything the relay holds for the own device.
#[utoipa::path(get, path = "/v1/keys/digest", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = KeyDigestResponse),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn digest<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<Json<KeyDigestResponse>, AppError> {
    let device = session_device(&state, &session).await?;
    let set = state
        .store()
        .device_key_set(&session.account, device)
        .await?;
    Ok(Json(KeyDigestResponse {
        digest: b64(&Sha256::digest(key_digest_input(&set))),
    }))
}

fn signed_body(key: &PublicPreKey) -> SignedKeyBody {
    SignedKeyBody {
        key_id: key.key_id,
        public_key: b64(&key.public_key),
        signature: b64(&key.signature),
    }
}

/// The §2.4 encoding of a claimed bundle.
pub fn encode_bundle(identity_key: &[u8], device: u32, c: &ClaimedKeys) -> Option<Vec<u8>> {
    if identity_key.len() != IDENTITY_KEY_LEN {
        return None;
    }
    let kem = c
        .one_time_kem_prekey
        .as_ref()
        .unwrap_or(&c.base.last_resort_kem_prekey);
    let mut out = Vec::with_capacity(1847);
    out.extend_from_slice(&[0x01, 0x20]);
    out.extend_from_slice(&c.base.registration_id.to_be_bytes());
    out.extend_from_slice(&device.to_be_bytes());
    out.extend_from_slice(identity_key);
    out.extend_from_slice(&c.base.signed_prekey.key_id.to_be_bytes());
    out.extend_from_slice(&c.base.signed_prekey.public_key);
    out.extend_from_slice(&c.base.signed_prekey.signature);
    match &c.one_time_prekey {
        None => out.push(0),
        Some(k) => {
            out.push(1);
            out.extend_from_slice(&k.key_id.to_be_bytes());
            out.extend_from_slice(&k.public_key);
        }
    }
    out.extend_from_slice(&kem.key_id.to_be_bytes());
    out.extend_from_slice(&kem.public_key);
    out.extend_from_slice(&kem.signature);
    Some(out)
}

fn bundle_body(identity_key: &[u8], device: u32, c: &ClaimedKeys) -> BundleBody {
    let kem = c
        .one_time_kem_prekey
        .as_ref()
        .unwrap_or(&c.base.last_resort_kem_prekey);
    BundleBody {
        device_number: device,
        registration_id: c.base.registration_id,
        identity_key: b64(identity_key),
        signed_prekey: signed_body(&c.base.signed_prekey),
        one_time_prekey: c.one_time_prekey.as_ref().map(|k| OneTimeKeyBody {
            key_id: k.key_id,
            public_key: b64(&k.public_key),
            signature: None,
        }),
        kem_prekey: signed_body(kem),
        kem_prekey_last_resort: c.one_time_kem_prekey.is_none(),
        bundle: encode_bundle(identity_key, device, c).map(|b| b64(&b)),
    }
}

async fn claim_limits<S: Store>(
    state: &AppState<S>,
    requester: &Id,
    target: &Id,
) -> Result<(), AppError> {
    let keys = &state.settings().keys;
    let minute = Duration::from_secs(60);
    crate::limits::hit_shared(
        state,
        &crate::limits::keyed(state, "keys:req", requester),
        Quota::new(keys.claims_per_minute_per_requester, minute),
    )
    .await?;
    crate::limits::hit_shared(
        state,
        &crate::limits::keyed(state, "keys:tgt", target),
        Quota::new(keys.claims_per_minute_per_target, minute),
    )
    .await
}

async fn claim<S: Store>(
    state: &AppState<S>,
    requester: &Id,
    account: Id,
    only: Option<u32>,
) -> Result<Json<BundlesResponse>, AppError> {
    claim_limits(state, requester, &account).await?;
    let store = state.store();
    let devices = store.devices(&account).await?;
    if devices.is_empty() {
        return Err(AppError::not_found("account_not_found", "no such account"));
    }
    let mut bundles = Vec::new();
    let mut device_found = only.is_none();
    for d in devices
        .iter()
        .filter(|d| only.is_none_or(|n| n == d.number))
    {
        device_found = true;
        if let Some(c) = store.claim_keys(&account, d.number).await? {
            bundles.push(bundle_body(&d.identity_key, d.number, &c));
        }
    }
    if !device_found {
        return Err(AppError::not_found("device_not_found", "no such device"));
    }
    if bundles.is_empty() {
        return Err(AppError::not_found(
            "keys_not_found",
            "no prekeys uploaded for this device",
        ));
    }
    Ok(Json(BundlesResponse {
        account_id: account,
        bundles,
    }))
}

/// Claims a bundle for every device of an account (one one-time key of each kind per device).
#[utoipa::path(get, path = "/v1/keys/{account_id}", tag = "keys", security(("bearer" = [])),
    params(("account_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "account id (32 hex digits)")),
    responses((status = 200, body = BundlesResponse),
              (status = 400, description = "malformed id", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`account_not_found` or `keys_not_found`", body = ErrorBody),
              (status = 429, description = "rate limited", body = ErrorBody)))]
pub async fn bundles<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<BundlesResponse>, AppError> {
    let account = path_id(&account)?;
    claim(&state, &session.account, account, None).await
}

/// Claims the bundle of one device.
#[utoipa::path(get, path = "/v1/keys/{account_id}/{device_number}", tag = "keys", security(("bearer" = [])),
    params(("account_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "account id (32 hex digits)"),
           ("device_number" = u32, Path, description = "device number")),
    responses((status = 200, body = BundlesResponse),
              (status = 400, description = "malformed id", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 404, description = "`account_not_found`, `device_not_found` or `keys_not_found`", body = ErrorBody),
              (status = 429, description = "rate limited", body = ErrorBody)))]
pub async fn device_bundle<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiPath((account, device)): ApiPath<(String, String)>,
) -> Result<Json<BundlesResponse>, AppError> {
    let account = path_id(&account)?;
    let device: u32 = device.parse().map_err(|_| {
        AppError::bad_request("invalid_device_number", "device numbers are decimal u32")
    })?;
    claim(&state, &session.account, account, Some(device)).await
}
