//! The accounts feature's HTTP handlers.

pub mod account;
pub mod auth;
pub mod certificate;
pub mod devices;
pub mod identity;
pub mod usernames;

use haven_protocol::api::auth::NewDeviceBody;

use crate::error::AppError;
use crate::http::decode_b64;

/// Maximum bytes of a device's public identity key.
pub const MAX_IDENTITY_KEY_LEN: usize = 2048;
/// Maximum bytes of a device's encrypted name.
pub const MAX_DEVICE_NAME_LEN: usize = 1024;

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
