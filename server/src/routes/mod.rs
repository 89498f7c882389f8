//! HTTP handlers. Their request and response bodies are `haven_protocol::api` (shared with the
//! clients); the handlers decode and validate what those bodies carry.

pub mod account;
pub mod auth;
pub mod blobs;
pub mod certificate;
pub mod devices;
pub mod health;
pub mod identity;
pub mod keys;
pub mod messages;
pub mod usernames;
pub mod vault;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::auth::NewDeviceBody;

use crate::error::AppError;
use crate::ids::Id;

/// Maximum bytes of a device's public identity key.
pub const MAX_IDENTITY_KEY_LEN: usize = 2048;
/// Maximum bytes of a device's encrypted name.
pub const MAX_DEVICE_NAME_LEN: usize = 1024;

/// Decodes a standard-base64 field, enforcing `1..=max` decoded bytes.
pub(crate) fn decode_b64(field: &'static str, text: &str, max: usize) -> Result<Vec<u8>, AppError> {
    // Reject before decoding anything absurdly long (4 chars per 3 bytes, plus padding).
    if text.len() > max.div_ceil(3) * 4 {
        return Err(AppError::bad_request(
            "field_too_large",
            format!("{field} is too large"),
        ));
    }
    let bytes = STANDARD.decode(text).map_err(|_| {
        AppError::bad_request("invalid_base64", format!("{field} is not valid base64"))
    })?;
    if bytes.len() > max {
        return Err(AppError::bad_request(
            "field_too_large",
            format!("{field} is over {max} bytes"),
        ));
    }
    if bytes.is_empty() {
        return Err(AppError::bad_request(
            "invalid_length",
            format!("{field} must not be empty"),
        ));
    }
    Ok(bytes)
}

/// Standard base64 with padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A validated [`NewDeviceBody`].
pub(crate) struct NewDevice {
    pub(crate) identity_key: Vec<u8>,
    pub(crate) name_blob: Option<Vec<u8>>,
}

impl NewDevice {
    /// Decodes and size-checks a device's fields.
    pub(crate) fn from_body(body: &NewDeviceBody) -> Result<Self, AppError> {
        Ok(Self {
            identity_key: decode_b64("identity_key", &body.identity_key, MAX_IDENTITY_KEY_LEN)?,
            name_blob: body
                .name
                .as_deref()
                .map(|n| decode_b64("name", n, MAX_DEVICE_NAME_LEN))
                .transpose()?,
        })
    }
}

/// Parses an id from a path segment.
pub(crate) fn path_id(text: &str) -> Result<Id, AppError> {
    text.parse()
        .map_err(|_| AppError::bad_request("invalid_id", "ids are 32 lowercase hex digits"))
}
