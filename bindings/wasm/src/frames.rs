//! WebSocket frames of PROTOCOL §11.14 (version 1): the server frames a device reads and the ack
//! frame it writes. The browser's `WebSocket` carries them as binary messages.

use serde::Serialize;

use crate::error::{ErrorCode, WebError, WebResult, invalid};

/// Frame format version.
pub const FRAME_VERSION: u8 = 0x01;
/// Most ids in one ack frame.
pub const MAX_ACK_IDS: usize = 1024;

/// A decoded server → client frame (serialised to JS as `{type: …, …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum ServerFrame {
    /// A queued envelope.
    Envelope {
        /// Queue position.
        seq: u64,
        /// Message id (32 hex).
        message_id: String,
        /// Unix seconds.
        received_at: u64,
        /// Sender of a logged-in send (`null` for sealed sends).
        source: Option<Source>,
        /// The envelope bytes, base64.
        content: String,
        /// Whether a shared payload (multi-recipient send) follows.
        has_payload: bool,
    },
    /// The queue present at connection time has been delivered.
    QueueEmpty,
    /// A channel entry (groups; passed through undecoded).
    ChannelEntry {
        /// Channel id (32 hex).
        channel_id: String,
        /// Position.
        seq: u64,
    },
    /// An ephemeral envelope (never stored by the relay).
    Ephemeral {
        /// Message id (32 hex).
        message_id: String,
        /// Sender, when known.
        source: Option<Source>,
        /// The envelope bytes, base64.
        content: String,
    },
    /// The answer to a request frame.
    Result {
        /// Request id.
        request_id: u32,
        /// HTTP-equivalent status.
        status: u16,
        /// JSON text of the answer.
        json: String,
    },
    /// A frame the relay could not process.
    Error {
        /// JSON text `{"error":{"code","message"}}`.
        json: String,
    },
}

/// The sending device of a logged-in send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Account id (32 hex).
    pub account_id: String,
    /// Device number.
    pub device_number: u32,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> WebResult<&'a [u8]> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| WebError::new(ErrorCode::Malformed, "frame is truncated"))?;
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> WebResult<[u8; N]> {
        self.take(N)?
            .try_into()
            .map_err(|_| WebError::new(ErrorCode::Malformed, "frame is truncated"))
    }
    fn u8(&mut self) -> WebResult<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> WebResult<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> WebResult<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> WebResult<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    fn end(&self) -> WebResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WebError::new(
                ErrorCode::Malformed,
                "trailing bytes after frame",
            ))
        }
    }
    fn source(&mut self, flags: u8) -> WebResult<Option<Source>> {
        if flags & 0x01 == 0 {
            return Ok(None);
        }
        let account: [u8; 16] = self.array()?;
        Ok(Some(Source {
            account_id: hex::encode(account),
            device_number: self.u32()?,
        }))
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn text(bytes: &[u8]) -> WebResult<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| WebError::new(ErrorCode::Malformed, "frame JSON is not UTF-8"))
}

/// Decodes one server frame.
///
/// # Errors
/// [`ErrorCode::Malformed`] for a wrong version, unknown type, bad flags, truncation or
/// trailing bytes.
pub fn parse_server_frame(frame: &[u8]) -> WebResult<ServerFrame> {
    let mut r = Reader(frame);
    if r.u8()? != FRAME_VERSION {
        return Err(WebError::new(
            ErrorCode::Malformed,
            "unsupported frame version",
        ));
    }
    let bad_flags = || WebError::new(ErrorCode::Malformed, "invalid frame flags");
    let out = match r.u8()? {
        0x01 => {
            let seq = r.u64()?;
            let id: [u8; 16] = r.array()?;
            let received_at = r.u64()?;
            let flags = r.u8()?;
            if flags & !0x03 != 0 {
                return Err(bad_flags());
            }
            let source = r.source(flags)?;
            let len = r.u32()? as usize;
            let content = r.take(len)?;
            let has_payload = flags & 0x02 != 0;
            if has_payload {
                r.rest();
            }
            ServerFrame::Envelope {
                seq,
                message_id: hex::encode(id),
                received_at,
                source,
                content: b64(content),
                has_payload,
            }
        }
        0x02 => ServerFrame::QueueEmpty,
        0x03 => {
            let channel: [u8; 16] = r.array()?;
            let seq = r.u64()?;
            let _created_at = r.u64()?;
            r.rest();
            ServerFrame::ChannelEntry {
                channel_id: hex::encode(channel),
                seq,
            }
        }
        0x04 => {
            let id: [u8; 16] = r.array()?;
            let flags = r.u8()?;
            if flags & !0x01 != 0 {
                return Err(bad_flags());
            }
            let source = r.source(flags)?;
            ServerFrame::Ephemeral {
                message_id: hex::encode(id),
                source,
                content: b64(r.rest()),
            }
        }
        0x05 => ServerFrame::Result {
            request_id: r.u32()?,
            status: r.u16()?,
            json: text(r.rest())?,
        },
        0x06 => ServerFrame::Error {
            json: text(r.rest())?,
        },
        other => {
            return Err(WebError::new(
                ErrorCode::Malformed,
                format!("unknown frame type {other}"),
            ));
        }
    };
    r.end()?;
    Ok(out)
}

/// Parses a 32-lowercase-hex id.
pub(crate) fn parse_id(id: &str) -> WebResult<[u8; 16]> {
    if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid("an id must be 32 lowercase hex digits"));
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(id, &mut out).map_err(|_| invalid("id is not hex"))?;
    Ok(out)
}

/// The ack frame (type `0x10`) for `message_ids`.
///
/// # Errors
/// [`ErrorCode::InvalidArgument`] for a malformed id or a count outside 1–1024.
pub fn ack_frame(message_ids: &[String]) -> WebResult<Vec<u8>> {
    if message_ids.is_empty() || message_ids.len() > MAX_ACK_IDS {
        return Err(invalid("an ack carries 1 to 1024 ids"));
    }
    let mut out = Vec::with_capacity(4 + 16 * message_ids.len());
    out.extend_from_slice(&[FRAME_VERSION, 0x10]);
    out.extend_from_slice(&u16::try_from(message_ids.len()).unwrap_or(0).to_be_bytes());
    for id in message_ids {
        out.extend_from_slice(&parse_id(id)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn envelope_frame(with_source: bool) -> Vec<u8> {
        let mut f = vec![1, 1];
        f.extend_from_slice(&17u64.to_be_bytes());
        f.extend_from_slice(&[0xab; 16]);
        f.extend_from_slice(&1_790_000_000u64.to_be_bytes());
        f.push(u8::from(with_source));
        if with_source {
            f.extend_from_slice(&[0xcd; 16]);
            f.extend_from_slice(&2u32.to_be_bytes());
        }
        f.extend_from_slice(&3u32.to_be_bytes());
        f.extend_from_slice(b"abc");
        f
    }

    #[test]
    fn envelope_frames_decode_and_every_prefix_is_refused() {
        for with_source in [false, true] {
            let f = envelope_frame(with_source);
            match parse_server_frame(&f).unwrap() {
                ServerFrame::Envelope {
                    seq,
                    message_id,
                    source,
                    content,
                    ..
                } => {
                    assert_eq!(seq, 17);
                    assert_eq!(message_id, "ab".repeat(16));
                    assert_eq!(source.is_some(), with_source);
                    assert_eq!(content, "YWJj");
                }
                other => panic!("{other:?}"),
            }
            for n in 0..f.len() {
                assert_eq!(
                    parse_server_frame(&f[..n]).unwrap_err().code,
                    ErrorCode::Malformed
                );
            }
            let mut longer = f.clone();
            longer.push(0);
            assert!(parse_server_frame(&longer).is_err());
        }
        assert_eq!(
            parse_server_frame(&[1, 2]).unwrap(),
            ServerFrame::QueueEmpty
        );
        assert!(parse_server_frame(&[2, 2]).is_err());
        assert!(parse_server_frame(&[1, 0x7f]).is_err());
    }

    #[test]
    fn ack_frame_layout_and_bad_ids() {
        let id = "01".repeat(16);
        let f = ack_frame(std::slice::from_ref(&id)).unwrap();
        assert_eq!(&f[..4], &[1, 0x10, 0, 1]);
        assert_eq!(&f[4..], &[1u8; 16]);
        assert!(ack_frame(&[]).is_err());
        for bad in ["", "zz", &"AB".repeat(16), &"0".repeat(31), &"0".repeat(33)] {
            assert_eq!(
                ack_frame(&[bad.to_string()]).unwrap_err().code,
                ErrorCode::InvalidArgument
            );
        }
    }
}
