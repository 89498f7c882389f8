//! Wake-up hints ("device D has new mail", "channel C has a new entry"), the registry of live
//! sockets, and shutdown of every socket.
//!
//! A hint carries no data. Whoever receives one reads the database, which is the only source of
//! truth, so a lost or duplicated hint delays or repeats a read but never loses an envelope.
//! Each topic is a counter with a [`Notify`] (a [`TopicCell`], far smaller than a `watch`
//! channel, since every socket holds two of them): a subscriber that was busy when several
//! hints arrived sees one change, never a missed one.
//!
//! With Redis ([`Hub::attach_redis`], module [`crate::realtime::redis`]) hints, ephemeral signals and
//! "device connected elsewhere" notices also travel between relay instances; without it
//! everything stays in process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};

use crate::ids::Id;
use crate::realtime::ephemeral::{EphemeralHub, EphemeralMessage, PushReceiver};
use crate::realtime::redis::{LocalSink, RedisHints, Remote};
pub use crate::realtime::topic::{DeviceKey, Topic};

/// What became of an ephemeral signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EphemeralOutcome {
    /// Handed to the device's socket on this instance.
    Delivered,
    /// The device has no socket here; the signal was published to the other instances, which
    /// deliver it if the device is connected to one of them (else it is dropped there).
    Relayed,
    /// The device is not connected (or its queue is full): the signal was dropped.
    Dropped,
}

struct SocketEntry {
    id: u64,
    replaced: Option<oneshot::Sender<()>>,
}

struct Inner {
    topics: Mutex<HashMap<Topic, Arc<TopicCell>>>,
    sockets: Mutex<HashMap<DeviceKey, SocketEntry>>,
    next_socket: AtomicU64,
    live: AtomicUsize,
    drained: Notify,
    shutdown: watch::Sender<bool>,
    remote: OnceLock<RedisHints>,
    ephemeral: EphemeralHub,
    /// Told when a device's socket registers (`true`) or its last one here goes (`false`): the
    /// push service's presence tracking.
    presence: OnceLock<PresenceObserver>,
}

/// Called with a device and whether it now has a socket on this instance.
pub type PresenceObserver = Arc<dyn Fn(DeviceKey, bool) + Send + Sync>;

/// The hub of one relay process. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// Tells every socket of `account` (here and, with Redis, on other instances) to re-check
    /// its session now: called after a logout, a refresh-token reuse, a device removal or an
    /// account deletion, so a revoked session's socket closes (4001) at once instead of at its
    /// next poll.
    pub fn notify_sessions_changed(&self, account: Id) {
        self.publish(&Topic::Sessions(account));
    }

    /// An empty hub (in process only) with its own ephemeral router.
    pub fn new() -> Self {
        Self::with_ephemeral(EphemeralHub::new())
    }

    /// An empty hub whose ephemeral signals go through `ephemeral` (the router the messaging
    /// service uses, so sockets have one ephemeral queue).
    pub fn with_ephemeral(ephemeral: EphemeralHub) -> Self {
        Self {
            inner: Arc::new(Inner {
                topics: Mutex::new(HashMap::new()),
                sockets: Mutex::new(HashMap::new()),
                next_socket: AtomicU64::new(1),
                live: AtomicUsize::new(0),
                drained: Notify::new(),
                shutdown: watch::channel(false).0,
                remote: OnceLock::new(),
                ephemeral,
                presence: OnceLock::new(),
            }),
        }
    }

    /// Connects the hub to Redis pub/sub so hints reach every instance sharing that Redis.
    /// Calling it again on the same hub does nothing.
    pub async fn attach_redis(&self, url: &str) -> Result<(), crate::realtime::redis::HintError> {
        if self.inner.remote.get().is_some() {
            return Ok(());
        }
        let remote = RedisHints::connect(url, self.clone()).await?;
        let _ = self.inner.remote.set(remote);
        Ok(())
    }

    /// Installs the observer of socket registrations (once; later calls are ignored).
    pub fn set_presence_observer(&self, observer: PresenceObserver) {
        let _ = self.inner.presence.set(observer);
    }

    /// Whether `device` has a socket on this instance.
    pub fn has_local_socket(&self, device: &DeviceKey) -> bool {
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(device)
    }

    /// The devices with a socket on this instance.
    pub fn local_devices(&self) -> Vec<DeviceKey> {
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// Whether hints are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.inner.remote.get().is_some()
    }

    /// Subscribes to `topic`. The subscription is removed from the hub when the last subscriber
    /// of the topic drops it.
    pub fn subscribe(&self, topic: Topic) -> Subscription {
        let mut topics = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cell = Arc::clone(topics.entry(topic).or_insert_with(|| {
            Arc::new(TopicCell {
                version: AtomicU64::new(0),
                notify: Notify::new(),
            })
        }));
        let seen = cell.version.load(Ordering::Acquire);
        Subscription {
            hub: self.clone(),
            topic,
            cell,
            seen,
        }
    }

    /// Wakes the subscribers of `topic` here and, with Redis, on every other instance. Never
    /// blocks: if the Redis publisher is backed up the remote hint is dropped (the sockets' periodic
    /// database poll covers it).
    pub fn publish(&self, topic: &Topic) {
        self.publish_local(topic);
        if let Some(remote) = self.inner.remote.get() {
            remote.send(Remote::Hint(*topic));
        }
    }

    /// Wakes every local subscriber of `topic`. Returns whether anyone here was subscribed.
    pub fn publish_local(&self, topic: &Topic) -> bool {
        let topics = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match topics.get(topic) {
            Some(cell) => {
                cell.bump();
                true
            }
            None => false,
        }
    }

    /// Wakes every local subscriber of every topic (after a Redis reconnect, when hints may have
    /// been missed).
    pub fn wake_all_local(&self) {
        let topics = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for cell in topics.values() {
            cell.bump();
        }
    }

    /// Number of topics with at least one local subscriber.
    pub fn topic_count(&self) -> usize {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn release(&self, topic: &Topic) {
        let mut topics = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Called from `Drop` while the dropping subscription still holds its reference: the
        // map's and that one (2) mean "only me". References are only taken under this lock.
        if topics
            .get(topic)
            .is_some_and(|cell| Arc::strong_count(cell) <= 2)
        {
            topics.remove(topic);
        }
    }

    /// Registers the socket of `device`, replacing (and signalling) any earlier socket of the same
    /// device on this instance and, with Redis, on the others.
    pub fn register_socket(&self, device: DeviceKey) -> SocketRegistration {
        let id = self.inner.next_socket.fetch_add(1, Ordering::Relaxed);
        let (replaced_tx, replaced_rx) = oneshot::channel();
        let old = self
            .inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                device,
                SocketEntry {
                    id,
                    replaced: Some(replaced_tx),
                },
            );
        if let Some(mut old) = old
            && let Some(tx) = old.replaced.take()
        {
            let _ = tx.send(());
        }
        if let Some(remote) = self.inner.remote.get() {
            remote.send(Remote::Connected(device));
        }
        if let Some(observer) = self.inner.presence.get() {
            observer(device, true);
        }
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        SocketRegistration {
            hub: self.clone(),
            device,
            id,
            replaced: replaced_rx,
            shutdown: self.inner.shutdown.subscribe(),
        }
    }

    /// Closes the local socket of `device` because it connected to another instance.
    pub(crate) fn replace_local(&self, device: &DeviceKey) {
        let mut sockets = self
            .inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = sockets.get_mut(device)
            && let Some(tx) = entry.replaced.take()
        {
            let _ = tx.send(());
        }
    }

    /// Hands an ephemeral message to `device`'s live sockets here; failing that, relays it
    /// through Redis if configured. Never stored.
    pub fn send_ephemeral(
        &self,
        device: &DeviceKey,
        message: EphemeralMessage,
    ) -> EphemeralOutcome {
        if self
            .inner
            .ephemeral
            .deliver(device.account, device.device, &message)
        {
            return EphemeralOutcome::Delivered;
        }
        match self.inner.remote.get() {
            Some(remote) => {
                remote.send(Remote::Ephemeral(*device, message));
                EphemeralOutcome::Relayed
            }
            None => EphemeralOutcome::Dropped,
        }
    }

    /// Delivers an ephemeral message that arrived from another instance to local sockets only.
    pub(crate) fn deliver_ephemeral_local(&self, device: &DeviceKey, message: &EphemeralMessage) {
        let _ = self
            .inner
            .ephemeral
            .deliver(device.account, device.device, message);
    }

    /// Subscribes a socket to what is handed to `device` directly: ephemeral messages and
    /// newly stored envelopes.
    pub fn subscribe_pushes(&self, device: &DeviceKey) -> PushReceiver {
        self.inner
            .ephemeral
            .subscribe(device.account, device.device)
    }

    /// Number of sockets currently registered on this instance.
    pub fn live_sockets(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Asks every socket to close (1001, going away). Sockets registered later close at once.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Waits until every socket has closed, at most `timeout`. Returns whether all did.
    pub async fn wait_sockets_closed(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.inner.drained.notified();
                if self.live_sockets() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    fn unregister(&self, device: &DeviceKey, id: u64) {
        let removed = {
            let mut sockets = self
                .inner
                .sockets
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            sockets.get(device).is_some_and(|e| e.id == id) && sockets.remove(device).is_some()
        };
        if removed && let Some(observer) = self.inner.presence.get() {
            observer(*device, false);
        }
        if self.inner.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.drained.notify_waiters();
        }
    }
}

/// A topic's state: how many hints were published, and the subscribers waiting for the next.
struct TopicCell {
    version: AtomicU64,
    notify: Notify,
}

impl TopicCell {
    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// One subscriber's handle on a topic.
pub struct Subscription {
    hub: Hub,
    topic: Topic,
    cell: Arc<TopicCell>,
    /// The topic's counter when this subscription last returned from [`Self::changed`].
    seen: u64,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// Waits for the next hint published after the last one this subscription saw.
    pub async fn changed(&mut self) {
        loop {
            let notified = self.cell.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the counter is read, so a hint in between still wakes it.
            notified.as_mut().enable();
            let now = self.cell.version.load(Ordering::Acquire);
            if now != self.seen {
                self.seen = now;
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.release(&self.topic);
    }
}

/// A registered socket: its replacement signal, its ephemeral queue and the shutdown signal.
/// Dropping it unregisters the socket.
pub struct SocketRegistration {
    hub: Hub,
    device: DeviceKey,
    id: u64,
    /// Fires when a newer socket of the same device registered (here or on another instance).
    pub replaced: oneshot::Receiver<()>,
    /// Becomes `true` when the relay shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl Drop for SocketRegistration {
    fn drop(&mut self) {
        self.hub.unregister(&self.device, self.id);
    }
}

impl LocalSink for Hub {
    fn publish_local(&self, topic: &Topic) {
        Hub::publish_local(self, topic);
    }

    fn wake_all_local(&self) {
        Hub::wake_all_local(self);
    }

    fn replace_local(&self, device: &DeviceKey) {
        Hub::replace_local(self, device);
    }

    fn deliver_ephemeral_local(&self, device: &DeviceKey, message: &EphemeralMessage) {
        Hub::deliver_ephemeral_local(self, device, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::ephemeral::Push;
    use std::time::Duration;

    fn mailbox(device: u32) -> Topic {
        Topic::Mailbox {
            account: Id::from_slice(&[7; 16]).unwrap(),
            device,
        }
    }

    #[tokio::test]
    async fn hint_wakes_subscriber_and_coalesces() {
        let hub = Hub::new();
        let mut sub = hub.subscribe(mailbox(1));
        assert!(hub.publish_local(&mailbox(1)));
        assert!(hub.publish_local(&mailbox(1)));
        tokio::time::timeout(Duration::from_secs(1), sub.changed())
            .await
            .unwrap();
        // Two hints while busy are seen as one change.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), sub.changed())
                .await
                .is_err()
        );
        assert!(!hub.publish_local(&mailbox(2)));
    }

    #[tokio::test]
    async fn last_drop_removes_topic() {
        let hub = Hub::new();
        let a = hub.subscribe(Topic::Channel(Id::from_slice(&[1; 16]).unwrap()));
        let b = hub.subscribe(Topic::Channel(Id::from_slice(&[1; 16]).unwrap()));
        assert_eq!(hub.topic_count(), 1);
        drop(a);
        assert_eq!(hub.topic_count(), 1);
        drop(b);
        assert_eq!(hub.topic_count(), 0);
        assert!(!hub.publish_local(&Topic::Channel(Id::from_slice(&[1; 16]).unwrap())));
    }

    #[tokio::test]
    async fn newer_socket_replaces_older_and_ephemeral_reaches_subscribers() {
        let hub = Hub::new();
        let dev = DeviceKey {
            account: Id::from_slice(&[3; 16]).unwrap(),
            device: 1,
        };
        let mut first = hub.register_socket(dev);
        let second = hub.register_socket(dev);
        assert_eq!(hub.live_sockets(), 2);
        tokio::time::timeout(Duration::from_secs(1), &mut first.replaced)
            .await
            .unwrap()
            .unwrap();
        let msg = EphemeralMessage {
            message_id: Id::random(),
            source: None,
            content: b"typing".to_vec(),
        };
        assert_eq!(
            hub.send_ephemeral(&dev, msg.clone()),
            EphemeralOutcome::Dropped
        );
        let mut rx = hub.subscribe_pushes(&dev);
        assert_eq!(
            hub.send_ephemeral(&dev, msg.clone()),
            EphemeralOutcome::Delivered
        );
        assert_eq!(rx.recv().await, Push::Ephemeral(msg));
        // The old socket going away does not unregister the new one.
        drop(first);
        assert_eq!(hub.live_sockets(), 1);
        drop(second);
        assert!(hub.wait_sockets_closed(Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn shutdown_reaches_sockets_and_waits_for_them() {
        let hub = Hub::new();
        let dev = DeviceKey {
            account: Id::random(),
            device: 2,
        };
        let mut reg = hub.register_socket(dev);
        assert!(!hub.wait_sockets_closed(Duration::from_millis(20)).await);
        hub.begin_shutdown();
        reg.shutdown.wait_for(|s| *s).await.unwrap();
        let waiter = tokio::spawn({
            let hub = hub.clone();
            async move { hub.wait_sockets_closed(Duration::from_secs(5)).await }
        });
        drop(reg);
        assert!(waiter.await.unwrap());
    }
}
