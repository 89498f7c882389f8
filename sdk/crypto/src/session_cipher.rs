//! High-level session API over the stores: start a session from a bundle, encrypt, and decrypt
//! both prekey and normal messages. Every function loads state, works on a copy, and writes the
//! stores only after authentication succeeded.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::pqxdh::{self, PqxdhError, ResponderKeys};
use crate::prekeys::PreKeyBundle;
use crate::ratchet::RatchetError;
use crate::ratchet::message::{PreKeyMessage, SessionMessage};
use crate::ratchet::session::SessionRecord;
use crate::store::{DeviceAddress, ProtocolStore, StoreError};

/// Errors of the high-level session API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handshake failed (bad bundle signature, unknown or already-used prekey, …).
    #[error(transparent)]
    Handshake(#[from] PqxdhError),
    /// The ratchet rejected the message (duplicate, too far ahead, failed authentication, …).
    #[error(transparent)]
    Ratchet(#[from] RatchetError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// There is no session with this device; fetch its bundle and call [`initiate`].
    #[error("no session with this device")]
    NoSession,
    /// The peer's identity differs from the one stored for it. The app must show the new safety
    /// number and accept it ([`IdentityStore::save_identity`](crate::store::IdentityStore)) first.
    #[error("peer identity key changed")]
    UntrustedIdentity,
    /// A first (prekey) message whose handshake was accepted before, while its session is gone:
    /// a replay, refused so that it cannot make a second session (PROTOCOL.md §3.3).
    #[error("replayed first message")]
    ReplayedFirstMessage,
}

/// Starts a session with `peer` from its `bundle`, stores it and returns the first message
/// (a [`PreKeyMessage`]) carrying `plaintext`. A bundle with a bad signature stores nothing.
///
/// # Errors
/// [`SessionError::Handshake`], [`SessionError::UntrustedIdentity`], [`SessionError::Ratchet`]
/// (plaintext too large), [`SessionError::Store`].
pub fn initiate<S: ProtocolStore, R: CryptoRng + ?Sized>(
    store: &mut S,
    peer: &DeviceAddress,
    bundle: &PreKeyBundle,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, SessionError> {
    if !store.is_trusted(peer, &bundle.identity_key)? {
        return Err(SessionError::UntrustedIdentity);
    }
    let own = store.identity_key_pair()?;
    let mut session = pqxdh::initiate(&own, bundle, rng)?;
    let message = session.encrypt(plaintext)?;
    let mut record = store.load_session(peer)?.unwrap_or_default();
    record.promote(session);
    store.save_identity(peer, &bundle.identity_key)?;
    store.store_session(peer, &record)?;
    Ok(message.to_bytes())
}

/// Encrypts `plaintext` for `peer` with the current session.
///
/// # Errors
/// [`SessionError::NoSession`], [`SessionError::Ratchet`], [`SessionError::Store`].
pub fn encrypt<S: ProtocolStore>(
    store: &mut S,
    peer: &DeviceAddress,
    plaintext: &[u8],
) -> Result<Vec<u8>, SessionError> {
    let mut record = store.load_session(peer)?.ok_or(SessionError::NoSession)?;
    let session = record.current_mut().ok_or(SessionError::NoSession)?;
    let message = session.encrypt(plaintext)?;
    store.store_session(peer, &record)?;
    Ok(message.to_bytes())
}

/// Decrypts a message from `peer`: a prekey message creates (or reuses) a session, a normal
/// message uses the existing ones. `now` (Unix seconds) ages the skipped message keys: those
/// older than [`MAX_SKIPPED_KEY_AGE`](crate::ratchet::session::MAX_SKIPPED_KEY_AGE) are dropped
/// before the message is tried, and the record is saved without them.
///
/// # Errors
/// [`SessionError::Ratchet`] (malformed, duplicate, tampered, …), [`SessionError::Handshake`]
/// (unknown or already-used prekey), [`SessionError::NoSession`],
/// [`SessionError::UntrustedIdentity`], [`SessionError::Store`].
pub fn decrypt<S: ProtocolStore, R: CryptoRng + ?Sized>(
    store: &mut S,
    peer: &DeviceAddress,
    bytes: &[u8],
    now: u64,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    match SessionMessage::from_bytes(bytes)? {
        SessionMessage::Ratchet(m) => {
            let mut record = store.load_session(peer)?.ok_or(SessionError::NoSession)?;
            let plaintext = record.decrypt(&m, now, rng)?;
            store.store_session(peer, &record)?;
            Ok(plaintext)
        }
        SessionMessage::PreKey(m) => decrypt_prekey(store, peer, &m, now, rng),
    }
}

fn decrypt_prekey<S: ProtocolStore, R: CryptoRng + ?Sized>(
    store: &mut S,
    peer: &DeviceAddress,
    m: &PreKeyMessage,
    now: u64,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    if !store.is_trusted(peer, &m.identity_key)? {
        return Err(SessionError::UntrustedIdentity);
    }
    let mut record = store.load_session(peer)?.unwrap_or_else(SessionRecord::new);
    // A later message of a handshake we already completed (the initiator repeats the prekey
    // form until we answer): decrypt with that session; the one-time keys are long gone.
    if let Some(i) = record.find_by_base_key(&m.base_key) {
        let plaintext = record.decrypt_at(Some(i), &m.message, now, rng)?;
        store.store_session(peer, &record)?;
        return Ok(plaintext);
    }
    let base_key = m.base_key.to_bytes();
    if store.base_key_seen(m.signed_prekey_id, &base_key)? {
        return Err(SessionError::ReplayedFirstMessage);
    }
    let own = store.identity_key_pair()?;
    let signed_prekey =
        store
            .signed_prekey(m.signed_prekey_id)?
            .ok_or(PqxdhError::UnknownSignedPreKey {
                id: m.signed_prekey_id,
            })?;
    let one_time_prekey = match m.one_time_prekey_id {
        Some(id) => Some(
            store
                .one_time_prekey(id)?
                .ok_or(PqxdhError::UnknownOneTimePreKey { id })?,
        ),
        None => None,
    };
    let kem_prekey = store
        .kem_prekey(m.kem_prekey_id)?
        .ok_or(PqxdhError::UnknownKemPreKey {
            id: m.kem_prekey_id,
        })?;
    let keys = ResponderKeys {
        signed_prekey: &signed_prekey,
        one_time_prekey: one_time_prekey.as_ref(),
        kem_prekey: &kem_prekey,
    };
    let mut session = pqxdh::respond(&own, m, &keys)?;
    let plaintext = session.decrypt(&m.message, now, rng)?;
    // Only now, after the first message authenticated, are the one-time keys deleted.
    store.consume_prekeys(m.one_time_prekey_id, m.kem_prekey_id)?;
    store.remember_base_key(m.signed_prekey_id, &base_key)?;
    store.save_identity(peer, &m.identity_key)?;
    record.promote(session);
    record.expire_skipped(now);
    store.store_session(peer, &record)?;
    Ok(plaintext)
}
