//! Deterministic test vectors of the client core's formats (`sdk/vectors/*.json`, beside the
//! SDK's): the encrypted client store's rows (PROTOCOL §12), group distribution ids and channel
//! entries (§13.3), the diary's key-bundle item (§11.16.1), the web's memory-store snapshot
//! (§12.1) and the upload resume state (§14).
//!
//! As [`haven_sdk::vectors`]: [`build_json`] recomputes a file from its fixed inputs, this
//! crate's tests compare the result with the committed files, and the bindings call the same
//! function. [`all_names`] and [`build_any_json`] cover the SDK's sets and these, so a binding
//! has one entry point for every file. `HAVEN_WRITE_VECTORS=1 cargo test -p haven-client-core
//! --features test-vectors vectors -- --ignored` rewrites these files.
//!
//! Available with the `test-vectors` feature. The builders assert the reverse direction as they
//! go, so they are allowed to panic (as the SDK's).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use haven_sdk::diary::WrappedKeyBundle;
use haven_sdk::snapshot::{self, StorageKey};
use haven_sdk::store::DeviceAddress;
use haven_sdk::vectors::{FixedBytesRng, refusal};
use serde_json::{Value, json};

use crate::attachments::PendingUpload;
use crate::diary::bundle::{decode_bundle_item, encode_bundle_item};
use crate::messenger::{Epoch, distribution_id, open_entry, seal_entry};
use crate::store::{
    Backend, CHECK_LABEL, CHECK_PLAINTEXT, INDEX_KEY_INFO, MemoryBackend, MemoryStore,
    SNAPSHOT_LABEL, Space, VALUE_KEY_INFO, derive,
};

/// Names of the client core's vector sets, each the stem of a file in `sdk/vectors/`.
pub const NAMES: [&str; 5] = [
    "client_store",
    "group_entries",
    "diary_bundle_item",
    "memory_store_snapshot",
    "upload_resume",
];

/// Recomputes the client core's vector set `name`; `None` for another name.
#[must_use]
pub fn build(name: &str) -> Option<Value> {
    Some(match name {
        "client_store" => client_store_vectors(),
        "group_entries" => group_entry_vectors(),
        "diary_bundle_item" => diary_bundle_item_vectors(),
        "memory_store_snapshot" => memory_store_snapshot_vectors(),
        "upload_resume" => upload_resume_vectors(),
        _ => return None,
    })
}

/// Recomputes the client core's vector set `name` as the exact text of its committed file;
/// `None` for another name.
#[must_use]
pub fn build_json(name: &str) -> Option<String> {
    let value = build(name)?;
    serde_json::to_string_pretty(&value).ok().map(|s| s + "\n")
}

/// Every vector set: the SDK's ([`haven_sdk::vectors::NAMES`]) then the client core's.
#[must_use]
pub fn all_names() -> Vec<&'static str> {
    haven_sdk::vectors::NAMES
        .iter()
        .chain(NAMES.iter())
        .copied()
        .collect()
}

/// Recomputes any vector set (the SDK's or the client core's) as the text of its file.
#[must_use]
pub fn build_any_json(name: &str) -> Option<String> {
    build_json(name).or_else(|| haven_sdk::vectors::build_json(name))
}

fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn nonce(tag: u8) -> [u8; 24] {
    core::array::from_fn(|i| tag.wrapping_add(i as u8))
}

/// The store's rows (§12): keys, row keys, sealed values, the check value.
fn client_store_vectors() -> Value {
    let storage_key = [0x5B; 32];
    let value_key = derive(&storage_key, VALUE_KEY_INFO).unwrap();
    let index_key = derive(&storage_key, INDEX_KEY_INFO).unwrap();
    let check = snapshot::seal(
        &StorageKey::from_bytes(*value_key),
        CHECK_LABEL,
        CHECK_PLAINTEXT,
        &mut FixedBytesRng::new(&nonce(0x20)),
    );
    let backend = MemoryBackend::in_memory().unwrap();
    backend.set_meta("schema", &1i64.to_be_bytes()).unwrap();
    backend.set_meta("check", &check).unwrap();
    let store = MemoryStore::with_backend(backend, &storage_key).unwrap();
    let identity =
        haven_sdk::identity::IdentityKeyPair::from_secret_bytes(&[0xB0; 32], &[0xB2; 32]);
    let own = [&4242u32.to_be_bytes()[..], &identity.to_bytes()[..]].concat();
    let peer = [[0xA1; 16].as_slice(), &3u32.to_be_bytes()].concat();
    let base = [&1u32.to_be_bytes()[..], &[0xEA; 32]].concat();
    let rows: Vec<(&str, Space, Vec<u8>, Vec<u8>)> = vec![
        ("own identity", Space::OWN_IDENTITY, b"own".to_vec(), own),
        (
            "peer identity",
            Space::PEER_IDENTITY,
            peer,
            identity.public().to_bytes().to_vec(),
        ),
        ("seen base key", Space::SEEN_BASE_KEY, base, vec![0x01]),
        (
            "device setting device_number",
            Space::app(0xF0),
            b"device_number".to_vec(),
            3u32.to_be_bytes().to_vec(),
        ),
        (
            "diary setting (empty value)",
            Space::app(0x40),
            b"collection".to_vec(),
            Vec::new(),
        ),
    ];
    let mut cases = Vec::new();
    for (i, (name, space, key, value)) in rows.iter().enumerate() {
        let (row, sealed) = store.seal_row_with(
            *space,
            key,
            value,
            &mut FixedBytesRng::new(&nonce(0x40 + 0x20 * i as u8)),
        );
        store.backend().put(*space, &row, &sealed).unwrap();
        assert_eq!(
            store.get(*space, key).unwrap().unwrap().as_slice(),
            value.as_slice()
        );
        cases.push(json!({"name": name, "space": space.value(), "natural_key": h(key),
            "record": h(value), "nonce": h(&nonce(0x40 + 0x20 * i as u8)), "row": h(&row), "value": h(&sealed)}));
    }
    // Refusals: a value filed under another row or space, a flipped bit, a wrong storage key.
    let mut refusals = Vec::new();
    let sealed_0 = unhex(&cases[3]["value"]);
    let other = (Space::app(0xF0), b"device_id".to_vec());
    store
        .backend()
        .put(other.0, &store.row_key(other.0, &other.1), &sealed_0)
        .unwrap();
    let e = store.get(other.0, &other.1).unwrap_err();
    refusals.push(json!({"case": "the value of device_number filed under the row of device_id", "space": other.0.value(),
        "natural_key": h(&other.1), "row": h(&store.row_key(other.0, &other.1)), "value": h(&sealed_0), "refusal": refusal(e)}));
    let moved = Space::app(0xF1);
    store
        .backend()
        .put(moved, &store.row_key(moved, b"device_number"), &sealed_0)
        .unwrap();
    let e = store.get(moved, b"device_number").unwrap_err();
    refusals.push(json!({"case": "the value of device_number filed in space 0x01F1", "space": moved.value(),
        "natural_key": h(b"device_number"), "row": h(&store.row_key(moved, b"device_number")), "value": h(&sealed_0), "refusal": refusal(e)}));
    let mut flipped = sealed_0.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let space = Space::app(0xF0);
    store
        .backend()
        .put(space, &store.row_key(space, b"device_number"), &flipped)
        .unwrap();
    let e = store.get(space, b"device_number").unwrap_err();
    refusals.push(json!({"case": "flipped tag bit", "space": space.value(), "natural_key": h(b"device_number"),
        "row": cases[3]["row"], "value": h(&flipped), "refusal": refusal(e)}));
    let wrong_key = [0x5C; 32];
    let backend = MemoryBackend::in_memory().unwrap();
    backend.set_meta("schema", &1i64.to_be_bytes()).unwrap();
    backend.set_meta("check", &check).unwrap();
    let e = MemoryStore::with_backend(backend, &wrong_key)
        .err()
        .unwrap();
    refusals.push(json!({"case": "the check value opened with another storage key", "storage_key": h(&wrong_key),
        "check": h(&check), "refusal": refusal(e)}));
    json!({
        "description": "The encrypted client store (PROTOCOL.md §12): the keys derived from `storage_key`, the meta values and rows as the backend holds them (`row` = kv.key, `value` = kv.value, sealed with the listed nonce). `refusals` are rows a reader refuses (`Corrupt`) and a check value that does not open under another storage key (`WrongKey`).",
        "storage_key": h(&storage_key),
        "value_key": h(&value_key[..]),
        "index_key": h(&index_key[..]),
        "meta": {"schema": h(&1i64.to_be_bytes()), "check_nonce": h(&nonce(0x20)), "check": h(&check)},
        "rows": cases,
        "refusals": refusals,
    })
}

/// Group distribution ids and channel entries (§13.3).
fn group_entry_vectors() -> Value {
    let group = [0x6A; 16];
    let ids: Vec<Value> = [1u32, 2, 0xFFFF_FFFF]
        .iter()
        .map(|e| json!({"epoch": e, "distribution_id": h(&distribution_id(&group, *e).0)}))
        .collect();
    let sk = haven_sdk::vectors::build("sender_keys").unwrap();
    let message = unhex(&sk["messages"][0]["message"]);
    let epoch = Epoch::from_parts(2, [0xCE; 16], [0x70; 32], [0x71; 32], [0x72; 32]);
    let sender = DeviceAddress::new([0xA1; 16], 3);
    let n = nonce(0x90);
    let entry = seal_entry(
        &group,
        &epoch,
        &sender,
        &message,
        &mut FixedBytesRng::new(&n),
    )
    .unwrap();
    let (from, opened) = open_entry(&group, &epoch, &entry).unwrap();
    assert_eq!((from, opened.as_slice()), (sender, message.as_slice()));
    let mut refusals = Vec::new();
    let other_epoch = Epoch::from_parts(3, [0xCE; 16], [0x70; 32], [0x71; 32], [0x72; 32]);
    assert!(open_entry(&group, &other_epoch, &entry).is_none());
    refusals.push(json!({"case": "opened as epoch 3", "epoch": 3, "channel_id": h(&[0xCE; 16]), "entry": h(&entry)}));
    let other_channel = Epoch::from_parts(2, [0xCF; 16], [0x70; 32], [0x71; 32], [0x72; 32]);
    assert!(open_entry(&group, &other_channel, &entry).is_none());
    refusals.push(json!({"case": "opened as another channel", "epoch": 2, "channel_id": h(&[0xCF; 16]), "entry": h(&entry)}));
    let mut flipped = entry.clone();
    flipped[30] ^= 1;
    assert!(open_entry(&group, &epoch, &flipped).is_none());
    refusals.push(json!({"case": "flipped ciphertext bit", "epoch": 2, "channel_id": h(&[0xCE; 16]), "entry": h(&flipped)}));
    let short = entry[..24 + 16 + 19].to_vec();
    assert!(open_entry(&group, &epoch, &short).is_none());
    refusals.push(json!({"case": "shorter than nonce, tag, sender account and device", "epoch": 2, "channel_id": h(&[0xCE; 16]), "entry": h(&short)}));
    json!({
        "description": "Groups (PROTOCOL.md §13.3): distribution ids of group `group_id` at several epochs, and a channel entry of epoch 2 sealed with the listed nonce; its sender-key message is sender_keys.json's first message. `refusals` are entries that do not open under the given epoch and channel (same group and group key).",
        "group_id": h(&group),
        "distribution_ids": ids,
        "entry": {
            "epoch": 2, "channel_id": h(&[0xCE; 16]), "group_key": h(&[0x72; 32]),
            "sender_account": h(&sender.account_id), "sender_device": sender.device_id,
            "sender_key_message": h(&message), "nonce": h(&n), "entry": h(&entry),
        },
        "refusals": refusals,
    })
}

/// The diary's reserved key-bundle item (§11.16.1).
fn diary_bundle_item_vectors() -> Value {
    let d = haven_sdk::vectors::build("diary").unwrap();
    let bundle_bytes = unhex(&d["bundle"]);
    let bundle = WrappedKeyBundle::from_bytes(&bundle_bytes).unwrap();
    let collection = [0xC0; 16];
    let body = encode_bundle_item(&bundle, &collection);
    let (back, coll) = decode_bundle_item(&body).unwrap();
    assert_eq!((back.to_bytes(), coll), (bundle_bytes.clone(), collection));
    let meta = vec![0u8; usize::try_from(haven_protocol::vault::MIN_ITEM_LEN).unwrap()];
    let with = |i: usize, v: u8| {
        let mut b = body.clone();
        b[i] = v;
        b
    };
    let mut long = body.clone();
    long[17..21].copy_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("format 0x02", with(0, 0x02)),
        ("non-zero filler", with(body.len() - 1, 0x01)),
        ("length past the end", long),
        (
            "bundle that does not decode (version byte 0x00)",
            with(21, 0x00),
        ),
        ("empty", Vec::new()),
    ];
    let mut refusals = Vec::new();
    for (case, b) in bad {
        let e = decode_bundle_item(&b).err().unwrap();
        refusals.push(json!({"case": case, "body": h(&b), "refusal": refusal(e)}));
    }
    json!({
        "description": "The diary's key-bundle item (PROTOCOL.md §11.16.1): the body and meta blobs of the reserved vault item for the wrapped key bundle of diary.json and the collection id below. `refusals` are bodies a reader refuses.",
        "collection_id": h(&collection),
        "bundle": h(&bundle_bytes),
        "body": h(&body),
        "meta": h(&meta),
        "refusals": refusals,
    })
}

/// The web's memory-store snapshot (§12.1): the tables of `client_store.json` (its meta and
/// first two rows) exported under a page key, and snapshots an import refuses.
fn memory_store_snapshot_vectors() -> Value {
    let cs = client_store_vectors();
    let storage_key = unhex(&cs["storage_key"]);
    let storage_key: [u8; 32] = storage_key.try_into().unwrap();
    let meta = [
        ("check", unhex(&cs["meta"]["check"])),
        ("schema", unhex(&cs["meta"]["schema"])),
    ];
    let mut rows: Vec<(u16, Vec<u8>, Vec<u8>)> = cs["rows"].as_array().unwrap()[..2]
        .iter()
        .map(|r| {
            let space = u16::try_from(r["space"].as_u64().unwrap()).unwrap();
            (space, unhex(&r["row"]), unhex(&r["value"]))
        })
        .collect();
    rows.sort();
    let backend = MemoryBackend::in_memory().unwrap();
    for (name, value) in &meta {
        backend.set_meta(name, value).unwrap();
    }
    for (space, row, value) in &rows {
        let row: [u8; 32] = row.clone().try_into().unwrap();
        let space = [Space::OWN_IDENTITY, Space::PEER_IDENTITY]
            .into_iter()
            .find(|s| s.value() == *space)
            .unwrap();
        backend.put(space, &row, value).unwrap();
    }
    let store = MemoryStore::with_backend(backend, &storage_key).unwrap();
    let page_key = [0x7A; 32];
    let page = StorageKey::from_bytes(page_key);
    let n = nonce(0xA0);
    let sealed = store
        .export_with(&page, &mut FixedBytesRng::new(&n))
        .unwrap();
    let plaintext = snapshot::open(&page, SNAPSHOT_LABEL, &sealed).unwrap();
    let back = MemoryStore::import(&page, &sealed).unwrap();
    assert_eq!(
        back.get(Space::OWN_IDENTITY, b"own")
            .unwrap()
            .unwrap()
            .as_slice(),
        unhex(&cs["rows"][0]["record"]).as_slice()
    );
    // Refusals: plaintexts sealed under the page key with the listed nonce, and two sealed
    // snapshots that do not open.
    let plain = |version: u8,
                 key: &[u8; 32],
                 meta: &[(&str, Vec<u8>)],
                 rows: &[(u16, Vec<u8>, Vec<u8>)],
                 tail: &[u8]| {
        let mut p = vec![version];
        p.extend_from_slice(key);
        p.extend_from_slice(&u32::try_from(meta.len()).unwrap().to_be_bytes());
        for (name, value) in meta {
            haven_protocol::encoding::put_bytes_u32(&mut p, name.as_bytes());
            haven_protocol::encoding::put_bytes_u32(&mut p, value);
        }
        p.extend_from_slice(&u32::try_from(rows.len()).unwrap().to_be_bytes());
        for (space, row, value) in rows {
            p.extend_from_slice(&space.to_be_bytes());
            p.extend_from_slice(row);
            haven_protocol::encoding::put_bytes_u32(&mut p, value);
        }
        p.extend_from_slice(tail);
        p
    };
    assert_eq!(
        plain(0x01, &storage_key, &meta, &rows, &[]).as_slice(),
        plaintext.as_slice()
    );
    let long_name = "n".repeat(65);
    let mut long_meta = meta.to_vec();
    long_meta.push((long_name.as_str(), vec![0x00]));
    let dup_meta = [meta[0].clone(), meta[0].clone(), meta[1].clone()];
    let dup_rows = [rows[0].clone(), rows[0].clone(), rows[1].clone()];
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (
            "version byte 0x02",
            plain(0x02, &storage_key, &meta, &rows, &[]),
        ),
        (
            "duplicate meta name",
            plain(0x01, &storage_key, &dup_meta, &rows, &[]),
        ),
        (
            "duplicate row",
            plain(0x01, &storage_key, &meta, &dup_rows, &[]),
        ),
        (
            "trailing byte",
            plain(0x01, &storage_key, &meta, &rows, &[0x00]),
        ),
        (
            "meta name of 65 bytes",
            plain(0x01, &storage_key, &long_meta, &rows, &[]),
        ),
        (
            "another storage key inside (the check value does not open)",
            plain(0x01, &[0x5C; 32], &meta, &rows, &[]),
        ),
    ];
    let mut refusals = Vec::new();
    for (i, (case, p)) in bad.into_iter().enumerate() {
        let rn = nonce(0xC0 + u8::try_from(i).unwrap());
        let s = snapshot::seal(&page, SNAPSHOT_LABEL, &p, &mut FixedBytesRng::new(&rn));
        let e = MemoryStore::import(&page, &s).err().unwrap();
        refusals.push(
            json!({"case": case, "page_key": h(&page_key), "plaintext": h(&p), "nonce": h(&rn),
            "snapshot": h(&s), "refusal": refusal(e)}),
        );
    }
    let other = [0x7B; 32];
    let e = MemoryStore::import(&StorageKey::from_bytes(other), &sealed)
        .err()
        .unwrap();
    refusals.push(json!({"case": "opened with another page key", "page_key": h(&other), "snapshot": h(&sealed), "refusal": refusal(e)}));
    let mut flipped = sealed.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let e = MemoryStore::import(&page, &flipped).err().unwrap();
    refusals.push(json!({"case": "flipped tag bit", "page_key": h(&page_key), "snapshot": h(&flipped), "refusal": refusal(e)}));
    json!({
        "description": "The web's memory-store snapshot (PROTOCOL.md §12.1): the store of client_store.json (its storage key, both meta values and its first two rows, in the order a writer lists them: meta by name, rows by space then row) exported under `page_key` with the listed nonce. `refusals` are snapshots an import refuses: plaintexts sealed under their `page_key` with their nonce (`MalformedSnapshot`, or `WrongKey` when the storage key inside does not open the check value), and a snapshot opened with another page key or with a flipped bit (`WrongKey`).",
        "page_key": h(&page_key),
        "storage_key": h(&storage_key),
        "meta": meta.iter().map(|(n, v)| json!({"name": n, "value": h(v)})).collect::<Vec<_>>(),
        "rows": rows.iter().map(|(s, r, v)| json!({"space": s, "row": h(r), "value": h(v)})).collect::<Vec<_>>(),
        "plaintext": h(&plaintext),
        "nonce": h(&n),
        "snapshot": h(&sealed),
        "refusals": refusals,
    })
}

/// The upload resume state (§14, `PendingUpload`).
fn upload_resume_vectors() -> Value {
    let inputs: [([u8; 16], [u8; 32], u64); 3] = [
        ([0x3D; 16], [0x4E; 32], 0),
        ([0x3E; 16], [0x4F; 32], 1_234_567),
        ([0x3F; 16], [0x50; 32], (1 << 36) - 9),
    ];
    let mut cases = Vec::new();
    for (blob_id, key, size) in inputs {
        let up = PendingUpload {
            blob_id,
            key: haven_sdk::attachment::AttachmentKey::from_bytes(key),
            size,
        };
        let bytes = up.to_bytes();
        let back = PendingUpload::from_bytes(&bytes).unwrap();
        assert_eq!(
            (back.blob_id, back.key.as_bytes(), back.size),
            (blob_id, &key, size)
        );
        cases.push(
            json!({"blob_id": h(&blob_id), "key": h(&key), "size": size, "state": h(&bytes)}),
        );
    }
    let good = unhex(&cases[1]["state"]);
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        b
    };
    let mut too_big = good.clone();
    too_big[49..57].copy_from_slice(&((1u64 << 36) - 8).to_be_bytes());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("version byte 0x02", with(0, 0x02)),
        ("one byte short", good[..56].to_vec()),
        ("trailing byte", [good.as_slice(), &[0x00]].concat()),
        ("size 2^36 - 8 (no attachment_padded_len)", too_big),
        ("empty", Vec::new()),
    ];
    let mut refusals = Vec::new();
    for (case, b) in bad {
        let e = PendingUpload::from_bytes(&b).err().unwrap();
        refusals.push(json!({"case": case, "state": h(&b), "refusal": refusal(e)}));
    }
    json!({
        "description": "The upload resume state (PROTOCOL.md §14, `PendingUpload`): blob id, attachment key and plaintext size encoded. `refusals` are states a reader refuses.",
        "cases": cases,
        "refusals": refusals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../vectors")
            .join(format!("{name}.json"))
    }

    #[test]
    #[ignore = "writes sdk/vectors; run with HAVEN_WRITE_VECTORS=1"]
    fn generate_vectors() {
        if std::env::var("HAVEN_WRITE_VECTORS").is_err() {
            return;
        }
        for name in NAMES {
            std::fs::write(path(name), build_json(name).unwrap()).unwrap();
        }
    }

    #[test]
    fn vectors_match_committed_files() {
        for name in NAMES {
            assert_eq!(
                build_json(name).unwrap(),
                std::fs::read_to_string(path(name)).unwrap(),
                "sdk/vectors/{name}.json differs from a rebuild"
            );
        }
        assert!(build("pickles").is_none());
        assert!(build_any_json("pickles").is_some());
        assert!(build_any_json("nope").is_none());
        // Every committed file is built by one of the two crates.
        let mut files: Vec<String> = std::fs::read_dir(path("x").parent().unwrap())
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "json").then(|| p.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
        files.sort();
        let mut names: Vec<String> = all_names().iter().map(|n| (*n).to_owned()).collect();
        names.sort();
        assert_eq!(files, names);
    }
}
