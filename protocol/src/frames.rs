//! The WebSocket frame format, version 1 (PROTOCOL.md §11.14), in both directions.
//!
//! Every WebSocket *binary* message is one frame: a version byte, a type byte and a body whose
//! layout depends on the type. Integers are big-endian. "rest" means "all remaining bytes of the
//! message" (the WebSocket message length delimits it, so it carries no length prefix). Decoders
//! check every length before reading and reject trailing bytes where the layout has no "rest",
//! reserved flag bits, and counts out of range. Decoded frames borrow from the message.
//!
//! This module is the one codec of the format: the relay, the native client, the web package,
//! the load generator and the tests all use it.

use crate::encoding::Reader;

/// The only frame version.
pub const VERSION: u8 = 1;

/// Server → client: a queued envelope.
pub const T_ENVELOPE: u8 = 0x01;
/// Server → client: every envelope queued when the socket opened has been sent.
pub const T_QUEUE_EMPTY: u8 = 0x02;
/// Server → client: an entry of a subscribed channel.
pub const T_CHANNEL_ENTRY: u8 = 0x03;
/// Server → client: an ephemeral signal.
pub const T_EPHEMERAL: u8 = 0x04;
/// Server → client: an entry of a subscribed channel with its franking (§16.4).
pub const T_FRANKED_CHANNEL_ENTRY: u8 = 0x07;
/// Server → client: the result of a client request.
pub const T_RESULT: u8 = 0x05;
/// Server → client: a frame could not be processed (no request it can be attributed to).
pub const T_ERROR: u8 = 0x06;

/// Client → server: acknowledge envelopes by message id (deletes them).
pub const T_ACK: u8 = 0x10;
/// Client → server: authenticated send.
pub const T_SEND: u8 = 0x11;
/// Client → server: ephemeral signal to one device.
pub const T_SIGNAL: u8 = 0x12;
/// Client → server: subscribe to a channel.
pub const T_SUBSCRIBE: u8 = 0x13;
/// Client → server: unsubscribe from a channel.
pub const T_UNSUBSCRIBE: u8 = 0x14;

/// Most message ids in one ack frame.
pub const MAX_ACK_IDS: usize = 1024;
/// Most envelopes in one send frame.
pub const MAX_SEND_ENVELOPES: usize = 1024;

/// Envelope and ephemeral flag: the sender's address follows (authenticated sends).
pub const FLAG_SOURCE: u8 = 0x01;
/// Envelope flag: the frame ends with a shared payload (multi-recipient sends).
pub const FLAG_SHARED: u8 = 0x02;
/// Envelope flag: the franking commitment and the relay's stamp follow the source (§16.4).
pub const FLAG_FRANKED: u8 = 0x04;
/// Send flag: ephemeral class.
pub const FLAG_EPHEMERAL: u8 = 0x01;
/// Send flag: every envelope carries its franking commitment after its device (§16.3).
pub const FLAG_SEND_FRANKED: u8 = 0x02;
/// Send flag: the recipient's unidentified-access key (16 bytes) follows the flags.
pub const FLAG_SEND_ACCESS_KEY: u8 = 0x04;

/// A 16-byte id (account, message, channel).
pub type Id16 = [u8; 16];

/// A sender's address: account id and device number.
pub type Source = (Id16, u32);

/// Why a frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than its layout, or trailing bytes where none may be.
    #[error("frame length does not match its type")]
    Length,
    /// Version byte other than 1.
    #[error("unsupported frame version")]
    Version,
    /// Unknown frame type (or a frame of the other direction).
    #[error("unknown frame type")]
    Type,
    /// A count is zero or over its limit.
    #[error("count out of range")]
    Count,
    /// Reserved flag bits are set.
    #[error("unknown flags")]
    Flags,
}

impl FrameError {
    /// The stable error code reported in the error frame.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Length => "invalid_frame_length",
            Self::Version => "unsupported_version",
            Self::Type => "unknown_frame_type",
            Self::Count => "invalid_count",
            Self::Flags => "invalid_flags",
        }
    }
}

/// A queued envelope, as the relay sends it.
///
/// ```text
/// 01 01 | seq u64 | message_id [16] | received_at u64 | flags u8
///       | [source account [16] | source device u32]   (flags & 0x01)
///       | [commitment [32] | stamp [32]]   (flags & 0x04)
///       | content_len u32 | content | [shared payload: rest]   (flags & 0x02)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeFrame<'a> {
    /// Relay sequence number.
    pub seq: u64,
    /// Sender-chosen message id.
    pub message_id: Id16,
    /// Coarse receive time, Unix seconds.
    pub received_at: u64,
    /// Sender for logged-in sends; `None` for sealed sends.
    pub source: Option<Source>,
    /// The opaque envelope bytes.
    pub content: &'a [u8],
    /// The shared payload of a multi-recipient send.
    pub shared_payload: Option<&'a [u8]>,
    /// The franking commitment and the relay's stamp (§16.4), when the sender sent one.
    pub franking: Option<Franking>,
}

/// The franking of a delivered envelope (§16.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Franking {
    /// The sender's commitment `c`.
    pub commitment: [u8; 32],
    /// The relay's delivery stamp `s`.
    pub stamp: [u8; 32],
}

/// One envelope of a [`ClientFrame::Send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendEnvelope<'a> {
    /// Recipient device number.
    pub device: u32,
    /// The opaque envelope.
    pub content: &'a [u8],
    /// The sender's franking commitment (§16.3); all envelopes of a frame have one or none.
    pub commitment: Option<[u8; 32]>,
}

/// A frame the relay sends. Exhaustive on purpose: a new frame type is a new protocol version,
/// and every handler must then say what it does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// `01 01`: a queued envelope.
    Envelope(EnvelopeFrame<'a>),
    /// `01 02`: everything queued when the socket opened has been sent.
    QueueEmpty,
    /// `01 03 | channel id [16] | seq u64 | created_at u64 | entry: rest`, or for an entry
    /// whose writer sent a franking commitment
    /// `01 07 | channel id [16] | seq u64 | created_at u64 | commitment [32] | stamp [32]
    /// | entry: rest`.
    ChannelEntry {
        /// The channel.
        channel: Id16,
        /// The entry's sequence number in the channel.
        seq: u64,
        /// When the relay stored it (Unix seconds).
        created_at: u64,
        /// The opaque entry.
        entry: &'a [u8],
        /// The franking commitment and the relay's stamp (§16.4), when the writer sent one.
        franking: Option<Franking>,
    },
    /// `01 04 | message_id [16] | flags u8 | [source account [16] | source device u32]
    /// (flags & 0x01) | content: rest`: an ephemeral (never stored) signal.
    Ephemeral {
        /// Id of the signal.
        message_id: Id16,
        /// Sender when the relay knows it.
        source: Option<Source>,
        /// The content.
        content: &'a [u8],
    },
    /// `01 05 | request_id u32 | status u16 | JSON body (UTF-8): rest`.
    Result {
        /// The request it answers.
        request_id: u32,
        /// HTTP-equivalent status.
        status: u16,
        /// JSON body.
        body: &'a [u8],
    },
    /// `01 06 | JSON error body (UTF-8): rest`: a frame that could not be processed.
    Error {
        /// JSON body (`{"error":{"code","message"}}`).
        body: &'a [u8],
    },
}

/// A frame a client sends (exhaustive, as [`ServerFrame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// `01 10 | count u16 | message_id [16] × count` (1 ≤ count ≤ 1024).
    Ack(Vec<Id16>),
    /// `01 11 | request_id u32 | recipient account [16] | message_id [16] | flags u8
    /// (0x01 = ephemeral, 0x02 = franked, 0x04 = access key, other bits 0)
    /// | [access_key [16]] (flags & 0x04) | count u16 (1..=1024)
    /// | count × (device u32 | [commitment [32]] (flags & 0x02) | len u32 | content [len])`:
    /// the authenticated send. An ephemeral send is never franked.
    Send {
        /// Echoed in the result.
        request_id: u32,
        /// Recipient account.
        account: Id16,
        /// Client-chosen message id (idempotency key).
        message_id: Id16,
        /// Ephemeral class (never stored).
        ephemeral: bool,
        /// The recipient's access key: needed for an ephemeral send to another account and for
        /// a 409/410 answer naming the recipient's devices.
        access_key: Option<[u8; 16]>,
        /// The envelopes, one per device.
        envelopes: Vec<SendEnvelope<'a>>,
    },
    /// `01 12 | request_id u32 | account [16] | device u32 | access_key [16] | payload: rest`
    /// (payload ≥ 1 byte).
    Signal {
        /// Echoed in the result.
        request_id: u32,
        /// Recipient account.
        account: Id16,
        /// Recipient device number.
        device: u32,
        /// The recipient's unidentified-access key (ignored on a signal to the own account).
        access_key: [u8; 16],
        /// The opaque signal.
        payload: &'a [u8],
    },
    /// `01 13 | request_id u32 | channel id [16] | read token [32] | after u64`.
    Subscribe {
        /// Echoed in the result.
        request_id: u32,
        /// The channel.
        channel: Id16,
        /// The read capability (raw 32 bytes).
        token: [u8; 32],
        /// Send stored entries with `seq > after` first.
        after: u64,
    },
    /// `01 14 | request_id u32 | channel id [16]`.
    Unsubscribe {
        /// Echoed in the result.
        request_id: u32,
        /// The channel.
        channel: Id16,
    },
}

/// A length as a u32 field. Every length the relay and clients send is bounded far below
/// 4 GiB by documented limits; a larger one saturates and is rejected by every decoder.
fn len_u32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

fn put_source(out: &mut Vec<u8>, source: &Source) {
    out.extend_from_slice(&source.0);
    out.extend_from_slice(&source.1.to_be_bytes());
}

impl ServerFrame<'_> {
    /// Encodes the frame.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Envelope(e) => {
                let mut out = Vec::with_capacity(
                    55 + e.content.len() + e.shared_payload.map_or(0, <[u8]>::len),
                );
                out.extend_from_slice(&[VERSION, T_ENVELOPE]);
                out.extend_from_slice(&e.seq.to_be_bytes());
                out.extend_from_slice(&e.message_id);
                out.extend_from_slice(&e.received_at.to_be_bytes());
                let mut flags = 0;
                if e.source.is_some() {
                    flags |= FLAG_SOURCE;
                }
                if e.shared_payload.is_some() {
                    flags |= FLAG_SHARED;
                }
                if e.franking.is_some() {
                    flags |= FLAG_FRANKED;
                }
                out.push(flags);
                if let Some(source) = &e.source {
                    put_source(&mut out, source);
                }
                if let Some(franking) = &e.franking {
                    out.extend_from_slice(&franking.commitment);
                    out.extend_from_slice(&franking.stamp);
                }
                out.extend_from_slice(&len_u32(e.content.len()));
                out.extend_from_slice(e.content);
                if let Some(shared) = e.shared_payload {
                    out.extend_from_slice(shared);
                }
                out
            }
            Self::QueueEmpty => vec![VERSION, T_QUEUE_EMPTY],
            Self::ChannelEntry {
                channel,
                seq,
                created_at,
                entry,
                franking,
            } => {
                let mut out = Vec::with_capacity(98 + entry.len());
                let kind = if franking.is_some() {
                    T_FRANKED_CHANNEL_ENTRY
                } else {
                    T_CHANNEL_ENTRY
                };
                out.extend_from_slice(&[VERSION, kind]);
                out.extend_from_slice(channel);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&created_at.to_be_bytes());
                if let Some(franking) = franking {
                    out.extend_from_slice(&franking.commitment);
                    out.extend_from_slice(&franking.stamp);
                }
                out.extend_from_slice(entry);
                out
            }
            Self::Ephemeral {
                message_id,
                source,
                content,
            } => {
                let mut out = Vec::with_capacity(39 + content.len());
                out.extend_from_slice(&[VERSION, T_EPHEMERAL]);
                out.extend_from_slice(message_id);
                match source {
                    Some(source) => {
                        out.push(FLAG_SOURCE);
                        put_source(&mut out, source);
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(content);
                out
            }
            Self::Result {
                request_id,
                status,
                body,
            } => {
                let mut out = Vec::with_capacity(8 + body.len());
                out.extend_from_slice(&[VERSION, T_RESULT]);
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
                out.extend_from_slice(body);
                out
            }
            Self::Error { body } => {
                let mut out = Vec::with_capacity(2 + body.len());
                out.extend_from_slice(&[VERSION, T_ERROR]);
                out.extend_from_slice(body);
                out
            }
        }
    }

    /// Decodes one binary WebSocket message from the relay.
    ///
    /// # Errors
    /// [`FrameError`] for a wrong version, an unknown type, a truncated body, trailing bytes or
    /// reserved flag bits.
    pub fn decode(bytes: &[u8]) -> Result<ServerFrame<'_>, FrameError> {
        let mut r = Frame::open(bytes)?;
        let frame = match r.kind {
            T_ENVELOPE => {
                let seq = r.u64()?;
                let message_id = r.id()?;
                let received_at = r.u64()?;
                let flags = r.u8()?;
                if flags & !(FLAG_SOURCE | FLAG_SHARED | FLAG_FRANKED) != 0 {
                    return Err(FrameError::Flags);
                }
                let source = if flags & FLAG_SOURCE != 0 {
                    Some(r.source()?)
                } else {
                    None
                };
                let franking = if flags & FLAG_FRANKED != 0 {
                    Some(Franking {
                        commitment: r.array()?,
                        stamp: r.array()?,
                    })
                } else {
                    None
                };
                let len = r.u32()?;
                let content = r.take(len)?;
                let shared_payload = (flags & FLAG_SHARED != 0).then(|| r.rest());
                r.end()?;
                ServerFrame::Envelope(EnvelopeFrame {
                    seq,
                    message_id,
                    received_at,
                    source,
                    content,
                    shared_payload,
                    franking,
                })
            }
            T_QUEUE_EMPTY => {
                r.end()?;
                ServerFrame::QueueEmpty
            }
            T_CHANNEL_ENTRY => ServerFrame::ChannelEntry {
                channel: r.id()?,
                seq: r.u64()?,
                created_at: r.u64()?,
                franking: None,
                entry: r.rest(),
            },
            T_FRANKED_CHANNEL_ENTRY => ServerFrame::ChannelEntry {
                channel: r.id()?,
                seq: r.u64()?,
                created_at: r.u64()?,
                franking: Some(Franking {
                    commitment: r.array()?,
                    stamp: r.array()?,
                }),
                entry: r.rest(),
            },
            T_EPHEMERAL => {
                let message_id = r.id()?;
                let flags = r.u8()?;
                if flags & !FLAG_SOURCE != 0 {
                    return Err(FrameError::Flags);
                }
                let source = if flags & FLAG_SOURCE != 0 {
                    Some(r.source()?)
                } else {
                    None
                };
                ServerFrame::Ephemeral {
                    message_id,
                    source,
                    content: r.rest(),
                }
            }
            T_RESULT => ServerFrame::Result {
                request_id: r.u32()?,
                status: r.u16()?,
                body: r.rest(),
            },
            T_ERROR => ServerFrame::Error { body: r.rest() },
            _ => return Err(FrameError::Type),
        };
        Ok(frame)
    }
}

impl ClientFrame<'_> {
    /// Encodes the frame.
    ///
    /// # Errors
    /// [`FrameError::Count`] for an ack or send whose count is zero or over its limit, and
    /// [`FrameError::Length`] for an empty signal payload (frames the relay would refuse).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        match self {
            Self::Ack(ids) => {
                let count = counted(ids.len(), MAX_ACK_IDS)?;
                out.reserve(4 + 16 * ids.len());
                out.extend_from_slice(&[VERSION, T_ACK]);
                out.extend_from_slice(&count.to_be_bytes());
                for id in ids {
                    out.extend_from_slice(id);
                }
            }
            Self::Send {
                request_id,
                account,
                message_id,
                ephemeral,
                access_key,
                envelopes,
            } => {
                let count = counted(envelopes.len(), MAX_SEND_ENVELOPES)?;
                let franked = envelopes.first().is_some_and(|e| e.commitment.is_some());
                if envelopes.iter().any(|e| e.commitment.is_some() != franked)
                    || (franked && *ephemeral)
                {
                    return Err(FrameError::Flags);
                }
                out.extend_from_slice(&[VERSION, T_SEND]);
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(account);
                out.extend_from_slice(message_id);
                let mut flags = if *ephemeral { FLAG_EPHEMERAL } else { 0 };
                if franked {
                    flags |= FLAG_SEND_FRANKED;
                }
                if access_key.is_some() {
                    flags |= FLAG_SEND_ACCESS_KEY;
                }
                out.push(flags);
                if let Some(key) = access_key {
                    out.extend_from_slice(key);
                }
                out.extend_from_slice(&count.to_be_bytes());
                for envelope in envelopes {
                    out.extend_from_slice(&envelope.device.to_be_bytes());
                    if let Some(commitment) = &envelope.commitment {
                        out.extend_from_slice(commitment);
                    }
                    out.extend_from_slice(&len_u32(envelope.content.len()));
                    out.extend_from_slice(envelope.content);
                }
            }
            Self::Signal {
                request_id,
                account,
                device,
                access_key,
                payload,
            } => {
                if payload.is_empty() {
                    return Err(FrameError::Length);
                }
                out.extend_from_slice(&[VERSION, T_SIGNAL]);
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(account);
                out.extend_from_slice(&device.to_be_bytes());
                out.extend_from_slice(access_key);
                out.extend_from_slice(payload);
            }
            Self::Subscribe {
                request_id,
                channel,
                token,
                after,
            } => {
                out.extend_from_slice(&[VERSION, T_SUBSCRIBE]);
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(channel);
                out.extend_from_slice(token);
                out.extend_from_slice(&after.to_be_bytes());
            }
            Self::Unsubscribe {
                request_id,
                channel,
            } => {
                out.extend_from_slice(&[VERSION, T_UNSUBSCRIBE]);
                out.extend_from_slice(&request_id.to_be_bytes());
                out.extend_from_slice(channel);
            }
        }
        Ok(out)
    }

    /// Decodes one binary WebSocket message from a client.
    ///
    /// # Errors
    /// [`FrameError`] for a wrong version, an unknown type, a truncated body, trailing bytes,
    /// reserved flag bits or a count out of range.
    pub fn decode(bytes: &[u8]) -> Result<ClientFrame<'_>, FrameError> {
        let mut r = Frame::open(bytes)?;
        let frame = match r.kind {
            T_ACK => {
                let count = usize::from(r.u16()?);
                if count == 0 || count > MAX_ACK_IDS {
                    return Err(FrameError::Count);
                }
                let ids = (0..count).map(|_| r.id()).collect::<Result<Vec<_>, _>>()?;
                r.end()?;
                ClientFrame::Ack(ids)
            }
            T_SEND => {
                let request_id = r.u32()?;
                let account = r.id()?;
                let message_id = r.id()?;
                let flags = r.u8()?;
                if flags & !(FLAG_EPHEMERAL | FLAG_SEND_FRANKED | FLAG_SEND_ACCESS_KEY) != 0
                    || flags & (FLAG_EPHEMERAL | FLAG_SEND_FRANKED)
                        == FLAG_EPHEMERAL | FLAG_SEND_FRANKED
                {
                    return Err(FrameError::Flags);
                }
                let franked = flags & FLAG_SEND_FRANKED != 0;
                let access_key = if flags & FLAG_SEND_ACCESS_KEY != 0 {
                    Some(r.array()?)
                } else {
                    None
                };
                let count = usize::from(r.u16()?);
                if count == 0 || count > MAX_SEND_ENVELOPES {
                    return Err(FrameError::Count);
                }
                let mut envelopes = Vec::with_capacity(count);
                for _ in 0..count {
                    let device = r.u32()?;
                    let commitment = if franked { Some(r.array()?) } else { None };
                    let len = r.u32()?;
                    envelopes.push(SendEnvelope {
                        device,
                        content: r.take(len)?,
                        commitment,
                    });
                }
                r.end()?;
                ClientFrame::Send {
                    request_id,
                    account,
                    message_id,
                    ephemeral: flags & FLAG_EPHEMERAL != 0,
                    access_key,
                    envelopes,
                }
            }
            T_SIGNAL => {
                let request_id = r.u32()?;
                let account = r.id()?;
                let device = r.u32()?;
                let access_key = r.array()?;
                let payload = r.rest();
                if payload.is_empty() {
                    return Err(FrameError::Length);
                }
                ClientFrame::Signal {
                    request_id,
                    account,
                    device,
                    access_key,
                    payload,
                }
            }
            T_SUBSCRIBE => {
                let frame = ClientFrame::Subscribe {
                    request_id: r.u32()?,
                    channel: r.id()?,
                    token: r.array()?,
                    after: r.u64()?,
                };
                r.end()?;
                frame
            }
            T_UNSUBSCRIBE => {
                let frame = ClientFrame::Unsubscribe {
                    request_id: r.u32()?,
                    channel: r.id()?,
                };
                r.end()?;
                frame
            }
            _ => return Err(FrameError::Type),
        };
        Ok(frame)
    }
}

/// `Ack` frames for any number of ids, in chunks of at most [`MAX_ACK_IDS`] (none for none).
#[must_use]
pub fn ack_frames(ids: &[Id16]) -> Vec<Vec<u8>> {
    ids.chunks(MAX_ACK_IDS)
        .filter_map(|chunk| ClientFrame::Ack(chunk.to_vec()).encode().ok())
        .collect()
}

/// The request id of a client frame that carries one (send, signal, subscribe, unsubscribe),
/// read from its first six bytes even when the rest does not decode, so an error can be
/// answered as the result of that request.
#[must_use]
pub fn request_id_of(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [
            VERSION,
            T_SEND | T_SIGNAL | T_SUBSCRIBE | T_UNSUBSCRIBE,
            a,
            b,
            c,
            d,
            ..,
        ] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

fn counted(count: usize, max: usize) -> Result<u16, FrameError> {
    if count == 0 || count > max {
        return Err(FrameError::Count);
    }
    u16::try_from(count).map_err(|_| FrameError::Count)
}

/// A frame being decoded: its type byte and a reader over its body.
struct Frame<'a> {
    kind: u8,
    body: Reader<'a>,
}

impl<'a> Frame<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let mut body = Reader::new(bytes);
        let version = body.u8().ok_or(FrameError::Length)?;
        let kind = body.u8().ok_or(FrameError::Length)?;
        if version != VERSION {
            return Err(FrameError::Version);
        }
        Ok(Self { kind, body })
    }

    fn take(&mut self, len: u32) -> Result<&'a [u8], FrameError> {
        let len = usize::try_from(len).map_err(|_| FrameError::Length)?;
        self.body.take(len).ok_or(FrameError::Length)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        self.body.array().ok_or(FrameError::Length)
    }

    fn id(&mut self) -> Result<Id16, FrameError> {
        self.array()
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        self.body.u8().ok_or(FrameError::Length)
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        self.body.u16().ok_or(FrameError::Length)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        self.body.u32().ok_or(FrameError::Length)
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        self.body.u64().ok_or(FrameError::Length)
    }

    fn source(&mut self) -> Result<Source, FrameError> {
        Ok((self.id()?, self.u32()?))
    }

    fn rest(&mut self) -> &'a [u8] {
        self.body.rest()
    }

    fn end(self) -> Result<(), FrameError> {
        self.body.finish().ok_or(FrameError::Length)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn server_frames() -> Vec<ServerFrame<'static>> {
        vec![
            ServerFrame::Envelope(EnvelopeFrame {
                seq: 7,
                message_id: [1; 16],
                received_at: 1_700_000_000,
                source: Some(([2; 16], 3)),
                content: b"sealed",
                shared_payload: Some(b"shared"),
                franking: Some(Franking {
                    commitment: [9; 32],
                    stamp: [10; 32],
                }),
            }),
            ServerFrame::Envelope(EnvelopeFrame {
                seq: 8,
                message_id: [1; 16],
                received_at: 0,
                source: None,
                content: b"",
                shared_payload: None,
                franking: None,
            }),
            ServerFrame::QueueEmpty,
            ServerFrame::ChannelEntry {
                channel: [4; 16],
                seq: 9,
                created_at: 10,
                entry: b"entry",
                franking: None,
            },
            ServerFrame::ChannelEntry {
                channel: [4; 16],
                seq: 10,
                created_at: 11,
                entry: b"",
                franking: Some(Franking {
                    commitment: [12; 32],
                    stamp: [13; 32],
                }),
            },
            ServerFrame::Ephemeral {
                message_id: [5; 16],
                source: None,
                content: b"typing",
            },
            ServerFrame::Ephemeral {
                message_id: [5; 16],
                source: Some(([6; 16], 1)),
                content: b"",
            },
            ServerFrame::Result {
                request_id: 11,
                status: 200,
                body: b"{}",
            },
            ServerFrame::Error {
                body: b"{\"error\":{}}",
            },
        ]
    }

    fn client_frames() -> Vec<ClientFrame<'static>> {
        vec![
            ClientFrame::Ack(vec![[1; 16], [2; 16]]),
            ClientFrame::Send {
                request_id: 1,
                account: [3; 16],
                message_id: [4; 16],
                ephemeral: true,
                access_key: Some([12; 16]),
                envelopes: vec![
                    SendEnvelope {
                        device: 1,
                        content: b"a",
                        commitment: None,
                    },
                    SendEnvelope {
                        device: 2,
                        content: b"",
                        commitment: None,
                    },
                ],
            },
            ClientFrame::Signal {
                request_id: 2,
                account: [5; 16],
                device: 9,
                access_key: [13; 16],
                payload: b"p",
            },
            ClientFrame::Subscribe {
                request_id: 3,
                channel: [6; 16],
                token: [7; 32],
                after: 99,
            },
            ClientFrame::Unsubscribe {
                request_id: 4,
                channel: [8; 16],
            },
            ClientFrame::Send {
                request_id: 5,
                account: [3; 16],
                message_id: [4; 16],
                ephemeral: false,
                access_key: None,
                envelopes: vec![SendEnvelope {
                    device: 7,
                    content: b"sealed",
                    commitment: Some([11; 32]),
                }],
            },
        ]
    }

    /// The layouts of PROTOCOL.md §11.14, byte for byte.
    #[test]
    fn layouts_are_the_documented_ones() {
        let mut expected = vec![1, 0x01];
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&[1; 16]);
        expected.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        expected.push(0x07);
        expected.extend_from_slice(&[2; 16]);
        expected.extend_from_slice(&3u32.to_be_bytes());
        expected.extend_from_slice(&[9; 32]);
        expected.extend_from_slice(&[10; 32]);
        expected.extend_from_slice(&6u32.to_be_bytes());
        expected.extend_from_slice(b"sealed");
        expected.extend_from_slice(b"shared");
        assert_eq!(server_frames()[0].encode(), expected);

        let mut expected = vec![1, 0x11, 0, 0, 0, 1];
        expected.extend_from_slice(&[3; 16]);
        expected.extend_from_slice(&[4; 16]);
        expected.push(0x05);
        expected.extend_from_slice(&[12; 16]);
        expected.extend_from_slice(&[0, 2]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, b'a']);
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0]);
        assert_eq!(client_frames()[1].encode().unwrap(), expected);

        let mut expected = vec![1, 0x11, 0, 0, 0, 5];
        expected.extend_from_slice(&[3; 16]);
        expected.extend_from_slice(&[4; 16]);
        expected.extend_from_slice(&[0x02, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 7]);
        expected.extend_from_slice(&[11; 32]);
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"sealed");
        assert_eq!(client_frames()[5].encode().unwrap(), expected);

        let mut expected = vec![1, 0x12, 0, 0, 0, 2];
        expected.extend_from_slice(&[5; 16]);
        expected.extend_from_slice(&9u32.to_be_bytes());
        expected.extend_from_slice(&[13; 16]);
        expected.push(b'p');
        assert_eq!(client_frames()[2].encode().unwrap(), expected);

        let mut expected = vec![1, 0x05, 0, 0, 0, 11, 0, 200];
        expected.extend_from_slice(b"{}");
        assert_eq!(server_frames()[7].encode(), expected);

        // A franked channel entry: `01 07`, the channel, seq, created_at, commitment, stamp,
        // then the entry (here empty); an unfranked one keeps the `01 03` layout.
        let mut expected = vec![1, 0x07];
        expected.extend_from_slice(&[4; 16]);
        expected.extend_from_slice(&10u64.to_be_bytes());
        expected.extend_from_slice(&11u64.to_be_bytes());
        expected.extend_from_slice(&[12; 32]);
        expected.extend_from_slice(&[13; 32]);
        assert_eq!(server_frames()[4].encode(), expected);
        let mut expected = vec![1, 0x03];
        expected.extend_from_slice(&[4; 16]);
        expected.extend_from_slice(&9u64.to_be_bytes());
        expected.extend_from_slice(&10u64.to_be_bytes());
        expected.extend_from_slice(b"entry");
        assert_eq!(server_frames()[3].encode(), expected);
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in server_frames() {
            let bytes = frame.encode();
            assert_eq!(ServerFrame::decode(&bytes).unwrap(), frame);
            // A server frame is never a client frame, and the reverse.
            assert!(ClientFrame::decode(&bytes).is_err());
        }
        for frame in client_frames() {
            let bytes = frame.encode().unwrap();
            assert_eq!(ClientFrame::decode(&bytes).unwrap(), frame);
            assert!(ServerFrame::decode(&bytes).is_err());
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused_or_rest() {
        for frame in client_frames() {
            let bytes = frame.encode().unwrap();
            for cut in 0..bytes.len() {
                let r = ClientFrame::decode(&bytes[..cut]);
                // Signal's payload is "rest": a shorter one still decodes, but never empty.
                if let Ok(ClientFrame::Signal { payload, .. }) = &r {
                    assert!(!payload.is_empty());
                    continue;
                }
                assert!(r.is_err(), "{frame:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            if !matches!(frame, ClientFrame::Signal { .. }) {
                assert_eq!(ClientFrame::decode(&longer), Err(FrameError::Length));
            }
        }
        let envelope = server_frames()[1].encode();
        for cut in 0..envelope.len() {
            assert!(ServerFrame::decode(&envelope[..cut]).is_err());
        }
    }

    #[test]
    fn bad_headers_counts_and_flags_are_refused() {
        assert_eq!(ClientFrame::decode(&[]), Err(FrameError::Length));
        assert_eq!(
            ClientFrame::decode(&[2, T_ACK, 0, 1]),
            Err(FrameError::Version)
        );
        assert_eq!(ClientFrame::decode(&[1, 0x7f]), Err(FrameError::Type));
        assert_eq!(
            ClientFrame::decode(&[1, T_ACK, 0, 0]),
            Err(FrameError::Count)
        );
        assert_eq!(
            ClientFrame::decode(&[1, T_ACK, 0x04, 0x01]),
            Err(FrameError::Count)
        );
        let mut send = client_frames()[1].encode().unwrap();
        send[38] = 0x08;
        assert_eq!(ClientFrame::decode(&send), Err(FrameError::Flags));
        let mut envelope = server_frames()[0].encode();
        envelope[34] |= 0x08;
        assert_eq!(ServerFrame::decode(&envelope), Err(FrameError::Flags));
        assert_eq!(
            ClientFrame::Ack(Vec::new()).encode(),
            Err(FrameError::Count)
        );
        assert_eq!(
            ClientFrame::Signal {
                request_id: 0,
                account: [0; 16],
                device: 0,
                access_key: [0; 16],
                payload: b""
            }
            .encode(),
            Err(FrameError::Length)
        );
    }

    #[test]
    fn request_ids_are_found_in_broken_frames() {
        let unsub = client_frames()[4].encode().unwrap();
        assert_eq!(request_id_of(&unsub[..6]), Some(4));
        assert_eq!(request_id_of(&unsub[..5]), None);
        let ack = client_frames()[0].encode().unwrap();
        assert_eq!(request_id_of(&ack), None);
    }

    #[test]
    fn acks_are_chunked() {
        let ids = vec![[9u8; 16]; MAX_ACK_IDS + 1];
        let frames = ack_frames(&ids);
        assert_eq!(frames.len(), 2);
        assert!(ack_frames(&[]).is_empty());
        let Ok(ClientFrame::Ack(first)) = ClientFrame::decode(&frames[0]) else {
            panic!()
        };
        assert_eq!(first.len(), MAX_ACK_IDS);
    }

    #[test]
    fn franked_sends_are_all_or_nothing_and_never_ephemeral() {
        let mixed = ClientFrame::Send {
            request_id: 1,
            account: [3; 16],
            message_id: [4; 16],
            ephemeral: false,
            access_key: None,
            envelopes: vec![
                SendEnvelope {
                    device: 1,
                    content: b"a",
                    commitment: Some([1; 32]),
                },
                SendEnvelope {
                    device: 2,
                    content: b"b",
                    commitment: None,
                },
            ],
        };
        assert_eq!(mixed.encode(), Err(FrameError::Flags));
        let ephemeral = ClientFrame::Send {
            request_id: 1,
            account: [3; 16],
            message_id: [4; 16],
            ephemeral: true,
            access_key: None,
            envelopes: vec![SendEnvelope {
                device: 1,
                content: b"a",
                commitment: Some([1; 32]),
            }],
        };
        assert_eq!(ephemeral.encode(), Err(FrameError::Flags));
        // The same, forged on the wire: flags 0x03.
        let mut bytes = ClientFrame::Send {
            request_id: 1,
            account: [3; 16],
            message_id: [4; 16],
            ephemeral: false,
            access_key: None,
            envelopes: vec![SendEnvelope {
                device: 1,
                content: b"a",
                commitment: Some([1; 32]),
            }],
        }
        .encode()
        .unwrap();
        bytes[2 + 4 + 16 + 16] = FLAG_EPHEMERAL | FLAG_SEND_FRANKED;
        assert_eq!(ClientFrame::decode(&bytes), Err(FrameError::Flags));
        // A franked envelope frame cut inside its stamp is refused.
        let frame = ServerFrame::Envelope(EnvelopeFrame {
            seq: 1,
            message_id: [1; 16],
            received_at: 2,
            source: None,
            content: b"x",
            shared_payload: None,
            franking: Some(Franking {
                commitment: [1; 32],
                stamp: [2; 32],
            }),
        })
        .encode();
        assert!(ServerFrame::decode(&frame[..2 + 8 + 16 + 8 + 1 + 40]).is_err());
    }
}
