//! The one error type of the bindings.
//!
//! A flat error: each variant is its own exception class in the host language (`HavenError.
//! WrongPassword` in Python, `HavenException.WrongPassword` in Kotlin, `HavenError.
//! WrongPassword` in Swift) carrying the message below; fields are not exported, so messages
//! carry the useful facts (relay error codes, which argument was malformed) and never a secret
//! or a plaintext.

use haven_client::attachments::AttachmentsError;
use haven_client::diary::LocalDiaryError;
use haven_client::{
    ClientStoreError, DeviceError, DiaryClientError, MessengerError, RelayError, ReportError,
};
use haven_sdk::DiaryError;
use haven_sdk::diary::EntryError;

/// Everything a call into the SDK can fail with.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
#[non_exhaustive]
pub enum HavenError {
    /// An argument is malformed: an id that is not 32 hex digits, a key of the wrong length,
    /// bad hex or base64, an empty message, a field over its limit, a relay URL that is not
    /// http(s).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The account id or username is not a contact of this device (or does not exist on the
    /// relay).
    #[error("unknown contact: {0}")]
    UnknownContact(String),
    /// No such group, message or diary entry.
    #[error("not found: {0}")]
    NotFound(String),
    /// The account password or the diary password is wrong.
    #[error("wrong password")]
    WrongPassword,
    /// The storage key does not open this store (another key, or another passphrase).
    #[error("wrong storage key for this store")]
    WrongStorageKey,
    /// The recovery code is malformed or opens no recovery slot.
    #[error("wrong or malformed recovery code")]
    WrongRecoveryCode,
    /// The store holds no registered device (register or link first).
    #[error("this store holds no device; register or link first")]
    NotRegistered,
    /// A contact device's identity key changed: compare safety numbers before going on.
    #[error("identity changed: {0}")]
    IdentityChanged(String),
    /// An account's identity key changed: compare the account safety number, then accept it
    /// (`Messenger.accept_account_key`) before going on.
    #[error("account key changed: {0}")]
    AccountKeyChanged(String),
    /// A contact the user verified has new devices the user has not confirmed: ask, then
    /// `Messenger.confirm_devices`. Nothing was sent.
    #[error("unconfirmed devices: {0}")]
    UnconfirmedDevices(String),
    /// This device does not hold the account identity key (it cannot approve or unlink
    /// devices).
    #[error("this device does not hold the account key")]
    NoAccountKey,
    /// TOTP is on for this account: the call needs a code from the authenticator app (login,
    /// re-authentication before a sensitive action, recovery). Ask for one and call again.
    #[error("a TOTP code is required")]
    TotpRequired,
    /// The TOTP code is wrong, outside the 30-second window, or was already used.
    #[error("wrong or already used TOTP code")]
    WrongTotpCode,
    /// The relay no longer accepts this device's session (logged out, unlinked, revoked).
    #[error("session revoked: {0}")]
    SessionRevoked(String),
    /// The object was shut down (`Messenger.shutdown()` / `Diary.lock()`); create a new one.
    #[error("this client was shut down")]
    Closed,
    /// The data changed on another device first (diary entry or key bundle); it was synced,
    /// retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The relay served data that failed verification (tampered, rolled back, moved); nothing
    /// local changed.
    #[error("verification failed: {0}")]
    Tampered(String),
    /// The relay refused the request (`code: message`, e.g. `username_taken`).
    #[error("relay refused: {0}")]
    Refused(String),
    /// The relay could not be reached or the connection broke.
    #[error("network: {0}")]
    Network(String),
    /// The local store failed (I/O, corruption).
    #[error("storage: {0}")]
    Storage(String),
    /// An attachment upload, download or decryption failed.
    #[error("attachment: {0}")]
    Attachment(String),
    /// A protocol step failed (a malformed answer from the relay, a session error).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The diary is not in the state the call needs (no diary yet, already created, nothing to
    /// restore).
    #[error("diary: {0}")]
    Diary(String),
    /// A bug or an environment failure inside the library (the message says which).
    #[error("internal error: {0}")]
    Internal(String),
    /// The message cannot be reported (this account's own, received without franking or in a
    /// group, past the report window, or the relay takes no reports), or the relay refused the
    /// report (not the recipient, unverifiable).
    #[error("report: {0}")]
    Report(String),
}

impl From<RelayError> for HavenError {
    fn from(e: RelayError) -> Self {
        match &e {
            RelayError::InvalidCredentials => Self::WrongPassword,
            RelayError::InvalidUrl => {
                Self::InvalidInput("relay url must start with http:// or https://".into())
            }
            RelayError::NotLoggedIn => Self::SessionRevoked("not logged in".into()),
            RelayError::Transport(t) => Self::Network(t.to_string()),
            RelayError::InvalidResponse(r) => Self::Protocol(format!("relay answer: {r}")),
            RelayError::InvalidId(_) | RelayError::InvalidPushEndpoint(_) => {
                Self::InvalidInput(e.to_string())
            }
            RelayError::Refused { code, message, .. } => match code.as_str() {
                "invalid_credentials" => Self::WrongPassword,
                "totp_required" => Self::TotpRequired,
                "totp_invalid" => Self::WrongTotpCode,
                "account_not_found" | "username_not_found" => Self::UnknownContact(code.clone()),
                "invalid_token" | "refresh_reused" | "session_revoked" | "device_revoked"
                | "unauthorized" => Self::SessionRevoked(code.clone()),
                _ => Self::Refused(format!("{code}: {message}")),
            },
            _ => Self::Protocol(e.to_string()),
        }
    }
}

impl From<ClientStoreError> for HavenError {
    fn from(e: ClientStoreError) -> Self {
        match e {
            ClientStoreError::WrongKey => Self::WrongStorageKey,
            other => Self::Storage(other.to_string()),
        }
    }
}

impl From<DeviceError> for HavenError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Relay(r) => r.into(),
            DeviceError::Store(s) => s.into(),
            DeviceError::Protocol(p) => Self::Protocol(p),
            DeviceError::IdentityChanged { account, device } => {
                Self::IdentityChanged(format!("account {account} device {device}"))
            }
            DeviceError::NotSetUp => Self::NotRegistered,
            DeviceError::AccountKeyChanged { account } => Self::AccountKeyChanged(account),
            e @ (DeviceError::DeviceList { .. } | DeviceError::UnlistedDevice { .. }) => {
                Self::Tampered(e.to_string())
            }
            DeviceError::NoAccountKey => Self::NoAccountKey,
            e @ DeviceError::UnconfirmedDevices { .. } => Self::UnconfirmedDevices(e.to_string()),
            DeviceError::InvalidArgument(why) => Self::InvalidInput(why),
            other => Self::Protocol(other.to_string()),
        }
    }
}

impl From<AttachmentsError> for HavenError {
    fn from(e: AttachmentsError) -> Self {
        match e {
            AttachmentsError::Relay(r) => r.into(),
            AttachmentsError::Transport(t) => Self::Network(t.to_string()),
            other => Self::Attachment(other.to_string()),
        }
    }
}

impl From<MessengerError> for HavenError {
    fn from(e: MessengerError) -> Self {
        match e {
            MessengerError::Device(d) => d.into(),
            MessengerError::Content(c) => Self::InvalidInput(c.to_string()),
            MessengerError::Attachment(a) => a.into(),
            MessengerError::Invalid(msg) => {
                if msg.starts_with("unknown ") {
                    Self::NotFound(msg)
                } else {
                    Self::InvalidInput(msg)
                }
            }
            MessengerError::SessionRevoked(s) => Self::SessionRevoked(s),
            MessengerError::Report(ReportError::UnknownMessage) => {
                Self::NotFound("unknown message".into())
            }
            MessengerError::Report(r) => Self::Report(r.to_string()),
            other => Self::Protocol(other.to_string()),
        }
    }
}

impl From<DiaryError> for HavenError {
    fn from(e: DiaryError) -> Self {
        match e {
            DiaryError::WrongPassword => Self::WrongPassword,
            DiaryError::WrongRecoveryCode | DiaryError::InvalidRecoveryCode => {
                Self::WrongRecoveryCode
            }
            DiaryError::KdfParamsTooWeak { .. } | DiaryError::KdfParamsTooExpensive { .. } => {
                Self::InvalidInput(e.to_string())
            }
            DiaryError::ItemDecryptionFailed | DiaryError::Malformed => {
                Self::Tampered(e.to_string())
            }
            other => Self::Diary(other.to_string()),
        }
    }
}

impl From<EntryError> for HavenError {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::Diary(d) => d.into(),
            EntryError::FieldTooLong { .. } | EntryError::TooMany { .. } => {
                Self::InvalidInput(e.to_string())
            }
            other => Self::Tampered(other.to_string()),
        }
    }
}

impl From<DiaryClientError> for HavenError {
    fn from(e: DiaryClientError) -> Self {
        match e {
            DiaryClientError::Relay(r) => r.into(),
            DiaryClientError::Diary(d) => match d {
                LocalDiaryError::Store(s) => s.into(),
                LocalDiaryError::Keys(k) => k.into(),
                LocalDiaryError::Entry(en) => en.into(),
                LocalDiaryError::Sync(s) => Self::Tampered(s.to_string()),
                LocalDiaryError::UnknownEntry => Self::NotFound("no such diary entry".into()),
                LocalDiaryError::Conflict | LocalDiaryError::BundleConflict => {
                    Self::Conflict(d.to_string())
                }
                LocalDiaryError::BundleMalformed | LocalDiaryError::InvalidResponse(_) => {
                    Self::Protocol(d.to_string())
                }
                LocalDiaryError::CorruptState => Self::Storage(d.to_string()),
                other => Self::Diary(other.to_string()),
            },
            other => Self::Diary(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn refused(status: u16, code: &str) -> RelayError {
        RelayError::Refused {
            status,
            code: code.into(),
            message: "m".into(),
            mismatches: None,
        }
    }

    #[test]
    fn the_second_factor_and_the_session_have_their_own_variants() {
        assert!(matches!(
            HavenError::from(refused(401, "totp_required")),
            HavenError::TotpRequired
        ));
        assert!(matches!(
            HavenError::from(refused(401, "totp_invalid")),
            HavenError::WrongTotpCode
        ));
        assert!(matches!(
            HavenError::from(refused(401, "invalid_credentials")),
            HavenError::WrongPassword
        ));
        assert!(matches!(
            HavenError::from(refused(401, "session_revoked")),
            HavenError::SessionRevoked(_)
        ));
        assert!(matches!(
            HavenError::from(RelayError::NotLoggedIn),
            HavenError::SessionRevoked(_)
        ));
        // The rest keeps the relay's code for the host to read.
        match HavenError::from(refused(409, "totp_already_enabled")) {
            HavenError::Refused(text) => assert!(text.starts_with("totp_already_enabled")),
            other => panic!("{other:?}"),
        }
    }
}
