//! Seed inputs for the corpora: real encodings, from the published test vectors
//! (`sdk/vectors/*.json`) and from the SDK's own encoders run on the [`crate::fixture`] keys.
//! `cargo run -p haven-fuzz-targets --example write_seeds` writes them to `fuzz/corpus/`;
//! `cargo fuzz cmin` then keeps the ones that add coverage.

use std::path::Path;

use haven_protocol::content::{Body, Content, Conversation, GroupInvite, ReceiptKind};
use haven_protocol::frames::{ClientFrame, EnvelopeFrame, Franking, SendEnvelope, ServerFrame};

use crate::fixture;

/// Which vector fields seed which target: `(vector file, field, target)`.
const FROM_VECTORS: &[(&str, &str, &str)] = &[
    ("account", "list", "device_list"),
    ("account", "account_key", "device_list"),
    ("account", "identity_key", "prekeys"),
    ("account", "plaintext", "provisioning"),
    ("account", "sealed", "provisioning"),
    ("padding", "padded", "content"),
    ("diary", "bundle", "diary"),
    ("diary", "item_ciphertext", "diary"),
    ("diary", "item_plaintext", "diary"),
    ("diary_entry", "meta_plaintext", "diary"),
    ("diary_entry", "body_plaintext", "diary"),
    ("diary_entry", "meta_ciphertext", "diary"),
    ("diary_epochs", "bundle", "diary"),
    ("franking", "franking_key_encoding", "franking"),
    ("franking", "opening", "franking"),
    ("franking", "report", "franking"),
    ("group_change", "change", "group_change"),
    ("group_change", "content", "content"),
    ("pqxdh", "bundle", "prekeys"),
    ("pqxdh", "prekey_message", "ratchet"),
    ("ratchet", "message", "ratchet"),
    ("sealed_sender", "certificate", "certificate"),
    ("sealed_sender", "envelope", "sealed_sender"),
    ("sender_keys", "distribution_message", "sender_key"),
    ("sender_keys", "message", "sender_key"),
];

fn collect_hex(value: &serde_json::Value, field: &str, out: &mut Vec<Vec<u8>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == field => {
                        if let Some(bytes) = from_hex(s) {
                            out.push(bytes);
                        }
                    }
                    _ => collect_hex(v, field, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_hex(v, field, out)),
        _ => {}
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Seeds from the vectors under `vectors_dir`, as `(target, bytes)`.
#[must_use]
pub fn from_vectors(vectors_dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (file, field, target) in FROM_VECTORS {
        let path = vectors_dir.join(format!("{file}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let mut found = Vec::new();
        collect_hex(&json, field, &mut found);
        seeds.extend(found.into_iter().map(|b| (*target, b)));
    }
    seeds
}

fn frames() -> Vec<Vec<u8>> {
    let franking = Franking {
        commitment: [0x11; 32],
        stamp: [0x22; 32],
    };
    let mut out = vec![
        ServerFrame::Envelope(EnvelopeFrame {
            seq: 7,
            message_id: [1; 16],
            received_at: fixture::NOW,
            source: Some(([2; 16], 3)),
            content: b"sealed or not",
            shared_payload: Some(b"shared"),
            franking: Some(franking),
        })
        .encode(),
        ServerFrame::Envelope(EnvelopeFrame {
            seq: 8,
            message_id: [1; 16],
            received_at: fixture::NOW,
            source: None,
            content: b"sealed",
            shared_payload: None,
            franking: None,
        })
        .encode(),
        ServerFrame::QueueEmpty.encode(),
        ServerFrame::ChannelEntry {
            channel: [4; 16],
            seq: 1,
            created_at: fixture::NOW,
            entry: b"entry",
            franking: Some(franking),
        }
        .encode(),
        ServerFrame::ChannelEntry {
            channel: [4; 16],
            seq: 2,
            created_at: fixture::NOW,
            entry: b"entry",
            franking: None,
        }
        .encode(),
        ServerFrame::Ephemeral {
            message_id: [5; 16],
            source: Some(([6; 16], 1)),
            content: b"typing",
        }
        .encode(),
        ServerFrame::Result {
            request_id: 9,
            status: 200,
            body: br#"{"ok":true}"#,
        }
        .encode(),
        ServerFrame::Error {
            body: br#"{"error":"invalid_frame_length"}"#,
        }
        .encode(),
    ];
    let client = [
        ClientFrame::Ack(vec![[1; 16], [2; 16]]),
        ClientFrame::Send {
            request_id: 1,
            account: [3; 16],
            message_id: [4; 16],
            ephemeral: false,
            access_key: Some([5; 16]),
            envelopes: vec![
                SendEnvelope {
                    device: 1,
                    content: b"one",
                    commitment: Some([6; 32]),
                },
                SendEnvelope {
                    device: 2,
                    content: b"two",
                    commitment: Some([7; 32]),
                },
            ],
        },
        ClientFrame::Send {
            request_id: 2,
            account: [3; 16],
            message_id: [4; 16],
            ephemeral: true,
            access_key: None,
            envelopes: vec![SendEnvelope {
                device: 1,
                content: b"typing",
                commitment: None,
            }],
        },
        ClientFrame::Signal {
            request_id: 3,
            account: [3; 16],
            device: 1,
            access_key: [5; 16],
            payload: b"signal",
        },
        ClientFrame::Subscribe {
            request_id: 4,
            channel: [8; 16],
            token: [9; 32],
            after: 10,
        },
        ClientFrame::Unsubscribe {
            request_id: 5,
            channel: [8; 16],
        },
    ];
    out.extend(client.iter().filter_map(|f| f.encode().ok()));
    out
}

fn contents() -> Vec<Vec<u8>> {
    let bodies = [
        Body::Text {
            message_id: [1; 16],
            expire_secs: 3600,
            text: "héllo".into(),
            attachment: Vec::new(),
        },
        Body::Receipt {
            kind: ReceiptKind::Read,
            message_ids: vec![[1; 16], [2; 16]],
        },
        Body::Typing(true),
        Body::Reaction {
            target: [1; 16],
            emoji: "👍".into(),
            remove: false,
        },
        Body::Edit {
            target: [1; 16],
            text: "edited".into(),
        },
        Body::Delete { target: [1; 16] },
        Body::Timer(60),
        Body::ContactCard {
            access_key: [3; 16],
        },
        Body::GroupInvite(GroupInvite {
            change: vec![1, 2, 3],
            channel_id: [4; 16],
            read_token: [5; 32],
            write_token: [6; 32],
            group_key: [7; 32],
            after: 0,
        }),
        Body::SenderKey {
            epoch: 1,
            distribution: vec![9; 8],
        },
        Body::GroupChange { change: vec![1, 2] },
        Body::GroupAdminKey { seed: [8; 32] },
    ];
    bodies
        .into_iter()
        .enumerate()
        .filter_map(|(i, body)| {
            let conversation = if i % 2 == 0 {
                Conversation::Direct([0xD0; 16])
            } else {
                Conversation::Group([0x60; 16])
            };
            Content {
                sent_at: 1_700_000_000_000,
                conversation,
                body,
            }
            .to_bytes()
            .ok()
        })
        .collect()
}

/// Seeds built with the SDK's encoders, as `(target, bytes)`.
#[must_use]
pub fn from_encoders() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds: Vec<(&'static str, Vec<u8>)> = Vec::new();
    seeds.extend(frames().into_iter().map(|b| ("frames", b)));
    seeds.extend(contents().into_iter().map(|b| ("content", b)));
    let sessions = fixture::sessions();
    for m in &sessions.messages {
        seeds.push(("ratchet", m.clone()));
        seeds.push(("session_record", m.clone()));
    }
    for m in &fixture::sender_keys().messages {
        seeds.push(("sender_key", m.clone()));
    }
    let sealed = fixture::sealed();
    seeds.push(("certificate", sealed.certificate_bytes()));
    // The inner plaintext of an envelope (PROTOCOL §8.2), for the decoder behind the tag.
    let mut inner = vec![1, 1];
    haven_protocol::encoding::put_bytes_u32(&mut inner, &sealed.certificate_bytes());
    haven_protocol::encoding::put_bytes_u32(&mut inner, b"inner content");
    seeds.push(("sealed_sender", inner));
    for content in contents().into_iter().take(3) {
        if let Ok(envelope) = sealed.seal(1, &content) {
            seeds.push(("sealed_sender", envelope));
        }
        let mut typed = vec![1];
        typed.extend_from_slice(&content);
        seeds.push(("sealed_sender", typed));
    }
    let diary = fixture::diary();
    seeds.push(("diary", diary.bundle.clone()));
    let bundle_item = haven_sdk::WrappedKeyBundle::from_bytes(&diary.bundle)
        .map(|b| haven_client_core::diary::encode_bundle_item(&b, &fixture::COLLECTION));
    if let Ok(item) = bundle_item {
        seeds.push(("diary", item));
    }
    let attachment = fixture::attachment();
    for split in [1u8, 17, 255] {
        let mut input = vec![split];
        input.extend_from_slice(&attachment.blob);
        seeds.push(("attachment_stream", input));
    }
    let epoch = crate::client::epoch();
    let sender = haven_sdk::store::DeviceAddress::new([0x5A; 16], 4);
    for content in contents().into_iter().take(2) {
        seeds.push(("channel_entry", content.clone()));
        let entry = haven_client_core::messenger::seal_entry(
            &[0x6A; 16],
            epoch,
            &sender,
            &content,
            &mut fixture::rng(),
        );
        if let Ok(entry) = entry {
            seeds.push(("channel_entry", entry));
        }
    }
    seeds.extend(store_seeds().into_iter().map(|b| ("store_rows", b)));
    seeds.extend(pointers().into_iter().map(|b| ("attachment_pointer", b)));
    if let Ok(json) = serde_json::to_vec(epoch) {
        seeds.push(("messenger_records", json));
    }
    seeds
}

/// A store with a few rows, as the plaintext of its snapshot and as the sealed snapshot.
fn store_seeds() -> Vec<Vec<u8>> {
    use haven_client_core::{MemoryStore, store::Space};
    let page_key = haven_sdk::StorageKey::from_bytes([0x44; 32]);
    let Ok(store) = MemoryStore::open_in_memory(&[0x33; 32]) else {
        return Vec::new();
    };
    let sessions = fixture::sessions();
    let mut out = Vec::new();
    if let Some(record) = sessions.messages.last() {
        out.push(record.clone());
        let stored = store.put(Space::SESSION, &[0x9E; 20], record);
        if stored.is_ok()
            && let Ok(sealed) = store.export(&page_key)
        {
            if let Ok(plain) = haven_sdk::snapshot::open(
                &page_key,
                haven_client_core::store::SNAPSHOT_LABEL,
                &sealed,
            ) {
                out.push(plain.to_vec());
            }
            out.push(sealed);
        }
    }
    out
}

/// Attachment pointers (with and without the optional fields) and a pending upload.
fn pointers() -> Vec<Vec<u8>> {
    use haven_client_core::attachments::{AttachmentPointer, PendingUpload};
    let pointer = |file_name: Option<String>, thumbnail: Option<Vec<u8>>| AttachmentPointer {
        blob_id: [1; 16],
        key: haven_sdk::AttachmentKey::from_bytes([2; 32]),
        digest: [3; 32],
        size: 3000,
        content_type: "image/jpeg".into(),
        file_name,
        thumbnail,
    };
    let mut out: Vec<Vec<u8>> = [
        pointer(None, None),
        pointer(Some("photo.jpg".into()), Some(vec![0xFF, 0xD8, 0xFF])),
    ]
    .iter()
    .filter_map(|p| p.to_bytes().ok().map(|b| b.to_vec()))
    .collect();
    let pending = PendingUpload {
        blob_id: [4; 16],
        key: haven_sdk::AttachmentKey::from_bytes([5; 32]),
        size: 3000,
    };
    out.push(pending.to_bytes().to_vec());
    out
}
