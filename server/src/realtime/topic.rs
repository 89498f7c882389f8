//! What the hub's hints are about, and how sockets are keyed.

use crate::ids::Id;

/// What a hint is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A device's mailbox: an envelope was queued for it.
    Mailbox {
        /// The account.
        account: Id,
        /// The device number within the account.
        device: u32,
    },
    /// A channel: an entry was appended.
    Channel(Id),
    /// An account's sessions: one was revoked (logout, refresh-token reuse), a device removed
    /// or the account deleted. Sockets of the account re-check their session at once.
    Sessions(Id),
}

/// A device, as sockets are registered: account and device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    /// The account.
    pub account: Id,
    /// The device number within the account.
    pub device: u32,
}
