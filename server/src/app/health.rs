//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use haven_protocol::api::health::StatusBody;

use crate::app::state::AppState;
use crate::db::Store;
use crate::error::AppError;

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "alive", body = StatusBody)))]
pub async fn health() -> Json<StatusBody> {
    Json(StatusBody {
        status: "ok".to_owned(),
    })
}

/// Readiness: the database (and Redis, if configured) answer.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "ready", body = StatusBody),
              (status = 503, description = "a dependency is down", body = crate::error::ErrorBody)))]
pub async fn ready<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<StatusBody>, AppError> {
    if let Err(err) = state.store().ping().await {
        tracing::warn!(%err, "readiness: database ping failed");
        return Err(AppError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "database unavailable",
        ));
    }
    if !state.limits().ping().await {
        return Err(AppError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "redis unavailable",
        ));
    }
    Ok(Json(StatusBody {
        status: "ready".to_owned(),
    }))
}
