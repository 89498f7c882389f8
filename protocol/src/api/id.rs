//! Random 16-byte identifiers, written as 32 lowercase hex digits in JSON and URLs
//! (`docs/PROTOCOL.md` §11.1).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of every identifier in bytes.
pub const ID_LEN: usize = 16;

/// A random 16-byte identifier (accounts, devices, token families, login attempts).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; ID_LEN]);

/// Errors from parsing an [`Id`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The input did not have exactly 16 bytes (32 hex digits); carries the length seen.
    #[error("identifier must be 16 bytes, got {0}")]
    Length(usize),
    /// The input was not lowercase hex.
    #[error("identifier must be lowercase hex")]
    Encoding,
}

impl Id {
    /// A fresh random identifier from the OS RNG.
    #[cfg(feature = "random")]
    #[must_use]
    pub fn random() -> Self {
        use rand_core::RngCore as _;
        let mut bytes = [0u8; ID_LEN];
        rand_core::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Builds an id from raw bytes (checks the length).
    ///
    /// # Errors
    /// [`IdError::Length`] unless `bytes` has exactly [`ID_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        <[u8; ID_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| IdError::Length(bytes.len()))
    }

    /// Lowercase hex form (32 characters).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; ID_LEN]> for Id {
    fn from(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }
}

impl From<Id> for [u8; ID_LEN] {
    fn from(id: Id) -> Self {
        id.0
    }
}

impl FromStr for Id {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != ID_LEN * 2 {
            return Err(IdError::Length(s.len() / 2));
        }
        // Only lowercase is canonical, so one id has exactly one spelling.
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(IdError::Encoding);
        }
        let bytes = hex::decode(s).map_err(|_| IdError::Encoding)?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.to_hex())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{32}$"))
            .description(Some("16 random bytes as 32 lowercase hex digits"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Id {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let id = Id::from([0xa5; ID_LEN]);
        assert_eq!(id.to_hex(), "a5".repeat(16));
        assert_eq!(id.to_hex().parse::<Id>(), Ok(id));
        assert_eq!("ab".parse::<Id>(), Err(IdError::Length(1)));
        assert_eq!("AB".repeat(16).parse::<Id>(), Err(IdError::Encoding));
        assert_eq!("zz".repeat(16).parse::<Id>(), Err(IdError::Encoding));
        assert_eq!(Id::from_slice(&[0u8; 15]), Err(IdError::Length(15)));
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", "a5".repeat(16))
        );
        assert!(serde_json::from_str::<Id>(&format!("\"{}\"", "A5".repeat(16))).is_err());
    }

    #[cfg(feature = "random")]
    #[test]
    fn random_ids_differ() {
        assert_ne!(Id::random(), Id::random());
    }
}
