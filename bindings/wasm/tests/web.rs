//! The JavaScript API inside wasm (wasm-bindgen-test under Node): bad input across the boundary
//! (invalid ids, wrong key lengths, malformed bytes, wrong JS types, a closed object) gives a
//! `HavenError` with a stable `code`, never a trap; the state export round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(target_arch = "wasm32")]

use haven_wasm::api::{WebDevice, WebDiary, ack_frame, generate_page_key, parse_server_frame};
use haven_wasm::messenger::WebMessenger;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// The `code` of a thrown `HavenError` (and checks its name).
fn code<T: std::fmt::Debug>(r: Result<T, JsValue>) -> String {
    let err = r.expect_err("expected an error");
    let name = Reflect::get(&err, &"name".into()).unwrap().as_string();
    assert_eq!(name.as_deref(), Some("HavenError"));
    Reflect::get(&err, &"code".into())
        .unwrap()
        .as_string()
        .expect("code is a string")
}

fn field(v: &JsValue, name: &str) -> JsValue {
    Reflect::get(v, &name.into()).unwrap()
}

fn s(text: &str) -> JsValue {
    JsValue::from_str(text)
}

fn n(x: f64) -> JsValue {
    JsValue::from_f64(x)
}

fn b(bytes: &[u8]) -> JsValue {
    Uint8Array::from(bytes).into()
}

const NOW: f64 = 1_790_000_000.0;

#[wasm_bindgen_test]
async fn device_bad_input_is_typed() {
    let d = WebDevice::create().await.unwrap();
    let key = generate_page_key();
    assert_eq!(key.len(), 32);
    assert_eq!(code(d.export_state(b(&key[..31]))), "invalid_key_length");
    assert_eq!(code(d.export_state(b(&[]))), "invalid_key_length");
    assert_eq!(code(d.export_state(s("key"))), "invalid_argument");
    assert_eq!(code(d.export_state(JsValue::NULL)), "invalid_argument");
    // Not logged in yet.
    assert_eq!(code(d.account_id()), "invalid_state");
    assert_eq!(code(d.refresh_body()), "invalid_state");
    // Invalid ids and wrong types.
    assert_eq!(code(d.claim_paths(s("not an id"))), "invalid_argument");
    assert_eq!(code(d.claim_paths(s(&"AB".repeat(16)))), "invalid_argument");
    assert_eq!(code(d.claim_paths(n(42.0))), "invalid_argument");
    assert_eq!(code(d.claim_paths(JsValue::UNDEFINED)), "invalid_argument");
    // The send steps: ids checked first, then the state (nothing prepared, no session yet).
    let id = "77".repeat(16);
    let no_answers: JsValue = js_sys::Array::new().into();
    assert_eq!(
        code(d.encrypt_prepared(s(&id), s(&"00".repeat(16)), n(1.0), n(NOW))),
        "invalid_argument"
    );
    assert_eq!(
        code(d.encrypt_prepared(s("x"), s(&"00".repeat(16)), no_answers.clone(), n(NOW))),
        "invalid_argument"
    );
    assert_eq!(
        code(d.encrypt_prepared(s(&id), s(&"00".repeat(16)), no_answers, n(NOW))),
        "invalid_state"
    );
    d.finish_send(s(&id)).unwrap();
    assert_eq!(code(d.finish_send(s("x"))), "invalid_argument");
    assert_eq!(code(d.confirm_access_key()), "invalid_state");
    assert_eq!(code(d.rotate_keys(s("now"))), "invalid_argument");
    d.keys_rotated().unwrap();
    assert!(d.prepare_access_key().unwrap().contains("access_key"));
    assert_eq!(code(d.own_devices_due(n(NOW))), "invalid_state");
    assert_eq!(code(d.set_own_devices(s("[]"))), "invalid_response");
    assert_eq!(code(d.replenish_keys(s("{"), n(NOW))), "invalid_response");
    // Bad numbers.
    assert_eq!(code(d.prekey_upload(n(f64::NAN))), "invalid_argument");
    assert_eq!(code(d.prekey_upload(n(-1.0))), "invalid_argument");
    assert_eq!(code(d.prekey_upload(s("now"))), "invalid_argument");
    // Malformed relay answers.
    assert_eq!(code(d.set_session(s("{"))), "invalid_response");
    assert_eq!(
        code(d.set_session(s(r#"{"account_id":"x"}"#))),
        "invalid_response"
    );
    assert_eq!(
        code(d.set_relay_key(s(r#"{"public_key":"AAA="}"#))),
        "invalid_response"
    );
    assert_eq!(
        code(d.register_finish(s("pw"), s("{}"), JsValue::UNDEFINED)),
        "invalid_response"
    );
    assert_eq!(
        code(d.login_finish(
            s("pw"),
            s(r#"{"credential_response":"AAAA","login_id":"x"}"#),
            JsValue::UNDEFINED
        )),
        "invalid_response"
    );
    assert_eq!(code(d.register_start(s(""))), "invalid_argument");
    // OPAQUE start works in wasm (randomness from crypto.getRandomValues).
    let body = d.register_start(s("pw")).unwrap();
    assert!(body.contains("registration_request"));
    // Malformed state snapshots.
    assert_eq!(
        code(WebDevice::import_state(b(&key), b(&[1, 2, 3])).await),
        "malformed"
    );
    let state = d.export_state(b(&key)).unwrap();
    let mut other = key.clone();
    other[0] ^= 1;
    assert_eq!(
        code(WebDevice::import_state(b(&other), b(&state)).await),
        "decryption_failed"
    );
    let mut tampered = state.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        code(WebDevice::import_state(b(&key), b(&tampered)).await),
        "decryption_failed"
    );
    let back = WebDevice::import_state(b(&key), b(&state)).await.unwrap();
    assert_eq!(back.identity_key().unwrap(), d.identity_key().unwrap());
    // A closed device.
    d.close();
    assert_eq!(code(d.identity_key()), "closed");
    assert_eq!(code(d.export_state(b(&key))), "closed");
    d.close();
}

#[wasm_bindgen_test]
async fn messenger_bad_input_is_typed() {
    let d = WebDevice::create().await.unwrap();
    // The factory resolves (to the same as `of`).
    wasm_bindgen_futures::JsFuture::from(WebMessenger::create(&d))
        .await
        .unwrap();
    let m = WebMessenger::of(&d).unwrap();
    let conv = |kind: &str, id: &str| -> JsValue {
        js_sys::JSON::parse(&format!(r#"{{"kind":"{kind}","id":"{id}"}}"#)).unwrap()
    };
    let bob = "b0".repeat(16);
    assert!(m.channel_request().unwrap().contains("ttl_secs"));
    // Conversations of the wrong shape.
    for bad in [
        s("direct"),
        JsValue::NULL,
        conv("channel", &bob),
        conv("direct", "B0"),
        js_sys::JSON::parse(r#"{"kind":"direct"}"#).unwrap(),
        js_sys::JSON::parse(r#"{"kind":"direct","id":5}"#).unwrap(),
    ] {
        assert_eq!(code(m.history(bad, n(NOW))), "invalid_argument");
    }
    // Wrong types and malformed ids.
    assert_eq!(
        code(m.add_contact(n(1.0), JsValue::UNDEFINED)),
        "invalid_argument"
    );
    assert_eq!(
        code(m.add_contact(s("xyz"), JsValue::UNDEFINED)),
        "invalid_argument"
    );
    assert_eq!(code(m.add_contact(s(&bob), n(2.0))), "invalid_argument");
    assert_eq!(
        code(m.send_text(conv("direct", &bob), n(1.0), n(NOW), JsValue::UNDEFINED)),
        "invalid_argument"
    );
    assert_eq!(
        code(m.send_text(conv("direct", &bob), s("x"), n(NOW), s("pointer"))),
        "invalid_argument"
    );
    assert_eq!(
        code(m.typing(conv("direct", &bob), s("yes"), n(NOW))),
        "invalid_argument"
    );
    assert_eq!(
        code(m.mark_read(conv("direct", &bob), s(&bob), n(NOW))),
        "invalid_argument"
    );
    assert_eq!(code(m.action_done(s(&bob), s("ok"))), "invalid_argument");
    assert_eq!(
        code(m.receive_envelope(
            s("x"),
            s("AAAA"),
            JsValue::FALSE,
            n(NOW),
            JsValue::UNDEFINED,
            JsValue::UNDEFINED
        )),
        "invalid_argument"
    );
    assert_eq!(
        code(m.receive_channel_entry(s(&bob), n(-1.0), s("AAAA"), n(NOW), JsValue::UNDEFINED)),
        "invalid_argument"
    );
    assert_eq!(
        code(m.accept_identity(s(&bob), n(1.5), s("AAAA"))),
        "invalid_argument"
    );
    assert_eq!(code(m.subscribe_frames(s("g"))), "invalid_argument");
    // Not logged in yet; unknown handles.
    assert_eq!(
        code(m.send_text(conv("direct", &bob), s("x"), n(NOW), JsValue::UNDEFINED)),
        "invalid_state"
    );
    assert_eq!(code(m.card_for(s(&bob), n(NOW))), "invalid_state");
    assert_eq!(code(m.action_done(s(&bob), JsValue::TRUE)), "invalid_state");
    assert_eq!(code(m.follow_up(s(&bob), n(NOW))), "invalid_state");
    assert_eq!(
        code(m.add_member_posted(s(&bob), s("{}"), n(NOW))),
        "invalid_response"
    );
    assert_eq!(
        code(m.remove_member_posted(s(&bob), s("{}"), n(NOW))),
        "invalid_response"
    );
    assert_eq!(
        code(m.create_group(s("g"), js_sys::Array::new().into(), s("{"), n(NOW))),
        "invalid_response"
    );
    // Queries of an empty state work.
    assert_eq!(js_sys::Array::from(&m.contacts().unwrap()).length(), 0);
    assert_eq!(js_sys::Array::from(&m.groups().unwrap()).length(), 0);
    assert_eq!(m.follow_ups().unwrap().len(), 0);
    // A closed messenger, and a messenger of a closed device.
    m.close();
    assert_eq!(code(m.contacts()), "closed");
    let m2 = WebMessenger::of(&d).unwrap();
    d.close();
    assert_eq!(code(m2.groups()), "closed");
    let err = wasm_bindgen_futures::JsFuture::from(WebMessenger::create(&d))
        .await
        .map(|_| ());
    assert_eq!(code(err), "closed");
}

#[wasm_bindgen_test]
fn frames_bad_input_is_typed() {
    assert_eq!(code(parse_server_frame(b(&[]))), "malformed");
    assert_eq!(code(parse_server_frame(b(&[1, 0x7f]))), "malformed");
    assert_eq!(code(parse_server_frame(b(&[1, 1, 0, 0]))), "malformed");
    assert_eq!(code(parse_server_frame(s("frame"))), "invalid_argument");
    let empty = parse_server_frame(b(&[1, 2])).unwrap();
    assert_eq!(
        field(&empty, "type").as_string().as_deref(),
        Some("queue_empty")
    );
    let ids = |v: &[&str]| -> JsValue { v.iter().map(|x| s(x)).collect::<js_sys::Array>().into() };
    assert_eq!(code(ack_frame(ids(&[]))), "invalid_argument");
    assert_eq!(code(ack_frame(ids(&["zz"]))), "invalid_argument");
    assert_eq!(code(ack_frame(s("00"))), "invalid_argument");
    assert_eq!(ack_frame(ids(&[&"00".repeat(16)])).unwrap().len(), 20);
}

#[wasm_bindgen_test]
async fn diary_roundtrip_and_bad_input_is_typed() {
    assert_eq!(
        code(WebDiary::create(s("pw"), n(1024.0), n(1.0)).await),
        "limit"
    );
    assert_eq!(
        code(WebDiary::create(s(""), n(19456.0), n(2.0)).await),
        "invalid_argument"
    );
    assert_eq!(
        code(WebDiary::create(s("pw"), n(1e12), n(2.0)).await),
        "invalid_argument"
    );
    assert_eq!(
        code(WebDiary::unlock(b(&[9; 40]), s("pw")).await),
        "malformed"
    );
    let d = WebDiary::create(s("pass phrase"), n(19456.0), n(2.0))
        .await
        .unwrap();
    assert_eq!(d.take_recovery_codes().unwrap().len(), 10);
    let entry = js_sys::JSON::parse(
        r#"{"title":"t","body":"secret body","tags":[],"createdMs":1,"updatedMs":1}"#,
    )
    .unwrap();
    let sealed = d.encrypt_entry(entry, JsValue::UNDEFINED, n(3.0)).unwrap();
    let item = field(&sealed, "itemId").as_string().unwrap();
    let body = Uint8Array::new(&field(&sealed, "body")).to_vec();
    let meta = Uint8Array::new(&field(&sealed, "meta")).to_vec();
    let record = d.record().unwrap();
    assert_eq!(
        code(WebDiary::unlock(b(&record), s("wrong")).await),
        "wrong_password"
    );
    let again = WebDiary::unlock(b(&record), s("pass phrase"))
        .await
        .unwrap();
    let opened = again
        .decrypt_entry(s(&item), n(3.0), b(&body), b(&meta))
        .unwrap();
    assert_eq!(
        field(&opened, "body").as_string().as_deref(),
        Some("secret body")
    );
    assert_eq!(
        code(again.decrypt_entry(s(&item), n(4.0), b(&body), b(&meta))),
        "decryption_failed"
    );
    assert_eq!(
        // Swapped blobs decrypt (same item key) but do not decode as their kinds.
        code(again.decrypt_entry(s(&item), n(3.0), b(&meta), b(&body))),
        "malformed"
    );
    assert_eq!(
        code(again.decrypt_entry(s("nope"), n(3.0), b(&body), b(&meta))),
        "invalid_argument"
    );
    assert_eq!(
        code(again.encrypt_entry(n(1.0), JsValue::UNDEFINED, n(0.0))),
        "invalid_argument"
    );
    again.close();
    assert_eq!(code(again.collection_id()), "closed");
}
