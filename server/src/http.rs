//! Helpers every feature's HTTP handlers share: base64 fields and ids in paths. Request and
//! response bodies are `haven_protocol::api` (shared with the clients); the handlers decode and
//! validate what those bodies carry.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::AppError;
use crate::ids::Id;

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

/// Parses an id from a path segment.
pub(crate) fn path_id(text: &str) -> Result<Id, AppError> {
    text.parse()
        .map_err(|_| AppError::bad_request("invalid_id", "ids are 32 lowercase hex digits"))
}
