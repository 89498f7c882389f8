#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sender keys: delivery orders, replay, limits, tampering, rotation on member removal.

use haven_sdk::groups::{
    DistributionId, GroupError, GroupSenderSession, MAX_SENDER_CHAINS, MAX_SENDER_KEY_SKIP,
    SenderKeyDistributionMessage, SenderKeyRecord,
};
use haven_sdk::store::sender_keys::{
    InMemorySenderKeyStore, SenderKeyName, SenderKeyStore, group_decrypt,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn setup(seed: u8) -> (GroupSenderSession, SenderKeyRecord) {
    let mut r = rng(seed);
    let dist = DistributionId::generate(&mut r);
    let sender = GroupSenderSession::new(dist, &mut r);
    let skdm = SenderKeyDistributionMessage::from_bytes(&sender.distribution_message().to_bytes())
        .unwrap();
    (sender, SenderKeyRecord::new(&skdm))
}

fn pickle_eq(a: &SenderKeyRecord, b: &SenderKeyRecord) -> bool {
    *a.to_bytes() == *b.to_bytes()
}

#[test]
fn in_order_and_out_of_order() {
    let (mut s, mut r) = setup(1);
    let msgs: Vec<Vec<u8>> = (0..10)
        .map(|i| s.encrypt(format!("m{i}").as_bytes()).unwrap())
        .collect();
    for i in [3usize, 0, 9, 1, 2, 8, 4, 5, 7, 6] {
        assert_eq!(r.decrypt(&msgs[i]).unwrap(), format!("m{i}").as_bytes());
    }
    // Every message decrypts once only.
    for m in &msgs {
        assert!(matches!(r.decrypt(m), Err(GroupError::DuplicateMessage(_))));
    }
}

#[test]
fn replay_rejected_and_state_unchanged() {
    let (mut s, mut r) = setup(2);
    let m = s.encrypt(b"hello").unwrap();
    r.decrypt(&m).unwrap();
    let before = r.clone();
    assert_eq!(r.decrypt(&m), Err(GroupError::DuplicateMessage(0)));
    assert!(pickle_eq(&before, &r));
}

#[test]
fn skip_limit_enforced() {
    let (mut s, mut r) = setup(3);
    let mut last = Vec::new();
    for _ in 0..=MAX_SENDER_KEY_SKIP + 1 {
        last = s.encrypt(b"x").unwrap();
    }
    let before = r.clone();
    assert_eq!(
        r.decrypt(&last),
        Err(GroupError::TooFarInFuture {
            jump: MAX_SENDER_KEY_SKIP + 1
        })
    );
    assert!(pickle_eq(&before, &r));
}

#[test]
fn every_byte_flip_rejected_state_unchanged() {
    let (mut s, mut r) = setup(4);
    let m = s.encrypt(b"attack at dawn").unwrap();
    let before = r.clone();
    for i in 0..m.len() {
        let mut t = m.clone();
        t[i] ^= 0x20;
        assert!(r.decrypt(&t).is_err(), "byte {i}");
        assert!(pickle_eq(&before, &r), "byte {i}");
    }
    assert_eq!(r.decrypt(&m).unwrap(), b"attack at dawn");
}

#[test]
fn forged_by_other_member_rejected() {
    // Mallory knows Alice's chain key (she is in the group) but not Alice's signing key.
    let (alice, mut bob_view) = setup(5);
    let skdm = alice.distribution_message().to_bytes();
    let mut forged_session = GroupSenderSession::from_parts(
        alice.distribution_id(),
        alice.chain_id(),
        0,
        skdm[26..58].try_into().unwrap(),
        [9u8; 32],
    );
    let forged = forged_session.encrypt(b"transfer money").unwrap();
    assert_eq!(bob_view.decrypt(&forged), Err(GroupError::InvalidMessage));
}

#[test]
fn removed_member_cannot_read_after_rotation() {
    let mut r = rng(6);
    let dist = DistributionId::generate(&mut r);
    let mut alice = GroupSenderSession::new(dist, &mut r);
    let bob_skdm = alice.distribution_message().to_bytes();
    let mut bob =
        SenderKeyRecord::new(&SenderKeyDistributionMessage::from_bytes(&bob_skdm).unwrap());
    let mut carol =
        SenderKeyRecord::new(&SenderKeyDistributionMessage::from_bytes(&bob_skdm).unwrap());
    let m1 = alice.encrypt(b"before").unwrap();
    assert_eq!(bob.decrypt(&m1).unwrap(), b"before");
    assert_eq!(carol.decrypt(&m1).unwrap(), b"before");

    // Carol leaves: Alice rotates and redistributes to Bob only.
    let old_chain = alice.chain_id();
    alice.rotate(&mut r);
    assert_ne!(alice.chain_id(), old_chain);
    let new_skdm =
        SenderKeyDistributionMessage::from_bytes(&alice.distribution_message().to_bytes()).unwrap();
    bob.process_distribution(&new_skdm).unwrap();
    let m2 = alice.encrypt(b"after").unwrap();
    assert_eq!(bob.decrypt(&m2).unwrap(), b"after");
    assert_eq!(
        carol.decrypt(&m2),
        Err(GroupError::UnknownChain(alice.chain_id()))
    );
    // Carol cannot derive the new chain by advancing her old one either.
    let before = carol.clone();
    for _ in 0..3 {
        assert!(carol.decrypt(&alice.encrypt(b"more").unwrap()).is_err());
    }
    assert!(pickle_eq(&before, &carol));
}

#[test]
fn old_chain_still_readable_and_chain_count_bounded() {
    let (mut s, mut r) = setup(7);
    let late = s.encrypt(b"late").unwrap();
    let mut rr = rng(70);
    for _ in 0..MAX_SENDER_CHAINS + 2 {
        s.rotate(&mut rr);
        r.process_distribution(&s.distribution_message()).unwrap();
    }
    assert_eq!(r.chain_count(), MAX_SENDER_CHAINS);
    // The first chain was evicted.
    assert!(matches!(r.decrypt(&late), Err(GroupError::UnknownChain(_))));
    let (mut s2, mut r2) = setup(8);
    let late2 = s2.encrypt(b"late").unwrap();
    s2.rotate(&mut rr);
    r2.process_distribution(&s2.distribution_message()).unwrap();
    assert_eq!(r2.decrypt(&late2).unwrap(), b"late");
}

#[test]
fn redelivered_distribution_does_not_rewind() {
    let (mut s, mut r) = setup(9);
    let first = s.distribution_message();
    let m = s.encrypt(b"one").unwrap();
    r.decrypt(&m).unwrap();
    r.process_distribution(&first).unwrap();
    assert_eq!(r.decrypt(&m), Err(GroupError::DuplicateMessage(0)));
}

#[test]
fn wrong_group_rejected() {
    let (mut s, _) = setup(10);
    let (_, mut other) = setup(11);
    assert_eq!(
        other.decrypt(&s.encrypt(b"x").unwrap()),
        Err(GroupError::DistributionMismatch)
    );
    assert_eq!(
        other.process_distribution(&s.distribution_message()),
        Err(GroupError::DistributionMismatch)
    );
}

#[test]
fn pickles_round_trip_and_continue() {
    let (mut s, mut r) = setup(12);
    let msgs: Vec<Vec<u8>> = (0..5).map(|_| s.encrypt(b"p").unwrap()).collect();
    r.decrypt(&msgs[4]).unwrap();
    let mut s2 = GroupSenderSession::from_bytes(&s.to_bytes()).unwrap();
    let mut r2 = SenderKeyRecord::from_bytes(&r.to_bytes()).unwrap();
    assert_eq!(r2.decrypt(&msgs[1]).unwrap(), b"p");
    assert_eq!(r2.decrypt(&s2.encrypt(b"q").unwrap()).unwrap(), b"q");
    assert!(SenderKeyRecord::from_bytes(&[r.to_bytes().as_slice(), &[0]].concat()).is_err());
    assert_eq!(
        GroupSenderSession::from_bytes(&[2]).err(),
        Some(GroupError::UnsupportedVersion(2))
    );
}

#[test]
fn store_saves_only_on_success() {
    let (mut s, r) = setup(13);
    let mut store = InMemorySenderKeyStore::new();
    let name = SenderKeyName {
        distribution_id: s.distribution_id(),
        sender_account: b"alice".to_vec(),
        device_id: 1,
    };
    store.store_sender_key(&name, &r).unwrap();
    store.store_own_sender_session(&s).unwrap();
    let m = s.encrypt(b"hi").unwrap();
    let mut bad = m.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(group_decrypt(&mut store, &name, &bad).is_err());
    assert_eq!(group_decrypt(&mut store, &name, &m).unwrap(), b"hi");
    assert!(matches!(
        group_decrypt(&mut store, &name, &m),
        Err(GroupError::DuplicateMessage(0))
    ));
    let other = SenderKeyName {
        device_id: 2,
        ..name
    };
    assert!(group_decrypt(&mut store, &other, &m).is_err());
    let own = store
        .load_own_sender_session(&s.distribution_id())
        .unwrap()
        .unwrap();
    assert_eq!(own.chain_id(), s.chain_id());
}

proptest! {
    #[test]
    fn arbitrary_delivery_order_with_loss_and_replay(order in proptest::collection::vec(0usize..40, 0..80)) {
        let (mut s, mut r) = setup(14);
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| s.encrypt(&[i]).unwrap()).collect();
        let mut seen = std::collections::BTreeSet::new();
        for i in order {
            let res = r.decrypt(&msgs[i]);
            if seen.insert(i) {
                prop_assert_eq!(res.unwrap(), vec![i as u8]);
            } else {
                prop_assert_eq!(res, Err(GroupError::DuplicateMessage(i as u32)));
            }
        }
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = SenderKeyRecord::from_bytes(&bytes);
        let _ = GroupSenderSession::from_bytes(&bytes);
        let _ = SenderKeyDistributionMessage::from_bytes(&bytes);
        let _ = haven_sdk::groups::SenderKeyMessage::from_bytes(&bytes);
        let (_, mut r) = setup(15);
        let _ = r.decrypt(&bytes);
    }
}

/// A distribution whose signing key is a small-order point is refused. Before, it was accepted
/// and the non-strict check then accepted the all-identity signature (R = identity, S = 0) on
/// any message of that chain: whoever knew the chain key (every member, or anyone the
/// distribution leaked to) could write messages no member could tell from the sender's.
/// Group signatures are now checked with `verify_strict`, like every other signature.
#[test]
fn small_order_signing_keys_are_refused() {
    let mut r = rng(40);
    let dist = DistributionId::generate(&mut r);
    let mut sender = GroupSenderSession::new(dist, &mut r);
    let mut weak = sender.distribution_message().to_bytes().to_vec();
    let n = weak.len();
    // The Ed25519 encoding of the identity point (order 1).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    weak[n - 32..].copy_from_slice(&identity);
    let decoded = SenderKeyDistributionMessage::from_bytes(&weak);
    let Ok(skdm) = decoded else {
        assert!(matches!(decoded, Err(GroupError::Malformed)));
        return;
    };
    // Only reached by an implementation that accepts the weak key: it must still refuse the
    // forged signature.
    let mut record = SenderKeyRecord::new(&skdm);
    let mut forged = sender.encrypt(b"not from the sender").unwrap();
    let m = forged.len();
    forged[m - 64..m - 32].copy_from_slice(&identity);
    forged[m - 32..].copy_from_slice(&[0; 32]);
    assert!(
        record.decrypt(&forged).is_err(),
        "a small-order key's forged signature was accepted"
    );
}
