//! Contacts: who this account talks to 1:1, and whether it sent them its contact card (the
//! access key that lets them send sealed, PROTOCOL §13.2).

use haven_protocol::content::{Body, Content, Conversation};

use super::records::{CONTACTS, all_json, get_json, put_json};
use super::types::{Contact, StateError, invalid};
use crate::store::{Backend, EncryptedStore};

/// One contact.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn contact<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
) -> Result<Option<Contact>, StateError> {
    get_json(store, CONTACTS, account, "contact")
}

/// Every contact.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn contacts<B: Backend>(store: &EncryptedStore<B>) -> Result<Vec<Contact>, StateError> {
    all_json(store, CONTACTS, "contact")
}

/// Adds `account` as a contact of `own` (or updates its username when `username` is given);
/// returns the stored contact. Its card still has to go out
/// ([`needs_card`] / [`contact_card`]).
///
/// # Errors
/// [`StateError::Invalid`] for one's own account; store errors.
pub fn add_contact<B: Backend>(
    store: &EncryptedStore<B>,
    own: &[u8; 16],
    account: &[u8; 16],
    username: Option<String>,
) -> Result<Contact, StateError> {
    if account == own {
        return Err(invalid("that is this account"));
    }
    let mut contact = contact(store, account)?.unwrap_or_else(|| unknown(account));
    if username.is_some() {
        contact.username = username;
    }
    put_json(store, CONTACTS, account, &contact)?;
    Ok(contact)
}

/// Blocks (`true`) or unblocks `account`, adding it as a contact if it is not one; returns the
/// stored contact. A blocked account's contents are dropped on receipt (1:1 and group, without
/// receipts) and nothing is sent to it 1:1; the relay is not told.
///
/// # Errors
/// [`StateError::Invalid`] for one's own account; store errors.
pub fn set_blocked<B: Backend>(
    store: &EncryptedStore<B>,
    own: &[u8; 16],
    account: &[u8; 16],
    blocked: bool,
) -> Result<Contact, StateError> {
    if account == own {
        return Err(invalid("that is this account"));
    }
    let mut contact = contact(store, account)?.unwrap_or_else(|| unknown(account));
    contact.blocked = blocked;
    put_json(store, CONTACTS, account, &contact)?;
    Ok(contact)
}

/// Whether the user blocked `account`.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn is_blocked<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
) -> Result<bool, StateError> {
    Ok(contact(store, account)?.is_some_and(|c| c.blocked))
}

/// Whether this account's contact card still has to be sent to `account`.
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn needs_card<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
) -> Result<bool, StateError> {
    Ok(!contact(store, account)?.is_some_and(|c| c.card_sent))
}

/// The contact card carrying `access_key` (this account's) to `account`.
#[must_use]
pub fn contact_card(account: &[u8; 16], access_key: [u8; 16], now_ms: u64) -> Content {
    Content {
        sent_at: now_ms,
        conversation: Conversation::Direct(*account),
        body: Body::ContactCard { access_key },
    }
}

/// Records that the card went out to `account` (adding it as a contact if it was not one).
///
/// # Errors
/// Store errors, [`StateError::Corrupt`].
pub fn card_sent<B: Backend>(
    store: &EncryptedStore<B>,
    account: &[u8; 16],
) -> Result<Contact, StateError> {
    let mut c = contact(store, account)?.unwrap_or_else(|| unknown(account));
    c.card_sent = true;
    put_json(store, CONTACTS, account, &c)?;
    Ok(c)
}

/// A contact that sent its card becomes a contact (if it was not one).
pub(super) fn card_received<B: Backend>(
    store: &EncryptedStore<B>,
    from: &[u8; 16],
) -> Result<(), StateError> {
    if contact(store, from)?.is_none() {
        put_json(store, CONTACTS, from, &unknown(from))?;
    }
    Ok(())
}

fn unknown(account: &[u8; 16]) -> Contact {
    Contact {
        account: *account,
        username: None,
        card_sent: false,
        blocked: false,
    }
}
