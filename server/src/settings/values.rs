//! The value types of the settings: errors, secrets and connection URLs (a leaf module, so a
//! feature's own settings section can use them).

use std::fmt;

use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Errors while loading settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file: {0}")]
    Read(#[source] std::io::Error),
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file: {0}")]
    Toml(#[source] Box<figment::Error>),
    /// An environment variable had an unparsable value; carries the variable name (not the
    /// value, which may be a secret).
    #[error("invalid value in environment variable {0}")]
    Env(String),
    /// A value is out of its allowed range; carries the setting name.
    #[error("setting {0} is out of range")]
    Range(&'static str),
}

/// A secret setting (base64 text): zeroized on drop, redacted in `Debug`, never serialized.
#[derive(Clone, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretSetting(String);

impl SecretSetting {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A URL that may carry a password: `Debug` shows only the scheme.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split(':').next().unwrap_or("");
        write!(f, "{scheme}:[redacted]")
    }
}

/// A list (origins, hosts): a TOML array, or one comma-separated string (as an environment variable
/// gives it), whose items are trimmed and empty ones dropped.
pub(crate) fn list_or_commas<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Commas(String),
        Items(Vec<String>),
    }
    Ok(match List::deserialize(deserializer)? {
        List::Items(items) => items,
        List::Commas(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}
