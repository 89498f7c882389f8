//! The device steps driven against each other without a relay: devices in memory stores, the
//! relay's answers built by hand (bundles from the devices' own uploads, certificates signed by
//! a test relay key, 409 mismatches, key counts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use haven_protocol::api::Id;
use haven_protocol::api::certificate::{CertificateKeyResponse, CertificateResponse};
use haven_protocol::api::devices::{DeviceBody, DeviceList};
use haven_protocol::api::error::DeviceMismatch;
use haven_protocol::api::keys::{BundleBody, BundlesResponse, KeyCountsResponse, KeyUploadRequest};
use haven_protocol::api::messages::{FrankingBody, QueuedBody};
use haven_protocol::api::moderation::FrankingKeyResponse;
use haven_protocol::franking::verify::{FrankingSecret, StampKey, delivery_stamp, verify_report};
use haven_protocol::franking::{Destination, Report};
use haven_sdk::identity::IdentityKeyPair;
use haven_sdk::prekeys::{PreKeyBundle, SignedPreKeyPolicy};
use haven_sdk::sealed_sender::SenderCertificate;
use haven_sdk::store::{DeviceAddress, IdentityStore, PreKeyStore, SessionStore};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::state::{
    StoredSession, contact_devices, pin_relay_key, save_contact_devices, set_contact_access_key,
};
use super::{
    Claim, DeliveredFranking, DeviceError, ListAnswer, ListRefusal, LocalDevice, OutgoingSend,
    PREKEY_BATCH, Received, RejectReason, keys, space,
};
use crate::store::{MemoryStore, Space};

const NOW: u64 = 1_790_000_000;

/// One device: its store, its record, its first key upload and how many of its one-time keys
/// the "relay" handed out.
struct Dev {
    store: MemoryStore,
    local: LocalDevice,
    upload: KeyUploadRequest,
    claimed: usize,
    rng: ChaCha20Rng,
}

fn relay_key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

/// A device whose peers publish no signed device lists (a relay from before §15): trusted on
/// first use. The `hostile_relay_*` tests use [`listed_device`].
fn device(account: [u8; 16], number: u32, seed: u64) -> Dev {
    let mut d = listed_device(account, number, seed);
    for peer in [ALICE, BOB] {
        d.local
            .accept_device_list(&mut d.store, &peer, ListAnswer::NotPublished, NOW)
            .unwrap();
    }
    d
}

fn listed_device(account: [u8; 16], number: u32, seed: u64) -> Dev {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut store = MemoryStore::generate(&mut rng).unwrap();
    store
        .set_identity(&IdentityKeyPair::generate(&mut rng), 100 + number)
        .unwrap();
    StoredSession::store(
        &store,
        Id::from(account),
        Id::from([number as u8; 16]),
        number,
        "refresh-1",
    )
    .unwrap();
    let key = CertificateKeyResponse {
        public_key: STANDARD.encode(relay_key().verifying_key().as_bytes()),
    };
    pin_relay_key(&store, &key).unwrap();
    let upload = keys::upload(&mut store, NOW, &mut rng).unwrap();
    let local = LocalDevice::load(&store).unwrap();
    assert_eq!(local.account(), account);
    assert_eq!(local.device_number(), number);
    assert!(local.certificate(&store, NOW).unwrap().is_none());
    let identity = *store.identity_key_pair().unwrap().public();
    let cert = SenderCertificate::issue(&relay_key(), local.address(), identity, NOW + 3600);
    let answer = CertificateResponse {
        certificate: STANDARD.encode(cert.to_bytes()),
        expires: cert.expires,
    };
    local.accept_certificate(&store, &answer, NOW).unwrap();
    Dev {
        store,
        local,
        upload,
        claimed: 0,
        rng,
    }
}

impl Dev {
    /// What the relay answers to a claim of this device's bundle (its next one-time keys).
    fn bundle(&mut self) -> BundleBody {
        let signed_prekey = self.upload.signed_prekey.clone().unwrap();
        let one_time_prekey = self.upload.one_time_prekeys[self.claimed].clone();
        let kem_prekey = self.upload.one_time_kem_prekeys[self.claimed].clone();
        self.claimed += 1;
        let s = &self.store;
        let bundle = PreKeyBundle::new(
            *s.identity_key_pair().unwrap().public(),
            s.local_registration_id().unwrap(),
            self.local.device_number(),
            &s.signed_prekey(signed_prekey.key_id).unwrap().unwrap(),
            s.one_time_prekey(one_time_prekey.key_id).unwrap().as_ref(),
            &s.kem_prekey(kem_prekey.key_id).unwrap().unwrap(),
        );
        BundleBody {
            device_number: self.local.device_number(),
            registration_id: s.local_registration_id().unwrap(),
            identity_key: STANDARD.encode(s.identity_key_pair().unwrap().public().to_bytes()),
            signed_prekey,
            one_time_prekey: Some(one_time_prekey),
            kem_prekey,
            kem_prekey_last_resort: false,
            bundle: Some(STANDARD.encode(bundle.to_bytes())),
        }
    }

    /// Sends `text` to `account` with `bundles` answering the claims; the envelope for each
    /// device number.
    fn send(
        &mut self,
        account: [u8; 16],
        text: &[u8],
        bundles: &[BundlesResponse],
    ) -> Result<Option<OutgoingSend>, DeviceError> {
        let cert = self.local.certificate(&self.store, NOW).unwrap().unwrap();
        let id = Id::from(rand_id(&mut self.rng));
        let franking_key = self.local.franking_key(&self.store).unwrap();
        self.local.encrypt(
            &mut self.store,
            &account,
            &super::OutgoingPlaintext::new(text)?,
            id,
            false,
            franking_key.as_ref(),
            bundles,
            &cert,
            &mut self.rng,
        )
    }

    /// Opens the envelope `out` carries for this device, as `GET /v1/messages` would give it.
    fn receive(&mut self, out: &OutgoingSend) -> Option<Received> {
        let queued = queued(out, self.local.device_number());
        self.local
            .receive(&mut self.store, &queued, false, NOW, &mut self.rng)
            .unwrap()
    }

    /// Opens a queued envelope as given (with whatever franking it carries).
    fn receive_queued(&mut self, queued: &QueuedBody) -> Option<Received> {
        self.local
            .receive(&mut self.store, queued, false, NOW, &mut self.rng)
            .unwrap()
    }

    /// Every row of the spaces a receive may touch, decrypted and sorted.
    fn rows(&self) -> Vec<(u16, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for space in [
            Space::SESSION,
            Space::PEER_IDENTITY,
            Space::ONE_TIME_PREKEY,
            Space::KEM_PREKEY,
            space::META,
            space::CONTACT_DEVICES,
            space::SEEN,
            space::INBOX,
        ] {
            for (k, v) in self.store.entries(space).unwrap() {
                out.push((space.value(), k, v.to_vec()));
            }
        }
        out.sort();
        out
    }
}

fn rand_id(rng: &mut ChaCha20Rng) -> [u8; 16] {
    let mut id = [0u8; 16];
    rand_core::Rng::fill_bytes(rng, &mut id);
    id
}

fn bundles(account: [u8; 16], devices: &mut [&mut Dev]) -> BundlesResponse {
    BundlesResponse {
        account_id: Id::from(account),
        bundles: devices.iter_mut().map(|d| d.bundle()).collect(),
    }
}

fn queued(out: &OutgoingSend, device: u32) -> QueuedBody {
    let envelope = out
        .body()
        .envelopes
        .iter()
        .find(|e| e.device_number == device)
        .unwrap_or_else(|| panic!("no envelope for device {device}"));
    QueuedBody {
        seq: 1,
        message_id: out.body().message_id,
        source: None,
        content: envelope.content.clone(),
        payload: None,
        received_at: 0,
        expires_at: 0,
        franking: None,
    }
}

fn text(r: Option<Received>) -> String {
    match r {
        Some(Received::Message { plaintext, .. }) => String::from_utf8(plaintext).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn devices_of(out: &OutgoingSend) -> Vec<u32> {
    out.body()
        .envelopes
        .iter()
        .map(|e| e.device_number)
        .collect()
}

const ALICE: [u8; 16] = [0xa1; 16];
const BOB: [u8; 16] = [0xb2; 16];

#[test]
fn first_contact_via_bundles_then_sessions_both_ways() {
    let mut alice = device(ALICE, 1, 1);
    let mut bob1 = device(BOB, 1, 2);
    let mut bob2 = device(BOB, 2, 3);

    // Bob's devices are unknown: claim them all, then encrypt for both.
    assert_eq!(
        alice.local.claims(&alice.store, &BOB).unwrap(),
        [Claim::All]
    );
    assert_eq!(
        Claim::All.path(&BOB),
        format!("/v1/keys/{}", hex::encode(BOB))
    );
    assert_eq!(
        Claim::Device(2).path(&BOB),
        format!("/v1/keys/{}/2", hex::encode(BOB))
    );
    let answer = bundles(BOB, &mut [&mut bob1, &mut bob2]);
    let out = alice
        .send(BOB, b"hello periwinkle", &[answer])
        .unwrap()
        .unwrap();
    assert_eq!(devices_of(&out), [1, 2]);
    // No access key known: a logged-in send.
    assert!(!out.is_sealed());
    assert_eq!(out.path(), format!("/v1/messages/{}", hex::encode(BOB)));
    assert_eq!(contact_devices(&alice.store, &BOB).unwrap(), [1, 2]);
    for e in &out.body().envelopes {
        let raw = STANDARD.decode(&e.content).unwrap();
        assert!(!raw.windows(10).any(|w| w == b"periwinkle"));
    }

    assert_eq!(text(bob1.receive(&out)), "hello periwinkle");
    assert_eq!(text(bob2.receive(&out)), "hello periwinkle");
    // Bob learned Alice's device from her certificate and answers over the session she
    // started: nothing to claim.
    assert_eq!(contact_devices(&bob1.store, &ALICE).unwrap(), [1]);
    assert!(bob1.local.claims(&bob1.store, &ALICE).unwrap().is_empty());
    let back = bob1.send(ALICE, b"hi tangerine", &[]).unwrap().unwrap();
    assert_eq!(text(alice.receive(&back)), "hi tangerine");
    // Sessions everywhere now: Alice's next send claims nothing.
    assert!(alice.local.claims(&alice.store, &BOB).unwrap().is_empty());
    let again = alice.send(BOB, b"second", &[]).unwrap().unwrap();
    assert_eq!(text(bob2.receive(&again)), "second");

    // With Bob's access key the send is sealed and carries it.
    set_contact_access_key(&alice.store, &BOB, &[7; 16]).unwrap();
    let sealed = alice.send(BOB, b"sealed", &[]).unwrap().unwrap();
    assert!(sealed.is_sealed());
    assert_eq!(
        sealed.path(),
        format!("/v1/messages/{}/sealed", hex::encode(BOB))
    );
    assert_eq!(
        sealed.body().access_key.as_deref(),
        Some(STANDARD.encode([7; 16]).as_str())
    );
    assert_eq!(text(bob1.receive(&sealed)), "sealed");

    // Safety numbers agree on both sides.
    let from_alice = alice.local.safety_numbers(&alice.store, &BOB).unwrap();
    let from_bob = bob1.local.safety_numbers(&bob1.store, &ALICE).unwrap();
    assert_eq!(from_alice.len(), 2);
    assert_eq!(from_alice[0].device, 1);
    assert_eq!(from_bob[0].digits, from_alice[0].digits);
    assert_eq!(from_bob[0].digits.len(), 60);
}

#[test]
fn a_device_without_session_or_bundle_is_an_error_and_nothing_is_kept() {
    let mut alice = device(ALICE, 1, 4);
    let mut bob1 = device(BOB, 1, 5);
    save_contact_devices(&alice.store, &BOB, &[1, 2]).unwrap();
    assert_eq!(
        alice.local.claims(&alice.store, &BOB).unwrap(),
        [Claim::Device(1), Claim::Device(2)]
    );
    let before = alice.rows();
    let answer = bundles(BOB, &mut [&mut bob1]);
    let err = alice
        .send(BOB, b"x", std::slice::from_ref(&answer))
        .unwrap_err();
    assert!(matches!(err, DeviceError::NoSession { device: 2 }), "{err}");
    // Device 1's new session was rolled back with the rest.
    assert_eq!(alice.rows(), before);
    // Bundles of another account, or tampered, are refused.
    let err = alice
        .send(ALICE, b"x", std::slice::from_ref(&answer))
        .unwrap_err();
    assert!(matches!(err, DeviceError::InvalidResponse(_)), "{err}");
    let mut bad = answer;
    bad.bundles[0].device_number = 9;
    let err = alice.send(BOB, b"x", &[bad]).unwrap_err();
    assert!(matches!(err, DeviceError::InvalidResponse(_)), "{err}");
}

#[test]
fn repair_after_a_409_naming_a_new_and_a_removed_device() {
    let mut alice = device(ALICE, 1, 6);
    let mut bob1 = device(BOB, 1, 7);
    let mut bob2 = device(BOB, 2, 8);
    let mut bob3 = device(BOB, 3, 9);
    let answer = bundles(BOB, &mut [&mut bob1, &mut bob2]);
    let first = alice.send(BOB, b"one", &[answer]).unwrap().unwrap();
    assert_eq!(text(bob2.receive(&first)), "one");

    // Bob unlinks device 2 and links device 3; the relay refuses the next send.
    let stale = alice.send(BOB, b"two", &[]).unwrap().unwrap();
    assert_eq!(devices_of(&stale), [1, 2]);
    let mismatch = DeviceMismatch {
        account_id: Id::from(BOB),
        missing_devices: vec![3],
        extra_devices: Vec::new(),
        removed_devices: vec![2],
    };
    let other = DeviceMismatch {
        account_id: Id::from(ALICE),
        ..mismatch.clone()
    };
    alice
        .local
        .repair(&mut alice.store, &BOB, &[other, mismatch], false)
        .unwrap();
    assert_eq!(contact_devices(&alice.store, &BOB).unwrap(), [1, 3]);
    // The session with the removed device is gone; the new one needs its bundle.
    assert!(
        alice
            .store
            .load_session(&DeviceAddress::new(BOB, 2))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        alice.local.claims(&alice.store, &BOB).unwrap(),
        [Claim::Device(3)]
    );
    let answer = bundles(BOB, &mut [&mut bob3]);
    let retry = alice.send(BOB, b"two", &[answer]).unwrap().unwrap();
    assert_eq!(devices_of(&retry), [1, 3]);
    assert_eq!(text(bob1.receive(&retry)), "two");
    assert_eq!(text(bob3.receive(&retry)), "two");
}

/// Without Bob's access key the relay names none of his devices in a 409 (PROTOCOL §11.12):
/// Alice forgets the devices she knew and claims all of them again; the own account's answer
/// always names them, so a bare one there is an invalid response.
#[test]
fn a_409_naming_no_device_makes_the_next_send_claim_all_devices() {
    let mut alice = device(ALICE, 1, 61);
    let mut bob1 = device(BOB, 1, 62);
    let mut bob2 = device(BOB, 2, 63);
    let answer = bundles(BOB, &mut [&mut bob1]);
    alice.send(BOB, b"one", &[answer]).unwrap().unwrap();
    assert_eq!(contact_devices(&alice.store, &BOB).unwrap(), [1]);
    alice
        .local
        .repair(&mut alice.store, &BOB, &[], false)
        .unwrap();
    assert!(contact_devices(&alice.store, &BOB).unwrap().is_empty());
    assert_eq!(
        alice.local.claims(&alice.store, &BOB).unwrap(),
        [Claim::All]
    );
    // The claim of all devices brings device 2; device 1 keeps its session.
    let answer = bundles(BOB, &mut [&mut bob1, &mut bob2]);
    let retry = alice.send(BOB, b"two", &[answer]).unwrap().unwrap();
    assert_eq!(devices_of(&retry), [1, 2]);
    assert_eq!(text(bob1.receive(&retry)), "two");
    assert_eq!(text(bob2.receive(&retry)), "two");
    let err = alice
        .local
        .repair(&mut alice.store, &ALICE, &[], false)
        .unwrap_err();
    assert!(matches!(err, DeviceError::InvalidResponse(_)), "{err}");
}

/// A typing indicator (ephemeral) to another account whose access key is not known is not
/// made at all (the relay refuses it).
#[test]
fn no_ephemeral_send_to_a_contact_without_its_access_key() {
    let mut alice = device(ALICE, 1, 64);
    let mut bob = device(BOB, 1, 65);
    let answer = bundles(BOB, &mut [&mut bob]);
    alice.send(BOB, b"hello", &[answer]).unwrap().unwrap();
    let cert = alice.local.certificate(&alice.store, NOW).unwrap().unwrap();
    let typing = |alice: &mut Dev| {
        alice
            .local
            .encrypt(
                &mut alice.store,
                &BOB,
                &super::OutgoingPlaintext::new(b"typing").unwrap(),
                Id::from([9; 16]),
                true,
                None,
                &[],
                &cert,
                &mut alice.rng,
            )
            .unwrap()
    };
    assert!(typing(&mut alice).is_none());
    set_contact_access_key(&alice.store, &BOB, &[7; 16]).unwrap();
    let sent = typing(&mut alice).unwrap();
    assert!(sent.is_sealed());
}

#[test]
fn exactly_once_and_tampered_or_replayed_envelopes_change_nothing() {
    let mut alice = device(ALICE, 1, 10);
    let mut bob = device(BOB, 1, 11);
    let answer = bundles(BOB, &mut [&mut bob]);
    let out = alice.send(BOB, b"once", &[answer]).unwrap().unwrap();

    // Tampered: the sealed layer fails; nothing in Bob's store changes (no session, no seen
    // id, the one-time prekey still there).
    let before = bob.rows();
    let mut tampered = queued(&out, 1);
    let mut raw = STANDARD.decode(&tampered.content).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    tampered.content = STANDARD.encode(&raw);
    tampered.message_id = Id::from([0x11; 16]);
    let r = bob
        .local
        .receive(&mut bob.store, &tampered, false, NOW, &mut bob.rng)
        .unwrap();
    assert!(
        matches!(
            r,
            Some(Received::Rejected {
                reason: RejectReason::Tampered,
                ..
            })
        ),
        "{r:?}"
    );
    let mut garbage = queued(&out, 1);
    garbage.content = "!!".into();
    let r = bob
        .local
        .receive(&mut bob.store, &garbage, false, NOW, &mut bob.rng)
        .unwrap();
    assert!(matches!(
        r,
        Some(Received::Rejected {
            reason: RejectReason::Malformed(_),
            ..
        })
    ));
    // An expired certificate is refused too.
    let late = bob
        .local
        .receive(
            &mut bob.store,
            &queued(&out, 1),
            false,
            NOW + 7200,
            &mut bob.rng,
        )
        .unwrap();
    assert!(matches!(
        late,
        Some(Received::Rejected {
            reason: RejectReason::Certificate(_),
            ..
        })
    ));
    assert_eq!(bob.rows(), before);

    // Delivered once; the same envelope again is a duplicate.
    assert_eq!(text(bob.receive(&out)), "once");
    assert!(
        bob.local
            .is_seen(&bob.store, &out.body().message_id.to_hex())
            .unwrap()
    );
    assert_eq!(bob.receive(&out), None);
    // The same bytes under a new message id: the ratchet refuses the replay, nothing changes.
    let before = bob.rows();
    let mut replay = queued(&out, 1);
    replay.message_id = Id::from([0x13; 16]);
    let r = bob
        .local
        .receive(&mut bob.store, &replay, false, NOW, &mut bob.rng)
        .unwrap();
    assert!(
        matches!(
            r,
            Some(Received::Rejected {
                reason: RejectReason::Replayed | RejectReason::Session(_),
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(bob.rows(), before);

    // A tampered ratchet message inside a valid sealed layer: rejected, session untouched,
    // and the next genuine message still decrypts.
    let bob_addr = DeviceAddress::new(BOB, 1);
    let mut message = haven_sdk::session_cipher::encrypt(
        &mut alice.store,
        &bob_addr,
        &haven_sdk::pad(b"tampered").unwrap(),
    )
    .unwrap();
    let last = message.len() - 1;
    message[last] ^= 1;
    let cert = alice.local.certificate(&alice.store, NOW).unwrap().unwrap();
    let sealed = haven_sdk::seal_sender(
        &alice.store.identity_key_pair().unwrap(),
        &cert,
        &bob.store.identity_key_pair().unwrap().public().clone(),
        super::CONTENT_SESSION,
        &message,
        &mut alice.rng,
    )
    .unwrap();
    let before = bob.rows();
    let r = bob
        .local
        .open_envelope(
            &mut bob.store,
            &"14".repeat(16),
            &sealed,
            None,
            true,
            NOW,
            &mut bob.rng,
            |_, _, _, _| -> Result<(), DeviceError> { panic!("not applied") },
        )
        .unwrap();
    assert!(
        matches!(r, super::Opened::Rejected(RejectReason::Tampered)),
        "{r:?}"
    );
    assert_eq!(bob.rows(), before);
    let next = alice.send(BOB, b"next", &[]).unwrap().unwrap();
    assert_eq!(text(bob.receive(&next)), "next");
}

#[test]
fn an_error_of_apply_rolls_the_session_back() {
    let mut alice = device(ALICE, 1, 12);
    let mut bob = device(BOB, 1, 13);
    let answer = bundles(BOB, &mut [&mut bob]);
    let out = alice.send(BOB, b"apply", &[answer]).unwrap().unwrap();
    let content = STANDARD.decode(&out.body().envelopes[0].content).unwrap();
    let id = out.body().message_id.to_hex();
    let before = bob.rows();
    let err = bob
        .local
        .open_envelope(
            &mut bob.store,
            &id,
            &content,
            None,
            true,
            NOW,
            &mut bob.rng,
            |s, _, _, _| -> Result<(), DeviceError> {
                s.put(space::INBOX, b"half", b"written")?;
                Err(DeviceError::Protocol("application refused".into()))
            },
        )
        .unwrap_err();
    assert!(matches!(err, DeviceError::Protocol(_)));
    assert_eq!(bob.rows(), before);
    // It opens afterwards, with the value `apply` returns.
    let opened = bob
        .local
        .open_envelope(
            &mut bob.store,
            &id,
            &content,
            None,
            true,
            NOW,
            &mut bob.rng,
            |_, sender, plain, _| -> Result<usize, DeviceError> {
                assert_eq!(sender.account_id, ALICE);
                Ok(plain.len())
            },
        )
        .unwrap();
    assert!(matches!(opened, super::Opened::Accepted { value: 5, .. }));
}

#[test]
fn identity_changes_are_surfaced_and_accepted() {
    let mut alice = device(ALICE, 1, 14);
    let mut bob = device(BOB, 1, 15);
    let answer = bundles(BOB, &mut [&mut bob]);
    let out = alice.send(BOB, b"before", &[answer]).unwrap().unwrap();
    assert_eq!(text(bob.receive(&out)), "before");
    let old_key = *bob.store.identity_key_pair().unwrap().public();

    // Bob reinstalls: same account and device number, a new identity.
    let mut bob_new = device(BOB, 1, 16);
    let new_key = *bob_new.store.identity_key_pair().unwrap().public();
    assert_ne!(old_key, new_key);

    // Once Alice's session with his device is gone (dropped by a repair, say), sending from
    // his new bundle is refused until she accepts the new key.
    alice
        .store
        .delete(
            Space::SESSION,
            &crate::store::address_key(&DeviceAddress::new(BOB, 1)),
        )
        .unwrap();
    let answer = bundles(BOB, &mut [&mut bob_new]);
    let before = alice.rows();
    let err = alice
        .send(BOB, b"x", std::slice::from_ref(&answer))
        .unwrap_err();
    match err {
        DeviceError::IdentityChanged { account, device } => {
            assert_eq!((account, device), (hex::encode(BOB), 1));
        }
        other => panic!("{other}"),
    }
    assert_eq!(alice.rows(), before);

    // His messages are refused as an identity change, without touching Alice's state.
    save_contact_devices(&bob_new.store, &ALICE, &[1]).unwrap();
    let alice_bundle = bundles(ALICE, &mut [&mut alice]);
    let from_new = bob_new
        .send(ALICE, b"new me", &[alice_bundle])
        .unwrap()
        .unwrap();
    let before = alice.rows();
    let r = alice.receive(&from_new);
    assert!(
        matches!(
            &r,
            Some(Received::Rejected {
                reason: RejectReason::IdentityChanged { device: 1, .. },
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(alice.rows(), before);

    // Accepted: the old session is dropped, the new bundle starts a new one.
    alice
        .local
        .accept_identity(&mut alice.store, &DeviceAddress::new(BOB, 1), &new_key)
        .unwrap();
    assert_eq!(
        alice
            .local
            .peer_identity(&alice.store, &DeviceAddress::new(BOB, 1))
            .unwrap(),
        Some(new_key)
    );
    assert_eq!(
        alice.local.claims(&alice.store, &BOB).unwrap(),
        [Claim::Device(1)]
    );
    let out = alice.send(BOB, b"after", &[answer]).unwrap().unwrap();
    assert_eq!(text(bob_new.receive(&out)), "after");
}

#[test]
fn copy_to_the_own_other_devices() {
    let mut alice1 = device(ALICE, 1, 17);
    let mut alice2 = device(ALICE, 2, 18);
    // No other own device known: re-read the list, at most once a minute.
    let due = |d: &Dev, last, now| {
        d.local
            .own_devices_due(&d.store, &ALICE, last, now)
            .unwrap()
    };
    assert!(due(&alice1, None, NOW));
    assert!(!due(&alice1, Some(NOW), NOW + 59));
    assert!(due(&alice1, Some(NOW), NOW + 60));
    assert!(
        !alice1
            .local
            .own_devices_due(&alice1.store, &BOB, None, NOW)
            .unwrap()
    );
    // Alone: nothing to claim, nothing to send.
    assert!(
        alice1
            .local
            .claims(&alice1.store, &ALICE)
            .unwrap()
            .is_empty()
    );
    assert!(alice1.send(ALICE, b"sync", &[]).unwrap().is_none());

    let list = |numbers: &[u32]| DeviceList {
        devices: numbers
            .iter()
            .map(|&n| DeviceBody {
                device_id: Id::from([n as u8; 16]),
                device_number: n,
                identity_key: String::new(),
                name: None,
                created_at: 0,
                current: n == 1,
            })
            .collect(),
    };
    alice1
        .local
        .set_own_devices(&alice1.store, &list(&[1]))
        .unwrap();
    assert!(alice1.send(ALICE, b"sync", &[]).unwrap().is_none());
    alice1
        .local
        .set_own_devices(&alice1.store, &list(&[1, 2]))
        .unwrap();
    assert!(!due(&alice1, None, NOW));
    // The sending device is skipped.
    assert_eq!(
        alice1.local.claims(&alice1.store, &ALICE).unwrap(),
        [Claim::Device(2)]
    );
    let answer = bundles(ALICE, &mut [&mut alice2]);
    let out = alice1.send(ALICE, b"sync", &[answer]).unwrap().unwrap();
    assert_eq!(devices_of(&out), [2]);
    assert_eq!(text(alice2.receive(&out)), "sync");
    // Device 2 learned device 1 from it and copies back without a claim.
    assert!(
        alice2
            .local
            .claims(&alice2.store, &ALICE)
            .unwrap()
            .is_empty()
    );
    let back = alice2.send(ALICE, b"sync back", &[]).unwrap().unwrap();
    assert_eq!(devices_of(&back), [1]);
    assert_eq!(text(alice1.receive(&back)), "sync back");

    // An envelope claiming to come from the receiving device itself is refused, before
    // anything is decrypted: a twin with device 1's address seals one to device 1.
    let mut twin = device(ALICE, 1, 19);
    let twin_cert = twin.local.certificate(&twin.store, NOW).unwrap().unwrap();
    let target = bundles(ALICE, &mut [&mut alice1]).bundles.remove(0);
    let bundle =
        PreKeyBundle::from_bytes(&STANDARD.decode(target.bundle.unwrap()).unwrap()).unwrap();
    let me = alice1.local.address();
    let message = haven_sdk::session_cipher::initiate(
        &mut twin.store,
        &me,
        &bundle,
        &haven_sdk::pad(b"me?").unwrap(),
        &mut twin.rng,
    )
    .unwrap();
    let sealed = haven_sdk::seal_sender(
        &twin.store.identity_key_pair().unwrap(),
        &twin_cert,
        &bundle.identity_key,
        super::CONTENT_SESSION,
        &message,
        &mut twin.rng,
    )
    .unwrap();
    let before = alice1.rows();
    let r = alice1
        .local
        .open_envelope(
            &mut alice1.store,
            &"22".repeat(16),
            &sealed,
            None,
            true,
            NOW,
            &mut alice1.rng,
            |_, _, _, _| -> Result<(), DeviceError> { panic!("not applied") },
        )
        .unwrap();
    assert!(
        matches!(r, super::Opened::Rejected(RejectReason::Certificate(_))),
        "{r:?}"
    );
    assert_eq!(alice1.rows(), before);
}

#[test]
fn certificates_and_relay_key_are_checked() {
    let alice = device(ALICE, 1, 20);
    let bob = device(BOB, 1, 21);
    // Cached while valid for more than five minutes.
    assert!(
        alice
            .local
            .certificate(&alice.store, NOW)
            .unwrap()
            .is_some()
    );
    assert!(
        alice
            .local
            .certificate(&alice.store, NOW + 3600 - 300)
            .unwrap()
            .is_none()
    );
    // A certificate for another device, or signed by another key, is refused.
    let other = SenderCertificate::issue(
        &relay_key(),
        bob.local.address(),
        *bob.store.identity_key_pair().unwrap().public(),
        NOW + 3600,
    );
    let wrong_signer = SenderCertificate::issue(
        &SigningKey::from_bytes(&[9; 32]),
        alice.local.address(),
        *alice.store.identity_key_pair().unwrap().public(),
        NOW + 3600,
    );
    for cert in [other, wrong_signer] {
        let answer = CertificateResponse {
            certificate: STANDARD.encode(cert.to_bytes()),
            expires: cert.expires,
        };
        let err = alice
            .local
            .accept_certificate(&alice.store, &answer, NOW)
            .unwrap_err();
        assert!(matches!(err, DeviceError::InvalidResponse(_)), "{err}");
    }
    // The pinned relay key does not change.
    let key = |k: &SigningKey| CertificateKeyResponse {
        public_key: STANDARD.encode(k.verifying_key().as_bytes()),
    };
    assert!(pin_relay_key(&alice.store, &key(&relay_key())).is_ok());
    let err = pin_relay_key(&alice.store, &key(&SigningKey::from_bytes(&[9; 32]))).unwrap_err();
    assert!(matches!(err, DeviceError::InvalidResponse(_)));
    let err = pin_relay_key(
        &alice.store,
        &CertificateKeyResponse {
            public_key: "AAAA".into(),
        },
    )
    .unwrap_err();
    assert!(matches!(err, DeviceError::InvalidResponse(_)));
    // Tokens for another account or device are refused; the refresh token rotates.
    let err =
        StoredSession::store(&alice.store, Id::from(BOB), Id::from([1; 16]), 1, "r").unwrap_err();
    assert!(matches!(err, DeviceError::InvalidResponse(_)));
    let err =
        StoredSession::store(&alice.store, Id::from(ALICE), Id::from([2; 16]), 1, "r").unwrap_err();
    assert!(matches!(err, DeviceError::InvalidResponse(_)));
    StoredSession::store(
        &alice.store,
        Id::from(ALICE),
        Id::from([1; 16]),
        1,
        "refresh-2",
    )
    .unwrap();
    assert_eq!(
        StoredSession::refresh_token(&alice.store).unwrap().as_str(),
        "refresh-2"
    );
    let session = StoredSession::load(&alice.store).unwrap().unwrap();
    assert_eq!(session.account, Id::from(ALICE));
    assert!(!format!("{session:?}").contains("refresh"));
}

#[test]
fn key_uploads_replenish_decision_and_rotation() {
    let mut d = device(ALICE, 1, 22);
    // The first upload carries the base keys and a batch.
    let first = &d.upload;
    assert_eq!(first.registration_id, Some(101));
    assert!(first.signed_prekey.is_some());
    let lr = first.last_resort_kem_prekey.as_ref().unwrap();
    assert_eq!(lr.key_id, 0x8000_0001);
    assert_eq!(first.one_time_prekeys.len(), PREKEY_BATCH as usize);
    assert_eq!(first.one_time_prekeys[0].key_id, 1);
    assert_eq!(first.one_time_kem_prekeys[49].key_id, 50);

    // Replenish only when the relay reports low stock.
    let counts = |low| KeyCountsResponse {
        one_time_prekeys: 3,
        one_time_kem_prekeys: 3,
        has_base_keys: true,
        low,
    };
    assert!(
        keys::replenish(&mut d.store, &counts(false), NOW, &mut d.rng)
            .unwrap()
            .is_none()
    );
    let batch = keys::replenish(&mut d.store, &counts(true), NOW, &mut d.rng)
        .unwrap()
        .unwrap();
    assert!(batch.signed_prekey.is_none() && batch.registration_id.is_none());
    assert_eq!(batch.one_time_prekeys[0].key_id, 51);
    assert!(d.store.one_time_prekey(51).unwrap().is_some());
    // A later upload is a batch only.
    let later = keys::upload(&mut d.store, NOW, &mut d.rng).unwrap();
    assert!(later.signed_prekey.is_none());
    assert_eq!(later.one_time_kem_prekeys[0].key_id, 101);

    // Rotation: nothing due at first; then a new pair, stored before the upload.
    let weekly = SignedPreKeyPolicy::default();
    let none = keys::rotate(&mut d.store, &weekly, NOW, &mut d.rng).unwrap();
    assert_eq!(none, keys::Rotation::default());
    let due = SignedPreKeyPolicy {
        rotate_after: 0,
        keep_old_for: 3600,
    };
    let r = keys::rotate(&mut d.store, &due, NOW + 10, &mut d.rng).unwrap();
    let upload = r.upload.unwrap();
    assert!(r.retire.is_empty());
    assert_eq!(upload.signed_prekey.as_ref().unwrap().key_id, 2);
    assert_eq!(
        upload.last_resort_kem_prekey.as_ref().unwrap().key_id,
        0x8000_0002
    );
    assert!(upload.one_time_prekeys.is_empty());
    assert!(d.store.signed_prekey(2).unwrap().is_some());
    // Retiring: the old signed prekey goes with its last-resort KEM key.
    let retire = SignedPreKeyPolicy {
        rotate_after: 7 * 86_400,
        keep_old_for: 0,
    };
    let r = keys::rotate(&mut d.store, &retire, NOW + 20, &mut d.rng).unwrap();
    assert!(r.upload.is_none());
    assert_eq!(r.retire, [1]);
    keys::retire(&mut d.store, &r.retire).unwrap();
    assert!(d.store.signed_prekey(1).unwrap().is_none());
    assert!(d.store.kem_prekey(0x8000_0001).unwrap().is_none());
    assert!(d.store.kem_prekey(0x8000_0002).unwrap().is_some());
}

#[test]
fn seen_ids_are_pruned_in_batches() {
    let mut alice = device(ALICE, 1, 23);
    let mut bob = device(BOB, 1, 24);
    let s = &bob.store;
    for (id, n) in [("old", 0u64), ("kept", 1), ("recent", 9_999)] {
        s.put(space::SEEN, id.as_bytes(), &n.to_be_bytes()).unwrap();
    }
    s.put(space::META, b"seen_n", &9_999u64.to_be_bytes())
        .unwrap();
    let answer = bundles(BOB, &mut [&mut bob]);
    let deliver = |alice: &mut Dev, bob: &mut Dev, answer: &[BundlesResponse]| {
        let out = alice.send(BOB, b"m", answer).unwrap().unwrap();
        assert_eq!(text(bob.receive(&out)), "m");
        out.body().message_id.to_hex()
    };
    // The 10_000th id: below the cap, nothing pruned.
    let first = deliver(&mut alice, &mut bob, &[answer]);
    assert_eq!(bob.store.entries(space::SEEN).unwrap().len(), 4);
    // The 10_001st: everything at or below counter 0 goes.
    let second = deliver(&mut alice, &mut bob, &[]);
    let mut left: Vec<Vec<u8>> = bob
        .store
        .entries(space::SEEN)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    left.sort();
    let mut expected = vec![
        first.into_bytes(),
        second.into_bytes(),
        b"kept".to_vec(),
        b"recent".to_vec(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    // Not pruned again until SEEN_PRUNE_EVERY more.
    bob.store
        .put(space::SEEN, b"old", &0u64.to_be_bytes())
        .unwrap();
    deliver(&mut alice, &mut bob, &[]);
    assert!(bob.store.get(space::SEEN, b"old").unwrap().is_some());
}

// ------------------------------------------------------------------ a relay that lies (§15)

/// Alice's first list (this device alone, a fresh account key), published and accepted.
fn publish_first(d: &mut Dev) -> haven_sdk::account::DeviceList {
    let list = d.local.first_own_list(&d.store, NOW, &mut d.rng).unwrap();
    d.local
        .own_list_published(&mut d.store, &list, NOW)
        .unwrap();
    list
}

fn reply(list: &haven_sdk::account::DeviceList) -> haven_protocol::api::identity::DeviceListReply {
    haven_protocol::api::identity::DeviceListReply {
        list: STANDARD.encode(list.to_bytes()),
        version: list.version(),
    }
}

fn bundles_of(account: [u8; 16], devices: &mut [&mut Dev]) -> BundlesResponse {
    BundlesResponse {
        account_id: Id::from(account),
        bundles: devices.iter_mut().map(|d| d.bundle()).collect(),
    }
}

/// Bob holds Alice's signed list (device 1) and a session with her.
fn bob_knows_alice() -> (Dev, Dev, haven_sdk::account::DeviceList) {
    let mut alice = listed_device(ALICE, 1, 61);
    let mut bob = listed_device(BOB, 1, 62);
    let list = publish_first(&mut alice);
    let bob_list = publish_first(&mut bob);
    let update = bob
        .local
        .accept_device_list(&mut bob.store, &ALICE, ListAnswer::List(&reply(&list)), NOW)
        .unwrap();
    assert!(update.first && update.added == [1]);
    assert!(bob.local.claims(&bob.store, &ALICE).unwrap() == [Claim::Device(1)]);
    let bundles = bundles_of(ALICE, &mut [&mut alice]);
    let out = bob.send(ALICE, b"hello", &[bundles]).unwrap().unwrap();
    // Alice does not know Bob's list yet: she fetches it, then the message opens.
    assert!(
        matches!(alice.receive(&out), Some(Received::NeedDeviceList { account }) if account == BOB)
    );
    alice
        .local
        .accept_device_list(
            &mut alice.store,
            &BOB,
            ListAnswer::List(&reply(&bob_list)),
            NOW,
        )
        .unwrap();
    assert!(matches!(
        alice.receive(&out),
        Some(Received::Message { .. })
    ));
    (alice, bob, list)
}

#[test]
fn hostile_relay_injects_a_device_into_a_409_and_it_gets_nothing() {
    let (_alice, mut bob, list) = bob_knows_alice();
    let ghost = DeviceMismatch {
        account_id: Id::from(ALICE),
        missing_devices: vec![99],
        extra_devices: Vec::new(),
        removed_devices: Vec::new(),
    };
    let before = bob.rows();
    // First the device may have been linked since: fetch the list again.
    assert!(matches!(
        bob.local
            .repair(&mut bob.store, &ALICE, std::slice::from_ref(&ghost), false),
        Err(DeviceError::NeedDeviceList { .. })
    ));
    bob.local
        .accept_device_list(&mut bob.store, &ALICE, ListAnswer::List(&reply(&list)), NOW)
        .unwrap();
    // The signed list still does not name it: refused, nothing changed.
    assert!(matches!(
        bob.local.repair(&mut bob.store, &ALICE, &[ghost], true),
        Err(DeviceError::UnlistedDevice { device: 99, .. })
    ));
    assert_eq!(bob.rows(), before);
    assert_eq!(contact_devices(&bob.store, &ALICE).unwrap(), [1]);
}

#[test]
fn hostile_relay_forged_bundle_and_ghost_device_bundle_are_refused() {
    let mut alice = listed_device(ALICE, 1, 71);
    let mut bob = listed_device(BOB, 1, 72);
    let list = publish_first(&mut alice);
    bob.local
        .accept_device_list(&mut bob.store, &ALICE, ListAnswer::List(&reply(&list)), NOW)
        .unwrap();
    // A bundle for device 1 with a key the relay made (a valid, self-signed bundle).
    let mut forger = listed_device(ALICE, 1, 73);
    let forged = bundles_of(ALICE, &mut [&mut forger]);
    let before = bob.rows();
    assert!(matches!(
        bob.send(ALICE, b"for alice only", &[forged]),
        Err(DeviceError::UnlistedDevice { device: 1, .. })
    ));
    // A device the list does not name at all, as a password login would add it.
    let mut ghost = listed_device(ALICE, 2, 74);
    let both = bundles_of(ALICE, &mut [&mut alice, &mut ghost]);
    assert!(matches!(
        bob.send(ALICE, b"for alice only", &[both]),
        Err(DeviceError::UnlistedDevice { device: 2, .. })
    ));
    assert_eq!(bob.rows(), before, "nothing kept from refused sends");
}

#[test]
fn hostile_relay_certificate_for_a_key_it_chose_is_refused() {
    let (mut alice, mut bob, _) = bob_knows_alice();
    // The relay issues a certificate for (Alice, device 1) with its own identity key, and for
    // a device 7 of Alice that no list names.
    for (number, seed) in [(1, 81), (7, 82)] {
        let mut impostor = listed_device(ALICE, number, seed);
        impostor
            .local
            .accept_device_list(&mut impostor.store, &BOB, ListAnswer::NotPublished, NOW)
            .unwrap();
        let bundles = bundles_of(BOB, &mut [&mut bob]);
        let out = impostor
            .send(BOB, b"I am alice", &[bundles])
            .unwrap()
            .unwrap();
        let q = queued(&out, 1);
        let before = bob.rows();
        let first = bob
            .local
            .receive(&mut bob.store, &q, false, NOW, &mut bob.rng)
            .unwrap();
        assert!(matches!(first, Some(Received::NeedDeviceList { account }) if account == ALICE));
        let again = bob
            .local
            .receive(&mut bob.store, &q, true, NOW, &mut bob.rng)
            .unwrap();
        assert!(
            matches!(
                again,
                Some(Received::Rejected {
                    reason: RejectReason::UnlistedDevice { device, .. },
                    ..
                }) if device == number
            ),
            "{again:?}"
        );
        assert_eq!(bob.rows(), before);
    }
    // Alice's real device still gets through.
    let bundles = bundles_of(BOB, &mut []);
    let out = alice
        .send(BOB, b"really alice", &[bundles])
        .unwrap()
        .unwrap();
    assert!(matches!(bob.receive(&out), Some(Received::Message { .. })));
}

#[test]
fn hostile_relay_rollback_fork_withdrawal_and_key_change_are_refused() {
    let mut alice = listed_device(ALICE, 1, 91);
    let mut bob = listed_device(BOB, 1, 92);
    let v1 = publish_first(&mut alice);
    let alice2 = listed_device(ALICE, 2, 93);
    let key2 = *alice2.store.identity_key_pair().unwrap().public();
    let v2 = alice
        .local
        .sign_own_list(&alice.store, &[(2, key2)], &[], NOW)
        .unwrap();
    alice
        .local
        .own_list_published(&mut alice.store, &v2, NOW)
        .unwrap();
    let accept = |bob: &mut Dev, l: &haven_sdk::account::DeviceList| {
        bob.local
            .accept_device_list(&mut bob.store, &ALICE, ListAnswer::List(&reply(l)), NOW)
    };
    accept(&mut bob, &v2).unwrap();
    let before = bob.rows();
    // Rolled back to the list without device 2 (or, for a removal, with a removed device).
    assert!(matches!(
        accept(&mut bob, &v1),
        Err(DeviceError::DeviceList {
            reason: ListRefusal::Rollback {
                offered: 1,
                seen: 2
            },
            ..
        })
    ));
    // Another list with version 2: only the account key could sign it; a fork.
    let key = super::directory::account_key_pair(&alice.store)
        .unwrap()
        .unwrap();
    let fork = key
        .sign_device_list(
            ALICE,
            2,
            NOW + 1,
            &[(1, *alice.store.identity_key_pair().unwrap().public())],
        )
        .unwrap();
    assert!(matches!(
        accept(&mut bob, &fork),
        Err(DeviceError::DeviceList {
            reason: ListRefusal::Equivocation { version: 2 },
            ..
        })
    ));
    // "No list" after one was seen.
    assert!(matches!(
        bob.local
            .accept_device_list(&mut bob.store, &ALICE, ListAnswer::NotPublished, NOW),
        Err(DeviceError::DeviceList {
            reason: ListRefusal::Withdrawn,
            ..
        })
    ));
    // A list the relay signed with its own account key: the loud event, held until accepted.
    let relay_key = haven_sdk::account::AccountIdentityKeyPair::generate(&mut bob.rng);
    let swapped = relay_key
        .sign_device_list(
            ALICE,
            3,
            NOW,
            &[(1, *alice.store.identity_key_pair().unwrap().public())],
        )
        .unwrap();
    assert!(matches!(
        accept(&mut bob, &swapped),
        Err(DeviceError::AccountKeyChanged { .. })
    ));
    assert!(matches!(
        bob.local.claims(&bob.store, &ALICE),
        Err(DeviceError::AccountKeyChanged { .. })
    ));
    // Sessions and trusted keys are as before (the pending list is kept aside).
    let rows_now: Vec<_> = bob.rows();
    assert_eq!(rows_now, before);
    // Accepting it (after comparing safety numbers) starts over with the new key.
    let old = bob.local.account_safety_number(&bob.store, &ALICE).unwrap();
    assert!(old.is_none(), "bob holds no account key of his own here");
    bob.local
        .accept_account_key(&mut bob.store, &ALICE, NOW)
        .unwrap();
    assert_eq!(
        bob.local.claims(&bob.store, &ALICE).unwrap(),
        [Claim::Device(1)]
    );
}

#[test]
fn a_first_message_whose_identity_is_not_the_certificates_is_refused() {
    let mut eve = device(ALICE, 1, 101);
    let mut bob = device(BOB, 1, 102);
    // Eve starts a session with her device's identity key but seals under a certificate for
    // another identity key she also holds.
    let bundles = BundlesResponse {
        account_id: Id::from(BOB),
        bundles: vec![bob.bundle()],
    };
    let bundle = super::send::verify_bundles(&bundles, &BOB)
        .unwrap()
        .remove(0);
    let padded = haven_sdk::pad(b"who am I").unwrap();
    let message = haven_sdk::session_cipher::initiate(
        &mut eve.store,
        &DeviceAddress::new(BOB, 1),
        &bundle,
        &padded,
        &mut eve.rng,
    )
    .unwrap();
    let other = IdentityKeyPair::generate(&mut eve.rng);
    let cert = SenderCertificate::issue(
        &relay_key(),
        DeviceAddress::new(ALICE, 1),
        *other.public(),
        NOW + 3600,
    );
    let sealed = haven_sdk::sealed_sender::seal_sender(
        &other,
        &cert,
        bob.store.identity_key_pair().unwrap().public(),
        super::CONTENT_SESSION,
        &message,
        &mut eve.rng,
    )
    .unwrap();
    let q = QueuedBody {
        message_id: Id::from([0x42; 16]),
        seq: 1,
        source: None,
        content: STANDARD.encode(sealed),
        payload: None,
        received_at: NOW as i64,
        expires_at: NOW as i64 + 86_400,
        franking: None,
    };
    let before = bob.rows();
    let got = bob
        .local
        .receive(&mut bob.store, &q, false, NOW, &mut bob.rng)
        .unwrap();
    assert!(
        matches!(
            got,
            Some(Received::Rejected {
                reason: RejectReason::Certificate(_),
                ..
            })
        ),
        "{got:?}"
    );
    assert_eq!(bob.rows(), before);
}

#[test]
fn a_verified_contacts_new_device_blocks_sends_until_confirmed() {
    use super::Verification;
    let mut alice = listed_device(ALICE, 1, 111);
    let mut bob = listed_device(BOB, 1, 112);
    let v1 = publish_first(&mut alice);
    let accept = |bob: &mut Dev, l: &haven_sdk::account::DeviceList| {
        bob.local
            .accept_device_list(&mut bob.store, &ALICE, ListAnswer::List(&reply(l)), NOW)
            .unwrap()
    };
    accept(&mut bob, &v1);
    assert_eq!(
        bob.local.verification(&bob.store, &ALICE).unwrap(),
        Verification::NotVerified
    );
    bob.local.mark_verified(&bob.store, &ALICE).unwrap();
    assert_eq!(
        bob.local.verification(&bob.store, &ALICE).unwrap(),
        Verification::Verified
    );
    // Alice links a second device: the news reaches Bob, and sends wait for his confirmation.
    let alice2 = listed_device(ALICE, 2, 113);
    let key2 = *alice2.store.identity_key_pair().unwrap().public();
    let v2 = alice
        .local
        .sign_own_list(&alice.store, &[(2, key2)], &[], NOW)
        .unwrap();
    alice
        .local
        .own_list_published(&mut alice.store, &v2, NOW)
        .unwrap();
    let update = accept(&mut bob, &v2);
    assert!(update.is_news() && update.added == [2]);
    assert_eq!(
        bob.local.verification(&bob.store, &ALICE).unwrap(),
        Verification::NewDevices(vec![2])
    );
    assert!(matches!(
        bob.local.claims(&bob.store, &ALICE),
        Err(DeviceError::UnconfirmedDevices { ref devices, .. }) if devices == &[2]
    ));
    bob.local.confirm_devices(&bob.store, &ALICE).unwrap();
    assert_eq!(
        bob.local.claims(&bob.store, &ALICE).unwrap(),
        [Claim::Device(1), Claim::Device(2)]
    );
    // An unverified contact is never blocked; confirming one is an error.
    bob.local.clear_verified(&bob.store, &ALICE).unwrap();
    assert!(matches!(
        bob.local.confirm_devices(&bob.store, &ALICE),
        Err(DeviceError::InvalidArgument(_))
    ));
}

// ------------------------------------------------------------------ franking (§16)

const FRANKING_SECRET: [u8; 32] = [0xF0; 32];
const STAMP: [u8; 32] = [0x57; 32];

fn franking_secret() -> FrankingSecret {
    FrankingSecret::from_bytes(FRANKING_SECRET)
}

/// What `GET /v1/franking/key` answers.
fn franking_answer() -> FrankingKeyResponse {
    FrankingKeyResponse {
        franking_key: STANDARD.encode(franking_secret().public().encode()),
        previous: Vec::new(),
    }
}

/// The relay's delivery of `out`'s envelope to `device`: the commitment the sender sent, the
/// relay's stamp over it for this mailbox, `seq` and `received_at`.
fn delivered(out: &OutgoingSend, account: [u8; 16], device: u32) -> QueuedBody {
    let mut q = queued(out, device);
    q.seq = 77;
    q.received_at = NOW as i64;
    let c = out
        .body()
        .envelopes
        .iter()
        .find(|e| e.device_number == device)
        .and_then(|e| e.franking_commitment.clone());
    q.franking = c.map(|c| {
        let commitment: [u8; 32] = STANDARD.decode(&c).unwrap().try_into().unwrap();
        let stamp = delivery_stamp(
            &StampKey::from_bytes(STAMP),
            &commitment,
            &Destination::Device { account, device },
            77,
            NOW,
        );
        FrankingBody {
            commitment: c,
            stamp: STANDARD.encode(stamp),
        }
    });
    q
}

/// Opens `q` on `dev`, returning the content and the report material `apply` was given.
fn open_franked(dev: &mut Dev, q: &QueuedBody) -> super::Opened<Option<Vec<u8>>> {
    let delivered = DeliveredFranking::from_queued(q).unwrap();
    let content = STANDARD.decode(&q.content).unwrap();
    dev.local
        .open_envelope(
            &mut dev.store,
            &q.message_id.to_hex(),
            &content,
            delivered.as_ref(),
            true,
            NOW,
            &mut dev.rng,
            |_, _, _, material| -> Result<_, DeviceError> {
                Ok(material.map(|m| m.as_bytes().to_vec()))
            },
        )
        .unwrap()
}

#[test]
fn franked_sends_open_their_commitment_and_the_report_verifies() {
    let mut alice = device(ALICE, 1, 40);
    let mut bob1 = device(BOB, 1, 41);
    let mut bob2 = device(BOB, 2, 42);
    // No key asked for yet: due; a 404 keeps it unfranked and asks again after an hour.
    assert!(alice.local.franking_key_due(&alice.store, NOW).unwrap());
    assert_eq!(
        alice
            .local
            .accept_franking_key(&alice.store, None, NOW)
            .unwrap(),
        None
    );
    assert!(
        !alice
            .local
            .franking_key_due(&alice.store, NOW + 60)
            .unwrap()
    );
    assert!(
        alice
            .local
            .franking_key_due(&alice.store, NOW + 3600)
            .unwrap()
    );
    let key = alice
        .local
        .accept_franking_key(&alice.store, Some(&franking_answer()), NOW)
        .unwrap();
    assert_eq!(key, Some(franking_secret().public()));
    // Once offered, a later 404 does not take it away.
    let kept = alice
        .local
        .accept_franking_key(&alice.store, None, NOW + 90_000)
        .unwrap();
    assert_eq!(kept, key);
    assert!(
        !alice
            .local
            .franking_key_due(&alice.store, NOW + 90_001)
            .unwrap()
    );
    // Bob knows the key too (the recipient's material names it).
    bob1.local
        .accept_franking_key(&bob1.store, Some(&franking_answer()), NOW)
        .unwrap();

    let answer = bundles(BOB, &mut [&mut bob1, &mut bob2]);
    let out = alice
        .send(BOB, b"franked hello", &[answer])
        .unwrap()
        .unwrap();
    // A commitment per envelope, each different (a fresh fk per envelope).
    let commitments: Vec<_> = out
        .body()
        .envelopes
        .iter()
        .map(|e| e.franking_commitment.clone().unwrap())
        .collect();
    assert_eq!(commitments.len(), 2);
    assert_ne!(commitments[0], commitments[1]);

    let q = delivered(&out, BOB, 1);
    let super::Opened::Accepted {
        plaintext, value, ..
    } = open_franked(&mut bob1, &q)
    else {
        panic!("not accepted");
    };
    // The application sees the content, not the opening.
    assert_eq!(plaintext, b"franked hello");
    let report = Report::decode(&value.unwrap()).unwrap();
    assert_eq!(report.sender_account, ALICE);
    assert_eq!(report.sender_device, 1);
    assert_eq!(
        report.destination,
        Destination::Device {
            account: BOB,
            device: 1
        }
    );
    assert_eq!((report.seq, report.time), (77, NOW));
    assert_eq!(report.content, b"franked hello");
    let alice_ik = alice.store.identity_key_pair().unwrap().public().to_bytes();
    verify_report(
        &report,
        &franking_secret(),
        &StampKey::from_bytes(STAMP),
        &alice_ik,
    )
    .unwrap();

    // Bob's second device knew no key on receipt: its material gets the current one at report
    // time, and verifies the same.
    let q2 = delivered(&out, BOB, 2);
    let super::Opened::Accepted { value, .. } = open_franked(&mut bob2, &q2) else {
        panic!("not accepted");
    };
    let material = super::ReportMaterial::from_bytes(&value.unwrap()).unwrap();
    assert!(!material.has_franking_key());
    assert_eq!(
        material.report_body(None, NOW).unwrap_err(),
        super::ReportError::Unsupported
    );
    let body = material
        .report_body(Some(&franking_secret().public()), NOW)
        .unwrap();
    verify_report(
        &Report::decode(&body).unwrap(),
        &franking_secret(),
        &StampKey::from_bytes(STAMP),
        &alice_ik,
    )
    .unwrap();
    assert_eq!(
        material
            .report_body(
                Some(&franking_secret().public()),
                NOW + super::REPORT_WINDOW
            )
            .unwrap_err(),
        super::ReportError::Expired
    );
    assert!(!format!("{material:?}").contains("franked"));

    // Ephemeral sends are never franked (and go to another account only with its access key).
    set_contact_access_key(&alice.store, &BOB, &[7; 16]).unwrap();
    let cert = alice.local.certificate(&alice.store, NOW).unwrap().unwrap();
    let typing = alice
        .local
        .encrypt(
            &mut alice.store,
            &BOB,
            &super::OutgoingPlaintext::new(b"typing").unwrap(),
            Id::from([9; 16]),
            true,
            key.as_ref(),
            &[],
            &cert,
            &mut alice.rng,
        )
        .unwrap()
        .unwrap();
    assert!(
        typing
            .body()
            .envelopes
            .iter()
            .all(|e| e.franking_commitment.is_none())
    );
}

#[test]
fn a_tampered_or_missing_commitment_is_refused_and_changes_nothing() {
    let mut alice = device(ALICE, 1, 43);
    let mut bob = device(BOB, 1, 44);
    alice
        .local
        .accept_franking_key(&alice.store, Some(&franking_answer()), NOW)
        .unwrap();
    let answer = bundles(BOB, &mut [&mut bob]);
    let out = alice.send(BOB, b"evade me", &[answer]).unwrap().unwrap();
    let good = delivered(&out, BOB, 1);

    // A commitment with one bit changed.
    let mut tampered = good.clone();
    let f = tampered.franking.as_mut().unwrap();
    let mut c = STANDARD.decode(&f.commitment).unwrap();
    c[0] ^= 1;
    f.commitment = STANDARD.encode(c);
    // The opening delivered without its commitment.
    let mut missing = good.clone();
    missing.franking = None;
    for q in [&tampered, &missing] {
        let before = bob.rows();
        let got = bob
            .local
            .receive(&mut bob.store, q, false, NOW, &mut bob.rng)
            .unwrap();
        assert!(
            matches!(
                got,
                Some(Received::Rejected {
                    reason: RejectReason::FrankingMismatch,
                    ..
                })
            ),
            "{got:?}"
        );
        assert_eq!(bob.rows(), before);
    }
    // A commitment that is not base64 of 32 bytes is malformed.
    let mut bad = good.clone();
    bad.franking.as_mut().unwrap().stamp = "AAAA".into();
    assert!(matches!(
        bob.local
            .receive(&mut bob.store, &bad, false, NOW, &mut bob.rng)
            .unwrap(),
        Some(Received::Rejected {
            reason: RejectReason::Malformed(_),
            ..
        })
    ));
    // The genuine delivery opens.
    assert_eq!(text(bob.receive_queued(&good)), "evade me");

    // A commitment delivered with a bare (unfranked) content is refused too, while a bare
    // content without one is accepted (transition, §16.9).
    let plain = bob.send(ALICE, b"old client", &[]).unwrap().unwrap();
    assert!(plain.body().envelopes[0].franking_commitment.is_none());
    let mut forged = queued(&plain, 1);
    forged.franking = good.franking.clone();
    let before = alice.rows();
    assert!(matches!(
        alice
            .local
            .receive(&mut alice.store, &forged, false, NOW, &mut alice.rng)
            .unwrap(),
        Some(Received::Rejected {
            reason: RejectReason::FrankingMismatch,
            ..
        })
    ));
    assert_eq!(alice.rows(), before);
    assert_eq!(text(alice.receive(&plain)), "old client");
}
