//! Liveness and readiness (`docs/PROTOCOL.md` §11.10).

use serde::{Deserialize, Serialize};

/// Health or readiness status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusBody {
    /// `ok` or `ready`.
    pub status: String,
}
