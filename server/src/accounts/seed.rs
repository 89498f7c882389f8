//! Sessions written straight into a store, without an OPAQUE registration: the load generator
//! and the tests that need many signed-in devices fast use it.

use crate::accounts::store::{
    AccountStore, DeviceRecord, FamilyRecord, NewAccount, RefreshTokenRecord, TokenStore,
};
use crate::accounts::tokens::Session;
use crate::db::error::StoreError;
use crate::ids::Id;

/// Writes an account with one device (number 1) and a refresh-token family into `store` at
/// `now`, the family's first token valid for `ttl_secs`, and returns the session (sign its
/// access token with [`crate::accounts::tokens::sign_access`]). The account's registration record
/// is a placeholder that matches no password: it cannot log in.
///
/// # Errors
/// Store errors.
pub async fn seed_session<S: AccountStore + TokenStore>(
    store: &S,
    now: i64,
    ttl_secs: i64,
) -> Result<Session, StoreError> {
    let (account, device, family) = (Id::random(), Id::random(), Id::random());
    store
        .create_account(
            &NewAccount {
                id: account,
                username_hash: None,
                opaque_record: vec![0; 192],
                created_at: now,
            },
            &DeviceRecord {
                id: device,
                account_id: account,
                identity_key: vec![1; 32],
                name_blob: None,
                created_at: now,
                number: 1,
            },
        )
        .await?;
    store
        .create_family(
            &FamilyRecord {
                id: family,
                account_id: account,
                device_id: device,
                revoked: false,
                created_at: now,
            },
            &RefreshTokenRecord {
                token_hash: Id::random().as_bytes().to_vec(),
                family_id: family,
                created_at: now,
                expires_at: now.saturating_add(ttl_secs),
                used_at: None,
            },
        )
        .await?;
    Ok(Session {
        account,
        device,
        family,
    })
}
