//! The relay's HTTP API bodies (`docs/PROTOCOL.md` §11): every JSON request and response body
//! and every query string, defined once for the relay (which derives its OpenAPI document from
//! them with the `openapi` feature) and for the clients that build and read them.
//!
//! One module per area of the API, named after the relay's route groups. Field names, their
//! order and the serde attributes are the wire format: a field's declaration order is its order
//! in the relay's JSON. Request bodies reject unknown fields; optional request fields are left
//! out when `None` (so a client sends exactly what it means), while optional response fields are
//! written as `null`.
//!
//! Ids on the wire are [`Id`]s (32 lowercase hex digits); opaque bytes are standard base64
//! strings, decoded and size-checked by whoever uses them.

pub mod account;
pub mod admin;
pub mod auth;
pub mod blobs;
pub mod certificate;
pub mod channels;
pub mod devices;
pub mod error;
pub mod health;
mod id;
pub mod identity;
pub mod keys;
pub mod messages;
pub mod moderation;
#[cfg(feature = "openapi")]
mod schema;
pub mod usernames;
pub mod vault;
pub mod websocket;

pub use id::{ID_LEN, Id, IdError};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::auth::{LoginFinishRequest, NewDeviceBody, RegisterFinishRequest, TokenResponse};
    use super::error::{DeviceMismatch, ErrorBody, ErrorDetail};
    use super::keys::{KeyUploadRequest, OneTimeKeyBody, SignedKeyBody};
    use super::messages::{
        AccessKeyBody, AckBody, EnvelopeBody, FetchResponse, QueuedBody, SendBody, SourceBody,
    };
    use super::vault::ItemBody;
    use super::*;

    fn id(byte: u8) -> Id {
        Id::from([byte; ID_LEN])
    }

    #[test]
    fn token_response_is_byte_for_byte_the_documented_one() {
        // PROTOCOL.md §11.7, in declaration order.
        let t = TokenResponse {
            account_id: id(0xaa),
            device_id: id(0xdd),
            device_number: 1,
            access_token: "a.b.c".into(),
            refresh_token: "r".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"account_id":"{}","device_id":"{}","device_number":1,"access_token":"a.b.c","refresh_token":"r","token_type":"Bearer","expires_in":900}}"#,
                "aa".repeat(16),
                "dd".repeat(16)
            )
        );
        assert_eq!(serde_json::from_str::<TokenResponse>(&text).unwrap(), t);
        // Tokens are credentials.
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("a.b.c") && !debug.contains("\"r\""),
            "{debug}"
        );
    }

    #[test]
    fn optional_request_fields_are_left_out_and_required_nullables_are_null() {
        // A login as an existing device without TOTP: no `device`, no `totp_code`.
        let existing = LoginFinishRequest {
            login_id: id(1),
            credential_finalization: "KE3".into(),
            totp_code: None,
            device_id: Some(id(2)),
            device: None,
        };
        assert_eq!(
            serde_json::to_value(&existing).unwrap(),
            json!({"login_id": "01".repeat(16), "credential_finalization": "KE3",
                   "device_id": "02".repeat(16)})
        );
        // A new device with a TOTP code.
        let new = LoginFinishRequest {
            device_id: None,
            device: Some(NewDeviceBody {
                identity_key: "IK".into(),
                name: None,
            }),
            totp_code: Some("123456".into()),
            ..existing.clone()
        };
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            json!({"login_id": "01".repeat(16), "credential_finalization": "KE3",
                   "totp_code": "123456", "device": {"identity_key": "IK"}})
        );
        // Both parse back; absent fields are `None`.
        for body in [&existing, &new] {
            let text = serde_json::to_string(body).unwrap();
            assert_eq!(
                &serde_json::from_str::<LoginFinishRequest>(&text).unwrap(),
                body
            );
        }
        // `access_key: null` removes the key: it must be written, not left out.
        assert_eq!(
            serde_json::to_value(AccessKeyBody { access_key: None }).unwrap(),
            json!({"access_key": null})
        );
    }

    #[test]
    fn requests_reject_unknown_fields() {
        let text = json!({"registration_id": "01".repeat(16), "registration_upload": "U",
                          "device": {"identity_key": "IK"}, "admin": true})
        .to_string();
        assert!(serde_json::from_str::<RegisterFinishRequest>(&text).is_err());
        // Ids are lowercase only.
        let text = json!({"message_ids": ["AB".repeat(16)]}).to_string();
        assert!(serde_json::from_str::<AckBody>(&text).is_err());
    }

    #[test]
    fn key_upload_matches_protocol_11_11() {
        let first = KeyUploadRequest {
            registration_id: Some(4242),
            signed_prekey: Some(SignedKeyBody {
                key_id: 7,
                public_key: "SPK".into(),
                signature: "SIG".into(),
            }),
            last_resort_kem_prekey: None,
            one_time_prekeys: vec![OneTimeKeyBody {
                key_id: 100,
                public_key: "OPK".into(),
                signature: Some("OSIG".into()),
            }],
            one_time_kem_prekeys: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&first).unwrap(),
            json!({"registration_id": 4242,
                   "signed_prekey": {"key_id": 7, "public_key": "SPK", "signature": "SIG"},
                   "one_time_prekeys": [{"key_id": 100, "public_key": "OPK", "signature": "OSIG"}]})
        );
        assert_eq!(
            serde_json::to_string(&KeyUploadRequest::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn sends_and_fetched_envelopes_match_protocol_11_12() {
        let send = SendBody {
            message_id: id(0x11),
            envelopes: vec![EnvelopeBody {
                device_number: 1,
                content: "Y29udGVudA==".into(),
                franking_commitment: None,
            }],
            ephemeral: false,
            access_key: None,
        };
        assert_eq!(
            serde_json::to_value(&send).unwrap(),
            json!({"message_id": "11".repeat(16), "ephemeral": false,
                   "envelopes": [{"device_number": 1, "content": "Y29udGVudA=="}]})
        );
        let sealed = SendBody {
            access_key: Some("AK".into()),
            ..send
        };
        assert_eq!(serde_json::to_value(&sealed).unwrap()["access_key"], "AK");
        assert!(!format!("{sealed:?}").contains("AK"));

        // Optional response fields are `null`, not absent.
        let page = FetchResponse {
            envelopes: vec![
                QueuedBody {
                    seq: 17,
                    message_id: id(0x22),
                    source: None,
                    content: "c2VhbGVk".into(),
                    payload: None,
                    received_at: 1_790_000_040,
                    expires_at: 1_792_592_040,
                    franking: None,
                },
                QueuedBody {
                    seq: 18,
                    message_id: id(0x23),
                    source: Some(SourceBody {
                        account_id: id(0xaa),
                        device_number: 2,
                    }),
                    content: "aGVhZGVy".into(),
                    payload: Some("cGF5bG9hZA==".into()),
                    received_at: 1_790_000_040,
                    expires_at: 1_792_592_040,
                    franking: None,
                },
            ],
            more: true,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"envelopes": [
                {"seq": 17, "message_id": "22".repeat(16), "source": null, "content": "c2VhbGVk",
                 "payload": null, "received_at": 1_790_000_040, "expires_at": 1_792_592_040,
                 "franking": null},
                {"seq": 18, "message_id": "23".repeat(16),
                 "source": {"account_id": "aa".repeat(16), "device_number": 2},
                 "content": "aGVhZGVy", "payload": "cGF5bG9hZA==",
                 "received_at": 1_790_000_040, "expires_at": 1_792_592_040, "franking": null}],
                "more": true})
        );
        let ack = AckBody {
            message_ids: None,
            up_to_seq: Some(17),
        };
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            json!({"up_to_seq": 17})
        );
    }

    #[test]
    fn errors_match_protocol_11_2() {
        let plain = ErrorBody {
            error: ErrorDetail {
                code: "invalid_json".into(),
                message: "m".into(),
                mismatches: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"error":{"code":"invalid_json","message":"m"}}"#
        );
        let devices = ErrorBody {
            error: ErrorDetail {
                code: "mismatched_devices".into(),
                message: "m".into(),
                mismatches: Some(vec![DeviceMismatch {
                    account_id: id(0xaa),
                    missing_devices: vec![2],
                    extra_devices: Vec::new(),
                    removed_devices: Vec::new(),
                }]),
            },
        };
        let text = serde_json::to_string(&devices).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json!({"error": {"code": "mismatched_devices", "message": "m",
                   "mismatches": [{"account_id": "aa".repeat(16), "missing_devices": [2],
                                   "extra_devices": [], "removed_devices": []}]}})
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), devices);
        // A vault conflict carries more fields; it still reads as an error body.
        let conflict = json!({"error": {"code": "revision_conflict", "message": "m",
                                        "current_revision": 3, "deleted": false}});
        assert_eq!(
            serde_json::from_value::<ErrorBody>(conflict)
                .unwrap()
                .error
                .code,
            "revision_conflict"
        );
    }

    #[test]
    fn vault_tombstones_have_null_blobs() {
        let item = ItemBody {
            item_id: id(0x33),
            revision: 3,
            deleted: true,
            sync_token: 9,
            created_at: 0,
            updated_at: 60,
            body: None,
            meta: None,
        };
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"item_id": "33".repeat(16), "revision": 3, "deleted": true, "sync_token": 9,
                   "created_at": 0, "updated_at": 60, "body": null, "meta": null})
        );
    }
}
