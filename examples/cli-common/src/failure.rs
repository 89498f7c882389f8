//! A failure with its exit code, and the codes of the client's errors (as the README lists
//! them: 1 other, 2 usage, 3 wrong password or passphrase or a revoked session, 4 relay data
//! that failed verification, 5 a conflict or a changed identity key, 6 no such entry, 7 the
//! relay unreachable or refusing, 8 a chat attachment).

use haven_client::attachments::{AttachmentsError, TransferError};
use haven_client::diary::LocalDiaryError;
use haven_client::storage_key::StorageKeyError;
use haven_client::{
    ClientStoreError, DeviceError, DiaryClientError, MessengerError, RelayError, ReportError,
};
use haven_sdk::diary::DiaryError;

/// A failure: the message printed on stderr and the process's exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// Bad usage or input (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::with_code(2, message)
    }

    /// Any other failure (exit code 1).
    pub fn other(message: impl Into<String>) -> Self {
        Self::with_code(1, message)
    }

    fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<MessengerError> for Failure {
    fn from(err: MessengerError) -> Self {
        let code = match &err {
            MessengerError::Invalid(_) => 2,
            MessengerError::Device(DeviceError::InvalidArgument(_)) => 2,
            MessengerError::Device(
                DeviceError::IdentityChanged { .. }
                | DeviceError::AccountKeyChanged { .. }
                | DeviceError::UnconfirmedDevices { .. },
            ) => 5,
            MessengerError::Device(
                DeviceError::DeviceList { .. } | DeviceError::UnlistedDevice { .. },
            ) => 6,
            MessengerError::SessionRevoked(_) => 3,
            MessengerError::Device(DeviceError::Relay(e)) => relay_code(e),
            MessengerError::Attachment(_) => 8,
            // Not reportable here (unknown, own, unfranked, too old): the user's input.
            MessengerError::Report(
                ReportError::UnknownMessage | ReportError::NotReportable | ReportError::Expired,
            ) => 2,
            // The relay refused the report or takes none.
            MessengerError::Report(_) => 7,
            _ => 1,
        };
        Self::with_code(code, err.to_string())
    }
}

impl From<DeviceError> for Failure {
    fn from(err: DeviceError) -> Self {
        MessengerError::from(err).into()
    }
}

/// A wrong password is the user's to fix; anything else the relay did is 7.
fn relay_code(err: &RelayError) -> u8 {
    match err {
        RelayError::InvalidCredentials => 3,
        RelayError::InvalidPushEndpoint(_) => 2,
        _ => 7,
    }
}

impl From<RelayError> for Failure {
    fn from(err: RelayError) -> Self {
        Self::with_code(relay_code(&err), err.to_string())
    }
}

impl From<DiaryClientError> for Failure {
    fn from(err: DiaryClientError) -> Self {
        let code = match &err {
            DiaryClientError::Diary(LocalDiaryError::Keys(
                DiaryError::WrongPassword
                | DiaryError::WrongRecoveryCode
                | DiaryError::InvalidRecoveryCode,
            )) => 3,
            DiaryClientError::Diary(LocalDiaryError::Sync(_)) => 4,
            DiaryClientError::Diary(
                LocalDiaryError::Conflict | LocalDiaryError::BundleConflict,
            ) => 5,
            DiaryClientError::Diary(
                LocalDiaryError::UnknownEntry | LocalDiaryError::NothingToRestore,
            ) => 6,
            DiaryClientError::Relay(_) => 7,
            _ => 1,
        };
        Self::with_code(code, err.to_string())
    }
}

impl From<AttachmentsError> for Failure {
    fn from(err: AttachmentsError) -> Self {
        let code = match &err {
            AttachmentsError::Relay(_)
            | AttachmentsError::Transport(_)
            | AttachmentsError::Transfer(TransferError::Refused { .. }) => 7,
            _ => 1,
        };
        Self::with_code(code, err.to_string())
    }
}

impl From<ClientStoreError> for Failure {
    fn from(err: ClientStoreError) -> Self {
        match err {
            ClientStoreError::WrongKey => {
                Self::with_code(3, "wrong passphrase for this state directory")
            }
            other => Self::other(format!("state directory: {other}")),
        }
    }
}

impl From<StorageKeyError> for Failure {
    fn from(err: StorageKeyError) -> Self {
        Self::other(format!("state directory: {err}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Self::other(format!("i/o: {err}"))
    }
}
