//! Registration, login (OPAQUE), token refresh, logout, fresh authentication and account
//! recovery (PROTOCOL.md §11.5–§11.7).

use crate::audit::{AuditDetail, AuditKind};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use haven_protocol::api::auth::{
    FRESH_AUTH_HEADER, FRESH_AUTH_TTL_SECS, FreshAuthResponse, LoginFinishRequest,
    LoginStartRequest, LoginStartResponse, ReauthFinishRequest, ReauthStartRequest,
    RecoverFinishRequest, RecoverStartRequest, RecoverStartResponse, RefreshRequest,
    RegisterFinishRequest, RegisterStartRequest, RegisterStartResponse, TokenResponse,
};
use haven_protocol::opaque::{HavenCipherSuite, OPAQUE_CONTEXT};
use opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload,
    ServerLogin, ServerLoginStartParameters, ServerRegistration,
};
use rand::rngs::OsRng;

use crate::accounts::credentials::CredentialChange;
use crate::accounts::routes::NewDevice;
use crate::accounts::session::Auth;
use crate::accounts::store::{
    AccountRecord, DeviceRecord, FamilyRecord, LoginPurpose, LoginState, NewAccount,
    RefreshOutcome, RefreshTokenRecord,
};
use crate::accounts::tokens;
use crate::accounts::tokens::{RefreshToken, Session};
use crate::accounts::{totp, username};
use crate::app::state::AppState;
use crate::client_addr::ClientKey;
use crate::clock::{now_i64, now_secs};
use crate::db::Store;
use crate::db::error::{SecretBytes, StoreError};
use crate::error::{ApiJson, AppError, ErrorBody};
use crate::http::{b64, decode_b64};
use crate::ids::Id;

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

pub(crate) async fn token_response<S: Store>(
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

/// The label of the per-account failure counter of password logins and re-authentications.
pub(crate) const LOGIN_LIMIT_LABEL: &[u8] = b"haven/login-limit/v1";
/// The label of the per-account failure counter of recovery logins.
const RECOVERY_LIMIT_LABEL: &[u8] = b"haven/recovery-limit/v1";
/// Appended to the account id to form the recovery credential's OPAQUE identifier (§11.6.3).
pub(crate) const RECOVERY_CREDENTIAL_SUFFIX: &[u8] = b"recovery";
/// Live fresh-authentication proofs an account may hold at once (older ones are dropped).
const MAX_FRESH_AUTH_PER_ACCOUNT: u32 = 8;

/// The OPAQUE credential identifier of an account's recovery code: its 16 id bytes followed by
/// ASCII `recovery` (for an unknown identifier, the identifier instead of the id).
pub(crate) fn recovery_credential_id(subject: &[u8]) -> Vec<u8> {
    [subject, RECOVERY_CREDENTIAL_SUFFIX].concat()
}

/// Resolves `username` / `account_id` (exactly one) to the account, if it exists, and the bytes
/// that key the fake OPAQUE response and the failure counter when it does not.
async fn resolve_identifier<S: Store>(
    state: &AppState<S>,
    username: Option<&str>,
    account_id: Option<Id>,
) -> Result<(Option<AccountRecord>, Vec<u8>), AppError> {
    let pepper = &state.secrets().username_pepper;
    // `identifier` keys the fake response for unknown accounts, so it is stable per identifier.
    let (account_id, identifier) = match (username, account_id) {
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
    let subject = account
        .as_ref()
        .map_or(identifier, |a| a.id.as_bytes().to_vec());
    Ok((account, subject))
}

/// Decodes a KE1.
fn credential_request(text: &str) -> Result<CredentialRequest<Cs>, AppError> {
    let bytes = opaque_message("credential_request", text)?;
    CredentialRequest::<Cs>::deserialize(&bytes).map_err(|_| bad_opaque("credential_request"))
}

/// Decodes a KE3.
fn credential_finalization(text: &str) -> Result<CredentialFinalization<Cs>, AppError> {
    let bytes = opaque_message("credential_finalization", text)?;
    CredentialFinalization::<Cs>::deserialize(&bytes)
        .map_err(|_| bad_opaque("credential_finalization"))
}

/// Decodes a stored OPAQUE record.
fn password_file(record: &[u8]) -> Result<ServerRegistration<Cs>, AppError> {
    ServerRegistration::<Cs>::deserialize(record)
        .map_err(|_| AppError::internal("stored OPAQUE record does not decode"))
}

/// The first OPAQUE round of a login, a re-authentication or a recovery: checks the limits,
/// answers KE1 (with OPAQUE's fake response when `file` is `None`) and stores the server state
/// under a new login id, tagged with its purpose.
#[allow(clippy::too_many_arguments)] // One call per purpose; a struct would only rename them.
async fn opaque_start<S: Store>(
    state: &AppState<S>,
    client: &ClientKey,
    purpose: LoginPurpose,
    account_id: Option<Id>,
    file: Option<ServerRegistration<Cs>>,
    credential_id: &[u8],
    limit_key: [u8; 32],
    request: CredentialRequest<Cs>,
) -> Result<LoginStartResponse, AppError> {
    crate::limits::check_client(state, client).await?;
    if let Err(err) = crate::limits::check_login(state, &limit_key).await {
        if matches!(err, AppError::RateLimited { .. }) {
            state
                .audit()
                .record(
                    AuditKind::LoginLockedOut,
                    account_id,
                    None,
                    AuditDetail::none(),
                )
                .await;
        }
        return Err(err);
    }
    let params = ServerLoginStartParameters {
        context: Some(OPAQUE_CONTEXT),
        ..Default::default()
    };
    let start = ServerLogin::start(
        &mut OsRng,
        &state.secrets().opaque_setup,
        file,
        request,
        credential_id,
        params,
    )
    .map_err(|_| bad_opaque("credential_request"))?;
    // Counted now, not at finish: KE2 alone tells the client whether its guess was right.
    crate::limits::record_attempt(state, &limit_key).await?;
    let mut blob = limit_key.to_vec();
    blob.extend_from_slice(&start.state.serialize());
    let login_id = Id::random();
    let now = now_i64();
    state.store().purge_expired(now).await?;
    let login = LoginState {
        account_id,
        purpose,
        state: SecretBytes::new(blob),
    };
    state
        .store()
        .put_login(&login_id, &login, now + AUTH_STATE_TTL_SECS)
        .await?;
    Ok(LoginStartResponse {
        login_id,
        credential_response: b64(&start.message.serialize()),
    })
}

/// The second OPAQUE round: consumes the login id (of this purpose, and of `expected` when
/// given, only), verifies KE3 and, if the account has TOTP enabled, the code. Every failure counts against the account's and the
/// client's limits. Returns the account and its limit key (the caller clears the count once it
/// has succeeded).
async fn opaque_finish<S: Store>(
    state: &AppState<S>,
    client: &ClientKey,
    purpose: LoginPurpose,
    expected: Option<Id>,
    login_id: &Id,
    finalization: CredentialFinalization<Cs>,
    totp_code: Option<&str>,
) -> Result<(AccountRecord, Vec<u8>), AppError> {
    crate::limits::check_client(state, client).await?;
    let now = now_i64();
    let expired = || AppError::unauthorized("login_expired", "login attempt expired or unknown");
    let login = state
        .store()
        .take_login(login_id, now)
        .await?
        .ok_or_else(expired)?;
    // Another purpose's run, or (re-authentication) a run for another account, proves nothing
    // here; it is refused before anything is verified or claimed.
    if login.purpose != purpose || expected.is_some_and(|id| login.account_id != Some(id)) {
        return Err(expired());
    }
    // The account's limit was checked, and this run counted, at start; a finish is only checked
    // against the client address's failures.
    let (limit_key, server_state) = login
        .state
        .expose()
        .split_at_checked(LIMIT_KEY_LEN)
        .ok_or_else(|| AppError::internal("stored login state too short"))?;
    let verified = ServerLogin::<Cs>::deserialize(server_state)
        .map_err(|_| AppError::internal("stored login state does not decode"))?
        .finish(finalization)
        .is_ok();
    let account = match (verified, login.account_id) {
        (true, Some(id)) => state.store().account(&id).await?,
        _ => None,
    };
    let Some(account) = account else {
        state
            .audit()
            .record(
                AuditKind::LoginFailed,
                login.account_id,
                None,
                AuditDetail::none().reason("invalid_credentials"),
            )
            .await;
        crate::limits::record_address_failure(state, client).await?;
        return Err(AppError::unauthorized(
            "invalid_credentials",
            "login failed",
        ));
    };
    if account.totp_enabled {
        let code = totp_code
            .ok_or_else(|| AppError::unauthorized("totp_required", "a TOTP code is required"))?;
        let opened = open_totp_secret(state, &account)?;
        let secret = opened.as_ref().map_or(&[][..], |o| &o.secret[..]);
        let claimed = match totp::matching_step(secret, code, now_secs()) {
            Some(step) => state.store().claim_totp_step(&account.id, step).await?,
            None => false,
        };
        if let (true, Some(opened), Some(stored)) = (claimed, &opened, &account.totp_secret) {
            totp::reseal_if_stale(
                state.store(),
                &state.secrets().totp,
                &account.id,
                stored.expose(),
                opened,
            )
            .await;
        }
        if !claimed {
            state
                .audit()
                .record(
                    AuditKind::LoginFailed,
                    Some(account.id),
                    None,
                    AuditDetail::none().reason("totp_invalid"),
                )
                .await;
            crate::limits::record_address_failure(state, client).await?;
            return Err(totp_invalid());
        }
    }
    // Only now, after the password (and TOTP) proved the user: a sanction is not revealed to
    // whoever merely knows the username (login/start answers as for any account).
    crate::moderation::routes::refuse_sanctioned_now(state, &account.id).await?;
    Ok((account, limit_key.to_vec()))
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
    let request = credential_request(&req.credential_request)?;
    let (account, subject) =
        resolve_identifier(&state, req.username.as_deref(), req.account_id).await?;
    let file = account
        .as_ref()
        .map(|a| password_file(&a.opaque_record))
        .transpose()?;
    let limit_key = state
        .secrets()
        .username_pepper
        .hmac(LOGIN_LIMIT_LABEL, &subject);
    let reply = opaque_start(
        &state,
        &client,
        LoginPurpose::Login,
        account.map(|a| a.id),
        file,
        &subject,
        limit_key,
        request,
    )
    .await?;
    Ok(Json(reply))
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
    let finalization = credential_finalization(&req.credential_finalization)?;
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
    let (account, limit_key) = opaque_finish(
        &state,
        &client,
        LoginPurpose::Login,
        None,
        &req.login_id,
        finalization,
        req.totp_code.as_deref(),
    )
    .await?;
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
                created_at: now_i64(),
                number: 0,
            };
            add_device(&state, &record).await?;
            record.id
        }
    };
    crate::limits::record_success(&state, &limit_key).await?;
    Ok(Json(issue_session(&state, account.id, device_id).await?))
}

/// Starts a re-authentication: an OPAQUE login of the session's own account with its password.
#[utoipa::path(post, path = "/v1/account/reauth/start", tag = "auth", security(("bearer" = [])),
    request_body = ReauthStartRequest,
    responses((status = 200, body = LoginStartResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "no valid session", body = ErrorBody),
              (status = 429, description = "too many failed logins", body = ErrorBody)))]
pub async fn reauth_start<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    client: ClientKey,
    ApiJson(req): ApiJson<ReauthStartRequest>,
) -> Result<Json<LoginStartResponse>, AppError> {
    let request = credential_request(&req.credential_request)?;
    let account = state
        .store()
        .account(&session.account)
        .await?
        .ok_or_else(session_revoked)?;
    let file = password_file(&account.opaque_record)?;
    let limit_key = state
        .secrets()
        .username_pepper
        .hmac(LOGIN_LIMIT_LABEL, account.id.as_bytes());
    let reply = opaque_start(
        &state,
        &client,
        LoginPurpose::Reauth,
        Some(account.id),
        Some(file),
        account.id.as_bytes(),
        limit_key,
        request,
    )
    .await?;
    Ok(Json(reply))
}

/// Finishes a re-authentication: verifies KE3 (and TOTP if enabled) and returns a single-use
/// fresh-authentication proof for this session.
#[utoipa::path(post, path = "/v1/account/reauth/finish", tag = "auth", security(("bearer" = [])),
    request_body = ReauthFinishRequest,
    responses((status = 200, body = FreshAuthResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`invalid_credentials`, `login_expired`, `totp_required`, `totp_invalid`, or no valid session", body = ErrorBody),
              (status = 429, description = "too many failed logins", body = ErrorBody)))]
pub async fn reauth_finish<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
    client: ClientKey,
    ApiJson(req): ApiJson<ReauthFinishRequest>,
) -> Result<Json<FreshAuthResponse>, AppError> {
    let finalization = credential_finalization(&req.credential_finalization)?;
    let (account, limit_key) = opaque_finish(
        &state,
        &client,
        LoginPurpose::Reauth,
        Some(session.account),
        &req.login_id,
        finalization,
        req.totp_code.as_deref(),
    )
    .await?;
    // Checked before verifying too; an account id is the run's, never the client's choice.
    if account.id != session.account {
        return Err(AppError::unauthorized(
            "login_expired",
            "login attempt expired or unknown",
        ));
    }
    crate::limits::record_success(&state, &limit_key).await?;
    let proof = RefreshToken::generate();
    let now = now_i64();
    let ttl = i64::try_from(FRESH_AUTH_TTL_SECS).unwrap_or(i64::MAX);
    state
        .store()
        .put_fresh_auth(
            &proof_hash(&proof)?,
            &session.account,
            &session.family,
            now.saturating_add(ttl),
            now,
            MAX_FRESH_AUTH_PER_ACCOUNT,
        )
        .await?;
    Ok(Json(FreshAuthResponse {
        fresh_auth: proof.encode(),
        expires_in: FRESH_AUTH_TTL_SECS,
    }))
}

/// SHA-256 of a proof: the only form the store keeps.
fn proof_hash(proof: &RefreshToken) -> Result<[u8; 32], AppError> {
    <[u8; 32]>::try_from(proof.hash().as_slice())
        .map_err(|_| AppError::internal("a SHA-256 digest is not 32 bytes"))
}

fn session_revoked() -> AppError {
    AppError::unauthorized("session_revoked", "this session is no longer valid")
}

/// A fresh-authentication proof presented with a request (the `Haven-Fresh-Auth` header), read
/// but not yet checked.
pub(crate) struct FreshAuth([u8; 32]);

impl FreshAuth {
    /// Reads the header: 403 `fresh_auth_required` when absent, `fresh_auth_invalid` when it is
    /// not a proof's wire form.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, AppError> {
        let value = headers.get(FRESH_AUTH_HEADER).ok_or_else(|| {
            AppError::client(
                StatusCode::FORBIDDEN,
                "fresh_auth_required",
                "this action needs a fresh authentication (account/reauth)",
            )
        })?;
        let proof = value
            .to_str()
            .ok()
            .and_then(RefreshToken::parse)
            .ok_or_else(fresh_auth_invalid)?;
        Ok(Self(proof_hash(&proof)?))
    }

    /// Checks the proof belongs to this session and is live, changing nothing (so a request
    /// refused later for another reason leaves the proof usable).
    pub(crate) async fn check<S: Store>(
        &self,
        state: &AppState<S>,
        session: &Session,
    ) -> Result<(), AppError> {
        if state
            .store()
            .fresh_auth_valid(&self.0, &session.account, &session.family, now_i64())
            .await?
        {
            Ok(())
        } else {
            Err(fresh_auth_invalid())
        }
    }

    /// Spends the proof (the last check before the action): a second request with it fails.
    pub(crate) async fn spend<S: Store>(
        self,
        state: &AppState<S>,
        session: &Session,
    ) -> Result<(), AppError> {
        if state
            .store()
            .take_fresh_auth(&self.0, &session.account, &session.family, now_i64())
            .await?
        {
            Ok(())
        } else {
            Err(fresh_auth_invalid())
        }
    }
}

fn fresh_auth_invalid() -> AppError {
    AppError::client(
        StatusCode::FORBIDDEN,
        "fresh_auth_invalid",
        "the fresh-authentication proof is unknown, expired, already used or of another session",
    )
}

/// Starts a recovery: an OPAQUE login with the recovery code (OPAQUE's fake response when the
/// account is unknown or has no recovery code) and the first round of the new password.
#[utoipa::path(post, path = "/v1/recover/start", tag = "auth",
    request_body = RecoverStartRequest,
    responses((status = 200, body = RecoverStartResponse),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 429, description = "too many failed recoveries", body = ErrorBody)))]
pub async fn recover_start<S: Store>(
    State(state): State<AppState<S>>,
    client: ClientKey,
    ApiJson(req): ApiJson<RecoverStartRequest>,
) -> Result<Json<RecoverStartResponse>, AppError> {
    let request = credential_request(&req.credential_request)?;
    let registration = registration_request(&req.registration_request)?;
    let (account, subject) =
        resolve_identifier(&state, req.username.as_deref(), req.account_id).await?;
    let file = match &account {
        Some(a) => state
            .store()
            .recovery_record(&a.id)
            .await?
            .map(|r| password_file(&r))
            .transpose()?,
        None => None,
    };
    let registration_response =
        ServerRegistration::<Cs>::start(&state.secrets().opaque_setup, registration, &subject)
            .map_err(|_| bad_opaque("registration_request"))?;
    let limit_key = state
        .secrets()
        .username_pepper
        .hmac(RECOVERY_LIMIT_LABEL, &subject);
    let start = opaque_start(
        &state,
        &client,
        LoginPurpose::Recovery,
        account.map(|a| a.id),
        file,
        &recovery_credential_id(&subject),
        limit_key,
        request,
    )
    .await?;
    Ok(Json(RecoverStartResponse {
        login_id: start.login_id,
        credential_response: start.credential_response,
        registration_response: b64(&registration_response.message.serialize()),
    }))
}

/// Finishes a recovery: verifies the recovery login (and TOTP if enabled), then replaces the
/// password, ends every session and removes the used recovery code.
#[utoipa::path(post, path = "/v1/recover/finish", tag = "auth",
    request_body = RecoverFinishRequest,
    responses((status = 204, description = "password replaced; every session ended"),
              (status = 400, description = "malformed input", body = ErrorBody),
              (status = 401, description = "`invalid_credentials`, `login_expired`, `totp_required`, `totp_invalid`", body = ErrorBody),
              (status = 429, description = "too many failed recoveries", body = ErrorBody)))]
pub async fn recover_finish<S: Store>(
    State(state): State<AppState<S>>,
    client: ClientKey,
    ApiJson(req): ApiJson<RecoverFinishRequest>,
) -> Result<StatusCode, AppError> {
    let finalization = credential_finalization(&req.credential_finalization)?;
    let upload = registration_upload(&req.registration_upload)?;
    let (account, limit_key) = opaque_finish(
        &state,
        &client,
        LoginPurpose::Recovery,
        None,
        &req.login_id,
        finalization,
        req.totp_code.as_deref(),
    )
    .await?;
    let change = CredentialChange {
        opaque_record: ServerRegistration::<Cs>::finish(upload)
            .serialize()
            .to_vec(),
        clear_recovery: true,
        new_session: None,
    };
    if !state
        .store()
        .replace_credentials(&account.id, &change)
        .await?
    {
        return Err(AppError::unauthorized(
            "invalid_credentials",
            "login failed",
        ));
    }
    crate::limits::record_success(&state, &limit_key).await?;
    // The password's failure count starts afresh too: the owner is about to log in with it.
    let login_key = state
        .secrets()
        .username_pepper
        .hmac(LOGIN_LIMIT_LABEL, account.id.as_bytes());
    crate::limits::record_success(&state, &login_key).await?;
    tracing::info!("account recovered; sessions revoked");
    state.hub().notify_sessions_changed(account.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Decodes a `RegistrationRequest`.
pub(crate) fn registration_request(text: &str) -> Result<RegistrationRequest<Cs>, AppError> {
    let bytes = opaque_message("registration_request", text)?;
    RegistrationRequest::<Cs>::deserialize(&bytes).map_err(|_| bad_opaque("registration_request"))
}

/// Decodes a `RegistrationUpload`.
pub(crate) fn registration_upload(text: &str) -> Result<RegistrationUpload<Cs>, AppError> {
    let bytes = opaque_message("registration_upload", text)?;
    RegistrationUpload::<Cs>::deserialize(&bytes).map_err(|_| bad_opaque("registration_upload"))
}

/// Ends every session of the account, this one included (logout everywhere).
#[utoipa::path(post, path = "/v1/logout/all", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "every session of the account ended"),
              (status = 401, description = "no valid session", body = ErrorBody)))]
pub async fn logout_all<S: Store>(
    State(state): State<AppState<S>>,
    Auth(session): Auth,
) -> Result<StatusCode, AppError> {
    state.store().revoke_sessions(&session.account).await?;
    state.hub().notify_sessions_changed(session.account);
    Ok(StatusCode::NO_CONTENT)
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

/// The account's stored TOTP secret, opened (`accounts::totp::open`); `None` when it has none.
/// One that does not open (unknown key, corrupt, another account's) is a 500 whose cause is
/// logged.
pub(crate) fn open_totp_secret<S: Store>(
    state: &AppState<S>,
    account: &AccountRecord,
) -> Result<Option<totp::Opened>, AppError> {
    account
        .totp_secret
        .as_ref()
        .map(|stored| {
            totp::open(&state.secrets().totp, &account.id, stored.expose())
                .map_err(|err| AppError::internal(err.to_string()))
        })
        .transpose()
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
            // A sanctioned account gets no new token: the rotated family is ended, so the
            // session is over (a banned account's sessions were already revoked).
            if let Err(err) =
                crate::moderation::routes::refuse_sanctioned_now(&state, &family.account_id).await
            {
                state.store().revoke_family(&family.id).await?;
                return Err(err);
            }
            let session = Session {
                account: family.account_id,
                device: family.device_id,
                family: family.id,
            };
            Ok(Json(token_response(&state, session, &next).await?))
        }
        RefreshOutcome::Reused { account } => {
            tracing::warn!("spent refresh token presented; session revoked");
            state
                .audit()
                .record(
                    AuditKind::RefreshTokenReused,
                    Some(account),
                    None,
                    AuditDetail::none(),
                )
                .await;
            state.hub().notify_sessions_changed(account);
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
    state.hub().notify_sessions_changed(session.account);
    Ok(StatusCode::NO_CONTENT)
}
