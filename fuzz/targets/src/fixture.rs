//! Fixed keys and states the targets decrypt under, built once per process from a seeded RNG
//! (the same every run, so a crash input reproduces). Everything here is a test identity.

use std::sync::OnceLock;

use ed25519_dalek::{SigningKey, VerifyingKey};
use haven_sdk::{
    AttachmentEncryptor, AttachmentKey, DiaryKeys, DistributionId, GroupSenderSession,
    IdentityKeyPair, IdentityStore, InMemoryProtocolStore, KdfParams, KemPreKey, OneTimePreKey,
    PreKeyBundle, PreKeyStore, SenderCertificate, SenderKeyRecord, SessionRecord, SessionStore,
    SignedPreKey,
    diary::entry::{Entry, SealedEntry},
    prekeys::KemPreKeyKind,
    ratchet::message::{RatchetMessage, SessionMessage},
    sealed_sender::SealedSenderError,
    store::DeviceAddress,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

/// The time every target runs at (Unix seconds).
pub const NOW: u64 = 1_800_000_000;
/// The diary collection the diary target's items belong to.
pub const COLLECTION: [u8; 16] = [0xC0; 16];
/// The diary item the diary target decrypts.
pub const ITEM: [u8; 16] = [0x17; 16];

/// The deterministic RNG of the targets.
#[must_use]
pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([42; 32])
}

fn build_failed(what: &str) -> ! {
    panic!("fuzz fixture: {what} failed")
}

/// Two devices with an established session: the initiator sent a prekey message, the
/// responder answered, and the initiator has one more message the responder has not seen.
pub struct Sessions {
    /// The initiator's address.
    pub initiator_address: DeviceAddress,
    initiator_identity: haven_sdk::IdentityKey,
    responder_pair: Vec<u8>,
    responder_registration: u32,
    signed: Vec<u8>,
    kem: Vec<u8>,
    one_time: Vec<u8>,
    responder_record: Vec<u8>,
    next: Option<RatchetMessage>,
    /// Real messages of this exchange (corpus seeds).
    pub messages: Vec<Vec<u8>>,
}

impl Sessions {
    fn build() -> Self {
        let mut rng = rng();
        let alice_addr = DeviceAddress::new([0xA1; 16], 1);
        let bob_addr = DeviceAddress::new([0xB0; 16], 2);
        let alice_pair = IdentityKeyPair::generate(&mut rng);
        let bob_pair = IdentityKeyPair::generate(&mut rng);
        let initiator_identity = *alice_pair.public();
        let responder_pair = bob_pair.to_bytes().to_vec();
        let mut alice = InMemoryProtocolStore::new(alice_pair, 11);
        let signed = SignedPreKey::generate(&bob_pair, 1, NOW, &mut rng);
        let one_time = OneTimePreKey::generate(7, &mut rng);
        let spare = OneTimePreKey::generate(8, &mut rng);
        let kem = KemPreKey::generate(&bob_pair, 3, KemPreKeyKind::LastResort, NOW, &mut rng);
        let bundle = PreKeyBundle::new(*bob_pair.public(), 22, 2, &signed, Some(&one_time), &kem);
        let saved = (
            signed.to_bytes().to_vec(),
            kem.to_bytes().to_vec(),
            spare.to_bytes().to_vec(),
        );
        let mut bob = InMemoryProtocolStore::new(bob_pair, 22);
        let stored = bob
            .save_signed_prekey(signed)
            .and_then(|()| bob.save_one_time_prekey(one_time))
            .and_then(|()| bob.save_one_time_prekey(spare))
            .and_then(|()| bob.save_kem_prekey(kem));
        if stored.is_err() {
            build_failed("saving prekeys");
        }
        let mut messages = Vec::new();
        let Ok(m0) = haven_sdk::initiate(&mut alice, &bob_addr, &bundle, b"hello", &mut rng) else {
            build_failed("initiate")
        };
        if haven_sdk::decrypt(&mut bob, &alice_addr, &m0, NOW, &mut rng).is_err() {
            build_failed("first decrypt");
        }
        messages.push(m0);
        let Ok(r1) = haven_sdk::encrypt(&mut bob, &alice_addr, b"hi") else {
            build_failed("reply")
        };
        if haven_sdk::decrypt(&mut alice, &bob_addr, &r1, NOW, &mut rng).is_err() {
            build_failed("reply decrypt");
        }
        messages.push(r1);
        let Ok(record) = bob.load_session(&alice_addr) else {
            build_failed("loading the session")
        };
        let Some(record) = record else {
            build_failed("no session")
        };
        let responder_record = record.to_bytes().to_vec();
        let mut next = None;
        for text in [&b"one"[..], b"two", b"three"] {
            let Ok(m) = haven_sdk::encrypt(&mut alice, &bob_addr, text) else {
                build_failed("encrypt")
            };
            if next.is_none()
                && let Ok(SessionMessage::Ratchet(r)) = SessionMessage::from_bytes(&m)
            {
                next = Some(r);
            }
            messages.push(m);
        }
        messages.push(responder_record.clone());
        Self {
            initiator_address: alice_addr,
            initiator_identity,
            responder_pair,
            responder_registration: 22,
            signed: saved.0,
            kem: saved.1,
            one_time: saved.2,
            responder_record,
            next,
            messages,
        }
    }

    /// A fresh copy of the responder's store (prekeys, the initiator's identity, the session).
    #[must_use]
    pub fn responder_store(&self) -> InMemoryProtocolStore {
        let Ok(pair) = IdentityKeyPair::from_bytes(&self.responder_pair) else {
            build_failed("identity")
        };
        let mut store = InMemoryProtocolStore::new(pair, self.responder_registration);
        let (Ok(signed), Ok(kem), Ok(one_time), Ok(record)) = (
            SignedPreKey::from_bytes(&self.signed),
            KemPreKey::from_bytes(&self.kem),
            OneTimePreKey::from_bytes(&self.one_time),
            SessionRecord::from_bytes(&self.responder_record),
        ) else {
            build_failed("decoding the responder's records")
        };
        let ok = store
            .save_signed_prekey(signed)
            .and_then(|()| store.save_kem_prekey(kem))
            .and_then(|()| store.save_one_time_prekey(one_time))
            .and_then(|()| store.store_session(&self.initiator_address, &record))
            .and_then(|()| {
                store
                    .save_identity(&self.initiator_address, &self.initiator_identity)
                    .map(|_| ())
            });
        if ok.is_err() {
            build_failed("filling the responder's store");
        }
        store
    }

    /// The responder's session with the initiator, encoded (to compare before and after).
    #[must_use]
    pub fn responder_session_bytes(&self, store: &InMemoryProtocolStore) -> Option<Vec<u8>> {
        store
            .load_session(&self.initiator_address)
            .ok()
            .flatten()
            .map(|r| r.to_bytes().to_vec())
    }

    /// A ratchet message the responder has not received yet.
    #[must_use]
    pub fn next_message(&self) -> Option<&RatchetMessage> {
        self.next.as_ref()
    }
}

/// The established sessions (built once).
pub fn sessions() -> &'static Sessions {
    static S: OnceLock<Sessions> = OnceLock::new();
    S.get_or_init(Sessions::build)
}

/// A group sender and the record a member holds for it.
pub struct SenderKeys {
    record: Vec<u8>,
    /// Real messages and distribution messages of this sender (corpus seeds).
    pub messages: Vec<Vec<u8>>,
}

impl SenderKeys {
    fn build() -> Self {
        let mut rng = rng();
        let mut sender = GroupSenderSession::new(DistributionId([0xD1; 16]), &mut rng);
        let skdm = sender.distribution_message();
        let record = SenderKeyRecord::new(&skdm).to_bytes().to_vec();
        let mut messages = vec![skdm.to_bytes().to_vec(), sender.to_bytes().to_vec()];
        for text in [&b"group one"[..], b"group two"] {
            let Ok(m) = sender.encrypt(text) else {
                build_failed("group encrypt")
            };
            messages.push(m);
        }
        messages.push(record.clone());
        Self { record, messages }
    }

    /// A fresh copy of the member's record of the sender.
    #[must_use]
    pub fn record(&self) -> SenderKeyRecord {
        SenderKeyRecord::from_bytes(&self.record)
            .unwrap_or_else(|_| build_failed("decoding the sender-key record"))
    }
}

/// The group sender (built once).
pub fn sender_keys() -> &'static SenderKeys {
    static S: OnceLock<SenderKeys> = OnceLock::new();
    S.get_or_init(SenderKeys::build)
}

/// A sealed-sender recipient, a sender with its certificate, and the relay key that signed it.
pub struct Sealed {
    /// The recipient.
    pub recipient: IdentityKeyPair,
    /// The relay's certificate key.
    pub relay_key: VerifyingKey,
    sender: IdentityKeyPair,
    certificate: SenderCertificate,
}

impl Sealed {
    fn build() -> Self {
        let mut rng = rng();
        let relay = SigningKey::from_bytes(&[0x5E; 32]);
        let recipient = IdentityKeyPair::generate(&mut rng);
        let sender = IdentityKeyPair::generate(&mut rng);
        let certificate = SenderCertificate::issue(
            &relay,
            DeviceAddress::new([0x5E; 16], 3),
            *sender.public(),
            NOW + 86_400,
        );
        Self {
            recipient,
            relay_key: relay.verifying_key(),
            sender,
            certificate,
        }
    }

    /// Seals `content` from the sender to the recipient.
    ///
    /// # Errors
    /// As [`haven_sdk::seal_sender`].
    pub fn seal(&self, content_type: u8, content: &[u8]) -> Result<Vec<u8>, SealedSenderError> {
        haven_sdk::seal_sender(
            &self.sender,
            &self.certificate,
            self.recipient.public(),
            content_type,
            content,
            &mut rng(),
        )
    }

    /// The sender's certificate, encoded (a corpus seed).
    #[must_use]
    pub fn certificate_bytes(&self) -> Vec<u8> {
        self.certificate.to_bytes()
    }
}

/// The sealed-sender parties (built once).
pub fn sealed() -> &'static Sealed {
    static S: OnceLock<Sealed> = OnceLock::new();
    S.get_or_init(Sealed::build)
}

/// Diary keys (the cheapest password stretching the SDK accepts) and the bundle wrapping them.
pub struct Diary {
    /// The unlocked keys.
    pub keys: DiaryKeys,
    /// The wrapped key bundle, encoded (a corpus seed).
    pub bundle: Vec<u8>,
}

impl Diary {
    fn build() -> Self {
        let Ok((keys, bundle, _codes)) =
            DiaryKeys::create(b"fuzz password", KdfParams::MIN, &mut rng())
        else {
            build_failed("creating diary keys")
        };
        Self {
            keys,
            bundle: bundle.to_bytes(),
        }
    }

    /// An entry whose body plaintext is `body` (any bytes) and whose metadata is valid and names
    /// that body's digest, so the body decoder runs.
    #[must_use]
    pub fn entry_with_body(&self, body: &[u8]) -> Option<SealedEntry> {
        let mut rng = rng();
        let body = self
            .keys
            .encrypt_item(&COLLECTION, &ITEM, 1, body, &mut rng)
            .ok()?;
        let digest: [u8; 32] = Sha256::digest(&body).into();
        let mut entry = Entry::default();
        entry.title = "fuzz".into();
        let meta_plain = entry.encode_meta(&digest).ok()?;
        let meta = self
            .keys
            .encrypt_item(&COLLECTION, &ITEM, 1, &meta_plain, &mut rng)
            .ok()?;
        Some(SealedEntry { body, meta })
    }
}

/// The diary keys (built once).
pub fn diary() -> &'static Diary {
    static S: OnceLock<Diary> = OnceLock::new();
    S.get_or_init(Diary::build)
}

/// An attachment key and one blob encrypted under it.
pub struct Attachment {
    /// The key.
    pub key: AttachmentKey,
    /// The blob's plaintext.
    pub plaintext: Vec<u8>,
    /// The blob.
    pub blob: Vec<u8>,
    /// The blob's SHA-256.
    pub digest: [u8; 32],
}

impl Attachment {
    fn build() -> Self {
        let key = AttachmentKey::from_bytes([0xA7; 32]);
        let plaintext: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let Ok(mut encryptor) = AttachmentEncryptor::new(&key, plaintext.len() as u64) else {
            build_failed("attachment encryptor")
        };
        let Ok(mut blob) = encryptor.push(&plaintext) else {
            build_failed("attachment push")
        };
        let Ok((tail, digest)) = encryptor.finish() else {
            build_failed("attachment finish")
        };
        blob.extend_from_slice(&tail);
        Self {
            key,
            plaintext,
            blob,
            digest,
        }
    }
}

/// The attachment (built once).
pub fn attachment() -> &'static Attachment {
    static S: OnceLock<Attachment> = OnceLock::new();
    S.get_or_init(Attachment::build)
}
