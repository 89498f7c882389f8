//! The device's WebSocket to the relay (`docs/PROTOCOL.md` §11.14): frame codec, one connection
//! attempt, and the reconnect policy (exponential backoff with full jitter).
//!
//! The codec is pure (bytes in, typed frames out; every length checked, nothing panics on what a
//! relay sends). [`connect`] opens an authenticated socket with the device's access token in the
//! `Authorization` header (native clients; browsers use tickets). [`Backoff`] decides how long to
//! wait before the next attempt. The loop that ties them to the messenger lives in
//! [`crate::messenger`].

use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::relay::{RelayClient, RelayError};

/// The frame format version.
pub const VERSION: u8 = 1;
const T_ENVELOPE: u8 = 0x01;
const T_QUEUE_EMPTY: u8 = 0x02;
const T_CHANNEL_ENTRY: u8 = 0x03;
const T_EPHEMERAL: u8 = 0x04;
const T_RESULT: u8 = 0x05;
const T_ERROR: u8 = 0x06;
const T_ACK: u8 = 0x10;
const T_SUBSCRIBE: u8 = 0x13;
const T_UNSUBSCRIBE: u8 = 0x14;
/// Most message ids in one ack frame (the relay's limit).
pub const MAX_ACK_IDS: usize = 1024;

/// A frame the relay sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// A queued envelope.
    Envelope {
        /// Relay sequence number.
        seq: u64,
        /// Sender-chosen message id.
        message_id: [u8; 16],
        /// Coarse receive time (Unix seconds).
        received_at: u64,
        /// Sender address for logged-in sends; `None` for sealed sends.
        source: Option<([u8; 16], u32)>,
        /// The envelope bytes.
        content: Vec<u8>,
        /// Shared payload of a multi-recipient send.
        shared_payload: Option<Vec<u8>>,
    },
    /// Everything queued when the socket opened has been sent.
    QueueEmpty,
    /// An entry of a subscribed channel.
    ChannelEntry {
        /// The channel.
        channel_id: [u8; 16],
        /// Its sequence number in the channel.
        seq: u64,
        /// When the relay stored it (Unix seconds).
        created_at: u64,
        /// The opaque entry.
        entry: Vec<u8>,
    },
    /// An ephemeral (never stored) signal.
    Ephemeral {
        /// Random id chosen by the relay or the sender.
        message_id: [u8; 16],
        /// Sender address when the relay knows it.
        source: Option<([u8; 16], u32)>,
        /// The content (a sealed envelope for Haven clients).
        content: Vec<u8>,
    },
    /// The answer to a request frame.
    Result {
        /// The request it answers.
        request_id: u32,
        /// HTTP-equivalent status.
        status: u16,
        /// JSON body.
        json: Vec<u8>,
    },
    /// A frame of ours the relay could not process.
    Error {
        /// JSON body (`{"error":{"code","message"}}`).
        json: Vec<u8>,
    },
}

/// A frame the relay sent that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed frame from the relay: {0}")]
pub struct FrameError(&'static str);

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        self.take(N)?
            .try_into()
            .map_err(|_| FrameError("truncated"))
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    fn finish(&self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError("trailing bytes"))
        }
    }
}

impl ServerFrame {
    /// Decodes one binary WebSocket message from the relay.
    ///
    /// # Errors
    /// [`FrameError`] for a wrong version, an unknown type, a truncated body or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let mut c = Cursor(bytes);
        if c.u8()? != VERSION {
            return Err(FrameError("unsupported version"));
        }
        let frame = match c.u8()? {
            T_ENVELOPE => {
                let seq = c.u64()?;
                let message_id = c.array()?;
                let received_at = c.u64()?;
                let flags = c.u8()?;
                if flags & !0x03 != 0 {
                    return Err(FrameError("unknown envelope flags"));
                }
                let source = if flags & 0x01 != 0 {
                    Some((c.array()?, c.u32()?))
                } else {
                    None
                };
                let len = c.u32()? as usize;
                let content = c.take(len)?.to_vec();
                let shared_payload = (flags & 0x02 != 0).then(|| c.rest().to_vec());
                c.finish()?;
                Self::Envelope {
                    seq,
                    message_id,
                    received_at,
                    source,
                    content,
                    shared_payload,
                }
            }
            T_QUEUE_EMPTY => {
                c.finish()?;
                Self::QueueEmpty
            }
            T_CHANNEL_ENTRY => Self::ChannelEntry {
                channel_id: c.array()?,
                seq: c.u64()?,
                created_at: c.u64()?,
                entry: c.rest().to_vec(),
            },
            T_EPHEMERAL => {
                let message_id = c.array()?;
                let flags = c.u8()?;
                if flags & !0x01 != 0 {
                    return Err(FrameError("unknown ephemeral flags"));
                }
                let source = if flags & 0x01 != 0 {
                    Some((c.array()?, c.u32()?))
                } else {
                    None
                };
                Self::Ephemeral {
                    message_id,
                    source,
                    content: c.rest().to_vec(),
                }
            }
            T_RESULT => Self::Result {
                request_id: c.u32()?,
                status: c.u16()?,
                json: c.rest().to_vec(),
            },
            T_ERROR => Self::Error {
                json: c.rest().to_vec(),
            },
            _ => return Err(FrameError("unknown frame type")),
        };
        Ok(frame)
    }
}

/// Encodes an ack frame for up to [`MAX_ACK_IDS`] message ids (extra ids are ignored; callers
/// chunk).
#[must_use]
pub fn ack_frame(ids: &[[u8; 16]]) -> Vec<u8> {
    let ids = &ids[..ids.len().min(MAX_ACK_IDS)];
    let mut out = Vec::with_capacity(4 + 16 * ids.len());
    out.extend_from_slice(&[VERSION, T_ACK]);
    // `ids.len() <= 1024` fits in u16.
    out.extend_from_slice(&u16::try_from(ids.len()).unwrap_or(0).to_be_bytes());
    for id in ids {
        out.extend_from_slice(id);
    }
    out
}

/// Encodes a channel subscription (entries with `seq > after` follow, then live ones).
#[must_use]
pub fn subscribe_frame(
    request_id: u32,
    channel_id: &[u8; 16],
    read_token: &[u8; 32],
    after: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 4 + 16 + 32 + 8);
    out.extend_from_slice(&[VERSION, T_SUBSCRIBE]);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(channel_id);
    out.extend_from_slice(read_token);
    out.extend_from_slice(&after.to_be_bytes());
    out
}

/// Encodes an unsubscription.
#[must_use]
pub fn unsubscribe_frame(request_id: u32, channel_id: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 4 + 16);
    out.extend_from_slice(&[VERSION, T_UNSUBSCRIBE]);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(channel_id);
    out
}

/// An open socket.
pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The session is gone (logged out, device unlinked, refresh token reused): reconnecting
    /// cannot help; the user must log in again.
    #[error("session no longer valid: {0}")]
    Unauthorized(String),
    /// Network or relay trouble: try again later.
    #[error("connection failed: {0}")]
    Transient(String),
}

/// Opens the device's socket: `GET {base}/v1/ws` with `Authorization: Bearer`.
///
/// # Errors
/// [`ConnectError::Unauthorized`] when the relay refuses the session (401), otherwise
/// [`ConnectError::Transient`].
pub async fn connect(relay: &RelayClient) -> Result<Socket, ConnectError> {
    let token = relay.access_token().await.map_err(|e| match e {
        RelayError::NotLoggedIn => ConnectError::Unauthorized(e.to_string()),
        RelayError::Refused { status: 401, .. } => ConnectError::Unauthorized(e.to_string()),
        other => ConnectError::Transient(other.to_string()),
    })?;
    let base = relay.base_url();
    let url = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/v1/ws")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}/v1/ws")
    } else {
        return Err(ConnectError::Transient("relay URL is not http(s)".into()));
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Transient(e.to_string()))?;
    let value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
        .map_err(|_| ConnectError::Transient("access token is not a header value".into()))?;
    request.headers_mut().insert("authorization", value);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response))
            if response.status().as_u16() == 401 =>
        {
            // An expired access token is refreshed on the next attempt; a revoked session
            // fails that refresh and surfaces as Unauthorized there.
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            if body.contains("token_expired") {
                relay.invalidate_access_token().await;
                Err(ConnectError::Transient("access token expired".into()))
            } else {
                Err(ConnectError::Unauthorized(body))
            }
        }
        Err(e) => Err(ConnectError::Transient(e.to_string())),
    }
}

/// Reconnect delays: exponential from `base` to `cap`, each drawn uniformly from
/// `[0, current]` ("full jitter"), so many clients reconnecting after a relay restart spread out
/// instead of arriving together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff between `base` and `cap`.
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: uniform in `[0, ceiling]`; doubles the ceiling for the attempt after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jitter = rand::Rng::next_u64(&mut rand::rng()) % millis.saturating_add(1);
        Duration::from_millis(jitter)
    }

    /// Back to the first step (after a connection that worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_server_frame_and_refuses_malformed_ones() {
        let mut env = vec![1, T_ENVELOPE];
        env.extend_from_slice(&7u64.to_be_bytes());
        env.extend_from_slice(&[9; 16]);
        env.extend_from_slice(&1000u64.to_be_bytes());
        env.push(0x01);
        env.extend_from_slice(&[3; 16]);
        env.extend_from_slice(&2u32.to_be_bytes());
        env.extend_from_slice(&3u32.to_be_bytes());
        env.extend_from_slice(b"abc");
        assert_eq!(
            ServerFrame::decode(&env).unwrap(),
            ServerFrame::Envelope {
                seq: 7,
                message_id: [9; 16],
                received_at: 1000,
                source: Some(([3; 16], 2)),
                content: b"abc".to_vec(),
                shared_payload: None,
            }
        );
        // Every truncation fails cleanly; trailing bytes are refused.
        for n in 0..env.len() {
            assert!(ServerFrame::decode(&env[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = env.clone();
        trailing.push(0);
        assert!(ServerFrame::decode(&trailing).is_err());
        assert_eq!(
            ServerFrame::decode(&[1, T_QUEUE_EMPTY]).unwrap(),
            ServerFrame::QueueEmpty
        );
        assert!(ServerFrame::decode(&[2, T_QUEUE_EMPTY]).is_err());
        assert!(ServerFrame::decode(&[1, 0x7f]).is_err());
        let mut result = vec![1, T_RESULT];
        result.extend_from_slice(&5u32.to_be_bytes());
        result.extend_from_slice(&200u16.to_be_bytes());
        result.extend_from_slice(b"{}");
        assert_eq!(
            ServerFrame::decode(&result).unwrap(),
            ServerFrame::Result {
                request_id: 5,
                status: 200,
                json: b"{}".to_vec()
            }
        );
    }

    #[test]
    fn client_frames_have_the_documented_layout() {
        let ack = ack_frame(&[[1; 16], [2; 16]]);
        assert_eq!(&ack[..4], &[1, T_ACK, 0, 2]);
        assert_eq!(ack.len(), 4 + 32);
        let sub = subscribe_frame(9, &[4; 16], &[5; 32], 3);
        assert_eq!(sub.len(), 2 + 4 + 16 + 32 + 8);
        assert_eq!(&sub[2..6], &9u32.to_be_bytes());
        assert_eq!(&sub[sub.len() - 8..], &3u64.to_be_bytes());
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling);
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        // Jitter really varies (100 draws from [0, 2000] ms are not all equal).
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(2));
        let draws: std::collections::HashSet<_> = (0..100).map(|_| b.next_delay()).collect();
        assert!(draws.len() > 10);
    }
}
