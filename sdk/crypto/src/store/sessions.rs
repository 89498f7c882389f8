//! Session records per peer device.

use std::collections::HashMap;

use super::{DeviceAddress, StoreError};
use crate::ratchet::session::SessionRecord;

/// Per-(account, device) [`SessionRecord`]s.
pub trait SessionStore {
    /// The record for `address`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError>;
    /// Replaces the record for `address`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn store_session(
        &mut self,
        address: &DeviceAddress,
        record: &SessionRecord,
    ) -> Result<(), StoreError>;
}

/// In-memory [`SessionStore`]. Keeps records in their pickled form, like a persistent store
/// would, so tests exercise the encoding on every operation.
#[derive(Debug, Default)]
pub struct InMemorySessionStore {
    records: HashMap<DeviceAddress, zeroize::Zeroizing<Vec<u8>>>,
}

impl SessionStore for InMemorySessionStore {
    fn load_session(&self, address: &DeviceAddress) -> Result<Option<SessionRecord>, StoreError> {
        self.records
            .get(address)
            .map(|b| {
                SessionRecord::from_bytes(b)
                    .map_err(|e| StoreError::Backend(format!("decoding session record: {e}")))
            })
            .transpose()
    }

    fn store_session(
        &mut self,
        address: &DeviceAddress,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.records.insert(*address, record.to_bytes());
        Ok(())
    }
}
