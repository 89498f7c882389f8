//! The one error type of the HTTP layer and the JSON extractor that reports in the same shape.
//!
//! Every error response is `{"error":{"code":"snake_case_code","message":"..."}}`. Client errors
//! (4xx) carry a stable machine-readable code and a human message; server errors (5xx) always say
//! `internal` and the cause is logged, never sent.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
