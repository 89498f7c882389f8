//! REST delivery: sending (logged-in, sealed, multi-recipient), fetching and acking envelopes,
//! and the unidentified-access key (PROTOCOL.md §11.12). The logic lives in
//! [`crate::mail::service`]; these handlers only translate JSON.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::messages::{
    AccessKeyBody, AckBody, AckResponse, DeviceResult, EnvelopeBody, FetchQuery, FetchResponse,
    FrankingBody, MultiSendBody, MultiSendResponse, QueuedBody, RecipientResult, SendBody,
    SendResponse, SourceBody,
};

use crate::accounts::session::Auth;
use crate::app::state::AppState;
use crate::db::Store;
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::http::{b64, decode_b64, path_id};
use crate::mail::service as messaging;
use crate::mail::service::{
    ACCESS_KEY_LEN, DeviceDelivery, DeviceEnvelope, MultiRecipient, MultiSendRequest, SendAuth,
    SendRequest, session_device,
};
use crate::moderation::stamp::decode_commitment;

/// Header carrying the recipient's unidentified-access key on a sealed send.
pub const ACCESS_KEY_HEADER: &str = "unidentified-access-key";

pub(crate) fn device_results(devices: &[DeviceDelivery]) -> Vec<DeviceResult> {
    devices
        .iter()
        .map(|d| match *d {
            DeviceDelivery::Queued {
                device,
                seq,
                duplicate,
            } => DeviceResult {
                device_number: device,
                status: "queued".to_owned(),
                seq: Some(seq),
                duplicate,
            },
            DeviceDelivery::Accepted { device } => DeviceResult {
                device_number: device,
                status: "accepted".to_owned(),
                seq: None,
                duplicate: false,
            },
        })
        .collect()
}

/// Decodes an envelope, reporting an oversize one as 413 `envelope_too_large`.
fn decode_envelope(text: &str, max: usize) -> Result<Vec<u8>, AppError> {
    let too_large = || {
        AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "envelope_too_large",
            format!("envelopes are limited to {max} bytes"),
        )
    };
    if text.len() > max.div_ceil(3) * 4 {
        return Err(too_large());
    }
    let bytes = STANDARD.decode(text).map_err(|_| {
        AppError::bad_request("invalid_base64", "envelope content is not valid base64")
    })?;
    if bytes.len() > max {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(AppError::bad_request(
            "invalid_length",
            "envelope content must not be empty",
        ));
    }
    Ok(bytes)
}

fn envelopes<S: Store>(
    state: &AppState<S>,
    bodies: &[EnvelopeBody],
) -> Result<Vec<DeviceEnvelope>, AppError> {
    let mail = &state.settings().mail;
    if bodies.len() > mail.max_recipients_per_send {
        return Err(AppError::bad_request(
            "too_many_envelopes",
            format!(
                "at most {} envelopes per send",
                mail.max_recipients_per_send
            ),
        ));
    }
    bodies
        .iter()
        .map(|e| {
            Ok(DeviceEnvelope {
                device: e.device_number,
                content: decode_envelope(&e.content, mail.max_envelope_bytes)?,
                franking_commitment: decode_commitment(e.franking_commitment.as_deref())?,
            })
        })
        .collect()
}

/// Sends to every device of an account as the logged-in device. The recipient's access key
/// (header or body, optional) is needed for an ephemeral send to another account and for a
/// 409/410 that names the recipient's devices.
#[utoipa::path(post, path = "/v1/messages/{account_id}", tag = "messages", security(("bearer" = [])),
    params(("account_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "recipient account id (32 hex digits)"),
           ("Unidentified-Access-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9+/]{21}[AQgw]==$", description = "recipient's access key, base64 (16 bytes); optional")),
    request_body = SendBody,
    responses((status = 200, body = SendResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session; `missing_access_key` (ephemeral send to another account without the key) or `invalid_access_key`", body = ErrorBody),
              (status = 404, description = "`account_not_found`", body = ErrorBody),
              (status = 409, description = "`mismatched_devices` or `message_id_conflict`", body = ErrorBody),
              (status = 410, description = "`stale_devices`", body = ErrorBody),
              (status = 413, description = "`envelope_too_large`", body = ErrorBody),
              (status = 507, description = "`mailbox_full`", body = ErrorBody)))]
pub async fn send<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    headers: HeaderMap,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<Json<SendResponse>, AppError> {
    let recipient = path_id(&account)?;
    let key = optional_access_key(&headers, body.access_key.as_deref())?;
    crate::moderation::routes::refuse_sanctioned(&state, &session.account).await?;
    let envelopes = envelopes(&state, &body.envelopes)?;
    let device = session_device(&state, &session).await?;
    let receipt = messaging::send(
        &state,
        SendAuth::Session {
            account: session.account,
            device,
            access_key: key,
        },
        &recipient,
        SendRequest {
            message_id: body.message_id,
            envelopes,
            ephemeral: body.ephemeral,
        },
    )
    .await?;
    Ok(Json(SendResponse {
        devices: device_results(&receipt.devices),
    }))
}

/// The recipient's access key as given in the header or the body, if at all (not both: 400
/// `invalid_access_key_field`).
fn optional_access_key(
    headers: &HeaderMap,
    body: Option<&str>,
) -> Result<Option<Vec<u8>>, AppError> {
    if headers.get(ACCESS_KEY_HEADER).is_none() && body.is_none() {
        return Ok(None);
    }
    access_key(headers, body).map(Some)
}

fn access_key(headers: &HeaderMap, body: Option<&str>) -> Result<Vec<u8>, AppError> {
    let header = headers
        .get(ACCESS_KEY_HEADER)
        .map(|v| {
            v.to_str().map_err(|_| {
                AppError::bad_request("invalid_base64", "access key is not valid base64")
            })
        })
        .transpose()?;
    let text = match (header, body) {
        (Some(h), None) => h,
        (None, Some(b)) => b,
        (Some(_), Some(_)) => {
            return Err(AppError::bad_request(
                "invalid_access_key_field",
                "give the access key in the header or the body, not both",
            ));
        }
        (None, None) => {
            return Err(AppError::unauthorized(
                "missing_access_key",
                "a sealed send needs the recipient's unidentified-access key",
            ));
        }
    };
    decode_b64("access_key", text.trim(), ACCESS_KEY_LEN)
}

/// Sends without logging in (sealed sender), authorised by the recipient's access key.
#[utoipa::path(post, path = "/v1/messages/{account_id}/sealed", tag = "messages",
    params(("account_id" = String, Path, pattern = "^[0-9a-f]{32}$", description = "recipient account id (32 hex digits)"),
           ("Unidentified-Access-Key" = Option<String>, Header, pattern = "^[A-Za-z0-9+/]{21}[AQgw]==$", description = "recipient's access key, base64 (16 bytes)")),
    request_body = SendBody,
    responses((status = 200, body = SendResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`missing_access_key` or `invalid_access_key`", body = ErrorBody),
              (status = 409, description = "`mismatched_devices` or `message_id_conflict`", body = ErrorBody),
              (status = 410, description = "`stale_devices`", body = ErrorBody),
              (status = 413, description = "`envelope_too_large`", body = ErrorBody),
              (status = 429, description = "rate limited per recipient", body = ErrorBody),
              (status = 507, description = "`mailbox_full`", body = ErrorBody)))]
pub async fn send_sealed<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<Json<SendResponse>, AppError> {
    let recipient = path_id(&account)?;
    let key = access_key(&headers, body.access_key.as_deref())?;
    let envelopes = envelopes(&state, &body.envelopes)?;
    let receipt = messaging::send(
        &state,
        SendAuth::AccessKey(key),
        &recipient,
        SendRequest {
            message_id: body.message_id,
            envelopes,
            ephemeral: body.ephemeral,
        },
    )
    .await?;
    Ok(Json(SendResponse {
        devices: device_results(&receipt.devices),
    }))
}

/// Sealed multi-recipient send: the payload is stored once, plus a header per device.
#[utoipa::path(post, path = "/v1/messages/multi", tag = "messages",
    request_body = MultiSendBody,
    responses((status = 200, body = MultiSendResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`invalid_access_key`", body = ErrorBody),
              (status = 409, description = "`mismatched_devices` or `message_id_conflict`", body = ErrorBody),
              (status = 410, description = "`stale_devices`", body = ErrorBody),
              (status = 413, description = "`envelope_too_large`", body = ErrorBody),
              (status = 429, description = "rate limited per recipient", body = ErrorBody),
              (status = 507, description = "`mailbox_full`", body = ErrorBody)))]
pub async fn send_multi<S: Store>(
    State(state): State<AppState<S>>,
    ApiJson(body): ApiJson<MultiSendBody>,
) -> Result<Json<MultiSendResponse>, AppError> {
    let mail = &state.settings().mail;
    if body.recipients.len() > mail.max_recipients_per_send {
        return Err(AppError::bad_request(
            "too_many_envelopes",
            format!(
                "at most {} recipients per send",
                mail.max_recipients_per_send
            ),
        ));
    }
    let payload = decode_envelope(&body.payload, mail.max_envelope_bytes)?;
    let mut recipients = Vec::with_capacity(body.recipients.len());
    for r in &body.recipients {
        if r.devices.len() > mail.max_recipients_per_send {
            return Err(AppError::bad_request(
                "too_many_envelopes",
                "too many device headers",
            ));
        }
        recipients.push(MultiRecipient {
            account: r.account_id,
            access_key: decode_b64("access_key", &r.access_key, ACCESS_KEY_LEN)?,
            headers: r
                .devices
                .iter()
                .map(|h| {
                    Ok(DeviceEnvelope {
                        device: h.device_number,
                        content: decode_envelope(&h.header, mail.max_header_bytes)?,
                        franking_commitment: decode_commitment(h.franking_commitment.as_deref())?,
                    })
                })
                .collect::<Result<_, AppError>>()?,
        });
    }
    let receipt = messaging::send_multi(
        &state,
        MultiSendRequest {
            message_id: body.message_id,
            payload,
            recipients,
        },
    )
    .await?;
    Ok(Json(MultiSendResponse {
        recipients: receipt
            .recipients
            .iter()
            .map(|(account, devices)| RecipientResult {
                account_id: *account,
                devices: device_results(devices),
            })
            .collect(),
    }))
}

/// Fetches the own device's queued envelopes in order (REST fallback of the WebSocket).
#[utoipa::path(get, path = "/v1/messages", tag = "messages", security(("bearer" = [])),
    params(FetchQuery),
    responses((status = 200, body = FetchResponse),
              (status = 400, description = "malformed query", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn fetch<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    query: Result<Query<FetchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FetchResponse>, AppError> {
    let Query(query) = query.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    let device = session_device(&state, &session).await?;
    let limit = query
        .limit
        .unwrap_or(state.settings().mail.max_fetch)
        .min(state.settings().mail.max_fetch);
    let envelopes =
        messaging::fetch(&state, &session.account, device, query.after, limit.max(1)).await?;
    let more = envelopes.len() == usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
    let stamp_key = &state.secrets().franking_stamp;
    Ok(Json(FetchResponse {
        envelopes: envelopes
            .into_iter()
            .map(|e| QueuedBody {
                franking: messaging::delivery_franking(
                    stamp_key,
                    e.franking_commitment.as_ref(),
                    &session.account,
                    device,
                    e.seq,
                    e.received_at,
                )
                .map(|f| FrankingBody {
                    commitment: b64(&f.commitment),
                    stamp: b64(&f.stamp),
                }),
                seq: e.seq,
                message_id: e.message_id,
                source: e.source.map(|(account_id, device_number)| SourceBody {
                    account_id,
                    device_number,
                }),
                content: b64(&e.content),
                payload: e.shared_payload.as_deref().map(b64),
                received_at: e.received_at,
                expires_at: e.expires_at,
            })
            .collect(),
        more,
    }))
}

/// Acknowledges (deletes) envelopes of the own device.
#[utoipa::path(post, path = "/v1/messages/ack", tag = "messages", security(("bearer" = [])),
    request_body = AckBody,
    responses((status = 200, body = AckResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn ack<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(body): ApiJson<AckBody>,
) -> Result<Json<AckResponse>, AppError> {
    let device = session_device(&state, &session).await?;
    let deleted = match (body.message_ids, body.up_to_seq) {
        (Some(ids), None) => messaging::ack(&state, &session.account, device, &ids).await?,
        (None, Some(seq)) => messaging::ack_up_to(&state, &session.account, device, seq).await?,
        _ => {
            return Err(AppError::bad_request(
                "invalid_ack",
                "give exactly one of message_ids and up_to_seq",
            ));
        }
    };
    Ok(Json(AckResponse { deleted }))
}

/// Sets or removes the account's unidentified-access key (only its hash is stored).
#[utoipa::path(put, path = "/v1/account/access-key", tag = "account", security(("bearer" = [])),
    request_body = AccessKeyBody,
    responses((status = 204, description = "stored"),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn set_access_key<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    ApiJson(body): ApiJson<AccessKeyBody>,
) -> Result<StatusCode, AppError> {
    let key = body
        .access_key
        .as_deref()
        .map(|k| decode_b64("access_key", k, ACCESS_KEY_LEN))
        .transpose()?;
    messaging::set_access_key(&state, &session.account, key.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
