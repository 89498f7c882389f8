//! Routing of ephemeral messages and freshly stored envelopes to the live sockets of a device on
//! this instance (PROTOCOL.md §11.14).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::ids::Id;

/// Capacity of one ephemeral subscription; further messages are dropped while it is full.
pub const EPHEMERAL_QUEUE: usize = 64;

/// An ephemeral message as handed to a live subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EphemeralMessage {
    /// Client-chosen id.
    pub message_id: Id,
    /// The sender, `None` for sealed sends.
    pub source: Option<(Id, u32)>,
    /// The opaque bytes.
    pub content: Vec<u8>,
}

/// A newly stored envelope handed straight to a live socket of its device, so that the socket
/// need not read it back from the database.
#[derive(Debug, PartialEq, Eq)]
pub struct MailPush {
    /// Its sequence number.
    pub seq: i64,
    /// The highest sequence number queued for the device just before it (`None`: none was).
    /// A socket may deliver the push directly only if it has delivered everything up to this.
    pub prev_seq: Option<i64>,
    /// Client-chosen id.
    pub message_id: Id,
    /// The authenticated sender, `None` for sealed sends.
    pub source: Option<(Id, u32)>,
    /// The envelope bytes.
    pub content: Vec<u8>,
    /// Coarse receive time.
    pub received_at: i64,
    /// The sender's franking commitment, if it sent one.
    pub franking_commitment: Option<[u8; 32]>,
}

/// What a live socket is handed directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    /// An ephemeral message.
    Ephemeral(EphemeralMessage),
    /// A stored envelope.
    Mail(Arc<MailPush>),
}

/// One socket's queue of pushes. Unlike a channel it allocates nothing until something is
/// pushed and gives its storage back once drained, so an idle socket holds only this header
/// (an idle socket's memory is what bounds how many sockets one relay can hold).
struct PushQueue {
    items: Mutex<VecDeque<Push>>,
    ready: Notify,
    /// Cleared when the receiver is dropped.
    open: AtomicBool,
}

/// A drained queue whose storage grew past this many slots gives it back.
const KEEP_SLOTS: usize = 4;

/// The receiving end of a socket's push queue ([`EphemeralHub::subscribe`]). Dropping it ends
/// the subscription.
pub struct PushReceiver {
    queue: Arc<PushQueue>,
    routes: Arc<Mutex<EphemeralRoutes>>,
    device: (Id, u32),
}

/// [`PushReceiver::try_recv`] found the queue empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEmpty;

impl PushReceiver {
    /// Takes the oldest push, if any.
    pub fn try_recv(&mut self) -> Result<Push, QueueEmpty> {
        let mut items = self
            .queue
            .items
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let push = items.pop_front().ok_or(QueueEmpty)?;
        if items.is_empty() && items.capacity() > KEEP_SLOTS {
            *items = VecDeque::new();
        }
        Ok(push)
    }

    /// Waits for the next push.
    pub async fn recv(&mut self) -> Push {
        loop {
            if let Ok(push) = self.try_recv() {
                return push;
            }
            // A push between the check and this wait leaves a permit: no wake-up is lost.
            self.queue.ready.notified().await;
        }
    }
}

impl Drop for PushReceiver {
    fn drop(&mut self) {
        self.queue.open.store(false, Ordering::Release);
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queues) = routes.get_mut(&self.device) {
            queues.retain(|q| !Arc::ptr_eq(q, &self.queue));
            if queues.is_empty() {
                routes.remove(&self.device);
            }
        }
    }
}

impl PushQueue {
    fn is_closed(&self) -> bool {
        !self.open.load(Ordering::Acquire)
    }

    /// Queues `push` unless the queue is full or closed; returns whether it was queued.
    fn try_push(&self, push: &Push) -> bool {
        if self.is_closed() {
            return false;
        }
        {
            let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
            if items.len() >= EPHEMERAL_QUEUE {
                return false;
            }
            items.push_back(push.clone());
        }
        self.ready.notify_one();
        true
    }
}

type EphemeralRoutes = HashMap<(Id, u32), Vec<Arc<PushQueue>>>;

/// Routes ephemeral messages and stored envelopes ([`Push`]) to live subscribers (sockets) of a
/// device on this instance. Bounded: a full or closed subscription loses the push (ephemeral
/// means best effort; an envelope stays queued and its socket is woken by a hint instead).
#[derive(Clone, Default)]
pub struct EphemeralHub {
    routes: Arc<Mutex<EphemeralRoutes>>,
}

impl EphemeralHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes a live connection of `(account, device)`. The subscription ends when the
    /// receiver is dropped; it holds at most [`EPHEMERAL_QUEUE`] pushes.
    pub fn subscribe(&self, account: Id, device: u32) -> PushReceiver {
        let queue = Arc::new(PushQueue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            open: AtomicBool::new(true),
        });
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let queues = routes.entry((account, device)).or_default();
        queues.retain(|q| !q.is_closed());
        queues.push(Arc::clone(&queue));
        PushReceiver {
            queue,
            routes: Arc::clone(&self.routes),
            device: (account, device),
        }
    }

    /// Hands `message` to every live subscriber of the device. Returns whether at least one
    /// took it.
    pub fn deliver(&self, account: Id, device: u32, message: &EphemeralMessage) -> bool {
        self.push(account, device, &Push::Ephemeral(message.clone()))
    }

    /// Hands `push` to every live subscriber of the device. Returns whether at least one took
    /// it.
    pub fn push(&self, account: Id, device: u32, push: &Push) -> bool {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queues) = routes.get_mut(&(account, device)) else {
            return false;
        };
        queues.retain(|q| !q.is_closed());
        let mut delivered = false;
        for queue in queues.iter() {
            delivered |= queue.try_push(push);
        }
        if queues.is_empty() {
            routes.remove(&(account, device));
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u8) -> EphemeralMessage {
        EphemeralMessage {
            message_id: Id::random(),
            source: None,
            content: vec![n],
        }
    }

    #[tokio::test]
    async fn queue_is_bounded_in_order_and_gives_its_storage_back() {
        let hub = EphemeralHub::new();
        let account = Id::random();
        let mut rx = hub.subscribe(account, 1);
        assert_eq!(rx.queue.items.lock().unwrap().capacity(), 0);
        let sent: Vec<EphemeralMessage> = (0..=u8::try_from(EPHEMERAL_QUEUE).unwrap())
            .map(message)
            .collect();
        for (i, m) in sent.iter().enumerate() {
            // The one past the bound is dropped.
            assert_eq!(hub.deliver(account, 1, m), i < EPHEMERAL_QUEUE, "{i}");
        }
        assert!(
            !hub.deliver(account, 2, &sent[0]),
            "another device has no route"
        );
        assert_eq!(rx.recv().await, Push::Ephemeral(sent[0].clone()));
        for m in &sent[1..EPHEMERAL_QUEUE] {
            assert_eq!(rx.try_recv(), Ok(Push::Ephemeral(m.clone())));
        }
        assert_eq!(rx.try_recv(), Err(QueueEmpty));
        assert!(rx.queue.items.lock().unwrap().capacity() <= KEEP_SLOTS);
        // A push while the receiver waits wakes it.
        let waiter = tokio::spawn(async move {
            let got = rx.recv().await;
            (rx, got)
        });
        tokio::task::yield_now().await;
        assert!(hub.deliver(account, 1, &sent[1]));
        let (rx, got) = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Push::Ephemeral(sent[1].clone()));
        // Dropping the receiver removes its route.
        drop(rx);
        assert!(hub.routes.lock().unwrap().is_empty());
        assert!(!hub.deliver(account, 1, &sent[2]));
    }
}
