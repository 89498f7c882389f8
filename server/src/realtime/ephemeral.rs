//! Routing of ephemeral messages and freshly stored envelopes to the live sockets of a device on
//! this instance (PROTOCOL.md §11.14).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

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

type EphemeralRoutes = HashMap<(Id, u32), Vec<mpsc::Sender<Push>>>;

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
    /// receiver is dropped.
    pub fn subscribe(&self, account: Id, device: u32) -> mpsc::Receiver<Push> {
        let (tx, rx) = mpsc::channel(EPHEMERAL_QUEUE);
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let senders = routes.entry((account, device)).or_default();
        senders.retain(|s| !s.is_closed());
        senders.push(tx);
        rx
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
        let Some(senders) = routes.get_mut(&(account, device)) else {
            return false;
        };
        senders.retain(|s| !s.is_closed());
        let mut delivered = false;
        for sender in senders.iter() {
            delivered |= sender.try_send(push.clone()).is_ok();
        }
        if senders.is_empty() {
            routes.remove(&(account, device));
        }
        delivered
    }
}
