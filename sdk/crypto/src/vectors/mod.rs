//! Deterministic test vectors (`sdk/vectors/*.json`): every input and output in hex.
//!
//! [`build_json`] recomputes a vector file from its fixed inputs with this build of the core. The
//! crate's own tests compare the result with the committed files; the Python (uniffi) and
//! WebAssembly bindings call the same function, so every build of the core is checked against the
//! same bytes. `HAVEN_WRITE_VECTORS=1 cargo test -p haven-sdk vectors -- --ignored` rewrites the
//! files.
//!
//! Available with the `test-vectors` feature. The builders run on fixed inputs and assert the
//! decrypt direction as they go: a panic here means this build of the core disagrees with
//! itself, which is exactly what the vectors exist to reveal, so they are allowed to panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod data;
mod ed25519;
mod franking;
mod session;
mod state;
mod wire;

pub use state::{FixedBytesRng, refusal};

use alloc::string::String;
use serde_json::Value;

/// Names of the vector sets, each the stem of a file in `sdk/vectors/`.
pub const NAMES: [&str; 22] = [
    "padding",
    "sender_keys",
    "group_change",
    "diary",
    "diary_epochs",
    "attachment",
    "diary_entry",
    "pqxdh",
    "ratchet",
    "sealed_sender",
    "safety_number",
    "account",
    "franking",
    "ed25519",
    "ratchet_out_of_order",
    "sender_keys_out_of_order",
    "pickles",
    "diary_index",
    "frames",
    "content",
    "attachment_pointer",
    "session_pickle_v1",
];

/// Recomputes the vector set `name` as a JSON value; `None` for an unknown name.
pub fn build(name: &str) -> Option<Value> {
    Some(match name {
        "padding" => data::padding_vectors(),
        "sender_keys" => data::sender_key_vectors(),
        "group_change" => data::group_change_vectors(),
        "diary" => data::diary_vectors(),
        "diary_epochs" => data::diary_epoch_vectors(),
        "attachment" => data::attachment_vectors(),
        "diary_entry" => data::diary_entry_vectors(),
        "pqxdh" => session::pqxdh_vectors(),
        "ratchet" => session::ratchet_vectors(),
        "sealed_sender" => session::sealed_sender_vectors(),
        "safety_number" => session::safety_number_vectors(),
        "account" => session::account_vectors(),
        "franking" => franking::franking_vectors(),
        "ed25519" => ed25519::ed25519_vectors(),
        "ratchet_out_of_order" => state::ratchet_out_of_order_vectors(),
        "sender_keys_out_of_order" => state::sender_keys_out_of_order_vectors(),
        "pickles" => state::pickle_vectors(),
        "diary_index" => state::diary_index_vectors(),
        "frames" => wire::frame_vectors(),
        "content" => wire::content_vectors(),
        "attachment_pointer" => wire::attachment_pointer_vectors(),
        "session_pickle_v1" => state::session_pickle_v1_vectors(),
        _ => return None,
    })
}

/// Recomputes the vector set `name` as the exact text of its committed file (pretty JSON with a
/// final newline); `None` for an unknown name.
pub fn build_json(name: &str) -> Option<String> {
    let value = build(name)?;
    serde_json::to_string_pretty(&value).ok().map(|s| s + "\n")
}

#[cfg(test)]
mod tests {
    use super::data::{entry_fixture, pattern};
    use super::*;
    use crate::attachment::{AttachmentDecryptor, AttachmentKey};
    use crate::diary::{self, DiaryKeys, WrappedKeyBundle};
    use crate::groups::{SenderKeyDistributionMessage, SenderKeyRecord};

    fn path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../vectors")
            .join(format!("{name}.json"))
    }

    fn load(name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path(name)).unwrap()).unwrap()
    }

    fn unhex(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().unwrap()).unwrap()
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
                build(name).unwrap(),
                load(name),
                "vector set {name} differs from sdk/vectors/{name}.json"
            );
            // Byte for byte, as the bindings compare it.
            assert_eq!(
                build_json(name).unwrap(),
                std::fs::read_to_string(path(name)).unwrap(),
                "sdk/vectors/{name}.json is not in canonical form"
            );
        }
        assert!(build("nope").is_none());
        assert!(build_json("").is_none());
    }

    #[test]
    fn vectors_decrypt() {
        let sk = load("sender_keys");
        let skdm =
            SenderKeyDistributionMessage::from_bytes(&unhex(&sk["distribution_message"])).unwrap();
        let mut record = SenderKeyRecord::new(&skdm);
        for m in sk["messages"].as_array().unwrap().iter().rev() {
            assert_eq!(
                record.decrypt(&unhex(&m["message"])).unwrap(),
                unhex(&m["plaintext"])
            );
        }

        let d = load("diary");
        let bundle = WrappedKeyBundle::from_bytes(&unhex(&d["bundle"])).unwrap();
        let keys = DiaryKeys::unlock_with_password(&bundle, &unhex(&d["password"])).unwrap();
        let coll: [u8; 16] = unhex(&d["collection_id"]).try_into().unwrap();
        let item: [u8; 16] = unhex(&d["item_id"]).try_into().unwrap();
        let pt = keys
            .decrypt_item(&coll, &item, 42, &unhex(&d["item_ciphertext"]))
            .unwrap();
        assert_eq!(*pt, unhex(&d["item_plaintext"]));
        for c in d["recovery_codes"].as_array().unwrap() {
            let k =
                DiaryKeys::unlock_with_recovery_code(&bundle, c["text"].as_str().unwrap()).unwrap();
            assert!(
                k.decrypt_item(&coll, &item, 42, &unhex(&d["item_ciphertext"]))
                    .is_ok()
            );
        }

        let de = load("diary_entry");
        let keys = DiaryKeys::from_master(unhex(&de["master_key"]).try_into().unwrap());
        let coll: [u8; 16] = unhex(&de["collection_id"]).try_into().unwrap();
        let item: [u8; 16] = unhex(&de["item_id"]).try_into().unwrap();
        let sealed = diary::SealedEntry {
            body: unhex(&de["body_ciphertext"]),
            meta: unhex(&de["meta_ciphertext"]),
        };
        let rev = de["revision"].as_u64().unwrap();
        assert_eq!(
            diary::Entry::open(&keys, &coll, &item, rev, &sealed).unwrap(),
            entry_fixture()
        );
        assert!(diary::Entry::open(&keys, &coll, &item, rev + 1, &sealed).is_err());

        let a = load("attachment");
        for c in a["cases"].as_array().unwrap() {
            if c.get("blob").is_none() {
                continue;
            }
            let key = AttachmentKey::from_bytes(unhex(&c["key"]).try_into().unwrap());
            let digest: [u8; 32] = unhex(&c["blob_sha256"]).try_into().unwrap();
            let mut dec = AttachmentDecryptor::new(&key, digest);
            let mut out = dec.push(&unhex(&c["blob"])).unwrap();
            out.extend(dec.finish().unwrap());
            assert_eq!(out, pattern(c["plaintext_len"].as_u64().unwrap() as usize));
        }
    }
}
