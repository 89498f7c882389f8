//! The push service: registering endpoints (sealed at rest), taking "device D got mail while
//! offline here" from the mail path, and what the worker needs (PROTOCOL.md §18).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use haven_protocol::api::push::{MAX_ENDPOINTS_PER_DEVICE, PushEndpointRequest};
use tokio::sync::{Notify, mpsc};
use zeroize::Zeroizing;

use crate::db::error::StoreError;
use crate::ids::Id;
use crate::push::presence::Presence;
use crate::push::settings::PushSettings;
use crate::push::store::{PushStore, PutOutcome, StoredEndpoint};
use crate::push::target::{PushTarget, TargetError};
use crate::push::web_push::VapidKey;
use crate::realtime::hub::DeviceKey;
use crate::sealing::Purpose;
use crate::secrets::{Key32, SecretStore, TotpKeyring};

/// Name of the VAPID private key in the server secrets table.
pub const VAPID_SECRET_NAME: &str = "vapid_key";

/// Wake-up requests waiting for the enqueuer before further ones are dropped.
const WAKE_QUEUE: usize = 65_536;

/// The at-rest sealing of endpoint targets; the context is endpoint id (16) || account id (16)
/// || device number (u32 BE).
const SEAL: Purpose = Purpose {
    seal_label: b"haven/push/seal/v1",
    key_id_label: b"haven/push/key-id/v1",
    aad_label: b"haven/push-endpoint/v1",
};

/// Label of the key of the lookup hash, derived from the username pepper.
const LOOKUP_KEY_LABEL: &[u8] = b"haven/push-lookup-key/v1";
/// Label of the lookup hash itself.
const LOOKUP_LABEL: &[u8] = b"haven/push-endpoint-lookup/v1";

/// Errors of the push service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The registration is refused (400).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The device has the maximum number of endpoints (409 `too_many_push_endpoints`).
    #[error("at most {MAX_ENDPOINTS_PER_DEVICE} push endpoints per device")]
    TooMany,
    /// The device is gone (404).
    #[error("no such device")]
    NoDevice,
    /// Sealing failed, or a stored target does not open.
    #[error("push endpoint sealing: {0}")]
    Seal(#[from] crate::sealing::SealError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors loading the VAPID key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VapidLoadError {
    /// `push.vapid_key` or the stored key is not a valid P-256 private key.
    #[error("push.vapid_key (or the stored VAPID key) is not a base64 P-256 private key")]
    Malformed,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads the VAPID key: `push.vapid_key`, else the stored one, generated on first start (every
/// instance sharing the database converges on the first one stored).
pub async fn load_vapid_key<S: SecretStore>(
    settings: &PushSettings,
    store: &S,
) -> Result<VapidKey, VapidLoadError> {
    let bytes = match &settings.vapid_key {
        Some(configured) => {
            let text = configured.expose().trim();
            Zeroizing::new(
                URL_SAFE_NO_PAD
                    .decode(text.trim_end_matches('='))
                    .or_else(|_| STANDARD.decode(text))
                    .map_err(|_| VapidLoadError::Malformed)?,
            )
        }
        None => {
            let fresh = VapidKey::generate();
            let stored = store.secret_or_insert(VAPID_SECRET_NAME, &fresh).await?;
            Zeroizing::new(stored.expose().to_vec())
        }
    };
    VapidKey::from_bytes(&bytes).map_err(|_| VapidLoadError::Malformed)
}

/// One relay instance's push service. Built at launch when push is enabled.
pub struct PushService {
    settings: PushSettings,
    vapid: VapidKey,
    keys: TotpKeyring,
    lookup_key: Key32,
    presence: Presence,
    wake_tx: mpsc::Sender<DeviceKey>,
    wake_rx: std::sync::Mutex<Option<mpsc::Receiver<DeviceKey>>>,
    worker: Notify,
}

impl PushService {
    /// The service: `keys` seal targets at rest, `pepper` keys the lookup hash.
    pub fn new(
        settings: PushSettings,
        vapid: VapidKey,
        keys: &TotpKeyring,
        pepper: &Key32,
        presence: Presence,
    ) -> Self {
        let (wake_tx, wake_rx) = mpsc::channel(WAKE_QUEUE);
        Self {
            settings,
            vapid,
            keys: TotpKeyring {
                current: keys.current.clone(),
                previous: keys.previous.clone(),
            },
            lookup_key: Key32::from_bytes(pepper.hmac(LOOKUP_KEY_LABEL, b"")),
            presence,
            wake_tx,
            wake_rx: std::sync::Mutex::new(Some(wake_rx)),
            worker: Notify::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PushSettings {
        &self.settings
    }

    /// The VAPID key.
    pub fn vapid(&self) -> &VapidKey {
        &self.vapid
    }

    /// Cluster-wide presence.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// Called by the mail path for every envelope stored for a device without a socket on this
    /// instance. Never blocks: when the enqueuer is this far behind, the wake-up is dropped
    /// (the device still gets its mail when it next connects).
    pub fn mail_queued(&self, device: DeviceKey) {
        if self.wake_tx.try_send(device).is_err() {
            // Per envelope under overload: counted for the operator, not logged at warn.
            metrics::counter!("haven_push_wakeups_dropped_total").increment(1);
            tracing::debug!("push wake-up queue full: dropped");
        }
    }

    /// The receiver of [`Self::mail_queued`] (taken once, by the enqueuer).
    pub(crate) fn take_wake_receiver(&self) -> Option<mpsc::Receiver<DeviceKey>> {
        self.wake_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Wakes the worker (a wake-up is due now).
    pub(crate) fn nudge_worker(&self) {
        self.worker.notify_one();
    }

    /// Waits until nudged.
    pub(crate) async fn nudged(&self) {
        self.worker.notified().await;
    }

    fn context(id: &Id, account: &Id, device: u32) -> Vec<u8> {
        let mut c = Vec::with_capacity(36);
        c.extend_from_slice(id.as_bytes());
        c.extend_from_slice(account.as_bytes());
        c.extend_from_slice(&device.to_be_bytes());
        c
    }

    /// Opens a stored endpoint's target.
    pub fn open(
        &self,
        account: &Id,
        device: u32,
        stored: &StoredEndpoint,
    ) -> Result<PushTarget, PushError> {
        let opened = crate::sealing::open(
            &self.keys,
            &SEAL,
            &Self::context(&stored.id, account, device),
            &stored.target,
        )?;
        PushTarget::decode(&opened.value)
            .ok_or(PushError::Seal(crate::sealing::SealError::Malformed))
    }

    /// Registers (or updates) an endpoint of the device; returns its id.
    pub async fn register<S: PushStore + Sync>(
        &self,
        store: &S,
        account: &Id,
        device: u32,
        req: &PushEndpointRequest,
        now: i64,
    ) -> Result<Id, PushError> {
        let target = PushTarget::from_request(req, &self.settings)?;
        let lookup = self.lookup_key.hmac(LOOKUP_LABEL, &target.identity());
        let encoded = Zeroizing::new(target.encode());
        // Twice at most: a concurrent registration of the same endpoint may win the row.
        for _ in 0..2 {
            let id = match store
                .push_endpoint_by_lookup(account, device, &lookup)
                .await?
            {
                Some(id) => id,
                None => Id::random(),
            };
            let sealed = crate::sealing::seal(
                &self.keys,
                &SEAL,
                &Self::context(&id, account, device),
                &encoded,
            )?;
            match store
                .put_push_endpoint(
                    account,
                    device,
                    &id,
                    target.kind(),
                    &lookup,
                    &sealed,
                    now,
                    MAX_ENDPOINTS_PER_DEVICE,
                )
                .await?
            {
                PutOutcome::Stored => return Ok(id),
                PutOutcome::TooMany => return Err(PushError::TooMany),
                PutOutcome::NoDevice => return Err(PushError::NoDevice),
                _ => {}
            }
        }
        Err(PushError::Store(StoreError::Conflict))
    }
}

/// The API form of an endpoint id: base64url without padding.
pub fn endpoint_id_text(id: &Id) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Parses an endpoint id from the API; `None` if malformed.
pub fn parse_endpoint_id(text: &str) -> Option<Id> {
    let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
    Id::from_slice(&bytes).ok()
}
