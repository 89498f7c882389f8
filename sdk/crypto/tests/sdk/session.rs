#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end session tests through the high-level API and the in-memory stores.

use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::pqxdh::PqxdhError;
use haven_sdk::prekeys::{
    KemPreKey, KemPreKeyKind, OneTimePreKey, PreKeyBundle, PreKeyError, SignedPreKey,
};
use haven_sdk::ratchet::RatchetError;
use haven_sdk::ratchet::session::{MAX_SKIP_PER_CHAIN, MAX_SKIPPED_KEY_AGE, SessionRecord};
use haven_sdk::session_cipher::{SessionError, decrypt, encrypt, initiate};
use haven_sdk::store::{
    DeviceAddress, IdentityStore, InMemoryProtocolStore, PreKeyStore, SessionStore,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The receivers' clock (Unix seconds) unless a test moves it.
const NOW: u64 = 1_800_000_000;

const ALICE: DeviceAddress = DeviceAddress {
    account_id: [0xA1; 16],
    device_id: 1,
};
const BOB: DeviceAddress = DeviceAddress {
    account_id: [0xB0; 16],
    device_id: 2,
};

struct Party {
    store: InMemoryProtocolStore,
}

fn party(rng: &mut ChaCha20Rng, reg: u32) -> Party {
    Party {
        store: InMemoryProtocolStore::new(IdentityKeyPair::generate(rng), reg),
    }
}

/// Bob publishes keys; returns a bundle with or without a one-time prekey and with a one-time or
/// last-resort KEM key.
fn publish(
    bob: &mut Party,
    rng: &mut ChaCha20Rng,
    with_otpk: bool,
    kem_kind: KemPreKeyKind,
) -> PreKeyBundle {
    let id = bob.store.identity_key_pair().unwrap();
    let spk = SignedPreKey::generate(&id, 1, 1_000, rng);
    let otpk = OneTimePreKey::generate(100, rng);
    let kem = KemPreKey::generate(&id, 200, kem_kind, 1_000, rng);
    bob.store.save_signed_prekey(spk.clone()).unwrap();
    bob.store.save_one_time_prekey(otpk.clone()).unwrap();
    bob.store.save_kem_prekey(kem.clone()).unwrap();
    PreKeyBundle::new(
        *id.public(),
        9,
        BOB.device_id,
        &spk,
        with_otpk.then_some(&otpk),
        &kem,
    )
}

fn setup(seed: u8) -> (Party, Party, ChaCha20Rng, PreKeyBundle) {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let alice = party(&mut rng, 5);
    let mut bob = party(&mut rng, 9);
    let bundle = publish(&mut bob, &mut rng, true, KemPreKeyKind::OneTime);
    (alice, bob, rng, bundle)
}

/// Alice initiates and Bob answers once so both have full sessions.
fn established(seed: u8) -> (Party, Party, ChaCha20Rng) {
    let (mut a, mut b, mut rng, bundle) = setup(seed);
    let m = initiate(&mut a.store, &BOB, &bundle, b"hi", &mut rng).unwrap();
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).unwrap(),
        b"hi"
    );
    let r = encrypt(&mut b.store, &ALICE, b"hello").unwrap();
    assert_eq!(
        &*decrypt(&mut a.store, &BOB, &r, NOW, &mut rng).unwrap(),
        b"hello"
    );
    (a, b, rng)
}

#[test]
fn handshake_and_conversation() {
    for (with_otpk, kind) in [
        (true, KemPreKeyKind::OneTime),
        (false, KemPreKeyKind::OneTime),
        (true, KemPreKeyKind::LastResort),
        (false, KemPreKeyKind::LastResort),
    ] {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let mut a = party(&mut rng, 5);
        let mut b = party(&mut rng, 9);
        let bundle = publish(&mut b, &mut rng, with_otpk, kind);
        let m = initiate(&mut a.store, &BOB, &bundle, b"first", &mut rng).unwrap();
        assert_eq!(m[1], 0x02, "first message is a prekey message");
        assert_eq!(
            &*decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).unwrap(),
            b"first"
        );
        // One-time keys consumed only as appropriate.
        assert_eq!(b.store.one_time_prekey(100).unwrap().is_some(), !with_otpk);
        assert_eq!(
            b.store.kem_prekey(200).unwrap().is_some(),
            kind == KemPreKeyKind::LastResort
        );
        for i in 0..5u8 {
            let r = encrypt(&mut b.store, &ALICE, &[i; 10]).unwrap();
            assert_eq!(r[1], 0x01);
            assert_eq!(
                &*decrypt(&mut a.store, &BOB, &r, NOW, &mut rng).unwrap(),
                &[i; 10]
            );
            let q = encrypt(&mut a.store, &BOB, &[i; 3]).unwrap();
            assert_eq!(q[1], 0x01, "after a reply Alice sends normal messages");
            assert_eq!(
                &*decrypt(&mut b.store, &ALICE, &q, NOW, &mut rng).unwrap(),
                &[i; 3]
            );
        }
    }
}

#[test]
fn initiator_repeats_prekey_form_until_answered_and_lost_first_message_is_fine() {
    let (mut a, mut b, mut rng, bundle) = setup(2);
    let _lost = initiate(&mut a.store, &BOB, &bundle, b"lost", &mut rng).unwrap();
    let m2 = encrypt(&mut a.store, &BOB, b"second").unwrap();
    let m3 = encrypt(&mut a.store, &BOB, b"third").unwrap();
    assert_eq!((m2[1], m3[1]), (0x02, 0x02));
    // Delivered out of order, first one lost.
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &m3, NOW, &mut rng).unwrap(),
        b"third"
    );
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &m2, NOW, &mut rng).unwrap(),
        b"second"
    );
    // Replay of a prekey message: duplicate, not a new session.
    assert_eq!(
        decrypt(&mut b.store, &ALICE, &m2, NOW, &mut rng),
        Err(SessionError::Ratchet(RatchetError::DuplicateMessage {
            index: 1
        }))
    );
    assert_eq!(
        b.store
            .load_session(&ALICE)
            .unwrap()
            .unwrap()
            .previous_count(),
        0
    );
}

#[test]
fn bad_bundle_signature_stores_nothing() {
    let (mut a, _b, mut rng, mut bundle) = setup(3);
    bundle.kem_prekey_signature[10] ^= 0x40;
    assert_eq!(
        initiate(&mut a.store, &BOB, &bundle, b"x", &mut rng),
        Err(SessionError::Handshake(PqxdhError::InvalidBundle(
            PreKeyError::BadKemPreKeySignature { id: 200 }
        )))
    );
    assert!(a.store.load_session(&BOB).unwrap().is_none());
    assert!(a.store.peer_identity(&BOB).unwrap().is_none());
}

#[test]
fn one_time_prekey_reuse_fails_cleanly() {
    let (mut a, mut b, mut rng, bundle) = setup(4);
    let m = initiate(&mut a.store, &BOB, &bundle, b"one", &mut rng).unwrap();
    decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).unwrap();
    // A second initiator (same bundle, fresh base key) tries the consumed one-time keys.
    let carol_addr = DeviceAddress::new([0xC0; 16], 1);
    let mut carol = party(&mut rng, 6);
    let m = initiate(&mut carol.store, &BOB, &bundle, b"two", &mut rng).unwrap();
    let before = b.store.load_session(&carol_addr).unwrap();
    assert_eq!(
        decrypt(&mut b.store, &carol_addr, &m, NOW, &mut rng),
        Err(SessionError::Handshake(PqxdhError::UnknownOneTimePreKey {
            id: 100
        }))
    );
    assert!(before.is_none() && b.store.load_session(&carol_addr).unwrap().is_none());
}

#[test]
fn failed_first_message_does_not_consume_prekeys() {
    let (mut a, mut b, mut rng, bundle) = setup(5);
    let mut m = initiate(&mut a.store, &BOB, &bundle, b"one", &mut rng).unwrap();
    let last = m.len() - 1;
    m[last] ^= 1;
    assert_eq!(
        decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng),
        Err(SessionError::Ratchet(RatchetError::DecryptionFailed))
    );
    assert!(b.store.one_time_prekey(100).unwrap().is_some());
    assert!(b.store.kem_prekey(200).unwrap().is_some());
    assert!(b.store.load_session(&ALICE).unwrap().is_none());
    assert!(b.store.peer_identity(&ALICE).unwrap().is_none());
}

#[test]
fn changed_identity_is_refused_until_accepted() {
    let (mut a, _b, mut rng, bundle) = setup(6);
    let mut other = party(&mut rng, 9);
    let other_bundle = publish(&mut other, &mut rng, true, KemPreKeyKind::OneTime);
    initiate(&mut a.store, &BOB, &bundle, b"x", &mut rng).unwrap();
    assert_eq!(
        initiate(&mut a.store, &BOB, &other_bundle, b"x", &mut rng),
        Err(SessionError::UntrustedIdentity)
    );
    a.store
        .save_identity(&BOB, &other_bundle.identity_key)
        .unwrap();
    initiate(&mut a.store, &BOB, &other_bundle, b"x", &mut rng).unwrap();
    let rec = a.store.load_session(&BOB).unwrap().unwrap();
    assert_eq!(rec.previous_count(), 1, "old session archived");
}

#[test]
fn every_byte_tampered_is_rejected_and_state_unchanged() {
    let (mut a, mut b, mut rng) = established(7);
    let m = encrypt(&mut a.store, &BOB, b"tamper me").unwrap();
    let before = b.store.load_session(&ALICE).unwrap().unwrap().to_bytes();
    for i in 0..m.len() {
        let mut t = m.clone();
        t[i] ^= 0x01;
        assert!(
            decrypt(&mut b.store, &ALICE, &t, NOW, &mut rng).is_err(),
            "byte {i}"
        );
        assert_eq!(
            b.store.load_session(&ALICE).unwrap().unwrap().to_bytes(),
            before,
            "byte {i}"
        );
    }
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).unwrap(),
        b"tamper me"
    );
}

#[test]
fn prekey_message_every_byte_tampered() {
    let (mut a, mut b, mut rng, bundle) = setup(8);
    let m = initiate(&mut a.store, &BOB, &bundle, b"hello", &mut rng).unwrap();
    // Every byte except the KEM ciphertext interior is checked one by one; the KEM ciphertext
    // (implicit rejection) is sampled to keep the test fast.
    let kem_start = 2 + 64 + 32 + 4 + 5 + 4;
    for i in (0..m.len()).filter(|i| *i < kem_start || *i >= kem_start + 1568 || i % 97 == 0) {
        let mut t = m.clone();
        t[i] ^= 0x80;
        assert!(
            decrypt(&mut b.store, &ALICE, &t, NOW, &mut rng).is_err(),
            "byte {i}"
        );
    }
    assert!(b.store.load_session(&ALICE).unwrap().is_none());
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).unwrap(),
        b"hello"
    );
}

#[test]
fn skip_limit_is_enforced_and_state_unchanged() {
    let (mut a, mut b, mut rng) = established(9);
    let mut msgs = Vec::new();
    for _ in 0..=MAX_SKIP_PER_CHAIN + 1 {
        msgs.push(encrypt(&mut a.store, &BOB, b"m").unwrap());
    }
    let far = msgs.last().unwrap();
    let before = b.store.load_session(&ALICE).unwrap().unwrap().to_bytes();
    assert!(matches!(
        decrypt(&mut b.store, &ALICE, far, NOW, &mut rng),
        Err(SessionError::Ratchet(RatchetError::TooFarInFuture {
            gap: 1001,
            max: 1000
        }))
    ));
    assert_eq!(
        b.store.load_session(&ALICE).unwrap().unwrap().to_bytes(),
        before
    );
    // Exactly MAX_SKIP_PER_CHAIN is fine.
    let ok = &msgs[MAX_SKIP_PER_CHAIN as usize];
    decrypt(&mut b.store, &ALICE, ok, NOW, &mut rng).unwrap();
    let rec: SessionRecord = b.store.load_session(&ALICE).unwrap().unwrap();
    assert_eq!(
        rec.current().unwrap().skipped_key_count(),
        MAX_SKIP_PER_CHAIN as usize
    );
    decrypt(&mut b.store, &ALICE, &msgs[3], NOW, &mut rng).unwrap();
}

#[test]
fn oversized_message_is_refused() {
    let (mut a, _b, _rng) = established(10);
    let big = vec![0u8; haven_sdk::ratchet::message::MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        encrypt(&mut a.store, &BOB, &big),
        Err(SessionError::Ratchet(RatchetError::MessageTooLarge { .. }))
    ));
}

#[test]
fn no_session_is_typed() {
    let (mut a, _b, mut rng) = established(11);
    let stranger = DeviceAddress::new([9; 16], 9);
    assert_eq!(
        encrypt(&mut a.store, &stranger, b"x"),
        Err(SessionError::NoSession)
    );
    let m = encrypt(&mut a.store, &BOB, b"x").unwrap();
    assert_eq!(
        decrypt(&mut a.store, &stranger, &m, NOW, &mut rng),
        Err(SessionError::NoSession)
    );
}

#[test]
fn message_for_wrong_recipient_fails() {
    let (mut a, _b, mut rng) = established(12);
    let (_, mut c, mut rng2) = established(13);
    let m = encrypt(&mut a.store, &BOB, b"for bob").unwrap();
    assert!(decrypt(&mut c.store, &ALICE, &m, NOW, &mut rng2).is_err());
    let _ = &mut rng;
}

#[derive(Debug, Clone)]
enum Step {
    AliceSends,
    BobSends,
    DeliverToBob(usize),
    DeliverToAlice(usize),
    ReplayToBob(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::AliceSends),
        3 => Just(Step::BobSends),
        4 => any::<usize>().prop_map(Step::DeliverToBob),
        4 => any::<usize>().prop_map(Step::DeliverToAlice),
        1 => any::<usize>().prop_map(Step::ReplayToBob),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random interleavings of sends, out-of-order deliveries, losses (never delivered) and
    /// replays: every delivered message decrypts to what was sent, exactly once.
    #[test]
    fn out_of_order_loss_and_replay(steps in proptest::collection::vec(step(), 1..60)) {
        let (mut a, mut b, mut rng) = established(20);
        let mut to_bob: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut to_alice: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut delivered_to_bob: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut n = 0u32;
        for s in steps {
            n += 1;
            match s {
                Step::AliceSends => {
                    let pt = n.to_be_bytes().to_vec();
                    to_bob.push((encrypt(&mut a.store, &BOB, &pt).unwrap(), pt));
                }
                Step::BobSends => {
                    let pt = n.to_be_bytes().to_vec();
                    to_alice.push((encrypt(&mut b.store, &ALICE, &pt).unwrap(), pt));
                }
                Step::DeliverToBob(i) if !to_bob.is_empty() => {
                    let (ct, pt) = to_bob.remove(i % to_bob.len());
                    prop_assert_eq!(&*decrypt(&mut b.store, &ALICE, &ct, NOW, &mut rng).unwrap(), &pt[..]);
                    delivered_to_bob.push((ct, pt));
                }
                Step::DeliverToAlice(i) if !to_alice.is_empty() => {
                    let (ct, pt) = to_alice.remove(i % to_alice.len());
                    prop_assert_eq!(&*decrypt(&mut a.store, &BOB, &ct, NOW, &mut rng).unwrap(), &pt[..]);
                }
                Step::ReplayToBob(i) if !delivered_to_bob.is_empty() => {
                    let (ct, _) = &delivered_to_bob[i % delivered_to_bob.len()];
                    prop_assert!(decrypt(&mut b.store, &ALICE, ct, NOW, &mut rng).is_err());
                }
                _ => {}
            }
        }
    }

    /// Decoders never panic on arbitrary bytes.
    #[test]
    fn decrypt_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let (_a, mut b, mut rng) = established(21);
        let _ = decrypt(&mut b.store, &ALICE, &bytes, NOW, &mut rng);
        let _ = PreKeyBundle::from_bytes(&bytes);
        let _ = SessionRecord::from_bytes(&bytes);
        let _ = haven_sdk::ratchet::session::Session::from_bytes(&bytes);
    }
}

#[test]
fn skipped_key_total_cap_evicts_oldest() {
    use haven_sdk::ratchet::session::MAX_SKIPPED_KEYS;
    let (mut a, mut b, mut rng) = established(30);
    let mut firsts = Vec::new();
    for round in 0..3 {
        let mut msgs = Vec::new();
        for _ in 0..=MAX_SKIP_PER_CHAIN {
            msgs.push(encrypt(&mut a.store, &BOB, b"r").unwrap());
        }
        decrypt(&mut b.store, &ALICE, msgs.last().unwrap(), NOW, &mut rng).unwrap();
        firsts.push(msgs[0].clone());
        // Bob answers so Alice's next round uses a new chain.
        let r = encrypt(&mut b.store, &ALICE, &[round]).unwrap();
        decrypt(&mut a.store, &BOB, &r, NOW, &mut rng).unwrap();
    }
    let rec = b.store.load_session(&ALICE).unwrap().unwrap();
    assert_eq!(rec.current().unwrap().skipped_key_count(), MAX_SKIPPED_KEYS);
    // Round 0's keys were evicted: its message is now rejected as a duplicate...
    assert_eq!(
        decrypt(&mut b.store, &ALICE, &firsts[0], NOW, &mut rng),
        Err(SessionError::Ratchet(RatchetError::DuplicateMessage {
            index: 0
        }))
    );
    // ...while round 2's are still there.
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &firsts[2], NOW, &mut rng).unwrap(),
        b"r"
    );
}

#[test]
fn session_pickle_roundtrip_keeps_working_and_debug_is_redacted() {
    use haven_sdk::snapshot::{LABEL_SESSION, StorageKey, open, seal};
    let (mut a, mut b, mut rng) = established(31);
    let m1 = encrypt(&mut a.store, &BOB, b"one").unwrap();
    let m2 = encrypt(&mut a.store, &BOB, b"two").unwrap();
    decrypt(&mut b.store, &ALICE, &m2, NOW, &mut rng).unwrap();
    let rec = b.store.load_session(&ALICE).unwrap().unwrap();
    let key = StorageKey::generate(&mut rng);
    let snap = seal(&key, LABEL_SESSION, &rec.to_bytes(), &mut rng);
    let mut back = SessionRecord::from_bytes(&open(&key, LABEL_SESSION, &snap).unwrap()).unwrap();
    assert_eq!(back.to_bytes(), rec.to_bytes());
    let haven_sdk::ratchet::message::SessionMessage::Ratchet(m1) =
        haven_sdk::ratchet::message::SessionMessage::from_bytes(&m1).unwrap()
    else {
        panic!()
    };
    assert_eq!(&*back.decrypt(&m1, NOW, &mut rng).unwrap(), b"one");
    let dbg = format!("{back:?} {:?}", back.current().unwrap());
    assert!(!dbg.contains("root") && !dbg.contains("secret"), "{dbg}");
    // Truncations never decode.
    let bytes = rec.to_bytes();
    for cut in [0, 1, 2, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(SessionRecord::from_bytes(&bytes[..cut]).is_err());
    }
}

#[test]
fn receiving_chains_are_bounded() {
    use haven_sdk::ratchet::session::MAX_RECEIVER_CHAINS;
    let (mut a, mut b, mut rng) = established(32);
    // A message from Alice's first post-handshake chain, held back.
    let old = encrypt(&mut a.store, &BOB, b"old").unwrap();
    let _ = encrypt(&mut a.store, &BOB, b"pad").unwrap();
    for i in 0..MAX_RECEIVER_CHAINS + 1 {
        let q = encrypt(&mut a.store, &BOB, &[i as u8]).unwrap();
        decrypt(&mut b.store, &ALICE, &q, NOW, &mut rng).unwrap();
        let r = encrypt(&mut b.store, &ALICE, b"r").unwrap();
        decrypt(&mut a.store, &BOB, &r, NOW, &mut rng).unwrap();
    }
    // "old" was skipped when its chain moved on, so its key is still stored and decrypts even
    // though its chain has been dropped from the bounded list.
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &old, NOW, &mut rng).unwrap(),
        b"old"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Other decoders never panic on arbitrary bytes.
    #[test]
    fn other_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = haven_sdk::sealed_sender::SenderCertificate::from_bytes(&bytes);
        let _ = haven_sdk::identity::IdentityKey::from_bytes(&bytes);
        let _ = haven_sdk::identity::IdentityKeyPair::from_bytes(&bytes);
        let _ = SignedPreKey::from_bytes(&bytes);
        let _ = OneTimePreKey::from_bytes(&bytes);
        let _ = KemPreKey::from_bytes(&bytes);
        let _ = haven_sdk::ratchet::message::SessionMessage::from_bytes(&bytes);
    }

    /// Opening arbitrary bytes as a sealed envelope never panics and never succeeds.
    #[test]
    fn open_sealed_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut rng = ChaCha20Rng::from_seed([33; 32]);
        let me = IdentityKeyPair::generate(&mut rng);
        let relay = ed25519_dalek::SigningKey::generate(&mut rng);
        prop_assert!(haven_sdk::open_sealed(&me, &relay.verifying_key(), &bytes, 0).is_err());
    }
}

#[test]
fn low_order_signed_prekey_is_refused_even_if_signed() {
    use haven_sdk::prekeys::{KEY_TYPE_X25519, prekey_signature_message};
    let (mut a, b, mut rng, mut bundle) = setup(34);
    let bob_id = b.store.identity_key_pair().unwrap();
    bundle.signed_prekey = x25519_dalek::PublicKey::from([0u8; 32]);
    bundle.signed_prekey_signature = bob_id.sign(&prekey_signature_message(
        bob_id.public(),
        KEY_TYPE_X25519,
        bundle.signed_prekey_id,
        &[0u8; 32],
    ));
    bundle.verify().unwrap();
    assert_eq!(
        initiate(&mut a.store, &BOB, &bundle, b"x", &mut rng),
        Err(SessionError::Handshake(PqxdhError::InvalidPublicKey))
    );
    assert!(a.store.load_session(&BOB).unwrap().is_none());
}

#[test]
fn responder_refuses_prekey_message_from_changed_identity() {
    let (mut a, mut b, mut rng, bundle) = setup(35);
    let m = initiate(&mut a.store, &BOB, &bundle, b"x", &mut rng).unwrap();
    let impostor = IdentityKeyPair::generate(&mut rng);
    b.store.save_identity(&ALICE, impostor.public()).unwrap();
    assert_eq!(
        decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng),
        Err(SessionError::UntrustedIdentity)
    );
    assert!(
        b.store.one_time_prekey(100).unwrap().is_some(),
        "nothing consumed"
    );
}

#[test]
fn simultaneous_initiation_converges() {
    let mut rng = ChaCha20Rng::from_seed([36; 32]);
    let mut a = party(&mut rng, 5);
    let mut b = party(&mut rng, 9);
    let bundle_b = publish(&mut b, &mut rng, true, KemPreKeyKind::OneTime);
    let bundle_a = publish(&mut a, &mut rng, true, KemPreKeyKind::OneTime);
    let from_a = initiate(&mut a.store, &BOB, &bundle_b, b"a-first", &mut rng).unwrap();
    let from_b = initiate(&mut b.store, &ALICE, &bundle_a, b"b-first", &mut rng).unwrap();
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &from_a, NOW, &mut rng).unwrap(),
        b"a-first"
    );
    assert_eq!(
        &*decrypt(&mut a.store, &BOB, &from_b, NOW, &mut rng).unwrap(),
        b"b-first"
    );
    for i in 0..4u8 {
        let m = encrypt(&mut a.store, &BOB, &[i]).unwrap();
        assert_eq!(
            &*decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).unwrap(),
            &[i]
        );
        let r = encrypt(&mut b.store, &ALICE, &[i, i]).unwrap();
        assert_eq!(
            &*decrypt(&mut a.store, &BOB, &r, NOW, &mut rng).unwrap(),
            &[i, i]
        );
    }
    assert_eq!(
        a.store
            .load_session(&BOB)
            .unwrap()
            .unwrap()
            .previous_count(),
        1
    );
}

#[test]
fn archived_sessions_are_bounded() {
    use haven_sdk::ratchet::session::MAX_ARCHIVED_SESSIONS;
    let (mut a, mut b, mut rng, _) = setup(37);
    for _ in 0..MAX_ARCHIVED_SESSIONS + 3 {
        let bundle = publish(&mut b, &mut rng, false, KemPreKeyKind::LastResort);
        initiate(&mut a.store, &BOB, &bundle, b"x", &mut rng).unwrap();
    }
    let rec = a.store.load_session(&BOB).unwrap().unwrap();
    assert_eq!(rec.previous_count(), MAX_ARCHIVED_SESSIONS);
}

#[test]
fn bundle_every_byte_tampered_is_caught() {
    let (_a, _b, _rng, bundle) = setup(38);
    let bytes = bundle.to_bytes();
    // Unsigned by design (as in PQXDH): the registration and device ids (bytes 2..10, routing
    // data) and the one-time prekey id and key (bytes 175..211). A relay able to alter those can
    // equally withhold the one-time prekey; everything else is signed or structural.
    for i in (0..bytes.len()).filter(|i| !(2..10).contains(i) && !(175..211).contains(i)) {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        let ok = PreKeyBundle::from_bytes(&t).and_then(|b| b.verify());
        assert!(ok.is_err(), "byte {i}");
    }
}

#[test]
fn exhausted_sending_chain_is_typed() {
    use haven_sdk::ratchet::session::Session;
    let (a, _b, _rng) = established(39);
    let rec = a.store.load_session(&BOB).unwrap().unwrap();
    let mut bytes = rec.current().unwrap().to_bytes().to_vec();
    // Session pickle (PROTOCOL.md §4.7): Ns sits after version/type, 2 identities, AD, EK_A, RK,
    // DHs secret, the has_CKs flag and CKs.
    let ns = 2 + 64 + 64 + 128 + 32 + 32 + 32 + 1 + 32;
    assert_eq!(bytes[ns - 33], 1, "has sending chain");
    bytes[ns..ns + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut s = Session::from_bytes(&bytes).unwrap();
    assert_eq!(
        s.ratchet_encrypt(b"x").unwrap_err(),
        RatchetError::ChainExhausted
    );
}

/// A first message sent without a one-time prekey cannot be replayed into a new session once
/// the session it made is gone (evicted, or the record lost): its base key is remembered for
/// the signed prekey's lifetime. Before, the replay made a second session and decrypted again.
#[test]
fn a_first_message_is_not_accepted_twice() {
    for kind in [KemPreKeyKind::LastResort, KemPreKeyKind::OneTime] {
        let mut rng = ChaCha20Rng::from_seed([77; 32]);
        let mut a = party(&mut rng, 5);
        let mut b = party(&mut rng, 9);
        let bundle = publish(&mut b, &mut rng, false, kind);
        let m = initiate(&mut a.store, &BOB, &bundle, b"once", &mut rng).unwrap();
        assert_eq!(
            &*decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).unwrap(),
            b"once"
        );
        // While the session exists, a repeat is the same session's message (a duplicate).
        assert!(decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng).is_err());
        // The session is gone; the replay must not make a new one.
        b.store
            .store_session(&ALICE, &SessionRecord::new())
            .unwrap();
        let replay = decrypt(&mut b.store, &ALICE, &m, NOW, &mut rng);
        assert!(
            replay.is_err(),
            "{kind:?}: a replayed first message was accepted"
        );
        assert!(
            b.store
                .load_session(&ALICE)
                .unwrap()
                .unwrap()
                .current()
                .is_none()
        );
        // A fresh first message from Alice under the same signed prekey still works.
        let bundle = publish(&mut b, &mut rng, false, KemPreKeyKind::LastResort);
        let mut a2 = party(&mut rng, 6);
        b.store
            .save_identity(&ALICE, a2.store.identity_key_pair().unwrap().public())
            .unwrap();
        let fresh = initiate(&mut a2.store, &BOB, &bundle, b"again", &mut rng).unwrap();
        assert_eq!(
            &*decrypt(&mut b.store, &ALICE, &fresh, NOW, &mut rng).unwrap(),
            b"again"
        );
    }
}

#[test]
fn skipped_keys_expire_after_the_maximum_age() {
    let (mut a, mut b, mut rng) = established(40);
    // The relay withholds `old`; `m1` makes Bob skip (and keep) its key at NOW.
    let old = encrypt(&mut a.store, &BOB, b"withheld long").unwrap();
    let m1 = encrypt(&mut a.store, &BOB, b"one").unwrap();
    decrypt(&mut b.store, &ALICE, &m1, NOW, &mut rng).unwrap();
    // Thirty days later a second message is withheld and a third skips its key (fresh).
    let later = NOW + MAX_SKIPPED_KEY_AGE;
    let fresh = encrypt(&mut a.store, &BOB, b"withheld briefly").unwrap();
    let m3 = encrypt(&mut a.store, &BOB, b"three").unwrap();
    decrypt(&mut b.store, &ALICE, &m3, later, &mut rng).unwrap();
    // The old key left the stored session with that decrypt; the fresh one is kept.
    let rec = b.store.load_session(&ALICE).unwrap().unwrap();
    assert_eq!(rec.current().unwrap().skipped_key_count(), 1);
    assert!(matches!(
        decrypt(&mut b.store, &ALICE, &old, later, &mut rng),
        Err(SessionError::Ratchet(RatchetError::DuplicateMessage {
            index: 0
        }))
    ));
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &fresh, later + 60, &mut rng).unwrap(),
        b"withheld briefly"
    );
}

#[test]
fn skipped_key_one_second_short_of_the_maximum_age_still_decrypts() {
    let (mut a, mut b, mut rng) = established(41);
    let held = encrypt(&mut a.store, &BOB, b"held").unwrap();
    let m1 = encrypt(&mut a.store, &BOB, b"one").unwrap();
    decrypt(&mut b.store, &ALICE, &m1, NOW, &mut rng).unwrap();
    assert_eq!(
        &*decrypt(
            &mut b.store,
            &ALICE,
            &held,
            NOW + MAX_SKIPPED_KEY_AGE - 1,
            &mut rng
        )
        .unwrap(),
        b"held"
    );
}

/// Rewrites a version-2 session record (§4.8) into the version-1 session pickles of before
/// skipped keys had a creation time.
fn record_to_v1(record: &[u8]) -> Vec<u8> {
    let mut out = record[..4].to_vec();
    let mut at = 4;
    while at < record.len() {
        let len = u32::from_be_bytes(record[at..at + 4].try_into().unwrap()) as usize;
        let s = &record[at + 4..at + 4 + len];
        at += 4 + len;
        assert_eq!(s[..2], [0x02, 0x30]);
        let mut v1 = vec![0x01, 0x30];
        let mut p = 2 + 64 + 64 + 128 + 32 + 32 + 32;
        p += if s[p] == 1 { 1 + 36 } else { 1 };
        p += 4;
        p += 1 + 68 * s[p] as usize;
        let n = u32::from_be_bytes(s[p..p + 4].try_into().unwrap()) as usize;
        v1.extend_from_slice(&s[2..p + 4]);
        p += 4;
        for _ in 0..n {
            v1.extend_from_slice(&s[p..p + 68]);
            p += 76;
        }
        v1.extend_from_slice(&s[p..]);
        out.extend_from_slice(&(v1.len() as u32).to_be_bytes());
        out.extend_from_slice(&v1);
    }
    out
}

#[test]
fn version_1_session_pickles_load_and_their_skipped_keys_age_from_first_use() {
    let (mut a, mut b, mut rng) = established(42);
    let held = [
        encrypt(&mut a.store, &BOB, b"held 0").unwrap(),
        encrypt(&mut a.store, &BOB, b"held 1").unwrap(),
    ];
    let m2 = encrypt(&mut a.store, &BOB, b"two").unwrap();
    decrypt(&mut b.store, &ALICE, &m2, NOW, &mut rng).unwrap();
    let v2 = b.store.load_session(&ALICE).unwrap().unwrap();
    let v1 = SessionRecord::from_bytes(&record_to_v1(&v2.to_bytes())).unwrap();
    assert_eq!(v1.current().unwrap().skipped_key_count(), 2);
    b.store.store_session(&ALICE, &v1).unwrap();
    // The first use after the upgrade, long after NOW, stamps the keys of unknown age...
    let first_use = NOW + 3 * MAX_SKIPPED_KEY_AGE;
    let m3 = encrypt(&mut a.store, &BOB, b"three").unwrap();
    decrypt(&mut b.store, &ALICE, &m3, first_use, &mut rng).unwrap();
    assert_eq!(
        &*decrypt(&mut b.store, &ALICE, &held[0], first_use + 1, &mut rng).unwrap(),
        b"held 0"
    );
    // ...and they expire the maximum age after it.
    assert!(matches!(
        decrypt(
            &mut b.store,
            &ALICE,
            &held[1],
            first_use + MAX_SKIPPED_KEY_AGE,
            &mut rng
        ),
        Err(SessionError::Ratchet(RatchetError::DuplicateMessage {
            index: 1
        }))
    ));
}
