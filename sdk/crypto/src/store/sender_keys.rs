//! Storage of group sender keys: the receiving [`SenderKeyRecord`] of every (group, sender
//! account, sender device) and this device's own [`GroupSenderSession`] per group.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::groups::{DistributionId, GroupError, GroupSenderSession, SenderKeyRecord};

/// Identifies one sender's chains in one group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SenderKeyName {
    /// The group.
    pub distribution_id: DistributionId,
    /// The sender's account id as assigned by the relay (opaque bytes).
    pub sender_account: Vec<u8>,
    /// The sender's device id.
    pub device_id: u32,
}

/// Where sender keys live. Implementations should encrypt the pickled bytes at rest.
pub trait SenderKeyStore {
    /// The store's error type.
    type Error;

    /// Loads the record for `name`, if any.
    ///
    /// # Errors
    /// Storage or decoding failures.
    fn load_sender_key(&self, name: &SenderKeyName)
    -> Result<Option<SenderKeyRecord>, Self::Error>;

    /// Saves (replaces) the record for `name`.
    ///
    /// # Errors
    /// Storage failures.
    fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> Result<(), Self::Error>;

    /// Loads this device's sending session for a group, if any.
    ///
    /// # Errors
    /// Storage or decoding failures.
    fn load_own_sender_session(
        &self,
        distribution_id: &DistributionId,
    ) -> Result<Option<GroupSenderSession>, Self::Error>;

    /// Saves (replaces) this device's sending session for its group.
    ///
    /// # Errors
    /// Storage failures.
    fn store_own_sender_session(&mut self, session: &GroupSenderSession)
    -> Result<(), Self::Error>;
}

/// In-memory [`SenderKeyStore`]. Keeps pickled bytes (not live objects), so every load goes
/// through `from_bytes` exactly as a persistent store would.
#[derive(Default)]
pub struct InMemorySenderKeyStore {
    records: BTreeMap<SenderKeyName, Zeroizing<Vec<u8>>>,
    own: BTreeMap<DistributionId, Zeroizing<Vec<u8>>>,
}

impl InMemorySenderKeyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl SenderKeyStore for InMemorySenderKeyStore {
    type Error = GroupError;

    fn load_sender_key(&self, name: &SenderKeyName) -> Result<Option<SenderKeyRecord>, GroupError> {
        self.records
            .get(name)
            .map(|b| SenderKeyRecord::from_bytes(b))
            .transpose()
    }

    fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> Result<(), GroupError> {
        self.records.insert(name.clone(), record.to_bytes());
        Ok(())
    }

    fn load_own_sender_session(
        &self,
        distribution_id: &DistributionId,
    ) -> Result<Option<GroupSenderSession>, GroupError> {
        self.own
            .get(distribution_id)
            .map(|b| GroupSenderSession::from_bytes(b))
            .transpose()
    }

    fn store_own_sender_session(&mut self, session: &GroupSenderSession) -> Result<(), GroupError> {
        self.own
            .insert(session.distribution_id(), session.to_bytes());
        Ok(())
    }
}

/// Decrypts a group message from `name` using the store, saving the record only on success.
///
/// # Errors
/// [`GroupError::UnknownChain`] (with chain id 0) if no record exists, otherwise as
/// [`SenderKeyRecord::decrypt`]; store errors are converted with `From`.
pub fn group_decrypt<S>(
    store: &mut S,
    name: &SenderKeyName,
    message: &[u8],
) -> Result<Vec<u8>, S::Error>
where
    S: SenderKeyStore,
    S::Error: From<GroupError>,
{
    let mut record = store
        .load_sender_key(name)?
        .ok_or(GroupError::UnknownChain(0))?;
    let plaintext = record.decrypt(message)?;
    store.store_sender_key(name, &record)?;
    Ok(plaintext)
}
