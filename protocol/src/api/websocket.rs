//! The WebSocket's HTTP side: tickets and the upgrade's query (`docs/PROTOCOL.md` §11.14); the
//! frames themselves are [`crate::frames`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Reply to `POST /v1/ws/ticket`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketResponse {
    /// Single-use ticket: base64url of 32 random bytes, no padding (43 characters).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::token_32))]
    pub ticket: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

// The ticket opens a socket as the session's device: never printed.
impl fmt::Debug for TicketResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Query of `GET /v1/ws`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    /// A ticket from `POST /v1/ws/ticket` (instead of `Authorization`).
    pub ticket: Option<String>,
}

// The ticket opens a socket as the session's device: never printed.
impl fmt::Debug for WsQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsQuery")
            .field("ticket", &self.ticket.as_ref().map(|_| "…"))
            .finish()
    }
}
