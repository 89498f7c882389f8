//! The Redis backend of the hub (`crate::realtime::hub::Hub`): hints, ephemeral signals and "device connected" notices
//! between relay instances over one Redis pub/sub channel.
//!
//! Redis is never a source of truth: a lost message only delays a delivery until the socket's
//! next database poll (hints), drops a signal that may be dropped anyway (ephemeral), or leaves
//! an older socket open until it idles out (connected). After the subscriber reconnects, every
//! local topic is woken once, because hints published meanwhile are gone.
//!
//! Message layout on channel [`CHANNEL`] (PROTOCOL.md §11.14):
//!
//! ```text
//! instance: u64 BE (random per process; a process ignores its own messages)
//! kind: u8          1 mailbox hint | 2 channel hint | 3 ephemeral | 4 device connected
//!                   | 5 sessions of an account changed
//! kind 1, 3, 4:     account id (16) | device number u32 BE
//! kind 2:           channel id (16)
//! kind 5:           account id (16)
//! kind 3 continues: message id (16) | has_source u8 (0|1)
//!                   | [source account (16) | source device u32 BE] | content (rest)
//! ```

use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{
    Builder, ClientLike, Config, EventInterface, PubsubInterface, ReconnectPolicy,
};
use rand::RngCore as _;
use tokio::sync::mpsc;

use crate::ids::Id;
use crate::realtime::ephemeral::EphemeralMessage;
use crate::realtime::topic::{DeviceKey, Topic};

/// The Redis pub/sub channel every instance publishes to and subscribes on.
pub const CHANNEL: &str = "haven:hub:v1";

/// Messages waiting for the publisher before further ones are dropped.
const PUBLISH_QUEUE: usize = 65_536;

/// Publishes in flight at once.
const PUBLISH_BATCH: usize = 256;

/// Errors connecting the hub to Redis.
#[derive(Debug, thiserror::Error)]
#[error("redis hints: {0}")]
pub struct HintError(String);

impl From<fred::error::Error> for HintError {
    fn from(err: fred::error::Error) -> Self {
        Self(err.to_string())
    }
}

/// Where messages from other instances are delivered: the hub of this process. A trait so this
/// module does not depend on the hub that owns it.
pub(crate) trait LocalSink: Clone + Send + Sync + 'static {
    /// Wakes the local subscribers of `topic`.
    fn publish_local(&self, topic: &Topic);
    /// Wakes every local subscriber (after lost messages).
    fn wake_all_local(&self);
    /// Closes the local socket of `device` (it connected elsewhere).
    fn replace_local(&self, device: &DeviceKey);
    /// Hands an ephemeral message to the local socket of `device`.
    fn deliver_ephemeral_local(&self, device: &DeviceKey, message: &EphemeralMessage);
}

/// What one instance tells the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Remote {
    /// Wake this topic.
    Hint(Topic),
    /// Deliver this ephemeral message if the device is connected here.
    Ephemeral(DeviceKey, EphemeralMessage),
    /// The device opened a socket on the sending instance: close older ones.
    Connected(DeviceKey),
}

impl Remote {
    fn encode(&self, instance: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(29);
        out.extend_from_slice(&instance.to_be_bytes());
        let device = |out: &mut Vec<u8>, kind: u8, d: &DeviceKey| {
            out.push(kind);
            out.extend_from_slice(d.account.as_bytes());
            out.extend_from_slice(&d.device.to_be_bytes());
        };
        match self {
            Self::Hint(Topic::Mailbox { account, device: n }) => device(
                &mut out,
                1,
                &DeviceKey {
                    account: *account,
                    device: *n,
                },
            ),
            Self::Hint(Topic::Channel(id)) => {
                out.push(2);
                out.extend_from_slice(id.as_bytes());
            }
            Self::Hint(Topic::Sessions(account)) => {
                out.push(5);
                out.extend_from_slice(account.as_bytes());
            }
            Self::Ephemeral(d, msg) => {
                device(&mut out, 3, d);
                out.extend_from_slice(msg.message_id.as_bytes());
                match &msg.source {
                    Some((account, n)) => {
                        out.push(1);
                        out.extend_from_slice(account.as_bytes());
                        out.extend_from_slice(&n.to_be_bytes());
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(&msg.content);
            }
            Self::Connected(d) => device(&mut out, 4, d),
        }
        out
    }

    /// Parses a message; `None` for anything malformed (ignored: Redis is not trusted to be
    /// well-formed, merely to be ours).
    fn decode(bytes: &[u8]) -> Option<(u64, Self)> {
        let (instance, rest) = bytes.split_at_checked(8)?;
        let instance = u64::from_be_bytes(instance.try_into().ok()?);
        let (&kind, rest) = rest.split_first()?;
        let device = |rest: &[u8]| -> Option<(DeviceKey, usize)> {
            let (account, rest) = rest.split_at_checked(16)?;
            let (n, _) = rest.split_at_checked(4)?;
            Some((
                DeviceKey {
                    account: Id::from_slice(account).ok()?,
                    device: u32::from_be_bytes(n.try_into().ok()?),
                },
                20,
            ))
        };
        let msg = match kind {
            1 => {
                let (d, used) = device(rest)?;
                (used == rest.len()).then_some(Self::Hint(Topic::Mailbox {
                    account: d.account,
                    device: d.device,
                }))?
            }
            2 => Self::Hint(Topic::Channel(Id::from_slice(rest).ok()?)),
            5 => Self::Hint(Topic::Sessions(Id::from_slice(rest).ok()?)),
            3 => {
                let (d, used) = device(rest)?;
                let rest = rest.get(used..)?;
                let (message_id, rest) = rest.split_at_checked(16)?;
                let (&flag, rest) = rest.split_first()?;
                let (source, content) = match flag {
                    0 => (None, rest),
                    1 => {
                        let (s, used) = device(rest)?;
                        (Some((s.account, s.device)), rest.get(used..)?)
                    }
                    _ => return None,
                };
                Self::Ephemeral(
                    d,
                    EphemeralMessage {
                        message_id: Id::from_slice(message_id).ok()?,
                        source,
                        content: content.to_vec(),
                    },
                )
            }
            4 => {
                let (d, used) = device(rest)?;
                (used == rest.len()).then_some(Self::Connected(d))?
            }
            _ => return None,
        };
        Some((instance, msg))
    }
}

/// The Redis side of a hub: a publisher queue and a subscriber task.
pub(crate) struct RedisHints {
    tx: mpsc::Sender<Vec<u8>>,
    instance: u64,
}

impl RedisHints {
    /// Connects a publishing client and a subscriber client and starts their tasks.
    pub(crate) async fn connect<H: LocalSink>(url: &str, hub: H) -> Result<Self, HintError> {
        let config = Config::from_url(url)?;
        let build = |builder: &mut Builder| {
            builder
                .with_connection_config(|c| {
                    c.connection_timeout = Duration::from_secs(3);
                    c.internal_command_timeout = Duration::from_secs(3);
                    c.max_command_attempts = 1;
                    c.max_command_buffer_len = PUBLISH_QUEUE;
                })
                .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
                .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        };
        let mut builder = Builder::from_config(config);
        build(&mut builder);
        let publisher = builder.build()?;
        let subscriber = builder.build_subscriber_client()?;
        let _conn = publisher.init().await?;
        let _conn = subscriber.init().await?;
        let _resubscribe = subscriber.manage_subscriptions();
        let instance = rand::rngs::OsRng.next_u64();
        spawn_subscriber(subscriber.clone(), hub, instance);
        subscriber.subscribe(CHANNEL).await?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish_loop(publisher, rx));
        Ok(Self { tx, instance })
    }

    /// Queues a message for the other instances; drops it if the queue is full.
    pub(crate) fn send(&self, msg: Remote) {
        if self.tx.try_send(msg.encode(self.instance)).is_err() {
            metrics::counter!("haven_hub_remote_dropped_total").increment(1);
        }
    }
}

async fn publish_loop(client: Client, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let sends = batch.drain(..).map(|msg| {
            let client = &client;
            async move { client.publish::<i64, _, _>(CHANNEL, msg).await }
        });
        for result in futures_util::future::join_all(sends).await {
            if let Err(err) = result {
                // The database poll covers lost hints; log without content.
                tracing::debug!(%err, "redis hint publish failed");
                metrics::counter!("haven_hub_remote_dropped_total").increment(1);
            }
        }
    }
}

fn spawn_subscriber<H: LocalSink>(subscriber: SubscriberClient, hub: H, instance: u64) {
    let mut messages = subscriber.message_rx();
    let mut reconnects = subscriber.reconnect_rx();
    tokio::spawn(async move {
        // The first "reconnect" event is the initial connection.
        let mut connected_once = false;
        loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Ok(msg) => {
                        let Some(bytes) = msg.value.as_bytes() else { continue };
                        match Remote::decode(bytes) {
                            Some((from, _)) if from == instance => {}
                            Some((_, remote)) => dispatch(&hub, remote),
                            None => tracing::debug!("ignoring malformed hub message"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => hub.wake_all_local(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                event = reconnects.recv() => match event {
                    Ok(_) => {
                        if connected_once {
                            tracing::info!("redis hint subscriber reconnected");
                            hub.wake_all_local();
                        }
                        connected_once = true;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => hub.wake_all_local(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
}

fn dispatch<H: LocalSink>(hub: &H, remote: Remote) {
    match remote {
        Remote::Hint(topic) => {
            hub.publish_local(&topic);
        }
        Remote::Ephemeral(device, msg) => hub.deliver_ephemeral_local(&device, &msg),
        Remote::Connected(device) => hub.replace_local(&device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_ignored() {
        let device = DeviceKey {
            account: Id::random(),
            device: 7,
        };
        let cases = [
            Remote::Hint(Topic::Mailbox {
                account: device.account,
                device: 7,
            }),
            Remote::Hint(Topic::Channel(Id::random())),
            Remote::Hint(Topic::Sessions(Id::random())),
            Remote::Ephemeral(
                device,
                EphemeralMessage {
                    message_id: Id::random(),
                    source: Some((Id::random(), 2)),
                    content: b"sig".to_vec(),
                },
            ),
            Remote::Ephemeral(
                device,
                EphemeralMessage {
                    message_id: Id::random(),
                    source: None,
                    content: Vec::new(),
                },
            ),
            Remote::Connected(device),
        ];
        for msg in cases {
            let bytes = msg.encode(42);
            assert_eq!(Remote::decode(&bytes), Some((42, msg.clone())));
            for cut in 0..bytes.len() {
                let decoded = Remote::decode(&bytes[..cut]);
                // Only the ephemeral content may be shortened and still parse.
                if let Some((_, Remote::Ephemeral(..))) = decoded {
                    assert!(cut >= 29 + 17);
                } else {
                    assert_eq!(decoded, None, "{msg:?} cut at {cut}");
                }
            }
        }
        assert_eq!(Remote::decode(&[0; 9]), None);
        let mut long = Remote::Connected(device).encode(1);
        long.push(0);
        assert_eq!(Remote::decode(&long), None);
    }
}
