#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use haven_sdk::snapshot::StorageKey;

use super::*;

const ENTRY: &str = r#"{"title":"Sunday","body":"Walked to the harbour.","tags":["sea"],"createdMs":1,"updatedMs":2}"#;

#[test]
fn create_seal_unlock_open_and_typed_failures() {
    let mut d = DiaryCore::create(b"pass phrase", 19 * 1024, 2).unwrap();
    assert_eq!(d.take_recovery_codes().len(), 10);
    assert!(d.take_recovery_codes().is_empty());
    let sealed = d.encrypt_entry(ENTRY, None, 0).unwrap();
    let record = d.record();
    // The record is the §11.16.1 bundle item body without its filler.
    assert_eq!(record[0], 0x01);
    assert_eq!(hex::encode(&record[1..17]), d.collection_id());
    let again = DiaryCore::unlock(&record, b"pass phrase").unwrap();
    let text = again
        .decrypt_entry(&sealed.item_id, 0, &sealed.body, &sealed.meta)
        .unwrap();
    assert!(text.contains("Walked to the harbour."));
    assert_eq!(
        DiaryCore::unlock(&record, b"wrong").unwrap_err().code,
        ErrorCode::WrongPassword
    );
    assert_eq!(
        again
            .decrypt_entry(&sealed.item_id, 1, &sealed.body, &sealed.meta)
            .unwrap_err()
            .code,
        ErrorCode::DecryptionFailed
    );
    for n in 0..30 {
        assert_eq!(
            DiaryCore::unlock(&record[..n], b"pass phrase")
                .unwrap_err()
                .code,
            ErrorCode::Malformed
        );
    }
    let mut trailing = record.clone();
    trailing.push(1);
    assert_eq!(
        DiaryCore::unlock(&trailing, b"pass phrase")
            .unwrap_err()
            .code,
        ErrorCode::Malformed
    );
    assert_eq!(
        DiaryCore::create(b"p", 1024, 1).unwrap_err().code,
        ErrorCode::Limit
    );
    assert_eq!(
        d.encrypt_entry("{", None, 0).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        d.encrypt_entry("{}", Some("XYZ"), 0).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
}

/// The relay's answer to a vault write of revision `revision`.
fn written(revision: u64) -> String {
    format!(
        r#"{{"item_id":"{}","revision":{revision},"deleted":false,"sync_token":{revision},"created_at":0,"updated_at":0}}"#,
        "00".repeat(16)
    )
}

#[test]
fn synced_diary_steps_in_order_and_local_state_across_an_export() {
    let mut d = SyncedDiaryCore::new().unwrap();
    // Nothing to do while locked or idle.
    assert_eq!(d.begin_sync().unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(d.next_request().unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(
        d.answer(200, "{}").unwrap_err().code,
        ErrorCode::InvalidState
    );
    assert_eq!(d.write(ENTRY).unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(
        d.begin_create(b"", 19 * 1024, 2).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        d.begin_create(b"pw", 1024, 1).unwrap_err().code,
        ErrorCode::Limit
    );

    // Create: one PUT of the bundle item; a 409 means the account has a diary already.
    d.begin_create(b"diary pass", 19 * 1024, 2).unwrap();
    assert_eq!(d.begin_sync().unwrap_err().code, ErrorCode::InvalidState);
    let put = d.next_request().unwrap().unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.path,
        format!("/v1/vault/{0}/items/{0}", "00".repeat(16))
    );
    assert!(
        put.body
            .as_deref()
            .unwrap()
            .contains("\"expected_revision\":0")
    );
    assert_eq!(d.next_request().unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(d.finish().unwrap_err().code, ErrorCode::InvalidState);
    let conflict = r#"{"error":{"code":"revision_conflict","message":"m","current_revision":1,"deleted":false}}"#;
    assert_eq!(
        d.answer(409, conflict).unwrap_err().code,
        ErrorCode::Conflict
    );
    assert!(!d.is_unlocked());

    d.begin_create(b"diary pass", 19 * 1024, 2).unwrap();
    d.next_request().unwrap().unwrap();
    d.answer(200, &written(1)).unwrap();
    assert!(d.next_request().unwrap().is_none());
    let outcome: serde_json::Value = serde_json::from_str(&d.finish().unwrap()).unwrap();
    assert_eq!(outcome["recoveryCodes"].as_array().unwrap().len(), 10);
    assert!(d.is_unlocked());

    // Local first: written and listed before any sync.
    let id = d.write(ENTRY).unwrap();
    assert_eq!(d.write("{").unwrap_err().code, ErrorCode::InvalidArgument);
    assert_eq!(
        d.write(r#"{"title":"x","extra":1}"#).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    let listed: serde_json::Value = serde_json::from_str(&d.list("{}").unwrap()).unwrap();
    assert_eq!(listed[0]["itemId"], id.as_str());
    assert_eq!(listed[0]["pending"], true);
    assert_eq!(listed[0]["revision"], 0);
    assert_eq!(listed[0]["entry"]["title"], "Sunday");
    let found: serde_json::Value =
        serde_json::from_str(&d.list(r#"{"text":"harb"}"#).unwrap()).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(
        d.list(r#"{"nope":1}"#).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    d.edit(&id, r#"{"title":"Monday","body":"rain"}"#).unwrap();
    assert!(d.show(&id).unwrap().unwrap().contains("Monday"));
    assert_eq!(
        d.edit(&"ab".repeat(16), ENTRY).unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        d.edit("nope", ENTRY).unwrap_err().code,
        ErrorCode::InvalidArgument
    );

    // A sync pushes the entry; a refusal it does not expect ends it as `refused`.
    d.begin_sync().unwrap();
    let first = d.next_request().unwrap().unwrap();
    assert_eq!(first.method, "PUT");
    assert_eq!(
        d.answer(
            507,
            r#"{"error":{"code":"vault_byte_quota_exceeded","message":"full"}}"#
        )
        .unwrap_err()
        .code,
        ErrorCode::Refused
    );
    assert_eq!(d.next_request().unwrap_err().code, ErrorCode::InvalidState);

    // The state survives an export: unlocking it again needs no request.
    let key = StorageKey::from_bytes([9; 32]);
    let snapshot = d.export(&key).unwrap();
    let mut again = SyncedDiaryCore::import(&key, &snapshot).unwrap();
    assert_eq!(
        SyncedDiaryCore::import(&StorageKey::from_bytes([8; 32]), &snapshot)
            .unwrap_err()
            .code,
        ErrorCode::DecryptionFailed
    );
    again.begin_unlock(b"diary pass").unwrap();
    assert!(again.next_request().unwrap().is_none());
    again.finish().unwrap();
    assert!(again.show(&id).unwrap().unwrap().contains("Monday"));
    assert_eq!(again.collection_id().unwrap(), d.collection_id().unwrap());
    again.lock().unwrap();
    assert!(!again.is_unlocked());
    assert_eq!(again.show(&id).unwrap_err().code, ErrorCode::InvalidState);

    // A wrong passphrase asks the relay (the bundle may have changed); the same bundle there
    // means wrong_password, and the state stays, locked and usable.
    again.begin_unlock(b"wrong").unwrap();
    let get = again.next_request().unwrap().unwrap();
    assert_eq!(get.method, "GET");
    assert_eq!(
        again
            .answer(404, r#"{"error":{"code":"item_not_found","message":"m"}}"#)
            .unwrap_err()
            .code,
        ErrorCode::WrongPassword
    );
    again.begin_unlock(b"diary pass").unwrap();
    assert!(again.next_request().unwrap().is_none());
    again.finish().unwrap();
    assert!(again.is_unlocked());

    // A fresh state: no diary on the relay yet is `not_found`.
    let mut fresh = SyncedDiaryCore::new().unwrap();
    fresh.begin_unlock(b"diary pass").unwrap();
    fresh.next_request().unwrap().unwrap();
    assert_eq!(
        fresh
            .answer(404, r#"{"error":{"code":"item_not_found","message":"m"}}"#)
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    assert!(!fresh.is_unlocked());
    assert_eq!(
        fresh.answer(200, "<html>").unwrap_err().code,
        ErrorCode::InvalidResponse
    );
}
