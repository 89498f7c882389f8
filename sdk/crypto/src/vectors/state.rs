//! State vectors: out-of-order delivery with skipped keys (Double Ratchet §4.4, sender keys §8),
//! the secret pickles (§1.2, §2.2, §4.7, §4.8, §8) and their encrypted snapshots (§1.4), the
//! version-1 session pickle a reader still upgrades (§4.7), and the
//! diary's local index serialisation (§9.6). Each builder also runs the reverse direction and
//! the refusals it lists, and asserts them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Debug;

use rand_core::{TryCryptoRng, TryRng};
use serde_json::{Value, json};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::session::{ScriptedRng, VECTOR_NOW, b32, h, handshake, ident, randomness};
use crate::diary::{DiaryIndex, Entry};
use crate::groups::{DistributionId, GroupSenderSession, SenderKeyRecord};
use crate::identity::IdentityKeyPair;
use crate::pqxdh::hazmat::{initiate_with, initiator_secret};
use crate::pqxdh::{self, ResponderKeys};
use crate::prekeys::{KemPreKey, KemPreKeyKind, OneTimePreKey, SignedPreKey};
use crate::ratchet::message::SessionMessage;
use crate::ratchet::session::{Session, SessionRecord};
use crate::snapshot::{self, LABEL_IDENTITY, LABEL_PREKEY, LABEL_SESSION, StorageKey};

/// The name of an error's variant (`DuplicateMessage { index: 2 }` → `DuplicateMessage`): how
/// the vector files name the refusal a negative case expects.
pub fn refusal<E: Debug>(e: E) -> String {
    let s = format!("{e:?}");
    s.split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An "RNG" that hands out the listed bytes in order (random nonces the vectors fix) and
/// panics when they run out.
pub struct FixedBytesRng(VecDeque<u8>);

impl FixedBytesRng {
    /// Hands out `bytes`, in order.
    #[must_use]
    pub fn new(bytes: &[u8]) -> Self {
        Self(bytes.iter().copied().collect())
    }
}

impl TryRng for FixedBytesRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("only fill_bytes is used")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("only fill_bytes is used")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for b in dst {
            *b = self.0.pop_front().expect("script exhausted");
        }
        Ok(())
    }
}
impl TryCryptoRng for FixedBytesRng {}

fn ratchet_part(msg: &[u8]) -> crate::ratchet::message::RatchetMessage {
    match SessionMessage::from_bytes(msg).unwrap() {
        SessionMessage::PreKey(pm) => pm.message,
        SessionMessage::Ratchet(m) => m,
    }
}

/// Bob's session after the out-of-order exchange (also the session record's content below).
struct OutOfOrder {
    value: Value,
    bob: Session,
}

fn out_of_order() -> OutOfOrder {
    let hs = handshake(true);
    let (sk, _) = initiator_secret(&hs.alice, &hs.bundle, &randomness()).unwrap();
    let mut alice = initiate_with(&hs.alice, &hs.bundle, randomness()).unwrap();
    let keys = ResponderKeys {
        signed_prekey: &hs.spk,
        one_time_prekey: Some(&hs.otpk),
        kem_prekey: &hs.kem,
    };
    let bob_ratchet = [b32(0xB0, 7), b32(0xB0, 8)];
    let alice_ratchet = [b32(0xA1, 6)];
    let mut bob_rng = ScriptedRng(bob_ratchet.into_iter().collect());
    let mut alice_rng = ScriptedRng(alice_ratchet.into_iter().collect());

    let mut sent = Vec::new();
    let mut msgs = std::collections::BTreeMap::new();
    fn send(
        name: &str,
        who: &str,
        session: &mut Session,
        sent: &mut Vec<Value>,
        msgs: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        let m = session.encrypt(name.as_bytes()).unwrap().to_bytes();
        sent.push(
            json!({"name": name, "sender": who, "plaintext": h(name.as_bytes()), "message": h(&m)}),
        );
        msgs.insert(name.to_owned(), m);
    }
    // Alice's first chain: three prekey messages.
    for n in ["a0", "a1", "a2"] {
        send(n, "alice", &mut alice, &mut sent, &mut msgs);
    }
    // Bob receives a0 only (creating his session), answers b0.
    let SessionMessage::PreKey(pm) = SessionMessage::from_bytes(&msgs["a0"]).unwrap() else {
        panic!("a0 is a prekey message")
    };
    let mut bob = pqxdh::respond(&hs.bob, &pm, &keys).unwrap();
    assert_eq!(
        &*bob.decrypt(&pm.message, VECTOR_NOW, &mut bob_rng).unwrap(),
        b"a0"
    );
    let mut deliveries = vec![json!({"to": "bob", "message": "a0", "skipped_keys_stored": 0})];
    send("b0", "bob", &mut bob, &mut sent, &mut msgs);
    assert_eq!(
        &*alice
            .decrypt(&ratchet_part(&msgs["b0"]), VECTOR_NOW, &mut alice_rng)
            .unwrap(),
        b"b0"
    );
    deliveries.push(json!({"to": "alice", "message": "b0", "skipped_keys_stored": 0}));
    // Alice's second chain (after her DH ratchet step): a3, a4.
    for n in ["a3", "a4"] {
        send(n, "alice", &mut alice, &mut sent, &mut msgs);
    }
    // Bob receives a4 first: the old chain's a1, a2 (by PN) and the new chain's a3 are skipped.
    let mut bob_after_a4 = None;
    for n in ["a4", "a2", "a3", "a1"] {
        let out = bob
            .decrypt(&ratchet_part(&msgs[n]), VECTOR_NOW, &mut bob_rng)
            .unwrap();
        assert_eq!(&*out, n.as_bytes());
        deliveries.push(json!({"to": "bob", "message": n,
            "skipped_keys_stored": bob.skipped_key_count()}));
        if n == "a4" {
            bob_after_a4 = Some(bob.to_bytes());
        }
    }
    // Refusals: a replay of a used skipped key, and of a message of the current chain.
    let mut refusals = Vec::new();
    for n in ["a2", "a4"] {
        let e = bob
            .decrypt(&ratchet_part(&msgs[n]), VECTOR_NOW, &mut bob_rng)
            .unwrap_err();
        refusals.push(json!({"to": "bob", "message": n, "refusal": refusal(e)}));
    }
    // A tampered ciphertext of a message Bob could otherwise read (a5, never delivered):
    // refused, state unchanged.
    send("a5", "alice", &mut alice, &mut sent, &mut msgs);
    let mut bad = msgs["a5"].clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let before = bob.to_bytes();
    let e = bob
        .decrypt(&ratchet_part(&bad), VECTOR_NOW, &mut bob_rng)
        .unwrap_err();
    assert_eq!(*before, *bob.to_bytes());
    refusals.push(json!({"to": "bob", "bytes": h(&bad), "refusal": refusal(e)}));

    let value = json!({
        "description": "Double Ratchet out of order (PROTOCOL.md §4.4, §4.7): the session of pqxdh.json case 0 (with one-time prekey). Alice sends a0 a1 a2 (prekey messages), Bob receives a0 and answers b0, Alice receives b0 (DH ratchet step) and sends a3 a4 (PN = 3). Bob receives a4 first: he stores the skipped keys of a1 and a2 (old chain, up to PN) and, after his DH ratchet step, of a3; then a2, a3 and a1 are decrypted with stored keys. Alice's a5 is never delivered: its copy with a flipped ciphertext bit is refused. Ratchet secrets are consumed in order, one per DH ratchet step; every decrypt runs at `now`. `skipped_keys_stored` is Bob's count after the delivery; the pickles are Bob's session (§4.7, version 2) after a4 and at the end.",
        "sk": h(&*sk),
        "associated_data": h(&pqxdh::associated_data(hs.alice.public(), hs.bob.public())),
        "alice_identity_key": h(&hs.alice.public().to_bytes()),
        "bob_identity_key": h(&hs.bob.public().to_bytes()),
        "alice_ephemeral_secret": h(&b32(0xA1, 3)),
        "alice_first_ratchet_secret": h(&b32(0xA1, 5)),
        "bob_signed_prekey_secret": h(&b32(0xB0, 3)),
        "bob_ratchet_secrets": bob_ratchet.iter().map(|b| h(b)).collect::<Vec<_>>(),
        "alice_ratchet_secrets": alice_ratchet.iter().map(|b| h(b)).collect::<Vec<_>>(),
        "now": VECTOR_NOW,
        "sent": sent,
        "deliveries": deliveries,
        "bob_session_after_a4": h(&bob_after_a4.unwrap()),
        "bob_session_final": h(&bob.to_bytes()),
        "refusals": refusals,
    });
    OutOfOrder { value, bob }
}

pub(super) fn ratchet_out_of_order_vectors() -> Value {
    out_of_order().value
}

pub(super) fn sender_keys_out_of_order_vectors() -> Value {
    let dist = DistributionId([0xD1; 16]);
    let (chain_id, ck, seed) = (0x0A0B_0C0Du32, b32(0x5C, 1), b32(0x5C, 2));
    let mut sender = GroupSenderSession::from_parts(dist, chain_id, 0, ck, seed);
    let sender_initial = sender.to_bytes();
    let skdm = sender.distribution_message().to_bytes();
    let mut messages = Vec::new();
    for i in 0..5u8 {
        let pt = [b'm', b'0' + i];
        messages.push(sender.encrypt(&pt).unwrap());
    }
    let sender_after = sender.to_bytes();
    let skdm_ref = crate::groups::SenderKeyDistributionMessage::from_bytes(&skdm).unwrap();
    let mut record = SenderKeyRecord::new(&skdm_ref);
    let record_initial = record.to_bytes();
    let mut deliveries = Vec::new();
    let mut record_after_first = None;
    for i in [3usize, 0, 4, 2, 1] {
        let pt = record.decrypt(&messages[i]).unwrap();
        assert_eq!(pt, [b'm', b'0' + i as u8]);
        deliveries.push(json!({"iteration": i, "record": h(&record.to_bytes())}));
        if record_after_first.is_none() {
            record_after_first = Some(record.to_bytes());
        }
    }
    let mut refusals = Vec::new();
    // Replays: of a stored (now used) skipped seed and of the newest message.
    for i in [1usize, 4] {
        let before = record.to_bytes();
        let e = record.decrypt(&messages[i]).unwrap_err();
        assert_eq!(*before, *record.to_bytes());
        refusals.push(json!({"case": "replay", "message": h(&messages[i]), "refusal": refusal(e)}));
    }
    // A jump of more than MAX_SENDER_KEY_SKIP (2000) iterations, correctly signed.
    let mut far = GroupSenderSession::from_parts(dist, chain_id, 2006, b32(0x5C, 3), seed);
    let far_msg = far.encrypt(b"far").unwrap();
    let e = record.decrypt(&far_msg).unwrap_err();
    refusals.push(json!({"case": "too far (record chain at iteration 5)", "message": h(&far_msg), "refusal": refusal(e)}));
    // A flipped signature bit.
    let mut bad = messages[0].clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    refusals.push(json!({"case": "bad signature", "message": h(&bad), "refusal": refusal(record.decrypt(&bad).unwrap_err())}));
    // Pickle decoders.
    let mut pickle_refusals = Vec::new();
    let rec = record.to_bytes();
    let mut v = rec.to_vec();
    v[0] = 0x02;
    let mut trailing = rec.to_vec();
    trailing.push(0);
    let truncated = rec[..rec.len() - 1].to_vec();
    for (case, bytes) in [
        ("record: wrong version", v),
        ("record: trailing byte", trailing),
        ("record: truncated", truncated),
    ] {
        let e = SenderKeyRecord::from_bytes(&bytes).err().unwrap();
        pickle_refusals.push(json!({"case": case, "bytes": h(&bytes), "refusal": refusal(e)}));
    }
    let mut trailing = sender_after.to_vec();
    trailing.push(0);
    let e = GroupSenderSession::from_bytes(&trailing).err().unwrap();
    pickle_refusals.push(json!({"case": "sender state: trailing byte", "bytes": h(&trailing), "refusal": refusal(e)}));
    json!({
        "description": "Sender keys out of order (PROTOCOL.md §8) and the sender-key pickles. The sender state (chain id, chain key, signing seed at iteration 0) encrypts m0..m4 (plaintexts \"m0\"..\"m4\"); the receiver's record, made from the distribution message, receives them in the order 3, 0, 4, 2, 1 and is shown (pickled) after each. Refusals leave the record unchanged.",
        "distribution_id": h(&dist.0),
        "chain_id": chain_id,
        "chain_key": h(&ck),
        "signing_seed": h(&seed),
        "distribution_message": h(&skdm),
        "sender_state_initial": h(&sender_initial),
        "sender_state_after": h(&sender_after),
        "messages": messages.iter().map(|m| h(m)).collect::<Vec<_>>(),
        "record_initial": h(&record_initial),
        "deliveries": deliveries,
        "refusals": refusals,
        "far_sender_chain_key": h(&b32(0x5C, 3)),
        "far_sender_iteration": 2006,
        "pickle_refusals": pickle_refusals,
    })
}

/// A version-2 session pickle (§4.7) as version 1 wrote it (no `created` per skipped key), and
/// as it reads back (every `created` 0).
fn session_v1_of(v2: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut i = 2 + 64 + 64 + 128 + 32 + 32 + 32;
    i += 1 + if v2[i] == 1 { 36 } else { 0 };
    i += 4;
    i += 1 + 68 * usize::from(v2[i]);
    let n = u32::from_be_bytes(v2[i..i + 4].try_into().unwrap()) as usize;
    i += 4;
    let (mut v1, mut read_as) = (v2[..i].to_vec(), v2[..i].to_vec());
    v1[0] = 0x01;
    for k in 0..n {
        let entry = &v2[i + 76 * k..i + 76 * k + 68];
        v1.extend_from_slice(entry);
        read_as.extend_from_slice(entry);
        read_as.extend_from_slice(&0u64.to_be_bytes());
    }
    v1.extend_from_slice(&v2[i + 76 * n..]);
    read_as.extend_from_slice(&v2[i + 76 * n..]);
    (v1, read_as)
}

/// A version-1 session pickle (§4.7) and the version-2 pickle it reads as.
pub(super) fn session_pickle_v1_vectors() -> Value {
    let ooo = out_of_order().value;
    let v2 = hex::decode(ooo["bob_session_after_a4"].as_str().unwrap()).unwrap();
    let (v1, read_as) = session_v1_of(&v2);
    let mut session = Session::from_bytes(&v1).unwrap();
    assert_eq!(*session.to_bytes(), read_as);
    assert_eq!(session.skipped_key_count(), 3);
    // The upgraded session still reads a2 from its stored key.
    let a2 = ooo["sent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "a2")
        .unwrap();
    let a2 = hex::decode(a2["message"].as_str().unwrap()).unwrap();
    let out = session
        .decrypt(
            &ratchet_part(&a2),
            VECTOR_NOW,
            &mut ScriptedRng(VecDeque::new()),
        )
        .unwrap();
    assert_eq!(&*out, b"a2");
    let mut refusals = Vec::new();
    let mut push = |case: &str, bytes: Vec<u8>| {
        let e = refusal(Session::from_bytes(&bytes).err().unwrap());
        refusals.push(json!({"case": case, "bytes": h(&bytes), "refusal": e}));
    };
    let mut v = v1.clone();
    v[0] = 0x00;
    push("version 0x00", v);
    let mut v = v2.clone();
    v[0] = 0x01;
    push("a version-2 body under version byte 0x01", v);
    push("version 1, truncated", v1[..v1.len() - 1].to_vec());
    json!({
        "description": "The version-1 session pickle (PROTOCOL.md §4.7): `v2` is Bob's session of ratchet_out_of_order.json after a4 (three skipped keys); `v1` is the same state as version 1 wrote it (no `created`); `reads_as` is the version-2 pickle a reader makes of `v1` (every `created` 0). `refusals` are pickles a reader refuses.",
        "v2": h(&v2),
        "v1": h(&v1),
        "reads_as": h(&read_as),
        "refusals": refusals,
    })
}

/// A pickle's name, bytes and snapshot label.
type Pickle<'a> = (&'a str, Zeroizing<Vec<u8>>, &'a [u8]);

/// The secret pickles and their snapshots.
pub(super) fn pickle_vectors() -> Value {
    let storage_key_bytes = b32(0x5A, 1);
    let storage_key = StorageKey::from_bytes(storage_key_bytes);
    let identity = ident(b32(0xB0, 1), b32(0xB0, 2));
    let spk = SignedPreKey::from_secret(
        &identity,
        1,
        1_700_000_000,
        StaticSecret::from(b32(0xB0, 3)),
    );
    let otpk = OneTimePreKey::from_secret(17, StaticSecret::from(b32(0xB0, 4)));
    let kem = KemPreKey::from_seed(
        &identity,
        0x8000_0001,
        KemPreKeyKind::LastResort,
        1_700_000_000,
        seed_bytes(),
    );
    let mut record = SessionRecord::new();
    record.promote(out_of_order().bob);
    let pickles: [Pickle<'_>; 5] = [
        ("identity", identity.to_bytes(), LABEL_IDENTITY),
        ("signed_prekey", spk.to_bytes(), LABEL_PREKEY),
        ("one_time_prekey", otpk.to_bytes(), LABEL_PREKEY),
        ("kem_prekey", kem.to_bytes(), LABEL_PREKEY),
        ("session_record", record.to_bytes(), LABEL_SESSION),
    ];
    assert_eq!(
        IdentityKeyPair::from_bytes(&pickles[0].1)
            .unwrap()
            .public()
            .to_bytes(),
        identity.public().to_bytes()
    );
    assert_eq!(
        SignedPreKey::from_bytes(&pickles[1].1).unwrap().public(),
        spk.public()
    );
    assert_eq!(OneTimePreKey::from_bytes(&pickles[2].1).unwrap().id(), 17);
    assert_eq!(
        *KemPreKey::from_bytes(&pickles[3].1).unwrap().to_bytes(),
        *pickles[3].1
    );
    assert_eq!(
        *SessionRecord::from_bytes(&pickles[4].1).unwrap().to_bytes(),
        *pickles[4].1
    );
    let mut cases = Vec::new();
    for (i, (name, pickle, label)) in pickles.iter().enumerate() {
        let nonce: Vec<u8> = (0..24).map(|j| 0x90 + i as u8 * 0x10 + j).collect();
        let sealed = snapshot::seal(&storage_key, label, pickle, &mut FixedBytesRng::new(&nonce));
        assert_eq!(
            *snapshot::open(&storage_key, label, &sealed).unwrap(),
            **pickle
        );
        cases.push(json!({"name": name, "pickle": h(pickle), "label": String::from_utf8(label.to_vec()).unwrap(), "nonce": h(&nonce), "snapshot": h(&sealed)}));
    }
    let public = json!({
        "identity_key": h(&identity.public().to_bytes()),
        "signed_prekey_public": h(spk.public().as_bytes()),
        "signed_prekey_signature": h(spk.signature()),
        "one_time_prekey_public": h(otpk.public().as_bytes()),
        "kem_prekey_public": h(kem.public()),
        "kem_prekey_signature": h(kem.signature()),
    });

    // Refusals of the decoders.
    let mut refusals = Vec::new();
    let mut push = |format: &str, case: &str, bytes: Vec<u8>, e: String| {
        refusals.push(json!({"format": format, "case": case, "bytes": h(&bytes), "refusal": e}));
    };
    let id = pickles[0].1.to_vec();
    push(
        "identity",
        "65 bytes",
        id[..65].to_vec(),
        refusal(IdentityKeyPair::from_bytes(&id[..65]).err().unwrap()),
    );
    let mut v = id.clone();
    v[0] = 0x02;
    push(
        "identity",
        "version 0x02",
        v.clone(),
        refusal(IdentityKeyPair::from_bytes(&v).err().unwrap()),
    );
    for (k, (name, bytes)) in [
        ("signed_prekey", &pickles[1].1),
        ("one_time_prekey", &pickles[2].1),
        ("kem_prekey", &pickles[3].1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = bytes.to_vec();
        t.push(0);
        let e = match k {
            0 => refusal(SignedPreKey::from_bytes(&t).err().unwrap()),
            1 => refusal(OneTimePreKey::from_bytes(&t).err().unwrap()),
            _ => refusal(KemPreKey::from_bytes(&t).err().unwrap()),
        };
        push(name, "trailing byte", t, e);
    }
    let mut t = pickles[1].1.to_vec();
    t[1] = 0x22;
    push(
        "signed_prekey",
        "type byte of a one-time prekey",
        t.clone(),
        refusal(SignedPreKey::from_bytes(&t).err().unwrap()),
    );
    let session = record.current().unwrap().to_bytes().to_vec();
    let mut v = session.clone();
    v[0] = 0x03;
    push(
        "session",
        "version 0x03",
        v.clone(),
        refusal(Session::from_bytes(&v).err().unwrap()),
    );
    let mut t = session.clone();
    t.push(0);
    push(
        "session",
        "trailing byte",
        t.clone(),
        refusal(Session::from_bytes(&t).err().unwrap()),
    );
    let rec = pickles[4].1.to_vec();
    let mut v = rec.clone();
    v[0] = 0x02;
    push(
        "session_record",
        "version 0x02",
        v.clone(),
        refusal(SessionRecord::from_bytes(&v).err().unwrap()),
    );
    push(
        "session_record",
        "truncated",
        rec[..rec.len() - 1].to_vec(),
        refusal(
            SessionRecord::from_bytes(&rec[..rec.len() - 1])
                .err()
                .unwrap(),
        ),
    );
    let sealed = cases[0]["snapshot"]
        .as_str()
        .map(|s| hex::decode(s).unwrap())
        .unwrap();
    let open =
        |b: &[u8], label: &[u8]| refusal(snapshot::open(&storage_key, label, b).err().unwrap());
    push(
        "snapshot",
        "40 bytes",
        sealed[..40].to_vec(),
        open(&sealed[..40], LABEL_IDENTITY),
    );
    let mut v = sealed.clone();
    v[0] = 0x02;
    push(
        "snapshot",
        "version 0x02",
        v.clone(),
        open(&v, LABEL_IDENTITY),
    );
    let mut f = sealed.clone();
    f[30] ^= 0x01;
    push(
        "snapshot",
        "flipped ciphertext bit",
        f.clone(),
        open(&f, LABEL_IDENTITY),
    );
    push(
        "snapshot",
        "opened with label Haven_Snapshot_Session_v1",
        sealed.clone(),
        open(&sealed, LABEL_SESSION),
    );
    json!({
        "description": "Secret pickles (PROTOCOL.md §1.2 identity, §2.2 prekeys, §4.7/§4.8 session record holding Bob's final session of ratchet_out_of_order.json) and their encrypted snapshots (§1.4) under `storage_key` with the listed nonces. `public` holds what the pickles' secrets give (the KEM public key is ML-KEM-1024 KeyGen_internal(d, z) of the seed). `refusals` are inputs the decoders must refuse; snapshot refusals are opened with label Haven_Snapshot_Identity_v1 unless stated.",
        "storage_key": h(&storage_key_bytes),
        "inputs": {
            "identity_ed25519_seed": h(&b32(0xB0, 1)), "identity_x25519_secret": h(&b32(0xB0, 2)),
            "signed_prekey_id": 1, "signed_prekey_created_at": 1_700_000_000u64, "signed_prekey_secret": h(&b32(0xB0, 3)),
            "one_time_prekey_id": 17, "one_time_prekey_secret": h(&b32(0xB0, 4)),
            "kem_prekey_id": 0x8000_0001u32, "kem_prekey_kind": 2, "kem_prekey_created_at": 1_700_000_000u64,
            "kem_prekey_seed": h(&*seed_bytes()),
        },
        "public": public,
        "cases": cases,
        "refusals": refusals,
    })
}

fn seed_bytes() -> Zeroizing<[u8; 64]> {
    let mut seed = Zeroizing::new([0u8; 64]);
    seed[..32].copy_from_slice(&b32(0xB0, 5));
    seed[32..].copy_from_slice(&b32(0xB0, 6));
    seed
}

fn index_entries() -> [([u8; 16], Entry); 2] {
    [
        (
            [0x1D; 16],
            Entry {
                title: "Lisbon, day 2".into(),
                body: "Walked up to the castle. Pastéis de nata: 3!".into(),
                mood: Some("  Happy ".into()),
                tags: vec!["Travel".into(), "family".into()],
                created_ms: 1_700_000_000_000,
                updated_ms: 1_700_000_123_456,
                attachments: Vec::new(),
            },
        ),
        (
            [0x0E; 16],
            Entry {
                title: "ΟΔΟΣ 日記".into(),
                body: "Straße İstanbul x2 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
                mood: None,
                tags: Vec::new(),
                created_ms: 1_690_000_000_000,
                updated_ms: 1_690_000_000_000,
                attachments: Vec::new(),
            },
        ),
    ]
}

pub(super) fn diary_index_vectors() -> Value {
    let mut index = DiaryIndex::new();
    let mut entries = Vec::new();
    for (id, e) in index_entries() {
        index.upsert(id, &e);
        entries.push(
            json!({"item_id": h(&id), "title": e.title, "body": e.body, "mood": e.mood,
            "tags": e.tags, "created_ms": e.created_ms, "updated_ms": e.updated_ms}),
        );
    }
    let bytes = index.to_bytes();
    assert_eq!(*DiaryIndex::from_bytes(&bytes).unwrap().to_bytes(), *bytes);
    let mut refusals = Vec::new();
    let mut v = bytes.to_vec();
    v[0] = 0x02;
    let mut t = bytes.to_vec();
    t.push(0);
    let truncated = bytes[..bytes.len() - 1].to_vec();
    // The same entry twice.
    let one = {
        let mut i = DiaryIndex::new();
        let (id, e) = &index_entries()[0];
        i.upsert(*id, e);
        i.to_bytes()
    };
    let mut dup = vec![0x01, 0, 0, 0, 2];
    dup.extend_from_slice(&one[5..]);
    dup.extend_from_slice(&one[5..]);
    let mut bad_mood = one.to_vec();
    bad_mood[5 + 32] = 0x02; // the mood flag
    for (case, b) in [
        ("version 0x02", v),
        ("trailing byte", t),
        ("truncated", truncated),
        ("the same item id twice", dup),
        ("mood flag 0x02", bad_mood),
    ] {
        assert!(DiaryIndex::from_bytes(&b).is_none(), "{case}");
        refusals.push(json!({"case": case, "bytes": h(&b), "refusal": "Malformed"}));
    }
    json!({
        "description": "The diary's local index serialisation (PROTOCOL.md §9.6): the index of the two entries below (upserted in this order), as `DiaryIndex::to_bytes` writes it. `refusals` are inputs `from_bytes` refuses.",
        "entries": entries,
        "index": h(&bytes),
        "refusals": refusals,
    })
}
