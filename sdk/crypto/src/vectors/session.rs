//! Session vectors: PQXDH, Double Ratchet, sealed sender, safety numbers. Each builder also
//! runs the decrypt direction and asserts it, so a build that disagrees with itself fails here.

use std::collections::VecDeque;
use std::convert::Infallible;

use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::pqxdh::hazmat::{
    InitiatorRandomness, initiate_with, initiator_secret, responder_secret,
};
use crate::pqxdh::{self, ResponderKeys};
use crate::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, SignedPreKey};
use crate::ratchet::hazmat::{kdf_ck, kdf_rk};
use crate::ratchet::message::SessionMessage;
use crate::safety_number::safety_number;
use crate::sealed_sender::hazmat::seal_sender_with;
use crate::sealed_sender::{SenderCertificate, open_sealed};
use crate::store::DeviceAddress;
use ed25519_dalek::SigningKey;
use rand_core::{TryCryptoRng, TryRng};
use serde_json::{Value, json};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// An "RNG" that hands out listed 32-byte values in order: the ratchet draws exactly one
/// 32-byte X25519 secret per DH ratchet step, so vectors can list them as inputs.
pub(super) struct ScriptedRng(pub(super) VecDeque<[u8; 32]>);

impl TryRng for ScriptedRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("only fill_bytes is used")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("only fill_bytes is used")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert_eq!(dst.len(), 32);
        dst.copy_from_slice(&self.0.pop_front().expect("script exhausted"));
        Ok(())
    }
}
impl TryCryptoRng for ScriptedRng {}

pub(super) fn b32(tag: u8, i: u8) -> [u8; 32] {
    let mut b = [tag; 32];
    b[1] = i; // not b[0]: X25519 clamping clears its low bits
    b
}
pub(super) fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}
pub(super) fn ident(ed: [u8; 32], x: [u8; 32]) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(&ed, &x)
}

pub(super) struct Handshake {
    pub(super) alice: IdentityKeyPair,
    pub(super) bob: IdentityKeyPair,
    pub(super) spk: SignedPreKey,
    pub(super) otpk: OneTimePreKey,
    pub(super) kem: KemPreKey,
    pub(super) bundle: PreKeyBundle,
}

pub(super) fn handshake(with_otpk: bool) -> Handshake {
    let alice = ident(b32(0xA1, 1), b32(0xA1, 2));
    let bob = ident(b32(0xB0, 1), b32(0xB0, 2));
    let spk = SignedPreKey::from_secret(&bob, 1, 1_700_000_000, StaticSecret::from(b32(0xB0, 3)));
    let otpk = OneTimePreKey::from_secret(17, StaticSecret::from(b32(0xB0, 4)));
    let mut seed = Zeroizing::new([0u8; 64]);
    seed[..32].copy_from_slice(&b32(0xB0, 5));
    seed[32..].copy_from_slice(&b32(0xB0, 6));
    let kem = KemPreKey::from_seed(&bob, 33, KemPreKeyKind::OneTime, 1_700_000_000, seed);
    let bundle = PreKeyBundle::new(
        *bob.public(),
        4242,
        2,
        &spk,
        with_otpk.then_some(&otpk),
        &kem,
    );
    Handshake {
        alice,
        bob,
        spk,
        otpk,
        kem,
        bundle,
    }
}

pub(super) fn randomness() -> InitiatorRandomness {
    InitiatorRandomness {
        ephemeral: StaticSecret::from(b32(0xA1, 3)),
        kem_m: Zeroizing::new(b32(0xA1, 4)),
        ratchet: StaticSecret::from(b32(0xA1, 5)),
    }
}

/// The clock of the vector sessions (skipped keys are stamped with it; none expires).
pub(super) const VECTOR_NOW: u64 = 1_800_000_000;

pub(super) fn pqxdh_vectors() -> Value {
    let mut cases = Vec::new();
    for with_otpk in [true, false] {
        let hs = handshake(with_otpk);
        let r = randomness();
        let (sk, _ct) = initiator_secret(&hs.alice, &hs.bundle, &r).unwrap();
        let mut session = initiate_with(&hs.alice, &hs.bundle, randomness()).unwrap();
        let plaintext = b"PQXDH first message";
        let msg = session.encrypt(plaintext).unwrap().to_bytes();
        // Decrypt direction.
        let SessionMessage::PreKey(pm) = SessionMessage::from_bytes(&msg).unwrap() else {
            panic!("expected prekey message")
        };
        let keys = ResponderKeys {
            signed_prekey: &hs.spk,
            one_time_prekey: with_otpk.then_some(&hs.otpk),
            kem_prekey: &hs.kem,
        };
        assert_eq!(*responder_secret(&hs.bob, &pm, &keys).unwrap(), *sk);
        let mut bob_session = pqxdh::respond(&hs.bob, &pm, &keys).unwrap();
        let mut rng = ScriptedRng(VecDeque::from([b32(0xB0, 7)]));
        assert_eq!(
            &*bob_session
                .decrypt(&pm.message, VECTOR_NOW, &mut rng)
                .unwrap(),
            plaintext
        );
        cases.push(json!({
            "with_one_time_prekey": with_otpk,
            "alice_identity_ed25519_seed": h(&b32(0xA1, 1)),
            "alice_identity_x25519_secret": h(&b32(0xA1, 2)),
            "bob_identity_ed25519_seed": h(&b32(0xB0, 1)),
            "bob_identity_x25519_secret": h(&b32(0xB0, 2)),
            "bob_registration_id": 4242, "bob_device_id": 2,
            "bob_signed_prekey_id": 1, "bob_signed_prekey_secret": h(&b32(0xB0, 3)),
            "bob_one_time_prekey_id": 17, "bob_one_time_prekey_secret": h(&b32(0xB0, 4)),
            "bob_kem_prekey_id": 33,
            "bob_kem_prekey_seed_d": h(&b32(0xB0, 5)), "bob_kem_prekey_seed_z": h(&b32(0xB0, 6)),
            "alice_ephemeral_secret": h(&b32(0xA1, 3)),
            "alice_kem_encaps_m": h(&b32(0xA1, 4)),
            "alice_first_ratchet_secret": h(&b32(0xA1, 5)),
            "plaintext": h(plaintext),
            "bundle": h(&hs.bundle.to_bytes()),
            "associated_data": h(&pqxdh::associated_data(hs.alice.public(), hs.bob.public())),
            "sk": h(&*sk),
            "prekey_message": h(&msg),
        }));
    }
    json!({
        "description": "PQXDH (PROTOCOL.md §3): bundle encoding, SK, AD and the first prekey message. Ed25519 signatures are deterministic (RFC 8032).",
        "cases": cases,
    })
}

pub(super) fn ratchet_vectors() -> Value {
    // KDF sub-vectors.
    let (rk2, ck) = kdf_rk(&b32(0x11, 0), &b32(0x22, 0));
    let (mk, ck2) = kdf_ck(&b32(0x33, 0));
    // A scripted conversation starting from the PQXDH case with a one-time prekey.
    let hs = handshake(true);
    let mut alice = initiate_with(&hs.alice, &hs.bundle, randomness()).unwrap();
    let keys = ResponderKeys {
        signed_prekey: &hs.spk,
        one_time_prekey: Some(&hs.otpk),
        kem_prekey: &hs.kem,
    };
    let bob_ratchet = [b32(0xB0, 7), b32(0xB0, 8)];
    let alice_ratchet = [b32(0xA1, 6), b32(0xA1, 7)];
    let mut bob_rng = ScriptedRng(bob_ratchet.into_iter().collect());
    let mut alice_rng = ScriptedRng(alice_ratchet.into_iter().collect());
    // (sender, plaintext, delivered immediately?)
    let script: [(&str, &[u8]); 6] = [
        ("alice", b"a0"),
        ("alice", b"a1"),
        ("bob", b"b0"),
        ("bob", b"b1"),
        ("alice", b"a2"),
        ("bob", b"b2"),
    ];
    let mut bob: Option<crate::ratchet::session::Session> = None;
    let mut steps = Vec::new();
    let mut pending_a1 = None;
    for (i, (who, pt)) in script.iter().enumerate() {
        let msg = if *who == "alice" {
            alice.encrypt(pt).unwrap().to_bytes()
        } else {
            bob.as_mut().unwrap().encrypt(pt).unwrap().to_bytes()
        };
        // Delivery: a1 is held back and delivered after b1 (out of order); all else in order.
        if i == 1 {
            pending_a1 = Some(msg.clone());
        } else if *who == "alice" {
            let parsed = SessionMessage::from_bytes(&msg).unwrap();
            let out = match parsed {
                SessionMessage::PreKey(pm) => {
                    let b = bob.get_or_insert_with(|| pqxdh::respond(&hs.bob, &pm, &keys).unwrap());
                    b.decrypt(&pm.message, VECTOR_NOW, &mut bob_rng).unwrap()
                }
                SessionMessage::Ratchet(m) => bob
                    .as_mut()
                    .unwrap()
                    .decrypt(&m, VECTOR_NOW, &mut bob_rng)
                    .unwrap(),
            };
            assert_eq!(&*out, *pt);
        } else {
            let SessionMessage::Ratchet(m) = SessionMessage::from_bytes(&msg).unwrap() else {
                panic!()
            };
            assert_eq!(
                &*alice.decrypt(&m, VECTOR_NOW, &mut alice_rng).unwrap(),
                *pt
            );
            if i == 3 {
                let SessionMessage::PreKey(pm) =
                    SessionMessage::from_bytes(pending_a1.as_ref().unwrap()).unwrap()
                else {
                    panic!()
                };
                assert_eq!(
                    &*bob
                        .as_mut()
                        .unwrap()
                        .decrypt(&pm.message, VECTOR_NOW, &mut bob_rng)
                        .unwrap(),
                    b"a1"
                );
            }
        }
        steps.push(json!({ "sender": who, "plaintext": h(pt), "message": h(&msg) }));
    }
    json!({
        "description": "Double Ratchet (PROTOCOL.md §4). kdf_rk/kdf_ck are raw KDF vectors. The conversation starts from pqxdh.json case 0; messages are delivered in order except a1, delivered after b1. Ratchet secrets are consumed in order, one per DH ratchet step.",
        "kdf_rk": { "root_key": h(&b32(0x11, 0)), "dh_out": h(&b32(0x22, 0)), "next_root_key": h(&*rk2), "chain_key": h(&*ck) },
        "kdf_ck": { "chain_key": h(&b32(0x33, 0)), "message_key_seed": h(&*mk), "next_chain_key": h(&*ck2) },
        "bob_ratchet_secrets": bob_ratchet.iter().map(|b| h(b)).collect::<Vec<_>>(),
        "alice_ratchet_secrets": alice_ratchet.iter().map(|b| h(b)).collect::<Vec<_>>(),
        "steps": steps,
    })
}

pub(super) fn sealed_sender_vectors() -> Value {
    let relay = SigningKey::from_bytes(&b32(0x5E, 1));
    let alice = ident(b32(0xA1, 1), b32(0xA1, 2));
    let bob = ident(b32(0xB0, 1), b32(0xB0, 2));
    let sender = DeviceAddress::new([0xA1; 16], 3);
    let cert = SenderCertificate::issue(&relay, sender, *alice.public(), 1_800_000_000);
    let content = b"inner ratchet message";
    let env = seal_sender_with(
        &alice,
        &cert,
        bob.public(),
        0x01,
        content,
        StaticSecret::from(b32(0x5E, 2)),
    )
    .unwrap();
    let opened = open_sealed(&bob, &relay.verifying_key(), &env, 1_700_000_000).unwrap();
    assert_eq!(opened.content, content);
    assert_eq!(opened.certificate, cert);
    json!({
        "description": "Sealed sender (PROTOCOL.md §5).",
        "relay_ed25519_seed": h(&b32(0x5E, 1)),
        "relay_public_key": h(relay.verifying_key().as_bytes()),
        "sender_identity_ed25519_seed": h(&b32(0xA1, 1)),
        "sender_identity_x25519_secret": h(&b32(0xA1, 2)),
        "recipient_identity_ed25519_seed": h(&b32(0xB0, 1)),
        "recipient_identity_x25519_secret": h(&b32(0xB0, 2)),
        "sender_account_id": h(&sender.account_id), "sender_device_id": 3,
        "expires": 1_800_000_000u64, "now": 1_700_000_000u64,
        "ephemeral_secret": h(&b32(0x5E, 2)),
        "content_type": 1, "content": h(content),
        "certificate": h(&cert.to_bytes()),
        "envelope": h(&env),
    })
}

pub(super) fn safety_number_vectors() -> Value {
    let a = ident(b32(0xA1, 1), b32(0xA1, 2));
    let b = ident(b32(0xB0, 1), b32(0xB0, 2));
    let (ida, idb) = ([0xA1u8; 16], [0xB0u8; 16]);
    let n = safety_number(&ida, a.public(), &idb, b.public());
    assert_eq!(n, safety_number(&idb, b.public(), &ida, a.public()));
    let pk = |k: &IdentityKey| h(&k.to_bytes());
    json!({
        "description": "Safety numbers (PROTOCOL.md §6).",
        "cases": [{
            "local_stable_id": h(&ida), "local_identity_key": pk(a.public()),
            "remote_stable_id": h(&idb), "remote_identity_key": pk(b.public()),
            "local_digits": crate::safety_number::party_digits(&ida, a.public()),
            "remote_digits": crate::safety_number::party_digits(&idb, b.public()),
            "safety_number": n,
        }],
    })
}

/// Account identity (PROTOCOL.md §15): a signed device list and its updates, and a per-account
/// safety number.
pub(super) fn account_vectors() -> Value {
    use crate::account::{AccountIdentityKeyPair, DeviceList, account_party_digits};
    let alice_key =
        AccountIdentityKeyPair::from_bytes(&[[0x01, 0x51].as_slice(), &b32(0xAC, 1)].concat())
            .unwrap();
    let bob_key =
        AccountIdentityKeyPair::from_bytes(&[[0x01, 0x51].as_slice(), &b32(0xBC, 1)].concat())
            .unwrap();
    let (alice, bob) = ([0xA1u8; 16], [0xB0u8; 16]);
    let d1 = ident(b32(0xD1, 1), b32(0xD1, 2));
    let d2 = ident(b32(0xD2, 1), b32(0xD2, 2));
    let v1 = alice_key
        .sign_device_list(alice, 1, 1_800_000_000, &[(1, *d1.public())])
        .unwrap();
    let v2 = alice_key
        .sign_device_list(
            alice,
            2,
            1_800_000_600,
            &[(2, *d2.public()), (1, *d1.public())],
        )
        .unwrap();
    let checked = DeviceList::verify(v2.to_bytes()).unwrap();
    assert_eq!(
        checked
            .accept(&alice, Some(alice_key.public()), Some(&v1))
            .unwrap()
            .added,
        vec![2]
    );
    let n =
        crate::account::account_safety_number(&alice, alice_key.public(), &bob, bob_key.public());
    let pk = |k: &IdentityKey| h(&k.to_bytes());
    // Linking (§15.3): the new device's key and box, the plaintext, the approver's ephemeral.
    let new_secret = StaticSecret::from(b32(0xE1, 1));
    let code = haven_protocol::provisioning::LinkCode {
        box_id: [0xB1; 16],
        public_key: x25519_dalek::PublicKey::from(&new_secret).to_bytes(),
    };
    let plaintext = haven_protocol::provisioning::ProvisioningPlaintext {
        account_id: alice,
        link_token: [0x70; 32],
        account_key_pair: *alice_key.to_bytes(),
        access_key: [0xAA; 16],
        approver_device: 1,
        list_version: 2,
    };
    let ephemeral = StaticSecret::from(b32(0xE2, 1));
    let sealed = crate::provisioning::seal_with(&code, &plaintext, &ephemeral).unwrap();
    json!({
        "description": "Account identity (PROTOCOL.md §15): device lists signed by the account key (Ed25519 seed = account_key_pair[2..]), a link code and a sealed provisioning message (§15.3), and per-account safety numbers (version 2).",
        "account_key_pair": h(alice_key.to_bytes().as_ref()),
        "account_key": h(&alice_key.public().to_bytes()),
        "account": h(&alice),
        "devices": [
            {"number": 1, "identity_key": pk(d1.public())},
            {"number": 2, "identity_key": pk(d2.public())},
        ],
        "lists": [
            {"version": 1, "issued_at": 1_800_000_000u64, "devices": [1], "list": h(v1.to_bytes())},
            {"version": 2, "issued_at": 1_800_000_600u64, "devices": [1, 2], "list": h(v2.to_bytes())},
        ],
        "link": {
            "box_id": h(&code.box_id),
            "new_device_secret": h(&b32(0xE1, 1)),
            "new_device_public": h(&code.public_key),
            "code": code.encode(),
            "plaintext": h(&plaintext.encode()),
            "approver_ephemeral_secret": h(&b32(0xE2, 1)),
            "sealed": h(&sealed),
        },
        "safety_number": {
            "local_account": h(&alice), "local_account_key": h(&alice_key.public().to_bytes()),
            "remote_account": h(&bob), "remote_account_key": h(&bob_key.public().to_bytes()),
            "local_digits": account_party_digits(&alice, alice_key.public()),
            "remote_digits": account_party_digits(&bob, bob_key.public()),
            "safety_number": n,
        },
    })
}
