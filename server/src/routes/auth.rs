//! Registration, login (OPAQUE), token refresh and logout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use haven_protocol::api::auth::{
    LoginFinishRequest, LoginStartRequest, LoginStartResponse, RefreshRequest,
    RegisterFinishRequest, RegisterStartRequest, RegisterStartResponse, TokenResponse,
};
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
use opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload,
    ServerLogin, ServerLoginStartParameters, ServerRegistration,
};
use rand::rngs::OsRng;

use super::{NewDevice, b64, decode_b64};
use crate::auth::tokens::{self, RefreshToken, Session};
use crate::auth::{Auth, ClientKey, totp, username};
use crate::error::{ApiJson, AppError, ErrorBody};
use crate::ids::Id;
use crate::state::{AppState, now_i64, now_secs};
use crate::store::{
    DeviceRecord, FamilyRecord, LoginState, NewAccount, RefreshOutcome, RefreshTokenRecord,
    SecretBytes, Store, StoreError,
};

type Cs = HavenCipherSuite;

/// Seconds a registration or login attempt stays valid between its two round trips.
pub const AUTH_STATE_TTL_SECS: i64 = 60;
/// Upper bound on any OPAQUE message in base64 (the largest, the upload, is 192 bytes).
const MAX_OPAQUE_MESSAGE: usize = 512;
/// Length of the rate-limit key prefix stored in front of the OPAQUE login state.
const LIMIT_KEY_LEN: usize = 32;

fn opaque_message(field: &'static str, text: &str) -> Result<Vec<u8>, AppError> {
    decode_b64(field, text, MAX_OPAQUE_MESSAGE)
}

fn bad_opaque(field: &'static str) -> AppError {
    AppError::bad_request(
        "invalid_opaque_message",
        format!("{field} is not a valid OPAQUE message"),
    )
}

/// Starts a registration: allocates the account id and answers the OPRF request.
#[utoipa::path(post, path = "/v1/register/start", tag = "auth",
    request_body = RegisterStartRequest,
    responses((status = 200, body = RegisterStartResponse),
              (status = 400, description = "malformed input", body = ErrorBody)))]
pub async fn register_start<S: Store>(
    State(state): State<AppState<S>>,
    ApiJson(req): ApiJson<RegisterStartRequest>,
) -> Result<Json<RegisterStartResponse>, AppError> {
    let bytes = opaque_message("registration_request", &req.registration_request)?;
    let request = RegistrationRequest::<Cs>::deserialize(&bytes)
        .map_err(|_| bad_opaque("registration_request"))?;
    let account_id = Id::random();
    let start = ServerRegistration::<Cs>::start(
        &state.secrets().opaque_setup,
        request,
        account_id.as_bytes(),
    )
    .map_err(|_| bad_opaque("registration_request"))?;
    let registration_id = Id::random();
    let now = now_i64();
    state.store().purge_expired(now).await?;
    state
        .store()
        .put_registration(&registration_id, &account_id, now + AUTH_STATE_TTL_SECS)
        .await?;
    Ok(Json(RegisterStartResponse {
        registration_id,
        account_id,
        registration_response: b64(&start.message.serialize()),
    }))
}

/// Finishes a registration: stores the OPAQUE record, the first device, and logs it in.
#[utoipa::path(post, path = "/v1/register/finish", tag = "auth",
    request_body = RegisterFinishRequest,
    responses((status = 201, body = TokenResponse),
              (status = 400, description = "malformed input or unknown registration", body = ErrorBody),
              (status = 409, description = "`username_taken`", body = ErrorBody)))]
pub async fn register_finish<S: Store>(
    State(state): State<AppState<S>>,
    ApiJson(req): ApiJson<RegisterFinishRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), AppError> {
    // Validate everything before consuming the single-use registration state.
    let bytes = opaque_message("registration_upload", &req.registration_upload)?;
    let upload = RegistrationUpload::<Cs>::deserialize(&bytes)
        .map_err(|_| bad_opaque("registration_upload"))?;
    let username_hash = req
        .username
        .as_deref()
        .map(|name| username::hash(&state.secrets().username_pepper, name))
        .transpose()
        .map_err(|e| AppError::bad_request("invalid_username", e.to_string()))?;
    let device = NewDevice::from_body(&req.device)?;
    if let Some(hash) = &username_hash
        && state.store().username_hash_taken(hash).await?
    {
        return Err(username_taken());
    }
    let now = now_i64();
    let account_id = state
        .store()
        .take_registration(&req.registration_id, now)
        .await?
        .ok_or_else(|| {
            AppError::bad_request("unknown_registration", "registration expired or unknown")
        })?;
    let record = ServerRegistration::<Cs>::finish(upload);
    let account = NewAccount {
        id: account_id,
        username_hash: username_hash.map(|h| h.to_vec()),
        opaque_record: record.serialize().to_vec(),
        created_at: now,
    };
    let device = DeviceRecord {
        id: Id::random(),
        account_id,
        identity_key: device.identity_key,
        name_blob: device.name_blob,
        created_at: now,
        number: 1,
    };
    state
        .store()
        .create_account(&account, &device)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => username_taken(),
            other => other.into(),
        })?;
    tracing::info!("account registered");
    let tokens = issue_session(&state, account_id, device.id).await?;
    Ok((StatusCode::CREATED, Json(tokens)))
}

fn username_taken() -> AppError {
    AppError::conflict("username_taken", "this username is already taken")
}

/// Creates a refresh family for the device and returns fresh tokens.
pub(crate) async fn issue_session<S: Store>(
    state: &AppState<S>,
    account: Id,
    device: Id,
) -> Result<TokenResponse, AppError> {
    let now = now_i64();
    let settings = state.settings();
    let family = FamilyRecord {
        id: Id::random(),
        account_id: account,
        device_id: device,
        revoked: false,
        created_at: now,
    };
    let refresh = RefreshToken::generate();
    let ttl = i64::try_from(settings.refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let record = RefreshTokenRecord {
        token_hash: refresh.hash(),
        family_id: family.id,
        created_at: now,
        expires_at: now.saturating_add(ttl),
        used_at: None,
    };
    state.store().create_family(&family, &record).await?;
    token_response(
        state,
        Session {
            account,
            device,
            family: family.id,
        },
        &refresh,
    )
    .await
}

async fn token_response<S: Store>(
    state: &AppState<S>,
    session: Session,
    refresh: &RefreshToken,
) -> Result<TokenResponse, AppError> {
    let device_number = state
        .store()
        .device(&session.account, &session.device)
        .await?
        .ok_or_else(|| {
            AppError::unauthorized("session_revoked", "this session is no longer valid")
        })?
        .number;
    let ttl = state.settings().access_token_ttl_secs;
    let access = tokens::sign_access(&state.secrets().jwt_key, &session, now_secs(), ttl)
        .map_err(AppError::internal)?;
    Ok(TokenResponse {
        account_id: session.account,
        device_id: session.device,
        device_number,
        access_token: access,
        refresh_token: refresh.encode(),
        token_type: "Bearer".to_owned(),
        expires_in: ttl,
    })
}

/// Starts a login. Unknown identifiers get OPAQUE's indistinguishable fake response.
#[utoipa::path(post, path = "/v1/login/start", tag = "auth",
    request_body = LoginStartRequest,
    responses((status = 200, body = LoginStartResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 429, description = "too many failed logins", body = ErrorBody)))]
pub async fn login_start<S: Store>(
    State(state): State<AppState<S>>,
    client: ClientKey,
    ApiJson(req): ApiJson<LoginStartRequest>,
) -> Result<Json<LoginStartResponse>, AppError> {
    let bytes = opaque_message("credential_request", &req.credential_request)?;
    let request = CredentialRequest::<Cs>::deserialize(&bytes)
        .map_err(|_| bad_opaque("credential_request"))?;
    let pepper = &state.secrets().username_pepper;
    // `identifier` keys the fake response for unknown accounts, so it is stable per identifier.
    let (account_id, identifier) = match (req.username.as_deref(), req.account_id) {
        (Some(name), None) => {
            let hash = username::hash(pepper, name)
                .map_err(|e| AppError::bad_request("invalid_username", e.to_string()))?;
            (
                state.store().account_by_username_hash(&hash).await?,
                hash.to_vec(),
            )
        }
        (None, Some(id)) => (Some(id), id.as_bytes().to_vec()),
        _ => {
            return Err(AppError::bad_request(
                "invalid_identifier",
                "give exactly one of username and account_id",
            ));
        }
    };
    let account = match account_id {
        Some(id) => state.store().account(&id).await?,
        None => None,
    };
    let password_file = account
        .as_ref()
        .map(|a| ServerRegistration::<Cs>::deserialize(&a.opaque_record))
        .transpose()
        .map_err(|_| AppError::internal("stored OPAQUE record does not decode"))?;
    let (credential_id, limit_subject) = match &account {
        Some(a) => (a.id.as_bytes().to_vec(), a.id.as_bytes().to_vec()),
        None => (identifier.clone(), identifier),
    };
    let limit_key = pepper.hmac(b"haven/login-limit/v1", &limit_subject);
    crate::limits::check_client(&state, &client).await?;
    crate::limits::check_login(&state, &limit_key).await?;
    let params = ServerLoginStartParameters {
        context: Some(OPAQUE_CONTEXT),
        ..Default::default()
    };
    let start = ServerLogin::start(
        &mut OsRng,
        &state.secrets().opaque_setup,
        password_file,
        request,
        &credential_id,
        params,
    )
    .map_err(|_| bad_opaque("credential_request"))?;
    let mut blob = limit_key.to_vec();
    blob.extend_from_slice(&start.state.serialize());
    let login_id = Id::random();
    let now = now_i64();
    state.store().purge_expired(now).await?;
    let login = LoginState {
        account_id: account.map(|a| a.id),
        state: SecretBytes::new(blob),
    };
    state
        .store()
        .put_login(&login_id, &login, now + AUTH_STATE_TTL_SECS)
        .await?;
    Ok(Json(LoginStartResponse {
        login_id,
        credential_response: b64(&start.message.serialize()),
    }))
}

/// Finishes a login: verifies KE3 (and TOTP if enabled) and issues tokens.
#[utoipa::path(post, path = "/v1/login/finish", tag = "auth",
    request_body = LoginFinishRequest,
    responses((status = 200, body = TokenResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`invalid_credentials`, `login_expired`, `totp_required`, `totp_invalid`", body = ErrorBody),
              (status = 404, description = "`device_not_found`", body = ErrorBody),
              (status = 409, description = "`device_limit`", body = ErrorBody),
              (status = 429, description = "too many failed logins", body = ErrorBody)))]
pub async fn login_finish<S: Store>(
    State(state): State<AppState<S>>,
    client: ClientKey,
    ApiJson(req): ApiJson<LoginFinishRequest>,
) -> Result<Json<TokenResponse>, AppError> {
    let bytes = opaque_message("credential_finalization", &req.credential_finalization)?;
    let finalization = CredentialFinalization::<Cs>::deserialize(&bytes)
        .map_err(|_| bad_opaque("credential_finalization"))?;
    enum Target {
        Existing(Id),
        New(NewDevice),
    }
    let target = match (req.device_id, &req.device) {
        (Some(id), None) => Target::Existing(id),
        (None, Some(body)) => Target::New(NewDevice::from_body(body)?),
        _ => {
            return Err(AppError::bad_request(
                "invalid_device",
                "give exactly one of device_id and device",
            ));
        }
    };
    crate::limits::check_client(&state, &client).await?;
    let now = now_i64();
    let login = state
        .store()
        .take_login(&req.login_id, now)
        .await?
        .ok_or_else(|| {
            AppError::unauthorized("login_expired", "login attempt expired or unknown")
        })?;
    let (limit_key, server_state) = login
        .state
        .expose()
        .split_at_checked(LIMIT_KEY_LEN)
        .ok_or_else(|| AppError::internal("stored login state too short"))?;
    crate::limits::check_login(&state, limit_key).await?;
    let verified = ServerLogin::<Cs>::deserialize(server_state)
        .map_err(|_| AppError::internal("stored login state does not decode"))?
        .finish(finalization)
        .is_ok();
    let account = match (verified, login.account_id) {
        (true, Some(id)) => state.store().account(&id).await?,
        _ => None,
    };
    let Some(account) = account else {
        crate::limits::record_failure(&state, limit_key, &client).await?;
        return Err(AppError::unauthorized(
            "invalid_credentials",
            "login failed",
        ));
    };
    if account.totp_enabled {
        let code = req
            .totp_code
            .as_deref()
            .ok_or_else(|| AppError::unauthorized("totp_required", "a TOTP code is required"))?;
        let secret = account
            .totp_secret
            .as_ref()
            .map(SecretBytes::expose)
            .unwrap_or_default();
        let claimed = match totp::matching_step(secret, code, now_secs()) {
            Some(step) => state.store().claim_totp_step(&account.id, step).await?,
            None => false,
        };
        if !claimed {
            crate::limits::record_failure(&state, limit_key, &client).await?;
            return Err(totp_invalid());
        }
    }
    let device_id = match target {
        Target::Existing(id) => {
            state
                .store()
                .device(&account.id, &id)
                .await?
                .ok_or_else(|| AppError::not_found("device_not_found", "no such device"))?
                .id
        }
        Target::New(device) => {
            let record = DeviceRecord {
                id: Id::random(),
                account_id: account.id,
                identity_key: device.identity_key,
                name_blob: device.name_blob,
                created_at: now,
                number: 0,
            };
            add_device(&state, &record).await?;
            record.id
        }
    };
    crate::limits::record_success(&state, limit_key).await?;
    Ok(Json(issue_session(&state, account.id, device_id).await?))
}

/// Inserts a device, mapping the limit to 409 `device_limit`.
pub(crate) async fn add_device<S: Store>(
    state: &AppState<S>,
    record: &DeviceRecord,
) -> Result<u32, AppError> {
    state
        .store()
        .create_device(record, state.settings().max_devices)
        .await
        .map_err(|e| match e {
            StoreError::LimitReached => AppError::conflict(
                "device_limit",
                format!(
                    "an account can have at most {} devices",
                    state.settings().max_devices
                ),
            ),
            other => other.into(),
        })
}

/// 401 `totp_invalid`.
pub(crate) fn totp_invalid() -> AppError {
    AppError::unauthorized("totp_invalid", "the TOTP code is wrong or was already used")
}

/// Rotates a refresh token. Presenting a spent token revokes the whole session.
#[utoipa::path(post, path = "/v1/token/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`invalid_token` or `refresh_reused`", body = ErrorBody)))]
pub async fn refresh<S: Store>(
    State(state): State<AppState<S>>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, AppError> {
    let invalid = || AppError::unauthorized("invalid_token", "the refresh token is not valid");
    let presented = RefreshToken::parse(&req.refresh_token).ok_or_else(invalid)?;
    let next = RefreshToken::generate();
    let now = now_i64();
    let ttl = i64::try_from(state.settings().refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let outcome = state
        .store()
        .rotate_refresh(
            &presented.hash(),
            &next.hash(),
            now,
            now.saturating_add(ttl),
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated(family) => {
            let session = Session {
                account: family.account_id,
                device: family.device_id,
                family: family.id,
            };
            Ok(Json(token_response(&state, session, &next).await?))
        }
        RefreshOutcome::Reused { account } => {
            tracing::warn!("spent refresh token presented; session revoked");
            crate::messaging::notify_sessions_changed(&state, account);
            Err(AppError::unauthorized(
                "refresh_reused",
                "this refresh token was already used; the session has been revoked",
            ))
        }
        _ => Err(invalid()),
    }
}

/// Ends the current session (its refresh family is revoked at once).
#[utoipa::path(post, path = "/v1/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "logged out"),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn logout<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<StatusCode, AppError> {
    state.store().revoke_family(&session.family).await?;
    crate::messaging::notify_sessions_changed(&state, session.account);
    Ok(StatusCode::NO_CONTENT)
}
