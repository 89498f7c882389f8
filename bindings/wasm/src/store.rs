//! The device's state: the client core's encrypted store in memory ([`MemoryStore`], PROTOCOL
//! §12), which the page exports as one sealed snapshot (§12.1, `exportState`) and keeps in
//! IndexedDB; and the application spaces the web device uses.

pub use haven_client_core::store::{MAX_SNAPSHOT_LEN, MemoryStore, SNAPSHOT_LABEL};

pub(crate) use haven_client_core::store::address_key;

/// Spaces of the web device: the core's protocol spaces and the application spaces of the
/// native client's device (`haven-client::device`).
pub(crate) mod space {
    use haven_client_core::store::Space;

    /// Sessions by device address.
    pub(crate) const SESSION: Space = Space::SESSION;
    /// Device settings (ids, refresh token, relay key, counters).
    pub(crate) const META: Space = Space::app(0xF0);
    /// Known device numbers per contact account.
    pub(crate) const CONTACT_DEVICES: Space = Space::app(0xF1);
    /// Message ids already processed.
    pub(crate) const SEEN: Space = Space::app(0xF2);
}
