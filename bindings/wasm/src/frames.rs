//! WebSocket frames of PROTOCOL §11.14 (version 1): the server frames a device reads and the ack
//! frame it writes. The browser's `WebSocket` carries them as binary messages.

use serde::Serialize;

use haven_protocol::frames;

use crate::error::{ErrorCode, WebError, WebResult, invalid};

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
        /// The sender's franking commitment and the relay's stamp (§16.4), base64, when the
        /// envelope is franked: hand them with `seq` and `receivedAt` to `receiveEnvelope`.
        franking: Option<FrankingView>,
    },
    /// The queue present at connection time has been delivered.
    QueueEmpty,
    /// A channel entry of a subscription (groups): hand it to the messenger
    /// (`receiveChannelEntry`).
    ChannelEntry {
        /// Channel id (32 hex).
        channel_id: String,
        /// Position.
        seq: u64,
        /// When the relay stored it, Unix seconds.
        created_at: u64,
        /// The sealed entry, base64.
        entry: String,
        /// The writer's franking commitment and the relay's stamp (§16.4), base64, when the
        /// entry is franked: hand them with `seq` and `createdAt` to `receiveChannelEntry`.
        franking: Option<FrankingView>,
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

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn text(bytes: &[u8]) -> WebResult<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| WebError::new(ErrorCode::Malformed, "frame JSON is not UTF-8"))
}

fn source(source: Option<frames::Source>) -> Option<Source> {
    source.map(|(account, device)| Source {
        account_id: hex::encode(account),
        device_number: device,
    })
}

/// The franking of a delivered envelope (§16.4), base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrankingView {
    /// The sender's commitment `c`.
    pub commitment: String,
    /// The relay's delivery stamp `s`.
    pub stamp: String,
}

fn franking_view(f: frames::Franking) -> FrankingView {
    FrankingView {
        commitment: b64(&f.commitment),
        stamp: b64(&f.stamp),
    }
}

/// Decodes one server frame (with the protocol's codec) into its JS view.
///
/// # Errors
/// [`ErrorCode::Malformed`] for a wrong version, unknown type, bad flags, truncation or
/// trailing bytes.
pub fn parse_server_frame(frame: &[u8]) -> WebResult<ServerFrame> {
    let decoded = frames::ServerFrame::decode(frame)
        .map_err(|e| WebError::new(ErrorCode::Malformed, e.to_string()))?;
    Ok(match decoded {
        frames::ServerFrame::Envelope(e) => ServerFrame::Envelope {
            seq: e.seq,
            message_id: hex::encode(e.message_id),
            received_at: e.received_at,
            source: source(e.source),
            content: b64(e.content),
            has_payload: e.shared_payload.is_some(),
            franking: e.franking.map(franking_view),
        },
        frames::ServerFrame::QueueEmpty => ServerFrame::QueueEmpty,
        frames::ServerFrame::ChannelEntry {
            channel,
            seq,
            created_at,
            entry,
            franking,
        } => ServerFrame::ChannelEntry {
            channel_id: hex::encode(channel),
            seq,
            created_at,
            entry: b64(entry),
            franking: franking.map(franking_view),
        },
        frames::ServerFrame::Ephemeral {
            message_id,
            source: from,
            content,
        } => ServerFrame::Ephemeral {
            message_id: hex::encode(message_id),
            source: source(from),
            content: b64(content),
        },
        frames::ServerFrame::Result {
            request_id,
            status,
            body,
        } => ServerFrame::Result {
            request_id,
            status,
            json: text(body)?,
        },
        frames::ServerFrame::Error { body } => ServerFrame::Error { json: text(body)? },
    })
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
    let ids = message_ids
        .iter()
        .map(|id| parse_id(id))
        .collect::<WebResult<Vec<_>>>()?;
    frames::ClientFrame::Ack(ids)
        .encode()
        .map_err(|_| invalid("an ack carries 1 to 1024 ids"))
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
    fn channel_entry_frames_carry_the_entry() {
        let frame = frames::ServerFrame::ChannelEntry {
            channel: [4; 16],
            seq: 9,
            created_at: 10,
            entry: b"sealed",
            franking: None,
        }
        .encode();
        assert_eq!(
            parse_server_frame(&frame).unwrap(),
            ServerFrame::ChannelEntry {
                channel_id: "04".repeat(16),
                seq: 9,
                created_at: 10,
                entry: b64(b"sealed"),
                franking: None,
            }
        );
        for n in 0..frame.len() - "sealed".len() {
            assert!(parse_server_frame(&frame[..n]).is_err());
        }
        let franked = frames::ServerFrame::ChannelEntry {
            channel: [4; 16],
            seq: 9,
            created_at: 10,
            entry: b"sealed",
            franking: Some(frames::Franking {
                commitment: [1; 32],
                stamp: [2; 32],
            }),
        }
        .encode();
        let ServerFrame::ChannelEntry { franking, .. } = parse_server_frame(&franked).unwrap()
        else {
            panic!("not a channel entry")
        };
        assert_eq!(
            franking,
            Some(FrankingView {
                commitment: b64(&[1; 32]),
                stamp: b64(&[2; 32]),
            })
        );
        // Cut inside the stamp: refused, never read as a shorter entry.
        for n in 0..franked.len() - "sealed".len() {
            assert!(parse_server_frame(&franked[..n]).is_err());
        }
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
