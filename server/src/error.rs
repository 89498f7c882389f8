//! The one error type of the HTTP layer and the JSON extractor that reports in the same shape.
//!
//! Every error response is `{"error":{"code":"snake_case_code","message":"..."}}`. Client errors
//! (4xx) carry a stable machine-readable code and a human message; server errors (5xx) always say
//! `internal` and the cause is logged, never sent.
//!
//! The handlers take their inputs through [`ApiJson`], [`ApiPath`] and [`ApiQuery`], whose
//! rejections are [`AppError`]s; [`json_errors`] rewrites whatever error still leaves the router
//! in another shape (a timeout, a body limit on a raw body, a 405 of a merged router) into the
//! same format, so no response of the relay has any other error body.

use std::borrow::Cow;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::error::StoreError;

pub use haven_protocol::api::error::{DeviceMismatch, ErrorBody, ErrorDetail};

/// An error an endpoint returns; converts into the JSON error response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A 4xx error with a stable code (e.g. `invalid_json`) and a human message.
    #[error("{status} {code}: {message}")]
    Client {
        /// The HTTP status (always 4xx).
        status: StatusCode,
        /// Stable snake_case code clients can match on.
        code: &'static str,
        /// Human-readable explanation (never contains secrets or user data).
        message: Cow<'static, str>,
    },
    /// 429: too many requests or attempts; `Retry-After` is set from the duration.
    #[error("rate limited for {retry_after:?}")]
    RateLimited {
        /// How long the client should wait.
        retry_after: Duration,
    },
    /// A 409 `mismatched_devices` or 410 `stale_devices`: the device list of a send does not
    /// match the recipient's devices; the body lists the differences per account.
    #[error("{status} {code}: device list mismatch")]
    Devices {
        /// 409 or 410.
        status: StatusCode,
        /// `mismatched_devices` or `stale_devices`.
        code: &'static str,
        /// The differences, one entry per recipient account that has any.
        mismatches: Vec<DeviceMismatch>,
    },
    /// A 500: the cause is logged, the client only sees `internal`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A 4xx error.
    pub fn client(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::Client {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with the given code.
    pub fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 404 with the given code.
    pub fn not_found(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with the given code.
    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::CONFLICT, code, message)
    }

    /// A 500 whose cause is logged (the cause must not contain secrets).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Client { status, .. } => *status,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Devices { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code this error reports.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Client { code, .. } => code,
            Self::RateLimited { .. } => "rate_limited",
            Self::Devices { code, .. } => code,
            Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => Self::conflict("conflict", "the resource already exists"),
            StoreError::LimitReached => {
                Self::conflict("limit_reached", "a configured limit was reached")
            }
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Client { message, .. } => message.to_string(),
            Self::RateLimited { .. } => "too many requests; retry later".to_owned(),
            Self::Devices { status, .. } if *status == StatusCode::GONE => {
                "some listed devices were removed; drop them and retry".to_owned()
            }
            Self::Devices { .. } => {
                "the device list does not match the recipient's devices".to_owned()
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "internal server error".to_owned()
            }
        };
        let mismatches = match &self {
            Self::Devices { mismatches, .. } => Some(mismatches.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                mismatches,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::RateLimited { retry_after } = self {
            // Round up so a client that waits exactly this long is allowed again.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// `axum::Json` whose rejections are reported as [`AppError`]s (400 `invalid_json`,
/// 413 `payload_too_large`, 415 `unsupported_media_type`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> AppError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body exceeds the configured limit",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        _ => AppError::bad_request("invalid_json", rejection.body_text()),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejections are reported as [`AppError`]s (400 `invalid_path`:
/// a segment that is not valid UTF-8 or does not parse as the parameter's type).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> AppError {
    // A 5xx path rejection is a route declared without the parameter its handler reads: a bug.
    if rejection.status().is_server_error() {
        AppError::internal(rejection.body_text())
    } else {
        AppError::bad_request("invalid_path", rejection.body_text())
    }
}

/// `axum::extract::Query` whose rejections are reported as [`AppError`]s (400 `invalid_query`:
/// a missing, unknown or malformed query parameter).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> AppError {
    AppError::bad_request("invalid_query", rejection.body_text())
}

/// The stable code of an error response that did not come from an [`AppError`] (a rejection of
/// a layer: timeout, body limit, method not allowed), by status.
fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal",
        _ => "client_error",
    }
}

/// The longest plain-text rejection message kept as the JSON error's message.
const MAX_REJECTION_TEXT: usize = 1024;

/// Middleware (outermost but for the security headers): an error response (4xx/5xx) whose body is
/// not JSON is rewritten into the JSON error format with a code chosen by its status. A
/// plain-text 4xx body (axum's rejection text) becomes the message; 5xx bodies are never passed
/// on. Status and headers (`Allow`, `Retry-After`, ...) are kept.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let is_text = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let text = if is_text && status.is_client_error() {
        axum::body::to_bytes(body, MAX_REJECTION_TEXT)
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .filter(|t| !t.trim().is_empty())
    } else {
        None
    };
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase()
    });
    let body = ErrorBody {
        error: ErrorDetail {
            code: status_code_name(status).to_owned(),
            message,
            mismatches: None,
        },
    };
    let Ok(bytes) = serde_json::to_vec(&body) else {
        return Response::from_parts(parts, Body::empty());
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}
