//! Targets for the SDK's formats (`haven-sdk`): messages arriving from peers and the relay, and
//! the records a client store reads back. Where a format sits behind an AEAD, the target also
//! decrypts under the fixed keys of [`crate::fixture`], so the fuzzer gets past the tag.

use haven_protocol::content::Content;
use haven_sdk::{
    AttachmentDecryptor, DiaryIndex, IdentityKey, IdentityKeyPair, KemPreKey, OneTimePreKey,
    PreKeyBundle, RecoveryCode, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord,
    Session, SessionRecord, SignedPreKey, WrappedKeyBundle, diary::entry::Entry as DiaryEntry,
    groups::GroupSenderSession, ratchet::message::SessionMessage,
};

use std::cell::RefCell;

use haven_sdk::InMemoryProtocolStore;

use crate::fixture;

/// Asserts that a record decoder is stable: what it accepted encodes to bytes it accepts again
/// and that encode identically (store records need not be canonical byte for byte).
fn stable<T, E>(first: &T, encode: impl Fn(&T) -> Vec<u8>, decode: impl Fn(&[u8]) -> Result<T, E>) {
    let once = encode(first);
    let Ok(second) = decode(&once) else {
        panic!("a decoded record does not decode after re-encoding");
    };
    assert_eq!(encode(&second), once, "re-encoding is not stable");
}

/// Prekey bundles as the relay serves them (§9.2), and the prekey records of the client store.
pub fn prekeys(data: &[u8]) {
    if let Ok(bundle) = PreKeyBundle::from_bytes(data) {
        assert_eq!(bundle.to_bytes(), data, "bundle round trip");
        // What a client does next with a bundle from the relay: the signature check refuses.
        let _ = bundle.verify();
    }
    if let Ok(key) = SignedPreKey::from_bytes(data) {
        stable(&key, |k| k.to_bytes().to_vec(), SignedPreKey::from_bytes);
    }
    if let Ok(key) = OneTimePreKey::from_bytes(data) {
        stable(&key, |k| k.to_bytes().to_vec(), OneTimePreKey::from_bytes);
    }
    if let Ok(key) = KemPreKey::from_bytes(data) {
        stable(&key, |k| k.to_bytes().to_vec(), KemPreKey::from_bytes);
    }
    if let Ok(key) = IdentityKey::from_bytes(data) {
        assert_eq!(key.to_bytes().as_slice(), data, "identity key round trip");
    }
    if let Ok(pair) = IdentityKeyPair::from_bytes(data) {
        stable(
            &pair,
            |p| p.to_bytes().to_vec(),
            IdentityKeyPair::from_bytes,
        );
    }
}

/// Prekey and ratchet messages (§10): the parser, then a receiving device's full decrypt path
/// (a prekey message against a store with prekeys, a ratchet message against an established
/// session), which must refuse anything the fixture's peer did not send and leave no state.
pub fn ratchet(data: &[u8]) {
    if let Ok(message) = SessionMessage::from_bytes(data) {
        assert_eq!(message.to_bytes(), data, "session message round trip");
    }
    thread_local! {
        // Filling a store decodes ML-KEM keys: too slow for every input. A refused message
        // leaves it as it was (asserted below), so it is rebuilt only after an accepted one.
        static STORE: RefCell<Option<InMemoryProtocolStore>> = const { RefCell::new(None) };
    }
    let fx = fixture::sessions();
    STORE.with_borrow_mut(|slot| {
        let store = slot.get_or_insert_with(|| fx.responder_store());
        let before = fx.responder_session_bytes(store);
        let result = haven_sdk::decrypt(
            store,
            &fx.initiator_address,
            data,
            fixture::NOW,
            &mut fixture::rng(),
        );
        if result.is_err() {
            assert_eq!(
                fx.responder_session_bytes(store),
                before,
                "a refused message changed the session"
            );
        } else {
            *slot = None;
        }
    });
}

/// Session records of the client store (§12): decoding, and decrypting a message with one.
pub fn session_record(data: &[u8]) {
    if let Ok(session) = Session::from_bytes(data) {
        stable(&session, |s| s.to_bytes().to_vec(), Session::from_bytes);
    }
    if let Ok(mut record) = SessionRecord::from_bytes(data) {
        stable(
            &record,
            |r| r.to_bytes().to_vec(),
            SessionRecord::from_bytes,
        );
        if let Some(message) = fixture::sessions().next_message() {
            let _ = record.decrypt(message, fixture::NOW, &mut fixture::rng());
        }
    }
}

/// Sender-key messages and distribution messages (§13.2), the sender-key records of the store,
/// and a group member's decrypt path; the plaintext behind it is a content message.
pub fn sender_key(data: &[u8]) {
    if let Ok(message) = SenderKeyMessage::from_bytes(data) {
        assert_eq!(message.to_bytes(), data, "sender-key message round trip");
    }
    if let Ok(skdm) = SenderKeyDistributionMessage::from_bytes(data) {
        assert_eq!(skdm.to_bytes().as_slice(), data, "distribution round trip");
    }
    if let Ok(state) = GroupSenderSession::from_bytes(data) {
        stable(
            &state,
            |s| s.to_bytes().to_vec(),
            GroupSenderSession::from_bytes,
        );
    }
    if let Ok(record) = SenderKeyRecord::from_bytes(data) {
        stable(
            &record,
            |r| r.to_bytes().to_vec(),
            SenderKeyRecord::from_bytes,
        );
    }
    let mut record = fixture::sender_keys().record();
    let before = record.to_bytes();
    match record.decrypt(data) {
        Ok(plaintext) => {
            let _ = Content::from_bytes(&plaintext);
        }
        Err(_) => assert_eq!(
            record.to_bytes(),
            before,
            "a refused message changed the record"
        ),
    }
}

/// Sealed-sender envelopes (§8.2) opened by a recipient, and a sealed round trip of arbitrary
/// content under the fixture's keys (so the inner layout is reached with valid tags).
pub fn sealed_sender(data: &[u8]) {
    let fx = fixture::sealed();
    let _ = haven_sdk::open_sealed(&fx.recipient, &fx.relay_key, data, fixture::NOW);
    // The plaintext behind the second layer, as the recipient reads it after the tag.
    if let Ok((_, certificate, content)) =
        haven_sdk::sealed_sender::hazmat::decode_inner_content(data)
    {
        let cert = certificate.to_bytes();
        assert_eq!(
            2 + 4 + cert.len() + 4 + content.len(),
            data.len(),
            "inner length"
        );
        assert_eq!(
            data.get(6..6 + cert.len()),
            Some(cert.as_slice()),
            "inner certificate"
        );
    }
    let (content_type, content) = data.split_first().map_or((0, data), |(t, c)| (*t, c));
    if let Ok(envelope) = fx.seal(content_type, content) {
        let opened = haven_sdk::open_sealed(&fx.recipient, &fx.relay_key, &envelope, fixture::NOW);
        let Ok(opened) = opened else {
            panic!("a sealed envelope does not open: {opened:?}");
        };
        assert_eq!(opened.content_type, content_type);
        assert_eq!(opened.content, content);
    }
}

/// Diary items (§15): key bundles, the search index, recovery codes, and entry blobs decrypted
/// under a fixed key, so the metadata and body decoders behind the AEAD are reached.
pub fn diary(data: &[u8]) {
    if let Ok(bundle) = WrappedKeyBundle::from_bytes(data) {
        stable(
            &bundle,
            WrappedKeyBundle::to_bytes,
            WrappedKeyBundle::from_bytes,
        );
    }
    if let Some(index) = DiaryIndex::from_bytes(data) {
        let once = index.to_bytes();
        let again = DiaryIndex::from_bytes(&once).map(|i| i.to_bytes().to_vec());
        assert_eq!(again.as_deref(), Some(once.as_slice()), "index re-encoding");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RecoveryCode::parse(text);
    }
    if let Ok((bundle, _collection)) = haven_client_core::diary::decode_bundle_item(data) {
        stable(
            &bundle,
            WrappedKeyBundle::to_bytes,
            WrappedKeyBundle::from_bytes,
        );
    }
    let fx = fixture::diary();
    let (collection, item, revision) = (&fixture::COLLECTION, &fixture::ITEM, 1);
    // As served by the relay (tag check), then as a plaintext behind a valid tag.
    let _ = fx.keys.decrypt_item(collection, item, revision, data);
    let _ = DiaryEntry::open_meta(&fx.keys, collection, item, revision, data);
    if let Ok(meta) = fx
        .keys
        .encrypt_item(collection, item, revision, data, &mut fixture::rng())
    {
        let _ = DiaryEntry::open_meta(&fx.keys, collection, item, revision, &meta);
    }
    if let Some(sealed) = fx.entry_with_body(data) {
        let _ = DiaryEntry::open(&fx.keys, collection, item, revision, &sealed);
    }
}

/// Attachment blobs (§14, the streaming AEAD) under a fixed key, pushed in the split the
/// input's first byte chooses; a blob that decrypts must be the digest's blob.
pub fn attachment_stream(data: &[u8]) {
    let fx = fixture::attachment();
    let (split, blob) = data.split_first().map_or((1, data), |(s, b)| (*s, b));
    let split = usize::from(split).max(1) * 61;
    for digest in [fx.digest, [0u8; 32]] {
        let mut decryptor = AttachmentDecryptor::new(&fx.key, digest);
        let mut plain = Vec::new();
        let mut ok = true;
        for chunk in blob.chunks(split) {
            match decryptor.push(chunk) {
                Ok(p) => plain.extend_from_slice(&p),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && let Ok(last) = decryptor.finish() {
            plain.extend_from_slice(&last);
            assert_eq!(digest, fx.digest, "a blob passed a digest it does not have");
            assert_eq!(plain, fx.plaintext, "a blob decrypted to other plaintext");
        }
    }
}
