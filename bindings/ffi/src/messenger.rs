//! `Messenger`: one device's messaging, over `haven_client::Messenger`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use haven_client::messenger::Messenger as CoreMessenger;
use haven_client::{ClientStore, Device, PendingLink, RelayClient};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::account::{self, AccountDevice, TotpSetup};
use crate::error::HavenError;
use crate::key::StorageKey;
use crate::runtime;
use crate::types::{
    Contact, Conversation, Event, GroupInfo, Message, PushEndpoint, ReceiptPolicy, ReportReceipt,
    SafetyNumber, WakeSummary, parse_id,
};

/// Receives the messenger's events once [`Messenger::start`] was called with it.
#[uniffi::export(callback_interface)]
pub trait EventListener: Send + Sync {
    /// Called for each event, in order, on a library thread: return quickly (hand the event to
    /// the UI thread or a queue).
    fn on_event(&self, event: Event);
}

/// The messenger of one device: contacts, 1:1 and group conversations, attachments, safety
/// numbers and an event stream. Create it with [`Messenger::register`], [`Messenger::link`] or
/// [`Messenger::load`]; call [`Messenger::start`] to stay connected, or [`Messenger::sync`] to
/// fetch what is waiting once.
#[derive(uniffi::Object)]
pub struct Messenger {
    /// `None` after [`Messenger::shutdown`].
    inner: RwLock<Option<Arc<CoreMessenger>>>,
    /// The stream [`Messenger::next_event`] reads, subscribed at creation so no event is lost.
    events: tokio::sync::Mutex<broadcast::Receiver<haven_client::Event>>,
    /// The connection loop and the listener's forwarder, while started.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// This device's id on the relay, kept for [`Messenger::relogin`] (a logout forgets the
    /// session that names it).
    device_id: String,
}

impl Drop for Messenger {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens the relay client and the encrypted store.
fn open_parts(
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

impl Messenger {
    async fn wrap(device: Device) -> Arc<Self> {
        let device_id = device
            .relay()
            .session()
            .await
            .map(|s| s.device_id)
            .unwrap_or_default();
        let core = Arc::new(CoreMessenger::new(Arc::new(device)));
        let events = core.subscribe();
        Arc::new(Self {
            inner: RwLock::new(Some(core)),
            events: tokio::sync::Mutex::new(events),
            tasks: Mutex::new(Vec::new()),
            device_id,
        })
    }

    fn core(&self) -> Result<Arc<CoreMessenger>, HavenError> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(HavenError::Closed)
    }

    /// The contact's account, which must be in the contact list.
    fn known_contact(core: &CoreMessenger, account_id: &str) -> Result<[u8; 16], HavenError> {
        let account = parse_id("account id", account_id)?;
        match core.contact(&account)? {
            Some(_) => Ok(account),
            None => Err(HavenError::UnknownContact(format!(
                "{} is not a contact (add_contact first)",
                hex::encode(account)
            ))),
        }
    }

    /// Parses a conversation; a 1:1 conversation must be with a contact.
    fn conversation(
        core: &CoreMessenger,
        conversation: &Conversation,
    ) -> Result<haven_client::Conversation, HavenError> {
        let parsed = conversation.parse()?;
        if let Conversation::Direct { account_id } = conversation {
            Self::known_contact(core, account_id)?;
        }
        Ok(parsed)
    }

    fn find_message(
        core: &CoreMessenger,
        conversation: haven_client::Conversation,
        message_id: &[u8; 16],
    ) -> Result<haven_client::MessageRecord, HavenError> {
        core.history(conversation)?
            .into_iter()
            .find(|m| &m.message_id == message_id)
            .ok_or_else(|| HavenError::NotFound(format!("message {}", hex::encode(message_id))))
    }
}

// Device set-up and file transfers keep state that is not `Send` (the thread RNG, the store)
// across awaits: they run on a blocking thread of the runtime (`run_blocking`), the rest as
// ordinary tasks.
#[uniffi::export]
impl Messenger {
    /// Registers a new account with this device as its first device (OPAQUE: the password
    /// never leaves the device), keeping every secret in the encrypted store at `store_path`.
    /// The password is wiped after use.
    ///
    /// # Errors
    /// `InvalidInput` (relay URL, store path), `WrongStorageKey` (an existing store with
    /// another key), `Refused` (`username_taken`, ...), `Network`.
    #[uniffi::constructor]
    pub async fn register(
        relay_url: String,
        store_path: String,
        storage_key: Arc<StorageKey>,
        username: Option<String>,
        password: String,
    ) -> Result<Arc<Self>, HavenError> {
        let password = Zeroizing::new(password);
        runtime::run_blocking(move || async move {
            let (relay, store) = open_parts(&relay_url, &store_path, &storage_key)?;
            let username = username.map(|u| u.trim().to_owned());
            let device =
                Device::register(relay, store, username.as_deref(), password.as_bytes()).await?;
            Ok(Self::wrap(device).await)
        })
        .await
    }

    /// Reopens the device kept in the store at `store_path` (after an app restart).
    ///
    /// # Errors
    /// `WrongStorageKey`, `NotRegistered` (the store holds no device), `InvalidInput`.
    #[uniffi::constructor]
    pub async fn load(
        relay_url: String,
        store_path: String,
        storage_key: Arc<StorageKey>,
    ) -> Result<Arc<Self>, HavenError> {
        runtime::run_blocking(move || async move {
            if !Path::new(&store_path).exists() {
                return Err(HavenError::NotRegistered);
            }
            let (relay, store) = open_parts(&relay_url, &store_path, &storage_key)?;
            let device = Device::open(relay, store).await?;
            Ok(Self::wrap(device).await)
        })
        .await
    }

    /// This account's id (32 hex digits): what contacts add.
    ///
    /// # Errors
    /// `Closed`.
    pub fn account_id(&self) -> Result<String, HavenError> {
        Ok(self.core()?.device().account_id().to_owned())
    }

    /// This device's number within the account.
    ///
    /// # Errors
    /// `Closed`.
    pub fn device_number(&self) -> Result<u32, HavenError> {
        Ok(self.core()?.device().device_number())
    }

    /// This device's public identity key (base64), for [`crate::safety_number`].
    ///
    /// # Errors
    /// `Closed`, `Storage`.
    pub fn identity_key(&self) -> Result<String, HavenError> {
        let key = self.core()?.device().identity_key()?;
        Ok(base64::engine::general_purpose::STANDARD.encode(key.to_bytes()))
    }

    /// Adds a contact by account id (32 hex digits) and sends it this account's contact card.
    ///
    /// # Errors
    /// `InvalidInput` (malformed id, this account), `UnknownContact` (no such account),
    /// `IdentityChanged`, `Network`, `Closed`.
    pub async fn add_contact(self: Arc<Self>, account_id: String) -> Result<Contact, HavenError> {
        let account = parse_id("account id", &account_id)?;
        let core = self.core()?;
        runtime::run(async move { Ok(core.add_contact(&hex::encode(account)).await?.into()) }).await
    }

    /// Adds a contact by username (the relay resolves it and forgets the lookup).
    ///
    /// # Errors
    /// `UnknownContact` (no such username), then as [`Messenger::add_contact`].
    pub async fn add_contact_by_username(
        self: Arc<Self>,
        username: String,
    ) -> Result<Contact, HavenError> {
        if username.trim().is_empty() {
            return Err(HavenError::InvalidInput("username is empty".into()));
        }
        let core = self.core()?;
        runtime::run(async move { Ok(core.add_contact_by_username(&username).await?.into()) }).await
    }

    /// Blocks (`true`) or unblocks an account: its messages are dropped on receipt (1:1 and in
    /// groups) and nothing is sent to it 1:1; the relay is not told.
    ///
    /// # Errors
    /// `Closed`, `InvalidArgument` (a malformed id, this account), `Storage`.
    pub fn set_blocked(&self, account_id: String, blocked: bool) -> Result<Contact, HavenError> {
        Ok(self.core()?.set_blocked(&account_id, blocked)?.into())
    }

    /// Every contact.
    ///
    /// # Errors
    /// `Closed`, `Storage`.
    pub fn contacts(&self) -> Result<Vec<Contact>, HavenError> {
        Ok(self
            .core()?
            .contacts()?
            .into_iter()
            .map(Contact::from)
            .collect())
    }

    /// The safety numbers with each known device of a contact: compare them out of band.
    ///
    /// # Errors
    /// `InvalidInput`, `UnknownContact`, `Closed`.
    pub fn safety_numbers(&self, account_id: String) -> Result<Vec<SafetyNumber>, HavenError> {
        let core = self.core()?;
        let account = Self::known_contact(&core, &account_id)?;
        Ok(core
            .safety_numbers(&account)?
            .into_iter()
            .map(|s| SafetyNumber {
                device: s.device,
                digits: s.digits,
            })
            .collect())
    }

    /// The safety number with a contact's account (60 digits, PROTOCOL §15.4): compare it out
    /// of band; it stays the same while either side links or unlinks devices. `None` while
    /// the contact's signed device list is not known (or it publishes none).
    ///
    /// # Errors
    /// `InvalidInput` (malformed id), `Closed`.
    pub fn account_safety_number(&self, account_id: String) -> Result<Option<String>, HavenError> {
        let account = parse_id("account id", &account_id)?;
        Ok(self.core()?.device().account_safety_number(&account)?)
    }

    /// Accepts a contact account's new identity key after an `AccountKeyChanged` event or
    /// error, once the user compared the new account safety number.
    ///
    /// # Errors
    /// `InvalidInput` (malformed id, no change pending), `Closed`.
    pub fn accept_account_key(&self, account_id: String) -> Result<(), HavenError> {
        let account = parse_id("account id", &account_id)?;
        self.core()?.device().accept_account_key(&account)?;
        Ok(())
    }

    /// Reads a contact's signed device list again now; its devices (added, removed,
    /// re-keyed), a changed account key or a refused list arrive as events.
    ///
    /// # Errors
    /// `InvalidInput` (malformed id), `AccountKeyChanged`, `Tampered` (a refused list),
    /// `Network`, `Closed`.
    pub async fn refresh_devices(self: Arc<Self>, account_id: String) -> Result<(), HavenError> {
        let account = parse_id("account id", &account_id)?;
        let core = self.core()?;
        runtime::run(async move { Ok(core.refresh_devices(&account).await?) }).await
    }

    /// Marks a contact's account as verified (after the user compared the account safety
    /// number): a device it links later blocks sends to it (`UnconfirmedDevices`) until
    /// [`Messenger::confirm_devices`].
    ///
    /// # Errors
    /// `InvalidInput` (malformed id), `Protocol` (its device list is not known yet: send to it
    /// or read its safety number first), `Closed`.
    pub fn mark_verified(&self, account_id: String) -> Result<(), HavenError> {
        let account = parse_id("account id", &account_id)?;
        Ok(self.core()?.device().mark_verified(&account)?)
    }

    /// Confirms a verified contact's new devices (after an `UnconfirmedDevices` error or a
    /// `DevicesChanged` event).
    ///
    /// # Errors
    /// `InvalidInput` (malformed id, not verified), `Closed`.
    pub fn confirm_devices(&self, account_id: String) -> Result<(), HavenError> {
        let account = parse_id("account id", &account_id)?;
        Ok(self.core()?.device().confirm_devices(&account)?)
    }

    /// Whether the contact's account is verified and every device it lists is confirmed.
    ///
    /// # Errors
    /// `InvalidInput` (malformed id), `Closed`.
    pub fn is_verified(&self, account_id: String) -> Result<bool, HavenError> {
        let account = parse_id("account id", &account_id)?;
        Ok(matches!(
            self.core()?.device().verification(&account)?,
            haven_client::Verification::Verified
        ))
    }

    /// Approves the new device showing `code` (`haven-link:…`, from `LinkRequest.code()` on
    /// the new device): it joins this account end to end encrypted through the relay.
    ///
    /// # Errors
    /// `InvalidInput` (not a link code, or a typo), `NoAccountKey`, `Refused`
    /// (`provisioning_not_found` once the code expired), `Network`, `Closed`.
    pub async fn approve_link(self: Arc<Self>, code: String) -> Result<(), HavenError> {
        let core = self.core()?;
        runtime::run(async move { Ok(core.device().approve_link(code.trim()).await?) }).await
    }

    /// Unlinks another device of this account (by its number): a new signed device list
    /// without it, then the relay forgets it. The account password (and the TOTP code when
    /// TOTP is on) is proven again first; it is wiped after use.
    ///
    /// # Errors
    /// `InvalidInput` (this device, or no such device), `WrongPassword`, `NoAccountKey`,
    /// `TotpRequired`, `WrongTotpCode`, `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn unlink_device(
        self: Arc<Self>,
        device_number: u32,
        password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(password);
        let core = self.core()?;
        runtime::run(async move {
            let fresh =
                account::fresh_auth(core.device().relay(), &password, totp_code.as_deref()).await?;
            Ok(core.device().unlink_device(device_number, fresh).await?)
        })
        .await
    }

    /// The account's devices as the relay lists them, oldest first (`current` marks this one).
    ///
    /// # Errors
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn devices(self: Arc<Self>) -> Result<Vec<AccountDevice>, HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let result = account::devices(core.device().relay()).await;
            core.device().persist_session().await?;
            result
        })
        .await
    }

    /// Sets the name blob of device `device_number` (`None` clears it). The relay stores it as
    /// given and lists it back in [`AccountDevice::name`]: encrypt it first (with a key the
    /// account's devices share), the relay must not read device names.
    ///
    /// # Errors
    /// `InvalidInput` (no such device), `Refused` (`field_too_large`: over 1024 bytes),
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn rename_device(
        self: Arc<Self>,
        device_number: u32,
        name: Option<Vec<u8>>,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let result = account::rename_device(core.device().relay(), device_number, name).await;
            core.device().persist_session().await?;
            result
        })
        .await
    }

    /// Ends this device's session on the relay ([`Messenger::relogin`] starts a new one). The
    /// connection started by [`Messenger::start`] stops.
    ///
    /// # Errors
    /// `SessionRevoked` (already ended), `Network`, `Closed`.
    pub async fn logout(self: Arc<Self>) -> Result<(), HavenError> {
        let core = self.core()?;
        self.stop();
        runtime::run(async move { Ok(core.device().relay().logout().await?) }).await
    }

    /// Ends every session of the account, this device's included (a lost or stolen device's
    /// too); each device logs in again with [`Messenger::relogin`].
    ///
    /// # Errors
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn logout_everywhere(self: Arc<Self>) -> Result<(), HavenError> {
        let core = self.core()?;
        self.stop();
        runtime::run(async move { Ok(core.device().relay().logout_everywhere().await?) }).await
    }

    /// Logs this device in again with the account password (and the TOTP code when TOTP is on):
    /// after a logout, a password change on another device or a recovery. The new session is
    /// saved in the store; the password is wiped after use.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `Refused` (`device_not_found` once
    /// the device was unlinked or the account deleted, `rate_limited`), `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn relogin(
        self: Arc<Self>,
        password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(password);
        let core = self.core()?;
        let device_id = self.device_id.clone();
        runtime::run(async move {
            let device = core.device();
            account::relogin(
                device.relay(),
                device.account_id(),
                &device_id,
                &password,
                totp_code.as_deref(),
            )
            .await?;
            Ok(device.persist_session().await?)
        })
        .await
    }

    /// Changes the account password (OPAQUE: neither password reaches the relay). The current
    /// password (and TOTP code) is proven first; every other session of the account ends and
    /// this device continues in a new one, saved in the store. Messages and keys are
    /// unaffected. Both passwords are wiped after use.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `InvalidInput` (empty new password),
    /// `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn change_password(
        self: Arc<Self>,
        password: String,
        new_password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(password);
        let new_password = Zeroizing::new(new_password);
        let core = self.core()?;
        runtime::run(async move {
            let device = core.device();
            account::change_password(
                device.relay(),
                &password,
                &new_password,
                totp_code.as_deref(),
            )
            .await?;
            Ok(device.persist_session().await?)
        })
        .await
    }

    /// Makes a new account recovery code and sets it on the relay (which keeps only an OPAQUE
    /// record of it); the previous code stops working. Returns the code: show it to the user
    /// once, it is stored nowhere. It replaces a lost password with [`crate::recover_account`].
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn set_recovery_code(
        self: Arc<Self>,
        password: String,
        totp_code: Option<String>,
    ) -> Result<String, HavenError> {
        let password = Zeroizing::new(password);
        let core = self.core()?;
        runtime::run(async move {
            let result =
                account::set_recovery_code(core.device().relay(), &password, totp_code.as_deref())
                    .await;
            core.device().persist_session().await?;
            result
        })
        .await
    }

    /// Starts TOTP setup: a pending secret for the authenticator app; TOTP is on once
    /// [`Messenger::totp_verify`] confirms a code from it.
    ///
    /// # Errors
    /// `Refused` (`totp_already_enabled`), `SessionRevoked`, `Network`, `Closed`.
    pub async fn totp_setup(self: Arc<Self>) -> Result<TotpSetup, HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let result = account::totp_setup(core.device().relay()).await;
            core.device().persist_session().await?;
            result
        })
        .await
    }

    /// Turns TOTP on with a code from the pending secret: from then on every login,
    /// re-authentication and recovery needs a code.
    ///
    /// # Errors
    /// `WrongTotpCode`, `Refused` (`totp_not_set_up`, `totp_already_enabled`), `Network`,
    /// `Closed`.
    pub async fn totp_verify(self: Arc<Self>, code: String) -> Result<(), HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let result = core.device().relay().totp_verify(code.trim()).await;
            core.device().persist_session().await?;
            Ok(result?)
        })
        .await
    }

    /// Turns TOTP off, proving the password and a current code (the one code serves both).
    ///
    /// # Errors
    /// `WrongPassword`, `WrongTotpCode`, `Refused` (`totp_not_enabled`), `Network`, `Closed`.
    pub async fn totp_disable(
        self: Arc<Self>,
        password: String,
        code: String,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(password);
        let core = self.core()?;
        runtime::run(async move {
            let result = account::totp_disable(core.device().relay(), &password, &code).await;
            core.device().persist_session().await?;
            result
        })
        .await
    }

    /// Everything the relay stores about the account (PROTOCOL §11.9), as JSON text
    /// (`"format": "haven-relay-export/v1"`): devices, sessions, vault items, OPAQUE records.
    ///
    /// # Errors
    /// `SessionRevoked`, `Network`, `Closed`.
    pub async fn export_account(self: Arc<Self>) -> Result<String, HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let result = account::export_account(core.device().relay()).await;
            core.device().persist_session().await?;
            result
        })
        .await
    }

    /// Deletes the account on the relay, with everything it stores for it (devices, keys,
    /// queued messages), after proving the password (and TOTP code) again. The local store is
    /// left as it is; calls that reach the relay fail with `SessionRevoked` afterwards.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpRequired`, `WrongTotpCode`, `Network`, `Closed`.
    #[uniffi::method(default(totp_code = None))]
    pub async fn delete_account(
        self: Arc<Self>,
        password: String,
        totp_code: Option<String>,
    ) -> Result<(), HavenError> {
        let password = Zeroizing::new(password);
        let core = self.core()?;
        self.stop();
        runtime::run(async move {
            account::delete_account(core.device().relay(), &password, totp_code.as_deref()).await
        })
        .await
    }

    /// Sends a text; returns the message id.
    ///
    /// # Errors
    /// `InvalidInput` (empty or too long text, malformed id), `UnknownContact`, `NotFound`
    /// (unknown group), `IdentityChanged`, `Network`, `Closed`.
    pub async fn send_text(
        self: Arc<Self>,
        conversation: Conversation,
        text: String,
    ) -> Result<String, HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        runtime::run(async move { Ok(hex::encode(core.send_text(conversation, &text).await?)) })
            .await
    }

    /// Encrypts and uploads the file at `path` as an attachment (padded, streamed) and sends a
    /// message carrying it, with an optional caption; returns the message id.
    ///
    /// # Errors
    /// `InvalidInput`, `Attachment` (unreadable file, quota, size), then as
    /// [`Messenger::send_text`].
    pub async fn send_file(
        self: Arc<Self>,
        conversation: Conversation,
        path: String,
        content_type: String,
        caption: String,
    ) -> Result<String, HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(HavenError::InvalidInput(format!(
                "{} is not a readable file",
                path.display()
            )));
        }
        runtime::run_blocking(move || async move {
            let id = core
                .send_file(conversation, &path, &content_type, &caption, |_| {})
                .await?;
            Ok(hex::encode(id))
        })
        .await
    }

    /// Downloads, verifies and decrypts a message's attachment into `dest_path`.
    ///
    /// # Errors
    /// `NotFound` (no such message), `InvalidInput` (no attachment), `Attachment`
    /// (tampered blob, transfer), `Closed`.
    pub async fn save_attachment(
        self: Arc<Self>,
        conversation: Conversation,
        message_id: String,
        dest_path: String,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let conversation = conversation.parse()?;
        let id = parse_id("message id", &message_id)?;
        let record = Self::find_message(&core, conversation, &id)?;
        runtime::run_blocking(move || async move {
            core.save_attachment(&record, Path::new(&dest_path), |_| {})
                .await?;
            Ok(())
        })
        .await
    }

    /// The messages of a conversation, oldest first.
    ///
    /// # Errors
    /// `InvalidInput`, `Closed`, `Storage`.
    pub fn history(&self, conversation: Conversation) -> Result<Vec<Message>, HavenError> {
        let conversation = conversation.parse()?;
        Ok(self
            .core()?
            .history(conversation)?
            .into_iter()
            .map(Message::from)
            .collect())
    }

    /// The conversations with stored messages.
    ///
    /// # Errors
    /// `Closed`, `Storage`.
    pub fn conversations(&self) -> Result<Vec<Conversation>, HavenError> {
        Ok(self
            .core()?
            .conversations()?
            .into_iter()
            .map(Conversation::from)
            .collect())
    }

    /// Marks messages as read and tells their senders.
    ///
    /// # Errors
    /// As [`Messenger::send_text`].
    pub async fn mark_read(
        self: Arc<Self>,
        conversation: Conversation,
        message_ids: Vec<String>,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        let ids = message_ids
            .iter()
            .map(|m| parse_id("message id", m))
            .collect::<Result<Vec<_>, _>>()?;
        runtime::run(async move { Ok(core.mark_read(conversation, &ids).await?) }).await
    }

    /// Tells a contact that this user started or stopped typing (never stored by the relay).
    ///
    /// # Errors
    /// As [`Messenger::send_text`]; `InvalidInput` for a group.
    pub async fn send_typing(
        self: Arc<Self>,
        conversation: Conversation,
        started: bool,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        runtime::run(async move { Ok(core.send_typing(conversation, started).await?) }).await
    }

    /// Reacts to a message (or removes this account's reaction).
    ///
    /// # Errors
    /// As [`Messenger::send_text`].
    pub async fn react(
        self: Arc<Self>,
        conversation: Conversation,
        message_id: String,
        emoji: String,
        remove: bool,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        let id = parse_id("message id", &message_id)?;
        runtime::run(async move { Ok(core.react(conversation, id, &emoji, remove).await?) }).await
    }

    /// Edits one of this account's messages.
    ///
    /// # Errors
    /// `NotFound` (unknown message), `InvalidInput` (not this account's), then as
    /// [`Messenger::send_text`].
    pub async fn edit(
        self: Arc<Self>,
        conversation: Conversation,
        message_id: String,
        text: String,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        let id = parse_id("message id", &message_id)?;
        runtime::run(async move { Ok(core.edit(conversation, id, &text).await?) }).await
    }

    /// Deletes one of this account's messages for everyone.
    ///
    /// # Errors
    /// As [`Messenger::edit`].
    pub async fn delete_message(
        self: Arc<Self>,
        conversation: Conversation,
        message_id: String,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        let id = parse_id("message id", &message_id)?;
        runtime::run(async move { Ok(core.delete(conversation, id).await?) }).await
    }

    /// Reports a message received in `conversation` as abuse (PROTOCOL §16.9): reveals that
    /// one message and its sender to the relay, which verifies both from the message's
    /// franking; nothing about any other message.
    ///
    /// # Errors
    /// `InvalidInput` (a malformed id), `NotFound` (unknown message), `Report` (not reportable,
    /// past the report window, or refused by the relay), `Network`, `SessionRevoked`.
    pub async fn report_message(
        self: Arc<Self>,
        conversation: Conversation,
        message_id: String,
    ) -> Result<ReportReceipt, HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        let id = parse_id("message id", &message_id)?;
        runtime::run(async move {
            let answer = core.report(conversation, id).await?;
            Ok(ReportReceipt {
                report_id: answer.report_id.to_hex(),
                attributed: answer.attributed,
            })
        })
        .await
    }

    /// Sets the conversation's disappearing-message timer in seconds (0 = off) for both sides.
    ///
    /// # Errors
    /// As [`Messenger::send_text`].
    pub async fn set_timer(
        self: Arc<Self>,
        conversation: Conversation,
        expire_secs: u32,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let conversation = Self::conversation(&core, &conversation)?;
        runtime::run(async move { Ok(core.set_timer(conversation, expire_secs).await?) }).await
    }

    /// Every group this device knows.
    ///
    /// # Errors
    /// `Closed`, `Storage`.
    pub fn groups(&self) -> Result<Vec<GroupInfo>, HavenError> {
        Ok(self
            .core()?
            .groups()?
            .into_iter()
            .map(GroupInfo::from)
            .collect())
    }

    /// Creates a group with `members` (account ids of contacts; this account is added);
    /// returns the group id.
    ///
    /// # Errors
    /// `InvalidInput` (malformed id, name or member count over a limit), `UnknownContact`,
    /// `Network`, `Closed`.
    pub async fn create_group(
        self: Arc<Self>,
        name: String,
        members: Vec<String>,
    ) -> Result<String, HavenError> {
        let core = self.core()?;
        let members = members
            .iter()
            .map(|m| Self::known_contact(&core, m))
            .collect::<Result<Vec<_>, _>>()?;
        runtime::run(async move { Ok(hex::encode(core.create_group(&name, &members).await?)) })
            .await
    }

    /// Adds a contact to a group.
    ///
    /// # Errors
    /// `NotFound` (unknown group), `InvalidInput` (already a member), `UnknownContact`.
    pub async fn add_member(
        self: Arc<Self>,
        group_id: String,
        account_id: String,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let group = parse_id("group id", &group_id)?;
        let account = Self::known_contact(&core, &account_id)?;
        runtime::run(async move { Ok(core.add_member(&group, &account).await?) }).await
    }

    /// Removes a member from a group: a new epoch starts that the removed member cannot read.
    ///
    /// # Errors
    /// `NotFound` (unknown group), `InvalidInput` (not a member).
    pub async fn remove_member(
        self: Arc<Self>,
        group_id: String,
        account_id: String,
    ) -> Result<(), HavenError> {
        let core = self.core()?;
        let group = parse_id("group id", &group_id)?;
        let account = parse_id("account id", &account_id)?;
        runtime::run(async move { Ok(core.remove_member(&group, &account).await?) }).await
    }

    /// When this device sends the delivery receipts it owes (kept in the store; by default
    /// delayed 5 to 60 seconds and batched per contact).
    ///
    /// # Errors
    /// `Closed`, `Storage`.
    pub fn receipt_policy(&self) -> Result<ReceiptPolicy, HavenError> {
        Ok(self.core()?.receipt_policy()?.into())
    }

    /// Sets when this device sends delivery receipts; receipts already owed follow it.
    ///
    /// # Errors
    /// `InvalidInput` (a delay over 3600 seconds, or `min_secs > max_secs`), `Closed`,
    /// `Storage`.
    pub fn set_receipt_policy(&self, policy: ReceiptPolicy) -> Result<(), HavenError> {
        Ok(self.core()?.set_receipt_policy(policy.into())?)
    }

    /// Fetches and processes everything waiting once (over REST); returns the number of
    /// envelopes processed. Their events are delivered as usual. Delayed delivery receipts
    /// that are due go out; those not due yet wait for a later `sync` or for `start`.
    ///
    /// # Errors
    /// `Network`, `SessionRevoked`, `Closed`.
    pub async fn sync(self: Arc<Self>) -> Result<u32, HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let n = core.sync().await?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
        .await
    }

    /// The relay's VAPID public key (base64url, no padding): the `applicationServerKey` a
    /// browser subscribes with.
    ///
    /// # Errors
    /// `Refused` (the relay sends no Web Push), `Network`, `Closed`.
    pub async fn push_vapid_key(self: Arc<Self>) -> Result<String, HavenError> {
        let core = self.core()?;
        runtime::run(async move { Ok(core.device().relay().push_vapid_key().await?) }).await
    }

    /// Registers a Web Push subscription (its endpoint URL and its `p256dh` and `auth` keys,
    /// base64url) for this device; returns the endpoint's id (the same one when registered
    /// again).
    ///
    /// # Errors
    /// `InvalidInput` (checked before anything is sent), `Refused`
    /// (`too_many_push_endpoints`: at most 5 per device), `Network`, `Closed`.
    pub async fn register_web_push(
        self: Arc<Self>,
        endpoint: String,
        p256dh: String,
        auth: String,
    ) -> Result<String, HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let relay = core.device().relay();
            let id = relay.register_web_push(&endpoint, &p256dh, &auth).await?;
            core.device().persist_session().await?;
            Ok(id)
        })
        .await
    }

    /// Registers this device's key at a push gateway: `app_id` is the app's id at the relay's
    /// gateway, `pushkey` the APNs device token or FCM registration token. Returns the
    /// endpoint's id (the same one when registered again).
    ///
    /// # Errors
    /// `InvalidInput`, `Refused` (`too_many_push_endpoints`, `push_gateway_not_configured`),
    /// `Network`, `Closed`.
    pub async fn register_gateway_push(
        self: Arc<Self>,
        app_id: String,
        pushkey: String,
    ) -> Result<String, HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let id = core
                .device()
                .relay()
                .register_gateway_push(&app_id, &pushkey)
                .await?;
            core.device().persist_session().await?;
            Ok(id)
        })
        .await
    }

    /// This device's push endpoints.
    ///
    /// # Errors
    /// `Network`, `SessionRevoked`, `Closed`.
    pub async fn push_endpoints(self: Arc<Self>) -> Result<Vec<PushEndpoint>, HavenError> {
        let core = self.core()?;
        runtime::run(async move {
            let list = core.device().relay().push_endpoints().await?;
            Ok(list.into_iter().map(PushEndpoint::from).collect())
        })
        .await
    }

    /// Removes one of this device's push endpoints.
    ///
    /// # Errors
    /// `InvalidInput` (not an id), `Refused` (not found), `Network`, `Closed`.
    pub async fn remove_push_endpoint(self: Arc<Self>, id: String) -> Result<(), HavenError> {
        let core = self.core()?;
        runtime::run(async move { Ok(core.device().relay().remove_push_endpoint(&id).await?) })
            .await
    }

    /// Handles a push wake-up, from the app's push handler: fetches what is waiting, processes
    /// it (decrypt, store, delivery receipts per the policy), acknowledges it and returns what
    /// it found, for a local notification, within `budget_ms` (0: the default, 25 s; iOS gives
    /// a handler about 30 s). Safe while [`Messenger::start`] is connected and when called
    /// twice: each message is processed once. Events are delivered as usual.
    ///
    /// # Errors
    /// `Network`, `SessionRevoked`, `Closed`.
    pub async fn handle_wake_up(
        self: Arc<Self>,
        budget_ms: u64,
    ) -> Result<WakeSummary, HavenError> {
        let core = self.core()?;
        let budget = if budget_ms == 0 {
            haven_client::messenger::WAKE_BUDGET_MS
        } else {
            budget_ms
        };
        runtime::run(async move {
            let summary = core.handle_wake_up(Duration::from_millis(budget)).await?;
            Ok(WakeSummary::from(summary))
        })
        .await
    }

    /// Stays connected (WebSocket with reconnects) and processes messages as they arrive,
    /// until [`Messenger::stop`] or [`Messenger::shutdown`]. With a `listener`, every event is
    /// handed to it; events can also be pulled with [`Messenger::next_event`]. Calling it again
    /// restarts the connection.
    ///
    /// # Errors
    /// `Closed`, `Internal` (no runtime).
    pub fn start(&self, listener: Option<Box<dyn EventListener>>) -> Result<(), HavenError> {
        let core = self.core()?;
        let rt = runtime::get()?;
        self.stop();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listener) = listener {
            // Subscribed before the connection starts, so the listener misses nothing.
            let mut rx = core.subscribe();
            tasks.push(rt.spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(e) => {
                            if let Some(event) = Event::from_core(e) {
                                listener.on_event(event);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            }));
        }
        tasks.push(rt.spawn(async move {
            // A revoked session ends the loop; it is reported as a `Connection` event.
            let _ = core.run().await;
        }));
        Ok(())
    }

    /// Stops the connection started by [`Messenger::start`] (and its listener).
    pub fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for t in tasks {
            t.abort();
        }
    }

    /// The next event, waiting at most `timeout_ms`; `None` on timeout. Events are kept from
    /// the messenger's creation on (the oldest are dropped past 1024 unread).
    ///
    /// # Errors
    /// `Closed`.
    pub async fn next_event(self: Arc<Self>, timeout_ms: u64) -> Result<Option<Event>, HavenError> {
        self.core()?;
        runtime::run(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            let mut rx = self.events.lock().await;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => return Ok(None),
                    Ok(Ok(e)) => {
                        if let Some(event) = Event::from_core(e) {
                            return Ok(Some(event));
                        }
                    }
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(HavenError::Closed);
                    }
                }
            }
        })
        .await
    }

    /// Stops the connection, saves the session and releases the device; every later call
    /// fails with `Closed`.
    ///
    /// # Errors
    /// `Storage` (the session could not be saved).
    pub async fn shutdown(self: Arc<Self>) -> Result<(), HavenError> {
        self.stop();
        let core = self
            .inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match core {
            Some(core) => {
                runtime::run(async move { Ok(core.device().persist_session().await?) }).await
            }
            None => Ok(()),
        }
    }
}

/// A new device waiting to be approved by a device of the account it joins (PROTOCOL §15.3).
/// Show [`LinkRequest::code`] on this device; approve it on the other
/// (`Messenger.approve_link`); then [`LinkRequest::finish`]. A password alone never adds a
/// device to an account.
#[derive(uniffi::Object)]
pub struct LinkRequest {
    code: String,
    parts: tokio::sync::Mutex<Option<(PendingLink, ClientStore)>>,
}

#[uniffi::export]
impl LinkRequest {
    /// Opens a provisioning box on the relay for a new device whose encrypted store will be at
    /// `store_path`.
    ///
    /// # Errors
    /// `InvalidInput` (relay URL, store path), `WrongStorageKey`, `Network`.
    #[uniffi::constructor]
    pub async fn start(
        relay_url: String,
        store_path: String,
        storage_key: Arc<StorageKey>,
    ) -> Result<Arc<Self>, HavenError> {
        runtime::run_blocking(move || async move {
            let (relay, store) = open_parts(&relay_url, &store_path, &storage_key)?;
            let pending = Device::start_link(relay).await?;
            Ok(Arc::new(Self {
                code: pending.code(),
                parts: tokio::sync::Mutex::new(Some((pending, store))),
            }))
        })
        .await
    }

    /// The code to show the approving device (`haven-link:` and 85 characters; also fit for a
    /// QR code).
    #[must_use]
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// Waits up to `timeout_secs` for the approval, then joins the account and returns the
    /// new device's messenger. Call it once.
    ///
    /// # Errors
    /// `Protocol` (no approval in time), `AccountKeyChanged`, `Tampered` (the relay served a
    /// list the grant does not match), `Refused`, `Network`, `Closed` (called twice).
    pub async fn finish(self: Arc<Self>, timeout_secs: u32) -> Result<Arc<Messenger>, HavenError> {
        let parts = self.parts.lock().await.take().ok_or(HavenError::Closed)?;
        runtime::run_blocking(move || async move {
            let (pending, store) = parts;
            let device = pending
                .finish(store, Duration::from_secs(u64::from(timeout_secs)))
                .await?;
            Ok(Messenger::wrap(device).await)
        })
        .await
    }
}
