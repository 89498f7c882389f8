//! Wire vectors of `haven-protocol` formats: the WebSocket frames (§11.14), messenger content
//! (§13.1) and attachment pointers (§14). Each builder decodes what it encodes and asserts that
//! the refusals it lists are refused.

use haven_protocol::attachment::{self, PointerFields};
use haven_protocol::content::{Body, Content, Conversation, GroupInvite, ReceiptKind};
use haven_protocol::frames::{ClientFrame, EnvelopeFrame, Franking, SendEnvelope, ServerFrame};
use serde_json::{Value, json};

use super::session::h;

fn id(b: u8) -> [u8; 16] {
    [b; 16]
}

pub(super) fn frame_vectors() -> Value {
    let fr = Franking {
        commitment: [0xC0; 32],
        stamp: [0x57; 32],
    };
    let envelope = |source, franking, shared: Option<&'static [u8]>| {
        ServerFrame::Envelope(EnvelopeFrame {
            seq: 0x0102_0304_0506_0708,
            message_id: id(0x4D),
            received_at: 1_800_000_000,
            source,
            content: b"sealed envelope",
            shared_payload: shared,
            franking,
        })
    };
    let server: Vec<(&str, ServerFrame<'_>)> = vec![
        ("envelope (sealed)", envelope(None, None, None)),
        (
            "envelope (source)",
            envelope(Some((id(0xA1), 3)), None, None),
        ),
        ("envelope (franked)", envelope(None, Some(fr), None)),
        (
            "envelope (source, franked, shared payload)",
            envelope(Some((id(0xA1), 3)), Some(fr), Some(b"shared")),
        ),
        ("queue_empty", ServerFrame::QueueEmpty),
        (
            "channel entry",
            ServerFrame::ChannelEntry {
                channel: id(0xCE),
                seq: 7,
                created_at: 1_800_000_001,
                entry: b"opaque entry",
                franking: None,
            },
        ),
        (
            "franked channel entry",
            ServerFrame::ChannelEntry {
                channel: id(0xCE),
                seq: 8,
                created_at: 1_800_000_002,
                entry: b"opaque entry",
                franking: Some(fr),
            },
        ),
        (
            "ephemeral (source)",
            ServerFrame::Ephemeral {
                message_id: id(0xE0),
                source: Some((id(0xA1), 3)),
                content: b"typing",
            },
        ),
        (
            "ephemeral (no source)",
            ServerFrame::Ephemeral {
                message_id: id(0xE0),
                source: None,
                content: b"typing",
            },
        ),
        (
            "result",
            ServerFrame::Result {
                request_id: 42,
                status: 200,
                body: br#"{"devices":[1,2]}"#,
            },
        ),
        (
            "error",
            ServerFrame::Error {
                body: br#"{"error":{"code":"unknown_frame_type","message":"unknown frame type"}}"#,
            },
        ),
    ];
    let client: Vec<(&str, ClientFrame<'_>)> = vec![
        ("ack", ClientFrame::Ack(vec![id(0x01), id(0x02)])),
        (
            "send",
            ClientFrame::Send {
                request_id: 1,
                account: id(0xB0),
                message_id: id(0x4D),
                ephemeral: false,
                access_key: None,
                envelopes: vec![SendEnvelope {
                    device: 1,
                    content: b"to device 1",
                    commitment: None,
                }],
            },
        ),
        (
            "send (ephemeral, access key)",
            ClientFrame::Send {
                request_id: 2,
                account: id(0xB0),
                message_id: id(0x4E),
                ephemeral: true,
                access_key: Some([0xAC; 16]),
                envelopes: vec![SendEnvelope {
                    device: 2,
                    content: b"typing",
                    commitment: None,
                }],
            },
        ),
        (
            "send (franked, two devices)",
            ClientFrame::Send {
                request_id: 3,
                account: id(0xB0),
                message_id: id(0x4F),
                ephemeral: false,
                access_key: None,
                envelopes: vec![
                    SendEnvelope {
                        device: 1,
                        content: b"one",
                        commitment: Some([0xC1; 32]),
                    },
                    SendEnvelope {
                        device: 2,
                        content: b"two",
                        commitment: Some([0xC2; 32]),
                    },
                ],
            },
        ),
        (
            "signal",
            ClientFrame::Signal {
                request_id: 4,
                account: id(0xB0),
                device: 2,
                access_key: [0xAC; 16],
                payload: b"signal",
            },
        ),
        (
            "subscribe",
            ClientFrame::Subscribe {
                request_id: 5,
                channel: id(0xCE),
                token: [0x70; 32],
                after: 6,
            },
        ),
        (
            "unsubscribe",
            ClientFrame::Unsubscribe {
                request_id: 6,
                channel: id(0xCE),
            },
        ),
    ];
    let mut frames = Vec::new();
    for (name, f) in &server {
        let bytes = f.encode();
        assert_eq!(&ServerFrame::decode(&bytes).unwrap(), f);
        frames.push(json!({"direction": "server_to_client", "name": name, "fields": server_fields(f), "frame": h(&bytes)}));
    }
    for (name, f) in &client {
        let bytes = f.encode().unwrap();
        assert_eq!(&ClientFrame::decode(&bytes).unwrap(), f);
        frames.push(json!({"direction": "client_to_server", "name": name, "fields": client_fields(f), "frame": h(&bytes)}));
    }

    let env = server[1].1.encode();
    let ack = client[0].1.encode().unwrap();
    let send = client[1].1.encode().unwrap();
    let sub = client[5].1.encode().unwrap();
    let with = |b: &[u8], i: usize, v: u8| {
        let mut b = b.to_vec();
        b[i] = v;
        b
    };
    let plus = |b: &[u8], extra: &[u8]| [b, extra].concat();
    let server_bad: Vec<(&str, Vec<u8>)> = vec![
        ("version 0x02", with(&env, 0, 0x02)),
        ("unknown type 0x08", vec![0x01, 0x08]),
        ("a client frame type (0x10)", ack.clone()),
        ("queue_empty with a trailing byte", vec![0x01, 0x02, 0x00]),
        (
            "envelope truncated inside content",
            env[..env.len() - 1].to_vec(),
        ),
        (
            "envelope with a trailing byte (no shared-payload flag)",
            plus(&env, &[0]),
        ),
        ("envelope flag 0x08", with(&env, 2 + 8 + 16 + 8, 0x09)),
        (
            "result shorter than its header",
            vec![0x01, 0x05, 0, 0, 0, 1, 0],
        ),
        ("empty", Vec::new()),
    ];
    let client_bad: Vec<(&str, Vec<u8>)> = vec![
        ("version 0x00", with(&ack, 0, 0x00)),
        ("a server frame type (0x02)", vec![0x01, 0x02]),
        ("ack count 0", vec![0x01, 0x10, 0x00, 0x00]),
        ("ack count 1025", {
            let mut b = vec![0x01, 0x10, 0x04, 0x01];
            b.extend(std::iter::repeat_n(0u8, 16 * 1025));
            b
        }),
        ("ack with a trailing byte", plus(&ack, &[0])),
        (
            "send flags ephemeral + franked",
            with(&send, 2 + 4 + 16 + 16, 0x03),
        ),
        ("send flag 0x08", with(&send, 2 + 4 + 16 + 16, 0x08)),
        ("send truncated", send[..send.len() - 1].to_vec()),
        ("subscribe with a trailing byte", plus(&sub, &[0])),
        ("signal with an empty payload", {
            let b = client[4].1.encode().unwrap();
            b[..b.len() - b"signal".len()].to_vec()
        }),
    ];
    let mut refusals = Vec::new();
    for (case, b) in server_bad {
        let e = ServerFrame::decode(&b).unwrap_err();
        refusals.push(json!({"direction": "server_to_client", "case": case, "frame": h_long(&b), "refusal": e.code()}));
    }
    for (case, b) in client_bad {
        let e = ClientFrame::decode(&b).unwrap_err();
        refusals.push(json!({"direction": "client_to_server", "case": case, "frame": h_long(&b), "refusal": e.code()}));
    }
    json!({
        "description": "WebSocket frames (PROTOCOL.md §11.14), every frame type in both directions. `fields` lists the frame's fields (bytes in hex, JSON bodies as text); `refusals` are frames the decoder of that direction refuses, with the error code it reports (long ones as in content.json).",
        "frames": frames,
        "refusals": refusals,
    })
}

fn source_json(s: Option<(&[u8; 16], u32)>) -> Value {
    s.map_or(Value::Null, |(a, d)| json!({"account": h(a), "device": d}))
}

fn franking_json(f: Option<&Franking>) -> Value {
    f.map_or(
        Value::Null,
        |f| json!({"commitment": h(&f.commitment), "stamp": h(&f.stamp)}),
    )
}

fn server_fields(f: &ServerFrame<'_>) -> Value {
    match f {
        ServerFrame::Envelope(e) => json!({
            "type": 1, "seq": e.seq, "message_id": h(&e.message_id), "received_at": e.received_at,
            "source": source_json(e.source.as_ref().map(|(a, d)| (a, *d))),
            "franking": franking_json(e.franking.as_ref()),
            "content": h(e.content), "shared_payload": e.shared_payload.map(h),
        }),
        ServerFrame::QueueEmpty => json!({"type": 2}),
        ServerFrame::ChannelEntry {
            channel,
            seq,
            created_at,
            entry,
            franking,
        } => json!({
            "type": if franking.is_some() { 7 } else { 3 }, "channel_id": h(channel), "seq": seq,
            "created_at": created_at, "franking": franking_json(franking.as_ref()), "entry": h(entry),
        }),
        ServerFrame::Ephemeral {
            message_id,
            source,
            content,
        } => json!({
            "type": 4, "message_id": h(message_id),
            "source": source_json(source.as_ref().map(|(a, d)| (a, *d))), "content": h(content),
        }),
        ServerFrame::Result {
            request_id,
            status,
            body,
        } => json!({
            "type": 5, "request_id": request_id, "status": status, "json": String::from_utf8_lossy(body),
        }),
        ServerFrame::Error { body } => json!({"type": 6, "json": String::from_utf8_lossy(body)}),
    }
}

fn client_fields(f: &ClientFrame<'_>) -> Value {
    match f {
        ClientFrame::Ack(ids) => {
            json!({"type": 0x10, "message_ids": ids.iter().map(|i| h(i)).collect::<Vec<_>>()})
        }
        ClientFrame::Send {
            request_id,
            account,
            message_id,
            ephemeral,
            access_key,
            envelopes,
        } => json!({
            "type": 0x11, "request_id": request_id, "recipient_account": h(account),
            "message_id": h(message_id), "ephemeral": ephemeral,
            "franked": envelopes.iter().any(|e| e.commitment.is_some()),
            "access_key": access_key.as_ref().map(|k| h(k)),
            "envelopes": envelopes.iter().map(|e| json!({"device": e.device,
                "commitment": e.commitment.as_ref().map(|c| h(c)), "content": h(e.content)})).collect::<Vec<_>>(),
        }),
        ClientFrame::Signal {
            request_id,
            account,
            device,
            access_key,
            payload,
        } => json!({
            "type": 0x12, "request_id": request_id, "account": h(account), "device": device,
            "access_key": h(access_key), "payload": h(payload),
        }),
        ClientFrame::Subscribe {
            request_id,
            channel,
            token,
            after,
        } => json!({
            "type": 0x13, "request_id": request_id, "channel_id": h(channel),
            "read_token": h(token), "after": after,
        }),
        ClientFrame::Unsubscribe {
            request_id,
            channel,
        } => json!({"type": 0x14, "request_id": request_id, "channel_id": h(channel)}),
    }
}

pub(super) fn content_vectors() -> Value {
    let direct = Conversation::Direct(id(0xB0));
    let group = Conversation::Group(id(0x6A));
    let pointer = pointer_cases()[0].1.clone();
    let mut ptr = Vec::new();
    attachment::encode_into(&pointer, &mut ptr).unwrap();
    let bodies: Vec<(&str, Conversation, Body, Value)> = vec![
        (
            "text",
            direct,
            Body::Text {
                message_id: id(0x4D),
                expire_secs: 0,
                text: "héllo".into(),
                attachment: Vec::new(),
            },
            json!({"message_id": h(&id(0x4D)), "expire_secs": 0, "text": "héllo", "attachment": ""}),
        ),
        (
            "text with attachment and timer",
            group,
            Body::Text {
                message_id: id(0x4E),
                expire_secs: 86_400,
                text: "photo".into(),
                attachment: ptr.clone(),
            },
            json!({"message_id": h(&id(0x4E)), "expire_secs": 86_400, "text": "photo", "attachment": h(&ptr)}),
        ),
        (
            "receipt",
            direct,
            Body::Receipt {
                kind: ReceiptKind::Read,
                message_ids: vec![id(0x4D), id(0x4E)],
            },
            json!({"receipt_kind": 2, "message_ids": [h(&id(0x4D)), h(&id(0x4E))]}),
        ),
        ("typing", direct, Body::Typing(true), json!({"state": 1})),
        (
            "reaction",
            group,
            Body::Reaction {
                target: id(0x4D),
                emoji: "👍".into(),
                remove: false,
            },
            json!({"target": h(&id(0x4D)), "remove": 0, "reaction": "👍"}),
        ),
        (
            "edit",
            direct,
            Body::Edit {
                target: id(0x4D),
                text: "hello".into(),
            },
            json!({"target": h(&id(0x4D)), "text": "hello"}),
        ),
        (
            "delete",
            group,
            Body::Delete { target: id(0x4D) },
            json!({"target": h(&id(0x4D))}),
        ),
        (
            "timer",
            direct,
            Body::Timer(3600),
            json!({"expire_secs": 3600}),
        ),
        (
            "contact card",
            direct,
            Body::ContactCard {
                access_key: [0xAC; 16],
            },
            json!({"access_key": h(&[0xAC; 16])}),
        ),
        (
            "sender key",
            group,
            Body::SenderKey {
                epoch: 2,
                distribution: vec![0x5D; 90],
            },
            json!({"epoch": 2, "distribution": h(&[0x5D; 90])}),
        ),
        (
            "group invite",
            group,
            Body::GroupInvite(GroupInvite {
                change: vec![0x6C; 40],
                channel_id: id(0xCE),
                read_token: [0x70; 32],
                write_token: [0x71; 32],
                group_key: [0x72; 32],
                after: 9,
            }),
            json!({"channel_id": h(&id(0xCE)), "read_token": h(&[0x70; 32]), "write_token": h(&[0x71; 32]), "group_key": h(&[0x72; 32]), "after": 9, "change": h(&[0x6C; 40])}),
        ),
        (
            "group change",
            group,
            Body::GroupChange {
                change: vec![0x6C; 40],
            },
            json!({"change": h(&[0x6C; 40])}),
        ),
        (
            "group admin key",
            group,
            Body::GroupAdminKey { seed: [0x5E; 32] },
            json!({"seed": h(&[0x5E; 32])}),
        ),
    ];
    let mut cases = Vec::new();
    let mut encoded = Vec::new();
    for (name, conv, body, fields) in bodies {
        let c = Content {
            sent_at: 1_800_000_000_123,
            conversation: conv,
            body,
        };
        let bytes = c.to_bytes().unwrap();
        assert_eq!(Content::from_bytes(&bytes).unwrap(), c);
        cases.push(json!({"name": name, "kind": bytes[1], "sent_at": c.sent_at,
            "conv_kind": conv.tag(), "conv_id": h(conv.id()), "body": fields, "content": h(&bytes)}));
        encoded.push(bytes);
    }
    let text = &encoded[0];
    let with = |b: &[u8], i: usize, v: u8| {
        let mut b = b.to_vec();
        b[i] = v;
        b
    };
    // Offsets: header 27 bytes (version, kind, sent_at, conv_kind, conv_id).
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("version 0x02", with(text, 0, 0x02)),
        ("unknown kind 0x09", with(text, 1, 0x09)),
        (
            "legacy kind 0x10 (unsigned group invite)",
            with(&encoded[10], 1, 0x10),
        ),
        (
            "legacy kind 0x12 (unsigned group update)",
            with(&encoded[11], 1, 0x12),
        ),
        ("conv_kind 0x02", with(text, 10, 0x02)),
        ("trailing byte", [text.as_slice(), &[0]].concat()),
        ("truncated", text[..text.len() - 1].to_vec()),
        ("text not UTF-8", with(text, 27 + 16 + 4 + 4, 0xFF)),
        ("text_len 16385", {
            let mut b = text[..27 + 20].to_vec();
            b.extend_from_slice(&16_385u32.to_be_bytes());
            b.extend(std::iter::repeat_n(b'a', 16_385));
            b.extend_from_slice(&0u32.to_be_bytes());
            b
        }),
        ("attachment_len 73729", {
            let mut b = text[..text.len() - 4].to_vec();
            b.extend_from_slice(&73_729u32.to_be_bytes());
            b.extend(std::iter::repeat_n(0u8, 73_729));
            b
        }),
        ("receipt count 0", {
            let mut b = encoded[2][..27 + 1].to_vec();
            b.extend_from_slice(&[0, 0]);
            b
        }),
        ("receipt kind 3", with(&encoded[2], 27, 3)),
        ("typing state 2", with(&encoded[3], 27, 2)),
        ("reaction remove 2", with(&encoded[4], 27 + 16, 2)),
        ("reaction len 0", {
            let mut b = encoded[4][..27 + 17].to_vec();
            b.push(0);
            b
        }),
        ("sender key len 513", {
            let mut b = encoded[9][..27 + 4].to_vec();
            b.extend_from_slice(&513u16.to_be_bytes());
            b.extend(std::iter::repeat_n(0u8, 513));
            b
        }),
    ];
    let mut refusals = Vec::new();
    for (case, b) in bad {
        let e = Content::from_bytes(&b).unwrap_err();
        refusals.push(json!({"case": case, "content": h_long(&b), "refusal": e.0}));
    }
    json!({
        "description": "Messenger content (PROTOCOL.md §13.1), one case per kind. The group invite's and group change's `change` bytes are opaque to the content decoder (it only bounds their length; §13.3.1 verifies them). `refusals` are contents the decoder refuses; long ones are given as `{\"prefix\": hex, \"repeat\": hex byte, \"count\": n, \"suffix\": hex}`.",
        "cases": cases,
        "refusals": refusals,
    })
}

/// Long refusal inputs as prefix + a repeated byte + suffix, so the file stays small.
fn h_long(b: &[u8]) -> Value {
    if b.len() < 1024 {
        return h(b);
    }
    // The longest run of one byte.
    let (mut best, mut start) = ((0, 0), 0);
    for i in 1..=b.len() {
        if i == b.len() || b[i] != b[start] {
            if i - start > best.1 - best.0 {
                best = (start, i);
            }
            start = i;
        }
    }
    json!({"prefix": h(&b[..best.0]), "repeat": h(&b[best.0..=best.0]), "count": best.1 - best.0, "suffix": h(&b[best.1..])})
}

fn pointer_cases() -> Vec<(&'static str, PointerFields)> {
    let base = PointerFields {
        blob_id: id(0xB1),
        key: [0x4B; 32],
        digest: [0xD9; 32],
        size: 123_456,
        content_type: String::new(),
        file_name: None,
        thumbnail: None,
    };
    vec![
        ("no content type, no name, no thumbnail", base.clone()),
        (
            "content type and file name",
            PointerFields {
                content_type: "image/jpeg".into(),
                file_name: Some("Ålesund.jpg".into()),
                ..base.clone()
            },
        ),
        (
            "thumbnail",
            PointerFields {
                content_type: "application/pdf".into(),
                thumbnail: Some(vec![0xFF, 0xD8, 0xFF, 0xD9]),
                ..base.clone()
            },
        ),
        (
            "name and thumbnail, empty file",
            PointerFields {
                size: 0,
                content_type: "text/plain".into(),
                file_name: Some(String::new()),
                thumbnail: Some(Vec::new()),
                ..base
            },
        ),
    ]
}

pub(super) fn attachment_pointer_vectors() -> Value {
    let mut cases = Vec::new();
    let mut encoded = Vec::new();
    for (name, p) in pointer_cases() {
        let mut b = Vec::new();
        attachment::encode_into(&p, &mut b).unwrap();
        assert_eq!(attachment::decode(&b).unwrap(), p);
        cases.push(
            json!({"name": name, "blob_id": h(&p.blob_id), "key": h(&p.key), "digest": h(&p.digest),
            "size": p.size, "content_type": p.content_type, "file_name": p.file_name,
            "thumbnail": p.thumbnail.as_deref().map(h), "pointer": h(&b)}),
        );
        encoded.push(b);
    }
    let one = &encoded[1];
    let with = |b: &[u8], i: usize, v: u8| {
        let mut b = b.to_vec();
        b[i] = v;
        b
    };
    let fixed = attachment::FIXED_LEN;
    // Largest n with attachment_padded_len(n) defined is below 2^36 - 8; 2^36 is beyond.
    let mut too_big = encoded[0].clone();
    too_big[fixed - 8..fixed].copy_from_slice(&(1u64 << 36).to_be_bytes());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("version 0x02", with(one, 0, 0x02)),
        ("size 2^36 (beyond the attachment format)", too_big),
        ("content type with 0x7f", with(one, fixed + 1, 0x7F)),
        ("flag 0x04", with(&encoded[0], fixed + 1, 0x04)),
        ("file name not UTF-8", with(one, one.len() - 1, 0xFF)),
        ("name_len 1025", {
            let mut b = encoded[0].clone();
            *b.last_mut().unwrap() = 0x01;
            b.extend_from_slice(&1025u16.to_be_bytes());
            b.extend(std::iter::repeat_n(b'a', 1025));
            b
        }),
        ("thumb_len 65537", {
            let mut b = encoded[0].clone();
            *b.last_mut().unwrap() = 0x02;
            b.extend_from_slice(&65_537u32.to_be_bytes());
            b.extend(std::iter::repeat_n(0u8, 65_537));
            b
        }),
        ("trailing byte", [one.as_slice(), &[0]].concat()),
        ("truncated", one[..one.len() - 1].to_vec()),
    ];
    let mut refusals = Vec::new();
    for (case, b) in bad {
        assert!(attachment::decode(&b).is_err(), "{case}");
        refusals
            .push(json!({"case": case, "pointer": h_long(&b), "refusal": "PointerFormatError"}));
    }
    json!({
        "description": "Attachment pointers (PROTOCOL.md §14). `refusals` are pointers the decoder refuses (long ones as in content.json).",
        "cases": cases,
        "refusals": refusals,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusal_names_the_variant() {
        assert_eq!(
            crate::vectors::refusal(crate::ratchet::RatchetError::DuplicateMessage { index: 2 }),
            "DuplicateMessage"
        );
        assert_eq!(
            crate::vectors::refusal(crate::groups::GroupError::UnknownChain(1)),
            "UnknownChain"
        );
    }
}
