//! One socket: delivery loop, client requests, pings, limits, close codes.
//!
//! The loop is a single task (cheap when idle: no extra task, no queue, small buffers). It waits
//! for whichever comes first: a client frame, a committed send or ack, a mailbox or channel
//! hint, a push (an ephemeral signal or a newly stored envelope), a "sessions changed" hint,
//! the poll timer, the ping timer, replacement by a newer socket, or shutdown.
//!
//! Mail is read from the database after the last delivered sequence number, so hints are only
//! wake-ups: a lost hint is caught by the periodic poll. A newly stored envelope is also pushed
//! to its device's socket with the sequence number queued just before it; a socket that has
//! read its whole queue and delivered up to that number delivers the push at once without
//! reading the database (nothing can be queued in between, since a device's envelopes commit
//! in sequence order). Any other push only marks the queue for reading, like a hint.
//!
//! Sends and acks are checked and queued for the store's group commit in the order their
//! frames arrive, and answered when their transaction has committed; meanwhile the socket keeps
//! reading (at most `ws.max_pending_writes` writes awaiting their commit), so one socket's
//! consecutive sends share a commit instead of each waiting for the previous one's `fsync`.
//!
//! Backpressure: at most `delivery_window` envelopes are delivered and unacknowledged at a time
//! (delivery pauses until acks arrive); every write must complete within `send_timeout_secs`,
//! otherwise the client is a slow consumer and the socket is closed (1013). Nothing is buffered
//! without bound: hints coalesce, the ephemeral queue is bounded and drops when full, channel
//! entries are read from the database page by page.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::response::IntoResponse as _;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;

use crate::accounts::session::Session;
use crate::app::state::AppState;
use crate::channels::service as channels;
use crate::channels::service::{Access, ChannelToken};
use crate::db::Store;
use crate::db::error::StoreError;
use crate::error::AppError;
use crate::ids::Id;
use crate::mail::service as messaging;
use crate::mail::service::{DeviceEnvelope, MessagingError, SendAuth, SendReceipt, SendRequest};
use crate::realtime::ephemeral::{EphemeralMessage, MailPush, Push};
use crate::realtime::hub::{DeviceKey, Subscription, Topic};
use haven_protocol::frames::{self as frame, ClientFrame, EnvelopeFrame, ServerFrame};

/// Close code: a newer socket of the same device replaced this one.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code: the session was logged out, its device unlinked or its account deleted.
pub const CLOSE_SESSION_ENDED: u16 = 4001;
/// Close code: nothing (not even a pong) arrived within the idle timeout.
pub const CLOSE_IDLE: u16 = 4002;
/// Close code: the client sent frames faster than allowed for too long.
pub const CLOSE_RATE: u16 = 4003;

/// Entries read per channel per wake-up.
const CHANNEL_BATCH: u32 = 100;

/// Envelopes read from the database per query.
const MAIL_BATCH: usize = 128;

/// Pushes taken per wake-up (and written with one flush).
const PUSH_BATCH: usize = 64;

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The client closed or the connection failed: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// A write did not complete in time: the client is not reading.
    SlowConsumer,
}

struct ChannelSub {
    sub: Subscription,
    last_seq: i64,
    dirty: bool,
}

/// A send or ack whose commit finished.
enum Committed {
    Send {
        request_id: u32,
        result: Result<SendReceipt, MessagingError>,
        /// When the send frame was taken from the socket.
        started: Instant,
    },
    Ack {
        ids: Vec<Id>,
        result: Result<u64, StoreError>,
    },
}

type PendingWrites = FuturesUnordered<Pin<Box<dyn Future<Output = Committed> + Send>>>;

/// What woke the loop.
enum Event {
    Incoming(Option<Result<Message, axum::Error>>),
    Committed(Committed),
    Sessions,
    Mail,
    Channel(Id),
    Push(Push),
    Poll,
    Ping,
    Replaced,
    Shutdown,
}

struct Conn<S: Store> {
    state: AppState<S>,
    session: Session,
    device: DeviceKey,
    socket: WebSocket,
    send_timeout: Duration,
    /// Highest envelope sequence number delivered on this socket.
    last_seq: i64,
    /// Envelopes delivered and not yet acknowledged.
    in_flight: HashSet<Id>,
    mail_dirty: bool,
    queue_empty_sent: bool,
    channels: HashMap<Id, ChannelSub>,
    last_heard: Instant,
    window_start: Instant,
    frames_in_window: u32,
    max_frames_per_sec: u32,
    /// Sends and acks queued for a group commit, not yet answered.
    pending: PendingWrites,
}

/// Serves one authenticated socket until it closes.
pub async fn run<S: Store>(
    state: AppState<S>,
    session: Session,
    device: DeviceKey,
    socket: WebSocket,
) {
    let hub = state.hub().clone();
    // Subscribe before the first read, so no hint between the read and the subscription is lost.
    let mut mailbox = hub.subscribe(Topic::Mailbox {
        account: device.account,
        device: device.device,
    });
    let mut sessions = hub.subscribe(Topic::Sessions(device.account));
    let mut reg = hub.register_socket(device);
    let mut pushes = hub.subscribe_pushes(&device);
    metrics::gauge!("haven_ws_connections").increment(1.0);
    // Only the numbers the loop uses are kept (not a clone of the settings, which would stay
    // in every socket's state).
    let cfg = &state.settings().ws;
    let (max_pending, poll_every, ping_every, idle, window) = (
        cfg.max_pending_writes,
        Duration::from_secs(cfg.poll_interval_secs),
        Duration::from_secs(cfg.ping_interval_secs),
        Duration::from_secs(cfg.idle_timeout_secs),
        cfg.delivery_window,
    );
    let (send_timeout, max_frames_per_sec) = (
        Duration::from_secs(cfg.send_timeout_secs),
        cfg.max_frames_per_sec,
    );
    let mut conn = Conn {
        state,
        session,
        device,
        socket,
        send_timeout,
        last_seq: 0,
        in_flight: HashSet::new(),
        mail_dirty: true,
        queue_empty_sent: false,
        channels: HashMap::new(),
        last_heard: Instant::now(),
        window_start: Instant::now(),
        frames_in_window: 0,
        max_frames_per_sec,
        pending: FuturesUnordered::new(),
    };
    // Spread the polls of many sockets over the interval.
    let jitter = Duration::from_millis(
        u64::from(rand::random::<u16>()) % (poll_every.as_millis().max(1) as u64),
    );
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + jitter, poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // The state of this loop is what an idle socket costs, so the work it does after waking
    // (reading the store, answering frames: futures of several KiB) is boxed and lives only
    // while it runs.
    let stop = loop {
        if conn.has_work(window)
            && let Err(stop) = Box::pin(conn.pump(window)).await
        {
            break stop;
        }
        let event = {
            let channel_wait = async {
                if conn.channels.is_empty() {
                    std::future::pending::<Id>().await
                } else {
                    let waits = conn.channels.iter_mut().map(|(id, c)| {
                        Box::pin(async move {
                            c.sub.changed().await;
                            *id
                        })
                    });
                    futures_util::future::select_all(waits).await.0
                }
            };
            // Unbiased (random branch order): a busy socket cannot starve hints and vice versa.
            tokio::select! {
                _ = reg.shutdown.wait_for(|s| *s) => Event::Shutdown,
                _ = &mut reg.replaced => Event::Replaced,
                msg = conn.socket.next(), if conn.pending.len() < max_pending => Event::Incoming(msg),
                Some(done) = conn.pending.next(), if !conn.pending.is_empty() => Event::Committed(done),
                () = mailbox.changed() => Event::Mail,
                () = sessions.changed() => Event::Sessions,
                id = channel_wait => Event::Channel(id),
                push = pushes.recv() => Event::Push(push),
                _ = poll.tick() => Event::Poll,
                _ = ping.tick() => Event::Ping,
            }
        };
        let step = match event {
            Event::Shutdown => Err(Stop::Close(1001, "server shutting down")),
            Event::Replaced => Err(Stop::Close(
                CLOSE_REPLACED,
                "replaced by a newer connection",
            )),
            Event::Incoming(None) => Err(Stop::Gone),
            Event::Incoming(Some(Err(err))) => Err(read_error(err)),
            Event::Incoming(Some(Ok(msg))) => Box::pin(conn.incoming(msg)).await,
            Event::Committed(done) => Box::pin(conn.committed(done)).await,
            Event::Sessions => Box::pin(conn.check_session()).await,
            Event::Mail => {
                conn.mail_dirty = true;
                Ok(())
            }
            Event::Channel(id) => {
                if let Some(c) = conn.channels.get_mut(&id) {
                    c.dirty = true;
                }
                Ok(())
            }
            Event::Push(first) => {
                let mut frames = Vec::new();
                conn.pushed(first, window, &mut frames);
                while frames.len() < PUSH_BATCH {
                    match pushes.try_recv() {
                        Ok(push) => conn.pushed(push, window, &mut frames),
                        Err(_) => break,
                    }
                }
                conn.send_batch(frames).await
            }
            Event::Poll => Box::pin(conn.poll()).await,
            Event::Ping => {
                if conn.last_heard.elapsed() > idle {
                    Err(Stop::Close(CLOSE_IDLE, "idle timeout"))
                } else {
                    conn.send_message(Message::Ping(Default::default())).await
                }
            }
        };
        if let Err(stop) = step {
            break stop;
        }
    };
    if matches!(stop, Stop::Close(..)) {
        Box::pin(conn.drain_pending()).await;
    }
    Box::pin(conn.close(stop)).await;
    drop(sessions);
    drop(mailbox);
    drop(reg);
    metrics::gauge!("haven_ws_connections").decrement(1.0);
}

/// Maps a read error: an oversize message is closed with 1009, anything else ends the socket.
fn read_error(err: axum::Error) -> Stop {
    match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) if matches!(*e, tungstenite::Error::Capacity(_)) => {
            Stop::Close(1009, "message too big")
        }
        _ => Stop::Gone,
    }
}

/// The JSON body and status of an error, exactly as the HTTP API would answer.
async fn error_body(err: AppError) -> (u16, Vec<u8>) {
    let response = err.into_response();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    (status, body)
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl<S: Store> Conn<S> {
    /// Writes one frame, within the send timeout.
    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), Stop> {
        self.send_message(Message::Binary(bytes.into())).await
    }

    async fn send_message(&mut self, msg: Message) -> Result<(), Stop> {
        match tokio::time::timeout(self.send_timeout, self.socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::SlowConsumer),
        }
    }

    /// Queues several frames and flushes once, within one send timeout.
    async fn send_batch(&mut self, frames: Vec<Vec<u8>>) -> Result<(), Stop> {
        if frames.is_empty() {
            return Ok(());
        }
        let socket = &mut self.socket;
        let write = async move {
            for f in frames {
                socket.feed(Message::Binary(f.into())).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(self.send_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::SlowConsumer),
        }
    }

    async fn close(&mut self, stop: Stop) {
        let (code, reason) = match stop {
            Stop::Gone => return,
            Stop::Close(code, reason) => (code, reason),
            Stop::SlowConsumer => (1013, "slow consumer"),
        };
        tracing::info!(code, reason, "closing websocket");
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        // A slow consumer gets one short chance to receive the close frame.
        let wait = if stop == Stop::SlowConsumer {
            Duration::from_millis(200)
        } else {
            self.send_timeout
        };
        let _ = tokio::time::timeout(wait, self.socket.send(close)).await;
        // Give the client a moment to answer the close handshake, then drop the connection.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(msg)) = self.socket.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// Whether [`Self::pump`] has anything to deliver.
    fn has_work(&self, window: usize) -> bool {
        (self.mail_dirty && self.in_flight.len() < window)
            || self.channels.values().any(|c| c.dirty)
    }

    /// Delivers whatever is due: mail (within the window) and channel entries.
    async fn pump(&mut self, window: usize) -> Result<(), Stop> {
        // A read returns at most `mail.max_fetch` envelopes: a batch above that would end
        // short of its room with more queued, which reads as the end of the queue.
        let batch = MAIL_BATCH
            .min(usize::try_from(self.state.settings().mail.max_fetch).unwrap_or(MAIL_BATCH));
        while self.mail_dirty && self.in_flight.len() < window {
            let room = (window - self.in_flight.len()).min(batch);
            let frames = self.read_mail(room).await?;
            let got = frames.len();
            self.send_batch(frames).await?;
            if got < room {
                self.mail_dirty = false;
                if !self.queue_empty_sent {
                    self.queue_empty_sent = true;
                    self.send(ServerFrame::QueueEmpty.encode()).await?;
                }
            }
        }
        let due: Vec<Id> = self
            .channels
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.pump_channel(&id).await?;
        }
        Ok(())
    }

    async fn pump_channel(&mut self, id: &Id) -> Result<(), Stop> {
        let Some(after) = self.channels.get(id).map(|c| c.last_seq) else {
            return Ok(());
        };
        let (entries, more) = match channels::page(&self.state, id, after, CHANNEL_BATCH).await {
            Ok(page) => page,
            Err(err) => {
                // Keep the subscription; the next hint or poll retries.
                tracing::warn!(%err, "reading a subscribed channel failed");
                return Ok(());
            }
        };
        let last = entries.last().map(|e| e.seq);
        let frames = entries
            .iter()
            .map(|e| {
                ServerFrame::ChannelEntry {
                    channel: *id.as_bytes(),
                    seq: u64::try_from(e.seq).unwrap_or(0),
                    created_at: u64::try_from(e.created_at).unwrap_or(0),
                    entry: &e.body,
                    franking: channels::entry_franking(&self.state.secrets().franking_stamp, id, e),
                }
                .encode()
            })
            .collect();
        self.send_batch(frames).await?;
        if let Some(c) = self.channels.get_mut(id) {
            if let Some(last) = last {
                c.last_seq = last;
            }
            c.dirty = more;
        }
        Ok(())
    }

    /// Takes one push: an ephemeral message is written as is; a stored envelope is written if
    /// this socket has delivered everything queued before it and has room in its window,
    /// otherwise the queue is marked for reading (which finds it).
    fn pushed(&mut self, push: Push, window: usize, frames: &mut Vec<Vec<u8>>) {
        match push {
            Push::Ephemeral(msg) => {
                frames.push(
                    ServerFrame::Ephemeral {
                        message_id: *msg.message_id.as_bytes(),
                        source: raw_source(msg.source),
                        content: &msg.content,
                    }
                    .encode(),
                );
            }
            Push::Mail(mail) => {
                if let Some(f) = self.direct(&mail, window) {
                    frames.push(f);
                }
            }
        }
    }

    /// The frame of a pushed envelope, if it may be delivered without reading the queue.
    fn direct(&mut self, mail: &MailPush, window: usize) -> Option<Vec<u8>> {
        if mail.seq <= self.last_seq {
            // Already read from the queue.
            return None;
        }
        let follows = mail.prev_seq.is_none_or(|prev| prev <= self.last_seq);
        if self.mail_dirty || !follows || self.in_flight.len() >= window {
            self.mail_dirty = true;
            return None;
        }
        self.last_seq = mail.seq;
        self.in_flight.insert(mail.message_id);
        metrics::counter!("haven_ws_direct_deliveries").increment(1);
        Some(
            ServerFrame::Envelope(EnvelopeFrame {
                seq: u64::try_from(mail.seq).unwrap_or(0),
                message_id: *mail.message_id.as_bytes(),
                received_at: u64::try_from(mail.received_at).unwrap_or(0),
                source: raw_source(mail.source),
                content: &mail.content,
                shared_payload: None,
                franking: messaging::delivery_franking(
                    &self.state.secrets().franking_stamp,
                    mail.franking_commitment.as_ref(),
                    &self.device.account,
                    self.device.device,
                    mail.seq,
                    mail.received_at,
                ),
            })
            .encode(),
        )
    }

    /// Reads up to `room` envelopes after `last_seq` and encodes them.
    async fn read_mail(&mut self, room: usize) -> Result<Vec<Vec<u8>>, Stop> {
        let limit = u32::try_from(room).unwrap_or(u32::MAX);
        let envelopes = match messaging::fetch(
            &self.state,
            &self.device.account,
            self.device.device,
            self.last_seq,
            limit,
        )
        .await
        {
            Ok(envelopes) => envelopes,
            Err(err) => {
                // The database is unavailable: stop reading until the next hint or poll.
                tracing::warn!(%err, "websocket mailbox read failed");
                self.mail_dirty = false;
                return Ok(Vec::new());
            }
        };
        let mut frames = Vec::with_capacity(envelopes.len());
        for e in &envelopes {
            frames.push(
                ServerFrame::Envelope(EnvelopeFrame {
                    seq: u64::try_from(e.seq).unwrap_or(0),
                    message_id: *e.message_id.as_bytes(),
                    received_at: u64::try_from(e.received_at).unwrap_or(0),
                    source: raw_source(e.source),
                    content: &e.content,
                    shared_payload: e.shared_payload.as_deref(),
                    franking: messaging::delivery_franking(
                        &self.state.secrets().franking_stamp,
                        e.franking_commitment.as_ref(),
                        &self.device.account,
                        self.device.device,
                        e.seq,
                        e.received_at,
                    ),
                })
                .encode(),
            );
            self.last_seq = self.last_seq.max(e.seq);
            self.in_flight.insert(e.message_id);
        }
        Ok(frames)
    }

    /// Closes the socket (4001) if its session was revoked, its device unlinked or its account
    /// deleted. A failing check keeps the socket (the next poll retries).
    async fn check_session(&mut self) -> Result<(), Stop> {
        let s = &self.session;
        match self
            .state
            .store()
            .session_valid(&s.account, &s.device, &s.family)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::Close(CLOSE_SESSION_ENDED, "session ended")),
            Err(err) => {
                tracing::warn!(%err, "websocket session check failed");
                Ok(())
            }
        }
    }

    /// Periodic work: re-check the session, re-read mail and channels.
    async fn poll(&mut self) -> Result<(), Stop> {
        self.check_session().await?;
        self.mail_dirty = true;
        for c in self.channels.values_mut() {
            c.dirty = true;
        }
        Ok(())
    }

    /// Counts a client frame against the per-second limit.
    fn over_rate(&mut self) -> bool {
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            self.window_start = Instant::now();
            self.frames_in_window = 0;
        }
        self.frames_in_window = self.frames_in_window.saturating_add(1);
        self.frames_in_window > self.max_frames_per_sec
    }

    /// Answers a refused client frame: a `result` with the error when its request id can be
    /// read, else an `error` frame.
    async fn refuse(&mut self, bytes: &[u8], err: AppError) -> Result<(), Stop> {
        let (status, body) = error_body(err).await;
        match frame::request_id_of(bytes) {
            Some(id) => {
                self.send(
                    ServerFrame::Result {
                        request_id: id,
                        status,
                        body: &body,
                    }
                    .encode(),
                )
                .await
            }
            None => self.send(ServerFrame::Error { body: &body }.encode()).await,
        }
    }

    async fn incoming(&mut self, msg: Message) -> Result<(), Stop> {
        self.last_heard = Instant::now();
        let bytes = match msg {
            Message::Binary(bytes) => bytes,
            Message::Text(_) => {
                let err = AppError::bad_request(
                    "text_not_supported",
                    "frames are binary WebSocket messages (PROTOCOL.md §11.14)",
                );
                return self
                    .send(
                        ServerFrame::Error {
                            body: &error_body(err).await.1,
                        }
                        .encode(),
                    )
                    .await;
            }
            Message::Close(_) => return Err(Stop::Gone),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        if self.over_rate() {
            if self.frames_in_window > self.max_frames_per_sec.saturating_mul(2) {
                return Err(Stop::Close(CLOSE_RATE, "too many frames"));
            }
            let err = AppError::RateLimited {
                retry_after: Duration::from_secs(1),
            };
            return self.refuse(&bytes, err).await;
        }
        let decoded = match ClientFrame::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                let err = AppError::bad_request(e.code(), e.to_string());
                return self.refuse(&bytes, err).await;
            }
        };
        match decoded {
            ClientFrame::Ack(ids) => self.ack(ids.into_iter().map(Id::from).collect()).await,
            ClientFrame::Send {
                request_id,
                account,
                message_id,
                ephemeral,
                access_key,
                envelopes,
            } => {
                let request = SendRequest {
                    message_id: message_id.into(),
                    envelopes: envelopes
                        .into_iter()
                        .map(|e| DeviceEnvelope {
                            device: e.device,
                            content: e.content.to_vec(),
                            franking_commitment: e.commitment,
                        })
                        .collect(),
                    ephemeral,
                };
                self.send_mail(request_id, account.into(), access_key, request)
                    .await
            }
            ClientFrame::Signal {
                request_id,
                account,
                device,
                access_key,
                payload,
            } => {
                let (status, json) = self
                    .signal(account.into(), device, &access_key, payload)
                    .await;
                self.send(
                    ServerFrame::Result {
                        request_id,
                        status,
                        body: &json,
                    }
                    .encode(),
                )
                .await
            }
            ClientFrame::Subscribe {
                request_id,
                channel,
                token,
                after,
            } => {
                let (status, json) = self.subscribe(channel.into(), token, after).await;
                self.send(
                    ServerFrame::Result {
                        request_id,
                        status,
                        body: &json,
                    }
                    .encode(),
                )
                .await
            }
            ClientFrame::Unsubscribe {
                request_id,
                channel,
            } => {
                let removed = self.channels.remove(&Id::from(channel)).is_some();
                let json =
                    json(&serde_json::json!({ "subscribed": false, "was_subscribed": removed }));
                self.send(
                    ServerFrame::Result {
                        request_id,
                        status: 200,
                        body: &json,
                    }
                    .encode(),
                )
                .await
            }
        }
    }

    /// Queues an ack for the next group commit; `in_flight` frees room once it committed.
    async fn ack(&mut self, ids: Vec<Id>) -> Result<(), Stop> {
        let (account, device) = (self.device.account, self.device.device);
        match messaging::queue_ack(&self.state, &account, device, ids.clone()).await {
            Ok(pending) => {
                self.pending.push(Box::pin(async move {
                    Committed::Ack {
                        ids,
                        result: pending.await,
                    }
                }));
                Ok(())
            }
            Err(err) => {
                let (_, body) = error_body(err.into()).await;
                self.send(ServerFrame::Error { body: &body }.encode()).await
            }
        }
    }

    /// Checks and queues a send; it is answered once committed (or at once if refused).
    async fn send_mail(
        &mut self,
        request_id: u32,
        recipient: Id,
        access_key: Option<[u8; 16]>,
        request: SendRequest,
    ) -> Result<(), Stop> {
        let auth = SendAuth::Session {
            account: self.session.account,
            device: self.device.device,
            access_key: access_key.map(|k| k.to_vec()),
        };
        let started = Instant::now();
        if let Err(err) =
            crate::moderation::routes::refuse_sanctioned(&self.state, &self.session.account).await
        {
            let (status, json) = error_body(err).await;
            return self
                .send(
                    ServerFrame::Result {
                        request_id,
                        status,
                        body: &json,
                    }
                    .encode(),
                )
                .await;
        }
        match messaging::queue_send(&self.state, auth, &recipient, request).await {
            Ok(pending) => {
                self.pending.push(Box::pin(async move {
                    Committed::Send {
                        request_id,
                        result: pending.wait().await,
                        started,
                    }
                }));
                Ok(())
            }
            Err(err) => {
                let (status, json) = error_body(err.into()).await;
                self.send(
                    ServerFrame::Result {
                        request_id,
                        status,
                        body: &json,
                    }
                    .encode(),
                )
                .await
            }
        }
    }

    /// Answers a committed send, or frees the window after a committed ack.
    async fn committed(&mut self, done: Committed) -> Result<(), Stop> {
        match done {
            Committed::Send {
                request_id,
                result,
                started,
            } => {
                metrics::histogram!("haven_ws_send_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                let (status, json) = match result {
                    Ok(receipt) => (
                        200,
                        json(&haven_protocol::api::messages::SendResponse {
                            devices: crate::mail::routes::device_results(&receipt.devices),
                        }),
                    ),
                    Err(err) => error_body(err.into()).await,
                };
                self.send(
                    ServerFrame::Result {
                        request_id,
                        status,
                        body: &json,
                    }
                    .encode(),
                )
                .await
            }
            Committed::Ack { ids, result } => match result {
                Ok(_) => {
                    for id in &ids {
                        self.in_flight.remove(id);
                    }
                    Ok(())
                }
                Err(err) => {
                    let (_, body) = error_body(AppError::from(err)).await;
                    self.send(ServerFrame::Error { body: &body }.encode()).await
                }
            },
        }
    }

    /// Before closing: answers the sends and acks still awaiting their commit (bounded by the
    /// send timeout), so a client closed for a reason of ours still learns what was stored.
    async fn drain_pending(&mut self) {
        let deadline = tokio::time::Instant::now() + self.send_timeout;
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.pending.next()).await {
                Ok(Some(done)) => {
                    if self.committed(done).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Hands a signal on to the device (PROTOCOL.md §11.14). Only the own account or a holder
    /// of the recipient's access key may signal, and the answer is `accepted` whether or not
    /// the device is connected: no online oracle.
    async fn signal(
        &mut self,
        account: Id,
        device: u32,
        access_key: &[u8; 16],
        payload: &[u8],
    ) -> (u16, Vec<u8>) {
        let max = self.state.settings().ws.max_signal_bytes;
        if payload.len() > max {
            return error_body(AppError::client(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "signal_too_large",
                format!("ephemeral signals are at most {max} bytes"),
            ))
            .await;
        }
        if let Err(err) = messaging::authorize_signal(
            &self.state,
            &self.session.account,
            &account,
            Some(access_key.as_slice()),
        )
        .await
        {
            return error_body(err.into()).await;
        }
        let message = EphemeralMessage {
            message_id: Id::random(),
            source: Some((self.session.account, self.device.device)),
            content: payload.to_vec(),
        };
        // Whether it reached a socket is not told.
        let _ = self
            .state
            .hub()
            .send_ephemeral(&DeviceKey { account, device }, message);
        (200, json(&serde_json::json!({ "outcome": "accepted" })))
    }

    async fn subscribe(&mut self, channel: Id, token: [u8; 32], after: u64) -> (u16, Vec<u8>) {
        let token = ChannelToken::from_bytes(token);
        let record = match channels::authorize(&self.state, &channel, &token, Access::Read).await {
            Ok(record) => record,
            Err(err) => return error_body(err).await,
        };
        if !self.channels.contains_key(&channel)
            && self.channels.len() >= self.state.settings().ws.max_subscriptions
        {
            return error_body(AppError::conflict(
                "too_many_subscriptions",
                "this socket has the maximum number of channel subscriptions",
            ))
            .await;
        }
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let sub = self.state.hub().subscribe(Topic::Channel(channel));
        self.channels.insert(
            channel,
            ChannelSub {
                sub,
                last_seq: after,
                dirty: true,
            },
        );
        (
            200,
            json(&serde_json::json!({ "subscribed": true, "last_seq": record.last_seq })),
        )
    }
}

/// A sender address as the frames carry it.
fn raw_source(source: Option<(Id, u32)>) -> Option<frame::Source> {
    source.map(|(account, device)| (*account.as_bytes(), device))
}
