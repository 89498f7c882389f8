//! Data-crypto vectors: padding, sender keys, signed group changes, diary keys, diary entries,
//! attachments.

use serde_json::{Value, json};

use crate::attachment::{AttachmentEncryptor, AttachmentKey, StreamKeys};
use crate::diary::epoch::FactorSecret;
use crate::diary::{
    self, COLLECTION_INFO, DiaryKeys, EpochInputs, ITEM_INFO, KdfParams, LegacyBundle,
    PasswordSlotInputs, RECOVERY_WRAP_LABEL, RecoveryCode, WrappedKeyBundle,
};
use crate::groups::{DistributionId, GroupSenderSession, chain_step, message_key_and_nonce};
use crate::padding;
use haven_protocol::padding as buckets;

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn arr<const N: usize>(start: u8) -> [u8; N] {
    core::array::from_fn(|i| start.wrapping_add(i as u8))
}

pub(super) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

pub(super) fn padding_vectors() -> Value {
    let sizes = [
        0u64,
        1,
        100,
        255,
        256,
        500,
        511,
        512,
        1000,
        4095,
        65535,
        65536,
        1_000_000,
        123_456_789,
        1 << 32,
    ];
    let buckets_v: Vec<Value> = sizes
        .iter()
        .map(|&n| {
            let p = buckets::padded_len(n).unwrap();
            json!({"n": n, "padded_len": p, "is_bucket_n": buckets::is_bucket_size(n)})
        })
        .collect();
    let blobs: Vec<Value> = [0u64, 1, 65527, 65528, 65536, 3 << 20]
        .iter()
        .map(|&n| {
            let p = buckets::attachment_padded_len(n).unwrap();
            json!({"plaintext_len": n, "attachment_padded_len": p,
                "ciphertext_len": buckets::attachment_ciphertext_len(p).unwrap()})
        })
        .collect();
    let pads: Vec<Value> = [&b""[..], b"hi", &[0x80, 0][..]]
        .iter()
        .map(|p| json!({"payload": h(p), "padded": h(&padding::pad(p).unwrap())}))
        .collect();
    json!({"description": "Padmé buckets with MIN_BUCKET 256 (PROTOCOL.md §7)",
        "buckets": buckets_v, "attachment_sizes": blobs, "pad": pads})
}

pub(super) fn sender_key_vectors() -> Value {
    let dist = arr::<16>(0xd0);
    let chain_key = arr::<32>(0x10);
    let seed = arr::<32>(0x40);
    let chain_id = 0x0102_0304u32;
    let mut s = GroupSenderSession::from_parts(DistributionId(dist), chain_id, 0, chain_key, seed);
    let skdm = s.distribution_message().to_bytes();
    let mut ck = zeroize::Zeroizing::new(chain_key);
    let mut msgs = Vec::new();
    for (i, pt) in [&b"hello group"[..], b"", b"third"].iter().enumerate() {
        let (mk_seed, next) = chain_step(&ck);
        let (key, nonce) = message_key_and_nonce(&mk_seed);
        msgs.push(json!({"iteration": i, "chain_key": h(ck.as_slice()),
            "message_key_seed": h(mk_seed.as_slice()), "aead_key": h(key.as_slice()),
            "aead_nonce": h(&nonce), "plaintext": h(pt), "message": h(&s.encrypt(pt).unwrap())}));
        ck = next;
    }
    json!({"description": "Sender keys (PROTOCOL.md §8)", "distribution_id": h(&dist),
        "chain_id": chain_id, "initial_chain_key": h(&chain_key), "signing_seed": h(&seed),
        "signing_public": h(&skdm[58..]), "distribution_message": h(&skdm), "messages": msgs})
}

/// Signed group changes (PROTOCOL.md §13.3.1): a group's creation, a removal and an addition
/// under one admin key, and the invite (content kind `0x13`, §13.1) that carries the first.
pub(super) fn group_change_vectors() -> Value {
    use crate::groups::admin::{GroupAdminKey, SignedGroupChange, group_key_commitment};
    use haven_protocol::content::{Body, Content, Conversation, GroupInvite};
    use haven_protocol::group_change::GroupChangeBody;

    let seed: [u8; 32] = arr(0x40);
    let key = GroupAdminKey::from_seed(&seed);
    let group_id: [u8; 16] = arr(0x10);
    let (alice, bob, carol, dave) = ([0xA1u8; 16], [0xB0u8; 16], [0xC0u8; 16], [0xD0u8; 16]);
    let steps = [
        (1u32, vec![alice, bob, carol], arr::<32>(0x61)),
        (2, vec![alice, bob], arr::<32>(0x62)),
        (3, vec![alice, bob, dave], arr::<32>(0x63)),
    ];
    let mut changes = Vec::new();
    let mut first = Vec::new();
    for (epoch, members, group_key) in &steps {
        let body = GroupChangeBody {
            group_id,
            epoch: *epoch,
            admin_account: alice,
            admin_key: key.public(),
            key_commitment: group_key_commitment(&group_id, *epoch, group_key),
            name: "climbers".into(),
            members: members.clone(),
        };
        let signed = key.sign(&body).unwrap();
        let checked = SignedGroupChange::verify(signed.to_bytes()).unwrap();
        assert!(checked.commits_to(group_key));
        if *epoch == 1 {
            first = signed.to_bytes().to_vec();
        }
        changes.push(json!({
            "epoch": epoch,
            "members": members.iter().map(|m| h(m)).collect::<Vec<_>>(),
            "group_key": h(group_key),
            "key_commitment": h(&body.key_commitment),
            "change": h(signed.to_bytes()),
        }));
    }
    let invite = Content {
        sent_at: 1_800_000_000_000,
        conversation: Conversation::Group(group_id),
        body: Body::GroupInvite(GroupInvite {
            change: first,
            channel_id: arr(0x20),
            read_token: arr(0x30),
            write_token: arr(0x50),
            group_key: steps[0].2,
            after: 0,
        }),
    };
    json!({
        "description": "Signed group changes (PROTOCOL.md §13.3.1): Ed25519 (RFC 8032) with the admin seed over \"Haven_GroupChange_v1\" || body; each change's key_commitment = SHA-256(\"Haven_GroupKey_v1\" || group_id || u32be(epoch) || group_key); the invite is the content (§13.1, kind 0x13) carrying the first change.",
        "admin_seed": h(&seed),
        "admin_key": h(&key.public()),
        "admin_account": h(&alice),
        "group_id": h(&group_id),
        "name": "climbers",
        "changes": changes,
        "invite": {
            "sent_at": 1_800_000_000_000u64,
            "channel_id": h(&arr::<16>(0x20)),
            "read_token": h(&arr::<32>(0x30)),
            "write_token": h(&arr::<32>(0x50)),
            "after": 0,
            "content": h(&invite.to_bytes().unwrap()),
        },
    })
}

pub(super) fn diary_vectors() -> Value {
    let master = arr::<32>(0x00);
    let password = b"correct horse battery staple";
    let params = KdfParams::MIN;
    let pw_salt = arr::<16>(0x20);
    let pw_nonce = arr::<24>(0x30);
    let rec_salt = arr::<16>(0x50);
    let entries = [
        (arr::<16>(0x60), arr::<24>(0x70)),
        (arr::<16>(0x90), arr::<24>(0xa0)),
    ];
    let keys = DiaryKeys::from_master(master);
    let kek = diary::password_kek(password, &pw_salt, &params).unwrap();
    let password_slot = keys.legacy_password_slot(
        &kek,
        params,
        &PasswordSlotInputs {
            salt: pw_salt,
            nonce: pw_nonce,
        },
    );
    let bundle = WrappedKeyBundle::legacy(LegacyBundle {
        password: password_slot,
        recovery_salt: rec_salt,
        recovery: keys.legacy_recovery_slots(rec_salt, &entries),
    });
    let codes: Vec<Value> = entries
        .iter()
        .map(|(e, n)| {
            json!({"entropy": h(e), "nonce": h(n),
                "text": RecoveryCode::from_entropy(*e).to_text().as_str(),
                "kek": h(diary::hkdf32(Some(&rec_salt), e, &[RECOVERY_WRAP_LABEL]).as_slice())})
        })
        .collect();
    // §9.1.1: a password typed with a decomposed é (U+0065 U+0301), a decomposed ï, a no-break
    // space, an ideographic space and conjoining Hangul jamo; the fullwidth Ａ stays (NFC, not
    // NFKC).
    let typed = "cafe\u{0301}\u{00A0}nai\u{0308}ve\u{3000}\u{1100}\u{1161} \u{FF21}";
    let normalised = crate::password::normalize_password(typed.as_bytes());
    assert_eq!(
        normalised.as_slice(),
        "caf\u{00E9} na\u{00EF}ve \u{AC00} \u{FF21}".as_bytes()
    );
    let unicode_kek = diary::password_kek(typed.as_bytes(), &pw_salt, &params).unwrap();
    let collection = arr::<16>(0xc0);
    let item = arr::<16>(0xe0);
    let item_nonce = arr::<24>(0xf0);
    let plaintext = b"Dear diary, today I wrote test vectors.";
    let ck = diary::hkdf32(None, &master, &[COLLECTION_INFO, &collection]);
    let ik = diary::hkdf32(None, ck.as_slice(), &[ITEM_INFO, &item]);
    let ct = keys
        .encrypt_item_with_nonce(&collection, &item, 42, plaintext, item_nonce)
        .unwrap();
    json!({"description": "Diary key hierarchy, version-1 bundle (PROTOCOL.md §9; still read)",
        "master_key": h(&master),
        "password": h(password), "kdf_params": {"m_cost_kib": params.m_cost_kib,
        "t_cost": params.t_cost, "p_cost": params.p_cost}, "password_salt": h(&pw_salt),
        "password_nonce": h(&pw_nonce), "password_kek": h(kek.as_slice()),
        "unicode_password": {"typed": typed, "typed_utf8": h(typed.as_bytes()),
            "normalised_utf8": h(&normalised), "password_kek": h(unicode_kek.as_slice())},
        "recovery_salt": h(&rec_salt), "recovery_codes": codes, "bundle": h(&bundle.to_bytes()),
        "collection_id": h(&collection), "collection_key": h(ck.as_slice()), "item_id": h(&item),
        "item_key": h(ik.as_slice()), "revision": 42, "item_nonce": h(&item_nonce),
        "item_plaintext": h(plaintext), "item_ciphertext": h(&ct)})
}

/// A version-2 bundle at epoch 2 (two changes after creation) and items of epochs 0 and 2.
pub(super) fn diary_epoch_vectors() -> Value {
    let password = b"correct horse battery staple";
    let params = KdfParams::MIN;
    let pw_salt = arr::<16>(0x20);
    let pw_nonce = arr::<24>(0x30);
    let password_factor = FactorSecret {
        secret: arr::<32>(0x01),
        auth: arr::<32>(0x21),
    };
    let recovery_factor = FactorSecret {
        secret: arr::<32>(0x41),
        auth: arr::<32>(0x61),
    };
    let rec_salt = arr::<16>(0x50);
    let entries = [
        (arr::<16>(0x60), arr::<24>(0x70)),
        (arr::<16>(0x90), arr::<24>(0xa0)),
    ];
    let masters = [arr::<32>(0x00), arr::<32>(0x80), arr::<32>(0xc0)];
    let inputs = EpochInputs {
        password_ephemeral: arr::<32>(0x81),
        recovery_ephemeral: arr::<32>(0xa1),
        keyring_nonce: arr::<24>(0xc1),
    };
    let keys = DiaryKeys::from_epochs(&masters, &password_factor, &recovery_factor);
    let kek = diary::password_kek(password, &pw_salt, &params).unwrap();
    let password_part = diary::epoch::PasswordFactor {
        params,
        salt: pw_salt,
        nonce: pw_nonce,
        wrapped: diary::epoch::wrap_factor(
            &kek,
            &pw_nonce,
            &diary::epoch::password_ad(&params, &pw_salt),
            &password_factor,
        ),
    };
    let recovery_part = diary::recovery_factor_slots(&recovery_factor, rec_salt, &entries);
    let bundle = keys
        .assemble(password_part, recovery_part, &inputs)
        .unwrap();
    // Both factors open it, and every epoch's key with it.
    let collection = arr::<16>(0xc0);
    let item = arr::<16>(0xe0);
    let old_item = DiaryKeys::from_master(masters[0])
        .encrypt_item_with_nonce(
            &collection,
            &item,
            3,
            b"written at epoch 0",
            arr::<24>(0xd0),
        )
        .unwrap();
    let new_item = keys
        .encrypt_item_with_nonce(
            &collection,
            &item,
            4,
            b"written at epoch 2",
            arr::<24>(0xf0),
        )
        .unwrap();
    for unlocked in [
        DiaryKeys::unlock_with_password(&bundle, password).unwrap(),
        DiaryKeys::unlock_with_recovery_code(
            &bundle,
            &RecoveryCode::from_entropy(entries[1].0).to_text(),
        )
        .unwrap(),
    ] {
        assert_eq!(unlocked.epoch(), 2);
        let pt = unlocked
            .decrypt_item(&collection, &item, 3, &old_item)
            .unwrap();
        assert_eq!(&*pt, b"written at epoch 0");
        let pt = unlocked
            .decrypt_item(&collection, &item, 4, &new_item)
            .unwrap();
        assert_eq!(&*pt, b"written at epoch 2");
    }
    let codes: Vec<Value> = entries
        .iter()
        .map(|(e, n)| {
            json!({"entropy": h(e), "nonce": h(n),
                "text": RecoveryCode::from_entropy(*e).to_text().as_str(),
                "kek": h(diary::hkdf32(Some(&rec_salt), e, &[RECOVERY_WRAP_LABEL]).as_slice())})
        })
        .collect();
    let factor = |f: &FactorSecret| json!({"secret": h(&f.secret), "auth": h(&f.auth), "public": h(&f.public())});
    json!({"description": "Diary key epochs, version-2 bundle (PROTOCOL.md §9.3)",
    "epoch": 2,
    "master_keys": masters.iter().enumerate()
        .map(|(e, k)| json!({"epoch": e, "key": h(k)})).collect::<Vec<_>>(),
    "password": h(password), "kdf_params": {"m_cost_kib": params.m_cost_kib,
    "t_cost": params.t_cost, "p_cost": params.p_cost}, "password_salt": h(&pw_salt),
    "password_nonce": h(&pw_nonce), "password_kek": h(kek.as_slice()),
    "password_factor": factor(&password_factor),
    "recovery_factor": factor(&recovery_factor),
    "recovery_salt": h(&rec_salt), "recovery_codes": codes,
    "password_ephemeral": h(&inputs.password_ephemeral),
    "recovery_ephemeral": h(&inputs.recovery_ephemeral),
    "keyring_nonce": h(&inputs.keyring_nonce),
    "bundle": h(&bundle.to_bytes()),
    "collection_id": h(&collection), "item_id": h(&item),
    "items": [
        {"epoch": 0, "revision": 3, "nonce": h(&arr::<24>(0xd0)),
         "plaintext": h(b"written at epoch 0"), "ciphertext": h(&old_item)},
        {"epoch": 2, "revision": 4, "nonce": h(&arr::<24>(0xf0)),
         "plaintext": h(b"written at epoch 2"), "ciphertext": h(&new_item)},
    ]})
}

pub(super) fn entry_fixture() -> diary::Entry {
    diary::Entry {
        title: "Lisbon, day 2".into(),
        body: "Walked up to the castle.\nPastéis de nata: 3.\n".into(),
        mood: Some("happy".into()),
        tags: vec!["travel".into(), "family".into()],
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_123_456,
        attachments: vec![diary::AttachmentRef {
            blob_id: arr::<16>(0x10),
            key: arr::<32>(0x40),
            plaintext_len: 123_456,
        }],
    }
}

pub(super) fn diary_entry_vectors() -> Value {
    use sha2::Digest as _;
    let master = arr::<32>(0x00);
    let keys = DiaryKeys::from_master(master);
    let collection = arr::<16>(0xc0);
    let item = arr::<16>(0xe0);
    let revision = 7u64;
    let body_nonce = arr::<24>(0x80);
    let meta_nonce = arr::<24>(0xa0);
    let entry = entry_fixture();
    let sealed = entry
        .seal_with_nonces(&keys, &collection, &item, revision, body_nonce, meta_nonce)
        .unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(&sealed.body).into();
    let body_pt = entry.encode_body().unwrap();
    let meta_pt = entry.encode_meta(&digest).unwrap();
    json!({"description": "Diary entry encoding and encryption (PROTOCOL.md §9.5)",
        "master_key": h(&master), "collection_id": h(&collection), "item_id": h(&item),
        "revision": revision, "entry": {"title": entry.title, "body": entry.body,
        "mood": entry.mood, "tags": entry.tags, "created_ms": entry.created_ms,
        "updated_ms": entry.updated_ms, "attachments": [{"blob_id": h(&arr::<16>(0x10)),
        "key": h(&arr::<32>(0x40)), "plaintext_len": 123_456}]},
        "body_plaintext": h(&body_pt), "body_nonce": h(&body_nonce),
        "body_ciphertext": h(&sealed.body), "body_digest": h(&digest),
        "meta_plaintext": h(&meta_pt), "meta_nonce": h(&meta_nonce),
        "meta_ciphertext": h(&sealed.meta)})
}

pub(super) fn attachment_vectors() -> Value {
    let cases: Vec<Value> = [(0usize, 0x01u8), (100, 0x02), (65_536, 0x03)]
        .iter()
        .map(|&(n, k)| {
            let key = AttachmentKey::from_bytes(arr::<32>(k));
            let sk = StreamKeys::derive(&key);
            let mut enc = AttachmentEncryptor::new(&key, n as u64).unwrap();
            let mut blob = enc.push(&pattern(n)).unwrap();
            let (tail, digest) = enc.finish().unwrap();
            blob.extend(tail);
            let mut v = json!({"key": h(key.as_bytes()), "nonce_prefix": h(&sk.nonce_prefix),
                "plaintext_len": n, "blob_len": blob.len(), "blob_sha256": h(&digest)});
            if n <= 100 {
                v["blob"] = json!(h(&blob));
            } else {
                v["blob_last_64"] = json!(h(&blob[blob.len() - 64..]));
            }
            v
        })
        .collect();
    json!({"description": "Attachment stream (PROTOCOL.md §10); plaintext byte i = i mod 251",
        "cases": cases})
}
