//! Franking vectors (PROTOCOL.md §16): commitment, sender tag, opening, delivery stamp, report
//! body and report id for a mailbox and a channel destination, and reports altered one field at
//! a time with the check that must refuse each.

use haven_protocol::franking::verify::{FrankingSecret, StampKey, delivery_stamp, verify_report};
use haven_protocol::franking::{Destination, Report, report_id};
use serde_json::{Value, json};

use crate::franking::hazmat::frank_with_key;
use crate::franking::{Delivery, open_franked};
use crate::identity::IdentityKeyPair;

fn b32(tag: u8, i: u8) -> [u8; 32] {
    let mut b = [tag; 32];
    b[1] = i; // not b[0]: X25519 clamping clears its low bits
    b
}

fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn error_name(r: Result<(), haven_protocol::franking::verify::FrankingError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("{e:?}"),
    }
}

pub(super) fn franking_vectors() -> Value {
    let relay = FrankingSecret::from_bytes(b32(0xF0, 1));
    let stamp_key = StampKey::from_bytes(b32(0x57, 1));
    let f = relay.public();
    let sender = IdentityKeyPair::from_secret_bytes(&b32(0xA1, 1), &b32(0xA1, 2));
    let other = IdentityKeyPair::from_secret_bytes(&b32(0xC3, 1), &b32(0xC3, 2));
    let ik = sender.public().to_bytes();
    let (sender_account, sender_device) = ([0xA1u8; 16], 3u32);

    let inputs = [
        (
            Destination::Device {
                account: [0xB0; 16],
                device: 2,
            },
            17u64,
            1_790_000_040u64,
            b32(0x4B, 1),
            b"Haven franking vector: the reported content".to_vec(),
        ),
        (
            Destination::Channel {
                channel_id: [0xC4; 16],
            },
            5,
            1_790_000_100,
            b32(0x4B, 2),
            Vec::new(),
        ),
    ];
    let mut cases = Vec::new();
    let mut reports = Vec::new();
    for (destination, seq, time, fk, content) in &inputs {
        let franked = frank_with_key(fk, &sender, &f, destination, content).unwrap();
        let received = open_franked(&franked.plaintext, &franked.commitment).unwrap();
        let stamp = delivery_stamp(&stamp_key, &franked.commitment, destination, *seq, *time);
        let report = received.report(&Delivery {
            franking_key: f,
            sender_account,
            sender_device,
            destination: *destination,
            seq: *seq,
            time: *time,
            stamp,
        });
        verify_report(&report, &relay, &stamp_key, &ik).unwrap();
        assert_eq!(Report::decode(&report.encode()).unwrap(), report);
        cases.push(json!({
            "destination": h(&destination.encode()),
            "seq": seq, "time": time,
            "franking_key_fk": h(fk),
            "content": h(content),
            "commitment": h(&franked.commitment),
            "tag": h(&received.tag),
            "opening": h(&franked.plaintext),
            "stamp": h(&stamp),
            "report": h(&report.encode()),
            "report_id": h(&report_id(&stamp)),
        }));
        reports.push(report);
    }

    // Negative cases, each one alteration of the first (mailbox) report.
    let base = &reports[0];
    let restamp = |r: &mut Report| {
        r.stamp = delivery_stamp(&stamp_key, &r.commitment, &r.destination, r.seq, r.time);
    };
    let other_ik = other.public().to_bytes();
    let mut negatives = Vec::new();
    let mut push = |name: &str, r: Report, identity: &[u8; 64]| {
        let result = error_name(verify_report(&r, &relay, &stamp_key, identity));
        assert_ne!(result, "ok", "{name}");
        negatives.push(json!({
            "name": name,
            "report": h(&r.encode()),
            "sender_identity_key": h(identity),
            "error": result,
        }));
    };
    let mut r = base.clone();
    r.content[0] ^= 1;
    push("altered_content", r, &ik);
    let mut r = base.clone();
    r.commitment[0] ^= 1;
    push("altered_commitment", r, &ik);
    let mut r = base.clone();
    r.commitment[0] ^= 1;
    restamp(&mut r);
    push("altered_commitment_restamped", r, &ik);
    let mut r = base.clone();
    r.destination = Destination::Device {
        account: [0xB1; 16],
        device: 2,
    };
    restamp(&mut r);
    push("wrong_recipient_restamped", r, &ik);
    let mut r = base.clone();
    r.destination = Destination::Device {
        account: [0xB1; 16],
        device: 2,
    };
    push("wrong_recipient", r, &ik);
    push("wrong_sender_key", base.clone(), &other_ik);
    let mut r = base.clone();
    r.stamp[0] ^= 1;
    push("altered_stamp", r, &ik);
    let mut r = base.clone();
    r.time += 1;
    push("altered_time", r, &ik);
    let mut r = base.clone();
    r.tag[0] ^= 1;
    push("altered_tag", r, &ik);
    let mut r = base.clone();
    r.opening_key[0] ^= 1;
    push("altered_franking_key_fk", r, &ik);
    let mut r = base.clone();
    r.franking_key = FrankingSecret::from_bytes(b32(0xF1, 1)).public();
    push("other_relay_franking_key", r, &ik);

    json!({
        "description": "Message franking (PROTOCOL.md §16).",
        "relay_franking_secret": h(&b32(0xF0, 1)),
        "relay_franking_public": h(&f.0),
        "franking_key_encoding": h(&f.encode()),
        "stamp_key": h(&b32(0x57, 1)),
        "sender_identity_ed25519_seed": h(&b32(0xA1, 1)),
        "sender_identity_x25519_secret": h(&b32(0xA1, 2)),
        "sender_identity_key": h(&ik),
        "sender_account_id": h(&sender_account),
        "sender_device_id": sender_device,
        "other_identity_ed25519_seed": h(&b32(0xC3, 1)),
        "other_identity_x25519_secret": h(&b32(0xC3, 2)),
        "cases": cases,
        "negative": negatives,
    })
}
