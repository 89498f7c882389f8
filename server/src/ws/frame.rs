//! The WebSocket frame format, version 1 (PROTOCOL.md §11.14).
//!
//! Every WebSocket *binary* message is one frame: a version byte, a type byte and a body whose
//! layout depends on the type. Integers are big-endian. "rest" means "all remaining bytes of the
//! message" (the WebSocket message length delimits it, so it carries no length prefix). Decoders
//! check every length before reading and reject trailing bytes where the layout has no "rest".

use crate::ids::Id;

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

/// Envelope flag: the sender's address follows (authenticated sends).
pub const FLAG_SOURCE: u8 = 0x01;
/// Envelope flag: the frame ends with a shared payload (multi-recipient sends).
pub const FLAG_SHARED: u8 = 0x02;
/// Send flag: ephemeral class.
pub const FLAG_EPHEMERAL: u8 = 0x01;

/// An envelope as the server sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeFrame<'a> {
    /// Server sequence number.
    pub seq: u64,
    /// Client-chosen message id.
    pub message_id: Id,
    /// Coarse receive time, Unix seconds.
    pub received_at: u64,
    /// Sender (account, device number) for authenticated sends.
    pub source: Option<(Id, u32)>,
    /// The opaque envelope bytes.
    pub content: &'a [u8],
    /// The shared payload of a multi-recipient send.
    pub shared_payload: Option<&'a [u8]>,
}

impl EnvelopeFrame<'_> {
    /// Encodes the frame.
    ///
    /// ```text
    /// 01 01 | seq u64 | message_id [16] | received_at u64 | flags u8
    ///       | [source account [16] | source device u32]   (flags & 0x01)
    ///       | content_len u32 | content | [shared payload: rest]   (flags & 0x02)
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            55 + self.content.len() + self.shared_payload.map_or(0, <[u8]>::len),
        );
        out.extend_from_slice(&[VERSION, T_ENVELOPE]);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(self.message_id.as_bytes());
        out.extend_from_slice(&self.received_at.to_be_bytes());
        let mut flags = 0;
        if self.source.is_some() {
            flags |= FLAG_SOURCE;
        }
        if self.shared_payload.is_some() {
            flags |= FLAG_SHARED;
        }
        out.push(flags);
        if let Some((account, device)) = &self.source {
            out.extend_from_slice(account.as_bytes());
            out.extend_from_slice(&device.to_be_bytes());
        }
        // Envelope sizes are bounded far below 4 GiB by the mail settings.
        let len = u32::try_from(self.content.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.content);
        if let Some(shared) = self.shared_payload {
            out.extend_from_slice(shared);
        }
        out
    }
}

/// `01 02`: the queue that existed when the socket opened has been delivered.
pub fn queue_empty() -> Vec<u8> {
    vec![VERSION, T_QUEUE_EMPTY]
}

/// `01 03 | channel id [16] | seq u64 | created_at u64 | entry: rest`.
pub fn channel_entry(channel: &Id, seq: u64, created_at: u64, entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(34 + entry.len());
    out.extend_from_slice(&[VERSION, T_CHANNEL_ENTRY]);
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&created_at.to_be_bytes());
    out.extend_from_slice(entry);
    out
}

/// `01 04 | message_id [16] | flags u8 | [source account [16] | source device u32]
/// (flags & 0x01) | content: rest`.
pub fn ephemeral(message_id: &Id, source: Option<(Id, u32)>, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(39 + content.len());
    out.extend_from_slice(&[VERSION, T_EPHEMERAL]);
    out.extend_from_slice(message_id.as_bytes());
    match source {
        Some((account, device)) => {
            out.push(FLAG_SOURCE);
            out.extend_from_slice(account.as_bytes());
            out.extend_from_slice(&device.to_be_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(content);
    out
}

/// `01 05 | request_id u32 | status u16 | JSON body (UTF-8): rest`.
pub fn result(request_id: u32, status: u16, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&[VERSION, T_RESULT]);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(json);
    out
}

/// `01 06 | JSON error body (UTF-8): rest`.
pub fn error(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + json.len());
    out.extend_from_slice(&[VERSION, T_ERROR]);
    out.extend_from_slice(json);
    out
}

/// A decoded client frame. Borrowed from the message bytes.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientFrame<'a> {
    /// `01 10 | count u16 | message_id [16] × count` (1 ≤ count ≤ 1024).
    Ack(Vec<Id>),
    /// `01 11 | request_id u32 | recipient account [16] | message_id [16] | flags u8
    /// (0x01 = ephemeral, other bits 0) | count u16 (1..=1024)
    /// | count × (device u32 | len u32 | content [len])`: the authenticated send.
    Send {
        /// Echoed in the result.
        request_id: u32,
        /// Recipient account.
        account: Id,
        /// Client-chosen message id (idempotency key).
        message_id: Id,
        /// Ephemeral class (never stored).
        ephemeral: bool,
        /// (device number, envelope) pairs.
        envelopes: Vec<(u32, &'a [u8])>,
    },
    /// `01 12 | request_id u32 | account [16] | device u32 | payload: rest` (payload ≥ 1 byte).
    Signal {
        /// Echoed in the result.
        request_id: u32,
        /// Recipient account.
        account: Id,
        /// Recipient device number.
        device: u32,
        /// The opaque signal.
        payload: &'a [u8],
    },
    /// `01 13 | request_id u32 | channel id [16] | read token [32] | after u64`.
    Subscribe {
        /// Echoed in the result.
        request_id: u32,
        /// The channel.
        channel: Id,
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
        channel: Id,
    },
}

/// Why a client frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than its layout, or trailing bytes where none may be.
    #[error("frame length does not match its type")]
    Length,
    /// Version byte other than 1.
    #[error("unsupported frame version")]
    Version,
    /// Unknown frame type.
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

/// A bounds-checked reader over a frame body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(FrameError::Length)?;
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        self.take(N)?.try_into().map_err(|_| FrameError::Length)
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        self.array().map(u64::from_be_bytes)
    }

    fn id(&mut self) -> Result<Id, FrameError> {
        self.array::<16>().map(Id::from)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Length)
        }
    }
}

/// Decodes a client frame.
pub fn decode(bytes: &[u8]) -> Result<ClientFrame<'_>, FrameError> {
    let mut r = Reader(bytes);
    let [version, kind] = r.array()?;
    if version != VERSION {
        return Err(FrameError::Version);
    }
    let frame = match kind {
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
            let [flags] = r.array()?;
            if flags & !FLAG_EPHEMERAL != 0 {
                return Err(FrameError::Flags);
            }
            let count = usize::from(r.u16()?);
            if count == 0 || count > MAX_SEND_ENVELOPES {
                return Err(FrameError::Count);
            }
            let mut envelopes = Vec::with_capacity(count);
            for _ in 0..count {
                let device = r.u32()?;
                let len = usize::try_from(r.u32()?).map_err(|_| FrameError::Length)?;
                envelopes.push((device, r.take(len)?));
            }
            r.end()?;
            ClientFrame::Send {
                request_id,
                account,
                message_id,
                ephemeral: flags & FLAG_EPHEMERAL != 0,
                envelopes,
            }
        }
        T_SIGNAL => {
            let frame = ClientFrame::Signal {
                request_id: r.u32()?,
                account: r.id()?,
                device: r.u32()?,
                payload: r.rest(),
            };
            if let ClientFrame::Signal { payload: [], .. } = frame {
                return Err(FrameError::Length);
            }
            frame
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

/// The request id of a frame that failed to decode, when its type has one and enough bytes
/// arrived to read it (so the error can be reported as that request's result).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_layout() {
        let account = Id::from([9; 16]);
        let frame = EnvelopeFrame {
            seq: 0x0102,
            message_id: Id::from([7; 16]),
            received_at: 1_700_000_000,
            source: Some((account, 3)),
            content: b"abc",
            shared_payload: Some(b"zz"),
        }
        .encode();
        assert_eq!(&frame[..2], &[1, 1]);
        assert_eq!(&frame[2..10], &0x0102u64.to_be_bytes());
        assert_eq!(&frame[10..26], &[7; 16]);
        assert_eq!(&frame[26..34], &1_700_000_000u64.to_be_bytes());
        assert_eq!(frame[34], FLAG_SOURCE | FLAG_SHARED);
        assert_eq!(&frame[35..51], &[9; 16]);
        assert_eq!(&frame[51..55], &3u32.to_be_bytes());
        assert_eq!(&frame[55..59], &3u32.to_be_bytes());
        assert_eq!(&frame[59..62], b"abc");
        assert_eq!(&frame[62..], b"zz");
        let bare = EnvelopeFrame {
            seq: 1,
            message_id: Id::from([0; 16]),
            received_at: 0,
            source: None,
            content: b"x",
            shared_payload: None,
        }
        .encode();
        assert_eq!(bare.len(), 35 + 4 + 1);
        assert_eq!(bare[34], 0);
    }

    #[test]
    fn client_frames_decode_and_truncations_fail() {
        let mut ack = vec![1, T_ACK, 0, 2];
        ack.extend_from_slice(&[1; 16]);
        ack.extend_from_slice(&[2; 16]);
        assert_eq!(
            decode(&ack),
            Ok(ClientFrame::Ack(vec![Id::from([1; 16]), Id::from([2; 16])]))
        );
        let mut sub = vec![1, T_SUBSCRIBE, 0, 0, 0, 5];
        sub.extend_from_slice(&[3; 16]);
        sub.extend_from_slice(&[4; 32]);
        sub.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(
            decode(&sub),
            Ok(ClientFrame::Subscribe {
                request_id: 5,
                channel: Id::from([3; 16]),
                token: [4; 32],
                after: 9
            })
        );
        let mut signal = vec![1, T_SIGNAL, 0, 0, 0, 6];
        signal.extend_from_slice(&[5; 16]);
        signal.extend_from_slice(&2u32.to_be_bytes());
        signal.push(0xee);
        let mut unsub = vec![1, T_UNSUBSCRIBE, 0, 0, 0, 7];
        unsub.extend_from_slice(&[3; 16]);
        let mut send = vec![1, T_SEND, 0, 0, 0, 8];
        send.extend_from_slice(&[6; 16]);
        send.extend_from_slice(&[8; 16]);
        send.extend_from_slice(&[FLAG_EPHEMERAL, 0, 2]);
        send.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0xaa, 0xbb]);
        send.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 1, 0xcc]);
        assert_eq!(
            decode(&send),
            Ok(ClientFrame::Send {
                request_id: 8,
                account: Id::from([6; 16]),
                message_id: Id::from([8; 16]),
                ephemeral: true,
                envelopes: vec![(1, &[0xaa, 0xbb][..]), (3, &[0xcc][..])],
            })
        );
        let mut bad_flags = send.clone();
        bad_flags[38] = 0x80;
        assert_eq!(decode(&bad_flags), Err(FrameError::Flags));
        for frame in [&ack, &sub, &signal, &unsub, &send] {
            assert!(decode(frame).is_ok());
            // Every strict prefix fails cleanly (signal needs a payload byte).
            for cut in 0..frame.len() {
                assert!(decode(&frame[..cut]).is_err(), "{frame:?} cut {cut}");
            }
        }
        // Trailing bytes where the layout has none.
        for frame in [&ack, &sub, &unsub, &send] {
            let mut long = frame.clone();
            long.push(0);
            assert_eq!(decode(&long), Err(FrameError::Length));
        }
        assert_eq!(decode(&[2, T_ACK, 0, 1]), Err(FrameError::Version));
        assert_eq!(decode(&[1, 0x7f]), Err(FrameError::Type));
        assert_eq!(decode(&[1, T_ACK, 0, 0]), Err(FrameError::Count));
        assert_eq!(decode(&[1, T_ACK, 0x04, 0x01]), Err(FrameError::Count));
        assert_eq!(request_id_of(&unsub[..7]), Some(7));
        assert_eq!(request_id_of(&ack), None);
    }
}
