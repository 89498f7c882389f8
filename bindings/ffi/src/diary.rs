//! `Diary`: the end-to-end encrypted diary of one device, over `haven_client::Diary`.
//!
//! A diary device has its own store and its own relay session (like the `haven-diary` CLI):
//! [`Diary::create`] registers an account or logs in to one, [`Diary::unlock`] reopens a store
//! with the diary password, [`Diary::recover`] sets a new password with a recovery code.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use haven_client::diary::{
    Diary as CoreDiary, codes_text, device_identity, load_session, save_session,
};
use haven_client::relay::{LoginDevice, LoginIdentifier};
use haven_client::{ClientStore, RelayClient, Space};
use zeroize::Zeroizing;

use crate::account::{self, AccountDevice, TotpSetup};
use crate::error::HavenError;
use crate::key::StorageKey;
use crate::runtime;
use crate::types::{
    DiaryEntry, DiaryEntryItem, DiaryQuery, DiaryRevision, DiarySyncReport, KdfSettings, parse_id,
};

/// Store space of the bindings' own diary settings (the relay session).
const SPACE_FFI: Space = Space::app(0x60);

/// How a new diary device gets its relay account.
#[derive(uniffi::Enum)]
pub enum AccountAccess {
    /// Register a new account; this device is its first.
    Register {
        /// Username (optional: an account can be found by id alone).
        username: Option<String>,
        /// Account password (OPAQUE: never leaves the device).
        password: String,
    },
    /// Log in to an existing account as a new device.
    Login {
        /// Username.
        username: String,
        /// Account password.
        password: String,
        /// The TOTP code, when the account has TOTP on (`TotpRequired` without it).
        #[uniffi(default = None)]
        totp_code: Option<String>,
    },
}

/// [`AccountAccess`] with its password moved into a buffer wiped on drop.
enum Access {
    Register {
        username: Option<String>,
        password: Zeroizing<String>,
    },
    Login {
        username: String,
        password: Zeroizing<String>,
        totp_code: Option<String>,
    },
}

impl AccountAccess {
    fn into_access(self) -> Access {
        match self {
            Self::Register { username, password } => Access::Register {
                username,
                password: Zeroizing::new(password),
            },
            Self::Login {
                username,
                password,
                totp_code,
            } => Access::Login {
                username,
                password: Zeroizing::new(password),
                totp_code,
            },
        }
    }
}

/// An unlocked diary. Entries are written locally first; [`Diary::sync`] sends them and pulls
/// what other devices wrote.
#[derive(uniffi::Object)]
pub struct Diary {
    /// `None` after [`Diary::lock`].
    inner: Mutex<Option<CoreDiary>>,
    /// Recovery codes of a diary just created, until [`Diary::take_recovery_codes`].
    codes: Mutex<Vec<Zeroizing<String>>>,
}

fn open_store(
    relay_url: &str,
    store_path: &str,
    key: &StorageKey,
) -> Result<(RelayClient, ClientStore), HavenError> {
    if store_path.is_empty() {
        return Err(HavenError::InvalidInput("store path is empty".into()));
    }
    let relay = RelayClient::new(relay_url.trim())?;
    let store = ClientStore::open(Path::new(store_path), key.bytes())?;
    Ok((relay, store))
}

/// Logs the store's device in as `access` says and keeps the session.
async fn sign_in(
    relay: &RelayClient,
    store: &ClientStore,
    access: &Access,
) -> Result<(), HavenError> {
    let identity_key = device_identity(store)?;
    let session = match access {
        Access::Register { username, password } => {
            let username = username.as_deref().map(str::trim);
            relay
                .register(username, password.as_bytes(), &identity_key, None)
                .await?
        }
        Access::Login {
            username,
            password,
            totp_code,
        } => {
            relay
                .login(
                    LoginIdentifier::Username(username.trim()),
                    password.as_bytes(),
                    LoginDevice::New {
                        identity_key: &identity_key,
                        name: None,
                    },
                    totp_code.as_deref().map(str::trim),
                )
                .await?
        }
    };
    Ok(save_session(store, SPACE_FFI, &session)?)
}

fn kdf_params(kdf: Option<KdfSettings>) -> Result<haven_sdk::KdfParams, HavenError> {
    kdf.map_or(Ok(haven_sdk::KdfParams::DEFAULT), KdfSettings::to_params)
}

impl Diary {
    fn wrap(diary: CoreDiary, codes: Vec<Zeroizing<String>>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Some(diary)),
            codes: Mutex::new(codes),
        })
    }

    fn guard(&self) -> MutexGuard<'_, Option<CoreDiary>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn item(id: [u8; 16], entry: &haven_sdk::Entry, pending: bool) -> DiaryEntryItem {
        DiaryEntryItem {
            id: hex::encode(id),
            entry: DiaryEntry::from_core(entry),
            pending,
        }
    }

    /// Runs `f` with the unlocked diary on a runtime thread, then saves the session.
    // The lock is held across the relay requests on purpose: on a blocking thread of its own,
    // it serialises every use of the diary (and of its SQLite connection).
    #[allow(clippy::await_holding_lock)]
    async fn with_diary<T, F>(self: Arc<Self>, f: F) -> Result<T, HavenError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut CoreDiary,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, HavenError>> + 'a>,
            > + Send
            + 'static,
    {
        runtime::run_blocking(move || async move {
            let mut guard = self.guard();
            let diary = guard.as_mut().ok_or(HavenError::Closed)?;
            let result = f(diary).await;
            diary.save_session(SPACE_FFI).await?;
            result
        })
        .await
    }
}

#[uniffi::export]
impl Diary {
    /// Creates the account's diary on a new device: signs in as `account` says, creates fresh
    /// diary keys wrapped under `diary_password` (Argon2id, `kdf` or 64 MiB / 3 passes) and
    /// uploads the wrapped bundle. The recovery codes are returned once by
    /// [`Diary::take_recovery_codes`]. Passwords are wiped after use.
    ///
    /// # Errors
    /// `InvalidInput` (parameters), `WrongPassword` (login), `Refused` (`username_taken`),
    /// `Diary` (the account already has a diary), `Network`.
    #[uniffi::constructor]
    pub async fn create(
        relay_url: String,
        store_path: String,
        storage_key: Arc<StorageKey>,
        account: AccountAccess,
        diary_password: String,
        kdf: Option<KdfSettings>,
    ) -> Result<Arc<Self>, HavenError> {
        let diary_password = Zeroizing::new(diary_password);
        let access = account.into_access();
        let params = kdf_params(kdf)?;
        runtime::run_blocking(move || async move {
            let (relay, store) = open_store(&relay_url, &store_path, &storage_key)?;
            sign_in(&relay, &store, &access).await?;
            let (diary, codes) =
                CoreDiary::init(store, relay, diary_password.as_bytes(), params).await?;
            diary.save_session(SPACE_FFI).await?;
            Ok(Self::wrap(diary, codes_text(&codes)))
        })
        .await
    }

    /// Unlocks the diary of the store at `store_path` with the diary password (the password is
    /// wiped after use).
    ///
    /// # Errors
    /// `WrongPassword`, `WrongStorageKey`, `NotRegistered` (the store was never signed in),
    /// `Network` (only when the local copy of the key bundle is missing or outdated).
    #[uniffi::constructor]
    pub async fn unlock(
        relay_url: String,
        store_path: String,
        storage_key: Arc<StorageKey>,
        diary_password: String,
    ) -> Result<Arc<Self>, HavenError> {
        let diary_password = Zeroizing::new(diary_password);
        runtime::run_blocking(move || async move {
            if !Path::new(&store_path).exists() {
                return Err(HavenError::NotRegistered);
            }
            let (relay, store) = open_store(&relay_url, &store_path, &storage_key)?;
            let session = load_session(&store, SPACE_FFI)?.ok_or(HavenError::NotRegistered)?;
            relay.set_session(session).await;
            // Rotate the refresh token now and keep the new one: `CoreDiary::unlock` consumes
            // the relay client, so a rotation inside a failed unlock (a wrong password makes it
            // fetch the relay's copy of the bundle) would be lost, and the next unlock would
            // spend a used token and get the session revoked. Offline, the stored session stays
            // and the local bundle still unlocks.
            if let Ok(fresh) = relay.refresh().await {
                save_session(&store, SPACE_FFI, &fresh)?;
            }
            let diary = CoreDiary::unlock(store, relay, diary_password.as_bytes()).await?;
            diary.save_session(SPACE_FFI).await?;
            Ok(Self::wrap(diary, Vec::new()))
        })
        .await
    }

    /// Unlocks an existing diary on a new device: logs in to the account (as a new device of
    /// it), fetches the key bundle and unlocks it with the diary password.
    ///
    /// # Errors
    /// `WrongPassword` (account or diary password), `TotpRequired` / `WrongTotpCode` (the
    /// account has TOTP on: pass `totp_code`), `Diary` (the account has no diary), `Network`.
    #[uniffi::constructor(default(totp_code = None))]
    pub async fn unlock_new_device(
        relay_url: String,
        store_path: String,
        storage_key: Arc<StorageKey>,
        username: String,
        account_password: String,
        diary_password: String,
        totp_code: Option<String>,
    ) -> Result<Arc<Self>, HavenError> {
        let diary_password = Zeroizing::new(diary_password);
        let access = Access::Login {
            username,
            password: Zeroizing::new(account_password),
            totp_code,
        };
        runtime::run_blocking(move || async move {
            let (relay, store) = open_store(&relay_url, &store_path, &storage_key)?;
            sign_in(&relay, &store, &access).await?;
            let diary = CoreDiary::unlock(store, relay, diary_password.as_bytes()).await?;
            diary.save_session(SPACE_FFI).await?;
            Ok(Self::wrap(diary, Vec::new()))
        })
        .await
    }

    /// Recovers the diary with a recovery code on a new device and sets `new_password`; the
    /// recovery codes stay valid.
    ///
    /// # Errors
    /// `WrongRecoveryCode`, `WrongPassword` (account password), `TotpRequired` /
    /// `WrongTotpCode`, `Conflict`, `Network`.
    // Every argument is one the host must supply; grouping them in a record would only move
    // the list into the host's code.
    #[allow(clippy::too_many_arguments)]
    #[uniffi::constructor(default(totp_code = None))]
    pub async fn recover(
        relay_url: String,
        store_path: String,
        storage_key: Arc<StorageKey>,
        username: String,
        account_password: String,
        recovery_code: String,
        new_password: String,
        kdf: Option<KdfSettings>,
        totp_code: Option<String>,
    ) -> Result<Arc<Self>, HavenError> {
        let recovery_code = Zeroizing::new(recovery_code);
        let new_password = Zeroizing::new(new_password);
        let params = kdf_params(kdf)?;
        let access = Access::Login {
            username,
            password: Zeroizing::new(account_password),
            totp_code,
        };
        runtime::run_blocking(move || async move {
            let (relay, store) = open_store(&relay_url, &store_path, &storage_key)?;
            sign_in(&relay, &store, &access).await?;
            let diary = CoreDiary::recover(
                store,
                relay,
                &recovery_code,
                new_password.as_bytes(),
                params,
            )
            .await?;
            diary.save_session(SPACE_FFI).await?;
            Ok(Self::wrap(diary, Vec::new()))
        })
        .await
    }

    /// The recovery codes of a diary created by this object, once (empty afterwards and for
    /// unlocked diaries). Show them to the user to write down; they are stored nowhere.
    pub fn take_recovery_codes(&self) -> Vec<String> {
        let codes = std::mem::take(&mut *self.codes.lock().unwrap_or_else(PoisonError::into_inner));
        codes.iter().map(|c| c.as_str().to_owned()).collect()
    }

    /// Writes a new entry locally (sent by [`Diary::sync`]); returns its id.
    ///
    /// # Errors
    /// `InvalidInput` (a field over its limit), `Closed`, `Storage`.
    pub fn write(&self, entry: DiaryEntry) -> Result<String, HavenError> {
        let mut guard = self.guard();
        let diary = guard.as_mut().ok_or(HavenError::Closed)?;
        Ok(hex::encode(diary.write(entry.into_core())?))
    }

    /// Replaces an entry's fields locally (its attachments are kept; sent by [`Diary::sync`]).
    ///
    /// # Errors
    /// `InvalidInput`, `NotFound`, `Closed`.
    pub fn edit(&self, id: String, entry: DiaryEntry) -> Result<(), HavenError> {
        let id = parse_id("entry id", &id)?;
        let mut guard = self.guard();
        let diary = guard.as_mut().ok_or(HavenError::Closed)?;
        let attachments = diary
            .show(&id)
            .ok_or_else(|| HavenError::NotFound("no such diary entry".into()))?
            .attachments
            .clone();
        let mut new = entry.into_core();
        new.attachments = attachments;
        diary.edit(&id, new)?;
        Ok(())
    }

    /// The entry, or `None` if unknown or deleted.
    ///
    /// # Errors
    /// `InvalidInput` (malformed id), `Closed`.
    pub fn get(&self, id: String) -> Result<Option<DiaryEntry>, HavenError> {
        let id = parse_id("entry id", &id)?;
        let guard = self.guard();
        let diary = guard.as_ref().ok_or(HavenError::Closed)?;
        Ok(diary.show(&id).map(DiaryEntry::from_core))
    }

    /// Entries matching `query`, newest first (local: no request leaves the device).
    ///
    /// # Errors
    /// `Closed`.
    pub fn list(&self, query: DiaryQuery) -> Result<Vec<DiaryEntryItem>, HavenError> {
        let guard = self.guard();
        let diary = guard.as_ref().ok_or(HavenError::Closed)?;
        Ok(diary
            .list(&query.into_core())
            .into_iter()
            .map(|(id, e)| Self::item(id, e, diary.is_pending(&id)))
            .collect())
    }

    /// Full-text prefix search over the local index.
    ///
    /// # Errors
    /// `Closed`.
    pub fn search(&self, text: String) -> Result<Vec<DiaryEntryItem>, HavenError> {
        let guard = self.guard();
        let diary = guard.as_ref().ok_or(HavenError::Closed)?;
        Ok(diary
            .search(&text)
            .into_iter()
            .map(|(id, e)| Self::item(id, e, diary.is_pending(&id)))
            .collect())
    }

    /// Soft-deletes an entry on the relay (its history stays restorable).
    ///
    /// # Errors
    /// `InvalidInput`, `NotFound`, `Conflict`, `Network`, `Closed`.
    pub async fn delete(self: Arc<Self>, id: String) -> Result<(), HavenError> {
        let id = parse_id("entry id", &id)?;
        self.with_diary(move |d| Box::pin(async move { Ok(d.delete(&id).await?) }))
            .await
    }

    /// Restores a deleted entry from its last live revision (sent by [`Diary::sync`]).
    ///
    /// # Errors
    /// `InvalidInput`, `NotFound`, `Diary` (nothing to restore), `Network`, `Closed`.
    pub async fn restore(self: Arc<Self>, id: String) -> Result<(), HavenError> {
        let id = parse_id("entry id", &id)?;
        self.with_diary(move |d| Box::pin(async move { Ok(d.restore(&id).await?) }))
            .await
    }

    /// Every revision of an entry on the relay, oldest first, verified and decrypted.
    ///
    /// # Errors
    /// `InvalidInput`, `Tampered`, `Network`, `Closed`.
    pub async fn history(self: Arc<Self>, id: String) -> Result<Vec<DiaryRevision>, HavenError> {
        let id = parse_id("entry id", &id)?;
        self.with_diary(move |d| {
            Box::pin(async move {
                Ok(d.history(&id)
                    .await?
                    .iter()
                    .map(|r| DiaryRevision {
                        revision: r.revision,
                        deleted: r.deleted,
                        created_at: r.created_at,
                        entry: r.entry.as_ref().map(DiaryEntry::from_core),
                    })
                    .collect())
            })
        })
        .await
    }

    /// Pushes local edits (merging concurrent ones) and pulls what other devices wrote.
    ///
    /// # Errors
    /// `Tampered` (the relay served data that failed verification; nothing local changed),
    /// `Network`, `Closed`.
    pub async fn sync(self: Arc<Self>) -> Result<DiarySyncReport, HavenError> {
        self.with_diary(|d| {
            Box::pin(async move {
                let r = d.sync().await?;
                let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
                Ok(DiarySyncReport {
                    pulled: n(r.pulled),
                    pushed: n(r.pushed),
                    conflicts: n(r.conflicts),
                    pending: n(r.pending),
                })
            })
        })
        .await
    }

    /// Changes the diary password and starts a new key epoch (entries are untouched and stay
    /// readable; the old password opens nothing written from now on). Both passwords are wiped
    /// after use. Returns new recovery codes, to show once, when a diary created before key
    /// epochs was upgraded (its old codes are replaced); otherwise an empty list.
    ///
    /// # Errors
    /// `InvalidInput` (parameters), `Conflict` (changed on another device first), `Network`.
    pub async fn change_password(
        self: Arc<Self>,
        new_password: String,
        kdf: Option<KdfSettings>,
    ) -> Result<Vec<String>, HavenError> {
        let new_password = Zeroizing::new(new_password);
        let params = kdf_params(kdf)?;
        self.with_diary(move |d| {
            Box::pin(async move {
                let codes = d.change_password(new_password.as_bytes(), params).await?;
                Ok(codes_text(&codes)
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect())
            })
        })
        .await
    }

    /// Replaces every recovery code (the old ones stop working); returns the new ones, once.
    ///
    /// # Errors
    /// `Conflict`, `Network`, `Closed`.
    pub async fn regenerate_recovery_codes(self: Arc<Self>) -> Result<Vec<String>, HavenError> {
        self.with_diary(|d| {
            Box::pin(async move {
                let codes = d.regenerate_recovery_codes().await?;
                Ok(codes_text(&codes)
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect())
            })
        })
        .await
    }

    /// The account's devices as the relay lists them, oldest first (`current` marks this one).
    ///
    /// # Errors
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn devices(self: Arc<Self>) -> Result<Vec<AccountDevice>, HavenError> {
        self.with_diary(|d| Box::pin(async move { account::devices(d.relay()).await }))
            .await
    }

    /// Sets the name blob of device `device_number` (`None` clears it); the relay stores it as
    /// given, so encrypt it first.
    ///
    /// # Errors
    /// `InvalidInput` (no such device), `Refused` (`field_too_large`), `SessionRevoked`,
    /// `Network`, `Closed`.
    pub async fn rename_device(
        self: Arc<Self>,
        device_number: u32,
        name: Option<Vec<u8>>,
    ) -> Result<(), HavenError> {
        self.with_diary(move |d| {
            Box::pin(async move { account::rename_device(d.relay(), device_number, name).await })
        })
        .await
    }

    /// Removes another device from a diary account on the relay (its sessions end at once),
    /// proving the account password (and TOTP code) again. For an account that publishes a
    /// signed device list (a messenger's), unlink with `Messenger.unlink_device` instead, which
    /// also signs the list without it.
    ///
    /// # Errors
    /// `InvalidInput` (this device, no such device), `WrongPassword`, `TotpRequired`,
    /// `WrongTotpCode`, `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn unlink_device(
        self: Arc<Self>,
        device_number: u32,
        account_password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(account_password);
        self.with_diary(move |d| {
            Box::pin(async move {
                account::unlink_device(d.relay(), device_number, &password, totp_code.as_deref())
                    .await
            })
        })
        .await
    }

    /// Ends this device's relay session ([`Diary::relogin`] starts a new one); the diary stays
    /// unlocked and usable offline.
    ///
    /// # Errors
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn logout(self: Arc<Self>) -> Result<(), HavenError> {
        self.with_diary(|d| Box::pin(async move { Ok(d.relay().logout().await?) }))
            .await
    }

    /// Ends every session of the account, this device's included.
    ///
    /// # Errors
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn logout_everywhere(self: Arc<Self>) -> Result<(), HavenError> {
        self.with_diary(|d| Box::pin(async move { Ok(d.relay().logout_everywhere().await?) }))
            .await
    }

    /// Logs this device in again with the account password (and TOTP code): after a logout,
    /// an account password change on another device or a recovery. The session is saved.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `NotRegistered` (never signed in),
    /// `Refused` (`device_not_found`), `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn relogin(
        self: Arc<Self>,
        account_password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(account_password);
        self.with_diary(move |d| {
            Box::pin(async move {
                let stored =
                    load_session(d.store(), SPACE_FFI)?.ok_or(HavenError::NotRegistered)?;
                account::relogin(
                    d.relay(),
                    &stored.account_id,
                    &stored.device_id,
                    &password,
                    totp_code.as_deref(),
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Changes the **account** password (the relay login; the diary password is
    /// [`Diary::change_password`]). Every other session ends; this device continues in a new
    /// one. Both passwords are wiped after use.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `InvalidInput`, `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn change_account_password(
        self: Arc<Self>,
        account_password: String,
        new_account_password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(account_password);
        let new_password = Zeroizing::new(new_account_password);
        self.with_diary(move |d| {
            Box::pin(async move {
                account::change_password(d.relay(), &password, &new_password, totp_code.as_deref())
                    .await
            })
        })
        .await
    }

    /// Makes and sets a new **account** recovery code (for a lost account password, with
    /// [`crate::recover_account`]; the diary's own codes are [`Diary::regenerate_recovery_codes`]).
    /// Returns it to show once.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn set_account_recovery_code(
        self: Arc<Self>,
        account_password: String,
        totp_code: Option<String>,
    ) -> Result<String, HavenError> {
        let password = Zeroizing::new(account_password);
        self.with_diary(move |d| {
            Box::pin(async move {
                account::set_recovery_code(d.relay(), &password, totp_code.as_deref()).await
            })
        })
        .await
    }

    /// Starts TOTP setup for the account ([`Diary::totp_verify`] turns it on).
    ///
    /// # Errors
    /// `Refused` (`totp_already_enabled`), `SessionRevoked`, `Network`, `Closed`.
    pub async fn totp_setup(self: Arc<Self>) -> Result<TotpSetup, HavenError> {
        self.with_diary(|d| Box::pin(async move { account::totp_setup(d.relay()).await }))
            .await
    }

    /// Turns TOTP on with a code from the pending secret.
    ///
    /// # Errors
    /// `WrongTotpCode`, `Refused` (`totp_not_set_up`), `Network`, `Closed`.
    pub async fn totp_verify(self: Arc<Self>, code: String) -> Result<(), HavenError> {
        self.with_diary(move |d| {
            Box::pin(async move { Ok(d.relay().totp_verify(code.trim()).await?) })
        })
        .await
    }

    /// Turns TOTP off, proving the account password and a current code.
    ///
    /// # Errors
    /// `WrongPassword`, `WrongTotpCode`, `Refused` (`totp_not_enabled`), `Network`, `Closed`.
    pub async fn totp_disable(
        self: Arc<Self>,
        account_password: String,
        code: String,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(account_password);
        self.with_diary(move |d| {
            Box::pin(async move { account::totp_disable(d.relay(), &password, &code).await })
        })
        .await
    }

    /// Everything the relay stores about the account, as JSON text (its vault items are listed
    /// without their encrypted blobs).
    ///
    /// # Errors
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn export_account(self: Arc<Self>) -> Result<String, HavenError> {
        self.with_diary(|d| Box::pin(async move { account::export_account(d.relay()).await }))
            .await
    }

    /// Deletes the account on the relay with everything it stores (the diary's vault
    /// included), after proving the account password (and TOTP code) again. The local store is
    /// left as it is.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn delete_account(
        self: Arc<Self>,
        account_password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(account_password);
        self.with_diary(move |d| {
            Box::pin(async move {
                account::delete_account(d.relay(), &password, totp_code.as_deref()).await
            })
        })
        .await
    }

    /// Locks the diary: its keys are wiped and every later call fails with `Closed` (named
    /// `lock`, not `close`, which Kotlin's `AutoCloseable` already uses to free the object).
    pub fn lock(&self) {
        drop(self.guard().take());
        self.codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
