//! Linking a new device by approval (PROTOCOL §15.3, §11.18), sans I/O.
//!
//! ```text
//! new device                                   existing device (holds the account key)
//! POST /v1/provisioning ─► LinkRequest::new
//! show LinkRequest::code ───── out of band ─────► approve_link(code)
//!                                                 POST /v1/devices/link-token
//!                                                 ─► approval ─► PUT /v1/provisioning/{id}
//! GET /v1/provisioning/{id} (poll) ─► open ─► LinkGrant
//! POST /v1/devices/link (LinkGrant::link_body) ─► session (as a login), keys uploaded
//! LinkGrant::install ─► GET own device list ─► accept_linked_list ─► sign_own_list(+ itself)
//! ─► PUT /v1/account/device-list ─► own_list_published
//! ```
//!
//! The code carries the new device's one-time X25519 key past the relay, so the relay cannot
//! read the grant (the link token, the account key pair and the access key) or substitute
//! its own key. Password login alone gives no account key: such a device is in no signed list,
//! and other devices neither encrypt to it nor accept its messages.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::Id;
use haven_protocol::api::auth::NewDeviceBody;
use haven_protocol::api::identity::{
    DeviceListReply, LinkDeviceRequest, LinkTokenReply, ProvisioningCreated, ProvisioningMessage,
};
use haven_protocol::provisioning::{LinkCode, ProvisioningPlaintext};
use haven_sdk::account::{AccountIdentityKeyPair, DeviceList};
use haven_sdk::identity::IdentityKey;
use haven_sdk::provisioning::{ProvisioningKeys, seal};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::directory::{
    ListAnswer, ListRefusal, ListUpdate, account_key_pair, set_account_key_pair,
};
use super::state::{LocalDevice, own_access_key, set_own_access_key};
use super::{DeviceError, bad_response, protocol};
use crate::store::{Backend, EncryptedStore};

/// The new device's side of one link: its provisioning box and one-time key.
pub struct LinkRequest {
    keys: ProvisioningKeys,
    box_id: Id,
}

impl std::fmt::Debug for LinkRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRequest").finish_non_exhaustive()
    }
}

impl LinkRequest {
    /// A request for the box the relay opened (`POST /v1/provisioning`).
    pub fn new<R: CryptoRng + ?Sized>(created: &ProvisioningCreated, rng: &mut R) -> Self {
        Self {
            keys: ProvisioningKeys::generate(*created.id.as_bytes(), rng),
            box_id: created.id,
        }
    }

    /// The code to show the approving device (`haven-link:…`, §15.3).
    #[must_use]
    pub fn code(&self) -> String {
        self.keys.code().encode()
    }

    /// The path of the box to poll (`GET`: 204 while empty, 200 with the grant once).
    #[must_use]
    pub fn box_path(&self) -> String {
        format!("/v1/provisioning/{}", self.box_id.to_hex())
    }

    /// Opens the grant the approving device put into the box.
    ///
    /// # Errors
    /// [`DeviceError::InvalidResponse`] for anything that does not open (altered, for another
    /// key or box).
    pub fn open(&self, message: &ProvisioningMessage) -> Result<LinkGrant, DeviceError> {
        let sealed = STANDARD
            .decode(&message.message)
            .map_err(|_| bad_response("provisioning message is not base64"))?;
        let plaintext = self
            .keys
            .open(&sealed)
            .map_err(|e| bad_response(format!("provisioning message: {e}")))?;
        let key = AccountIdentityKeyPair::from_bytes(&plaintext.account_key_pair)
            .map_err(|_| bad_response("provisioning message: account key malformed"))?;
        Ok(LinkGrant { plaintext, key })
    }
}

/// What the approving device granted: the account, the link token, the account key pair and
/// the access key. Secret; no `Debug` output of any of it.
pub struct LinkGrant {
    plaintext: ProvisioningPlaintext,
    key: AccountIdentityKeyPair,
}

impl std::fmt::Debug for LinkGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkGrant")
            .field("approver_device", &self.plaintext.approver_device)
            .finish_non_exhaustive()
    }
}

impl Drop for LinkGrant {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.plaintext.link_token.zeroize();
        self.plaintext.account_key_pair.zeroize();
        self.plaintext.access_key.zeroize();
    }
}

impl LinkGrant {
    /// The account the device joins.
    #[must_use]
    pub fn account(&self) -> [u8; 16] {
        self.plaintext.account_id
    }

    /// The body of `POST /v1/devices/link` for a device with `identity_key`.
    #[must_use]
    pub fn link_body(&self, identity_key: &IdentityKey, name: Option<&[u8]>) -> LinkDeviceRequest {
        LinkDeviceRequest {
            link_token: STANDARD.encode(self.plaintext.link_token),
            device: NewDeviceBody {
                identity_key: STANDARD.encode(identity_key.to_bytes()),
                name: name.map(|n| STANDARD.encode(n)),
            },
        }
    }

    /// Keeps the account key pair and the access key in the new device's store (once it has
    /// its session, for the account it was granted).
    ///
    /// # Errors
    /// [`DeviceError::InvalidResponse`] when the relay logged the device into another account;
    /// store errors.
    pub fn install<B: Backend>(
        &self,
        device: &LocalDevice,
        store: &EncryptedStore<B>,
    ) -> Result<(), DeviceError> {
        if device.account() != self.plaintext.account_id {
            return Err(bad_response(
                "linked into another account than the approver's",
            ));
        }
        store.atomically(|s| -> Result<(), DeviceError> {
            set_account_key_pair(s, &self.key)?;
            set_own_access_key(s, &self.plaintext.access_key)?;
            Ok(())
        })
    }

    /// Accepts the own account's list fetched after joining: it must be signed by the granted
    /// account key and be at least as new as the one the approver had.
    ///
    /// # Errors
    /// [`DeviceError::AccountKeyChanged`] for another key, [`DeviceError::DeviceList`] for an
    /// older list or an invalid one; store errors.
    pub fn accept_list<B: Backend>(
        &self,
        device: &LocalDevice,
        store: &mut EncryptedStore<B>,
        reply: &DeviceListReply,
        now: u64,
    ) -> Result<ListUpdate, DeviceError> {
        if reply.version < self.plaintext.list_version {
            return Err(DeviceError::DeviceList {
                account: hex::encode(self.plaintext.account_id),
                reason: ListRefusal::Rollback {
                    offered: reply.version,
                    seen: self.plaintext.list_version,
                },
            });
        }
        device.accept_device_list(
            store,
            &self.plaintext.account_id,
            ListAnswer::List(reply),
            now,
        )
    }
}

impl LocalDevice {
    /// Approves the new device that shows `code`: seals the link token (`POST
    /// /v1/devices/link-token`'s answer), the account key pair, the access key and the own
    /// list's version to the key in the code. Returns the path and body of the
    /// `PUT /v1/provisioning/{id}` to make.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for a code that is not one (or has a typo);
    /// [`DeviceError::NoAccountKey`]; [`DeviceError::NotSetUp`] without an access key or own
    /// device list; store errors.
    pub fn approve_link<B: Backend, R: CryptoRng + ?Sized>(
        &self,
        store: &EncryptedStore<B>,
        code: &str,
        token: &LinkTokenReply,
        rng: &mut R,
    ) -> Result<(String, ProvisioningMessage), DeviceError> {
        let code = LinkCode::parse(code)
            .map_err(|e| DeviceError::InvalidArgument(format!("link code: {e}")))?;
        let key = account_key_pair(store)?.ok_or(DeviceError::NoAccountKey)?;
        let access_key = own_access_key(store)?.ok_or(DeviceError::NotSetUp)?;
        let list: DeviceList = self
            .device_list(store, &self.account())?
            .ok_or(DeviceError::NotSetUp)?;
        let token = Zeroizing::new(
            STANDARD
                .decode(&token.link_token)
                .map_err(|_| bad_response("link token is not base64"))?,
        );
        let link_token: [u8; 32] = token
            .as_slice()
            .try_into()
            .map_err(|_| bad_response("link token is not 32 bytes"))?;
        let plaintext = ProvisioningPlaintext {
            account_id: self.account(),
            link_token,
            account_key_pair: *key.to_bytes(),
            access_key,
            approver_device: self.device_number(),
            list_version: list.version(),
        };
        let sealed = seal(&code, &plaintext, rng);
        let mut wipe = plaintext;
        {
            use zeroize::Zeroize as _;
            wipe.link_token.zeroize();
            wipe.account_key_pair.zeroize();
            wipe.access_key.zeroize();
        }
        let sealed = sealed.map_err(protocol)?;
        let path = format!("/v1/provisioning/{}", Id::from(code.box_id).to_hex());
        Ok((
            path,
            ProvisioningMessage {
                message: STANDARD.encode(sealed),
            },
        ))
    }
}
