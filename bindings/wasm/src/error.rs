//! The one error type of the web bindings. In JavaScript it becomes an `Error` whose `name` is
//! `"HavenError"` and whose `code` is one of the stable strings of [`ErrorCode`]; messages are
//! for people and never contain key bytes or plaintext.

/// Stable, machine-readable error codes (the `code` property of the JS error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// An argument is malformed: an id that is not 32 lowercase hex digits, bad base64, bad JSON.
    InvalidArgument,
    /// A key or other fixed-size value has the wrong length.
    InvalidKeyLength,
    /// Bytes that should follow a Haven format do not (state snapshot, frame, content, bundle).
    Malformed,
    /// The object was closed with `close()`.
    Closed,
    /// The call does not fit the object's state (e.g. `loginFinish` without `loginStart`).
    InvalidState,
    /// A passphrase or password is wrong (diary unlock, OPAQUE login).
    WrongPassword,
    /// A state snapshot does not decrypt under the page key (wrong key or tampered).
    DecryptionFailed,
    /// A contact device's identity key differs from the trusted one.
    IdentityChanged,
    /// The relay's answer does not have the expected shape or fails verification.
    InvalidResponse,
    /// A cryptographic protocol step failed (session, sealing, bundle verification).
    Protocol,
    /// A value exceeds a documented limit (text length, KDF cost).
    Limit,
    /// What the call names does not exist (a diary not created yet, an unknown entry, nothing
    /// to restore).
    NotFound,
    /// Another device got there first (the account has a diary already, the key bundle or an
    /// entry changed elsewhere); the newer state was pulled, retry.
    Conflict,
    /// An account's signed device list is needed first: fetch it (`deviceListPath`), give it
    /// to `acceptDeviceList`, and try again.
    NeedDeviceList,
    /// An account's identity key changed: compare the account safety number, then
    /// `acceptAccountKey`. Nothing is exchanged with it until then.
    AccountKeyChanged,
    /// A verified account's list names devices the user has not confirmed: ask, then
    /// `confirmDevices`. Nothing was sent.
    UnconfirmedDevices,
    /// The relay served a device list, or named a device, that was refused (invalid, rolled
    /// back, forked, withdrawn, not in the signed list): it is lying. Nothing changed.
    DeviceListRefused,
    /// The relay refused a request with an error the step does not expect: the page reports
    /// the relay's own error (status and code of its answer).
    Refused,
    /// The message cannot be reported (this account's own, received without franking or in a
    /// group, past the report window, or no franking key is known), PROTOCOL §16.9.
    NotReportable,
}

impl ErrorCode {
    /// The string form used in JavaScript.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::InvalidKeyLength => "invalid_key_length",
            Self::Malformed => "malformed",
            Self::Closed => "closed",
            Self::InvalidState => "invalid_state",
            Self::WrongPassword => "wrong_password",
            Self::DecryptionFailed => "decryption_failed",
            Self::IdentityChanged => "identity_changed",
            Self::InvalidResponse => "invalid_response",
            Self::Protocol => "protocol",
            Self::Limit => "limit",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Refused => "refused",
            Self::NotReportable => "not_reportable",
            Self::NeedDeviceList => "need_device_list",
            Self::AccountKeyChanged => "account_key_changed",
            Self::UnconfirmedDevices => "unconfirmed_devices",
            Self::DeviceListRefused => "device_list_refused",
        }
    }
}

/// An error with a stable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct WebError {
    /// The stable code.
    pub code: ErrorCode,
    /// For people; may change.
    pub message: String,
    /// For [`ErrorCode::IdentityChanged`]: the contact device whose key changed (the JS error's
    /// `account` and `device` properties), so the page can show its safety number.
    pub identity: Option<ChangedIdentity>,
}

/// The contact device of an [`ErrorCode::IdentityChanged`] error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedIdentity {
    /// The contact account (32 hex).
    pub account: String,
    /// Its device number.
    pub device: u32,
}

impl WebError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            identity: None,
        }
    }
}

/// Shorthand for [`ErrorCode::InvalidArgument`].
pub(crate) fn invalid(message: impl Into<String>) -> WebError {
    WebError::new(ErrorCode::InvalidArgument, message)
}

/// Shorthand for [`ErrorCode::Protocol`].
pub(crate) fn protocol(e: impl std::fmt::Display) -> WebError {
    WebError::new(ErrorCode::Protocol, e.to_string())
}

/// Shorthand for [`ErrorCode::InvalidResponse`].
pub(crate) fn bad_response(message: impl Into<String>) -> WebError {
    WebError::new(ErrorCode::InvalidResponse, message)
}

impl From<haven_sdk::store::StoreError> for WebError {
    fn from(e: haven_sdk::store::StoreError) -> Self {
        protocol(e)
    }
}

impl From<haven_client_core::store::ClientStoreError> for WebError {
    fn from(e: haven_client_core::store::ClientStoreError) -> Self {
        use haven_client_core::store::ClientStoreError as E;
        match e {
            // In the web the store is only ever opened from a snapshot (`importState`).
            E::WrongKey => WebError::new(
                ErrorCode::DecryptionFailed,
                "state does not decrypt under this page key (wrong key or tampered)",
            ),
            E::TooLarge { .. } => WebError::new(ErrorCode::Limit, e.to_string()),
            E::NoIdentity | E::Backend(_) => WebError::new(ErrorCode::InvalidState, e.to_string()),
            E::Group(_) | E::KeyDerivation => protocol(e),
            _ => WebError::new(ErrorCode::Malformed, e.to_string()),
        }
    }
}

impl From<haven_client_core::device::DeviceError> for WebError {
    fn from(e: haven_client_core::device::DeviceError) -> Self {
        use haven_client_core::device::DeviceError as E;
        match e {
            E::Store(e) => e.into(),
            E::NotSetUp => WebError::new(
                ErrorCode::InvalidState,
                "not logged in yet (no session or no relay key)",
            ),
            E::InvalidArgument(m) => invalid(m),
            E::InvalidResponse(m) => bad_response(m),
            E::IdentityChanged {
                ref account,
                device,
            } => WebError {
                identity: Some(ChangedIdentity {
                    account: account.clone(),
                    device,
                }),
                ..WebError::new(ErrorCode::IdentityChanged, e.to_string())
            },
            E::NeedDeviceList { .. } => WebError::new(ErrorCode::NeedDeviceList, e.to_string()),
            E::AccountKeyChanged { .. } => {
                WebError::new(ErrorCode::AccountKeyChanged, e.to_string())
            }
            E::DeviceList { .. } | E::UnlistedDevice { .. } => {
                WebError::new(ErrorCode::DeviceListRefused, e.to_string())
            }
            E::NoAccountKey => WebError::new(ErrorCode::InvalidState, e.to_string()),
            E::UnconfirmedDevices { .. } => {
                WebError::new(ErrorCode::UnconfirmedDevices, e.to_string())
            }
            E::NoCertificate | E::NoSession { .. } | E::NoDevices => {
                WebError::new(ErrorCode::InvalidState, e.to_string())
            }
            other => protocol(other),
        }
    }
}

impl From<haven_client_core::messenger::StateError> for WebError {
    fn from(e: haven_client_core::messenger::StateError) -> Self {
        use haven_client_core::messenger::StateError as E;
        match e {
            E::Store(e) => e.into(),
            E::Device(e) => e.into(),
            E::Invalid(m) => invalid(m),
            E::Content(e) => WebError::new(ErrorCode::Limit, e.to_string()),
            E::Corrupt { .. } => WebError::new(ErrorCode::Malformed, e.to_string()),
            E::Report(haven_client_core::device::ReportError::UnknownMessage) => {
                WebError::new(ErrorCode::NotFound, "unknown message")
            }
            E::Report(r) => WebError::new(ErrorCode::NotReportable, r.to_string()),
            other => protocol(other),
        }
    }
}

/// Result of the bindings.
pub type WebResult<T> = Result<T, WebError>;
