//! Group commit of mailbox writes.
//!
//! Every send and every ack used to be its own durable transaction, so the relay could not
//! store more envelopes per second than the disk could `fsync` (one commit each). Now sends and
//! acks are queued to a writer task per database (several on Postgres) which takes everything
//! that queued up while its previous transaction was committing (at most
//! `database.max_write_batch` writes), applies them one after the other in **one** transaction,
//! commits once and only then answers each caller. Durability is unchanged: a send is
//! acknowledged only after the commit that contains it; a caller whose batch failed gets an
//! error, never a false success.
//!
//! Each write keeps its own all-or-nothing semantics inside the batch: a delivery first checks
//! every envelope (device present, idempotency, queue limits, counting what earlier writes of
//! the same batch added) and writes nothing unless all pass. If the batch transaction fails as a
//! whole (a database error, a Postgres deadlock), its writes are retried one transaction each,
//! so one bad write cannot fail its neighbours.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::db::error::{StoreError, StoreResult};
use crate::ids::Id;
use crate::mail::store::{
    Delivery, DeliveryCommit, DeliveryOutcome, NewEnvelope, PendingWrite, QueueLimits,
    SharedPayload,
};

/// SHA-256 over the envelope (length-prefixed) and the shared payload id: what decides whether a
/// resend with the same message id is a duplicate or a conflict.
pub(crate) fn envelope_digest(envelope: &NewEnvelope, shared: Option<&SharedPayload>) -> Vec<u8> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(
        u64::try_from(envelope.content.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    hasher.update(&envelope.content);
    if let Some(shared) = shared {
        hasher.update(shared.id.as_bytes());
    }
    // Only franked envelopes hash their commitment, so digests stored before franking still
    // match their resends; the same id with another commitment is a conflict.
    if let Some(commitment) = &envelope.franking_commitment {
        hasher.update(b"franking");
        hasher.update(commitment);
    }
    hasher.finalize().to_vec()
}

/// One queued mailbox write and where to send its answer.
pub(crate) enum MailWrite {
    /// [`crate::mail::store::MailboxStore::deliver`].
    Deliver {
        delivery: Delivery,
        limits: QueueLimits,
        reply: oneshot::Sender<StoreResult<DeliveryCommit>>,
    },
    /// [`crate::mail::store::MailboxStore::ack_ids`].
    AckIds {
        account: Id,
        device: u32,
        ids: Vec<Id>,
        reply: oneshot::Sender<StoreResult<u64>>,
    },
    /// [`crate::mail::store::MailboxStore::ack_up_to`].
    AckUpTo {
        account: Id,
        device: u32,
        up_to: i64,
        reply: oneshot::Sender<StoreResult<u64>>,
    },
}

/// What one write did.
pub(crate) enum WriteOutcome {
    Delivered(DeliveryOutcome),
    Acked(u64),
}

impl MailWrite {
    /// Answers the caller (who may have gone away: then nothing happens).
    pub(crate) fn answer(self, result: StoreResult<WriteOutcome>) {
        let mismatch = || StoreError::Corrupt {
            table: "mail write batch",
        };
        match self {
            Self::Deliver {
                reply, delivery, ..
            } => {
                let _ = reply.send(result.and_then(|o| match o {
                    WriteOutcome::Delivered(outcome) => Ok(DeliveryCommit { outcome, delivery }),
                    WriteOutcome::Acked(_) => Err(mismatch()),
                }));
            }
            Self::AckIds { reply, .. } | Self::AckUpTo { reply, .. } => {
                let _ = reply.send(result.and_then(|o| match o {
                    WriteOutcome::Acked(n) => Ok(n),
                    WriteOutcome::Delivered(_) => Err(mismatch()),
                }));
            }
        }
    }
}

/// Answers the writes of a batch with its result. If a batch of several writes failed as a
/// whole, nobody is answered yet: the writes are returned to be retried one transaction each
/// (answered with [`single`]), so one failing write cannot fail its neighbours.
pub(crate) fn settle(
    items: Vec<MailWrite>,
    result: StoreResult<Vec<WriteOutcome>>,
) -> Option<Vec<MailWrite>> {
    match result {
        Ok(outcomes) => {
            for (item, outcome) in items.into_iter().zip(outcomes) {
                item.answer(Ok(outcome));
            }
            None
        }
        Err(err) if items.len() == 1 => {
            if let Some(item) = items.into_iter().next() {
                item.answer(Err(err));
            }
            None
        }
        Err(err) => {
            tracing::warn!(%err, writes = items.len(), "mail batch failed; retrying its writes one by one");
            Some(items)
        }
    }
}

/// The outcome of a batch of one write.
pub(crate) fn single(result: StoreResult<Vec<WriteOutcome>>) -> StoreResult<WriteOutcome> {
    result.and_then(|mut o| {
        o.pop().ok_or(StoreError::Corrupt {
            table: "mail write batch",
        })
    })
}

/// The receiving end of the write queue, shared by the writer tasks of one store: whichever
/// writer is free takes the next batch.
pub(crate) type WriteQueue = Arc<tokio::sync::Mutex<mpsc::Receiver<MailWrite>>>;

/// Takes the next batch (waiting for at least one write). `false` once every sender is gone.
pub(crate) async fn next_batch(queue: &WriteQueue, batch: &mut Vec<MailWrite>, max: usize) -> bool {
    let mut rx = queue.lock().await;
    rx.recv_many(batch, max.max(1)).await > 0
}

/// The sending side of a store's write queue. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct MailWriter {
    tx: mpsc::Sender<MailWrite>,
}

impl MailWriter {
    /// A writer handle and the queue its writer tasks read, holding at most `capacity` writes
    /// (further callers wait: backpressure, not unbounded buffering).
    pub(crate) fn new(capacity: usize) -> (Self, WriteQueue) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, Arc::new(tokio::sync::Mutex::new(rx)))
    }

    /// A writer handle and the receiving end for a single writer of its own (a thread).
    pub(crate) fn dedicated(capacity: usize) -> (Self, mpsc::Receiver<MailWrite>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    async fn enqueue(&self, write: MailWrite) -> StoreResult<()> {
        self.tx
            .send(write)
            .await
            .map_err(|_| StoreError::WriterStopped)
    }

    /// Queues a delivery; the returned future resolves once its batch committed.
    pub(crate) async fn deliver(
        &self,
        delivery: Delivery,
        limits: QueueLimits,
    ) -> StoreResult<PendingWrite<DeliveryCommit>> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(MailWrite::Deliver {
            delivery,
            limits,
            reply,
        })
        .await?;
        Ok(PendingWrite::new(rx))
    }

    /// Queues an ack by message ids.
    pub(crate) async fn ack_ids(
        &self,
        account: Id,
        device: u32,
        ids: Vec<Id>,
    ) -> StoreResult<PendingWrite<u64>> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(MailWrite::AckIds {
            account,
            device,
            ids,
            reply,
        })
        .await?;
        Ok(PendingWrite::new(rx))
    }

    /// Queues an ack up to a sequence number.
    pub(crate) async fn ack_up_to(
        &self,
        account: Id,
        device: u32,
        up_to: i64,
    ) -> StoreResult<PendingWrite<u64>> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(MailWrite::AckUpTo {
            account,
            device,
            up_to,
            reply,
        })
        .await?;
        Ok(PendingWrite::new(rx))
    }
}
