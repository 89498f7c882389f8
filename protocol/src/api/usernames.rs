//! Username lookup (`docs/PROTOCOL.md` §11.4).

use serde::{Deserialize, Serialize};

use super::Id;

/// Body of `POST /v1/usernames/lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The username as typed (normalised by the relay as at registration).
    #[cfg_attr(feature = "openapi", schema(schema_with = super::schema::username))]
    pub username: String,
}

/// Reply of `POST /v1/usernames/lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LookupResponse {
    /// The account that registered the username.
    pub account_id: Id,
}
