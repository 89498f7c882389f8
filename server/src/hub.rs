//! Wake-up hints inside one relay process: "device D has new mail", "channel C has a new entry".
//!
//! A hint carries no data. Whoever receives one reads the database, which is the only source of
//! truth, so a lost or duplicated hint delays or repeats a read but never loses an envelope.
//! Each topic is a `watch` channel holding a counter: a subscriber that was busy when several
//! hints arrived sees one change, never a missed one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::ids::Id;

/// What a hint is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A device's mailbox: an envelope was queued for it.
    Mailbox {
        /// The account.
        account: Id,
        /// The device number within the account.
        device: u32,
    },
    /// A channel: an entry was appended.
    Channel(Id),
}

/// The in-process hub: topic → counter. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    topics: Arc<Mutex<HashMap<Topic, watch::Sender<u64>>>>,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes to `topic`. The subscription is removed from the hub when the last subscriber
    /// of the topic drops it.
    pub fn subscribe(&self, topic: Topic) -> Subscription {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = match topics.get(&topic) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                topics.insert(topic, tx);
                rx
            }
        };
        Subscription {
            hub: self.clone(),
            topic,
            rx,
        }
    }

    /// Wakes every local subscriber of `topic`. Returns whether anyone here was subscribed.
    pub fn publish_local(&self, topic: &Topic) -> bool {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        match topics.get(topic) {
            Some(tx) => {
                tx.send_modify(|n| *n = n.wrapping_add(1));
                true
            }
            None => false,
        }
    }

    /// Number of topics with at least one local subscriber.
    pub fn topic_count(&self) -> usize {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn release(&self, topic: &Topic) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        // Called from `Drop` while the dropping receiver still exists: 1 means "only me".
        if topics.get(topic).is_some_and(|tx| tx.receiver_count() <= 1) {
            topics.remove(topic);
        }
    }
}

/// One subscriber's handle on a topic.
pub struct Subscription {
    hub: Hub,
    topic: Topic,
    rx: watch::Receiver<u64>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// Waits for the next hint published after the last one this subscription saw.
    pub async fn changed(&mut self) {
        // The sender lives in the hub map while any receiver exists, so this only errors if the
        // entry was removed, which `release` does only when no other receiver is left.
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.release(&self.topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
