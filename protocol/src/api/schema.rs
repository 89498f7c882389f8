//! OpenAPI schemas of the encoded strings the API bodies carry (feature `openapi`), used through
//! `#[schema(schema_with = …)]`: each pattern admits exactly the strings the relay decodes, so a
//! client generator that follows the document makes no request the relay refuses as malformed.
//!
//! Base64 is the standard alphabet with padding and canonical trailing bits (`docs/PROTOCOL.md`
//! §11.1): the last character before `=` has its unused low bits clear. The relay's contract
//! test (`server/tests/relay/contract.rs`) checks every pattern against the relay's decoder.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};

/// Characters of standard base64.
const B64: &str = "[A-Za-z0-9+/]";
/// Characters of base64url.
const B64URL: &str = "[A-Za-z0-9_-]";
/// A last character with its 2 low bits clear (before one `=`, or ending unpadded base64 of a
/// length ≡ 2 mod 3).
const LAST_OF_3: &str = "[AEIMQUYcgkosw048]";
/// A last character with its 4 low bits clear (before `==`).
const LAST_OF_2: &str = "[AQgw]";

fn string(pattern: String, min: usize, max: usize, description: String) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .into()
}

/// Standard base64 of exactly `n` bytes (`n` ≥ 1).
fn base64_exact(n: usize) -> RefOr<Schema> {
    let (groups, rest) = (n / 3, n % 3);
    let tail = match rest {
        0 => String::new(),
        1 => format!("{B64}{LAST_OF_2}=="),
        _ => format!("{B64}{{2}}{LAST_OF_3}="),
    };
    let len = n.div_ceil(3) * 4;
    string(
        format!("^{B64}{{{}}}{tail}$", groups * 4),
        len,
        len,
        format!("standard base64 of {n} bytes"),
    )
}

/// Standard base64 of 1 to about `max` bytes: at most `max` rounded down to whole 3-byte groups
/// when `max` is not one (the schema promises no more than the relay accepts).
fn base64_up_to(max: usize) -> RefOr<Schema> {
    let max_len = (max / 3) * 4;
    let groups = max_len / 4;
    let last = format!("(?:{B64}{{4}}|{B64}{{2}}{LAST_OF_3}=|{B64}{LAST_OF_2}==)");
    string(
        format!("^(?:{B64}{{4}}){{0,{}}}{last}$", groups.saturating_sub(1)),
        4,
        max_len,
        format!("standard base64 of 1 to {max} bytes"),
    )
}

/// Unpadded base64url of 32 bytes (refresh tokens, tickets, fresh-authentication proofs,
/// channel tokens).
pub(crate) fn token_32() -> RefOr<Schema> {
    string(
        format!("^{B64URL}{{42}}{LAST_OF_3}$"),
        43,
        43,
        "unpadded base64url of 32 bytes".to_owned(),
    )
}

/// A TOTP code: 6 decimal digits.
pub(crate) fn totp_code() -> RefOr<Schema> {
    string("^[0-9]{6}$".to_owned(), 6, 6, "6 decimal digits".to_owned())
}

/// A username: 3 to 32 of `a-z 0-9 . _ -` (ASCII letters in any case; compared lowercased).
pub(crate) fn username() -> RefOr<Schema> {
    string(
        "^[A-Za-z0-9._-]{3,32}$".to_owned(),
        3,
        32,
        "3 to 32 of a-z 0-9 . _ - (ASCII case-insensitive)".to_owned(),
    )
}

/// OPAQUE `RegistrationRequest` (32 bytes).
pub(crate) fn opaque_registration_request() -> RefOr<Schema> {
    base64_exact(32)
}

/// OPAQUE `RegistrationUpload` (192 bytes).
pub(crate) fn opaque_registration_upload() -> RefOr<Schema> {
    base64_exact(192)
}

/// OPAQUE `CredentialRequest`, KE1 (96 bytes).
pub(crate) fn opaque_credential_request() -> RefOr<Schema> {
    base64_exact(96)
}

/// OPAQUE `CredentialFinalization`, KE3 (64 bytes).
pub(crate) fn opaque_credential_finalization() -> RefOr<Schema> {
    base64_exact(64)
}

/// A device's public identity key (1 to 2048 bytes, opaque to the relay).
pub(crate) fn identity_key() -> RefOr<Schema> {
    base64_up_to(2048)
}

/// An encrypted device name (1 to 1024 bytes, opaque to the relay).
pub(crate) fn device_name() -> RefOr<Schema> {
    base64_up_to(1024)
}

/// 32 bytes (link tokens, franking commitments).
pub(crate) fn bytes_32() -> RefOr<Schema> {
    base64_exact(32)
}

/// A sealed-sender access key (16 bytes).
pub(crate) fn access_key() -> RefOr<Schema> {
    base64_exact(16)
}

/// Standard base64 of at least 1 byte (the upper bound is a relay setting or another field's).
pub(crate) fn base64_nonempty() -> RefOr<Schema> {
    let last = format!("(?:{B64}{{4}}|{B64}{{2}}{LAST_OF_3}=|{B64}{LAST_OF_2}==)");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^(?:{B64}{{4}})*{last}$")))
        .min_length(Some(4))
        .description(Some("standard base64 of at least 1 byte"))
        .into()
}

/// 64 bytes (identity signatures).
pub(crate) fn bytes_64() -> RefOr<Schema> {
    base64_exact(64)
}

/// A nullable field: `schema` or `null`.
fn or_null(schema: RefOr<Schema>) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            object.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
            RefOr::T(Schema::Object(object))
        }
        other => other,
    }
}

/// A sealed-sender access key (16 bytes), or `null` to remove it.
pub(crate) fn access_key_or_null() -> RefOr<Schema> {
    or_null(base64_exact(16))
}

/// An encrypted device name (1 to 1024 bytes), or `null` to clear it.
pub(crate) fn device_name_or_null() -> RefOr<Schema> {
    or_null(base64_up_to(1024))
}

/// Public-key sizes of the key directory (§2): X25519 and ML-KEM-1024.
const X25519_LEN: usize = 32;
const KEM_LEN: usize = 1568;

/// Standard base64 of exactly one of `sizes` bytes.
fn base64_one_of(sizes: &[usize]) -> RefOr<Schema> {
    let mut patterns = Vec::new();
    let mut lengths = Vec::new();
    for n in sizes {
        if let RefOr::T(Schema::Object(o)) = base64_exact(*n)
            && let Some(p) = o.pattern
        {
            patterns.push(p.trim_start_matches('^').trim_end_matches('$').to_owned());
            lengths.push(n.div_ceil(3) * 4);
        }
    }
    let list: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    string(
        format!("^(?:{})$", patterns.join("|")),
        lengths.iter().copied().min().unwrap_or(0),
        lengths.iter().copied().max().unwrap_or(0),
        format!("standard base64 of {} bytes", list.join(" or ")),
    )
}

/// A public key of the key directory as served: 32 (X25519) or 1568 (ML-KEM-1024) bytes.
pub(crate) fn directory_key() -> RefOr<Schema> {
    base64_one_of(&[X25519_LEN, KEM_LEN])
}

/// A `SignedKeyBody` whose public key has `len` bytes (the upload states which key is which).
fn signed_key(len: usize, what: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!("a signed {what} public key")))
        .property(
            "key_id",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(0)),
        )
        .required("key_id")
        .property("public_key", base64_exact(len))
        .required("public_key")
        .property("signature", base64_exact(64))
        .required("signature")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// The signed X25519 prekey of an upload.
pub(crate) fn signed_x25519_key() -> RefOr<Schema> {
    signed_key(X25519_LEN, "X25519").into()
}

/// A signed ML-KEM-1024 prekey of an upload.
pub(crate) fn signed_kem_key() -> RefOr<Schema> {
    signed_key(KEM_LEN, "ML-KEM-1024").into()
}

/// The one-time ML-KEM-1024 prekeys of an upload.
pub(crate) fn signed_kem_keys() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(signed_key(KEM_LEN, "ML-KEM-1024"))
        .into()
}
