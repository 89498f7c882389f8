//! Targets for the client core (`haven-client-core`): channel entries from the relay, the
//! encrypted client store (its snapshot, its sealed rows and the records in them) and the
//! messenger's JSON records.

use std::sync::OnceLock;

use haven_client_core::{
    Backend, MemoryStore,
    messenger::{Contact, Epoch, GroupState, MessageRecord, ReactionRecord},
    store::{SNAPSHOT_LABEL, Space, address_key},
};
use haven_sdk::{
    IdentityStore, PreKeyStore, SenderKeyName, SenderKeyStore, SessionStore, StorageKey,
    groups::DistributionId, store::DeviceAddress,
};

use crate::fixture;

const GROUP: [u8; 16] = [0x6A; 16];

/// The epoch the channel-entry target opens entries of (a fixed group key).
pub fn epoch() -> &'static Epoch {
    static E: OnceLock<Epoch> = OnceLock::new();
    E.get_or_init(|| {
        let json = r#"{"epoch":2,"channel_id":"c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4",
            "read_token":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "write_token":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
            "group_key":"AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=","cursor":0}"#;
        serde_json::from_str(json).unwrap_or_else(|e| panic!("fuzz fixture: epoch: {e}"))
    })
}

/// Group channel entries (§13.3) as the relay serves them, and entries sealed under the fixed
/// epoch key around arbitrary plaintext (so the layout behind the AEAD is reached).
pub fn channel_entry(data: &[u8]) {
    use haven_client_core::messenger::{open_entry, seal_entry};
    let epoch = epoch();
    let _ = open_entry(&GROUP, epoch, data);
    let sender = DeviceAddress::new([0x5A; 16], 4);
    if let Ok(sealed) = seal_entry(&GROUP, epoch, &sender, data, &mut fixture::rng()) {
        let opened = open_entry(&GROUP, epoch, &sealed);
        assert_eq!(opened, Some((sender, data.to_vec())), "entry round trip");
    }
}

fn store() -> MemoryStore {
    MemoryStore::open_in_memory(&[0x33; 32])
        .unwrap_or_else(|e| panic!("fuzz fixture: memory store: {e}"))
}

/// The client store (§12): a whole-store snapshot (sealed, and its plaintext under a fixed
/// page key), a sealed row as a tampered database would hand it back, and each SDK record
/// (identity, prekeys, sessions, sender keys) stored as a value and read back through the
/// store traits. Reads must refuse what does not decode and never panic.
pub fn store_rows(data: &[u8]) {
    let page_key = StorageKey::from_bytes([0x44; 32]);
    let _ = MemoryStore::import(&page_key, data);
    let sealed = haven_sdk::snapshot::seal(&page_key, SNAPSHOT_LABEL, data, &mut fixture::rng());
    if let Ok(imported) = MemoryStore::import(&page_key, &sealed) {
        // What imported exports again (under a fresh nonce) and imports to the same rows.
        let again = imported
            .export(&page_key)
            .and_then(|s| MemoryStore::import(&page_key, &s));
        assert!(again.is_ok(), "an imported snapshot does not re-import");
    }

    let s = store();
    let peer = DeviceAddress::new([0x9E; 16], 5);
    let row = s.row_key(Space::SESSION, &address_key(&peer));
    if s.backend().put(Space::SESSION, &row, data).is_ok() {
        // Not sealed by this store: refused as corrupt.
        assert!(s.get(Space::SESSION, &address_key(&peer)).is_err());
        let _ = s.load_session(&peer);
        let _ = s.entries(Space::SESSION);
    }

    let id = 9u32.to_be_bytes();
    let name = SenderKeyName {
        distribution_id: DistributionId([0xD1; 16]),
        sender_account: [0x9E; 16].to_vec(),
        device_id: 5,
    };
    let mut own = 0u32.to_be_bytes().to_vec();
    own.extend_from_slice(data);
    let puts = [
        (Space::OWN_IDENTITY, b"own".to_vec(), own),
        (
            Space::PEER_IDENTITY,
            address_key(&peer).to_vec(),
            data.to_vec(),
        ),
        (Space::SIGNED_PREKEY, id.to_vec(), data.to_vec()),
        (Space::ONE_TIME_PREKEY, id.to_vec(), data.to_vec()),
        (Space::KEM_PREKEY, id.to_vec(), data.to_vec()),
        (Space::SESSION, address_key(&peer).to_vec(), data.to_vec()),
    ];
    for (space, key, value) in puts {
        if s.put(space, &key, &value).is_err() {
            return;
        }
    }
    let _ = s.identity_key_pair();
    let _ = s.local_registration_id();
    let _ = s.peer_identity(&peer);
    let _ = s.signed_prekey(9);
    let _ = s.signed_prekey_ages();
    let _ = s.one_time_prekey(9);
    let _ = s.kem_prekey(9);
    let _ = s.load_session(&peer);
    let _ = s.load_sender_key(&name);
}

/// The messenger's JSON records (§13.6): contacts, messages, reactions, groups and epochs, as
/// read back from the store. Decoding then encoding then decoding is stable.
pub fn messenger_records(data: &[u8]) {
    fn stable<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
        if let Ok(value) = serde_json::from_slice::<T>(data) {
            let Ok(once) = serde_json::to_vec(&value) else {
                panic!("a decoded record does not serialise");
            };
            let Ok(again) = serde_json::from_slice::<T>(&once) else {
                panic!("a record does not decode after re-encoding");
            };
            assert_eq!(serde_json::to_vec(&again).ok(), Some(once));
        }
    }
    stable::<Contact>(data);
    stable::<MessageRecord>(data);
    stable::<ReactionRecord>(data);
    stable::<GroupState>(data);
    stable::<Epoch>(data);
}
