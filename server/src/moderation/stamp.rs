//! The relay's part of franking at delivery (PROTOCOL.md §16.4), shared by mailboxes and
//! channels: reading a writer's commitment from a request and stamping it when the envelope or
//! entry is handed out.

use haven_protocol::frames::Franking;
use haven_protocol::franking::Destination;
use haven_protocol::franking::verify::{StampKey, delivery_stamp};

use crate::error::AppError;
use crate::http::decode_b64;

/// Decodes a request's `franking_commitment` field: base64 of exactly 32 bytes (400
/// `invalid_franking_commitment` otherwise, before anything is stored).
///
/// # Errors
/// A field that is not base64 or not 32 bytes long.
pub fn decode_commitment(field: Option<&str>) -> Result<Option<[u8; 32]>, AppError> {
    field
        .map(|text| {
            let invalid = || {
                AppError::bad_request(
                    "invalid_franking_commitment",
                    "franking_commitment must be base64 of 32 bytes",
                )
            };
            let bytes = decode_b64("franking_commitment", text, 32).map_err(|_| invalid())?;
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| invalid())
        })
        .transpose()
}

/// The franking of an envelope or entry as delivered to `destination`: its commitment and the
/// relay's stamp `s = HMAC(K_stamp, label || c || D || seq || time)`. `None` for one stored
/// without a commitment. A negative `seq` or time (never stored) stamps as 0.
#[must_use]
pub fn stamped(
    key: &StampKey,
    commitment: Option<&[u8; 32]>,
    destination: &Destination,
    seq: i64,
    time: i64,
) -> Option<Franking> {
    let commitment = commitment?;
    let stamp = delivery_stamp(
        key,
        commitment,
        destination,
        u64::try_from(seq).unwrap_or(0),
        u64::try_from(time).unwrap_or(0),
    );
    Some(Franking {
        commitment: *commitment,
        stamp,
    })
}
