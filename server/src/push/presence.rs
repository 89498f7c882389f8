//! Whether a device has a live socket anywhere in the cluster (PROTOCOL.md §18.3): a device
//! with one gets no push.
//!
//! On one instance the hub knows. With Redis, the instance holding a device's socket keeps the
//! key `haven:presence:v1:<account hex>:<device number>` (value: that instance's random id) with
//! a TTL of [`PRESENCE_TTL_SECS`]: set when the socket registers, refreshed every
//! [`REFRESH_SECS`] for every local socket, and deleted when the socket goes, only if it still
//! holds this instance's id (a newer socket elsewhere has replaced it otherwise). A crashed
//! instance's keys expire. Reading is one `EXISTS`. Redis errors count as "not online": the
//! worst case is a spurious content-free wake-up.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::prelude::{Builder, ClientLike, Config, KeysInterface, ReconnectPolicy};
use rand::RngCore as _;
use tokio::sync::mpsc;

use crate::realtime::hub::{DeviceKey, Hub};

/// Lifetime of a presence key, seconds.
pub const PRESENCE_TTL_SECS: i64 = 60;
/// Period of the refresh of every local socket's key, seconds.
pub const REFRESH_SECS: u64 = 20;

/// Deletes the key only if it holds this instance's id.
const DELETE_IF_MINE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Errors connecting to Redis.
#[derive(Debug, thiserror::Error)]
#[error("push presence: {0}")]
pub struct PresenceError(String);

impl From<fred::error::Error> for PresenceError {
    fn from(err: fred::error::Error) -> Self {
        Self(err.to_string())
    }
}

/// Cluster-wide presence of sockets. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    hub: Hub,
    redis: Option<Arc<Shared>>,
}

struct Shared {
    client: Client,
    instance: String,
}

fn key(device: &DeviceKey) -> String {
    format!(
        "haven:presence:v1:{}:{}",
        device.account.to_hex(),
        device.device
    )
}

impl Presence {
    /// Presence from this instance's hub only (no Redis).
    pub fn local(hub: Hub) -> Self {
        Self { hub, redis: None }
    }

    /// Presence shared through the Redis at `url`: installs the hub's observer and starts the
    /// refresh task (until `stop`).
    pub async fn shared(
        hub: Hub,
        url: &str,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self, PresenceError> {
        let config = Config::from_url(url)?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
                c.max_command_attempts = 2;
            })
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        let client = builder.build()?;
        let _connection = client.init().await?;
        let shared = Arc::new(Shared {
            client,
            instance: format!("{:016x}", rand::rngs::OsRng.next_u64()),
        });
        let (tx, rx) = mpsc::unbounded_channel::<(DeviceKey, bool)>();
        hub.set_presence_observer(Arc::new(move |device, up| {
            let _ = tx.send((device, up));
        }));
        tokio::spawn(observe(Arc::clone(&shared), rx));
        tokio::spawn(refresh(Arc::clone(&shared), hub.clone(), stop));
        // Sockets that registered before the observer was installed.
        for device in hub.local_devices() {
            shared.set(&device).await;
        }
        Ok(Self {
            hub,
            redis: Some(shared),
        })
    }

    /// Whether `device` has a socket on this instance or (with Redis) on another.
    pub async fn is_online(&self, device: &DeviceKey) -> bool {
        if self.hub.has_local_socket(device) {
            return true;
        }
        let Some(shared) = &self.redis else {
            return false;
        };
        match shared.client.exists::<i64, _>(key(device)).await {
            Ok(n) => n > 0,
            Err(err) => {
                tracing::warn!(%err, "push presence: redis read failed");
                false
            }
        }
    }
}

impl Shared {
    async fn set(&self, device: &DeviceKey) {
        let set: Result<(), _> = self
            .client
            .set(
                key(device),
                self.instance.as_str(),
                Some(fred::types::Expiration::EX(PRESENCE_TTL_SECS)),
                None,
                false,
            )
            .await;
        if let Err(err) = set {
            tracing::warn!(%err, "push presence: redis write failed");
        }
    }

    async fn clear(&self, device: &DeviceKey) {
        let cleared: Result<i64, _> = self
            .client
            .custom(
                fred::cmd!("EVAL"),
                vec![
                    DELETE_IF_MINE.to_owned(),
                    "1".to_owned(),
                    key(device),
                    self.instance.clone(),
                ],
            )
            .await;
        if let Err(err) = cleared {
            tracing::warn!(%err, "push presence: redis delete failed");
        }
    }
}

async fn observe(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<(DeviceKey, bool)>) {
    while let Some((device, up)) = rx.recv().await {
        if up {
            shared.set(&device).await;
        } else {
            shared.clear(&device).await;
        }
    }
}

async fn refresh(shared: Arc<Shared>, hub: Hub, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(REFRESH_SECS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        for device in hub.local_devices() {
            shared.set(&device).await;
        }
    }
}
